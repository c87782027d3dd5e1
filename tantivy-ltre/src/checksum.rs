//! Document-vector checksums: proof that training a query encoder left the documents alone.
//!
//! [`document_vectors_sha256`] hashes every live document's id and vector in id order, so it
//! is independent of merges and indexing order; [`read_all_vectors`] returns the same vectors
//! as a matrix (the fixed document side of LTRe training).
use ndarray::Array2;
use sha2::{Digest, Sha256};
use tantivy::Searcher;

use crate::error::{Error, Result};
use crate::field::DenseField;
use crate::lexical::{id_column, id_of};

/// The live documents of `searcher` as `(id, vector)` in ascending id order; `None` for a
/// document without a vector.
fn live_vectors(
    searcher: &Searcher,
    dense: &DenseField,
    id_field: &str,
    mut each: impl FnMut(String, Option<&[f32]>),
) -> Result<()> {
    // Sorted by the id so the order survives merges and re-indexing in another order; segment
    // and doc ids do not.
    let mut docs: Vec<(String, u32, u32)> = Vec::new();
    let mut vectors = Vec::new();
    for (ord, segment) in searcher.segment_readers().iter().enumerate() {
        let column = id_column(segment, id_field)?;
        for doc in segment.doc_ids_alive() {
            docs.push((id_of(&column, doc)?, ord as u32, doc));
        }
        vectors.push(dense.segment_vectors(segment)?);
    }
    docs.sort_unstable();
    for (id, ord, doc) in docs {
        each(id, vectors[ord as usize].vector(doc));
    }
    Ok(())
}

/// sha256 (hex) of the vectors of every live document, in ascending order of the id field.
///
/// Each document contributes its id (length-prefixed), a presence byte and its vector as
/// little-endian f32. Ordering by id rather than by segment and doc id makes the checksum
/// independent of merges and of the indexing order; it changes only when a document, its id or
/// its vector changes. Training a query encoder never touches it: record it before and after
/// to prove the documents are unchanged.
pub fn document_vectors_sha256(
    searcher: &Searcher,
    dense: &DenseField,
    id_field: &str,
) -> Result<String> {
    let mut hasher = Sha256::new();
    live_vectors(searcher, dense, id_field, |id, vector| {
        hash_document(&mut hasher, &id, vector)
    })?;
    Ok(hex::encode(hasher.finalize()))
}

/// The ids and vectors of every live document with a vector, in ascending id order (the order
/// of [`document_vectors_sha256`]); row `i` of the matrix belongs to `ids[i]`.
pub fn read_all_vectors(
    searcher: &Searcher,
    dense: &DenseField,
    id_field: &str,
) -> Result<(Vec<String>, Array2<f32>)> {
    let (mut ids, mut flat) = (Vec::new(), Vec::new());
    live_vectors(searcher, dense, id_field, |id, vector| {
        if let Some(v) = vector {
            ids.push(id);
            flat.extend_from_slice(v);
        }
    })?;
    let matrix = Array2::from_shape_vec((ids.len(), dense.dim()), flat)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    Ok((ids, matrix))
}

/// Feeds one document (its id, and its vector or a marker for none) to `hasher`: the one
/// encoding of a document that the index checksum and the per-commit tally both hash.
pub(crate) fn hash_document(hasher: &mut Sha256, id: &str, vector: Option<&[f32]>) {
    hasher.update((id.len() as u64).to_le_bytes());
    hasher.update(id.as_bytes());
    match vector {
        Some(v) => {
            hasher.update([1u8]);
            for x in v {
                hasher.update(x.to_le_bytes());
            }
        }
        None => hasher.update([0u8]),
    }
}
