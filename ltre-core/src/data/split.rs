//! A seeded train/test split of the queries of a collection that ships one qrels file
//! (Cranfield, most TREC collections): half of the judged queries train, the other half test.
//!
//! The split depends only on the set of query ids and the seed (ids are sorted, then shuffled
//! with the seed), so `eval --split test` and `train --split train` agree on which queries are
//! which, on any machine and in any order of the file, and never share a query.
//!
//! ```
//! use ltre_core::data::{split_queries, Qrels, QuerySplit};
//! let qrels: Qrels = (1..=10).map(|q| (q.to_string(), [("d1".to_string(), 1)].into())).collect();
//! let train = split_queries(&qrels, QuerySplit::Train, 13);
//! let test = split_queries(&qrels, QuerySplit::Test, 13);
//! assert_eq!((train.len(), test.len()), (5, 5));
//! assert!(train.keys().all(|q| !test.contains_key(q)));
//! ```
use rand::seq::SliceRandom;
use rand::{rngs::StdRng, SeedableRng};

use super::Qrels;

/// Which half of a [`split_queries`] split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum QuerySplit {
    /// The training half (the larger one when the count is odd).
    Train,
    /// The test half.
    Test,
}

impl QuerySplit {
    /// The other half: what a model trained on this one is evaluated on.
    pub fn other(self) -> QuerySplit {
        match self {
            QuerySplit::Train => QuerySplit::Test,
            QuerySplit::Test => QuerySplit::Train,
        }
    }
}

/// The judgements of one half of the queries of `qrels`: ids sorted, shuffled with `seed`, the
/// first `ceil(n / 2)` train and the rest test.
pub fn split_queries(qrels: &Qrels, split: QuerySplit, seed: u64) -> Qrels {
    let mut ids: Vec<&String> = qrels.keys().collect();
    ids.shuffle(&mut StdRng::seed_from_u64(seed));
    let n_train = ids.len().div_ceil(2);
    let half = match split {
        QuerySplit::Train => &ids[..n_train],
        QuerySplit::Test => &ids[n_train..],
    };
    half.iter()
        .map(|id| ((*id).clone(), qrels[*id].clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qrels(n: usize) -> Qrels {
        (0..n)
            .map(|q| (format!("q{q}"), [("d".to_string(), 1)].into()))
            .collect()
    }

    #[test]
    fn halves_partition_the_queries_and_depend_on_the_seed() {
        let all = qrels(225);
        let train = split_queries(&all, QuerySplit::Train, 13);
        let test = split_queries(&all, QuerySplit::Test, 13);
        assert_eq!((train.len(), test.len()), (113, 112));
        let mut union: Vec<&String> = train.keys().chain(test.keys()).collect();
        union.sort();
        union.dedup();
        assert_eq!(union.len(), 225);
        assert_eq!(split_queries(&all, QuerySplit::Train, 13), train);
        assert_ne!(split_queries(&all, QuerySplit::Train, 14), train);
        // Deterministic whatever the file order: a BTreeMap has one order per id set.
        assert!(split_queries(&Qrels::new(), QuerySplit::Test, 13).is_empty());
        assert_eq!(QuerySplit::Train.other(), QuerySplit::Test);
        assert_eq!(QuerySplit::Test.other(), QuerySplit::Train);
    }
}
