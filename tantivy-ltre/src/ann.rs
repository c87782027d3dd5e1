//! Optional per-segment Faiss index (`.ltreann` component).
//!
//! When [`DenseFieldOptions::ann`](crate::DenseFieldOptions::ann) is set, every segment with at
//! least [`AnnOptions::min_docs`] vectors gets a Faiss index built from its rows (at flush and at
//! each merge, so it always matches the segment's doc ids). Smaller segments, and segments whose
//! build failed, keep an empty component and are scanned exactly.
//!
//! ```text
//! header   24 bytes   b"LTREDANN", version u32, kind u32 (0 = none, 1 = faiss), rows u32, 4 reserved
//! row_docs rows * u32 LE: the doc id of each Faiss label
//! index    the rest: a serialized Faiss index (`faiss::write_index`)
//! ```
//!
//! The header follows the conventions of the vector component ([`crate::field::format`]): magic,
//! little-endian u32 words, data-corruption errors.
//!
//! Faiss reads indexes from files only, so a segment's index is loaded once through a temporary
//! file and cached by segment id in its [`DenseField`](crate::DenseField).
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use faiss::index::autotune::ParameterSpace;
use faiss::index::IndexImpl;
use faiss::{Index as _, MetricType};
use serde::{Deserialize, Serialize};
use tantivy::directory::TerminatingWrite;
use tantivy::index::{SegmentComponent, SegmentId};
use tantivy::{DocId, Segment, SegmentReader, TantivyError};

use crate::error::{Error, Result};
use crate::field::format::{corrupt, read_u32};

/// Extension of the per-segment approximate-index component.
pub const ANN_EXTENSION: &str = "ltreann";

const MAGIC: &[u8; 8] = b"LTREDANN";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 24;
const KIND_NONE: u32 = 0;
const KIND_FAISS: u32 = 1;

/// How to build the per-segment approximate index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnOptions {
    /// A Faiss factory string, inner-product metric: e.g. `"HNSW32"`, `"IVF256,PQ48np"`
    /// (`np`: no polysemous training) or `"IVF256,Flat"`. IVF needs at least as many training
    /// vectors as lists (39x as many for good centroids).
    pub factory: String,
    /// Segments with fewer vectors than this are only scanned exactly.
    pub min_docs: usize,
}

impl AnnOptions {
    /// Options for `factory`, built on segments of at least `min_docs` vectors.
    pub fn new(factory: impl Into<String>, min_docs: usize) -> AnnOptions {
        AnnOptions {
            factory: factory.into(),
            min_docs,
        }
    }
}

/// Query-time parameters of the approximate index (`None` keeps the index's value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnnParams {
    /// IVF lists probed per query.
    pub nprobe: Option<usize>,
    /// HNSW candidate list size.
    pub ef_search: Option<usize>,
}

fn faiss_error(e: faiss::error::Error) -> Error {
    Error::Faiss(e.to_string())
}

/// Builds a Faiss index over `rows` (`n * dim` floats) and serializes it.
pub(crate) fn build(options: &AnnOptions, dim: usize, rows: &[f32]) -> Result<Vec<u8>> {
    let mut index = faiss::index_factory(dim as u32, &options.factory, MetricType::InnerProduct)
        .map_err(faiss_error)?;
    if !index.is_trained() {
        index.train(rows).map_err(faiss_error)?;
    }
    index.add(rows).map_err(faiss_error)?;
    let file = tempfile::NamedTempFile::new().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let path = file.path().to_string_lossy().into_owned();
    faiss::write_index(&index, &path).map_err(faiss_error)?;
    std::fs::read(file.path()).map_err(|e| Error::io(file.path(), e))
}

/// Writes a segment's `.ltreann` component: `Some((row_docs, faiss bytes))` or an empty marker.
pub(crate) fn write_component(
    segment: &Segment,
    built: Option<(&[u32], &[u8])>,
) -> tantivy::Result<()> {
    let mut out = segment.open_write(SegmentComponent::Custom(ANN_EXTENSION.to_string()))?;
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let (kind, docs, bytes): (u32, &[u32], &[u8]) = match built {
        Some((docs, bytes)) => (KIND_FAISS, docs, bytes),
        None => (KIND_NONE, &[], &[]),
    };
    header[12..16].copy_from_slice(&kind.to_le_bytes());
    header[16..20].copy_from_slice(&(docs.len() as u32).to_le_bytes());
    out.write_all(&header)?;
    for doc in docs {
        out.write_all(&doc.to_le_bytes())?;
    }
    out.write_all(bytes)?;
    out.terminate()?;
    Ok(())
}

