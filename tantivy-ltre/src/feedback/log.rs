//! The feedback log file: locked, synced appends of whole lines; reads that skip a torn tail.
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{FeedbackPolicy, FeedbackRecord, FeedbackStats};
use crate::error::{Error, Result};
use crate::finetune::TrainingData;

/// The feedback directory inside an index directory.
pub const FEEDBACK_DIR: &str = "feedback";
/// The log inside [`FEEDBACK_DIR`]: JSON lines, one record each.
pub const LOG_FILE: &str = "log.jsonl";
/// The lock file serialising appends, inside [`FEEDBACK_DIR`].
pub const LOCK_FILE: &str = ".lock";

/// Bytes read at a time when looking backwards for the last newline.
const TAIL_CHUNK: u64 = 64 * 1024;

/// The feedback log of an index (`INDEX/feedback/log.jsonl`); see the [module docs](super).
#[derive(Debug, Clone)]
pub struct FeedbackLog {
    dir: PathBuf,
}

/// What [`FeedbackLog::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppendReport {
    /// Records written.
    pub appended: usize,
    /// Bytes of a torn last line (an append killed earlier) removed before writing.
    pub repaired_tail_bytes: u64,
}

/// The log as read: its complete records, in file order, and what was skipped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeedbackRead {
    /// Every complete record, duplicates included.
    pub records: Vec<FeedbackRecord>,
    /// Bytes after the last newline (an interrupted append), ignored; 0 when none.
    pub torn_tail_bytes: u64,
    /// Empty lines (hand edits), skipped.
    pub blank_lines: usize,
}

impl FeedbackRead {
    /// The records, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, FeedbackRecord> {
        self.records.iter()
    }
}

impl<'a> IntoIterator for &'a FeedbackRead {
    type Item = &'a FeedbackRecord;
    type IntoIter = std::slice::Iter<'a, FeedbackRecord>;
    fn into_iter(self) -> Self::IntoIter {
        self.records.iter()
    }
}

impl FeedbackLog {
    /// The log of the index at `index_dir` (which must be a directory). Nothing is created
    /// until the first append; a log without records reads as empty.
    pub fn open(index_dir: &Path) -> Result<FeedbackLog> {
        if !index_dir.is_dir() {
            return Err(Error::Invalid(format!(
                "{}: not a directory; give the index directory (the feedback log lives in its \
                 `{FEEDBACK_DIR}/`)",
                index_dir.display()
            )));
        }
        Ok(FeedbackLog {
            dir: index_dir.join(FEEDBACK_DIR),
        })
    }

    /// The log file (`INDEX/feedback/log.jsonl`).
    pub fn path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    /// Appends `records` (checked first: one bad record appends nothing) as one write of
    /// complete lines under the lock, synced before returning. A torn last line left by a
    /// killed append is removed first.
    pub fn append(&self, records: &[FeedbackRecord]) -> Result<AppendReport> {
        let mut bytes = Vec::new();
        for (i, record) in records.iter().enumerate() {
            record.check().map_err(|why| {
                Error::Invalid(format!(
                    "feedback record {} of {} (query {:?}, document {:?}): {why}; nothing was \
                     appended",
                    i + 1,
                    records.len(),
                    record.query,
                    record.doc
                ))
            })?;
            bytes.extend_from_slice(record.to_json_line().as_bytes());
            bytes.push(b'\n');
        }
        if records.is_empty() {
            return Ok(AppendReport::default());
        }
        let created_dir = !self.dir.is_dir();
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let _lock = self.lock(true)?;
        let path = self.path();
        let created_file = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let repaired_tail_bytes = truncate_torn_tail(&mut file, &path)?;
        if repaired_tail_bytes > 0 {
            tracing::warn!(
                "{}: removed a torn last line of {repaired_tail_bytes} bytes (an append was \
                 interrupted) before appending",
                path.display()
            );
        }
        let start = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let written = file.write_all(&bytes).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // A short write (disk full) would leave a torn line: take it back while we hold
            // the lock; if even that fails, the next append removes it.
            let _ = file.set_len(start).and_then(|()| file.sync_data());
            return Err(Error::io(&path, e));
        }
        if created_file {
            sync_dir(&self.dir);
        }
        if created_dir {
            if let Some(parent) = self.dir.parent() {
                sync_dir(parent);
            }
        }
        Ok(AppendReport {
            appended: records.len(),
            repaired_tail_bytes,
        })
    }

    /// Reads every complete record. A torn last line is skipped and reported; a complete line
    /// that is not a valid record is an error naming the file and the line.
    pub fn read(&self) -> Result<FeedbackRead> {
        let path = self.path();
        // A shared lock: no append is half-written while we read (none if there is no lock
        // file, e.g. a log copied by hand).
        let _lock = self.lock(false).ok();
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(FeedbackRead::default())
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut reader = BufReader::new(file);
        let mut out = FeedbackRead::default();
        let mut buf = Vec::new();
        let mut line_no = 0usize;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| Error::io(&path, e))?;
            if n == 0 {
                break;
            }
            if buf.last() != Some(&b'\n') {
                // No newline: an append that did not finish. Not a record.
                out.torn_tail_bytes = n as u64;
                break;
            }
            line_no += 1;
            let bad = |message: String| Error::BadFile {
                path: path.clone(),
                message: format!(
                    "line {line_no}: {message}; fix or delete that line (each line is one \
                     record written by FeedbackLog::append)"
                ),
            };
            let text =
                std::str::from_utf8(&buf[..n - 1]).map_err(|e| bad(format!("not UTF-8 ({e})")))?;
            if text.trim().is_empty() {
                out.blank_lines += 1;
                continue;
            }
            out.records
                .push(FeedbackRecord::from_json_line(text, None).map_err(bad)?);
        }
        if out.torn_tail_bytes > 0 {
            tracing::warn!(
                "{}: ignored a torn last line of {} bytes (an interrupted append; the next \
                 append removes it)",
                path.display(),
                out.torn_tail_bytes
            );
        }
        Ok(out)
    }

    /// Counts of the log (see [`FeedbackStats`]).
    pub fn stats(&self) -> Result<FeedbackStats> {
        Ok(self.read()?.stats())
    }

    /// The log aggregated into judged queries under `policy` (see the [module docs](super)).
    pub fn to_training_data(&self, policy: &FeedbackPolicy) -> Result<TrainingData> {
        self.read()?.to_training_data(policy).map_err(|e| match e {
            Error::Invalid(message) => {
                Error::Invalid(format!("{}: {message}", self.path().display()))
            }
            other => other,
        })
    }

    /// Takes the lock (exclusive for appends, shared for reads), blocking while it is held.
    /// Closing the returned file (or a killed holder's exit) releases it.
    fn lock(&self, exclusive: bool) -> Result<File> {
        let path = self.dir.join(LOCK_FILE);
        let file = if exclusive {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        } else {
            File::open(&path)
        }
        .map_err(|e| Error::io(&path, e))?;
        let locked = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        locked.map_err(|e| Error::io(&path, e))?;
        Ok(file)
    }
}

/// Cuts `file` after its last newline (or to nothing if it has none); returns the bytes cut.
fn truncate_torn_tail(file: &mut File, path: &Path) -> Result<u64> {
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut end = len;
    let mut chunk = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(TAIL_CHUNK);
        chunk.resize((end - start) as usize, 0);
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(&mut chunk))
            .map_err(|e| Error::io(path, e))?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        file.set_len(end)
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io(path, e))?;
    }
    Ok(len - end)
}

/// Best-effort `fsync` of a directory, so a new entry in it survives a power loss.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}
