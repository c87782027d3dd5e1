//! What makes [`crate::corpus::index_corpus`] safe to rerun: recognising an interrupted index
//! creation, refusing to resume with another model, and proving that the documents already
//! indexed still carry the vectors they were given.
//!
//! The proof is a tally of the document vectors ([`VectorTally`]: a count and a wrapping sum
//! of per-document sha256 digests, so independent of order, segments and merges) stored in the
//! payload of every Tantivy commit `index_corpus` makes. The payload is written atomically with
//! the commit, so after a kill at any point the last commit's tally describes exactly the
//! committed documents; a mismatch on resume means the index changed under us.
use std::path::Path;

use sha2::{Digest, Sha256};
use tantivy::{Index, Searcher};

use crate::error::{Error, Result};
use crate::field::DenseField;
use crate::layout::{BASE_ENCODER, ENCODERS_DIR};
use crate::registry::EncoderStore;

/// Key of the tally in the commit payload (a JSON object).
const PAYLOAD_KEY: &str = "ltre_document_vectors";

/// Files `Index::create_in_dir` writes before `ltre.json` exists.
const TANTIVY_CREATION_FILES: [&str; 4] = [
    "meta.json",
    ".managed.json",
    ".tantivy-meta.lock",
    ".tantivy-writer.lock",
];

/// Whether `dir` holds exactly what a killed index creation leaves before `ltre.json` is
/// written: some of Tantivy's bookkeeping files of an index without segments and temporary
/// files of atomic writes (a kill during Tantivy's first write leaves only a `.tmpXXXXXX`), and
/// nothing else. Anything else (a segment, a user file, a subdirectory) means no.
pub(crate) fn is_interrupted_creation(dir: &Path) -> Result<bool> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut any = false;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().map_err(|e| Error::io(dir, e))?.is_file();
        if !is_file || !is_creation_artefact(&name) {
            return Ok(false);
        }
        any = true;
    }
    if !any {
        return Ok(false);
    }
    let meta = dir.join("meta.json");
    if meta.exists() {
        let text = std::fs::read_to_string(&meta).map_err(|e| Error::io(&meta, e))?;
        let segments = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("segments").and_then(|s| s.as_array()).map(Vec::len));
        // An unreadable meta.json is not ours to judge; segments mean indexed data.
        if segments != Some(0) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn is_creation_artefact(name: &str) -> bool {
    TANTIVY_CREATION_FILES.contains(&name) || is_creation_temp_file(name)
}

/// Temporary files of Tantivy's atomic writes (`.tmpXXXXXX`) and of ours (`.ltre.json.tmp-*`).
fn is_creation_temp_file(name: &str) -> bool {
    name.starts_with(".tmp") || name.starts_with(".ltre.json.")
}

/// Removes the artefacts [`is_interrupted_creation`] recognised (files only, by name).
pub(crate) fn clear_interrupted_creation(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_creation_artefact(&name) {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        }
    }
    Ok(())
}

/// Refuses to resume an index whose base encoder is not `model` (compared by the
/// `weights_sha256` of both manifests): half the corpus embedded by one model and half by
/// another would search silently wrong.
pub(crate) fn check_same_model(index_dir: &Path, model: &Path) -> Result<()> {
    let base = index_dir.join(ENCODERS_DIR).join(BASE_ENCODER);
    if !base.is_dir() {
        return Ok(());
    }
    let installed = ltre_core::manifest::Manifest::load(&base)?;
    let given = ltre_core::manifest::Manifest::load(model)?;
    if installed.weights_sha256 != given.weights_sha256 {
        return Err(Error::Invalid(format!(
            "{}: the documents of this index were embedded by another model (base encoder from `{}`, weights sha256 {}) than --model {} (weights sha256 {}); resume with the same model, or index into a new directory",
            index_dir.display(),
            installed.source,
            short(&installed.weights_sha256),
            model.display(),
            short(&given.weights_sha256)
        )));
    }
    Ok(())
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// An order-independent tally of `(id, vector)` pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct VectorTally {
    documents: u64,
    sum: [u64; 4],
}

impl VectorTally {
    /// Adds one document (`vector` `None`: a document without a vector).
    pub(crate) fn add(&mut self, id: &str, vector: Option<&[f32]>) {
        let mut hasher = Sha256::new();
        crate::checksum::hash_document(&mut hasher, id, vector);
        let digest = hasher.finalize();
        for (lane, chunk) in self.sum.iter_mut().zip(digest.chunks_exact(8)) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(chunk);
            *lane = lane.wrapping_add(u64::from_le_bytes(bytes));
        }
        self.documents += 1;
    }

    /// The commit payload holding this tally.
    pub(crate) fn to_payload(self) -> String {
        let sum: String = self.sum.iter().map(|l| format!("{l:016x}")).collect();
        serde_json::json!({ PAYLOAD_KEY: { "documents": self.documents, "sum": sum } }).to_string()
    }

    /// The tally of a commit payload; `None` for a commit made by someone else.
    fn from_payload(payload: &str) -> Option<VectorTally> {
        let value: serde_json::Value = serde_json::from_str(payload).ok()?;
        let tally = value.get(PAYLOAD_KEY)?;
        let documents = tally.get("documents")?.as_u64()?;
        let sum = tally.get("sum")?.as_str()?;
        if sum.len() != 64 {
            return None;
        }
        let mut lanes = [0u64; 4];
        for (i, lane) in lanes.iter_mut().enumerate() {
            *lane = u64::from_str_radix(sum.get(i * 16..(i + 1) * 16)?, 16).ok()?;
        }
        Some(VectorTally {
            documents,
            sum: lanes,
        })
    }

    /// The tally of every live document of `searcher`.
    pub(crate) fn of_index(
        searcher: &Searcher,
        dense: &DenseField,
        id_field: &str,
    ) -> Result<Self> {
        let mut tally = VectorTally::default();
        for segment in searcher.segment_readers() {
            let column = crate::lexical::id_column(segment, id_field)?;
            let vectors = dense.segment_vectors(segment)?;
            for doc in segment.doc_ids_alive() {
                tally.add(&crate::lexical::id_of(&column, doc)?, vectors.vector(doc));
            }
        }
        Ok(tally)
    }
}

