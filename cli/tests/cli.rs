//! `ltre-cli` end to end on a tiny corpus and tiny random BERTs: index, search (bm25, dense,
//! hybrid), encoder list/activate/rollback, and a malformed corpus line.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ltre_core::testing::export_tiny_model;
use tantivy_ltre::encoders::{EncoderRecord, EncoderStore};

const CORPUS: &[(&str, &str, &str)] = ltre_core::testing::TINY_CORPUS;

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ltre-cli"))
        .args(args)
        .env("LTRE_LOG", "warn")
        .output()
        .unwrap()
}

/// Runs the CLI and returns its stdout, failing the test with stderr on error.
fn ok(args: &[&str]) -> String {
    let out = cli(args);
    assert!(
        out.status.success(),
        "ltre-cli {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn export_tiny(root: &Path, seed: u64) -> PathBuf {
    export_tiny_model(root, seed, false).unwrap()
}

fn write_corpus(path: &Path) {
    ltre_core::testing::write_tiny_corpus(path).unwrap();
}

/// `(id, score)` of a `search --json` output.
fn hits(json: &str) -> Vec<(String, f64)> {
    let rows: Vec<serde_json::Value> = serde_json::from_str(json).unwrap();
    rows.iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn search(index: &str, mode: &str, extra: &[&str]) -> Vec<(String, f64)> {
    let mut args = vec![
        "search", "--index", index, "--mode", mode, "--json", "-k", "3",
    ];
    args.extend_from_slice(extra);
    args.push("fox");
    hits(&ok(&args))
}

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

/// `embed --corpus --out --shard` in two parts, then `index --vectors`: the same dense search
/// and recorded checksum as a direct `index`; a rerun of a written shard does nothing; vectors
/// of another model are refused.
#[test]
fn embed_shards_then_index_vectors() {
    let root = tempfile::tempdir().unwrap();
    let model = export_tiny(root.path(), 1);
    let corpus = root.path().join("corpus.jsonl");
    write_corpus(&corpus);
    let (model_s, corpus_s) = (model.to_str().unwrap(), corpus.to_str().unwrap());
    let direct = root.path().join("direct");
    let direct_s = direct.to_str().unwrap();
    ok(&[
        "index",
        "--corpus",
        corpus_s,
        "--model",
        model_s,
        "--index",
        direct_s,
        "--threads",
        "1",
        "--batch-size",
        "4",
    ]);
    let vectors = root.path().join("vectors");
    let vectors_s = vectors.to_str().unwrap();
    for shard in ["0/2", "1/2"] {
        let out = cli(&[
            "embed",
            "--model",
            model_s,
            "--corpus",
            corpus_s,
            "--out",
            vectors_s,
            "--shard",
            shard,
            "--batch-size",
            "4",
            "--threads",
            "1",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("shard {shard}: wrote")),
            "{stderr}"
        );
    }
    let out = cli(&[
        "embed",
        "--model",
        model_s,
        "--corpus",
        corpus_s,
        "--out",
        vectors_s,
        "--shard",
        "1/2",
        "--batch-size",
        "4",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already written"));
    // The shards were embedded in the batches the direct index used (`--batch-size 4`).
    let from = root.path().join("from-vectors");
    let from_s = from.to_str().unwrap();
    let out = cli(&[
        "index",
        "--corpus",
        corpus_s,
        "--model",
        model_s,
        "--vectors",
        vectors_s,
        "--index",
        from_s,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(search(from_s, "dense", &[]), search(direct_s, "dense", &[]));
    let recorded = |dir: &Path| {
        EncoderStore::new(dir)
            .record("base")
            .unwrap()
            .document_vectors_sha256
    };
    assert_eq!(recorded(&from), recorded(&direct));
    ok(&["verify", "--index", from_s]);
    // Vectors of another model are refused, naming the fingerprints.
    let other = export_tiny(root.path(), 2);
    let out = cli(&[
        "index",
        "--corpus",
        corpus_s,
        "--model",
        other.to_str().unwrap(),
        "--vectors",
        vectors_s,
        "--index",
        root.path().join("x").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another model"), "{stderr}");
    // Today's text mode still works.
    let json = ok(&["embed", "--model", model_s, "the fox"]);
    let rows: Vec<Vec<f32>> = serde_json::from_str(&json).unwrap();
    assert_eq!(rows.len(), 1);
}
