//! Full retrieval over fixed document vectors, as LTRe training needs it.
//!
//! The index is built once from the document embeddings (which training never changes) with a
//! Faiss factory string: `"Flat"` for exact inner product, or a compressed index such as
//! `"IVF256,PQ48np"` or `"OPQ48,IVF256,PQ48np"` (the `np` suffix skips polysemous training,
//! which is about 100x slower and unused here).
//!
//! # Memory
//!
//! The document matrix is held once: owned ([`DocumentIndex::build`]) or mapped read-only from a
//! file ([`DocumentIndex::build_mapped`]). `Flat` searches that matrix directly (the same BLAS
//! product and blocking as Faiss's `IndexFlatIP`, so the same scores) instead of a Faiss copy;
//! a compressed index adds only its codes. Specs whose Faiss index stores full vectors (e.g.
//! `IVF256,Flat`, `HNSW32`) still hold their own copy.
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::os::raw::{c_char, c_int};
use std::path::Path;

use ndarray::{Array2, ArrayView2};
use sha2::{Digest, Sha256};

use faiss::{index::autotune::ParameterSpace, Index, MetricType};

use crate::{Error, Result};

extern "C" {
    // libgomp, linked with the static Faiss build.
    fn omp_set_num_threads(n: c_int);
    // The Fortran BLAS that the static Faiss build links (`-lblas`): Faiss's own exact kernel.
    fn sgemm_(
        transa: *const c_char,
        transb: *const c_char,
        m: *const c_int,
        n: *const c_int,
        k: *const c_int,
        alpha: *const f32,
        a: *const f32,
        lda: *const c_int,
        b: *const f32,
        ldb: *const c_int,
        beta: *const f32,
        c: *mut f32,
        ldc: *const c_int,
    );
}

/// Sets the OpenMP threads Faiss uses in this process. The trainer uses 1: its searches are
/// small (a batch of queries over one collection) and idle OpenMP workers spin, taking the
/// cores ONNX Runtime needs for the encoder.
pub fn set_faiss_threads(n: usize) {
    let n = n.clamp(1, c_int::MAX as usize) as c_int;
    // SAFETY: omp_set_num_threads only stores the value for later parallel regions.
    unsafe { omp_set_num_threads(n) }
}

/// One retrieved document: its row in the document matrix and its inner-product score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Row in the document matrix.
    pub doc: usize,
    /// Score from the index (approximate for compressed indexes).
    pub score: f32,
}

/// The one copy of the document matrix.
enum Vectors {
    Owned(Array2<f32>),
    /// A file of `rows * dim` little-endian f32, mapped read-only.
    Mapped {
        map: memmap2::Mmap,
        rows: usize,
        dim: usize,
    },
}

impl Vectors {
    fn view(&self) -> ArrayView2<'_, f32> {
        match self {
            Vectors::Owned(a) => a.view(),
            Vectors::Mapped { map, rows, dim } => {
                // SAFETY: `build_mapped` checked that the map holds rows * dim f32, is aligned
                // (a mapping starts on a page) and is little-endian; the map lives as long as
                // `self` and is read-only.
                unsafe { ArrayView2::from_shape_ptr((*rows, *dim), map.as_ptr().cast::<f32>()) }
            }
        }
    }
}

/// How queries are answered.
enum Search {
    /// Exact inner product over the document matrix itself (spec `Flat`).
    Exact,
    /// A Faiss index (compressed or approximate).
    Faiss(faiss::index::IndexImpl),
}

/// Fixed document vectors and the index that retrieves from them.
pub struct DocumentIndex {
    vectors: Vectors,
    search: Search,
    spec: String,
}

impl std::fmt::Debug for DocumentIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentIndex")
            .field("docs", &self.len())
            .field("spec", &self.spec)
            .field("mapped", &matches!(self.vectors, Vectors::Mapped { .. }))
            .finish()
    }
}

fn faiss_err(what: &str, e: faiss::error::Error) -> Error {
    Error::Faiss(format!("{what}: {e}"))
}

impl DocumentIndex {
    /// Builds the index. `spec` is a Faiss factory string (inner-product metric); `nprobe`
    /// applies to IVF indexes. `vectors` becomes the index's one copy of the documents.
    pub fn build(vectors: Array2<f32>, spec: &str, nprobe: usize) -> Result<DocumentIndex> {
        let vectors = if vectors.is_standard_layout() {
            vectors
        } else {
            vectors.as_standard_layout().into_owned()
        };
        Self::from_vectors(Vectors::Owned(vectors), spec, nprobe)
    }

