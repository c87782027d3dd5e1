//! Hybrid-aware LTRe: the full retrieval of the loss is the ranking the index serves, BM25
//! fused with the dense score, instead of the dense ranking alone.
//!
//! The served fusion is normalised linear with min-max scaling over each leg's top `depth`
//! (`tantivy_ltre::fusion::LinearFusion::min_max`): `f(d) = alpha * dn(d) + (1 - alpha) * ln(d)`
//! where `dn`, `ln` are the min-max normalised dense and BM25 scores, 0 for a document outside
//! that leg's top `depth`. [`fuse_min_max`] computes it exactly; its ranks weigh the pairs.
//!
//! For the pair scores, `f` is written in dense units: `f` orders documents as
//! `h(d) = <q, d> + c(d)` with `c(d) = (1 - alpha) / alpha * range * ln(d)`, `range` being the
//! dense leg's max - min. The loss is then LTRe's on `t * h`, so the BM25 evidence enters as a
//! per-document offset and the gradient flows through the dense part only: the query learns
//! what BM25 does not already contribute. With `alpha = 1` the offsets vanish and this is plain
//! LTRe. Learning only that weakens the dense ranking, which the index also serves on its own,
//! so [`HybridConfig::dense_share`] mixes plain LTRe's loss back in.
//!
//! `range` is `<q, d_first - d_last>` over the dense leg's first and last documents, so it is
//! the query's too: with [`HybridConfig::range_gradient`] the gradient flows through it, and
//! the query learns how much BM25 should weigh for it (a wide range scales BM25 up, in dense
//! units). Otherwise `range` is held constant.
use std::collections::HashMap;

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use crate::loss::{ltre_loss_offsets, Candidate, Offsets, PairWeight, QueryLoss};
use crate::retrieval::Hit;
use crate::{Error, Result};

/// Hybrid-aware training settings (`TrainConfig::hybrid`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HybridConfig {
    /// Weight of the dense side in `(0, 1]`.
    pub alpha: f32,
    /// Documents per leg before fusion, as the index serves them (`SearchOptions::depth`).
    #[serde(default = "default_depth")]
    pub depth: usize,
    /// Share of the plain (dense-only) LTRe loss mixed with the hybrid one, in `[0, 1)`.
    /// The index serves the dense ranking too, and a dense side trained on the fused ranking
    /// alone learns only what BM25 misses and weakens (SciFact: dense 0.708 against 0.777).
    /// Absent from a stored configuration: 0, hybrid loss only (what such runs trained with).
    #[serde(default)]
    pub dense_share: f32,
    /// Let the gradient flow through the dense leg's min-max range (see the module docs).
    /// Absent from a stored configuration: off, the range held constant.
    #[serde(default, skip_serializing_if = "is_false")]
    pub range_gradient: bool,
}

fn is_false(x: &bool) -> bool {
    !x
}

fn default_depth() -> usize {
    100
}

impl Default for HybridConfig {
    /// Equal weights over the depth the index serves by default (`SearchOptions::depth`).
    fn default() -> Self {
        HybridConfig {
            alpha: 0.5,
            depth: default_depth(),
            dense_share: 0.5,
            range_gradient: false,
        }
    }
}

