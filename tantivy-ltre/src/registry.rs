//! The query encoders stored in an index: [`EncoderStore`] installs exported model directories
//! under `INDEX/encoders/<id>`, names the active one in `ACTIVE` and logs activations and
//! rollbacks in `HISTORY`; [`EncoderRecord`] is each encoder's `encoder.json`.
//!
//! Documents are always embedded by `encoders/base`: LTRe trains only the query tower, so the
//! stored vectors stay valid whichever query encoder is active. Trained encoders are installed
//! as immutable versions (`ltre-0001`, `ltre-0002`, ...) with [`EncoderStore::install_version`];
//! [`EncoderStore::activate`] and [`EncoderStore::rollback`] switch between them, and a
//! [`LiveEncoder`](crate::live::LiveEncoder) picks the switch up without a restart.
//!
//! Changes are serialised across processes and threads by a lock on `encoders/.lock`;
//! `HISTORY` is the source of truth and `ACTIVE` is derived from it, repaired by the next
//! change after a crash between the two writes; `HISTORY` is bounded. The commit protocol and
//! its guarantees are in [`crate::registry_log`].
//!
//! ```no_run
//! # fn main() -> tantivy_ltre::Result<()> {
//! use tantivy_ltre::registry::{EncoderRecord, EncoderStore};
//! let store = EncoderStore::new(std::path::Path::new("scifact-index"));
//! let mut record = EncoderRecord::new("base");
//! record.parent = Some("base".into());
//! record.metrics.insert("dev_ndcg10".into(), 0.71);
//! let id = store.install_version(std::path::Path::new("trained-model"), record)?;
//! store.activate(&id)?;
//! store.rollback()?; // back to `base`
//! # Ok(())
//! # }
//! ```
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ltre_core::fsutil::{copy_dir, remove_stale_siblings, replace_dir_atomically, unique_sibling};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::{
    write_atomically, ACTIVE_FILE, ENCODERS_DIR, HISTORY_FILE, RECORD_FILE, VERSION_PREFIX,
};
use crate::registry_log::{activation_stack, read_active, read_history, Journal};

/// Hidden file recording the last version number given, so that ids stay unique after the
/// version directory is deleted and its HISTORY entries are compacted away.
const LAST_VERSION_FILE: &str = ".last-version";
/// Prefix of the staging directories of [`EncoderStore::install_version`].
const STAGING_NAME: &str = "version";

/// `encoders/<id>/encoder.json`: where an encoder comes from and how good it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderRecord {
    /// The encoder id (set by [`EncoderStore::install_version`]).
    pub id: String,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// The encoder it was trained from (`None` for the base encoder).
    pub parent: Option<String>,
    /// The checkpoint the weights started from (the manifest's `source`).
    pub base_model: String,
    /// sha256 of the training data (queries + qrels), hex.
    #[serde(default)]
    pub training_data_sha256: Option<String>,
    /// The training configuration.
    #[serde(default)]
    pub config: serde_json::Value,
    /// Measurements, e.g. `dev_ndcg10`, `baseline_dev_ndcg10`.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// [`document_vectors_sha256`](crate::checksum::document_vectors_sha256) of the index when the encoder was trained: the documents
    /// this query encoder was trained against.
    #[serde(default)]
    pub document_vectors_sha256: String,
    /// Free text.
    #[serde(default)]
    pub note: Option<String>,
}

impl EncoderRecord {
    /// A record created now from `base_model`, every other field empty.
    pub fn new(base_model: impl Into<String>) -> EncoderRecord {
        EncoderRecord {
            id: String::new(),
            created: now_rfc3339(),
            parent: None,
            base_model: base_model.into(),
            training_data_sha256: None,
            config: serde_json::Value::Null,
            metrics: BTreeMap::new(),
            document_vectors_sha256: String::new(),
            note: None,
        }
    }
}

/// One line of `encoders/HISTORY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The encoder made active.
    pub id: String,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// `activate` or `rollback`.
    #[serde(default = "activate_action")]
    pub action: String,
}

fn activate_action() -> String {
    "activate".into()
}

/// `secs` since the Unix epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub fn rfc3339_utc(secs: u64) -> String {
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

pub(crate) fn now_rfc3339() -> String {
    rfc3339_utc(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// The encoders stored in an index directory.
#[derive(Debug, Clone)]
pub struct EncoderStore {
    dir: PathBuf,
}

fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "encoder id `{id}`: use letters, digits, `-`, `_` and `.` only"
        )))
    }
}

