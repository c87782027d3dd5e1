//! Exact inner-product scan: the dot-product kernel and a bounded top-k heap.
use std::cmp::Ordering;
use std::collections::BinaryHeap;

use tantivy::DocId;

/// Lanes of the dot-product kernel: 16 independent accumulators let the compiler keep two AVX
/// (or four SSE) registers busy without a loop-carried dependency on one sum.
const LANES: usize = 16;

/// Inner product of two equally long vectors.
///
/// On x86-64 CPUs with AVX2 and FMA (detected at run time; the default Rust target only assumes
/// SSE2) this runs [`x86::dot_avx2_fma`]; elsewhere [`dot_portable`]. The two differ only by
/// floating-point rounding (fused multiply-adds, another summation order).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        return unsafe { x86::dot_avx2_fma(a, b) };
    }
    dot_portable(a, b)
}

/// Scores `rows` (`dim` floats each, contiguous) against `query` into `out` (one score per
/// row; `out.len()` rows are scored).
///
/// The CPU features are checked once per call rather than once per row.
pub fn dot_rows(query: &[f32], rows: &[f32], dim: usize, out: &mut [f32]) {
    assert_eq!(query.len(), dim, "query length must equal dim");
    assert!(rows.len() >= out.len() * dim, "rows too short for out");
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: the CPU supports AVX2 and FMA; lengths checked above.
        unsafe { x86::dot_rows_avx2_fma(query, rows, dim, out) };
        return;
    }
    for (score, row) in out.iter_mut().zip(rows.chunks_exact(dim)) {
        *score = dot_portable(query, row);
    }
}

/// A score that is safe to rank: NaN (from `inf - inf` after an overflow) becomes the lowest
/// finite score, infinities saturate to the finite range, and `-0.0` becomes `0.0` (so that
/// `total_cmp` and `partial_cmp` agree).
#[inline]
pub fn finite(score: f32) -> f32 {
    if score.is_nan() {
        f32::MIN
    } else {
        score.clamp(f32::MIN, f32::MAX) + 0.0
    }
}

/// Rows scored per kernel call: the block of scores stays in L1 between the kernel and the heap.
const BLOCK: usize = 256;

/// The `k` best rows of `rows` by inner product with `query`, best first, as `(score, row)`;
/// rows for which `keep` is false are skipped (deleted documents, documents without a vector).
///
/// Scores go through [`finite`]. `keep` is only asked about rows that would enter the top k, so
/// it costs nothing for most rows of a long scan.
pub fn top_k_rows(
    query: &[f32],
    rows: &[f32],
    dim: usize,
    k: usize,
    mut keep: impl FnMut(DocId) -> bool,
) -> Vec<(f32, DocId)> {
    let mut top = TopK::new(k);
    if k == 0 {
        return Vec::new();
    }
    for_each_block(query, rows, dim, |start, scores| {
        for (i, score) in scores.iter().enumerate() {
            let doc = start + i as DocId;
            if top.accepts(*score) && keep(doc) {
                top.push(*score, doc);
            }
        }
        true
    });
    top.into_sorted_vec()
}

/// Scores `rows` a block at a time, calling `on_block(first_row, scores)` (scores already
/// [`finite`]) until it returns false.
pub fn for_each_block(
    query: &[f32],
    rows: &[f32],
    dim: usize,
    mut on_block: impl FnMut(DocId, &[f32]) -> bool,
) {
    let mut scores = [0f32; BLOCK];
    let n = rows.len().checked_div(dim).unwrap_or(0);
    let mut start = 0;
    while start < n {
        let len = BLOCK.min(n - start);
        let block = &mut scores[..len];
        dot_rows(query, &rows[start * dim..(start + len) * dim], dim, block);
        block.iter_mut().for_each(|s| *s = finite(*s));
        if !on_block(start as DocId, block) {
            return;
        }
        start += len;
    }
}

/// Inner product over fixed-size chunks, for any target.
///
/// Written over fixed-size chunks so that the hot loop has no bounds checks and auto-vectorises;
/// the result differs from a sequential sum only by floating-point reassociation.
#[inline]
pub fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
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

/// AVX2 + FMA kernels, chosen at run time by [`dot`] and [`dot_rows`].
#[cfg(target_arch = "x86_64")]
pub mod x86 {
    use std::arch::x86_64::*;
    use std::sync::atomic::{AtomicU8, Ordering};

