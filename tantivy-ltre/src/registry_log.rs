//! The commit protocol of the encoder registry: how `encoders/HISTORY` and `encoders/ACTIVE`
//! change, used by [`EncoderStore`](crate::registry::EncoderStore).
//!
//! - **Lock.** Every change (activate, rollback, version numbering, repair) holds an exclusive
//!   lock on `encoders/.lock` ([`std::fs::File::lock`]): changes from any number of processes
//!   and threads run one at a time, each reading the state the previous one left. Readers
//!   ([`EncoderStore::active_id`](crate::registry::EncoderStore::active_id), `LiveEncoder`)
//!   take no lock. A killed holder releases the lock with its file descriptor.
//! - **Source of truth.** `HISTORY` is the commit log: a change rewrites it whole (unique
//!   temporary file, `fsync`, rename), and that rename is the commit point. `ACTIVE` is then
//!   derived from HISTORY's last entry, written the same way. Readers see an old or a new
//!   file, never a partial or missing one.
//! - **Crash between the two writes.** HISTORY names the new encoder and ACTIVE still the old
//!   one: readers keep serving the old encoder until the next locked operation (any
//!   activate, rollback, `install_version` or [`repair`](crate::registry::EncoderStore::repair)),
//!   which first rewrites ACTIVE from HISTORY. A killed command thus either did not happen
//!   (killed before the commit) or happened (after it); rerunning it is safe, but a rerun
//!   `rollback` after a committed one rolls back once more.
//! - **Bound.** HISTORY holds at most [`HISTORY_LIMIT`] entries. When a change would exceed
//!   it, HISTORY is rewritten as the rollback stack (the encoders successive rollbacks would
//!   return to, each with its original time, all as `activate` entries), cut to its newest
//!   [`HISTORY_KEEP`]. Rollbacks behave exactly as before the compaction for the last
//!   `HISTORY_KEEP - 1` steps; older steps are forgotten.
//! - **Fault hook.** `LTRE_FAULT_DELAY_MS=<ms>` sleeps between the HISTORY commit and the
//!   ACTIVE write, so that fault-injection tests can kill a process inside that window. It is
//!   read only there and costs nothing when unset.
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ltre_core::fsutil::remove_stale_siblings;

use crate::error::{Error, Result};
use crate::layout::{write_atomically, ACTIVE_FILE, HISTORY_FILE};
use crate::registry::HistoryEntry;

/// The lock file serialising registry changes, inside `encoders/`.
pub const LOCK_FILE: &str = ".lock";
/// Most entries `HISTORY` holds before it is compacted.
pub const HISTORY_LIMIT: usize = 1000;
/// Entries of the rollback stack a compaction keeps.
pub const HISTORY_KEEP: usize = 500;
/// Environment variable of the fault-injection hook (milliseconds).
pub const FAULT_DELAY_ENV: &str = "LTRE_FAULT_DELAY_MS";

