//! Training losses over fixed document vectors, each returning the loss and dL/d(query).
//!
//! Scores are `s = t * <q, d>` with temperature `t` (about 20 for L2-normalised encoders,
//! whose cosine gaps are about 0.1). The losses never touch document vectors' gradients: in
//! LTRe only the query tower learns.
//!
//! - [`ltre_loss`]: LTRe's pairwise loss in ADORE's form, weighted by the change in reciprocal
//!   rank, over the full-retrieval top-n plus relevant documents that were not retrieved;
//!   [`ltre_loss_weighted`] also offers the change in graded nDCG ([`PairWeight`]).
//! - [`in_batch_loss`]: softmax cross-entropy against the other queries' positives.
//! - [`sampled_negatives_loss`]: softmax cross-entropy over one positive and sampled negatives.
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

/// One candidate document of a query in the LTRe loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Row of the document in the document matrix.
    pub doc: usize,
    /// 1-based rank in the retrieved list, or `None` when it was not retrieved (appended).
    pub rank: Option<usize>,
    /// Whether the qrels mark it relevant.
    pub relevant: bool,
    /// Its qrels grade, the gain of [`PairWeight::DeltaNdcg`]: a relevant candidate counts at
    /// least 1, an irrelevant one 0 whatever this says.
    pub grade: i32,
}

impl Candidate {
    /// Linear gain, as trec_eval's nDCG (and [`crate::metrics::ndcg_at`]) uses it.
    fn gain(&self) -> f64 {
        if self.relevant {
            self.grade.max(1) as f64
        } else {
            0.0
        }
    }
}

/// How the LTRe loss weighs a (better, worse) pair of candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairWeight {
    /// ADORE's `|1/r_i - 1/r_j|` over (relevant, irrelevant) pairs; grades are ignored.
    #[default]
    ReciprocalRank,
    /// The change in graded nDCG if the two swapped places (LambdaRank's ΔnDCG) over every pair
    /// with different gains: `|(g_i - g_j) (D(r_i) - D(r_j))| / IDCG` with linear gains `g`
    /// (the grade, 0 if irrelevant) and `D(r) = 1/log2(1 + r)`, 0 beyond the rank cut or when
    /// not retrieved, as for ADORE's reciprocal rank. IDCG is over the query's relevant
    /// candidates, cut the same way (it cancels in the per-query normalisation, but keeps the
    /// weights on nDCG's scale).
    DeltaNdcg,
}

impl PairWeight {
    /// Whether this is the default (configs omit it then, so their stored form is unchanged).
    pub fn is_default(&self) -> bool {
        *self == PairWeight::default()
    }
}

/// Loss of one query and its gradient with respect to the query vector.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryLoss {
    /// Loss value (already normalised for this query).
    pub loss: f32,
    /// dL/dq.
    pub grad: Array1<f32>,
    /// Number of (relevant, irrelevant) pairs with a non-zero weight.
    pub pairs: usize,
}

impl QueryLoss {
    /// `(1 - share) * self + share * other` (loss and gradient; pairs add up). Either side
    /// missing (no pair) leaves the other as it is.
    pub fn mix(this: Option<QueryLoss>, other: Option<QueryLoss>, share: f32) -> Option<QueryLoss> {
        match (this, other) {
            (Some(a), Some(b)) => Some(QueryLoss {
                loss: (1.0 - share) * a.loss + share * b.loss,
                grad: a.grad * (1.0 - share) + b.grad * share,
                pairs: a.pairs + b.pairs,
            }),
            (a, b) => a.or(b),
        }
    }
}

