//! Fault injection for `ltre-cli train`: kill -9 at seeded random points, then the same command
//! again must finish with exactly the result of an uninterrupted run (`--threads 1`: the same
//! per-epoch losses and held-out nDCG, byte-identical selected parameters).
//!
//! `LTRE_FAULT_TRIALS` (default 20) and `LTRE_FAULT_SEED` (default 1) scale it;
//! `scripts/fault_train.sh TRIALS SEED` runs a longer version.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ltre_core::testing::{export_tiny_model, tiny_judged, TinyJudged};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tantivy_ltre::corpus::{index_corpus, CorpusOptions};

const DOCS: usize = 48;
const QUERIES: usize = 32;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A synthetic collection over the tiny vocabulary: each query is two words of its one
/// relevant document.
fn write_collection(root: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let TinyJudged {
        corpus,
        queries,
        qrels,
    } = tiny_judged(DOCS, QUERIES, 5, 7, [2, 5], |q, d| {
        format!("q{q}\td{d}\t1\n")
    });
    let paths = (
        root.join("corpus.jsonl"),
        root.join("queries.jsonl"),
        root.join("qrels.tsv"),
    );
    std::fs::write(&paths.0, corpus).unwrap();
    std::fs::write(&paths.1, queries).unwrap();
    std::fs::write(&paths.2, qrels).unwrap();
    paths
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    args: Vec<String>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let model = export_tiny_model(&root, 11, true).unwrap();
    let (corpus, queries, qrels) = write_collection(&root);
    let index = root.join("index");
    let options = CorpusOptions {
        model: Some(model),
        threads: 1,
        ..CorpusOptions::default()
    };
    index_corpus(&index, &corpus, &options, |_| {}).unwrap();
    let config = root.join("train.toml");
    std::fs::write(
        &config,
        "epochs = 4\nbatch_size = 4\ntop_n = 20\nrr_cut = 20\ncheckpoint_every = 1\ndev_fraction = 0.25\n\n[optimizer]\nlr = 0.001\n",
    )
    .unwrap();
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let args = vec![
        "train".into(),
        "--index".into(),
        path(&index),
        "--queries".into(),
        path(&queries),
        "--qrels".into(),
        path(&qrels),
        "--config".into(),
        path(&config),
        "--threads".into(),
        "1".into(),
    ];
    Setup {
        _dir: dir,
        root,
        args,
    }
}

fn train(setup: &Setup, run_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ltre-cli"));
    cmd.args(&setup.args)
        .arg("--run-dir")
        .arg(run_dir)
        .env("LTRE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn run_to_end(setup: &Setup, run_dir: &Path) {
    let out = train(setup, run_dir).output().unwrap();
    assert!(
        out.status.success(),
        "train in {} failed: {}",
        run_dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What must not depend on interruptions: per-epoch loss and held-out nDCG, the best epoch, and
/// the bytes of the selected and of the last parameters.
type Outcome = (Vec<(String, String)>, String, Vec<u8>, Vec<u8>);

fn outcome(run_dir: &Path) -> Outcome {
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    let history = summary["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["loss"].to_string(), e["dev_ndcg10"].to_string()))
        .collect();
    let read = |p: PathBuf| std::fs::read(p).unwrap_or_default();
    (
        history,
        summary["best_epoch"].to_string(),
        read(run_dir.join("best").join("params.safetensors")),
        read(run_dir.join("checkpoint").join("params.safetensors")),
    )
}

#[test]
fn killed_training_resumes_to_the_uninterrupted_result() {
    let setup = setup();
    let reference_dir = setup.root.join("run-reference");
    let start = Instant::now();
    run_to_end(&setup, &reference_dir);
    let full = start.elapsed();
    let reference = outcome(&reference_dir);
    assert_eq!(reference.0.len(), 4, "four epochs recorded");
    assert!(
        !reference.3.is_empty(),
        "the finished run leaves its last checkpoint"
    );

    let trials = env_or("LTRE_FAULT_TRIALS", 20);
    let mut rng = StdRng::seed_from_u64(env_or("LTRE_FAULT_SEED", 1));
    let (mut killed, mut finished_first) = (0, 0);
    for trial in 0..trials {
        let run_dir = setup.root.join(format!("run-{trial}"));
        // Kill points spread over the whole run, start-up (export, index open) included.
        let delay = Duration::from_secs_f64(full.as_secs_f64() * rng.random_range(0.0..1.1));
        let mut child = train(&setup, &run_dir).spawn().unwrap();
        std::thread::sleep(delay);
        match child.try_wait().unwrap() {
            Some(_) => finished_first += 1,
            None => {
                child.kill().unwrap(); // SIGKILL on Unix
                killed += 1;
            }
        }
        child.wait().unwrap();
        run_to_end(&setup, &run_dir);
        let got = outcome(&run_dir);
        assert_eq!(
            got.0, reference.0,
            "trial {trial}: history differs after a kill at {delay:?}"
        );
        assert_eq!(got.1, reference.1, "trial {trial}: best epoch differs");
        assert!(
            got.2 == reference.2,
            "trial {trial}: selected parameters differ"
        );
        assert!(
            got.3 == reference.3,
            "trial {trial}: last parameters differ"
        );
    }
    eprintln!("{killed} runs killed, {finished_first} finished before the kill");
    assert!(killed > 0, "no trial was actually interrupted");
}