/// Checks, before a run extends or re-records a dense index, that its committed documents
/// still carry the vectors they were given; returns their tally (the start of this run's).
///
/// The last commit's payload is the reference. An index whose last commit has no tally (built
/// before tallies, or committed by another writer) is checked against the checksum recorded
/// in `encoders/base/encoder.json` instead, when there is one.
pub(crate) fn verify_committed_vectors(
    index_dir: &Path,
    index: &Index,
    dense: &DenseField,
    id_field: &str,
) -> Result<VectorTally> {
    let searcher = index.reader()?.searcher();
    let current = VectorTally::of_index(&searcher, dense, id_field)?;
    let payload = index.load_metas()?.payload;
    let damaged = || {
        Error::Invalid(format!(
            "{}: document vectors changed since they were recorded: the index is damaged; run `ltre-cli verify --index {}` (nothing was written)",
            index_dir.display(),
            index_dir.display()
        ))
    };
    match payload.as_deref().and_then(VectorTally::from_payload) {
        Some(committed) if committed == current => Ok(current),
        Some(_) => Err(damaged()),
        None => {
            let store = EncoderStore::new(index_dir);
            if !store.encoder_dir(BASE_ENCODER)?.is_dir() {
                return Ok(current);
            }
            let recorded = store.record(BASE_ENCODER)?.document_vectors_sha256;
            if recorded.is_empty() {
                return Ok(current);
            }
            let now = crate::checksum::document_vectors_sha256(&searcher, dense, id_field)?;
            if now == recorded {
                Ok(current)
            } else {
                Err(damaged())
            }
        }
    }
}

/// Fault-injection hook: `LTRE_INDEX_PAUSE="point=ms,..."` sleeps `ms` milliseconds at the
/// named points of `index_corpus` (`tantivy-created`, `installing`, `created`, `committed`) so
/// that a test's kill can land in windows otherwise microseconds wide. Unset: does nothing.
pub(crate) mod testing_hooks {
    /// Sleeps as `LTRE_INDEX_PAUSE` asks for `point`.
    pub(crate) fn pause(point: &str) {
        let Ok(spec) = std::env::var("LTRE_INDEX_PAUSE") else {
            return;
        };
        for item in spec.split(',') {
            if let Some((name, ms)) = item.split_once('=') {
                if name.trim() == point {
                    if let Ok(ms) = ms.trim().parse::<u64>() {
                        std::thread::sleep(std::time::Duration::from_millis(ms));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_is_order_independent_and_round_trips() {
        let mut a = VectorTally::default();
        a.add("x", Some(&[1.0, 2.0]));
        a.add("y", Some(&[3.0, 4.0]));
        let mut b = VectorTally::default();
        b.add("y", Some(&[3.0, 4.0]));
        b.add("x", Some(&[1.0, 2.0]));
        assert_eq!(a, b);
        assert_eq!(VectorTally::from_payload(&a.to_payload()), Some(a));
        let mut c = VectorTally::default();
        c.add("x", Some(&[1.0, 2.5]));
        c.add("y", Some(&[3.0, 4.0]));
        assert_ne!(a, c);
        assert_eq!(VectorTally::from_payload("not json"), None);
    }

    #[test]
    fn only_creation_artefacts_are_an_interrupted_creation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("meta.json"),
            r#"{"segments":[],"opstamp":0}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join(".managed.json"), "[]").unwrap();
        assert!(is_interrupted_creation(dir.path()).unwrap());
        std::fs::write(dir.path().join(".tmpAbC123"), "").unwrap();
        assert!(is_interrupted_creation(dir.path()).unwrap());
        clear_interrupted_creation(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(!is_interrupted_creation(dir.path()).unwrap());
        std::fs::write(dir.path().join(".tmpAbC123"), "").unwrap();
        assert!(is_interrupted_creation(dir.path()).unwrap());
        std::fs::write(
            dir.path().join("meta.json"),
            r#"{"segments":[],"opstamp":0}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        assert!(!is_interrupted_creation(dir.path()).unwrap());
        std::fs::remove_file(dir.path().join("notes.txt")).unwrap();
        std::fs::write(dir.path().join("meta.json"), r#"{"segments":[{}]}"#).unwrap();
        assert!(!is_interrupted_creation(dir.path()).unwrap());
    }
}