    /// Like [`DocumentIndex::build`], with the documents read in place from `path`: `dim`
    /// little-endian f32 per row, rows back to back, no header. The file must not change while
    /// the index lives (it is mapped, not copied).
    pub fn build_mapped(
        path: &Path,
        dim: usize,
        spec: &str,
        nprobe: usize,
    ) -> Result<DocumentIndex> {
        if !cfg!(target_endian = "little") {
            return Err(Error::Invalid(
                "mapped document vectors need a little-endian machine".into(),
            ));
        }
        if dim == 0 {
            return Err(Error::Invalid("dimension 0".into()));
        }
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; the caller keeps the file unchanged (documented).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let row_bytes = dim * 4;
        if map.len() % row_bytes != 0 || map.as_ptr().align_offset(4) != 0 {
            return Err(Error::Invalid(format!(
                "{}: {} bytes is not a whole number of {dim}-d f32 rows",
                path.display(),
                map.len()
            )));
        }
        let rows = map.len() / row_bytes;
        if rows == 0 {
            return Err(Error::Invalid(format!(
                "{}: no document vectors to index",
                path.display()
            )));
        }
        Self::from_vectors(Vectors::Mapped { map, rows, dim }, spec, nprobe)
    }

    fn from_vectors(vectors: Vectors, spec: &str, nprobe: usize) -> Result<DocumentIndex> {
        let view = vectors.view();
        if view.nrows() == 0 {
            return Err(Error::Invalid("no document vectors to index".into()));
        }
        if view.iter().any(|v| !v.is_finite()) {
            return Err(Error::Invalid(
                "document vectors contain NaN or infinity".into(),
            ));
        }
        let search = if spec.trim() == "Flat" {
            Search::Exact
        } else {
            Search::Faiss(faiss_index(view, spec, nprobe)?)
        };
        Ok(DocumentIndex {
            vectors,
            search,
            spec: spec.to_string(),
        })
    }

    /// The factory string.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The document vectors (row = document).
    pub fn vectors(&self) -> ArrayView2<'_, f32> {
        self.vectors.view()
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.vectors().nrows()
    }

    /// Whether there are no documents.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Top-`k` documents for each query row, best first.
    pub fn search(&mut self, queries: ArrayView2<f32>, k: usize) -> Result<Vec<Vec<Hit>>> {
        let dim = self.vectors().ncols();
        if queries.ncols() != dim {
            return Err(Error::Invalid(format!(
                "query dimension {} does not match the documents' {dim}",
                queries.ncols(),
            )));
        }
        let k = k.min(self.len());
        let q = queries.as_standard_layout();
        let q = q
            .as_slice()
            .ok_or_else(|| Error::Invalid("queries not contiguous".into()))?;
        let index = match &mut self.search {
            Search::Exact => return exact_top_k(q, self.vectors.view(), k),
            Search::Faiss(index) => index,
        };
        let res = index.search(q, k).map_err(|e| faiss_err("search", e))?;
        Ok(res
            .labels
            .chunks(k.max(1))
            .zip(res.distances.chunks(k.max(1)))
            .map(|(labels, scores)| {
                labels
                    .iter()
                    .zip(scores)
                    .filter_map(|(l, &s)| {
                        l.get().map(|d| Hit {
                            doc: d as usize,
                            score: s,
                        })
                    })
                    .collect()
            })
            .collect())
    }

    /// sha256 of the vectors (row-major little-endian f32), to prove they were not changed.
    pub fn checksum(&self) -> String {
        vectors_checksum(self.vectors())
    }
}

/// Trains and fills a Faiss index over `view` (rows contiguous).
fn faiss_index(
    view: ArrayView2<'_, f32>,
    spec: &str,
    nprobe: usize,
) -> Result<faiss::index::IndexImpl> {
    let d = view.ncols() as u32;
    let mut index = faiss::index_factory(d, spec, MetricType::InnerProduct).map_err(|e| {
        Error::Invalid(format!(
            "Faiss index spec `{spec}` is not valid ({e}); use e.g. `Flat` or `IVF256,PQ48np`"
        ))
    })?;
    let data = view
        .to_slice()
        .ok_or_else(|| Error::Invalid("vectors not contiguous".into()))?;
    if !index.is_trained() {
        index
            .train(data)
            .map_err(|e| faiss_err("training the index", e))?;
    }
    index
        .add(data)
        .map_err(|e| faiss_err("adding vectors", e))?;
    if spec.contains("IVF") {
        let ps = ParameterSpace::new().map_err(|e| faiss_err("parameter space", e))?;
        ps.set_index_parameter(&index, "nprobe", nprobe as f64)
            .map_err(|e| faiss_err("setting nprobe", e))?;
    }
    Ok(index)
}

