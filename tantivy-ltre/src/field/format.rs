//! The `.ltrevec` segment component: the layout and its reader ([`SegmentVectors`]) with the
//! integrity checks; the writer is in `write.rs`.
//!
//! Every segment gets a `.ltrevec` component (and a `.ltreann` one, see [`crate::ann`]):
//!
//! ```text
//! header   32 bytes   b"LTREDVEC", version u32 (2), dim u32, max_doc u32, num_present u32,
//!                     header checksum: the first 8 bytes of sha256(bytes 0..24)
//! bitmap   8 * ceil(max_doc / 64) bytes: u64 LE words, bit d set = doc d has a vector
//! rows     max_doc * dim f32 LE, in doc-id order; docs without a vector hold zeros
//! trailer  32 bytes   payload checksum: sha256(bitmap + rows)
//! ```
//!
//! Rows start at a multiple of 8 bytes, so on a memory-mapped directory they are read in place
//! (zero copy) as `&[f32]`. The components are written when a segment is flushed, rewritten with
//! the doc-id remapping of a merge (deleted documents dropped), and garbage-collected with their
//! segment by Tantivy, like its own components.
//!
//! # Integrity
//!
//! - Opening ([`SegmentVectors::from_bytes`], done per query) runs the cheap check: magic,
//!   version, header checksum, the dimension and `max_doc` against the schema and the segment,
//!   the file length against them, and the bitmap (its population equals `num_present`, no bit
//!   past `max_doc`). It never reads the rows: O(1) + O(max_doc / 64). A file failing it is
//!   refused, so a search over its segment fails instead of silently losing documents.
//! - The full check ([`SegmentVectors::check_payload`], run by [`crate::verify`] and before a
//!   merge copies a segment's rows) recomputes the payload checksum and checks that present rows
//!   are finite and absent rows zero. Damage in the rows passes the cheap check; scores stay
//!   finite anyway (the scan maps NaN and infinities into the finite range), and the merge
//!   refuses to copy damaged rows into a segment with a fresh checksum.
//! - Version 1 files (no checksums, written before this format) are still read, with the same
//!   structural checks; [`crate::verify`] reports them as unchecked, and the next merge of their
//!   segment rewrites them as version 2.
use sha2::{Digest, Sha256};
use tantivy::directory::OwnedBytes;
use tantivy::DocId;

pub(crate) use super::write::{write_segment, VectorsWriter};

/// Extension of the per-segment vector component.
pub const VECTORS_EXTENSION: &str = "ltrevec";

pub(crate) const MAGIC: &[u8; 8] = b"LTREDVEC";
/// The version written; version 1 (no checksums) is still read.
pub const FORMAT_VERSION: u32 = 2;
const FORMAT_V1: u32 = 1;
pub(crate) const HEADER_LEN: usize = 32;
/// Bytes of the header covered by the header checksum.
pub(crate) const HEADER_SUMMED: usize = 24;
pub(crate) const TRAILER_LEN: usize = 32;

/// What a user does about a damaged segment file.
pub(crate) const REMEDY: &str = "run `ltre-cli verify --index <index dir>` to list the damage; \
     re-index the damaged segment's documents or restore the index from a backup";

