//! Feedback from files: JSON lines exported by an application, or judgments (BEIR queries and
//! qrels) replayed as explicit grades to simulate feedback.
use std::path::Path;

use super::{FeedbackRecord, Signal};
use crate::error::{Error, Result};
use crate::finetune::read_beir_judged;

/// Reads a JSON-lines file of feedback: `{"query":..,"doc":..,"grade":G}` or
/// `{"query":..,"doc":..,"click":true}` a line, with an optional `"time"` (unix seconds;
/// `default_time` otherwise). Blank lines are skipped. Every record is checked; the first bad
/// line is an error naming the file and the line. Give times in the file to make re-importing
/// it idempotent (the repeats are then exact duplicates).
pub fn read_feedback_file(path: &Path, default_time: u64) -> Result<Vec<FeedbackRecord>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut records = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let bad = |message: String| Error::BadFile {
            path: path.to_path_buf(),
            message: format!("line {}: {message}", i + 1),
        };
        let text = std::str::from_utf8(line).map_err(|e| bad(format!("not UTF-8 ({e})")))?;
        if text.trim().is_empty() {
            continue;
        }
        records.push(FeedbackRecord::from_json_line(text, Some(default_time)).map_err(bad)?);
    }
    Ok(records)
}

/// Simulated feedback: every judgment of a BEIR `queries.jsonl` + qrels `.tsv` pair as an
/// explicit grade at `time`, queries in the queries file's order, documents in the qrels'
/// order (by id). Training data from these records holds the same (text, document, grade)
/// judgments as [`TrainingData::from_beir`](crate::finetune::TrainingData::from_beir) (texts
/// normalised; queries with equal texts merged).
pub fn records_from_beir(queries: &Path, qrels: &Path, time: u64) -> Result<Vec<FeedbackRecord>> {
    let mut records = Vec::new();
    for query in read_beir_judged(queries, qrels)? {
        for (doc, grade) in query.judgments {
            let record = FeedbackRecord {
                query: query.text.clone(),
                doc,
                signal: Signal::Grade(grade),
                time,
            };
            record.check().map_err(|why| Error::BadFile {
                path: qrels.to_path_buf(),
                message: format!(
                    "query `{}`, document `{}`: {why} (query text from {})",
                    query.id,
                    record.doc,
                    queries.display()
                ),
            })?;
            records.push(record);
        }
    }
    Ok(records)
}
