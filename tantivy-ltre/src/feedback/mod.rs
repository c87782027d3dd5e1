//! Learning from the application's own signal: clicks and ratings, logged next to the index,
//! turned into training data for [`TunableIndex::fine_tune`](crate::finetune::TunableIndex::fine_tune).
//!
//! Most applications have no qrels file; they have users who click results and, sometimes,
//! rate them. This module keeps that signal in the index directory and aggregates it into the
//! judged queries a fine-tune trains on, with the same held-out selection and deploy gate as
//! judged queries from any other source.
//!
//! # Tutorial
//!
//! 1. **Record feedback** as it happens with [`FeedbackLog::append`]: a batch of
//!    [`FeedbackRecord`]s, each a query text, a document id (the value of the index's id
//!    field), a [`Signal`] and a time (unix seconds; [`FeedbackRecord::at`] sets it, the
//!    constructors take the current time). Explicit ratings are [`Signal::Grade`] (TREC
//!    convention: `>= 1` relevant, `0` judged not relevant, `-1` allowed for "spam"; at most
//!    [`GRADE_MAX`]); a click on a result is [`Signal::Click`]. The log is
//!    `INDEX/feedback/log.jsonl`, one JSON object a line; any number of processes and threads
//!    may append at once.
//! 2. **Look at it** with [`FeedbackLog::stats`] (records, clicks and grades, distinct queries
//!    and (query, document) pairs, exact duplicates, an interrupted last line).
//! 3. **Turn it into training data** with [`FeedbackLog::to_training_data`] and a
//!    [`FeedbackPolicy`], and pass that to `fine_tune` like any other
//!    [`TrainingData`](crate::finetune::TrainingData).
//!
//! How records become judged queries (all deterministic: the same log always gives the same
//! `TrainingData`, in the same order, with the same sha256):
//!
//! - **Query text** is normalised by [`normalize_query`]: leading and trailing whitespace
//!   removed, every run of whitespace inside replaced by one space. Case is **kept**: the text
//!   trained on is what users typed, and a cased encoder would see a different input (uncased
//!   models lowercase in their tokenizer anyway). Records whose normalised texts are equal
//!   belong to the same query, whose id is [`query_id`] of that text (`fb-` and 16 hex digits
//!   of its sha256). Queries come in the order of their first record in the log.
//! - **Exact repeats** (same normalised query, document, signal and time) are duplicates: a
//!   retried append or a re-imported file counts once. They are counted by the stats and
//!   ignored for training. Clicks at different times are different clicks.
//! - **Per (query, document)**, an explicit grade wins over clicks, and among grades the
//!   **latest** wins (greatest time; at equal times, the one later in the log): ratings are
//!   corrected by re-rating. Without a grade, `min_clicks` or more clicks make the pair
//!   relevant with `click_grade` (default: one click, grade 1); fewer clicks judge nothing.
//!
//! ```no_run
//! # fn main() -> tantivy_ltre::Result<()> {
//! use std::path::Path;
//! use std::sync::atomic::AtomicBool;
//! use tantivy_ltre::feedback::{FeedbackLog, FeedbackPolicy, FeedbackRecord};
//! use tantivy_ltre::finetune::{FineTuneOptions, TunableIndex};
//!
//! let dir = Path::new("shop-index");
//! let log = FeedbackLog::open(dir)?;
//! // From the application: a click on a search result, a rating from a review form.
//! log.append(&[
//!     FeedbackRecord::click("waterproof hiking boots", "sku-17"),
//!     FeedbackRecord::grade("gift for a coffee lover", "sku-42", 2),
//! ])?;
//! println!("{}", log.stats()?);
//!
//! // Later, from a maintenance job: fine-tune from everything logged so far, deploy if the
//! // held-out nDCG@10 improves.
//! let data = log.to_training_data(&FeedbackPolicy::default())?;
//! let index = TunableIndex::open_ltre_index(dir)?;
//! let options = FineTuneOptions::default().refit(true).deploy(true);
//! let outcome = index.fine_tune(&data, &options, &AtomicBool::new(false), &mut |_| {})?;
//! println!("deployed: {:?}", outcome.report().and_then(|r| r.deployed_id()));
//! # Ok(())
//! # }
//! ```
//!
//! # What the log promises
//!
//! - An append writes its whole batch, every record a complete line, with one `write_all` on
//!   a file opened for appending, then `sync_data`, while holding an exclusive lock on
//!   `INDEX/feedback/.lock` (as the encoder registry does): appends from any number of
//!   processes and threads never interleave and never lose each other's records; when
//!   `append` returns, the records are on disk.
//! - The newline ends a record. A process killed mid-append leaves at most a torn last line
//!   without its newline: reading ignores it and reports it
//!   ([`FeedbackStats::torn_tail_bytes`]), never fails on it, and the next append first
//!   truncates it (under the lock), so the file is again a sequence of complete lines. A kill
//!   may keep the first lines of a batch; re-appending the batch with the same times makes the
//!   kept ones exact duplicates, which training ignores.
//! - A complete line that is not a valid record (a hand-edited file) is an error naming the
//!   file and the line, never skipped silently.
//! - Readers take a shared lock, so they see whole appends only.
mod import;
mod log;
mod training;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use import::{read_feedback_file, records_from_beir};
pub use log::{AppendReport, FeedbackLog, FeedbackRead, FEEDBACK_DIR, LOCK_FILE, LOG_FILE};
pub use training::{keyed_by_text, FeedbackPolicy, FeedbackStats};

