//! Hybrid lexical + dense retrieval.
//!
//! A [`Fusion`] merges two ranked lists of `(score, DocAddress)`: [`Rrf`] (reciprocal-rank
//! fusion), [`LinearFusion`] (normalised scores mixed with a weight) and [`Cascade`] (the
//! lexical candidates re-ranked by their dense score). [`HybridCollector`](crate::HybridCollector)
//! fuses the legs of one search; [`HybridSearcher`] is a convenience wrapper around it that runs
//! both sides with the same filter.
//!
//! ```
//! use tantivy::DocAddress;
//! use tantivy_ltre::fusion::{Fusion, Rrf};
//! let (a, b, c) = (DocAddress::new(0, 1), DocAddress::new(0, 2), DocAddress::new(0, 3));
//! let fused = Rrf::default().fuse(&[(9.0, a), (5.0, b)], &[(0.8, b), (0.7, c)], 3);
//! assert_eq!(fused[0].1, b); // 1/62 + 1/61 beats a's 1/61
//! ```
use std::cmp::Ordering;
use std::collections::HashMap;

use tantivy::collector::TopDocs;
use tantivy::query::Query;
use tantivy::{DocAddress, Score, Searcher};

use crate::ann::AnnParams;
use crate::collector::{filtered, HybridCollector};
use crate::error::Result;
use crate::field::{validate_vector, DenseField};
use crate::query::DenseQuery;
use crate::scan::{dot, finite};

/// Which dense list a [`Fusion`] needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseInput {
    /// The dense top-n over the whole (filtered) index.
    TopN,
    /// The dense scores of the lexical candidates only (from their stored vectors).
    LexicalCandidates,
}

/// Merges a lexical and a dense ranking into one.
pub trait Fusion: Send + Sync {
    /// The `k` best documents of the fused ranking, best first. Both inputs are best first.
    fn fuse(
        &self,
        lexical: &[(Score, DocAddress)],
        dense: &[(Score, DocAddress)],
        k: usize,
    ) -> Vec<(Score, DocAddress)>;

    /// Which dense list [`HybridSearcher`] must compute for this fusion.
    fn dense_input(&self) -> DenseInput {
        DenseInput::TopN
    }
}

impl<F: Fusion + ?Sized> Fusion for &F {
    fn fuse(
        &self,
        lexical: &[(Score, DocAddress)],
        dense: &[(Score, DocAddress)],
        k: usize,
    ) -> Vec<(Score, DocAddress)> {
        (**self).fuse(lexical, dense, k)
    }

    fn dense_input(&self) -> DenseInput {
        (**self).dense_input()
    }
}

impl<F: Fusion + ?Sized> Fusion for Box<F> {
    fn fuse(
        &self,
        lexical: &[(Score, DocAddress)],
        dense: &[(Score, DocAddress)],
        k: usize,
    ) -> Vec<(Score, DocAddress)> {
        (**self).fuse(lexical, dense, k)
    }

    fn dense_input(&self) -> DenseInput {
        (**self).dense_input()
    }
}

/// Best first; equal scores by ascending address, so results are deterministic.
pub(crate) fn sort_and_truncate(
    mut scored: Vec<(Score, DocAddress)>,
    k: usize,
) -> Vec<(Score, DocAddress)> {
    scored.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(Ordering::Equal)
            .then_with(|| a.1.cmp(&b.1))
    });
    scored.truncate(k);
    scored
}

/// Reciprocal-rank fusion (Cormack et al. 2009): `score(d) = sum over lists of 1 / (k + rank)`,
/// ranks from 1; a document absent from a list gets nothing from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rrf {
    /// The rank constant (60 in the paper).
    pub k: f32,
}

impl Default for Rrf {
    fn default() -> Self {
        Rrf { k: 60.0 }
    }
}

impl Fusion for Rrf {
    fn fuse(
        &self,
        lexical: &[(Score, DocAddress)],
        dense: &[(Score, DocAddress)],
        k: usize,
    ) -> Vec<(Score, DocAddress)> {
        let mut scores: HashMap<DocAddress, Score> = HashMap::new();
        for list in [lexical, dense] {
            for (rank, (_, doc)) in list.iter().enumerate() {
                *scores.entry(*doc).or_default() += 1.0 / (self.k + rank as f32 + 1.0);
            }
        }
        sort_and_truncate(scores.into_iter().map(|(d, s)| (s, d)).collect(), k)
    }
}