/// A loaded per-segment Faiss index.
pub struct AnnSegment {
    row_docs: Vec<DocId>,
    // Faiss search parameters are set on the index itself, hence the lock.
    index: Mutex<IndexImpl>,
}

impl AnnSegment {
    fn load(reader: &SegmentReader) -> Result<Option<AnnSegment>> {
        let bytes = reader
            .open_read(SegmentComponent::Custom(ANN_EXTENSION.to_string()))
            .map_err(TantivyError::from)?
            .read_bytes()
            .map_err(TantivyError::from)?;
        let data = bytes.as_slice();
        let bad = |m: &str| {
            Error::Tantivy(corrupt(format!(
                "{ANN_EXTENSION} component of segment {}: {m}",
                reader.segment_id().short_uuid_string()
            )))
        };
        if data.len() < HEADER_LEN || &data[..8] != MAGIC {
            return Err(bad("bad header"));
        }
        let word = |at: usize| read_u32(data, at);
        if word(8) != FORMAT_VERSION {
            return Err(bad("unknown format version"));
        }
        if word(12) == KIND_NONE {
            return Ok(None);
        }
        let rows = word(16) as usize;
        let index_at = HEADER_LEN + 4 * rows;
        if data.len() < index_at {
            return Err(bad("truncated"));
        }
        let row_docs = data[HEADER_LEN..index_at]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let mut file =
            tempfile::NamedTempFile::new().map_err(|e| Error::io(std::env::temp_dir(), e))?;
        file.write_all(&data[index_at..])
            .map_err(|e| Error::io(file.path(), e))?;
        let index = faiss::read_index(file.path().to_string_lossy()).map_err(faiss_error)?;
        Ok(Some(AnnSegment {
            row_docs,
            index: Mutex::new(index),
        }))
    }

    /// The `k` best `(inner product, doc)` pairs according to the approximate index.
    pub fn search(&self, query: &[f32], k: usize, params: &AnnParams) -> Result<Vec<(f32, DocId)>> {
        let mut index = self
            .index
            .lock()
            .map_err(|_| Error::Faiss("index lock poisoned".into()))?;
        if params.nprobe.is_some() || params.ef_search.is_some() {
            let space = ParameterSpace::new().map_err(faiss_error)?;
            if let Some(nprobe) = params.nprobe {
                space
                    .set_index_parameter(&*index, "nprobe", nprobe as f64)
                    .map_err(|e| {
                        Error::Faiss(format!(
                            "cannot set nprobe={nprobe} (is the index IVF?): {e}"
                        ))
                    })?;
            }
            if let Some(ef) = params.ef_search {
                space
                    .set_index_parameter(&*index, "efSearch", ef as f64)
                    .map_err(|e| {
                        Error::Faiss(format!(
                            "cannot set efSearch={ef} (is the index HNSW?): {e}"
                        ))
                    })?;
            }
        }
        let k = k.min(self.row_docs.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        let result = index.search(query, k).map_err(faiss_error)?;
        Ok(result
            .distances
            .iter()
            .zip(&result.labels)
            .filter_map(|(score, label)| {
                let row = label.get()? as usize;
                self.row_docs.get(row).map(|doc| (*score, *doc))
            })
            .collect())
    }

    /// Number of vectors in the index.
    pub fn len(&self) -> usize {
        self.row_docs.len()
    }

    /// Whether the index holds no vector.
    pub fn is_empty(&self) -> bool {
        self.row_docs.is_empty()
    }
}

/// Loaded approximate indexes by segment id (`None`: the segment has none).
#[derive(Default)]
pub(crate) struct AnnCache {
    segments: Mutex<HashMap<SegmentId, Option<Arc<AnnSegment>>>>,
}

impl AnnCache {
    pub(crate) fn get(&self, reader: &SegmentReader) -> Result<Option<Arc<AnnSegment>>> {
        let id = reader.segment_id();
        let mut segments = self
            .segments
            .lock()
            .map_err(|_| Error::Invalid("ANN cache lock poisoned".into()))?;
        if let Some(entry) = segments.get(&id) {
            return Ok(entry.clone());
        }
        // Drop the entries of segments merged away since (a later load would find them anyway).
        if let Ok(alive) = reader.index().searchable_segment_ids() {
            segments.retain(|id, _| alive.contains(id));
        }
        let loaded = AnnSegment::load(reader)?.map(Arc::new);
        segments.insert(id, loaded.clone());
        Ok(loaded)
    }
}
