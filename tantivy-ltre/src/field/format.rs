//! The `.ltrevec` segment component: the layout, its reader ([`SegmentVectors`]) and writer.
//!
//! Every segment gets a `.ltrevec` component (and a `.ltreann` one, see [`crate::ann`]):
//!
//! ```text
//! header   32 bytes   b"LTREDVEC", version u32, dim u32, max_doc u32, num_present u32, 8 reserved
//! bitmap   8 * ceil(max_doc / 64) bytes: u64 LE words, bit d set = doc d has a vector
//! rows     max_doc * dim f32 LE, in doc-id order; docs without a vector hold zeros
//! ```
//!
//! Rows start at a multiple of 8 bytes, so on a memory-mapped directory they are read in place
//! (zero copy) as `&[f32]`. The components are written when a segment is flushed, rewritten with
//! the doc-id remapping of a merge (deleted documents dropped), and garbage-collected with their
//! segment by Tantivy, like its own components.
use std::io::Write;

use tantivy::directory::{OwnedBytes, TerminatingWrite};
use tantivy::{DocId, Segment, TantivyError};

use crate::ann::{self, AnnOptions};

/// Extension of the per-segment vector component.
pub const VECTORS_EXTENSION: &str = "ltrevec";

const MAGIC: &[u8; 8] = b"LTREDVEC";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 32;

/// The vectors of one segment.
pub struct SegmentVectors {
    dim: usize,
    max_doc: u32,
    num_present: u32,
    present: Vec<u64>,
    rows: Rows,
}

enum Rows {
    /// The component's bytes, viewed in place as f32 (aligned, little-endian target).
    Mapped(OwnedBytes),
    /// A copy, when the bytes are not 4-byte aligned or the target is big-endian.
    Owned(Vec<f32>),
}

fn as_f32(bytes: &[u8]) -> Option<&[f32]> {
    let aligned = bytes.as_ptr().align_offset(std::mem::align_of::<f32>()) == 0;
    if cfg!(target_endian = "little") && aligned && bytes.len().is_multiple_of(4) {
        // SAFETY: the pointer is aligned for f32, the length is a whole number of f32, every bit
        // pattern is a valid f32, and the slice borrows `bytes` so it cannot outlive them.
        Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), bytes.len() / 4) })
    } else {
        None
    }
}

pub(crate) fn corrupt(message: String) -> TantivyError {
    TantivyError::DataCorruption(tantivy::error::DataCorruption::comment_only(message))
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

impl SegmentVectors {
    pub(crate) fn parse(bytes: OwnedBytes, dim: usize) -> tantivy::Result<SegmentVectors> {
        let data = bytes.as_slice();
        if data.len() < HEADER_LEN || &data[..8] != MAGIC {
            return Err(corrupt(format!(
                "{VECTORS_EXTENSION} component: bad header"
            )));
        }
        let version = read_u32(data, 8);
        if version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "{VECTORS_EXTENSION} component: format version {version}, this build reads {FORMAT_VERSION}"
            )));
        }
        let file_dim = read_u32(data, 12) as usize;
        if file_dim != dim {
            return Err(corrupt(format!(
                "{VECTORS_EXTENSION} component holds {file_dim}-d vectors, the schema says {dim}"
            )));
        }
        let max_doc = read_u32(data, 16);
        let num_present = read_u32(data, 20);
        let words = (max_doc as usize).div_ceil(64);
        let rows_at = HEADER_LEN + 8 * words;
        let expected = rows_at + max_doc as usize * dim * 4;
        if data.len() != expected {
            return Err(corrupt(format!(
                "{VECTORS_EXTENSION} component: {} bytes, expected {expected} for {max_doc} docs",
                data.len()
            )));
        }
        let present = data[HEADER_LEN..rows_at]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let row_bytes = bytes.slice(rows_at..expected);
        let rows = if as_f32(row_bytes.as_slice()).is_some() {
            Rows::Mapped(row_bytes)
        } else {
            Rows::Owned(
                row_bytes
                    .as_slice()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        };
        Ok(SegmentVectors {
            dim,
            max_doc,
            num_present,
            present,
            rows,
        })
    }

    /// The vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Documents in the segment (with or without a vector, deleted or not).
    pub fn max_doc(&self) -> u32 {
        self.max_doc
    }

    /// Documents that have a vector (deleted ones included).
    pub fn num_present(&self) -> u32 {
        self.num_present
    }

    /// Whether the vectors are read in place from the segment file (no copy).
    pub fn is_zero_copy(&self) -> bool {
        matches!(self.rows, Rows::Mapped(_))
    }

    /// All rows, `max_doc * dim` floats in doc-id order (zeros for documents without a vector).
    pub fn rows(&self) -> &[f32] {
        match &self.rows {
            Rows::Mapped(bytes) => as_f32(bytes.as_slice()).unwrap_or(&[]),
            Rows::Owned(rows) => rows,
        }
    }

    /// Whether `doc` has a vector.
    #[inline]
    pub fn has_vector(&self, doc: DocId) -> bool {
        self.present
            .get(doc as usize / 64)
            .is_some_and(|w| w & (1u64 << (doc % 64)) != 0)
    }

    /// The vector of `doc`, if it has one.
    pub fn vector(&self, doc: DocId) -> Option<&[f32]> {
        if !self.has_vector(doc) {
            return None;
        }
        let start = doc as usize * self.dim;
        self.rows().get(start..start + self.dim)
    }
}

