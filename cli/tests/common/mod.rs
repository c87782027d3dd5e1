//! Test support shared by the CLI test files: running `ltre-cli`, and a small trainable
//! collection.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ltre_core::testing::export_tiny_model;

pub fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ltre-cli"))
        .args(args)
        .env("LTRE_LOG", "warn")
        .output()
        .unwrap()
}

/// Runs the CLI and returns its stdout, failing the test with stderr on error.
pub fn ok(args: &[&str]) -> String {
    let out = cli(args);
    assert!(
        out.status.success(),
        "ltre-cli {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A collection over the tiny vocabulary (each query: two words of its relevant document,
/// graded 2, and a neighbour graded 1), indexed with a trainable tiny model. Returns the index,
/// queries, train qrels, held-out qrels (the first 4 queries) and a training config.
pub fn trainable_collection(root: &Path) -> [PathBuf; 5] {
    let model = export_tiny_model(root, 11, true).unwrap();
    let collection = ltre_core::testing::tiny_judged(32, 16, 9, 5, [1, 6], |q, d| {
        format!("q{q}\td{d}\t2\nq{q}\td{}\t1\n", (d + 1) % 32)
    });
    // The first four queries' judgments are the held-out file.
    let dev: String = collection
        .qrels
        .lines()
        .skip(1)
        .filter(|l| {
            ["q0\t", "q1\t", "q2\t", "q3\t"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let paths = [
        root.join("index"),
        root.join("queries.jsonl"),
        root.join("qrels.tsv"),
        root.join("dev.tsv"),
        root.join("train.toml"),
    ];
    let corpus_path = root.join("corpus.jsonl");
    std::fs::write(&corpus_path, &collection.corpus).unwrap();
    std::fs::write(&paths[1], &collection.queries).unwrap();
    std::fs::write(&paths[2], &collection.qrels).unwrap();
    std::fs::write(&paths[3], dev).unwrap();
    std::fs::write(
        &paths[4],
        "epochs = 2\nbatch_size = 4\ntop_n = 16\nrr_cut = 16\ncheckpoint_every = 1\n\n[optimizer]\nlr = 0.002\n",
    )
    .unwrap();
    ok(&[
        "index",
        "--corpus",
        corpus_path.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--index",
        paths[0].to_str().unwrap(),
        "--threads",
        "1",
    ]);
    paths
}

pub fn export_tiny(root: &Path, seed: u64) -> PathBuf {
    export_tiny_model(root, seed, false).unwrap()
}

pub fn write_corpus(path: &Path) {
    ltre_core::testing::write_tiny_corpus(path).unwrap();
}

/// `(id, score)` of a `search --json` output.
pub fn hits(json: &str) -> Vec<(String, f64)> {
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

pub fn search(index: &str, mode: &str, extra: &[&str]) -> Vec<(String, f64)> {
    let mut args = vec![
        "search", "--index", index, "--mode", mode, "--json", "-k", "3",
    ];
    args.extend_from_slice(extra);
    args.push("fox");
    hits(&ok(&args))
}
