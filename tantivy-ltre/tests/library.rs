//! Whole ltre indexes through the library: index a corpus, open it as an [`LtreIndex`], search
//! in every mode, evaluate, and migrate an application's Tantivy index to gain the dense field.
//! The encoder is a tiny random BERT (`ltre_core::testing::export_tiny_model`).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ltre_core::data::Query;
use ltre_core::testing::export_tiny_model;
use tantivy::schema::{Schema, Value, FAST, INDEXED, STORED, STRING, TEXT};
use tantivy::{doc, Index, IndexWriter, TantivyDocument, Term};
use tantivy_ltre::corpus::{index_corpus, CorpusOptions};
use tantivy_ltre::eval::{evaluate_queries, EvalOptions};
use tantivy_ltre::migrate::{add_dense_field_to_index, MigrateOptions};
use tantivy_ltre::{
    EncoderChoice, FusionMethod, LtreIndex, Normalization, OpenOptions, RetrievalMode,
    SearchOptions,
};

const CORPUS: &[(&str, &str, &str)] = ltre_core::testing::TINY_CORPUS;

fn write_corpus(path: &Path) {
    ltre_core::testing::write_tiny_corpus(path).unwrap();
}

fn ids(hits: &[tantivy_ltre::Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.id.as_str()).collect()
}

fn corpus_index(root: &Path) -> (PathBuf, PathBuf) {
    let model = export_tiny_model(root, 1, false).unwrap();
    let corpus = root.join("corpus.jsonl");
    write_corpus(&corpus);
    let dir = root.join("index");
    let options = CorpusOptions {
        model: Some(model.clone()),
        threads: 1,
        commit_every: 4,
        ..CorpusOptions::default()
    };
    let mut seen = 0;
    let report = index_corpus(&dir, &corpus, &options, |n| seen += n).unwrap();
    assert_eq!((report.added, report.skipped, report.refused), (6, 0, 0));
    assert_eq!(seen, 6);
    // A rerun resumes: every id is already there.
    let again = index_corpus(&dir, &corpus, &options, |_| {}).unwrap();
    assert_eq!((again.added, again.skipped), (0, 6));
    (dir, model)
}

#[test]
fn index_open_search_and_evaluate() {
    let root = tempfile::tempdir().unwrap();
    let (dir, _) = corpus_index(root.path());
    let index = LtreIndex::open(&dir).unwrap();
    assert_eq!(index.query_encoder_id().as_deref(), Some("base"));

    let bm25 = SearchOptions {
        mode: RetrievalMode::Bm25,
        k: 3,
        ..SearchOptions::default()
    };
    let hits = index.search("fox", &bm25).unwrap();
    let mut top2 = ids(&hits)[..2].to_vec();
    top2.sort();
    assert_eq!(top2, ["d1", "d4"]);
    let searcher = index.searcher();
    assert!(index
        .title(&searcher, hits[0].address)
        .unwrap()
        .contains("fox"));
    assert_eq!(
        index.doc_id(&searcher, hits[0].address).unwrap(),
        hits[0].id
    );

    for fusion in [
        FusionMethod::Rrf { k: 60.0 },
        FusionMethod::Linear {
            alpha: 0.5,
            normalization: Normalization::ZScore,
        },
        FusionMethod::Cascade,
    ] {
        let options = SearchOptions {
            fusion,
            k: 3,
            ..SearchOptions::default()
        };
        assert!(!index.search("fox", &options).unwrap().is_empty());
    }
    let dense = SearchOptions {
        mode: RetrievalMode::Dense,
        k: 3,
        ..SearchOptions::default()
    };
    assert_eq!(index.search("fox", &dense).unwrap().len(), 3);

    // Validation.
    let k0 = SearchOptions {
        k: 0,
        ..bm25.clone()
    };
    assert!(index.search("fox", &k0).unwrap().is_empty());
    let err = |options: SearchOptions| index.search("fox", &options).unwrap_err().to_string();
    assert!(err(SearchOptions {
        depth: 0,
        ..SearchOptions::default()
    })
    .contains("depth"));
    let alpha = SearchOptions {
        fusion: FusionMethod::Linear {
            alpha: 1.5,
            normalization: Normalization::MinMax,
        },
        ..SearchOptions::default()
    };
    assert!(err(alpha).contains("alpha"));
    let open_err = |options: OpenOptions| match LtreIndex::open_with(&dir, &options) {
        Ok(_) => panic!("{options:?} opened"),
        Err(e) => e.to_string(),
    };
    let unknown_field = open_err(OpenOptions {
        lexical_fields: Some(vec!["nope".into()]),
        ..OpenOptions::default()
    });
    assert!(unknown_field.contains("`nope`"), "{unknown_field}");
    let unknown_encoder = open_err(OpenOptions {
        query_encoder: EncoderChoice::Pinned("ltre-0042".into()),
        ..OpenOptions::default()
    });
    assert!(
        unknown_encoder.contains("no encoder `ltre-0042`")
            && unknown_encoder.contains("encoder list"),
        "{unknown_encoder}"
    );

    // Evaluation: one judged query, metrics within their bounds.
    let queries = vec![
        Query {
            id: "q1".into(),
            text: "fox".into(),
        },
        Query {
            id: "q2".into(),
            text: "unjudged".into(),
        },
    ];
    let qrels = BTreeMap::from([(
        "q1".to_string(),
        BTreeMap::from([("d1".to_string(), 1), ("d4".to_string(), 1)]),
    )]);
    let mut options = EvalOptions::default();
    options.search.mode = RetrievalMode::Bm25;
    let report = evaluate_queries(&index, &queries, &qrels, &options, |_| {}).unwrap();
    assert_eq!(report.queries, 1);
    assert_eq!(report.duplicates_removed, 0);
    for value in &report.evaluation.mean {
        assert!((0.0..=1.0).contains(value), "{value}");
    }
    assert!(
        (report.evaluation.mean[2] - 1.0).abs() < 1e-9,
        "Recall@100 of fox"
    );
}