/// The lowest grade a record may carry (TREC's "spam" / harmful is -1 or -2; below is a typo).
pub const GRADE_MIN: i32 = -1;
/// The highest grade a record may carry.
pub const GRADE_MAX: i32 = 1000;
/// Longest query text accepted, in bytes (longer is not a search query, and would be truncated
/// by the encoder anyway).
pub const MAX_QUERY_BYTES: usize = 8192;
/// Longest document id accepted, in bytes.
pub const MAX_DOC_ID_BYTES: usize = 1024;

/// What the user told us about a document for a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// An explicit rating (TREC convention: `>= 1` relevant, `0` judged not relevant).
    Grade(i32),
    /// A click on the document in the query's results.
    Click,
}

/// One piece of feedback: a query, a document, a signal and when.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FeedbackRecord {
    /// The query text as the user typed it (normalised only when aggregated).
    pub query: String,
    /// The document's id (the value of the index's id field).
    pub doc: String,
    /// A grade or a click.
    pub signal: Signal,
    /// Unix seconds.
    pub time: u64,
}

impl FeedbackRecord {
    /// An explicit grade given now.
    pub fn grade(query: impl Into<String>, doc: impl Into<String>, grade: i32) -> FeedbackRecord {
        FeedbackRecord {
            query: query.into(),
            doc: doc.into(),
            signal: Signal::Grade(grade),
            time: now(),
        }
    }

    /// A click now.
    pub fn click(query: impl Into<String>, doc: impl Into<String>) -> FeedbackRecord {
        FeedbackRecord {
            query: query.into(),
            doc: doc.into(),
            signal: Signal::Click,
            time: now(),
        }
    }

    /// The same record at `time` (unix seconds).
    pub fn at(mut self, time: u64) -> FeedbackRecord {
        self.time = time;
        self
    }

    /// Why the record cannot be logged, if it cannot: an empty (or all-whitespace) query, an
    /// empty document id, a grade outside [`GRADE_MIN`]`..=`[`GRADE_MAX`], an oversized field.
    pub fn check(&self) -> Result<(), String> {
        if self.query.trim().is_empty() {
            return Err("the query text is empty".into());
        }
        if self.query.len() > MAX_QUERY_BYTES {
            return Err(format!(
                "the query text is {} bytes long (at most {MAX_QUERY_BYTES})",
                self.query.len()
            ));
        }
        if self.doc.is_empty() {
            return Err("the document id is empty".into());
        }
        if self.doc.len() > MAX_DOC_ID_BYTES {
            return Err(format!(
                "the document id is {} bytes long (at most {MAX_DOC_ID_BYTES})",
                self.doc.len()
            ));
        }
        if let Signal::Grade(g) = self.signal {
            if !(GRADE_MIN..=GRADE_MAX).contains(&g) {
                return Err(format!(
                    "grade {g} is outside {GRADE_MIN}..={GRADE_MAX} (>= 1 relevant, 0 judged not relevant)"
                ));
            }
        }
        Ok(())
    }

