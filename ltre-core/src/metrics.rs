//! Retrieval metrics that agree with `trec_eval` (checked against `pytrec-eval-terrier` by
//! `scripts/trec_parity.py` and the `trec_eval_parity` test).
//!
//! Conventions, all as in trec_eval:
//! - a run is ranked by score descending, ties broken by document id descending (byte order);
//!   the rank column of a run file is ignored;
//! - a document is relevant when its grade is `>= 1`; grades `<= 0` and unjudged documents are
//!   non-relevant;
//! - nDCG@k (`ndcg_cut_k`): gain = grade, discount `log2(rank + 1)`, the ideal ranking built from
//!   every judged relevant document of the query (not only the retrieved ones);
//! - MRR@k: `recip_rank` of the run cut at `k` (0 when no relevant document is in the top k);
//! - Recall@k (`recall_k`): relevant documents in the top k / all relevant documents.
//!
//! - a document retrieved more than once for a query counts once, at its best rank (trec_eval
//!   refuses such runs; ltre scores them without letting a metric exceed its maximum).
//!
//! Means ([`Evaluation::mean`]) are over the queries of the qrels that have at least one relevant
//! document; such a query absent from the run counts as 0 (trec_eval's `-c`).
//!
//! ```
//! use ltre_core::data::Qrels;
//! use ltre_core::metrics::{evaluate, Metric, Run};
//! let mut qrels = Qrels::new();
//! qrels.entry("q".into()).or_default().insert("d2".into(), 1);
//! let mut run = Run::new();
//! run.insert("q".into(), vec![("d1".into(), 0.9), ("d2".into(), 0.5)]);
//! let eval = evaluate(&run, &qrels, &[Metric::Mrr(10), Metric::Recall(1)]);
//! assert_eq!(eval.mean, vec![0.5, 0.0]);
//! ```
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::Path;

use crate::data::Qrels;
use crate::{Error, Result};

/// A run: query id -> retrieved `(document id, score)` pairs, in any order.
pub type Run = BTreeMap<String, Vec<(String, f64)>>;

/// A metric with its rank cut-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// nDCG at k (trec_eval `ndcg_cut_k`).
    Ndcg(usize),
    /// Mean reciprocal rank at k (trec_eval `recip_rank` on the run cut at k).
    Mrr(usize),
    /// Recall at k (trec_eval `recall_k`).
    Recall(usize),
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Metric::Ndcg(k) => write!(f, "nDCG@{k}"),
            Metric::Mrr(k) => write!(f, "MRR@{k}"),
            Metric::Recall(k) => write!(f, "Recall@{k}"),
        }
    }
}

/// The metrics ltre reports by default: nDCG@10, MRR@10, Recall@100.
pub const DEFAULT_METRICS: [Metric; 3] = [Metric::Ndcg(10), Metric::Mrr(10), Metric::Recall(100)];

/// Per-query and mean values of a list of metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The metrics, in the order of the value vectors.
    pub metrics: Vec<Metric>,
    /// Query id -> one value per metric, for every evaluated query (those with a relevant doc).
    pub per_query: BTreeMap<String, Vec<f64>>,
    /// Mean over [`Evaluation::per_query`], one value per metric (zeros when no query counts).
    pub mean: Vec<f64>,
}

/// Sorts `(doc id, score)` pairs in trec_eval's order: score descending, then doc id descending.
pub fn trec_order(results: &mut [(String, f64)]) {
    results.sort_by(|(doc_a, score_a), (doc_b, score_b)| {
        score_b
            .partial_cmp(score_a)
            .unwrap_or(Ordering::Equal)
            .then_with(|| doc_b.cmp(doc_a))
    });
}

fn is_relevant(grade: i32) -> bool {
    grade >= 1
}

/// The first `k` distinct documents of `ranked` with their 0-based rank among distinct
/// documents: a repeated id keeps its first (best) position, so no metric can exceed 1.
fn distinct_top<'a>(ranked: &'a [&'a str], k: usize) -> impl Iterator<Item = (usize, &'a str)> {
    let mut seen = std::collections::HashSet::new();
    ranked
        .iter()
        .copied()
        .filter(move |doc| seen.insert(*doc))
        .take(k)
        .enumerate()
}