/// An application's index: its own schema, two segments, a deleted document, a stored-only
/// field and an indexed-but-unstored one.
fn app_index(dir: &Path, with_unstored: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let mut builder = Schema::builder();
    let key = builder.add_text_field("key", STRING | STORED | FAST);
    let title = builder.add_text_field("title", TEXT | STORED);
    let body = builder.add_text_field("body", TEXT | STORED);
    let year = builder.add_u64_field("year", INDEXED | STORED | FAST);
    let hidden = with_unstored.then(|| builder.add_text_field("hidden", TEXT));
    let index = Index::create_in_dir(dir, builder.build()).unwrap();
    let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    for (i, (id, t, b)) in CORPUS.iter().enumerate() {
        let mut doc = doc!(key => *id, title => *t, body => *b, year => 2000 + i as u64);
        if let Some(hidden) = hidden {
            doc.add_text(hidden, "secret");
        }
        writer.add_document(doc).unwrap();
        if i == 2 {
            writer.commit().unwrap();
        }
    }
    writer.commit().unwrap();
    writer.delete_term(Term::from_field_text(key, "d6"));
    writer.commit().unwrap();
    writer.wait_merging_threads().unwrap();
}

/// Every file of `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn migrate_adds_the_dense_field_to_an_app_index() {
    let root = tempfile::tempdir().unwrap();
    let model = export_tiny_model(root.path(), 2, false).unwrap();
    let old = root.path().join("app");
    app_index(&old, false);
    let before = snapshot(&old);
    let new = root.path().join("app-dense");
    let options = MigrateOptions {
        text_fields: vec!["title".into(), "body".into()],
        id_field: Some("key".into()),
        batch_size: 2,
        threads: 1,
        ..MigrateOptions::new(&model)
    };
    let mut seen = 0;
    let report = add_dense_field_to_index(&old, &new, &options, |n| seen += n).unwrap();
    assert_eq!(report.documents, 5);
    assert_eq!(seen, 5);
    assert_eq!(snapshot(&old), before, "the old index must not change");

    // Stored fields are copied; dense and hybrid search work through the library.
    let index = LtreIndex::open(&new).unwrap();
    let searcher = index.searcher();
    assert_eq!(searcher.num_docs(), 5);
    let dense = SearchOptions {
        mode: RetrievalMode::Dense,
        k: 10,
        ..SearchOptions::default()
    };
    let hits = index.search("fox", &dense).unwrap();
    let mut found = ids(&hits);
    found.sort();
    assert_eq!(found, ["d1", "d2", "d3", "d4", "d5"]);
    let year = index.index().schema().get_field("year").unwrap();
    for hit in &hits {
        let doc: TantivyDocument = searcher.doc(hit.address).unwrap();
        let i = CORPUS.iter().position(|(id, _, _)| *id == hit.id).unwrap();
        assert_eq!(
            index
                .stored_text(&searcher, hit.address, "body")
                .unwrap()
                .as_deref(),
            Some(CORPUS[i].2)
        );
        assert_eq!(
            doc.get_first(year).and_then(|v| v.as_u64()),
            Some(2000 + i as u64)
        );
    }
    let hybrid = index.search("fox", &SearchOptions::default()).unwrap();
    assert!(ids(&hybrid).contains(&"d1"));
    let base = tantivy_ltre::encoders::EncoderStore::new(&new)
        .record("base")
        .unwrap();
    assert_eq!(base.document_vectors_sha256.len(), 64);

    // A destination inside the old index, or a non-empty one, is refused.
    let inside = add_dense_field_to_index(&old, &old.join("dense"), &options, |_| {})
        .unwrap_err()
        .to_string();
    assert!(inside.contains("outside the old one"), "{inside}");
    assert_eq!(snapshot(&old), before);
    let err = add_dense_field_to_index(&old, &new, &options, |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("not empty"), "{err}");
}

