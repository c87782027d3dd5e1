//! Writes a segment's `.ltrevec` component (layout in [`super::format`]) and its `.ltreann`.
use std::io::Write;

use sha2::{Digest, Sha256};
use tantivy::directory::TerminatingWrite;
use tantivy::{DocId, Segment};

use super::format::{
    header_checksum, FORMAT_VERSION, HEADER_LEN, HEADER_SUMMED, MAGIC, VECTORS_EXTENSION,
};
use crate::ann::{self, AnnOptions};

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

/// The file's header: its fields, then their checksum.
fn header(dim: usize, max_doc: u32, num_present: u32) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&(dim as u32).to_le_bytes());
    header[16..20].copy_from_slice(&max_doc.to_le_bytes());
    header[20..24].copy_from_slice(&num_present.to_le_bytes());
    let sum = header_checksum(&header[..HEADER_SUMMED]);
    header[HEADER_SUMMED..].copy_from_slice(&sum);
    header
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
    out.write_all(&header(dim, max_doc, num_present))?;
    // The payload checksum is computed as the payload streams out, and written after it.
    let mut payload = Sha256::new();
    for word in &present {
        let bytes = word.to_le_bytes();
        payload.update(bytes);
        out.write_all(&bytes)?;
    }
    let zeros = vec![0u8; dim * 4];
    let mut buffer = Vec::with_capacity(dim * 4);
    for row in rows() {
        let bytes = match row {
            Some(row) => {
                buffer.clear();
                buffer.extend(row.iter().flat_map(|x| x.to_le_bytes()));
                &buffer
            }
            None => &zeros,
        };
        payload.update(bytes);
        out.write_all(bytes)?;
    }
    out.write_all(&payload.finalize())?;
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
