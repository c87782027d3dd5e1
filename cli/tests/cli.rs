//! `ltre-cli` end to end on a tiny corpus and tiny random BERTs: index, search (bm25, dense,
//! hybrid), encoder list/activate/rollback, and a malformed corpus line.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{cli, export_tiny, ok, search, trainable_collection, write_corpus};

use tantivy_ltre::encoders::{EncoderRecord, EncoderStore};

const CORPUS: &[(&str, &str, &str)] = ltre_core::testing::TINY_CORPUS;

/// The `list` row of the active encoder.
fn active_row(index: &str) -> String {
    let table = ok(&["encoder", "list", "--index", index]);
    let active: Vec<&str> = table.lines().filter(|l| l.starts_with('*')).collect();
    assert_eq!(active.len(), 1, "{table}");
    active[0].to_string()
}

#[test]
fn index_search_and_switch_encoders() {
    let root = tempfile::tempdir().unwrap();
    let (model_a, model_b) = (export_tiny(root.path(), 1), export_tiny(root.path(), 2));
    let corpus = root.path().join("corpus.jsonl");
    write_corpus(&corpus);
    let index_dir = root.path().join("index");
    let index = index_dir.to_str().unwrap();
    ok(&[
        "index",
        "--corpus",
        corpus.to_str().unwrap(),
        "--model",
        model_a.to_str().unwrap(),
        "--index",
        index,
        "--threads",
        "1",
    ]);

    // BM25 finds the two fox documents first.
    let bm25 = search(index, "bm25", &[]);
    let mut top2: Vec<&str> = bm25[..2].iter().map(|(id, _)| id.as_str()).collect();
    top2.sort();
    assert_eq!(top2, ["d1", "d4"]);
    let dense_a = search(index, "dense", &[]);
    assert_eq!(dense_a.len(), 3);
    for fusion in ["rrf", "linear", "cascade"] {
        let hybrid = search(index, "hybrid", &["--fusion", fusion]);
        if fusion == "cascade" {
            // The cascade re-ranks the BM25 candidates only: the two fox documents.
            let mut ids: Vec<&str> = hybrid.iter().map(|(id, _)| id.as_str()).collect();
            ids.sort();
            assert_eq!(ids, ["d1", "d4"]);
        } else {
            assert_eq!(hybrid.len(), 3, "{fusion}");
        }
    }

    // The base encoder's record holds the checksum of the document vectors.
    let store = EncoderStore::new(&index_dir);
    let base = store.record("base").unwrap();
    assert_eq!(base.document_vectors_sha256.len(), 64);
    let mut record = EncoderRecord::new("ckpt-2");
    record.parent = Some("base".into());
    record.metrics.insert("dev_ndcg10".into(), 0.4321);
    record.note = Some("second seed".into());
    let id = store.install_version(&model_b, record).unwrap();
    assert_eq!(id, "ltre-0001");

    assert!(active_row(index).contains("base"));
    let table = ok(&["encoder", "list", "--index", index]);
    assert!(
        table.contains("0.4321") && table.contains("second seed"),
        "{table}"
    );

    ok(&["encoder", "activate", "--index", index, "ltre-0001"]);
    assert!(active_row(index).contains("ltre-0001"));
    let dense_b = search(index, "dense", &[]);
    assert_ne!(
        dense_a, dense_b,
        "the activated encoder must change dense scores"
    );
    // Pinning an encoder overrides the active one.
    assert_eq!(search(index, "dense", &["--encoder", "base"]), dense_a);

    let out = ok(&["encoder", "rollback", "--index", index]);
    assert!(out.contains("base"), "{out}");
    assert!(active_row(index).contains("base"));
    assert_eq!(search(index, "dense", &[]), dense_a);

    let out = cli(&["encoder", "rollback", "--index", index]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to roll back"));
    let out = cli(&["encoder", "activate", "--index", index, "ltre-0042"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("encoder list"));
}

#[test]
fn malformed_corpus_line_is_reported_with_its_number() {
    let root = tempfile::tempdir().unwrap();
    let corpus = root.path().join("corpus.jsonl");
    std::fs::write(
        &corpus,
        "{\"_id\": \"d1\", \"title\": \"a\", \"text\": \"b\"}\n\
         {\"_id\": \"d2\", \"title\": \"c\", \"text\": \"d\"}\n\
         {\"_id\": \"d3\", \"title\": \"e\", \"text\": \n",
    )
    .unwrap();
    let index = root.path().join("index");
    let out = cli(&[
        "index",
        "--corpus",
        corpus.to_str().unwrap(),
        "--index",
        index.to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains("corpus.jsonl"), "{stderr}");
}

/// `index --from-index`: an application's Tantivy index (its own schema) gains the dense field
/// in a new directory; the old one is left alone and the new one is searchable.
#[test]
fn from_index_adds_the_dense_field() {
    use tantivy::schema::{Schema, FAST, STORED, STRING, TEXT};
    use tantivy::{doc, Index, IndexWriter};
    let root = tempfile::tempdir().unwrap();
    let model = export_tiny(root.path(), 3);
    let old = root.path().join("app");
    std::fs::create_dir_all(&old).unwrap();
    let mut builder = Schema::builder();
    let key = builder.add_text_field("key", STRING | STORED | FAST);
    let body = builder.add_text_field("body", TEXT | STORED);
    let index = Index::create_in_dir(&old, builder.build()).unwrap();
    let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    for (id, _, text) in CORPUS {
        writer
            .add_document(doc!(key => *id, body => *text))
            .unwrap();
    }
    writer.commit().unwrap();
    drop(writer);
    let new = root.path().join("app-dense");
    let new_str = new.to_str().unwrap();
    let base = [
        "index",
        "--from-index",
        old.to_str().unwrap(),
        "--text-fields",
        "body",
        "--model",
        model.to_str().unwrap(),
        "--index",
        new_str,
        "--threads",
        "1",
    ];
    // No `id` field: the id field must be named.
    let out = cli(&base);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--id-field"));
    assert!(!new.join("meta.json").exists());
    let mut args = base.to_vec();
    args.extend(["--id-field", "key"]);
    ok(&args);
    let bm25 = search(new_str, "bm25", &[]);
    let mut top2: Vec<&str> = bm25[..2].iter().map(|(id, _)| id.as_str()).collect();
    top2.sort();
    assert_eq!(top2, ["d1", "d4"]);
    assert_eq!(search(new_str, "dense", &[]).len(), 3);
    assert_eq!(search(new_str, "hybrid", &[]).len(), 3);
}

#[test]
fn logs_redirected_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    write_corpus(&corpus);
    let index = dir.path().join("idx");
    let args = [
        "index",
        "--corpus",
        corpus.to_str().unwrap(),
        "--index",
        index.to_str().unwrap(),
    ];
    ok(&args);
    // The resume logs an INFO line; stderr is a pipe here, as when redirected to a file.
    let out = Command::new(env!("CARGO_BIN_EXE_ltre-cli"))
        .args(args)
        .env("LTRE_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("resuming"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "escape codes in: {stderr:?}");
}

// ---- `ltre-cli feedback` and `train --feedback` ----

/// A lexical-only index of the tiny corpus (the feedback log needs only its directory).
fn feedback_index(root: &Path) -> PathBuf {
    let corpus = root.join("corpus.jsonl");
    write_corpus(&corpus);
    let index = root.join("index");
    ok(&[
        "index",
        "--corpus",
        corpus.to_str().unwrap(),
        "--index",
        index.to_str().unwrap(),
    ]);
    index
}

fn feedback_stats(index: &str) -> serde_json::Value {
    serde_json::from_str(&ok(&["feedback", "stats", "--index", index, "--json"])).unwrap()
}

fn fails_with(args: &[&str], needle: &str) {
    let out = cli(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
}

#[test]
fn feedback_add_import_stats_and_errors() {
    let root = tempfile::tempdir().unwrap();
    let index_dir = feedback_index(root.path());
    let index = index_dir.to_str().unwrap();
    fn add<'a>(index: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["feedback", "add", "--index", index];
        args.extend_from_slice(extra);
        args
    }
    ok(&add(
        index,
        &["--query", "quick fox", "--doc", "d1", "--grade", "2"],
    ));
    ok(&add(
        index,
        &[
            "--query",
            "quick  fox",
            "--doc",
            "d4",
            "--click",
            "--time",
            "5",
        ],
    ));
    ok(&add(
        index,
        &["--query", "cats", "--doc", "d6", "--grade", "-1"],
    ));
    fails_with(&add(index, &["--query", "cats", "--doc", "d2"]), "--grade");
    fails_with(
        &add(
            index,
            &["--query", "cats", "--doc", "d2", "--grade", "1", "--click"],
        ),
        "cannot be used with",
    );
    fails_with(
        &add(index, &["--query", " ", "--doc", "d2", "--click"]),
        "query text is empty",
    );
    fails_with(
        &add(
            index,
            &["--query", "cats", "--doc", "d2", "--grade", "5000"],
        ),
        "outside",
    );

    let file = root.path().join("clicks.jsonl");
    std::fs::write(
        &file,
        "{\"query\":\"cats\",\"doc\":\"d2\",\"click\":true,\"time\":7}\n\n\
         {\"query\":\"river\",\"doc\":\"d3\",\"grade\":1}\n",
    )
    .unwrap();
    let import = [
        "feedback",
        "import",
        "--index",
        index,
        "--file",
        file.to_str().unwrap(),
    ];
    assert!(ok(&import).contains("appended 2 records"));
    // Re-importing with the times given adds exact duplicates only.
    ok(&[&import[..], &["--time", "9"]].concat());
    let stats = feedback_stats(index);
    assert_eq!(stats["records"], 7);
    assert_eq!(stats["clicks"], 3);
    assert_eq!(stats["grades"], 4);
    assert_eq!(stats["distinct_queries"], 3);
    // `river` had no time: now at the first import, 9 at the second.
    assert_eq!(stats["duplicates"], 1);

    let bad = root.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"query\":\"cats\",\"doc\":\"d2\",\"click\":true}\n{\"query\":\"cats\",\"doc\":\"d2\"}\n",
    )
    .unwrap();
    fails_with(
        &[
            "feedback",
            "import",
            "--index",
            index,
            "--file",
            bad.to_str().unwrap(),
        ],
        "bad.jsonl: line 2",
    );
    fails_with(&["feedback", "import", "--index", index], "--file");
    assert_eq!(feedback_stats(index)["records"], 7);

    // A kill mid-append, by hand: reported by stats, removed by the next append.
    let log = index_dir.join("feedback").join("log.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("{\"query\":\"ca");
    std::fs::write(&log, &text).unwrap();
    assert_eq!(feedback_stats(index)["torn_tail_bytes"], 12);
    let shown = ok(&["feedback", "stats", "--index", index]);
    assert!(shown.contains("torn last line of 12 bytes"), "{shown}");
    let out = cli(&add(index, &["--query", "cats", "--doc", "d2", "--click"]));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("torn last line of 12 bytes"));
    let stats = feedback_stats(index);
    assert_eq!(
        (stats["records"].as_u64(), stats["torn_tail_bytes"].as_u64()),
        (Some(8), Some(0))
    );

    // A malformed complete line is an error naming the file and the line.
    std::fs::write(&log, "{\"query\":\"cats\"}\n").unwrap();
    fails_with(
        &["feedback", "stats", "--index", index],
        "log.jsonl: line 1",
    );
    fails_with(
        &[
            "feedback",
            "stats",
            "--index",
            root.path().join("nope").to_str().unwrap(),
        ],
        "not a directory",
    );
}

#[test]
fn feedback_from_concurrent_processes_loses_nothing() {
    const PROCESSES: usize = 6;
    const PER_FILE: usize = 40;
    const ADDS: usize = 5;
    let root = tempfile::tempdir().unwrap();
    let index_dir = feedback_index(root.path());
    let index = index_dir.to_str().unwrap().to_string();
    for p in 0..PROCESSES {
        // Long lines make a torn or interleaved write visible.
        let lines: Vec<String> = (0..PER_FILE)
            .map(|i| {
                serde_json::json!({
                    "query": format!("query {p} {}", "pad ".repeat(100)),
                    "doc": format!("f{p}-{i}"),
                    "grade": 1,
                    "time": 1
                })
                .to_string()
            })
            .collect();
        std::fs::write(
            root.path().join(format!("batch-{p}.jsonl")),
            lines.join("\n"),
        )
        .unwrap();
    }
    let run = |args: Vec<String>| {
        let out = Command::new(env!("CARGO_BIN_EXE_ltre-cli"))
            .args(&args)
            .env("LTRE_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Per process slot: one importer and one process adding clicks one by one, all at once.
    std::thread::scope(|scope| {
        for p in 0..PROCESSES {
            let file = root.path().join(format!("batch-{p}.jsonl"));
            let index = &index;
            scope.spawn(move || {
                run(vec![
                    "feedback".into(),
                    "import".into(),
                    "--index".into(),
                    index.clone(),
                    "--file".into(),
                    file.to_string_lossy().into_owned(),
                ])
            });
            scope.spawn(move || {
                for i in 0..ADDS {
                    run([
                        "feedback", "add", "--index", index, "--query", "fox", "--click",
                    ]
                    .iter()
                    .map(|s| s.to_string())
                    .chain(["--doc".to_string(), format!("a{p}-{i}")])
                    .collect())
                }
            });
        }
    });
    let log = tantivy_ltre::feedback::FeedbackLog::open(&index_dir).unwrap();
    let read = log.read().unwrap();
    assert_eq!(read.torn_tail_bytes, 0);
    let total = PROCESSES * PER_FILE + PROCESSES * ADDS;
    assert_eq!(read.records.len(), total);
    let docs: std::collections::BTreeSet<&str> =
        read.records.iter().map(|r| r.doc.as_str()).collect();
    assert_eq!(docs.len(), total);
    // An import is one write: its records are adjacent, in file order.
    let mut i = 0;
    while i < read.records.len() {
        if let Some(rest) = read.records[i].doc.strip_prefix('f') {
            let p = rest.split('-').next().unwrap().to_string();
            for k in 0..PER_FILE {
                assert_eq!(
                    read.records[i + k].doc,
                    format!("f{p}-{k}"),
                    "record {}",
                    i + k
                );
            }
            i += PER_FILE;
        } else {
            i += 1;
        }
    }
    assert_eq!(log.stats().unwrap().duplicates, 0);
}

/// `train --feedback` after `feedback import --queries --qrels` reports the same held-out and
/// evaluation numbers, before and after, as `train --qrels` (same held-out queries, one thread).
#[test]
fn train_from_feedback_matches_train_from_qrels() {
    let root = tempfile::tempdir().unwrap();
    let [index, queries, qrels, dev, config] = trainable_collection(root.path());
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (index, queries, qrels, dev, config) =
        (s(&index), s(&queries), s(&qrels), s(&dev), s(&config));
    let run_a = s(&root.path().join("runs/qrels"));
    let run_b = s(&root.path().join("runs/feedback"));
    let common = [
        "--index",
        &index,
        "--queries",
        &queries,
        "--dev-qrels",
        &dev,
        "--eval-qrels",
        &qrels,
        "--config",
        &config,
        "--threads",
        "1",
    ];
    let train = |source: &[&str], run_dir: &str| -> Vec<String> {
        ["train"]
            .iter()
            .chain(common.iter())
            .chain(source.iter())
            .chain(["--run-dir", run_dir].iter())
            .map(|s| s.to_string())
            .collect()
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    fails_with(&args(&train(&[], &run_a)), "no training data");
    fails_with(
        &args(&train(&["--qrels", &qrels, "--feedback"], &run_a)),
        "not both",
    );
    fails_with(
        &args(&train(&["--feedback"], &run_b)),
        "no feedback recorded",
    );

    ok(&[
        "feedback",
        "import",
        "--index",
        &index,
        "--queries",
        &queries,
        "--qrels",
        &qrels,
    ]);
    let from_qrels: serde_json::Value =
        serde_json::from_str(&ok(&args(&train(&["--qrels", &qrels], &run_a)))).unwrap();
    let from_feedback: serde_json::Value =
        serde_json::from_str(&ok(&args(&train(&["--feedback"], &run_b)))).unwrap();
    for key in [
        "train_queries",
        "dev_queries",
        "baseline_dev_ndcg10",
        "best_dev_ndcg10",
        "best_epoch",
        "eval_queries",
        "eval_before_ndcg10",
        "eval_after_ndcg10",
    ] {
        assert_eq!(from_feedback[key], from_qrels[key], "{key}");
    }
    assert_eq!(from_qrels["dev_queries"], 4);
    assert_eq!(from_qrels["train_queries"], 12);
    let history = |v: &serde_json::Value| -> Vec<(f64, f64)> {
        v["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["loss"].as_f64().unwrap(),
                    e["dev_ndcg10"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(history(&from_feedback), history(&from_qrels));
    assert_ne!(
        from_feedback["training_data_sha256"],
        from_qrels["training_data_sha256"]
    );
}