#[test]
fn migrate_refuses_unstored_fields_unless_dropped() {
    let root = tempfile::tempdir().unwrap();
    let model = export_tiny_model(root.path(), 2, false).unwrap();
    let old = root.path().join("app");
    app_index(&old, true);
    let new = root.path().join("app-dense");
    let mut options = MigrateOptions {
        text_fields: vec!["body".into()],
        id_field: Some("key".into()),
        threads: 1,
        ..MigrateOptions::new(&model)
    };
    let err = add_dense_field_to_index(&old, &new, &options, |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hidden") && err.contains("not stored"),
        "{err}"
    );
    assert!(!new.exists() || std::fs::read_dir(&new).unwrap().next().is_none());
    options.drop_unstored = true;
    let report = add_dense_field_to_index(&old, &new, &options, |_| {}).unwrap();
    assert_eq!(report.dropped_fields, ["hidden"]);
    assert_eq!(report.documents, 5);
    let index = LtreIndex::open(&new).unwrap();
    assert!(index.index().schema().get_field("hidden").is_err());
}

/// A corpus holding one id twice: indexing keeps its first occurrence (the repeat is refused
/// and reported), so the run holds it once and no metric exceeds 1.
#[test]
fn evaluation_deduplicates_document_ids() {
    let root = tempfile::tempdir().unwrap();
    let corpus = root.path().join("corpus.jsonl");
    write_corpus(&corpus);
    let mut text = std::fs::read_to_string(&corpus).unwrap();
    text.push_str(r#"{"_id": "d1", "title": "fox again", "text": "another fox"}"#);
    text.push('\n');
    std::fs::write(&corpus, text).unwrap();
    let dir = root.path().join("index");
    let options = CorpusOptions {
        threads: 1,
        ..CorpusOptions::default()
    };
    let indexed = index_corpus(&dir, &corpus, &options, |_| {}).unwrap();
    assert_eq!((indexed.added, indexed.duplicates), (6, 1));
    let index = LtreIndex::open(&dir).unwrap();
    let queries = vec![Query {
        id: "q".into(),
        text: "fox".into(),
    }];
    let qrels = BTreeMap::from([("q".to_string(), BTreeMap::from([("d1".to_string(), 1)]))]);
    let mut options = EvalOptions::default();
    options.search.mode = RetrievalMode::Bm25;
    let report = evaluate_queries(&index, &queries, &qrels, &options, |_| {}).unwrap();
    assert_eq!(report.duplicates_removed, 0);
    assert_eq!(
        report.run["q"].iter().filter(|(id, _)| id == "d1").count(),
        1
    );
    for value in &report.evaluation.mean {
        assert!((0.0..=1.0).contains(value), "{value}");
    }
}