fn softplus(x: f64) -> f64 {
    if x > 30.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Reciprocal rank with LTRe's cut: `1/r` for `r <= cut`, 0 beyond it or when not retrieved.
pub fn reciprocal_rank(rank: Option<usize>, cut: usize) -> f64 {
    match rank {
        Some(r) if r >= 1 && r <= cut => 1.0 / r as f64,
        _ => 0.0,
    }
}

/// nDCG's discount with the same cut: `1/log2(1 + r)` for `r <= cut`, 0 beyond it or when
/// not retrieved.
pub fn ndcg_discount(rank: Option<usize>, cut: usize) -> f64 {
    match rank {
        Some(r) if r >= 1 && r <= cut => 1.0 / (r as f64 + 1.0).log2(),
        _ => 0.0,
    }
}

/// Ideal DCG of the relevant candidates' gains, cut at `cut` (0 when none is relevant).
fn ideal_dcg(candidates: &[Candidate], cut: usize) -> f64 {
    let mut gains: Vec<f64> = candidates
        .iter()
        .filter(|c| c.relevant)
        .map(Candidate::gain)
        .collect();
    gains.sort_by(|a, b| b.total_cmp(a));
    gains
        .iter()
        .enumerate()
        .map(|(k, g)| g * ndcg_discount(Some(k + 1), cut))
        .sum()
}

/// Weight of the pair (`a` should rank above `b`) under `weight`; `idcg` is only used by
/// [`PairWeight::DeltaNdcg`] (pass [`ideal_dcg`]'s value; a non-positive one gives 0).
fn pair_weight(weight: PairWeight, a: &Candidate, b: &Candidate, cut: usize, idcg: f64) -> f64 {
    match weight {
        PairWeight::ReciprocalRank => {
            (reciprocal_rank(a.rank, cut) - reciprocal_rank(b.rank, cut)).abs()
        }
        PairWeight::DeltaNdcg if idcg > 0.0 => {
            let gains = a.gain() - b.gain();
            let discounts = ndcg_discount(a.rank, cut) - ndcg_discount(b.rank, cut);
            (gains * discounts).abs() / idcg
        }
        PairWeight::DeltaNdcg => 0.0,
    }
}

/// LTRe / ADORE pairwise loss for one query:
/// `sum_{i relevant, j irrelevant} |1/r_i - 1/r_j| * log(1 + exp(-(s_i - s_j)))`, divided by
/// the sum of the weights, with `s = t <q, d>`. Returns `None` when the query has no
/// informative pair (no relevant or no irrelevant candidate, or all weights zero).
pub fn ltre_loss(
    q: ArrayView1<f32>,
    candidates: &[Candidate],
    docs: ArrayView2<f32>,
    temperature: f32,
    rr_cut: usize,
) -> Option<QueryLoss> {
    ltre_loss_weighted(
        q,
        candidates,
        docs,
        temperature,
        rr_cut,
        PairWeight::ReciprocalRank,
    )
}

/// The LTRe pairwise loss with the pair weighting `weight`:
/// `sum_{(i, j)} w_ij * log(1 + exp(-(s_i - s_j)))` over the pairs where `i` should rank above
/// `j`, divided by the sum of the weights. [`PairWeight::ReciprocalRank`] pairs each relevant
/// candidate with each irrelevant one (this is [`ltre_loss`]); [`PairWeight::DeltaNdcg`] pairs
/// every two candidates whose gains differ, so a grade-2 document also learns to beat a grade-1
/// one. Returns `None` when no pair has a non-zero weight.
pub fn ltre_loss_weighted(
    q: ArrayView1<f32>,
    candidates: &[Candidate],
    docs: ArrayView2<f32>,
    temperature: f32,
    rr_cut: usize,
    weight: PairWeight,
) -> Option<QueryLoss> {
    ltre_pairs(q, candidates, None, docs, temperature, rr_cut, weight)
}

/// What [`ltre_loss_offsets`] adds to each candidate's inner product.
#[derive(Debug, Clone, Copy)]
pub enum Offsets<'a> {
    /// `s_i = t (<q, d_i> + o_i)`: evidence the query cannot change.
    Fixed(&'a [f64]),
    /// `s_i = t (<q, d_i> + w_i <q, v>)`: evidence on a scale the query sets, its projection
    /// on `v` (hybrid-aware LTRe's BM25 share is in units of the dense leg's range); the
    /// gradient flows through that projection too.
    Scaled {
        /// `w_i`, one per candidate.
        weights: &'a [f64],
        /// `v`.
        direction: ArrayView1<'a, f32>,
    },
}

/// [`ltre_loss_weighted`] with an offset added to each candidate's inner product (hybrid-aware
/// LTRe's BM25 share, see [`crate::hybrid`]). The gradient is the same form, plus the
/// direction's term for [`Offsets::Scaled`].
pub fn ltre_loss_offsets(
    q: ArrayView1<f32>,
    candidates: &[Candidate],
    offsets: Offsets,
    docs: ArrayView2<f32>,
    temperature: f32,
    rr_cut: usize,
    weight: PairWeight,
) -> Option<QueryLoss> {
    ltre_pairs(
        q,
        candidates,
        Some(offsets),
        docs,
        temperature,
        rr_cut,
        weight,
    )
}

fn ltre_pairs(
    q: ArrayView1<f32>,
    candidates: &[Candidate],
    offsets: Option<Offsets>,
    docs: ArrayView2<f32>,
    temperature: f32,
    rr_cut: usize,
    weight: PairWeight,
) -> Option<QueryLoss> {
    let t = temperature as f64;
    let (weights, scale) = match offsets {
        None => (None, 0.0),
        Some(Offsets::Fixed(o)) => (Some(o), 1.0),
        Some(Offsets::Scaled { weights, direction }) => (Some(weights), direction.dot(&q) as f64),
    };
    let scores: Vec<f64> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let offset = weights.and_then(|o| o.get(i)).copied().unwrap_or(0.0) * scale;
            // Without offsets, the same expression as always (bit-identical runs).
            match offsets {
                None => t * docs.row(c.doc).dot(&q) as f64,
                Some(_) => t * (docs.row(c.doc).dot(&q) as f64 + offset),
            }
        })
        .collect();
    let idcg = match weight {
        PairWeight::ReciprocalRank => 0.0,
        PairWeight::DeltaNdcg => ideal_dcg(candidates, rr_cut),
    };
    let above = |a: &Candidate, b: &Candidate| match weight {
        PairWeight::ReciprocalRank => a.relevant && !b.relevant,
        PairWeight::DeltaNdcg => a.gain() > b.gain(),
    };
    // Coefficient of each candidate's score in dL/ds, accumulated over pairs. The loops visit
    // ADORE's pairs in the same order as always, so its sums stay bit-identical.
    let mut coef = vec![0f64; candidates.len()];
    let (mut loss, mut wsum, mut pairs) = (0f64, 0f64, 0usize);
    for (i, ci) in candidates.iter().enumerate() {
        for (j, cj) in candidates.iter().enumerate() {
            if !above(ci, cj) {
                continue;
            }
            let w = pair_weight(weight, ci, cj, rr_cut, idcg);
            if w == 0.0 {
                continue;
            }
            let diff = scores[i] - scores[j];
            loss += w * softplus(-diff);
            // d softplus(-(s_i - s_j)) / d s_i = -sigmoid(-(s_i - s_j)).
            let g = w * sigmoid(-diff);
            coef[i] -= g;
            coef[j] += g;
            wsum += w;
            pairs += 1;
        }
    }
    if pairs == 0 {
        return None;
    }
    let mut grad = Array1::<f64>::zeros(q.len());
    for (c, &k) in candidates.iter().zip(&coef) {
        if k != 0.0 {
            grad.scaled_add(k * t / wsum, &docs.row(c.doc).mapv(f64::from));
        }
    }
    if let Some(Offsets::Scaled { weights, direction }) = offsets {
        let k: f64 = coef.iter().zip(weights).map(|(c, w)| c * w).sum();
        grad.scaled_add(k * t / wsum, &direction.mapv(f64::from));
    }
    Some(QueryLoss {
        loss: (loss / wsum) as f32,
        grad: grad.mapv(|x| x as f32),
        pairs,
    })
}