/// Reads `HISTORY` (empty if there is none).
pub(crate) fn read_history(dir: &Path) -> Result<Vec<HistoryEntry>> {
    let path = dir.join(HISTORY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| Error::BadFile {
                path: path.clone(),
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}

/// The contents of `ACTIVE`, trimmed; `None` if the file does not exist.
pub(crate) fn read_active(dir: &Path) -> Result<Option<String>> {
    let path = dir.join(ACTIVE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// The rollback stack after `entries`: the entries successive rollbacks return to, the
/// current one last. A rollback pops the encoder it left; its id is then the top (pushed if
/// the log was written behind its back and the top differs).
pub(crate) fn activation_stack(entries: &[HistoryEntry]) -> Vec<&HistoryEntry> {
    let mut stack: Vec<&HistoryEntry> = Vec::new();
    for entry in entries {
        if entry.action == "rollback" {
            stack.pop();
            if stack.last().map(|e| &e.id) != Some(&entry.id) {
                stack.push(entry);
            }
        } else {
            stack.push(entry);
        }
    }
    stack
}

/// `entries` if within [`HISTORY_LIMIT`], else their rollback stack cut to [`HISTORY_KEEP`].
fn compact(entries: Vec<HistoryEntry>) -> Vec<HistoryEntry> {
    if entries.len() <= HISTORY_LIMIT {
        return entries;
    }
    let stack = activation_stack(&entries);
    let start = stack.len().saturating_sub(HISTORY_KEEP);
    stack[start..]
        .iter()
        .map(|e| HistoryEntry {
            action: "activate".into(),
            ..(*e).clone()
        })
        .collect()
}

/// The registry with its lock held: `HISTORY` as read under the lock, and ACTIVE repaired to
/// agree with it. Dropping it releases the lock.
pub(crate) struct Journal {
    dir: PathBuf,
    /// Holds the lock until dropped (closing the descriptor unlocks).
    _lock: File,
    /// HISTORY, oldest first.
    pub entries: Vec<HistoryEntry>,
    /// The id in ACTIVE (after the repair), `None` if there is no ACTIVE yet.
    pub active: Option<String>,
    /// Whether opening rewrote ACTIVE (it was behind HISTORY).
    pub repaired: bool,
}

impl Journal {
    /// Locks the registry at `dir` (`INDEX/encoders`, created if missing), blocking while
    /// another process or thread holds it, removes the temporary files of killed writers and
    /// repairs ACTIVE from HISTORY.
    pub fn open(dir: &Path) -> Result<Journal> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        lock.lock().map_err(|e| Error::io(&path, e))?;
        for name in [ACTIVE_FILE, HISTORY_FILE] {
            remove_stale_siblings(&dir.join(name));
        }
        let entries = read_history(dir)?;
        let mut active = read_active(dir)?;
        let mut repaired = false;
        if let Some(last) = entries.last() {
            if active.as_deref() != Some(last.id.as_str()) {
                // Killed between the HISTORY commit and the ACTIVE write: finish it.
                tracing::warn!(
                    "{}: ACTIVE named {:?} but HISTORY ends with `{}`; repaired",
                    dir.display(),
                    active,
                    last.id
                );
                write_active(dir, &last.id)?;
                active = Some(last.id.clone());
                repaired = true;
            }
        }
        Ok(Journal {
            dir: dir.to_path_buf(),
            _lock: lock,
            entries,
            active,
            repaired,
        })
    }

    /// Logs `entries` (the last one becomes active): commits HISTORY (compacted to the bound),
    /// then writes ACTIVE.
    pub fn commit(&mut self, new: Vec<HistoryEntry>) -> Result<()> {
        let Some(id) = new.last().map(|e| e.id.clone()) else {
            return Ok(());
        };
        let mut entries = std::mem::take(&mut self.entries);
        entries.extend(new);
        let entries = compact(entries);
        let mut text = String::new();
        for entry in &entries {
            text.push_str(
                &serde_json::to_string(entry).map_err(|e| Error::Invalid(e.to_string()))?,
            );
            text.push('\n');
        }
        write_atomically(&self.dir.join(HISTORY_FILE), text.as_bytes())?;
        self.entries = entries;
        fault_delay();
        write_active(&self.dir, &id)?;
        self.active = Some(id);
        Ok(())
    }
}

fn write_active(dir: &Path, id: &str) -> Result<()> {
    write_atomically(&dir.join(ACTIVE_FILE), format!("{id}\n").as_bytes())
}

/// The fault-injection hook: see the module documentation.
fn fault_delay() {
    if let Some(ms) = std::env::var(FAULT_DELAY_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, action: &str) -> HistoryEntry {
        HistoryEntry {
            id: id.into(),
            at: String::new(),
            action: action.into(),
        }
    }

    fn ids(stack: &[&HistoryEntry]) -> Vec<String> {
        stack.iter().map(|e| e.id.clone()).collect()
    }

    #[test]
    fn compaction_keeps_the_rollback_stack() {
        let mut entries = Vec::new();
        for i in 0..HISTORY_LIMIT {
            entries.push(entry(&format!("v{}", i % 700), "activate"));
        }
        entries.push(entry("v298", "rollback"));
        let before: Vec<String> = ids(&activation_stack(&entries));
        let compacted = compact(entries);
        assert_eq!(compacted.len(), HISTORY_KEEP);
        assert!(compacted.iter().all(|e| e.action == "activate"));
        assert_eq!(
            ids(&activation_stack(&compacted)),
            before[before.len() - HISTORY_KEEP..]
        );
        assert_eq!(compacted.last().unwrap().id, "v298");
    }

    #[test]
    fn journal_repairs_active_and_serialises_threads() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        assert_eq!((journal.active.as_deref(), journal.repaired), (None, false));
        journal.commit(vec![entry("a", "activate")]).unwrap();
        drop(journal);
        // A kill after the HISTORY commit: ACTIVE still names the old encoder.
        std::fs::write(dir.path().join(ACTIVE_FILE), "old\n").unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        assert!(journal.repaired);
        assert_eq!(read_active(dir.path()).unwrap().as_deref(), Some("a"));
        drop(journal);
        // Threads each append one entry under the lock: none is lost.
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let dir = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    for i in 0..10 {
                        let mut journal = Journal::open(&dir).unwrap();
                        journal
                            .commit(vec![entry(&format!("t{t}-{i}"), "activate")])
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let entries = read_history(dir.path()).unwrap();
        assert_eq!(entries.len(), 81);
        assert_eq!(
            read_active(dir.path()).unwrap().as_ref(),
            Some(&entries[80].id)
        );
    }
}
