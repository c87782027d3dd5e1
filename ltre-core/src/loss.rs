//! Training losses over fixed document vectors, each returning the loss and dL/d(query).
//!
//! Scores are `s = t * <q, d>` with temperature `t` (about 20 for L2-normalised encoders,
//! whose cosine gaps are about 0.1). The losses never touch document vectors' gradients: in
//! LTRe only the query tower learns.
//!
//! - [`ltre_loss`]: LTRe's pairwise loss in ADORE's form, weighted by the change in reciprocal
//!   rank, over the full-retrieval top-n plus relevant documents that were not retrieved.
//! - [`in_batch_loss`]: softmax cross-entropy against the other queries' positives.
//! - [`sampled_negatives_loss`]: softmax cross-entropy over one positive and sampled negatives.
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

/// One candidate document of a query in the LTRe loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Row of the document in the document matrix.
    pub doc: usize,
    /// 1-based rank in the retrieved list, or `None` when it was not retrieved (appended).
    pub rank: Option<usize>,
    /// Whether the qrels mark it relevant.
    pub relevant: bool,
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
    let t = temperature as f64;
    let scores: Vec<f64> = candidates
        .iter()
        .map(|c| t * docs.row(c.doc).dot(&q) as f64)
        .collect();
    let rr: Vec<f64> = candidates
        .iter()
        .map(|c| reciprocal_rank(c.rank, rr_cut))
        .collect();
    // Coefficient of each candidate's score in dL/ds, accumulated over pairs.
    let mut coef = vec![0f64; candidates.len()];
    let (mut loss, mut wsum, mut pairs) = (0f64, 0f64, 0usize);
    for (i, ci) in candidates.iter().enumerate().filter(|(_, c)| c.relevant) {
        for (j, _) in candidates.iter().enumerate().filter(|(_, c)| !c.relevant) {
            let w = (rr[i] - rr[j]).abs();
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
        let _ = ci;
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
            },
            Candidate {
                doc: 2,
                rank: Some(2),
                relevant: false,
            },
            Candidate {
                doc: 3,
                rank: Some(3),
                relevant: false,
            },
            Candidate {
                doc: 0,
                rank: Some(4),
                relevant: true,
            },
            Candidate {
                doc: 4,
                rank: None,
                relevant: true,
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
            },
            Candidate {
                doc: 1,
                rank: Some(30),
                relevant: false,
            },
        ];
        assert!(ltre_loss(q.view(), &cands, d.view(), 20.0, 10).is_none());
        // Only relevant candidates: nothing to learn.
        let cands = [Candidate {
            doc: 0,
            rank: Some(1),
            relevant: true,
        }];
        assert!(ltre_loss(q.view(), &cands, d.view(), 20.0, 10).is_none());
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
}
