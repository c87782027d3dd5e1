//! Optional per-segment Faiss index (`.ltreann` component).
//!
//! When [`DenseFieldOptions::ann`](crate::DenseFieldOptions::ann) is set, every segment with at
//! least [`AnnOptions::min_docs`] vectors gets a Faiss index built from its rows (at flush and at
//! each merge, so it always matches the segment's doc ids). Smaller segments, and segments whose
//! build failed, keep an empty component and are scanned exactly.
//!
//! ```text
//! header   24 bytes   b"LTREDANN", version u32 (2), kind u32 (0 = none, 1 = faiss), rows u32,
//!                     4 reserved
//! row_docs rows * u32 LE: the doc id of each Faiss label, strictly increasing
//! index    a serialized Faiss index (`faiss::write_index`)
//! trailer  32 bytes   sha256 of everything before it
//! ```
//!
//! The header follows the conventions of the vector component ([`crate::field::format`]): magic,
//! little-endian u32 words, data-corruption errors naming the segment, the file and the remedy.
//!
//! # Integrity
//!
//! A component is loaded once per segment, so loading runs the full check ([`check_bytes`]):
//! the checksum, lengths checked against the file before anything is allocated, doc ids
//! increasing and below the segment's `max_doc`; Faiss only ever sees checksummed bytes, and the
//! loaded index must hold `rows` vectors. Version 1 files (no trailer) are still read with the
//! structural checks; [`crate::verify`] reports them as unchecked.
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
use sha2::{Digest, Sha256};
use tantivy::directory::TerminatingWrite;
use tantivy::index::{SegmentComponent, SegmentId};
use tantivy::{DocId, Segment, SegmentReader};

use crate::error::{Error, Result};
use crate::field::format::read_u32;
use crate::field::{damaged, open_component};

/// Extension of the per-segment approximate-index component.
pub const ANN_EXTENSION: &str = "ltreann";

const MAGIC: &[u8; 8] = b"LTREDANN";
const FORMAT_VERSION: u32 = 2;
const FORMAT_V1: u32 = 1;
const HEADER_LEN: usize = 24;
const TRAILER_LEN: usize = 32;
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
    /// HNSW graph construction breadth (Faiss `efConstruction`; `None`: Faiss's default, 40).
    /// The factory string cannot set it, and a graph built too narrow caps the recall no
    /// `efSearch` recovers: on 1M clustered vectors HNSW32 stopped at 0.91 recall@10 with the
    /// default (BENCHMARKS.md). Refused at build time for an index that is not HNSW.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef_construction: Option<usize>,
}

impl AnnOptions {
    /// Options for `factory`, built on segments of at least `min_docs` vectors.
    pub fn new(factory: impl Into<String>, min_docs: usize) -> AnnOptions {
        AnnOptions {
            factory: factory.into(),
            min_docs,
            ef_construction: None,
        }
    }

    /// Sets the HNSW graph's construction breadth ([`AnnOptions::ef_construction`]).
    pub fn with_ef_construction(mut self, ef_construction: usize) -> AnnOptions {
        self.ef_construction = Some(ef_construction);
        self
    }

    /// Checks that Faiss understands the options for vectors of `dim` dimensions, so that a bad
    /// factory string fails when the index is created rather than at every segment build
    /// (where a failure leaves the segment to the exact scan, with only a warning).
    pub fn validate(&self, dim: usize) -> Result<()> {
        self.empty_index(dim).map(drop)
    }

    /// The untrained, empty Faiss index of these options.
    fn empty_index(&self, dim: usize) -> Result<IndexImpl> {
        let index = faiss::index_factory(dim as u32, &self.factory, MetricType::InnerProduct)
            .map_err(|e| {
                Error::Invalid(format!(
                    "Faiss factory string `{}` for {dim}-d vectors: {e}",
                    self.factory
                ))
            })?;
        if let Some(ef) = self.ef_construction {
            // Set before any vector is added: the graph is built as vectors arrive.
            ParameterSpace::new()
                .and_then(|space| space.set_index_parameter(&index, "efConstruction", ef as f64))
                .map_err(|e| {
                    Error::Invalid(format!(
                        "cannot set efConstruction={ef} on `{}` (is the index HNSW?): {e}",
                        self.factory
                    ))
                })?;
        }
        Ok(index)
    }
}

/// Query-time parameters of the approximate index (`None` keeps the index's value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnnParams {
    /// IVF lists probed per query.
    pub nprobe: Option<usize>,
    /// HNSW candidate list size.
    pub ef_search: Option<usize>,
    /// Candidates fetched from the approximate index per segment (`None`: k). Every candidate
    /// is re-scored exactly from the segment's stored vector, so hits always carry the true
    /// inner product and rank like the exact scan's: a quantised index (`PQ`, `SQ`) only has
    /// to put the true top k among its `rerank` best, which a few hundred candidates do where
    /// its own top k does not (BENCHMARKS.md: IVF-PQ recall@10).
    pub rerank: Option<usize>,
}

impl AnnParams {
    /// The number of candidates to fetch for a top `k` (at least `k`).
    pub fn candidates(&self, k: usize) -> usize {
        self.rerank.unwrap_or(k).max(k)
    }
}

fn faiss_error(e: faiss::error::Error) -> Error {
    Error::Faiss(e.to_string())
}