impl HybridConfig {
    /// Checks `alpha` and `depth`.
    pub fn validate(&self) -> Result<()> {
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return Err(Error::Invalid(format!(
                "hybrid.alpha {} must lie in (0, 1]: the dense side must carry weight to learn",
                self.alpha
            )));
        }
        if self.depth == 0 {
            return Err(Error::Invalid("hybrid.depth must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&self.dense_share) {
            return Err(Error::Invalid(format!(
                "hybrid.dense_share {} must lie in [0, 1): the hybrid loss must carry weight",
                self.dense_share
            )));
        }
        Ok(())
    }
}

/// A query's BM25 list: `(document row, BM25 score)`, best first.
pub type LexicalList = Vec<(usize, f32)>;

fn min_max(list: &[(usize, f32)]) -> (f32, f32) {
    let min = list.iter().map(|x| x.1).fold(f32::INFINITY, f32::min);
    let max = list.iter().map(|x| x.1).fold(f32::NEG_INFINITY, f32::max);
    (min, max - min)
}

fn normalised(list: &[(usize, f32)]) -> HashMap<usize, f32> {
    let (min, range) = min_max(list);
    list.iter()
        .map(|&(d, s)| (d, if range > 0.0 { (s - min) / range } else { 1.0 }))
        .collect()
}

/// Min-max normalised linear fusion of two best-first lists, as the index serves it: every
/// document of either list, best first (ties by row).
pub fn fuse_min_max(
    dense: &[(usize, f32)],
    lexical: &[(usize, f32)],
    alpha: f32,
) -> Vec<(usize, f32)> {
    let (dn, ln) = (normalised(dense), normalised(lexical));
    let mut rows: Vec<usize> = dense.iter().chain(lexical).map(|x| x.0).collect();
    rows.sort_unstable();
    rows.dedup();
    let mut fused: Vec<(usize, f32)> = rows
        .into_iter()
        .map(|d| {
            let f = alpha * dn.get(&d).copied().unwrap_or(0.0)
                + (1.0 - alpha) * ln.get(&d).copied().unwrap_or(0.0);
            (d, f)
        })
        .collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    fused
}

/// One query's candidates for the hybrid loss ([`hybrid_candidates`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HybridCandidates {
    /// Ranked by the served fusion (`rank: None`: not served).
    pub candidates: Vec<Candidate>,
    /// `(1 - alpha) / alpha * ln(d)` per candidate: its BM25 evidence per unit of the dense
    /// leg's range.
    pub lexical: Vec<f64>,
    /// Rows of the dense leg's first and last documents, whose score gap is its range (`None`
    /// when the leg has fewer than two documents or no range: then BM25 only breaks ties).
    pub span: Option<(usize, usize)>,
    /// The range as retrieved.
    pub range: f64,
}

impl HybridCandidates {
    /// The offsets in dense units at the retrieved range, `range * lexical`.
    pub fn offsets(&self) -> Vec<f64> {
        self.lexical.iter().map(|w| w * self.range).collect()
    }

    /// LTRe's loss on the fused scores `t * h` (see the module docs); with `range_gradient`,
    /// the gradient flows through the range as well.
    pub fn loss(
        &self,
        q: ndarray::ArrayView1<f32>,
        docs: ArrayView2<f32>,
        temperature: f32,
        rr_cut: usize,
        weight: PairWeight,
        range_gradient: bool,
    ) -> Option<QueryLoss> {
        let loss = |offsets| {
            ltre_loss_offsets(
                q,
                &self.candidates,
                offsets,
                docs,
                temperature,
                rr_cut,
                weight,
            )
        };
        match self.span {
            Some((first, last)) if range_gradient => {
                let direction = &docs.row(first) - &docs.row(last);
                loss(Offsets::Scaled {
                    weights: &self.lexical,
                    direction: direction.view(),
                })
            }
            _ => loss(Offsets::Fixed(&self.offsets())),
        }
    }
}