/// Softmax cross-entropy of the logits `t <q, d_k>` with target index 0 (`docs_rows[0]` is
/// the positive), over the rows named in `rows`.
pub fn softmax_ce(
    q: ArrayView1<f32>,
    rows: &[usize],
    docs: ArrayView2<f32>,
    temperature: f32,
) -> QueryLoss {
    let t = temperature as f64;
    let logits: Vec<f64> = rows
        .iter()
        .map(|&r| t * docs.row(r).dot(&q) as f64)
        .collect();
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let z: f64 = exps.iter().sum();
    let loss = -(logits[0] - max - z.ln());
    let mut grad = Array1::<f64>::zeros(q.len());
    for (k, (&r, e)) in rows.iter().zip(&exps).enumerate() {
        let p = e / z - if k == 0 { 1.0 } else { 0.0 };
        grad.scaled_add(p * t, &docs.row(r).mapv(f64::from));
    }
    QueryLoss {
        loss: loss as f32,
        grad: grad.mapv(|x| x as f32),
        pairs: rows.len() - 1,
    }
}

/// In-batch negatives: query `b`'s positive is `positives[b]`; the other queries' positives
/// are its negatives (columns whose document equals its own positive or is relevant to it are
/// masked by the caller through `is_relevant`). Returns per-query losses.
pub fn in_batch_loss(
    queries: ArrayView2<f32>,
    positives: &[usize],
    docs: ArrayView2<f32>,
    temperature: f32,
    is_relevant: impl Fn(usize, usize) -> bool,
) -> Vec<QueryLoss> {
    (0..queries.nrows())
        .map(|b| {
            let mut rows = vec![positives[b]];
            rows.extend(
                positives
                    .iter()
                    .enumerate()
                    .filter(|&(c, &d)| c != b && d != positives[b] && !is_relevant(b, d))
                    .map(|(_, &d)| d),
            );
            softmax_ce(queries.row(b), &rows, docs, temperature)
        })
        .collect()
}