/// Builds a Faiss index over `rows` (`n * dim` floats) and serializes it.
pub(crate) fn build(options: &AnnOptions, dim: usize, rows: &[f32]) -> Result<Vec<u8>> {
    let mut index = options.empty_index(dim)?;
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
    let mut sum = Sha256::new();
    sum.update(header);
    out.write_all(&header)?;
    for doc in docs {
        sum.update(doc.to_le_bytes());
        out.write_all(&doc.to_le_bytes())?;
    }
    sum.update(bytes);
    out.write_all(bytes)?;
    out.write_all(&sum.finalize())?;
    out.terminate()?;
    Ok(())
}

/// A loaded per-segment Faiss index.
pub struct AnnSegment {
    row_docs: Vec<DocId>,
    // Faiss search parameters are set on the index itself, hence the lock.
    index: Mutex<IndexImpl>,
}

/// A checked `.ltreann` body (Tantivy's footer removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnBytes<'a> {
    /// The format version (1: no checksum).
    pub version: u32,
    /// The doc id of each Faiss label; `None` when the segment has no approximate index.
    pub row_docs: Option<Vec<DocId>>,
    /// The serialized Faiss index (empty without one).
    pub faiss: &'a [u8],
}

/// Checks a `.ltreann` body: header, checksum (version 2), lengths, doc ids increasing and below
/// `max_doc` when given. Never panics; allocates only after the lengths were checked.
pub fn check_bytes(data: &[u8], max_doc: Option<u32>) -> std::result::Result<AnnBytes<'_>, String> {
    if data.len() < HEADER_LEN {
        return Err(format!(
            "{} bytes, shorter than the {HEADER_LEN}-byte header (truncated)",
            data.len()
        ));
    }
    if &data[..8] != MAGIC {
        return Err("bad magic bytes (the header is damaged)".into());
    }
    let version = read_u32(data, 8);
    let body = match version {
        FORMAT_VERSION => {
            let Some(end) = data
                .len()
                .checked_sub(TRAILER_LEN)
                .filter(|e| *e >= HEADER_LEN)
            else {
                return Err("no room for the checksum (truncated)".into());
            };
            if Sha256::digest(&data[..end])[..] != data[end..] {
                return Err("checksum mismatch (the file is damaged)".into());
            }
            &data[..end]
        }
        FORMAT_V1 => data,
        other => {
            return Err(format!(
                "format version {other}; this build reads {FORMAT_V1} and {FORMAT_VERSION}"
            ))
        }
    };
    let (kind, rows) = (read_u32(body, 12), read_u32(body, 16) as usize);
    match kind {
        KIND_NONE if body.len() == HEADER_LEN && rows == 0 => {
            return Ok(AnnBytes {
                version,
                row_docs: None,
                faiss: &[],
            })
        }
        KIND_NONE => return Err("an empty marker with contents".into()),
        KIND_FAISS => {}
        other => return Err(format!("unknown index kind {other}")),
    }
    let index_at = rows
        .checked_mul(4)
        .and_then(|r| r.checked_add(HEADER_LEN))
        .filter(|at| *at < body.len())
        .ok_or_else(|| format!("{rows} rows do not fit in {} bytes (truncated)", body.len()))?;
    let row_docs: Vec<DocId> = body[HEADER_LEN..index_at]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if row_docs.windows(2).any(|w| w[0] >= w[1]) {
        return Err("doc ids out of order".into());
    }
    if let (Some(max_doc), Some(last)) = (max_doc, row_docs.last()) {
        if *last >= max_doc {
            return Err(format!(
                "doc id {last} past the segment's {max_doc} documents"
            ));
        }
    }
    Ok(AnnBytes {
        version,
        row_docs: Some(row_docs),
        faiss: &body[index_at..],
    })
}

impl AnnSegment {
    fn load(field: &str, reader: &SegmentReader) -> Result<Option<AnnSegment>> {
        let bad = |what: String| {
            Error::Tantivy(damaged(field, reader.segment_id(), ANN_EXTENSION, &what))
        };
        let bytes = open_component(reader, ANN_EXTENSION).map_err(bad)?;
        AnnSegment::from_checked(
            check_bytes(bytes.as_slice(), Some(reader.max_doc())).map_err(bad)?,
        )
        .map_err(|e| bad(e.to_string()))
    }

    /// Loads checked bytes into Faiss; the index must hold one vector per doc id.
    pub(crate) fn from_checked(checked: AnnBytes<'_>) -> Result<Option<AnnSegment>> {
        let Some(row_docs) = checked.row_docs else {
            return Ok(None);
        };
        let mut file =
            tempfile::NamedTempFile::new().map_err(|e| Error::io(std::env::temp_dir(), e))?;
        file.write_all(checked.faiss)
            .map_err(|e| Error::io(file.path(), e))?;
        let index = faiss::read_index(file.path().to_string_lossy()).map_err(faiss_error)?;
        if index.ntotal() != row_docs.len() as u64 {
            return Err(Error::Faiss(format!(
                "the Faiss index holds {} vectors for {} doc ids",
                index.ntotal(),
                row_docs.len()
            )));
        }
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
pub(crate) struct AnnCache {
    /// The dense field's name, for error messages.
    field: String,
    segments: Mutex<HashMap<SegmentId, Option<Arc<AnnSegment>>>>,
}

impl AnnCache {
    pub(crate) fn new(field: String) -> AnnCache {
        AnnCache {
            field,
            segments: Mutex::default(),
        }
    }

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
        let loaded = AnnSegment::load(&self.field, reader)?.map(Arc::new);
        segments.insert(id, loaded.clone());
        Ok(loaded)
    }
}