/// How [`LinearFusion`] puts the two score scales on a par.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Normalization {
    /// `(s - min) / (max - min)` over the list (all 1 when every score is equal).
    #[cfg_attr(feature = "clap", value(name = "minmax", alias = "min-max"))]
    MinMax,
    /// `(s - mean) / std` over the list (all 0 when every score is equal).
    #[cfg_attr(feature = "clap", value(name = "zscore", alias = "z-score"))]
    ZScore,
}

impl Normalization {
    fn apply(self, list: &[(Score, DocAddress)]) -> Vec<Score> {
        let n = list.len() as f32;
        if list.is_empty() {
            return Vec::new();
        }
        match self {
            Normalization::MinMax => {
                let min = list.iter().map(|x| x.0).fold(f32::INFINITY, f32::min);
                let max = list.iter().map(|x| x.0).fold(f32::NEG_INFINITY, f32::max);
                let range = max - min;
                list.iter()
                    .map(|(s, _)| if range > 0.0 { (s - min) / range } else { 1.0 })
                    .collect()
            }
            Normalization::ZScore => {
                let mean = list.iter().map(|x| x.0).sum::<f32>() / n;
                let var = list.iter().map(|x| (x.0 - mean).powi(2)).sum::<f32>() / n;
                let std = var.sqrt();
                list.iter()
                    .map(|(s, _)| if std > 0.0 { (s - mean) / std } else { 0.0 })
                    .collect()
            }
        }
    }
}

/// Normalised linear fusion: `alpha * dense + (1 - alpha) * lexical` on normalised scores.
///
/// A document missing from one list was not retrieved there, so it gets a score at or below
/// every retrieved one: 0 with min-max (the lowest retrieved score), and one standard deviation
/// below the lowest retrieved score with z-scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearFusion {
    /// Weight of the dense side, in `[0, 1]`.
    pub alpha: f32,
    /// Score normalisation applied to each list.
    pub normalization: Normalization,
}

impl LinearFusion {
    /// Min-max normalised fusion with weight `alpha` on the dense side.
    pub fn min_max(alpha: f32) -> Self {
        LinearFusion {
            alpha,
            normalization: Normalization::MinMax,
        }
    }

    /// Z-score normalised fusion with weight `alpha` on the dense side.
    pub fn z_score(alpha: f32) -> Self {
        LinearFusion {
            alpha,
            normalization: Normalization::ZScore,
        }
    }
}

impl Fusion for LinearFusion {
    fn fuse(
        &self,
        lexical: &[(Score, DocAddress)],
        dense: &[(Score, DocAddress)],
        k: usize,
    ) -> Vec<(Score, DocAddress)> {
        let lex = self.normalization.apply(lexical);
        let den = self.normalization.apply(dense);
        let below = match self.normalization {
            Normalization::MinMax => 0.0,
            Normalization::ZScore => 1.0,
        };
        let floor = |v: &[Score]| v.iter().copied().fold(f32::INFINITY, f32::min) - below;
        let (lex_floor, den_floor) = (floor(&lex), floor(&den));
        let mut parts: HashMap<DocAddress, (Option<Score>, Option<Score>)> = HashMap::new();
        for ((_, doc), s) in lexical.iter().zip(&lex) {
            parts.entry(*doc).or_default().0 = Some(*s);
        }
        for ((_, doc), s) in dense.iter().zip(&den) {
            parts.entry(*doc).or_default().1 = Some(*s);
        }
        let fused = parts
            .into_iter()
            .map(|(doc, (l, d))| {
                let l = l.unwrap_or(if lex_floor.is_finite() {
                    lex_floor
                } else {
                    0.0
                });
                let d = d.unwrap_or(if den_floor.is_finite() {
                    den_floor
                } else {
                    0.0
                });
                (self.alpha * d + (1.0 - self.alpha) * l, doc)
            })
            .collect();
        sort_and_truncate(fused, k)
    }
}

/// Cascade: the lexical candidates re-ranked by their dense score (the inner product with their
/// stored vectors). Candidates without a vector follow, in lexical order, scored `-inf`-free:
/// they keep their lexical rank after every scored candidate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cascade;