    /// Whether the CPU has AVX2 and FMA (detected once).
    #[inline]
    pub fn available() -> bool {
        // 0 = unknown, 1 = no, 2 = yes.
        static STATE: AtomicU8 = AtomicU8::new(0);
        match STATE.load(Ordering::Relaxed) {
            2 => true,
            1 => false,
            _ => {
                let yes = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
                STATE.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
                yes
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)))
    }

    /// [`super::dot`] with 256-bit fused multiply-adds, four independent accumulators.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA ([`available`]).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_avx2_fma(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY (all loads): i + 8 <= n on every load, and both slices hold n floats.
        while i + 32 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let at = i + 8 * j;
                *acc = unsafe {
                    _mm256_fmadd_ps(
                        _mm256_loadu_ps(pa.add(at)),
                        _mm256_loadu_ps(pb.add(at)),
                        *acc,
                    )
                };
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = unsafe {
                _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i)),
                    _mm256_loadu_ps(pb.add(i)),
                    acc[0],
                )
            };
            i += 8;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut total = hsum(sum);
        for j in i..n {
            total += a[j] * b[j];
        }
        total
    }

    /// [`super::dot_rows`] with [`dot_avx2_fma`] inlined per row.
    ///
    /// (Four rows per pass sharing each query load measured slower: the scan is bound by
    /// reading the rows, not by the query loads.)
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA, `query.len() == dim` and
    /// `rows.len() >= out.len() * dim`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_rows_avx2_fma(query: &[f32], rows: &[f32], dim: usize, out: &mut [f32]) {
        for (score, row) in out.iter_mut().zip(rows.chunks_exact(dim)) {
            // SAFETY: same CPU features as this function.
            *score = unsafe { dot_avx2_fma(query, row) };
        }
    }
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
    /// Score of the worst kept entry once `k` are kept (`-inf` before): anything below it is
    /// rejected without touching the heap, which is most candidates of a long scan.
    threshold: f32,
    // Min-heap of the current best k (the root is the worst of them).
    heap: BinaryHeap<std::cmp::Reverse<Entry>>,
}

impl TopK {
    /// An empty collector of at most `k` entries.
    pub fn new(k: usize) -> TopK {
        TopK {
            k,
            threshold: f32::NEG_INFINITY,
            heap: BinaryHeap::with_capacity(k.min(4096) + 1),
        }
    }

    /// Whether a candidate with this score could enter the top k now.
    #[inline]
    pub fn accepts(&self, score: f32) -> bool {
        self.k > 0 && score >= self.threshold
    }

    /// The score a candidate must beat once k are kept (`f32::MIN` before): what Tantivy's
    /// `for_each_pruning` callbacks return.
    #[inline]
    pub fn threshold(&self) -> f32 {
        self.threshold.max(f32::MIN)
    }

    /// The number of kept entries.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Offers a candidate.
    #[inline]
    pub fn push(&mut self, score: f32, doc: DocId) {
        if self.k == 0 {
            return;
        }
        if score < self.threshold {
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
        if self.heap.len() == self.k {
            self.threshold = self.heap.peek().map_or(f32::NEG_INFINITY, |w| w.0.score);
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

    fn random(n: usize, seed: u32) -> Vec<f32> {
        // A small LCG: deterministic, no dependency.
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn dispatched_kernels_match_portable() {
        for dim in [1, 3, 8, 17, 32, 33, 384] {
            let query = random(dim, 1);
            for n in [0, 1, 3, 4, 5, 9] {
                let rows = random(n * dim, dim as u32 + n as u32);
                let mut out = vec![f32::NAN; n];
                dot_rows(&query, &rows, dim, &mut out);
                for (score, row) in out.iter().zip(rows.chunks_exact(dim)) {
                    let portable = dot_portable(&query, row);
                    assert!((score - portable).abs() < 1e-5, "dim {dim}, n {n}");
                    assert!((dot(&query, row) - portable).abs() < 1e-5, "dim {dim}");
                }
            }
        }
    }

    #[test]
    fn top_k_rows_matches_a_full_sort() {
        let (dim, n) = (384, 1000);
        let query = random(dim, 7);
        let rows = random(n * dim, 8);
        let keep = |doc: DocId| doc % 7 != 3;
        let mut expected: Vec<(f32, DocId)> = rows
            .chunks_exact(dim)
            .enumerate()
            .map(|(doc, row)| (dot_portable(&query, row), doc as DocId))
            .filter(|(_, doc)| keep(*doc))
            .collect();
        expected.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let got = top_k_rows(&query, &rows, dim, 10, keep);
        let docs = |v: &[(f32, DocId)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
        assert_eq!(docs(&got), docs(&expected[..10]));
        for (g, e) in got.iter().zip(&expected) {
            assert!((g.0 - e.0).abs() < 1e-5);
        }
        assert!(top_k_rows(&query, &rows, dim, 0, keep).is_empty());
        assert_eq!(
            top_k_rows(&query, &rows[..dim * 3], dim, 10, |_| true).len(),
            3
        );
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

    #[test]
    fn finite_scores_only() {
        assert_eq!(finite(f32::NAN), f32::MIN);
        assert_eq!(finite(f32::INFINITY), f32::MAX);
        assert_eq!(finite(f32::NEG_INFINITY), f32::MIN);
        assert!(finite(-0.0).is_sign_positive());
        assert_eq!(finite(1.5), 1.5);
        // Overflowing rows rank, they do not poison the heap.
        let query = [1e30f32, 1e30];
        let rows = [1e30f32, 1e30, -1e30, 1e30, 1.0, 0.0];
        let top = top_k_rows(&query, &rows, 2, 3, |_| true);
        assert!(top.iter().all(|(s, _)| s.is_finite()));
        assert_eq!(top[0].1, 0);
    }
}