/// The vectors of one segment.
pub struct SegmentVectors {
    dim: usize,
    max_doc: u32,
    num_present: u32,
    version: u32,
    present: Vec<u64>,
    rows: Rows,
    /// The stored payload checksum (`None` for version 1 files).
    payload_sha256: Option<[u8; 32]>,
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

/// The little-endian u32 at `at`; 0 past the end (callers check lengths first).
pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    match bytes.get(at..at + 4) {
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

/// The header checksum: the first 8 bytes of sha256 of the summed header bytes.
pub(crate) fn header_checksum(header: &[u8]) -> [u8; 8] {
    let digest = Sha256::digest(header);
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// Where the parts of a file lie, from a header checked against the file length.
struct Layout {
    version: u32,
    max_doc: u32,
    num_present: u32,
    rows_at: usize,
    rows_end: usize,
}

/// The cheap check of the header and lengths; `Err` says what is wrong.
fn layout(data: &[u8], dim: usize, max_doc: Option<u32>) -> Result<Layout, String> {
    if data.len() < HEADER_LEN {
        return Err(format!(
            "{} bytes, shorter than the {HEADER_LEN}-byte header (truncated)",
            data.len()
        ));
    }
    if &data[..8] != MAGIC {
        return Err("bad magic bytes (not a vector component, or its header is damaged)".into());
    }
    let version = read_u32(data, 8);
    match version {
        FORMAT_VERSION => {
            if data[HEADER_SUMMED..HEADER_LEN] != header_checksum(&data[..HEADER_SUMMED]) {
                return Err("header checksum mismatch (the header is damaged)".into());
            }
        }
        FORMAT_V1 => {}
        other => {
            return Err(format!(
                "format version {other}; this build reads {FORMAT_V1} and {FORMAT_VERSION} \
                 (a newer ltre wrote it, or the header is damaged)"
            ))
        }
    }
    let file_dim = read_u32(data, 12) as usize;
    if file_dim != dim {
        return Err(format!("holds {file_dim}-d vectors, the schema says {dim}"));
    }
    let file_max_doc = read_u32(data, 16);
    if let Some(expected) = max_doc.filter(|m| *m != file_max_doc) {
        return Err(format!(
            "written for {file_max_doc} documents, the segment has {expected}"
        ));
    }
    let num_present = read_u32(data, 20);
    if num_present > file_max_doc {
        return Err(format!(
            "{num_present} vectors for {file_max_doc} documents"
        ));
    }
    let rows_at = HEADER_LEN + 8 * (file_max_doc as usize).div_ceil(64);
    // Checked arithmetic: the length check must precede any allocation, whatever the header says.
    let rows_len = (dim as u64)
        .checked_mul(4)
        .and_then(|row| row.checked_mul(u64::from(file_max_doc)));
    let trailer = if version == FORMAT_V1 { 0 } else { TRAILER_LEN };
    let expected = rows_len.and_then(|r| r.checked_add((rows_at + trailer) as u64));
    if expected != Some(data.len() as u64) {
        let what = if expected.is_some_and(|e| (data.len() as u64) < e) {
            "truncated"
        } else {
            "wrong length"
        };
        return Err(format!(
            "{} bytes, expected {} for {file_max_doc} documents of {dim} dimensions ({what})",
            data.len(),
            expected.map_or_else(|| "more".to_string(), |e| e.to_string()),
        ));
    }
    Ok(Layout {
        version,
        max_doc: file_max_doc,
        num_present,
        rows_at,
        rows_end: data.len() - trailer,
    })
}

impl SegmentVectors {
    /// Reads a component's bytes (Tantivy's footer already removed) after the cheap check
    /// (see the module docs); `max_doc`, when given, must match the file's. Never panics, and
    /// allocates only after the lengths were checked against the bytes.
    pub fn from_bytes(
        bytes: OwnedBytes,
        dim: usize,
        max_doc: Option<u32>,
    ) -> Result<SegmentVectors, String> {
        let data = bytes.as_slice();
        let layout = layout(data, dim, max_doc)?;
        let present: Vec<u64> = data[HEADER_LEN..layout.rows_at]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let counted: u64 = present.iter().map(|w| u64::from(w.count_ones())).sum();
        if counted != u64::from(layout.num_present) {
            return Err(format!(
                "the presence bitmap marks {counted} documents, the header says {} \
                 (the bitmap or the header is damaged)",
                layout.num_present
            ));
        }
        let tail_bits = layout.max_doc % 64;
        if tail_bits != 0 && present.last().is_some_and(|w| w >> tail_bits != 0) {
            return Err("the presence bitmap marks documents past max_doc".into());
        }
        let payload_sha256 = (layout.version != FORMAT_V1).then(|| {
            let mut sum = [0u8; 32];
            sum.copy_from_slice(&data[layout.rows_end..layout.rows_end + TRAILER_LEN]);
            sum
        });
        let row_bytes = bytes.slice(layout.rows_at..layout.rows_end);
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
            max_doc: layout.max_doc,
            num_present: layout.num_present,
            version: layout.version,
            present,
            rows,
            payload_sha256,
        })
    }

    /// The full check (O(rows)): the payload checksum, present rows finite, absent rows zero.
    /// Returns what is wrong, empty when nothing is; a version 1 file has no checksum to compare.
    pub fn check_payload(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(stored) = self.payload_sha256 {
            if self.payload_sha256_now() != stored {
                problems.push(
                    "payload checksum mismatch (the presence bitmap or the rows are damaged)"
                        .to_string(),
                );
            }
        }
        let (mut non_finite, mut stray) = (Vec::new(), Vec::new());
        let dim = self.dim.max(1);
        for (doc, row) in self.rows().chunks_exact(dim).enumerate() {
            let doc = doc as DocId;
            if self.has_vector(doc) {
                if row.iter().any(|x| !x.is_finite()) {
                    non_finite.push(doc);
                }
            } else if row.iter().any(|x| *x != 0.0) {
                stray.push(doc);
            }
        }
        if !non_finite.is_empty() {
            problems.push(format!(
                "{} vectors hold NaN or infinite values (docs {})",
                non_finite.len(),
                doc_list(&non_finite)
            ));
        }
        if !stray.is_empty() {
            problems.push(format!(
                "{} documents without a vector have non-zero rows (docs {})",
                stray.len(),
                doc_list(&stray)
            ));
        }
        problems
    }

    fn payload_sha256_now(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for word in &self.present {
            hasher.update(word.to_le_bytes());
        }
        match &self.rows {
            Rows::Mapped(bytes) => hasher.update(bytes.as_slice()),
            Rows::Owned(rows) => rows.iter().for_each(|x| hasher.update(x.to_le_bytes())),
        }
        hasher.finalize().into()
    }

    /// The file's format version (1: no checksums).
    pub fn format_version(&self) -> u32 {
        self.version
    }

    /// Whether the file carries checksums (format version 2 and later).
    pub fn has_checksums(&self) -> bool {
        self.payload_sha256.is_some()
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

/// The first few doc ids of a list, for messages.
fn doc_list(docs: &[DocId]) -> String {
    const SHOWN: usize = 10;
    let mut out = docs
        .iter()
        .take(SHOWN)
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if docs.len() > SHOWN {
        out.push_str(", ...");
    }
    out
}