/// Queries and documents per BLAS product: Faiss's `distance_compute_blas_query_bs` and
/// `_database_bs` defaults, so that scores match `IndexFlatIP`'s.
const QUERY_BLOCK: usize = 4096;
const DOC_BLOCK: usize = 1024;

/// A candidate in a top-k heap; `Ord` puts the *worse* one first (lower score, then higher
/// row), so the max-heap's top is the one to evict.
#[derive(Clone, Copy, PartialEq)]
struct Worst(Hit);

impl Eq for Worst {}

impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .0
            .score
            .total_cmp(&self.0.score)
            .then(self.0.doc.cmp(&other.0.doc))
    }
}

impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Exact top `k` of `docs` for each row of `queries` (`nq * dim`, row-major), best first
/// (ties: lower row first). One pass over the documents per block of queries.
pub(crate) fn exact_top_k(
    queries: &[f32],
    docs: ArrayView2<'_, f32>,
    k: usize,
) -> Result<Vec<Vec<Hit>>> {
    let dim = docs.ncols();
    let rows = docs
        .to_slice()
        .ok_or_else(|| Error::Invalid("vectors not contiguous".into()))?;
    let nq = queries.len() / dim.max(1);
    let int = |v: usize| {
        c_int::try_from(v).map_err(|_| Error::Invalid(format!("{v} is too large for BLAS")))
    };
    let c_dim = int(dim)?;
    let mut out = Vec::with_capacity(nq);
    if k == 0 {
        out.resize(nq, Vec::new());
        return Ok(out);
    }
    let mut scores = vec![0f32; QUERY_BLOCK.min(nq) * DOC_BLOCK];
    for q0 in (0..nq).step_by(QUERY_BLOCK) {
        let qn = QUERY_BLOCK.min(nq - q0);
        let mut heaps: Vec<BinaryHeap<Worst>> =
            (0..qn).map(|_| BinaryHeap::with_capacity(k + 1)).collect();
        for d0 in (0..docs.nrows()).step_by(DOC_BLOCK) {
            let dn = DOC_BLOCK.min(docs.nrows() - d0);
            let (m, n) = (int(dn)?, int(qn)?);
            let (one, zero) = (1f32, 0f32);
            // scores[q * dn + d] = <query q0 + q, doc d0 + d>: in column-major terms
            // C (dn x qn) = Docsᵀ (dn x dim) · Q (dim x qn), as Faiss computes it.
            // SAFETY: the pointers cover dn rows of docs, qn queries and dn * qn scores, with
            // the leading dimensions given; sgemm does not keep them.
            unsafe {
                sgemm_(
                    c"T".as_ptr(),
                    c"N".as_ptr(),
                    &m,
                    &n,
                    &c_dim,
                    &one,
                    rows[d0 * dim..].as_ptr(),
                    &c_dim,
                    queries[q0 * dim..].as_ptr(),
                    &c_dim,
                    &zero,
                    scores.as_mut_ptr(),
                    &m,
                )
            };
            for (heap, block) in heaps.iter_mut().zip(scores.chunks(dn)) {
                for (j, &score) in block.iter().enumerate() {
                    let hit = Worst(Hit { doc: d0 + j, score });
                    if heap.len() < k {
                        heap.push(hit);
                    } else if heap.peek().is_some_and(|w| hit < *w) {
                        heap.pop();
                        heap.push(hit);
                    }
                }
            }
        }
        // Ascending "worse-first" order is best first.
        out.extend(
            heaps
                .into_iter()
                .map(|h| h.into_sorted_vec().into_iter().map(|w| w.0).collect()),
        );
    }
    Ok(out)
}

