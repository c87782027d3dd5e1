//! The LTRe training step at one collection size: the real query tower (all-MiniLM-L6-v2 with
//! its training graphs), synthetic document vectors, synthetic judged queries, the full
//! `Trainer::step` (encode forward, retrieval over all documents, loss, backward, AdamW).
use std::path::{Path, PathBuf};
use std::time::Instant;

use ltre::core::export::{export_checkpoint, ExportOptions};
use ltre::core::manifest::{Manifest, WordEmbeddingGrad};
use ltre::core::optim::AdamWConfig;
use ltre::core::train_step::{QueryTower, TowerOptions};
use ltre::core::trainer::{TrainConfig, TrainQuery, Trainer};
use ndarray::Array2;
use serde_json::{json, Value};

use crate::data::{median, rss_mib, Mixture, Rng, DIM};

type BoxError = Box<dyn std::error::Error>;

const BATCH: usize = 32;
const QUERIES: usize = 4 * BATCH;
/// Timed steps after one warm-up step.
const STEPS: usize = 5;

const WORDS: &[&str] = &[
    "protein",
    "cell",
    "cancer",
    "gene",
    "risk",
    "patients",
    "therapy",
    "virus",
    "blood",
    "brain",
    "vitamin",
    "diet",
    "infection",
    "dose",
    "receptor",
    "mutation",
    "immune",
    "tumor",
    "heart",
    "lung",
    "children",
    "women",
    "effect",
    "increase",
    "reduce",
    "treatment",
    "disease",
    "expression",
    "response",
    "growth",
    "survival",
    "trial",
];

/// The MiniLM export with training graphs, made once under `work`.
pub fn model_dir(root: &Path, work: &Path) -> Result<PathBuf, BoxError> {
    let src = root.join(".ltre/models/all-MiniLM-L6-v2");
    if !src.join("model.safetensors").is_file() {
        return Err(format!("{} missing; run `bash scripts/setup.sh`", src.display()).into());
    }
    let out = work.join("minilm-train");
    let current = Manifest::load(&out)
        .ok()
        .and_then(|m| m.train)
        .is_some_and(|t| t.backward_file.is_some());
    if !current {
        let opts = ExportOptions {
            train: Some(WordEmbeddingGrad::Sparse),
            ..Default::default()
        };
        export_checkpoint(&src, &out, &opts)?;
    }
    Ok(out)
}

/// Times `STEPS` full training steps over `n` synthetic documents with the index `spec`.
pub fn run(
    model: &Path,
    work: &Path,
    n: usize,
    spec: &str,
    nprobe: usize,
) -> Result<Value, BoxError> {
    let opts = TowerOptions {
        optimizer: AdamWConfig {
            lr: 1e-5,
            ..Default::default()
        },
        ..Default::default()
    };
    let tower = QueryTower::load(model, opts)?;
    let (_, rss_tower) = rss_mib();
    let data = Mixture::new(7);
    let mut docs = Array2::<f32>::zeros((n, DIM));
    for (i, mut row) in docs.rows_mut().into_iter().enumerate() {
        data.doc(i as u64, row.as_slice_mut().ok_or("row not contiguous")?);
    }
    let (_, rss_docs) = rss_mib();
    let mut rng = Rng::new(99);
    let train: Vec<TrainQuery> = (0..QUERIES)
        .map(|q| TrainQuery {
            id: format!("q{q}"),
            text: (0..6)
                .map(|_| WORDS[rng.below(WORDS.len())])
                .collect::<Vec<_>>()
                .join(" "),
            relevant: vec![rng.below(n), rng.below(n)],
            grades: vec![],
        })
        .collect();
    let ids: Vec<String> = (0..n).map(|i| format!("d{i}")).collect();
    let config = TrainConfig {
        index: spec.to_string(),
        nprobe,
        batch_size: BATCH,
        epochs: 1,
        max_steps: Some(1000),
        ..Default::default()
    };
    let run_dir = work.join(format!("train-run-{n}"));
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)?;
    }
    let started = Instant::now();
    let mut trainer = Trainer::new(config, tower, ids, docs, train, vec![], &run_dir)?;
    let build_s = started.elapsed().as_secs_f64();
    let (hwm_build, rss_build) = rss_mib();
    let mut times = Vec::new();
    let mut phases = Vec::new();
    for s in 0..=STEPS {
        let batch: Vec<usize> = (0..BATCH).map(|b| (s * BATCH + b) % QUERIES).collect();
        let before = trainer.state().epoch_phases;
        let t = Instant::now();
        trainer.step(&batch)?;
        let secs = t.elapsed().as_secs_f64();
        let after = trainer.state().epoch_phases;
        if s > 0 {
            times.push(secs);
            phases.push([
                after.forward - before.forward,
                after.retrieval_loss - before.retrieval_loss,
                after.backward - before.backward,
                after.optimizer - before.optimizer,
            ]);
        }
    }
    let phase = |i: usize| {
        let mut v: Vec<f64> = phases.iter().map(|p| p[i]).collect();
        median(&mut v)
    };
    let (hwm, rss) = rss_mib();
    std::fs::remove_dir_all(&run_dir).ok();
    Ok(json!({
        "docs": n,
        "index": spec,
        "nprobe": nprobe,
        "index_build_s": build_s,
        "step_p50_s": median(&mut times),
        "forward_s": phase(0),
        "retrieval_loss_s": phase(1),
        "backward_s": phase(2),
        "adamw_s": phase(3),
        "rss_after_tower_mib": rss_tower,
        "rss_with_vectors_mib": rss_docs,
        "rss_after_index_build_mib": rss_build,
        "peak_rss_at_build_mib": hwm_build,
        "peak_rss_mib": hwm,
        "rss_end_mib": rss,
        "vectors_mib": (n * DIM * 4) as f64 / (1 << 20) as f64,
    }))
}
