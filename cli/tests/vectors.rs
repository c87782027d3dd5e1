//! `ltre-cli embed --corpus --out --shard` (Parquet vector shards) and `index --vectors`.
mod common;

use std::path::Path;

use common::{cli, export_tiny, ok, search, write_corpus};
use tantivy_ltre::encoders::EncoderStore;

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
