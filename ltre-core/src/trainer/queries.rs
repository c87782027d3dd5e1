//! Data preparation: training queries joined with their relevant documents, their embeddings,
//! and the seeded held-out split used for model selection.
use std::collections::HashMap;

use rand::seq::SliceRandom;
use rand::{rngs::StdRng, SeedableRng};

use ndarray::Array2;

use crate::data::{Qrels, Query};
use crate::train_step::QueryTower;
use crate::{Error, Result};

/// Embeddings of `queries` by `tower`, in order, `batch` texts per forward pass.
pub(crate) fn embed_queries(
    tower: &mut QueryTower,
    queries: &[TrainQuery],
    batch: usize,
) -> Result<Array2<f32>> {
    let mut rows = Vec::new();
    let mut dim = 0;
    for chunk in queries.chunks(batch.max(1)) {
        let texts: Vec<&str> = chunk.iter().map(|q| q.text.as_str()).collect();
        let q = tower.embed(&texts)?;
        dim = q.ncols();
        rows.extend(q.iter().copied());
    }
    Array2::from_shape_vec((queries.len(), dim), rows)
        .map_err(|e| Error::Invalid(format!("query embeddings: {e}")))
}

/// A training query with the rows of its relevant documents and their grades.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainQuery {
    /// Query id.
    pub id: String,
    /// Query text.
    pub text: String,
    /// Rows (in the document matrix) of documents graded >= 1.
    pub relevant: Vec<usize>,
    /// Grade of each document of `relevant`, aligned with it. A missing entry (or one below 1)
    /// counts as 1, so binary data may leave this empty.
    pub grades: Vec<i32>,
}

impl TrainQuery {
    /// Grade of the `k`-th relevant document (at least 1).
    pub fn grade(&self, k: usize) -> i32 {
        self.grades.get(k).copied().unwrap_or(1).max(1)
    }

    /// Grade of document row `row` if it is relevant to this query.
    pub fn grade_of(&self, row: usize) -> Option<i32> {
        self.relevant
            .iter()
            .position(|&d| d == row)
            .map(|k| self.grade(k))
    }

    /// Relevant rows with their grades.
    pub fn judged(&self) -> impl Iterator<Item = (usize, i32)> + '_ {
        self.relevant
            .iter()
            .enumerate()
            .map(|(k, &d)| (d, self.grade(k)))
    }

    /// [`TrainQuery::judged`] by document id (row `i` is `doc_ids[i]`), as qrels hold them.
    pub fn judged_ids(&self, doc_ids: &[String]) -> std::collections::BTreeMap<String, i32> {
        self.judged()
            .map(|(d, grade)| (doc_ids[d].clone(), grade))
            .collect()
    }
}

/// Queries joined with qrels and the document id -> row map. Queries without a relevant
/// document in the collection are dropped (they carry no signal).
pub fn join_queries(
    queries: &[Query],
    qrels: &Qrels,
    doc_rows: &HashMap<String, usize>,
) -> Vec<TrainQuery> {
    queries
        .iter()
        .filter_map(|q| {
            let judged = qrels.get(&q.id)?;
            let (relevant, grades): (Vec<usize>, Vec<i32>) = judged
                .iter()
                .filter(|(_, &g)| g >= 1)
                .filter_map(|(d, &g)| doc_rows.get(d).map(|&row| (row, g)))
                .unzip();
            (!relevant.is_empty()).then(|| TrainQuery {
                id: q.id.clone(),
                text: q.text.clone(),
                relevant,
                grades,
            })
        })
        .collect()
}

/// Splits queries into (train, dev) with a seeded shuffle; `fraction` of them go to dev.
pub fn split_dev(
    mut queries: Vec<TrainQuery>,
    fraction: f32,
    seed: u64,
) -> (Vec<TrainQuery>, Vec<TrainQuery>) {
    queries.sort_by(|a, b| a.id.cmp(&b.id));
    queries.shuffle(&mut StdRng::seed_from_u64(seed ^ 0xdead_beef));
    let n_dev = ((queries.len() as f32) * fraction).round() as usize;
    let dev = queries.split_off(queries.len() - n_dev.min(queries.len()));
    (queries, dev)
}