/// nDCG@k of a ranked list of document ids against one query's judgements.
pub fn ndcg_at(ranked: &[&str], judgements: &BTreeMap<String, i32>, k: usize) -> f64 {
    let dcg: f64 = distinct_top(ranked, k)
        .map(|(i, doc)| {
            let grade = judgements.get(doc).copied().unwrap_or(0);
            if is_relevant(grade) {
                grade as f64 / (i as f64 + 2.0).log2()
            } else {
                0.0
            }
        })
        .sum();
    let mut ideal: Vec<i32> = judgements
        .values()
        .copied()
        .filter(|g| is_relevant(*g))
        .collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, g)| *g as f64 / (i as f64 + 2.0).log2())
        .sum();
    if idcg > 0.0 {
        dcg / idcg
    } else {
        0.0
    }
}

/// Reciprocal rank of the first relevant document within the top k (0 if none).
pub fn mrr_at(ranked: &[&str], judgements: &BTreeMap<String, i32>, k: usize) -> f64 {
    distinct_top(ranked, k)
        .find(|(_, doc)| judgements.get(*doc).is_some_and(|g| is_relevant(*g)))
        .map_or(0.0, |(i, _)| 1.0 / (i as f64 + 1.0))
}

/// Fraction of the relevant documents found in the top k (0 when the query has none).
pub fn recall_at(ranked: &[&str], judgements: &BTreeMap<String, i32>, k: usize) -> f64 {
    let relevant = judgements.values().filter(|g| is_relevant(**g)).count();
    if relevant == 0 {
        return 0.0;
    }
    let found = distinct_top(ranked, k)
        .filter(|(_, doc)| judgements.get(*doc).is_some_and(|g| is_relevant(*g)))
        .count();
    found as f64 / relevant as f64
}

/// Value of one metric on a ranked list.
pub fn metric_value(metric: Metric, ranked: &[&str], judgements: &BTreeMap<String, i32>) -> f64 {
    match metric {
        Metric::Ndcg(k) => ndcg_at(ranked, judgements, k),
        Metric::Mrr(k) => mrr_at(ranked, judgements, k),
        Metric::Recall(k) => recall_at(ranked, judgements, k),
    }
}

/// Evaluates a run against qrels (see the module docs for the conventions).
pub fn evaluate(run: &Run, qrels: &Qrels, metrics: &[Metric]) -> Evaluation {
    let mut per_query = BTreeMap::new();
    for (qid, judgements) in qrels {
        if !judgements.values().any(|g| is_relevant(*g)) {
            continue;
        }
        let mut results = run.get(qid).cloned().unwrap_or_default();
        trec_order(&mut results);
        let ranked: Vec<&str> = results.iter().map(|(doc, _)| doc.as_str()).collect();
        let values = metrics
            .iter()
            .map(|m| metric_value(*m, &ranked, judgements))
            .collect();
        per_query.insert(qid.clone(), values);
    }
    let mut mean = vec![0.0; metrics.len()];
    for values in per_query.values() {
        for (sum, v) in mean.iter_mut().zip(values) {
            *sum += v;
        }
    }
    if !per_query.is_empty() {
        let n = per_query.len() as f64;
        mean.iter_mut().for_each(|v| *v /= n);
    }
    Evaluation {
        metrics: metrics.to_vec(),
        per_query,
        mean,
    }
}

/// Writes a run in TREC format (`qid Q0 docid rank score tag`), each query in trec_eval order,
/// ranks from 1.
pub fn write_trec_run(path: &Path, run: &Run, tag: &str) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut out = std::io::BufWriter::new(file);
    for (qid, results) in run {
        let mut results = results.clone();
        trec_order(&mut results);
        for (rank, (doc, score)) in results.iter().enumerate() {
            writeln!(out, "{qid} Q0 {doc} {} {score} {tag}", rank + 1)
                .map_err(|e| Error::io(path, e))?;
        }
    }
    out.flush().map_err(|e| Error::io(path, e))
}