/// The candidates of one query for the hybrid loss: the dense top-n `hits`, the BM25 list and
/// the judged documents `(row, grade)`, ranked by the served fusion.
pub fn hybrid_candidates(
    hits: &[Hit],
    lexical: &[(usize, f32)],
    judged: &[(usize, i32)],
    config: &HybridConfig,
) -> HybridCandidates {
    let dense: Vec<(usize, f32)> = hits
        .iter()
        .take(config.depth)
        .map(|h| (h.doc, h.score))
        .collect();
    let lexical = &lexical[..lexical.len().min(config.depth)];
    let fused = fuse_min_max(&dense, lexical, config.alpha);
    let rank: HashMap<usize, usize> = fused
        .iter()
        .enumerate()
        .map(|(r, x)| (x.0, r + 1))
        .collect();
    let ln = normalised(lexical);
    let top = dense.iter().max_by(|a, b| a.1.total_cmp(&b.1));
    let bottom = dense.iter().min_by(|a, b| a.1.total_cmp(&b.1));
    let (range, span) = match (top, bottom) {
        (Some(top), Some(bottom)) if (top.1 - bottom.1).is_finite() && top.1 > bottom.1 => {
            ((top.1 - bottom.1) as f64, Some((top.0, bottom.0)))
        }
        _ => (0.0, None),
    };
    let kappa = ((1.0 - config.alpha) / config.alpha) as f64;
    let grade: HashMap<usize, i32> = judged.iter().copied().collect();
    let mut rows: Vec<usize> = fused.iter().map(|x| x.0).collect();
    for row in hits.iter().map(|h| h.doc).chain(judged.iter().map(|j| j.0)) {
        if !rank.contains_key(&row) && !rows.contains(&row) {
            rows.push(row);
        }
    }
    let weights = rows
        .iter()
        .map(|r| kappa * ln.get(r).copied().unwrap_or(0.0) as f64)
        .collect();
    let candidates = rows
        .into_iter()
        .map(|doc| Candidate {
            doc,
            rank: rank.get(&doc).copied(),
            relevant: grade.contains_key(&doc),
            grade: grade.get(&doc).copied().unwrap_or(0),
        })
        .collect();
    HybridCandidates {
        candidates,
        lexical: weights,
        span,
        range,
    }
}

/// The served hybrid ranking of one query from its dense scores over every document
/// (`scores[row]`) and its BM25 list: the fused list, best first.
pub fn served_ranking(
    scores: ndarray::ArrayView1<f32>,
    lexical: &[(usize, f32)],
    config: &HybridConfig,
) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    let k = config.depth.min(idx.len());
    if k == 0 {
        return Vec::new();
    }
    idx.select_nth_unstable_by(k - 1, |&a, &b| scores[b].total_cmp(&scores[a]));
    idx.truncate(k);
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let dense: Vec<(usize, f32)> = idx.into_iter().map(|d| (d, scores[d])).collect();
    fuse_min_max(
        &dense,
        &lexical[..lexical.len().min(config.depth)],
        config.alpha,
    )
}

/// The served ranking's top 100 as a run entry: `(document id, fused score)`, best first.
pub fn served_run(
    scores: ndarray::ArrayView1<f32>,
    lexical: &[(usize, f32)],
    config: &HybridConfig,
    doc_ids: &[String],
) -> Vec<(String, f64)> {
    served_ranking(scores, lexical, config)
        .iter()
        .take(100)
        .map(|&(d, s)| (doc_ids[d].clone(), s as f64))
        .collect()
}

/// Checks that every BM25 list names rows of a matrix of `rows` documents.
pub fn check_lexical(lexical: &HashMap<String, LexicalList>, rows: usize) -> Result<()> {
    for (query, list) in lexical {
        if let Some(&(row, _)) = list.iter().find(|(row, _)| *row >= rows) {
            return Err(Error::Invalid(format!(
                "the BM25 list of query `{query}` names document row {row}, but there are {rows} documents"
            )));
        }
    }
    Ok(())
}

