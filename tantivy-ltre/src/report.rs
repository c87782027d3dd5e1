//! Human-readable forms of the workflow reports ([`CorpusReport`], [`MigrateReport`],
//! [`EvalReport`]) and of the encoder registry, so every front end (ltre-cli, an application's own tool) prints the same
//! lines and the warnings name the same examples.
use std::fmt;

use crate::corpus::CorpusReport;
use crate::eval::EvalReport;
use crate::migrate::MigrateReport;
use crate::registry::{EncoderRecord, EncoderStore};

/// How many example ids a warning names.
const EXAMPLES: usize = 5;

/// `a, b, c, ...` of the first [`EXAMPLES`] items.
fn examples<T: AsRef<str>>(items: impl ExactSizeIterator<Item = T>) -> String {
    let total = items.len();
    let shown: Vec<String> = items
        .take(EXAMPLES)
        .map(|s| s.as_ref().to_string())
        .collect();
    let more = if total > shown.len() { ", ..." } else { "" };
    format!("{}{more}", shown.join(", "))
}

/// `indexed N documents (S already present, R refused, D duplicate ids) [BM25 ..., analyzer A]`.
impl fmt::Display for CorpusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "indexed {} documents ({} already present, {} refused, {} duplicate ids) [BM25 k1=1.2 b=0.75, analyzer {}]",
            self.added, self.skipped, self.refused, self.duplicates, self.analyzer
        )
    }
}

impl CorpusReport {
    /// The warning about corpus lines refused for repeating an earlier id (naming a few with
    /// their lines), `None` when there were none.
    pub fn duplicate_warning(&self) -> Option<String> {
        (self.duplicates > 0).then(|| {
            let named: Vec<String> = self
                .duplicate_examples
                .iter()
                .take(EXAMPLES)
                .map(|d| format!("`{}` at line {} (first at line {})", d.id, d.line, d.first_line))
                .collect();
            let more = if self.duplicates > named.len() { ", ..." } else { "" };
            format!(
                "{} corpus lines repeat an earlier document id and were not indexed (ids are unique; the first occurrence is kept): {}{more}",
                self.duplicates,
                named.join(", ")
            )
        })
    }
}

impl CorpusReport {
    /// Warnings of a run from precomputed vectors: corpus documents left out for want of a
    /// vector, vectors of ids not in the corpus (each naming a few ids).
    pub fn vector_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.missing_vectors > 0 {
            out.push(format!(
                "{} corpus documents have no vector and were not indexed (rerun with their vectors to add them): {}",
                self.missing_vectors,
                examples_of(&self.missing_vector_examples, self.missing_vectors)
            ));
        }
        if self.extra_vectors > 0 {
            out.push(format!(
                "{} vectors have an id that is not in the corpus and were ignored: {}",
                self.extra_vectors,
                examples_of(&self.extra_vector_examples, self.extra_vectors)
            ));
        }
        out
    }
}

/// `a, b, c, ...` of the first [`EXAMPLES`] of `kept`, out of `total`.
fn examples_of(kept: &[String], total: usize) -> String {
    let shown: Vec<&str> = kept.iter().take(EXAMPLES).map(String::as_str).collect();
    let more = if total > shown.len() { ", ..." } else { "" };
    format!("{}{more}", shown.join(", "))
}

/// `copied N documents with a D-d dense field (id field `I`[, dropped a, b])`.
impl fmt::Display for MigrateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "copied {} documents with a {}-d dense field (id field `{}`",
            self.documents, self.dim, self.id_field
        )?;
        if !self.dropped_fields.is_empty() {
            write!(f, ", dropped {}", self.dropped_fields.join(", "))?;
        }
        write!(f, ")")
    }
}

impl EvalReport {
    /// Warnings about qrels that match nothing: judged queries missing from the queries, judged
    /// documents missing from the index (each naming a few ids).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.missing_queries.is_empty() {
            out.push(format!(
                "{} judged queries are missing from the queries file and were not scored: {}",
                self.missing_queries.len(),
                examples(self.missing_queries.iter())
            ));
        }
        if !self.missing_documents.is_empty() {
            out.push(format!(
                "{} judged documents are missing from the index (they can never be retrieved): {}",
                self.missing_documents.len(),
                examples(self.missing_documents.iter())
            ));
        }
        out
    }
}

/// The metric `ltre-cli encoder list` shows: the held-out nDCG@10 a fine-tune recorded.
pub const LIST_METRIC: &str = "dev_ndcg10";

/// The encoder records as a table (`*` marks `active`): id, created, parent, [`LIST_METRIC`],
/// note.
pub fn encoder_table(records: &[EncoderRecord], active: Option<&str>) -> String {
    let mut out = format!(
        "  {:<12} {:<20}  {:<12} {:>10}  note\n",
        "id", "created", "parent", LIST_METRIC
    );
    for r in records {
        let marker = if Some(r.id.as_str()) == active {
            '*'
        } else {
            ' '
        };
        let metric = r
            .metrics
            .get(LIST_METRIC)
            .map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
        out += &format!(
            "{marker} {:<12} {:<20}  {:<12} {metric:>10}  {}\n",
            r.id,
            r.created,
            r.parent.as_deref().unwrap_or("-"),
            r.note.as_deref().unwrap_or("")
        );
    }
    out
}

impl EncoderStore {
    /// A warning when ACTIVE disagrees with HISTORY's last entry (a switch killed between its
    /// two writes), without repairing it: read-only callers report it, and the next locked
    /// operation completes it.
    pub fn interrupted_switch_warning(&self) -> Option<String> {
        let active = self.active_id().ok();
        let last = self.history().ok()?.last()?.id.clone();
        (active.as_deref() != Some(last.as_str())).then(|| {
            format!(
                "ACTIVE names {} but HISTORY ends with `{last}` (an interrupted switch); the next `encoder activate` or `rollback` completes it",
                active.as_deref().unwrap_or("nothing")
            )
        })
    }
}
