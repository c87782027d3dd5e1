//! Full retrieval over fixed document vectors with Faiss, as LTRe training needs it.
//!
//! The index is built once from the document embeddings (which training never changes) with a
//! Faiss factory string: `"Flat"` for exact inner product, or a compressed index such as
//! `"IVF256,PQ48np"` or `"OPQ48,IVF256,PQ48np"` (the `np` suffix skips polysemous training,
//! which is about 100x slower and unused here).
use ndarray::{Array2, ArrayView2};
use sha2::{Digest, Sha256};

use faiss::{index::autotune::ParameterSpace, Index, MetricType};

use crate::{Error, Result};

extern "C" {
    // libgomp, linked with the static Faiss build.
    fn omp_set_num_threads(n: std::os::raw::c_int);
}

/// Sets the OpenMP threads Faiss uses in this process. The trainer uses 1: its searches are
/// small (a batch of queries over one collection) and idle OpenMP workers spin, taking the
/// cores ONNX Runtime needs for the encoder.
pub fn set_faiss_threads(n: usize) {
    let n = n.clamp(1, std::os::raw::c_int::MAX as usize) as std::os::raw::c_int;
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

/// Fixed document vectors and a Faiss index over them.
pub struct DocumentIndex {
    vectors: Array2<f32>,
    index: faiss::index::IndexImpl,
    spec: String,
}

impl std::fmt::Debug for DocumentIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentIndex")
            .field("docs", &self.vectors.nrows())
            .field("spec", &self.spec)
            .finish()
    }
}

fn faiss_err(what: &str, e: faiss::error::Error) -> Error {
    Error::Faiss(format!("{what}: {e}"))
}

impl DocumentIndex {
    /// Builds the index. `spec` is a Faiss factory string (inner-product metric); `nprobe`
    /// applies to IVF indexes.
    pub fn build(vectors: Array2<f32>, spec: &str, nprobe: usize) -> Result<DocumentIndex> {
        if vectors.nrows() == 0 {
            return Err(Error::Invalid("no document vectors to index".into()));
        }
        if vectors.iter().any(|v| !v.is_finite()) {
            return Err(Error::Invalid(
                "document vectors contain NaN or infinity".into(),
            ));
        }
        let vectors = vectors.as_standard_layout().into_owned();
        let d = vectors.ncols() as u32;
        let mut index = faiss::index_factory(d, spec, MetricType::InnerProduct).map_err(|e| {
            Error::Invalid(format!(
                "Faiss index spec `{spec}` is not valid ({e}); use e.g. `Flat` or `IVF256,PQ48np`"
            ))
        })?;
        let data = vectors
            .as_slice()
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
        Ok(DocumentIndex {
            vectors,
            index,
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
        self.vectors.nrows()
    }

    /// Whether there are no documents.
    pub fn is_empty(&self) -> bool {
        self.vectors.nrows() == 0
    }

    /// Top-`k` documents for each query row, best first.
    pub fn search(&mut self, queries: ArrayView2<f32>, k: usize) -> Result<Vec<Vec<Hit>>> {
        if queries.ncols() != self.vectors.ncols() {
            return Err(Error::Invalid(format!(
                "query dimension {} does not match the documents' {}",
                queries.ncols(),
                self.vectors.ncols()
            )));
        }
        let k = k.min(self.len());
        let q = queries.as_standard_layout();
        let q = q
            .as_slice()
            .ok_or_else(|| Error::Invalid("queries not contiguous".into()))?;
        let res = self
            .index
            .search(q, k)
            .map_err(|e| faiss_err("search", e))?;
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
        vectors_checksum(self.vectors.view())
    }
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
}