/// The fusion weights [`choose_alpha`] tries.
pub const ALPHA_GRID: [f32; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/// The fusion weight of [`ALPHA_GRID`] whose served ranking scores the best nDCG@10 on
/// `queries` (held-out queries: choosing it on training queries overfits), with every
/// weight's value. Ties keep the smaller weight. Queries are encoded once.
pub fn choose_alpha(
    tower: &mut crate::train_step::QueryTower,
    docs: ArrayView2<f32>,
    doc_ids: &[String],
    queries: &[crate::trainer::TrainQuery],
    lexical: &HashMap<String, LexicalList>,
    depth: usize,
) -> Result<(f32, Vec<(f32, f64)>)> {
    use crate::metrics::{evaluate, Metric, Run};
    if queries.is_empty() {
        return Err(Error::Invalid(
            "choosing the fusion weight needs held-out queries".into(),
        ));
    }
    check_lexical(lexical, docs.nrows())?;
    if doc_ids.len() != docs.nrows() {
        return Err(Error::Invalid(
            "document ids and vectors differ in number".into(),
        ));
    }
    // Scored once: every weight of the grid fuses the same dense scores.
    let scores = crate::trainer::embed_queries(tower, queries, 64)?.dot(&docs.t());
    let qrels: crate::data::Qrels = queries
        .iter()
        .map(|tq| (tq.id.clone(), tq.judged_ids(doc_ids)))
        .collect();
    let mut table = Vec::new();
    for alpha in ALPHA_GRID {
        let config = HybridConfig {
            alpha,
            depth,
            ..HybridConfig::default()
        };
        let mut run = Run::new();
        for (tq, row) in queries.iter().zip(scores.rows()) {
            let list = lexical.get(&tq.id).map_or(&[][..], Vec::as_slice);
            run.insert(tq.id.clone(), served_run(row, list, &config, doc_ids));
        }
        table.push((alpha, evaluate(&run, &qrels, &[Metric::Ndcg(10)]).mean[0]));
    }
    let best = table
        .iter()
        .copied()
        .fold((ALPHA_GRID[0], f64::NEG_INFINITY), |b, x| {
            if x.1 > b.1 {
                x
            } else {
                b
            }
        });
    Ok((best.0, table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::ltre_loss_weighted;
    use ndarray::{array, Array1, Array2};

    /// Every document as a hit of `q`, best first.
    fn all_hits(docs: &Array2<f32>, q: &Array1<f32>) -> Vec<Hit> {
        let q = q.as_slice().expect("contiguous");
        crate::retrieval::exact_top_k(q, docs.view(), docs.nrows())
            .unwrap()
            .remove(0)
    }

    #[test]
    fn fusion_matches_the_served_formula() {
        let dense = [(0, 0.9), (1, 0.5), (2, 0.1)];
        let lexical = [(2, 10.0), (3, 5.0), (0, 0.0)];
        let fused = fuse_min_max(&dense, &lexical, 0.5);
        // 0: .5*1 + .5*0 = .5; 1: .5*.5 = .25; 2: .5*0 + .5*1 = .5; 3: .5*.5 = .25
        assert_eq!(fused.iter().map(|x| x.0).collect::<Vec<_>>(), [0, 2, 1, 3]);
        assert!((fused[0].1 - 0.5).abs() < 1e-6 && (fused[3].1 - 0.25).abs() < 1e-6);
    }

    #[test]
    fn offsets_order_candidates_as_the_fusion_does_and_vanish_at_alpha_one() {
        let docs: Array2<f32> = array![[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]];
        let q = array![0.9f32, 0.1];
        let scores = docs.dot(&q);
        let hits = all_hits(&docs, &q);
        let lexical = vec![(2, 7.0), (3, 3.0), (1, 1.0)];
        let config = HybridConfig {
            alpha: 0.4,
            depth: 4,
            ..HybridConfig::default()
        };
        let hybrid = hybrid_candidates(&hits, &lexical, &[(2, 1)], &config);
        let (cands, offsets) = (&hybrid.candidates, hybrid.offsets());
        // h = <q,d> + offset ranks exactly like the served fusion (every doc is in the dense leg).
        let mut by_h: Vec<(usize, f64)> = cands
            .iter()
            .zip(&offsets)
            .map(|(c, o)| (c.doc, scores[c.doc] as f64 + o))
            .collect();
        by_h.sort_by(|a, b| b.1.total_cmp(&a.1));
        let served: Vec<usize> = fuse_min_max(
            &hits.iter().map(|h| (h.doc, h.score)).collect::<Vec<_>>(),
            &lexical,
            0.4,
        )
        .iter()
        .map(|x| x.0)
        .collect();
        assert_eq!(by_h.iter().map(|x| x.0).collect::<Vec<_>>(), served);
        for c in cands {
            assert_eq!(c.rank.map(|r| served[r - 1]), Some(c.doc));
        }
        // alpha = 1: plain LTRe on the dense ranking, offsets all 0.
        let dense_only = HybridConfig {
            alpha: 1.0,
            depth: 4,
            ..HybridConfig::default()
        };
        let hybrid = hybrid_candidates(&hits, &lexical, &[(2, 1)], &dense_only);
        assert!(hybrid.offsets().iter().all(|o| *o == 0.0));
        let b = ltre_loss_weighted(
            q.view(),
            &hybrid.candidates,
            docs.view(),
            20.0,
            200,
            PairWeight::ReciprocalRank,
        );
        for range_gradient in [false, true] {
            let a = hybrid.loss(
                q.view(),
                docs.view(),
                20.0,
                200,
                PairWeight::ReciprocalRank,
                range_gradient,
            );
            assert_eq!(a, b);
        }
        let bad = |alpha, depth, dense_share| HybridConfig {
            alpha,
            depth,
            dense_share,
            range_gradient: false,
        };
        assert!(bad(0.0, 1, 0.0).validate().is_err());
        assert!(bad(0.5, 0, 0.0).validate().is_err());
        assert!(bad(0.5, 1, 1.0).validate().is_err());
        assert!(bad(0.5, 1, 0.99).validate().is_ok());
        // A configuration stored before dense_share existed trains as it did: hybrid loss only.
        let old: HybridConfig = serde_json::from_str(r#"{"alpha": 0.5, "depth": 100}"#).unwrap();
        assert_eq!(old.dense_share, 0.0);
        assert!(!old.range_gradient);
    }

    #[test]
    fn range_gradient_matches_finite_differences() {
        let docs: Array2<f32> = array![
            [1.0, 0.0, 0.0],
            [0.6, 0.8, 0.0],
            [0.0, 0.6, 0.8],
            [0.3, 0.3, 0.9],
            [0.0, 1.0, 0.0]
        ];
        let q = array![0.5f32, 0.6, 0.3];
        let lexical = vec![(3, 9.0), (4, 4.0), (1, 2.0), (0, 1.0)];
        let config = HybridConfig {
            alpha: 0.5,
            depth: 5,
            ..HybridConfig::default()
        };
        let judged = [(3, 2), (2, 1)];
        // The loss at q2, the candidates (ranks, span) fixed at q, as in a training step.
        let hybrid = hybrid_candidates(&all_hits(&docs, &q), &lexical, &judged, &config);
        let loss = |q: &Array1<f32>, through: bool| {
            hybrid
                .loss(
                    q.view(),
                    docs.view(),
                    5.0,
                    200,
                    PairWeight::DeltaNdcg,
                    through,
                )
                .unwrap()
        };
        let h = 1e-3;
        for through in [false, true] {
            let analytic = loss(&q, through).grad;
            for k in 0..q.len() {
                let (mut a, mut b) = (q.clone(), q.clone());
                a[k] += h;
                b[k] -= h;
                let numeric = if through {
                    (loss(&a, true).loss - loss(&b, true).loss) / (2.0 * h)
                } else {
                    // The constant range: offsets frozen at q's.
                    let frozen = |x: &Array1<f32>| {
                        ltre_loss_offsets(
                            x.view(),
                            &hybrid.candidates,
                            Offsets::Fixed(&hybrid.offsets()),
                            docs.view(),
                            5.0,
                            200,
                            PairWeight::DeltaNdcg,
                        )
                        .unwrap()
                        .loss
                    };
                    (frozen(&a) - frozen(&b)) / (2.0 * h)
                };
                assert!(
                    (analytic[k] - numeric).abs() < 2e-3,
                    "{through}: {} vs {numeric}",
                    analytic[k]
                );
            }
        }
        // At q, both forms score the same: the span's gap is the retrieved range.
        assert!((loss(&q, true).loss - loss(&q, false).loss).abs() < 1e-6);
        assert_ne!(loss(&q, true).grad, loss(&q, false).grad);
    }

    #[test]
    fn bm25_rows_outside_the_documents_are_an_error_not_a_panic() {
        let ok: HashMap<String, LexicalList> = [("q".to_string(), vec![(3, 1.0)])].into();
        assert!(check_lexical(&ok, 4).is_ok());
        let err = check_lexical(&ok, 3).unwrap_err().to_string();
        assert!(err.contains("`q`") && err.contains("row 3"), "{err}");
    }
}
