//! `index_corpus` and `evaluate_queries` as a library: repeated ids in the report, the recorded
//! document-vector checksum (brought up to date after an interrupted run, never over a changed
//! index), and qrels that match nothing counted in the `EvalReport`.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ltre_core::data::Query;
use ltre_core::testing::export_tiny_model;
use tantivy::Term;
use tantivy_ltre::corpus::{index_corpus, CorpusOptions, DuplicateId};
use tantivy_ltre::encoders::EncoderStore;
use tantivy_ltre::eval::{evaluate_queries, EvalOptions};
use tantivy_ltre::{LtreIndex, RetrievalMode};

fn write_lines(path: &Path, docs: &[(&str, &str)]) {
    let lines: Vec<String> = docs
        .iter()
        .map(|(id, text)| serde_json::json!({"_id": id, "title": "", "text": text}).to_string())
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn options(model: &Path) -> CorpusOptions {
    CorpusOptions {
        model: Some(model.to_path_buf()),
        threads: 1,
        commit_every: 2,
        ..CorpusOptions::default()
    }
}

fn setup(root: &Path) -> (PathBuf, PathBuf) {
    let model = export_tiny_model(root, 1, false).unwrap();
    let corpus = root.join("corpus.jsonl");
    write_lines(
        &corpus,
        &[
            ("a", "the fox"),
            ("b", "a cat"),
            ("a", "the fox again"),
            ("c", "a river"),
            ("b", "a cat again"),
        ],
    );
    (model, corpus)
}

fn recorded(dir: &Path) -> String {
    EncoderStore::new(dir)
        .record("base")
        .unwrap()
        .document_vectors_sha256
}

#[test]
fn repeated_ids_are_refused_and_reported_with_their_lines() {
    let root = tempfile::tempdir().unwrap();
    let (model, corpus) = setup(root.path());
    let dir = root.path().join("index");
    for run in 0..2 {
        let report = index_corpus(&dir, &corpus, &options(&model), |_| {}).unwrap();
        assert_eq!(report.added + report.skipped, 3, "run {run}");
        assert_eq!(report.duplicates, 2, "run {run}");
        assert_eq!(
            report.duplicate_examples,
            vec![
                DuplicateId {
                    id: "a".into(),
                    line: 3,
                    first_line: 1
                },
                DuplicateId {
                    id: "b".into(),
                    line: 5,
                    first_line: 2
                },
            ]
        );
    }
    let index = LtreIndex::open(&dir).unwrap();
    assert_eq!(index.searcher().num_docs(), 3);
}

#[test]
fn a_stale_record_is_brought_up_to_date_but_a_changed_index_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let (model, corpus) = setup(root.path());
    let dir = root.path().join("index");
    index_corpus(&dir, &corpus, &options(&model), |_| {}).unwrap();
    let good = recorded(&dir);
    // As a run killed after its last commit and before recording leaves it.
    let store = EncoderStore::new(&dir);
    let mut record = store.record("base").unwrap();
    record.document_vectors_sha256 = "0".repeat(64);
    store.write_record(&record).unwrap();
    let report = index_corpus(&dir, &corpus, &options(&model), |_| {}).unwrap();
    assert_eq!(report.added, 0);
    assert_eq!(recorded(&dir), good);

    // A commit by another writer (no tally) that deletes a document: refused, record kept.
    let index = LtreIndex::open(&dir).unwrap();
    let id = index.id_field().field();
    let mut writer: tantivy::IndexWriter = index.index().writer(15_000_000).unwrap();
    writer.delete_term(Term::from_field_text(id, "c"));
    writer.commit().unwrap();
    drop(writer);
    drop(index);
    let error = index_corpus(&dir, &corpus, &options(&model), |_| {}).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("document vectors changed since they were recorded"),
        "{error}"
    );
    assert_eq!(recorded(&dir), good);
}

#[test]
fn eval_report_counts_qrels_that_match_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (model, corpus) = setup(root.path());
    let dir = root.path().join("index");
    index_corpus(&dir, &corpus, &options(&model), |_| {}).unwrap();
    let index = LtreIndex::open(&dir).unwrap();
    let queries = vec![Query {
        id: "q1".into(),
        text: "fox".into(),
    }];
    let qrels = BTreeMap::from([
        (
            "q1".to_string(),
            BTreeMap::from([("a".to_string(), 1), ("zz".to_string(), 1)]),
        ),
        ("q2".to_string(), BTreeMap::from([("b".to_string(), 1)])),
    ]);
    let mut eval = EvalOptions::default();
    eval.search.mode = RetrievalMode::Bm25;
    let report = evaluate_queries(&index, &queries, &qrels, &eval, |_| {}).unwrap();
    assert_eq!(report.missing_queries, vec!["q2".to_string()]);
    assert_eq!(report.missing_documents, vec!["zz".to_string()]);
}
