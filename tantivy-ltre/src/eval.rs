//! Evaluation as a library call: judged queries through an [`LtreIndex`], scored with
//! `ltre_core::metrics` (nDCG@10, MRR@10, Recall@100 by default, trec_eval conventions).
//!
//! Each query's ranking is deduplicated by document id before scoring (the first, best-ranked
//! occurrence is kept): an index holding one id twice would otherwise count a relevant document
//! twice and let Recall or nDCG exceed 1.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use ltre_core::data::{read_qrels, read_queries};
//! use tantivy_ltre::eval::{evaluate_queries, EvalOptions};
//! use tantivy_ltre::index::LtreIndex;
//!
//! let index = LtreIndex::open("scifact-index")?;
//! let qrels = read_qrels("scifact/qrels/test.tsv")?;
//! let queries = read_queries("scifact/queries.jsonl")?;
//! let report = evaluate_queries(&index, &queries, &qrels, &EvalOptions::default(), |_| {})?;
//! for (metric, value) in report.evaluation.metrics.iter().zip(&report.evaluation.mean) {
//!     println!("{metric} {value:.4}");
//! }
//! ltre_core::metrics::write_trec_run(std::path::Path::new("run.trec"), &report.run, "ltre")?;
//! # Ok(())
//! # }
//! ```
use std::collections::{BTreeSet, HashSet};

use ltre_core::data::{Qrels, Query};
use ltre_core::metrics::{evaluate, Evaluation, Metric, Run, DEFAULT_METRICS};

use crate::error::{Error, Result};
use crate::index::LtreIndex;
use crate::search::SearchOptions;

/// Options of [`evaluate_queries`].
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// How each query is run; `search.k` is the ranking depth (100 for Recall@100).
    pub search: SearchOptions,
    /// The metrics.
    pub metrics: Vec<Metric>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            search: SearchOptions {
                k: 100,
                ..SearchOptions::default()
            },
            metrics: DEFAULT_METRICS.to_vec(),
        }
    }
}

/// What [`evaluate_queries`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// Query id -> `(doc id, score)` in rank order, deduplicated (write it with
    /// `ltre_core::metrics::write_trec_run`).
    pub run: Run,
    /// Per-query and mean metrics.
    pub evaluation: Evaluation,
    /// Queries run (those judged in the qrels).
    pub queries: usize,
    /// Repeated document ids removed from the rankings.
    pub duplicates_removed: usize,
    /// Query ids judged in the qrels but absent from the queries, sorted: not run and not
    /// scored (a partial queries file, or queries and qrels of different splits).
    pub missing_queries: Vec<String>,
    /// Document ids judged in the qrels (for the queries run) but absent from the index,
    /// sorted: a relevant one can never be retrieved and lowers every metric. Empty when the
    /// id field is not indexed (nothing to look them up with).
    pub missing_documents: Vec<String>,
}

/// Keeps the first occurrence of each document id; returns how many were removed.
pub fn dedup_by_id(results: &mut Vec<(String, f64)>) -> usize {
    let before = results.len();
    let mut seen = HashSet::new();
    results.retain(|(id, _)| seen.insert(id.clone()));
    before - results.len()
}

/// Runs the queries judged in `qrels` through `index` and scores them; `progress` is called
/// with the number of queries done after each one. Queries without judgements are skipped;
/// none judged at all is an error (queries and qrels of different datasets).
pub fn evaluate_queries(
    index: &LtreIndex,
    queries: &[Query],
    qrels: &Qrels,
    options: &EvalOptions,
    mut progress: impl FnMut(usize),
) -> Result<EvalReport> {
    options.search.validate()?;
    let judged: Vec<&Query> = queries
        .iter()
        .filter(|q| qrels.contains_key(&q.id))
        .collect();
    if judged.is_empty() {
        return Err(Error::Invalid(format!(
            "none of the {} queries is judged in the qrels: check that they come from the same dataset",
            queries.len()
        )));
    }
    let vectors: Vec<Option<Vec<f32>>> = match options.search.mode {
        crate::search::RetrievalMode::Bm25 => vec![None; judged.len()],
        _ => {
            let texts: Vec<&str> = judged.iter().map(|q| q.text.as_str()).collect();
            index.embed_queries(&texts)?.into_iter().map(Some).collect()
        }
    };
    let searcher = index.searcher();
    let mut run = Run::new();
    let mut duplicates_removed = 0;
    for (done, (query, vector)) in judged.iter().zip(&vectors).enumerate() {
        let hits = index.search_with(&searcher, &query.text, vector.as_deref(), &options.search)?;
        let mut results: Vec<(String, f64)> =
            hits.into_iter().map(|h| (h.id, h.score as f64)).collect();
        duplicates_removed += dedup_by_id(&mut results);
        run.insert(query.id.clone(), results);
        progress(done + 1);
    }
    let evaluation = evaluate(&run, qrels, &options.metrics);
    let asked: HashSet<&str> = queries.iter().map(|q| q.id.as_str()).collect();
    let missing_queries = qrels
        .keys()
        .filter(|id| !asked.contains(id.as_str()))
        .cloned()
        .collect();
    let judged_documents: BTreeSet<&str> = judged
        .iter()
        .filter_map(|q| qrels.get(&q.id))
        .flat_map(|docs| docs.keys().map(String::as_str))
        .collect();
    let missing_documents = missing_documents(index, &searcher, judged_documents)?;
    Ok(EvalReport {
        run,
        evaluation,
        queries: judged.len(),
        duplicates_removed,
        missing_queries,
        missing_documents,
    })
}

/// The ids among `ids` that no document of the index carries (looked up in the id field).
fn missing_documents(
    index: &LtreIndex,
    searcher: &tantivy::Searcher,
    ids: BTreeSet<&str>,
) -> Result<Vec<String>> {
    let field = index.id_field().field();
    if !index.index().schema().get_field_entry(field).is_indexed() {
        return Ok(Vec::new());
    }
    let mut missing = Vec::new();
    for id in ids {
        let term = tantivy::Term::from_field_text(field, id);
        if searcher.doc_freq(&term)? == 0 {
            missing.push(id.to_string());
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keeps_the_first_occurrence() {
        let mut results = vec![
            ("a".to_string(), 3.0),
            ("b".to_string(), 2.0),
            ("a".to_string(), 1.0),
        ];
        assert_eq!(dedup_by_id(&mut results), 1);
        assert_eq!(
            results,
            vec![("a".to_string(), 3.0), ("b".to_string(), 2.0)]
        );
    }
}