/// sha256 of a vector matrix (row-major little-endian f32).
pub fn vectors_checksum(vectors: ArrayView2<f32>) -> String {
    let mut h = Sha256::new();
    for v in vectors.iter() {
        h.update(v.to_le_bytes());
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn random(n: usize, d: usize, seed: u64) -> Array2<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut a = Array2::from_shape_fn((n, d), |_| rng.random::<f32>() - 0.5);
        for mut r in a.rows_mut() {
            let n = r.dot(&r).sqrt();
            r /= n;
        }
        a
    }

    #[test]
    fn flat_index_returns_exact_inner_product_order() {
        let docs = random(300, 16, 1);
        let queries = random(5, 16, 2);
        let mut idx = DocumentIndex::build(docs.clone(), "Flat", 1).unwrap();
        let hits = idx.search(queries.view(), 10).unwrap();
        for (qi, h) in hits.iter().enumerate() {
            let mut exact: Vec<(usize, f32)> = (0..300)
                .map(|d| (d, docs.row(d).dot(&queries.row(qi))))
                .collect();
            exact.sort_by(|a, b| b.1.total_cmp(&a.1));
            assert_eq!(h[0].doc, exact[0].0);
            assert!((h[0].score - exact[0].1).abs() < 1e-5);
            assert_eq!(h.len(), 10);
        }
    }

    #[test]
    fn compressed_index_finds_self_matches_and_bad_spec_is_explained() {
        let docs = random(600, 16, 3);
        let mut idx = DocumentIndex::build(docs.clone(), "IVF8,PQ4np", 8).unwrap();
        let hits = idx.search(docs.slice(ndarray::s![0..20, ..]), 5).unwrap();
        let found = hits
            .iter()
            .enumerate()
            .filter(|(i, h)| h.iter().any(|x| x.doc == *i))
            .count();
        assert!(found >= 16, "self-recall@5 {found}/20");
        let err = DocumentIndex::build(docs, "NoSuchIndex", 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("NoSuchIndex"), "{err}");
    }

    #[test]
    fn flat_matches_faiss_flat_ip_scores_and_order() {
        let docs = random(3000, 32, 5);
        // 7 queries take Faiss's sequential kernel, 40 its BLAS one (ours is always BLAS).
        for nq in [7, 40] {
            let queries = random(nq, 32, 6);
            let mut ours = DocumentIndex::build(docs.clone(), "Flat", 1).unwrap();
            let ours = ours.search(queries.view(), 50).unwrap();
            let mut flat = faiss::index_factory(32, "Flat", MetricType::InnerProduct).unwrap();
            flat.add(docs.as_slice().unwrap()).unwrap();
            let theirs = flat.search(queries.as_slice().unwrap(), 50).unwrap();
            for (q, hits) in ours.iter().enumerate() {
                assert_eq!(hits.len(), 50);
                for (r, h) in hits.iter().enumerate() {
                    let (label, score) = (theirs.labels[q * 50 + r], theirs.distances[q * 50 + r]);
                    assert_eq!(Some(h.doc as u64), label.get(), "query {q} rank {r}");
                    if nq >= 20 {
                        assert_eq!(h.score, score, "same BLAS product, same score");
                    } else {
                        assert!((h.score - score).abs() < 1e-5);
                    }
                }
            }
        }
    }

    #[test]
    fn flat_breaks_ties_by_row_and_handles_k_edges() {
        let mut docs = Array2::zeros((5, 4));
        for r in 0..5 {
            docs[[r, 0]] = if r == 3 { 2.0 } else { 1.0 };
        }
        let mut idx = DocumentIndex::build(docs, "Flat", 1).unwrap();
        let q = Array2::from_shape_vec((1, 4), vec![1.0, 0.0, 0.0, 0.0]).unwrap();
        let docs: Vec<usize> = idx.search(q.view(), 3).unwrap()[0]
            .iter()
            .map(|h| h.doc)
            .collect();
        assert_eq!(docs, [3, 0, 1]);
        assert_eq!(idx.search(q.view(), 99).unwrap()[0].len(), 5);
        assert!(idx.search(q.view(), 0).unwrap()[0].is_empty());
        let wrong = Array2::zeros((1, 3));
        assert!(idx.search(wrong.view(), 3).is_err());
    }

    #[test]
    fn mapped_vectors_search_like_owned_ones() {
        let docs = random(500, 16, 7);
        let queries = random(4, 16, 8);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docs.f32");
        let bytes: Vec<u8> = docs.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&path, &bytes).unwrap();
        for spec in ["Flat", "IVF4,Flat"] {
            let mut owned = DocumentIndex::build(docs.clone(), spec, 4).unwrap();
            let mut mapped = DocumentIndex::build_mapped(&path, 16, spec, 4).unwrap();
            assert_eq!(mapped.vectors(), docs.view());
            assert_eq!(mapped.checksum(), owned.checksum());
            assert_eq!(
                mapped.search(queries.view(), 10).unwrap(),
                owned.search(queries.view(), 10).unwrap()
            );
        }
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        let err = DocumentIndex::build_mapped(&path, 16, "Flat", 1).unwrap_err();
        assert!(err.to_string().contains("whole number"), "{err}");
        std::fs::write(&path, b"").unwrap();
        assert!(DocumentIndex::build_mapped(&path, 16, "Flat", 1).is_err());
        assert!(DocumentIndex::build_mapped(&dir.path().join("none"), 16, "Flat", 1).is_err());
    }
}