impl Fusion for Cascade {
    fn fuse(
        &self,
        lexical: &[(Score, DocAddress)],
        dense: &[(Score, DocAddress)],
        k: usize,
    ) -> Vec<(Score, DocAddress)> {
        let dense_scores: HashMap<DocAddress, Score> =
            dense.iter().map(|(s, d)| (*d, *s)).collect();
        let (mut scored, mut unscored): (Vec<_>, Vec<_>) = lexical
            .iter()
            .partition(|(_, doc)| dense_scores.contains_key(doc));
        scored
            .iter_mut()
            .for_each(|(s, doc)| *s = dense_scores[doc]);
        let mut ranked = sort_and_truncate(scored, k);
        let lowest = ranked.last().map_or(0.0, |x| x.0);
        for (i, (_, doc)) in unscored.drain(..).enumerate() {
            if ranked.len() >= k {
                break;
            }
            // Strictly decreasing below the last scored candidate, keeping lexical order.
            ranked.push((lowest - 1.0 - i as f32, doc));
        }
        ranked
    }

    fn dense_input(&self) -> DenseInput {
        DenseInput::LexicalCandidates
    }
}

/// Runs a lexical query and a dense query with the same filter and fuses them: a thin wrapper
/// around [`HybridCollector`] (use the collector to combine hybrid search with other
/// collectors, e.g. `(Count, collector)`).
pub struct HybridSearcher<'a> {
    searcher: &'a Searcher,
    dense: DenseField,
    depth: usize,
    ann: AnnParams,
}

impl<'a> HybridSearcher<'a> {
    /// A hybrid searcher retrieving 100 candidates per side.
    pub fn new(searcher: &'a Searcher, dense: &DenseField) -> Self {
        HybridSearcher {
            searcher,
            dense: dense.clone(),
            depth: 100,
            ann: AnnParams::default(),
        }
    }

    /// Candidates retrieved on each side (the cascade's first-stage size).
    pub fn with_depth(mut self, depth: usize) -> Self {
        self.depth = depth;
        self
    }

    /// Query-time parameters for segments with an approximate index.
    pub fn with_ann_params(mut self, params: AnnParams) -> Self {
        self.ann = params;
        self
    }