/// Sampled negatives: cross-entropy over `[positive, negatives...]`.
pub fn sampled_negatives_loss(
    q: ArrayView1<f32>,
    positive: usize,
    negatives: &[usize],
    docs: ArrayView2<f32>,
    temperature: f32,
) -> QueryLoss {
    let mut rows = Vec::with_capacity(negatives.len() + 1);
    rows.push(positive);
    rows.extend_from_slice(negatives);
    softmax_ce(q, &rows, docs, temperature)
}

/// Stacks per-query gradients into the `[batch, dim]` upstream gradient for the training graph,
/// averaging over the queries that produced a loss (rows of the others stay zero).
pub fn batch_gradient(per_query: &[Option<QueryLoss>], dim: usize) -> (f32, Array2<f32>) {
    let n = per_query.iter().filter(|l| l.is_some()).count().max(1) as f32;
    let mut grad = Array2::<f32>::zeros((per_query.len(), dim));
    let mut loss = 0.0;
    for (b, l) in per_query.iter().enumerate() {
        if let Some(l) = l {
            grad.row_mut(b).assign(&(&l.grad / n));
            loss += l.loss / n;
        }
    }
    (loss, grad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn docs() -> Array2<f32> {
        array![
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.6, 0.8, 0.0],
            [0.0, 0.6, 0.8],
            [0.3, 0.3, 0.9]
        ]
    }

    fn numeric_grad(f: impl Fn(ArrayView1<f32>) -> f32, q: &Array1<f32>) -> Array1<f32> {
        let h = 1e-3;
        Array1::from_iter((0..q.len()).map(|k| {
            let mut a = q.clone();
            let mut b = q.clone();
            a[k] += h;
            b[k] -= h;
            (f(a.view()) - f(b.view())) / (2.0 * h)
        }))
    }

    #[test]
    fn ltre_gradient_matches_finite_differences_and_points_the_right_way() {
        let d = docs();
        let q = array![0.1f32, 0.9, 0.4];
        // The relevant document 0 is ranked 4th, below three irrelevant ones.
        let cands = [
            Candidate {
                doc: 1,
                rank: Some(1),
                relevant: false,
                grade: 0,
            },
            Candidate {
                doc: 2,
                rank: Some(2),
                relevant: false,
                grade: 0,
            },
            Candidate {
                doc: 3,
                rank: Some(3),
                relevant: false,
                grade: 0,
            },
            Candidate {
                doc: 0,
                rank: Some(4),
                relevant: true,
                grade: 1,
            },
            Candidate {
                doc: 4,
                rank: None,
                relevant: true,
                grade: 1,
            },
        ];
        let l = ltre_loss(q.view(), &cands, d.view(), 5.0, 200).unwrap();
        let num = numeric_grad(
            |q| ltre_loss(q, &cands, d.view(), 5.0, 200).unwrap().loss,
            &q,
        );
        for (a, b) in l.grad.iter().zip(num.iter()) {
            assert!((a - b).abs() < 1e-3, "analytic {a} vs numeric {b}");
        }
        // A small step against the gradient raises the relevant document's score relative to
        // the irrelevant ones (the sign the authors' first public code had wrong).
        let q2 = &q - &(&l.grad * 0.05);
        let margin = |q: &Array1<f32>| {
            d.row(0).dot(q) - d.row(1).dot(q).max(d.row(2).dot(q)).max(d.row(3).dot(q))
        };
        assert!(
            margin(&q2) > margin(&q),
            "{} -> {}",
            margin(&q),
            margin(&q2)
        );
        assert!(
            ltre_loss(q2.view(), &cands, d.view(), 5.0, 200)
                .unwrap()
                .loss
                < l.loss
        );
    }

    #[test]
    fn weights_follow_reciprocal_rank_change_and_cut() {
        assert_eq!(reciprocal_rank(Some(4), 10), 0.25);
        assert_eq!(reciprocal_rank(Some(11), 10), 0.0);
        assert_eq!(reciprocal_rank(None, 10), 0.0);
        let d = docs();
        let q = array![0.5f32, 0.5, 0.5];
        // Both beyond the cut: weight 0, so no informative pair.
        let cands = [
            Candidate {
                doc: 0,
                rank: Some(20),
                relevant: true,
                grade: 1,
            },
            Candidate {
                doc: 1,
                rank: Some(30),
                relevant: false,
                grade: 0,
            },
        ];
        assert!(ltre_loss(q.view(), &cands, d.view(), 20.0, 10).is_none());
        // Only relevant candidates: nothing to learn.
        let cands = [Candidate {
            doc: 0,
            rank: Some(1),
            relevant: true,
            grade: 1,
        }];
        assert!(ltre_loss(q.view(), &cands, d.view(), 20.0, 10).is_none());
    }

    fn cand(doc: usize, rank: Option<usize>, grade: i32) -> Candidate {
        Candidate {
            doc,
            rank,
            relevant: grade >= 1,
            grade,
        }
    }

    #[test]
    fn delta_ndcg_gradient_matches_finite_differences_and_points_the_right_way() {
        let d = docs();
        let q = array![0.1f32, 0.9, 0.4];
        // Grade 2 ranked 4th below three irrelevant documents; grade 1 not retrieved.
        let cands = [
            cand(1, Some(1), 0),
            cand(2, Some(2), 0),
            cand(3, Some(3), 0),
            cand(0, Some(4), 2),
            cand(4, None, 1),
        ];
        let loss = |q: ArrayView1<f32>| {
            ltre_loss_weighted(q, &cands, d.view(), 5.0, 200, PairWeight::DeltaNdcg).unwrap()
        };
        let l = loss(q.view());
        // 3 x 2 (relevant, irrelevant) pairs plus (grade 2, grade 1).
        assert_eq!(l.pairs, 7);
        let num = numeric_grad(|q| loss(q).loss, &q);
        for (a, b) in l.grad.iter().zip(num.iter()) {
            assert!((a - b).abs() < 1e-3, "analytic {a} vs numeric {b}");
        }
        let q2 = &q - &(&l.grad * 0.05);
        let margin = |q: &Array1<f32>| {
            d.row(0).dot(q) - d.row(1).dot(q).max(d.row(2).dot(q)).max(d.row(3).dot(q))
        };
        assert!(margin(&q2) > margin(&q));
        assert!(loss(q2.view()).loss < l.loss);
    }

    #[test]
    fn delta_ndcg_orders_grades_that_adore_ignores() {
        let d = docs();
        let q = array![0.9f32, 0.1, 0.2];
        // Grade 1 at rank 1 above grade 2 at rank 2: only the graded weighting has a pair.
        let cands = [cand(0, Some(1), 1), cand(3, Some(2), 2)];
        assert!(ltre_loss(q.view(), &cands, d.view(), 5.0, 10).is_none());
        let l =
            ltre_loss_weighted(q.view(), &cands, d.view(), 5.0, 10, PairWeight::DeltaNdcg).unwrap();
        assert_eq!(l.pairs, 1);
        let q2 = &q - &(&l.grad * 0.05);
        let gap = |q: &Array1<f32>| d.row(3).dot(q) - d.row(0).dot(q);
        assert!(
            gap(&q2) > gap(&q),
            "the grade-2 document gains on the grade-1 one"
        );
        // IDCG = 2/log2(2) + 1/log2(3); swapping ranks 1 and 2 changes DCG by (2-1)(1 - 1/log2 3).
        let idcg = 2.0 + 1.0 / 3f64.log2();
        let w = pair_weight(PairWeight::DeltaNdcg, &cands[1], &cands[0], 10, idcg);
        assert!((w - (1.0 - 1.0 / 3f64.log2()) / idcg).abs() < 1e-12);
    }

    #[test]
    fn delta_ndcg_on_binary_grades_is_adore_with_ndcg_discount() {
        assert_eq!(ndcg_discount(Some(1), 10), 1.0);
        assert_eq!(ndcg_discount(Some(3), 10), 0.5);
        assert_eq!(ndcg_discount(Some(11), 10), 0.0);
        assert_eq!(ndcg_discount(None, 10), 0.0);
        // Binary grades: the same (relevant, irrelevant) pairs; the weight is the change in
        // discount, log2 instead of reciprocal, over IDCG (1 for one relevant document).
        let rel = cand(0, Some(7), 1);
        for (rank, cut) in [(Some(1), 10), (Some(3), 10), (Some(12), 10), (None, 10)] {
            let irr = cand(1, rank, 0);
            let adore = pair_weight(PairWeight::ReciprocalRank, &rel, &irr, cut, 0.0);
            let ndcg = pair_weight(PairWeight::DeltaNdcg, &rel, &irr, cut, 1.0);
            let expect_adore = (1.0 / 7.0 - reciprocal_rank(rank, cut)).abs();
            let expect_ndcg = (1.0 / 8f64.log2() - ndcg_discount(rank, cut)).abs();
            assert!((adore - expect_adore).abs() < 1e-12);
            assert!((ndcg - expect_ndcg).abs() < 1e-12);
        }
        let d = docs();
        let q = array![0.3f32, 0.2, 0.8];
        let cands = [
            cand(1, Some(1), 0),
            cand(0, Some(2), 1),
            cand(2, Some(3), 0),
            cand(4, None, 1),
        ];
        let adore = ltre_loss(q.view(), &cands, d.view(), 5.0, 10).unwrap();
        let graded =
            ltre_loss_weighted(q.view(), &cands, d.view(), 5.0, 10, PairWeight::DeltaNdcg).unwrap();
        assert_eq!(adore.pairs, graded.pairs);
        // One pair: the per-query normalisation makes both weightings the same loss.
        let one = [cand(1, Some(1), 0), cand(0, Some(2), 1)];
        let a = ltre_loss(q.view(), &one, d.view(), 5.0, 10).unwrap();
        let b =
            ltre_loss_weighted(q.view(), &one, d.view(), 5.0, 10, PairWeight::DeltaNdcg).unwrap();
        assert!((a.loss - b.loss).abs() < 1e-6);
        for (x, y) in a.grad.iter().zip(b.grad.iter()) {
            assert!((x - y).abs() < 1e-6);
        }
        // Both beyond the cut: no informative pair either way.
        let far = [cand(0, Some(20), 2), cand(1, Some(30), 0)];
        assert!(
            ltre_loss_weighted(q.view(), &far, d.view(), 5.0, 10, PairWeight::DeltaNdcg).is_none()
        );
    }

    #[test]
    fn softmax_losses_match_finite_differences() {
        let d = docs();
        let q = array![0.2f32, -0.3, 0.7];
        let l = sampled_negatives_loss(q.view(), 4, &[0, 1, 2], d.view(), 3.0);
        let num = numeric_grad(
            |q| sampled_negatives_loss(q, 4, &[0, 1, 2], d.view(), 3.0).loss,
            &q,
        );
        for (a, b) in l.grad.iter().zip(num.iter()) {
            assert!((a - b).abs() < 1e-3, "analytic {a} vs numeric {b}");
        }
        let qs = array![[0.2f32, -0.3, 0.7], [0.9, 0.1, 0.0]];
        let losses = in_batch_loss(qs.view(), &[4, 0], d.view(), 3.0, |_, _| false);
        assert_eq!(losses[0].pairs, 1);
        let direct = sampled_negatives_loss(qs.row(1), 0, &[4], d.view(), 3.0);
        assert_eq!(losses[1], direct);
        // A shared positive is never its own negative.
        let losses = in_batch_loss(qs.view(), &[4, 4], d.view(), 3.0, |_, _| false);
        assert_eq!(losses[0].pairs, 0);
    }

    #[test]
    fn batch_gradient_averages_over_queries_with_a_loss() {
        let a = QueryLoss {
            loss: 2.0,
            grad: array![1.0, 2.0],
            pairs: 1,
        };
        let (loss, g) = batch_gradient(&[Some(a), None], 2);
        assert_eq!(loss, 2.0);
        assert_eq!(g, array![[1.0, 2.0], [0.0, 0.0]]);
    }

    #[test]
    fn mix_weighs_loss_and_gradient_and_keeps_a_lone_side() {
        let a = QueryLoss {
            loss: 1.0,
            grad: array![1.0, 0.0],
            pairs: 2,
        };
        let b = QueryLoss {
            loss: 3.0,
            grad: array![0.0, 2.0],
            pairs: 5,
        };
        let m = QueryLoss::mix(Some(a.clone()), Some(b.clone()), 0.25).unwrap();
        assert_eq!(m.loss, 1.5);
        assert_eq!(m.grad, array![0.75, 0.5]);
        assert_eq!(m.pairs, 7);
        assert_eq!(QueryLoss::mix(None, Some(b.clone()), 0.25), Some(b));
        assert_eq!(QueryLoss::mix(Some(a.clone()), None, 0.25), Some(a));
        assert_eq!(QueryLoss::mix(None, None, 0.25), None);
    }
}
