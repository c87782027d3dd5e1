//! Exact inner-product scan: the dot-product kernel and a bounded top-k heap.
use std::cmp::Ordering;
use std::collections::BinaryHeap;

use tantivy::DocId;

/// Lanes of the dot-product kernel: 16 independent accumulators let the compiler keep two AVX
/// (or four SSE) registers busy without a loop-carried dependency on one sum.
const LANES: usize = 16;

/// Inner product of two equally long vectors.
///
/// Written over fixed-size chunks so that the hot loop has no bounds checks and auto-vectorises;
/// the result differs from a sequential sum only by floating-point reassociation.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let (a_chunks, a_rest) = a.as_chunks::<LANES>();
    let (b_chunks, b_rest) = b.as_chunks::<LANES>();
    let mut acc = [0f32; LANES];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut sum = 0f32;
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum += x * y;
    }
    // Pairwise reduction of the lanes: same rounding whatever the target width.
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] += acc[i + width];
        }
        width /= 2;
    }
    acc[0] + sum
}

/// A scored document ordered by score, then by lower doc id first (deterministic ties).
#[derive(Clone, Copy, Debug)]
struct Entry {
    score: f32,
    doc: DocId,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // "Greater" = better: higher score, then lower doc id.
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.doc.cmp(&self.doc))
    }
}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}

/// Keeps the k best `(score, doc)` pairs seen so far.
pub struct TopK {
    k: usize,
    // Min-heap of the current best k (the root is the worst of them).
    heap: BinaryHeap<std::cmp::Reverse<Entry>>,
}

impl TopK {
    /// An empty collector of at most `k` entries.
    pub fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(4096) + 1),
        }
    }

    /// Offers a candidate.
    #[inline]
    pub fn push(&mut self, score: f32, doc: DocId) {
        if self.k == 0 {
            return;
        }
        let entry = Entry { score, doc };
        if self.heap.len() < self.k {
            self.heap.push(std::cmp::Reverse(entry));
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if entry > worst.0 {
                *worst = std::cmp::Reverse(entry);
            }
        }
    }

    /// The kept entries, best first.
    pub fn into_sorted_vec(self) -> Vec<(f32, DocId)> {
        // `into_sorted_vec` sorts ascending by `Reverse`, i.e. best first.
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|e| (e.0.score, e.0.doc))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive_sum_for_all_tail_lengths() {
        for n in [0, 1, 7, 16, 17, 33, 384] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - naive).abs() < 1e-4, "n={n}");
        }
    }

    #[test]
    fn top_k_keeps_best_with_low_doc_ids_on_ties() {
        let mut top = TopK::new(3);
        for (doc, score) in [0.5, 0.9, 0.1, 0.9, 0.7, 0.2].into_iter().enumerate() {
            top.push(score, doc as DocId);
        }
        assert_eq!(top.into_sorted_vec(), vec![(0.9, 1), (0.9, 3), (0.7, 4)]);
        assert!(TopK::new(0).into_sorted_vec().is_empty());
    }
}