    /// The record as one JSON line (without the newline), the log's format.
    pub fn to_json_line(&self) -> String {
        let line = Line {
            query: self.query.clone(),
            doc: self.doc.clone(),
            grade: match self.signal {
                Signal::Grade(g) => Some(g),
                Signal::Click => None,
            },
            click: (self.signal == Signal::Click).then_some(true),
            time: Some(self.time),
        };
        // A struct of strings and integers always serialises.
        serde_json::to_string(&line).unwrap_or_default()
    }

    /// Parses one JSON line: `{"query":..,"doc":..,"grade":G}` or `{"query":..,"doc":..,
    /// "click":true}`, with `"time"` (unix seconds) or, if it has none, `default_time` (when
    /// `None`, a time is required). The record is checked ([`FeedbackRecord::check`]).
    pub fn from_json_line(line: &str, default_time: Option<u64>) -> Result<FeedbackRecord, String> {
        let line: Line = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let signal = match (line.grade, line.click) {
            (Some(_), Some(_)) => {
                return Err("give either `grade` or `click`, not both".into());
            }
            (Some(g), None) => Signal::Grade(g),
            (None, Some(true)) => Signal::Click,
            (None, Some(false)) => {
                return Err("`click` must be true (a record is one click; omit non-clicks)".into());
            }
            (None, None) => {
                return Err(
                    "no signal: give `\"grade\": G` (an integer) or `\"click\": true`".into(),
                );
            }
        };
        let time = line
            .time
            .or(default_time)
            .ok_or("no `time` (unix seconds)")?;
        let record = FeedbackRecord {
            query: line.query,
            doc: line.doc,
            signal,
            time,
        };
        record.check()?;
        Ok(record)
    }
}

/// The JSON form of a record (the log's lines and the import files').
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    query: String,
    doc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grade: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    click: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time: Option<u64>,
}

/// The query text feedback is aggregated on: trimmed, inner whitespace runs collapsed to one
/// space, case kept.
pub fn normalize_query(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The id of the query with this text in training data from feedback: `fb-` and the first 16
/// hex digits of the sha256 of [`normalize_query`]`(text)`. Stable across runs and machines.
pub fn query_id(text: &str) -> String {
    let digest = Sha256::digest(normalize_query(text).as_bytes());
    format!("fb-{}", &hex::encode(digest)[..16])
}

/// Now, in unix seconds (0 if the clock is before 1970).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_round_trip_and_refuse_bad_records() {
        for record in [
            FeedbackRecord::grade("red  shoes", "d1", 2).at(7),
            FeedbackRecord::click("red shoes", "d\"2").at(8),
        ] {
            let line = record.to_json_line();
            assert_eq!(FeedbackRecord::from_json_line(&line, None), Ok(record));
        }
        let parse = |s: &str| FeedbackRecord::from_json_line(s, Some(5));
        assert_eq!(
            parse(r#"{"query":"q","doc":"d","click":true}"#).map(|r| r.time),
            Ok(5)
        );
        for (bad, why) in [
            (
                r#"{"query":"q","doc":"d","grade":1,"click":true}"#,
                "not both",
            ),
            (r#"{"query":"q","doc":"d"}"#, "no signal"),
            (r#"{"query":"q","doc":"d","click":false}"#, "must be true"),
            (
                r#"{"query":" ","doc":"d","grade":1}"#,
                "query text is empty",
            ),
            (
                r#"{"query":"q","doc":"","grade":1}"#,
                "document id is empty",
            ),
            (r#"{"query":"q","doc":"d","grade":1001}"#, "outside"),
            (r#"{"query":"q","doc":"d","grdae":1}"#, "unknown field"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let err = FeedbackRecord::from_json_line(r#"{"query":"q","doc":"d","grade":1}"#, None)
            .unwrap_err();
        assert!(err.contains("time"), "{err}");
    }

    #[test]
    fn normalisation_and_ids() {
        assert_eq!(normalize_query("  Red \t shoes\n"), "Red shoes");
        assert_eq!(query_id(" Red  shoes"), query_id("Red shoes"));
        assert_ne!(query_id("red shoes"), query_id("Red shoes"));
        assert_eq!(query_id("x").len(), 19);
    }
}