impl EncoderStore {
    /// The store of the index at `index_dir`.
    pub fn new(index_dir: &Path) -> EncoderStore {
        EncoderStore {
            dir: index_dir.join(ENCODERS_DIR),
        }
    }

    /// The directory of encoder `id` (whether or not it exists).
    pub fn encoder_dir(&self, id: &str) -> Result<PathBuf> {
        check_id(id)?;
        Ok(self.dir.join(id))
    }

    /// Copies the exported model directory `model_dir` to `encoders/<id>` (replacing it).
    pub fn install(&self, id: &str, model_dir: &Path) -> Result<PathBuf> {
        let target = self.encoder_dir(id)?;
        if !model_dir.is_dir() {
            return Err(Error::Invalid(format!(
                "{}: not a model directory",
                model_dir.display()
            )));
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        // Staged in a hidden sibling (skipped by `list`) and renamed into place once complete.
        replace_dir_atomically(&target, |staging| copy_dir(model_dir, staging))?;
        Ok(target)
    }

    /// The ids of the stored encoders, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !name.starts_with('.') {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The id of the active query encoder (`encoders/ACTIVE`; takes no lock). If ACTIVE is
    /// missing (a process killed during the first activation) HISTORY's last entry is the
    /// active one.
    pub fn active_id(&self) -> Result<String> {
        let path = self.dir.join(ACTIVE_FILE);
        let id = match read_active(&self.dir)? {
            Some(id) => id,
            None => match read_history(&self.dir)?.pop() {
                Some(entry) => entry.id,
                None => {
                    return Err(Error::io(
                        &path,
                        std::io::Error::new(std::io::ErrorKind::NotFound, "no active encoder"),
                    ))
                }
            },
        };
        check_id(&id).map_err(|e| Error::BadFile {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(id)
    }

    /// The directory of the active query encoder.
    pub fn active_dir(&self) -> Result<PathBuf> {
        let id = self.active_id()?;
        let dir = self.encoder_dir(&id)?;
        if !dir.is_dir() {
            return Err(Error::BadFile {
                path: self.dir.join(ACTIVE_FILE),
                message: format!("active encoder `{id}` has no directory {}", dir.display()),
            });
        }
        Ok(dir)
    }

    /// Makes `id` the active query encoder; same as [`EncoderStore::activate`].
    pub fn set_active(&self, id: &str) -> Result<()> {
        self.activate(id)
    }

    /// Makes `id` the active query encoder: under the registry lock, commits it to `HISTORY`,
    /// then replaces `ACTIVE` (readers see the old or the new id, never a partial file).
    /// Activating the encoder that is already active does nothing.
    pub fn activate(&self, id: &str) -> Result<()> {
        let dir = self.encoder_dir(id)?;
        if !dir.is_dir() {
            return Err(Error::Invalid(format!(
                "no encoder `{id}` in {}; `ltre-cli encoder list` shows the installed ones",
                self.dir.display()
            )));
        }
        let mut journal = Journal::open(&self.dir)?;
        let current = journal.active.clone();
        if current.as_deref() == Some(id) {
            return Ok(());
        }
        let mut new = Vec::new();
        // An index activated before HISTORY existed: log its current encoder first, so that
        // a rollback can return to it.
        if let (Some(current), true) = (current, journal.entries.is_empty()) {
            if check_id(&current).is_ok() {
                new.push(history_entry(&current, "activate"));
            }
        }
        new.push(history_entry(id, "activate"));
        journal.commit(new)
    }

    /// Takes the registry lock and rewrites `ACTIVE` from `HISTORY` if a process was killed
    /// between the two writes; returns whether it did. Every change does this first.
    pub fn repair(&self) -> Result<bool> {
        Ok(Journal::open(&self.dir)?.repaired)
    }

    /// [`EncoderStore::activate`] after checking that encoder `id` embeds in `dim` dimensions
    /// (the index's vectors): a query encoder must embed into the documents' space.
    pub fn activate_checked(&self, id: &str, dim: usize) -> Result<()> {
        let dir = self.encoder_dir(id)?;
        if !dir.is_dir() {
            return Err(Error::Invalid(format!(
                "no encoder `{id}` in {}; `ltre-cli encoder list` shows the stored ones",
                self.dir.display()
            )));
        }
        let manifest = ltre_core::manifest::Manifest::load(&dir)?;
        if manifest.embedding_dim != dim {
            return Err(Error::Invalid(format!(
                "encoder `{id}` embeds in {} dimensions but the index stores {dim}-d vectors",
                manifest.embedding_dim
            )));
        }
        self.activate(id)
    }

    /// Re-activates the encoder that was active before the current one and returns its id.
    ///
    /// Rollbacks undo activations in turn: after activating `a`, `b`, `c`, two rollbacks give
    /// `b` then `a`, and a third fails.
    ///
    /// Under the registry lock, so concurrent rollbacks each pop one step. HISTORY is bounded
    /// (see [`crate::registry_log`]): at least the last 499 steps can be rolled back.
    pub fn rollback(&self) -> Result<String> {
        let mut journal = Journal::open(&self.dir)?;
        let mut stack: Vec<String> = activation_stack(&journal.entries)
            .into_iter()
            .map(|e| e.id.clone())
            .collect();
        let current = journal.active.clone().ok_or_else(|| {
            Error::Invalid(format!(
                "no active encoder in {}; nothing to roll back",
                self.dir.display()
            ))
        })?;
        if stack.last() != Some(&current) {
            // ACTIVE was written behind the log's back (an older tool): it is the current one.
            stack.push(current.clone());
        }
        stack.pop();
        let previous = stack.pop().ok_or_else(|| {
            Error::Invalid(format!(
                "no encoder was active before `{current}` (see {}); nothing to roll back to",
                self.dir.join(HISTORY_FILE).display()
            ))
        })?;
        if !self.encoder_dir(&previous)?.is_dir() {
            return Err(Error::Invalid(format!(
                "the previous encoder `{previous}` was removed from {}; activate another one",
                self.dir.display()
            )));
        }
        journal.commit(vec![history_entry(&previous, "rollback")])?;
        Ok(previous)
    }

    /// The entries of `HISTORY`, oldest first (empty if there is none; at most
    /// [`HISTORY_LIMIT`](crate::registry_log::HISTORY_LIMIT)).
    pub fn history(&self) -> Result<Vec<HistoryEntry>> {
        read_history(&self.dir)
    }

    /// Installs the exported model directory `model_dir` as a new version `ltre-NNNN` with
    /// `record` as its `encoder.json` (its `id` is overwritten) and returns the id. Ids are
    /// never reused, even after a version is deleted; the copy is staged and renamed into
    /// place, so a version directory is always complete. The new version is not activated.
    pub fn install_version(&self, model_dir: &Path, mut record: EncoderRecord) -> Result<String> {
        if !model_dir.join(ltre_core::manifest::MANIFEST_FILE).is_file() {
            return Err(Error::Invalid(format!(
                "{}: not an exported model directory (no manifest.json)",
                model_dir.display()
            )));
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        // A hidden sibling (skipped by `list`), renamed to the version id once complete.
        let staging = unique_sibling(&self.dir.join(STAGING_NAME), "staging");
        // The copy runs unlocked; numbering and the rename under the lock.
        let result = copy_dir(model_dir, &staging)
            .map_err(Error::from)
            .and_then(|()| {
                let journal = Journal::open(&self.dir)?;
                remove_stale_siblings(&self.dir.join(STAGING_NAME));
                let mut number = self.last_version_number(&journal.entries)? + 1;
                loop {
                    let id = format!("{VERSION_PREFIX}{number:04}");
                    record.id = id.clone();
                    write_record(&staging.join(RECORD_FILE), &record)?;
                    let target = self.dir.join(&id);
                    // rename() refuses an existing non-empty directory: a concurrent install that
                    // took this id makes us try the next one.
                    match std::fs::rename(&staging, &target) {
                        Ok(()) => {
                            write_atomically(
                                &self.dir.join(LAST_VERSION_FILE),
                                format!("{number}\n").as_bytes(),
                            )?;
                            return Ok(id);
                        }
                        // A directory made by hand (or by an older, unlocked tool): skip its id.
                        Err(_) if target.exists() => number += 1,
                        Err(e) => return Err(Error::io(&target, e)),
                    }
                }
            });
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result
    }

    /// The highest version number used so far (in a directory, in `history` or recorded in
    /// `.last-version`), 0 if none.
    fn last_version_number(&self, history: &[HistoryEntry]) -> Result<u32> {
        let recorded = match std::fs::read_to_string(self.dir.join(LAST_VERSION_FILE)) {
            Ok(text) => text.trim().parse::<u32>().unwrap_or(0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(Error::io(self.dir.join(LAST_VERSION_FILE), e)),
        };
        let listed = self.list()?;
        let ids = listed.iter().chain(history.iter().map(|e| &e.id));
        Ok(ids
            .filter_map(|id| id.strip_prefix(VERSION_PREFIX)?.parse::<u32>().ok())
            .chain([recorded])
            .max()
            .unwrap_or(0))
    }

    /// The record of encoder `id`. A directory without `encoder.json` (the base encoder of
    /// an index built before records existed) gets one synthesised from its manifest.
    pub fn record(&self, id: &str) -> Result<EncoderRecord> {
        let dir = self.encoder_dir(id)?;
        if !dir.is_dir() {
            return Err(Error::Invalid(format!(
                "no encoder `{id}` in {}",
                self.dir.display()
            )));
        }
        let path = dir.join(RECORD_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| Error::BadFile {
                path: path.clone(),
                message: format!("invalid encoder record: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let manifest = ltre_core::manifest::Manifest::load(&dir)?;
                let created = std::fs::metadata(&dir)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or_else(String::new, |d| rfc3339_utc(d.as_secs()));
                Ok(EncoderRecord {
                    id: id.into(),
                    created,
                    note: Some("no encoder.json; synthesised from manifest.json".into()),
                    ..EncoderRecord::new(manifest.source)
                })
            }
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Writes `record` as the `encoder.json` of encoder `record.id` (e.g. the base encoder
    /// after indexing, once its document checksum is known).
    pub fn write_record(&self, record: &EncoderRecord) -> Result<()> {
        let dir = self.encoder_dir(&record.id)?;
        if !dir.is_dir() {
            return Err(Error::Invalid(format!(
                "no encoder `{}` in {}",
                record.id,
                self.dir.display()
            )));
        }
        write_record(&dir.join(RECORD_FILE), record)
    }

    /// The records of every stored encoder, in id order.
    pub fn list_records(&self) -> Result<Vec<EncoderRecord>> {
        self.list()?.iter().map(|id| self.record(id)).collect()
    }
}

fn history_entry(id: &str, action: &str) -> HistoryEntry {
    HistoryEntry {
        id: id.into(),
        at: now_rfc3339(),
        action: action.into(),
    }
}

fn write_record(path: &Path, record: &EncoderRecord) -> Result<()> {
    let text = serde_json::to_string_pretty(record).map_err(|e| Error::Invalid(e.to_string()))?;
    write_atomically(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{ACTIVE_FILE, BASE_ENCODER, ENCODERS_DIR};

    #[test]
    fn install_activate_and_resolve() {
        let root = tempfile::tempdir().unwrap();
        let model = root.path().join("model");
        std::fs::create_dir_all(model.join("sub")).unwrap();
        std::fs::write(model.join("manifest.json"), "{}").unwrap();
        std::fs::write(model.join("sub/x"), "y").unwrap();
        let index = root.path().join("index");
        std::fs::create_dir_all(&index).unwrap();
        let store = EncoderStore::new(&index);
        assert!(store.active_id().is_err());
        store.install(BASE_ENCODER, &model).unwrap();
        store.set_active(BASE_ENCODER).unwrap();
        assert_eq!(store.active_id().unwrap(), "base");
        assert_eq!(
            std::fs::read_to_string(store.active_dir().unwrap().join("sub/x")).unwrap(),
            "y"
        );
        assert!(store.set_active("missing").is_err());
        assert!(store.encoder_dir("../evil").is_err());
        store.install("ltre-1", &model).unwrap();
        assert_eq!(store.list().unwrap(), vec!["base", "ltre-1"]);
    }

    #[test]
    fn rollback_works_on_an_index_activated_before_history_existed() {
        let root = tempfile::tempdir().unwrap();
        let store = EncoderStore::new(root.path());
        for id in ["base", "ltre-0001"] {
            std::fs::create_dir_all(store.encoder_dir(id).unwrap()).unwrap();
        }
        std::fs::write(root.path().join(ENCODERS_DIR).join(ACTIVE_FILE), "base\n").unwrap();
        assert!(store.rollback().is_err());
        store.activate("ltre-0001").unwrap();
        store.activate("ltre-0001").unwrap(); // already active: not logged twice
        assert_eq!(store.history().unwrap().len(), 2);
        assert_eq!(store.rollback().unwrap(), "base");
        assert_eq!(store.active_id().unwrap(), "base");
        // The next version number skips ids seen only in HISTORY.
        std::fs::remove_dir_all(store.encoder_dir("ltre-0001").unwrap()).unwrap();
        let history = store.history().unwrap();
        assert_eq!(store.last_version_number(&history).unwrap(), 1);
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_795_000_000), "2026-11-18T11:06:40Z");
    }
}