    /// The lexical top `n`, restricted to `filter` (whose score does not count).
    pub fn lexical(
        &self,
        query: &dyn Query,
        filter: Option<&dyn Query>,
        n: usize,
    ) -> Result<Vec<(Score, DocAddress)>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let query = filtered(query, filter);
        Ok(self
            .searcher
            .search(&*query, &TopDocs::with_limit(n).order_by_score())?)
    }

    /// The dense top `n` among the documents matching `filter`.
    pub fn dense(
        &self,
        vector: &[f32],
        filter: Option<&dyn Query>,
        n: usize,
    ) -> Result<Vec<(Score, DocAddress)>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut query = DenseQuery::new(&self.dense, vector.to_vec(), n)?.with_ann_params(self.ann);
        if let Some(filter) = filter {
            query = query.with_filter(filter.box_clone());
        }
        Ok(self
            .searcher
            .search(&query, &TopDocs::with_limit(n).order_by_score())?)
    }

    /// The inner product of `vector` with the stored vector of each document (documents without
    /// a vector are left out).
    pub fn dense_scores(
        &self,
        vector: &[f32],
        docs: &[(Score, DocAddress)],
    ) -> Result<Vec<(Score, DocAddress)>> {
        validate_vector(vector, self.dense.dim())?;
        let mut by_segment: HashMap<u32, Vec<DocAddress>> = HashMap::new();
        for (_, doc) in docs {
            by_segment.entry(doc.segment_ord).or_default().push(*doc);
        }
        let mut scores = Vec::with_capacity(docs.len());
        for (segment_ord, addresses) in by_segment {
            let vectors = self
                .dense
                .segment_vectors(self.searcher.segment_reader(segment_ord))?;
            for address in addresses {
                if let Some(v) = vectors.vector(address.doc_id) {
                    scores.push((finite(dot(vector, v)), address));
                }
            }
        }
        Ok(sort_and_truncate(scores, docs.len()))
    }

    /// The fused top `k` of `lexical` and the dense query `vector`, both restricted to `filter`.
    pub fn search(
        &self,
        lexical: &dyn Query,
        vector: &[f32],
        filter: Option<&dyn Query>,
        fusion: &dyn Fusion,
        k: usize,
    ) -> Result<Vec<(Score, DocAddress)>> {
        let mut collector = HybridCollector::new(&self.dense, vector, fusion, k)?
            .with_depth(self.depth)
            .with_ann_params(self.ann);
        if let Some(filter) = filter {
            collector = collector.with_filter(filter.box_clone());
        }
        let query = collector.filtered_lexical(lexical);
        let hits = self.searcher.search(&*query, &collector)?;
        Ok(hits
            .into_iter()
            .map(|hit| (hit.score, hit.address))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(i: u32) -> DocAddress {
        DocAddress::new(0, i)
    }

    fn docs(list: &[(Score, DocAddress)]) -> Vec<u32> {
        list.iter().map(|(_, a)| a.doc_id).collect()
    }

    #[test]
    fn rrf_hand_case() {
        // lexical: 1, 2, 3; dense: 3, 4, 1.
        let lexical = [(3.0, d(1)), (2.0, d(2)), (1.0, d(3))];
        let dense = [(0.9, d(3)), (0.8, d(4)), (0.1, d(1))];
        let fused = Rrf { k: 60.0 }.fuse(&lexical, &dense, 4);
        // 1: 1/61 + 1/63; 3: 1/63 + 1/61 (tie, lower address first); 2: 1/62; 4: 1/62.
        assert_eq!(docs(&fused), vec![1, 3, 2, 4]);
        assert!((fused[0].0 - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-7);
        assert_eq!(Rrf { k: 0.0 }.fuse(&lexical, &dense, 1).len(), 1);
    }

    #[test]
    fn rrf_constant_changes_the_balance() {
        // a: ranks 1 and 4; b: ranks 2 and 2. Small k rewards a top rank, large k consistency.
        let lexical = [(4.0, d(0)), (3.0, d(1)), (2.0, d(8)), (1.0, d(9))];
        let dense = [(4.0, d(7)), (3.0, d(1)), (2.0, d(6)), (1.0, d(0))];
        assert_eq!(docs(&Rrf { k: 0.0 }.fuse(&lexical, &dense, 1)), vec![0]); // 1 + 1/4 > 1/2 + 1/2
        assert_eq!(docs(&Rrf { k: 60.0 }.fuse(&lexical, &dense, 1)), vec![1]); // 2/62 > 1/61 + 1/64
    }

    #[test]
    fn linear_min_max_hand_case() {
        let lexical = [(10.0, d(1)), (5.0, d(2)), (0.0, d(3))]; // -> 1, 0.5, 0
        let dense = [(0.9, d(3)), (0.5, d(2)), (0.1, d(4))]; // -> 1, 0.5, 0
        let fused = LinearFusion::min_max(0.5).fuse(&lexical, &dense, 4);
        // 1: 0.5*1 + 0.5*0(missing) = 0.5; 2: 0.5; 3: 0.5; 4: 0.
        assert_eq!(docs(&fused), vec![1, 2, 3, 4]);
        assert!(fused[..3].iter().all(|(s, _)| (s - 0.5).abs() < 1e-6));
        let dense_only = LinearFusion::min_max(1.0).fuse(&lexical, &dense, 4);
        assert_eq!(docs(&dense_only)[0], 3);
        let lexical_only = LinearFusion::min_max(0.0).fuse(&lexical, &dense, 4);
        assert_eq!(docs(&lexical_only)[0], 1);
    }

    #[test]
    fn linear_z_score_hand_case() {
        let lexical = [(3.0, d(1)), (1.0, d(2))]; // mean 2, std 1 -> 1, -1
        let dense = [(0.5, d(2)), (0.3, d(1))]; // mean 0.4, std 0.1 -> 1, -1
        let fused = LinearFusion::z_score(0.75).fuse(&lexical, &dense, 2);
        // 1: 0.75*-1 + 0.25*1 = -0.5; 2: 0.75*1 + 0.25*-1 = 0.5.
        assert_eq!(docs(&fused), vec![2, 1]);
        assert!((fused[0].0 - 0.5).abs() < 1e-5 && (fused[1].0 + 0.5).abs() < 1e-5);
    }

    #[test]
    fn cascade_reranks_lexical_candidates_only() {
        let lexical = [(9.0, d(1)), (8.0, d(2)), (7.0, d(3)), (6.0, d(5))];
        // dense scores of the candidates; 4 is not a candidate and 5 has no vector.
        let dense = [(0.9, d(3)), (0.5, d(1)), (0.7, d(2)), (1.0, d(4))];
        let fused = Cascade.fuse(&lexical, &dense, 10);
        assert_eq!(docs(&fused), vec![3, 2, 1, 5]);
        assert_eq!(fused[0].0, 0.9);
        assert!(fused[3].0 < fused[2].0);
        assert_eq!(docs(&Cascade.fuse(&lexical, &dense, 2)), vec![3, 2]);
    }
}