/// Reads a TREC run file (`qid Q0 docid rank score tag`; the rank column is ignored).
pub fn read_trec_run(path: &Path) -> Result<Run> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut run = Run::new();
    for (index, line) in text.lines().enumerate() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.is_empty() {
            continue;
        }
        let [qid, _, doc, _, score, ..] = cols.as_slice() else {
            return Err(Error::bad_file(
                path,
                format!(
                    "line {}: expected `qid Q0 docid rank score tag`, found {} columns",
                    index + 1,
                    cols.len()
                ),
            ));
        };
        let score: f64 = score.parse().map_err(|_| {
            Error::bad_file(
                path,
                format!("line {}: score `{score}` is not a number", index + 1),
            )
        })?;
        run.entry(qid.to_string())
            .or_default()
            .push((doc.to_string(), score));
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judgements(pairs: &[(&str, i32)]) -> BTreeMap<String, i32> {
        pairs.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    #[test]
    fn ndcg_hand_computed() {
        // Ranked: a(2) b(0) c(1); judged relevant: a=2, c=1, d=3 (d not retrieved).
        let j = judgements(&[("a", 2), ("b", 0), ("c", 1), ("d", 3)]);
        let dcg = 2.0 / 2f64.log2() + 1.0 / 4f64.log2();
        let idcg = 3.0 + 2.0 / 3f64.log2() + 1.0 / 4f64.log2();
        assert!((ndcg_at(&["a", "b", "c"], &j, 10) - dcg / idcg).abs() < 1e-12);
        // Cut at 2: c falls out of the DCG, the ideal is cut at 2 as well.
        let idcg2 = 3.0 + 2.0 / 3f64.log2();
        assert!((ndcg_at(&["a", "b", "c"], &j, 2) - 2.0 / idcg2).abs() < 1e-12);
    }

    #[test]
    fn negative_grades_are_non_relevant() {
        let j = judgements(&[("a", -1), ("b", 1)]);
        assert_eq!(ndcg_at(&["a", "b"], &j, 10), 1.0 / 3f64.log2());
        assert_eq!(mrr_at(&["a", "b"], &j, 10), 0.5);
        assert_eq!(recall_at(&["a"], &j, 10), 0.0);
    }

    #[test]
    fn mrr_and_recall_respect_the_cut() {
        let j = judgements(&[("c", 1), ("e", 1)]);
        let ranked = ["a", "b", "c", "d", "e"];
        assert_eq!(mrr_at(&ranked, &j, 3), 1.0 / 3.0);
        assert_eq!(mrr_at(&ranked, &j, 2), 0.0);
        assert_eq!(recall_at(&ranked, &j, 3), 0.5);
        assert_eq!(recall_at(&ranked, &j, 5), 1.0);
    }

    #[test]
    fn ties_break_by_doc_id_descending() {
        let mut results = vec![
            ("d1".to_string(), 1.0),
            ("d3".to_string(), 1.0),
            ("d2".to_string(), 2.0),
        ];
        trec_order(&mut results);
        let order: Vec<&str> = results.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(order, ["d2", "d3", "d1"]);
    }

    #[test]
    fn duplicate_documents_count_once_and_metrics_stay_bounded() {
        // A run listing the relevant document twice (a duplicate `_id` in an index) must not
        // score above the perfect run: before the fix nDCG@10 was 1.63 and Recall@100 2.0.
        let j = judgements(&[("d1", 1)]);
        let ranked = ["d1", "d1", "d2"];
        assert!((ndcg_at(&ranked, &j, 10) - 1.0).abs() < 1e-12);
        assert_eq!(recall_at(&ranked, &j, 100), 1.0);
        assert_eq!(mrr_at(&ranked, &j, 10), 1.0);
        // The duplicate does not push a relevant document out of the cut either.
        let j2 = judgements(&[("d1", 1), ("d2", 1)]);
        assert_eq!(recall_at(&["d1", "d1", "d2"], &j2, 2), 1.0);
        let mut qrels = Qrels::new();
        qrels.insert("q".into(), j2);
        let mut run = Run::new();
        run.insert(
            "q".into(),
            vec![("d1".into(), 2.0), ("d1".into(), 2.0), ("d2".into(), 1.0)],
        );
        let eval = evaluate(&run, &qrels, &DEFAULT_METRICS);
        assert!(
            eval.mean.iter().all(|v| (0.0..=1.0).contains(v)),
            "{:?}",
            eval.mean
        );
        assert!((eval.mean[0] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn mean_skips_queries_without_relevant_docs_and_zeroes_missing_ones() {
        let mut qrels = Qrels::new();
        qrels.insert("q1".into(), judgements(&[("a", 1)]));
        qrels.insert("q2".into(), judgements(&[("b", 1)])); // not in the run: counts 0
        qrels.insert("q3".into(), judgements(&[("c", 0)])); // no relevant doc: skipped
        let mut run = Run::new();
        run.insert("q1".into(), vec![("a".into(), 1.0)]);
        run.insert("q3".into(), vec![("c".into(), 1.0)]);
        run.insert("q4".into(), vec![("z".into(), 1.0)]); // not judged: ignored
        let eval = evaluate(&run, &qrels, &[Metric::Ndcg(10), Metric::Recall(10)]);
        assert_eq!(eval.per_query.len(), 2);
        assert_eq!(eval.per_query["q2"], vec![0.0, 0.0]);
        assert_eq!(eval.mean, vec![0.5, 0.5]);
    }

    #[test]
    fn run_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.trec");
        let mut run = Run::new();
        run.insert("q1".into(), vec![("a".into(), 0.25), ("b".into(), 0.5)]);
        write_trec_run(&path, &run, "ltre").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "q1 Q0 b 1 0.5 ltre\nq1 Q0 a 2 0.25 ltre\n");
        let back = read_trec_run(&path).unwrap();
        assert_eq!(
            back["q1"],
            vec![("b".to_string(), 0.5), ("a".to_string(), 0.25)]
        );
    }

    /// Agreement with trec_eval on the synthetic fixture written by `scripts/trec_parity.py`.
    #[test]
    fn trec_eval_parity() {
        // Cargo sets CARGO_MANIFEST_DIR when it runs tests; prefer it to the compile-time value,
        // which is stale when a shared target dir reuses a build from another checkout.
        let manifest = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
        let dir = Path::new(&manifest).join("../tests/fixtures/trec_parity");
        let run = read_trec_run(&dir.join("run.trec")).unwrap();
        let qrels = crate::data::read_qrels(dir.join("qrels.tsv")).unwrap();
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        let names = [
            "ndcg_cut_5",
            "ndcg_cut_10",
            "recall_10",
            "recall_100",
            "mrr_10",
        ];
        let metrics = [
            Metric::Ndcg(5),
            Metric::Ndcg(10),
            Metric::Recall(10),
            Metric::Recall(100),
            Metric::Mrr(10),
        ];
        let eval = evaluate(&run, &qrels, &metrics);
        let expected_queries = expected["per_query"].as_object().unwrap();
        assert_eq!(eval.per_query.len(), expected_queries.len());
        assert!(
            eval.per_query.contains_key("q5"),
            "a judged query missing from the run counts"
        );
        assert!(
            !eval.per_query.contains_key("q3"),
            "a query without relevant docs is skipped"
        );
        for (qid, values) in &eval.per_query {
            for (name, value) in names.iter().zip(values) {
                let want = expected_queries[qid][name].as_f64().unwrap();
                assert!(
                    (value - want).abs() < 1e-4,
                    "{qid} {name}: ltre {value}, trec_eval {want}"
                );
            }
        }
        for (name, value) in names.iter().zip(&eval.mean) {
            let want = expected["mean"][name].as_f64().unwrap();
            assert!(
                (value - want).abs() < 1e-4,
                "mean {name}: ltre {value}, trec_eval {want}"
            );
        }
    }
}