/// Builds a segment's `.ltrevec` component from rows given in doc-id order.
pub(crate) struct VectorsWriter {
    dim: usize,
    rows: Vec<f32>,
    present: Vec<u64>,
    max_doc: usize,
}

impl VectorsWriter {
    pub(crate) fn new(dim: usize) -> VectorsWriter {
        VectorsWriter {
            dim,
            rows: Vec::new(),
            present: Vec::new(),
            max_doc: 0,
        }
    }

    pub(crate) fn push(&mut self, vector: Option<&[f32]>) {
        let doc = self.max_doc;
        if doc.is_multiple_of(64) {
            self.present.push(0);
        }
        match vector {
            Some(v) => {
                self.rows.extend_from_slice(v);
                self.present[doc / 64] |= 1u64 << (doc % 64);
            }
            None => self.rows.resize(self.rows.len() + self.dim, 0.0),
        }
        self.max_doc += 1;
    }

    /// Bytes held while the segment is being indexed.
    pub(crate) fn mem_usage(&self) -> usize {
        self.rows.capacity() * 4 + self.present.capacity() * 8
    }

    fn is_present(&self, doc: usize) -> bool {
        self.present[doc / 64] & (1u64 << (doc % 64)) != 0
    }

    pub(crate) fn write(self, segment: &Segment, ann: Option<&AnnOptions>) -> tantivy::Result<()> {
        let dim = self.dim;
        write_segment(segment, dim, ann, || {
            self.rows
                .chunks_exact(dim)
                .enumerate()
                .map(|(doc, row)| self.is_present(doc).then_some(row))
        })
    }
}

/// Writes a segment's `.ltrevec` and `.ltreann` components. `rows` yields, in doc-id order, each
/// document's vector or `None`; it is called once per pass (presence, rows, approximate index),
/// so a merge streams from the source segments instead of holding the merged rows in memory.
pub(crate) fn write_segment<'a, I, F>(
    segment: &Segment,
    dim: usize,
    ann: Option<&AnnOptions>,
    rows: F,
) -> tantivy::Result<()>
where
    I: Iterator<Item = Option<&'a [f32]>>,
    F: Fn() -> I,
{
    let mut present: Vec<u64> = Vec::new();
    let (mut max_doc, mut num_present) = (0u32, 0u32);
    for row in rows() {
        let doc = max_doc as usize;
        if doc.is_multiple_of(64) {
            present.push(0);
        }
        if row.is_some() {
            present[doc / 64] |= 1u64 << (doc % 64);
            num_present += 1;
        }
        max_doc += 1;
    }

    let component = tantivy::index::SegmentComponent::Custom(VECTORS_EXTENSION.to_string());
    let mut out = segment.open_write(component)?;
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&(dim as u32).to_le_bytes());
    header[16..20].copy_from_slice(&max_doc.to_le_bytes());
    header[20..24].copy_from_slice(&num_present.to_le_bytes());
    out.write_all(&header)?;
    for word in &present {
        out.write_all(&word.to_le_bytes())?;
    }
    let zeros = vec![0u8; dim * 4];
    let mut buffer = Vec::with_capacity(dim * 4);
    for row in rows() {
        match row {
            Some(row) => {
                buffer.clear();
                buffer.extend(row.iter().flat_map(|x| x.to_le_bytes()));
                out.write_all(&buffer)?;
            }
            None => out.write_all(&zeros)?,
        }
    }
    out.terminate()?;

    let built = match ann {
        Some(options) if num_present as usize >= options.min_docs => {
            let mut vectors = Vec::with_capacity(num_present as usize * dim);
            let mut docs = Vec::with_capacity(num_present as usize);
            for (doc, row) in rows().enumerate() {
                if let Some(row) = row {
                    vectors.extend_from_slice(row);
                    docs.push(doc as DocId);
                }
            }
            match ann::build(options, dim, &vectors) {
                Ok(bytes) => Some((docs, bytes)),
                Err(e) => {
                    // The exact scan still serves this segment; a failed build must not lose it.
                    tracing::warn!(
                        "approximate index not built for segment {}: {e}",
                        segment.id().short_uuid_string()
                    );
                    None
                }
            }
        }
        _ => None,
    };
    ann::write_component(
        segment,
        built
            .as_ref()
            .map(|(docs, bytes)| (docs.as_slice(), bytes.as_slice())),
    )
}
