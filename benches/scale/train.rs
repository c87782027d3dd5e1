//! The LTRe training step at one collection size: the real query tower (all-MiniLM-L6-v2 with
//! its training graphs), synthetic document vectors, synthetic judged queries, the full
//! `Trainer::step` (encode forward, retrieval over all documents, loss, backward, AdamW).
use std::path::{Path, PathBuf};
use std::time::Instant;

use ltre::core::manifest::WordEmbeddingGrad;
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
    Ok(crate::minilm::train_export(
        root,
        &work.join("minilm-train"),
        WordEmbeddingGrad::Sparse,
    )?)
}

/// A trainer over `n` synthetic documents with the index `spec`, and the RSS (MiB) after the
/// tower loaded, after the vectors were generated, and after the trainer was built.
struct Setup {
    trainer: Trainer,
    build_s: f64,
    rss: [f64; 3],
    peak_at_build: f64,
    run_dir: PathBuf,
}

fn setup(
    model: &Path,
    work: &Path,
    n: usize,
    spec: &str,
    nprobe: usize,
) -> Result<Setup, BoxError> {
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
    let run_dir = work.join(format!("train-run-{n}-{}", crate::slug(spec)));
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)?;
    }
    let started = Instant::now();
    let trainer = Trainer::new(config, tower, ids, docs, train, vec![], &run_dir)?;
    let build_s = started.elapsed().as_secs_f64();
    let (peak_at_build, rss_build) = rss_mib();
    Ok(Setup {
        trainer,
        build_s,
        rss: [rss_tower, rss_docs, rss_build],
        peak_at_build,
        run_dir,
    })
}

/// One full step on batch number `s`: seconds and the trainer's phase split.
fn step(trainer: &mut Trainer, s: usize) -> Result<(f64, [f64; 4]), BoxError> {
    let batch: Vec<usize> = (0..BATCH).map(|b| (s * BATCH + b) % QUERIES).collect();
    let before = trainer.state().epoch_phases;
    let t = Instant::now();
    trainer.step(&batch)?;
    let secs = t.elapsed().as_secs_f64();
    let after = trainer.state().epoch_phases;
    Ok((
        secs,
        [
            after.forward - before.forward,
            after.retrieval_loss - before.retrieval_loss,
            after.backward - before.backward,
            after.optimizer - before.optimizer,
        ],
    ))
}

fn summary(times: &mut [f64], phases: &[[f64; 4]]) -> Value {
    let phase = |i: usize| {
        let mut v: Vec<f64> = phases.iter().map(|p| p[i]).collect();
        median(&mut v)
    };
    json!({
        "step_p50_s": median(times),
        "forward_s": phase(0),
        "retrieval_loss_s": phase(1),
        "backward_s": phase(2),
        "adamw_s": phase(3),
    })
}

/// Times `STEPS` full training steps over `n` synthetic documents with the index `spec`.
pub fn run(
    model: &Path,
    work: &Path,
    n: usize,
    spec: &str,
    nprobe: usize,
) -> Result<Value, BoxError> {
    let mut set = setup(model, work, n, spec, nprobe)?;
    let (mut times, mut phases) = (Vec::new(), Vec::new());
    for s in 0..=STEPS {
        let (secs, split) = step(&mut set.trainer, s)?;
        if s > 0 {
            times.push(secs);
            phases.push(split);
        }
    }
    let (hwm, rss) = rss_mib();
    std::fs::remove_dir_all(&set.run_dir).ok();
    let mut value = summary(&mut times, &phases);
    let extra = json!({
        "docs": n,
        "index": spec,
        "nprobe": nprobe,
        "index_build_s": set.build_s,
        "rss_after_tower_mib": set.rss[0],
        "rss_with_vectors_mib": set.rss[1],
        "rss_after_index_build_mib": set.rss[2],
        "peak_rss_at_build_mib": set.peak_at_build,
        "peak_rss_mib": hwm,
        "rss_end_mib": rss,
        "vectors_mib": (n * DIM * 4) as f64 / (1 << 20) as f64,
    });
    if let (Some(v), Some(e)) = (value.as_object_mut(), extra.as_object()) {
        v.extend(e.clone());
    }
    Ok(value)
}

/// The step of each configuration `(docs, spec, nprobe)` in one process, round-robin (one
/// step of each per round), so that all see the same background load; ratios to the first.
pub fn compare(
    model: &Path,
    work: &Path,
    configs: &[(usize, String, usize)],
    rounds: usize,
) -> Result<Value, BoxError> {
    let mut sets = configs
        .iter()
        .map(|(n, spec, nprobe)| setup(model, work, *n, spec, *nprobe))
        .collect::<Result<Vec<_>, _>>()?;
    let mut times = vec![Vec::new(); sets.len()];
    let mut phases = vec![Vec::new(); sets.len()];
    for r in 0..=rounds {
        for (i, set) in sets.iter_mut().enumerate() {
            let (secs, split) = step(&mut set.trainer, r)?;
            if r > 0 {
                times[i].push(secs);
                phases[i].push(split);
            }
        }
    }
    let mut out = Vec::new();
    let mut first = None;
    for (i, (n, spec, nprobe)) in configs.iter().enumerate() {
        let mut value = summary(&mut times[i], &phases[i]);
        let p50 = value["step_p50_s"].as_f64().unwrap_or(0.0);
        let base = *first.get_or_insert(p50);
        value["docs"] = json!(n);
        value["index"] = json!(spec);
        value["nprobe"] = json!(nprobe);
        value["vs_first"] = json!(p50 / base);
        out.push(value);
    }
    for set in sets {
        std::fs::remove_dir_all(&set.run_dir).ok();
    }
    Ok(json!({ "rounds": rounds, "configs": out }))
}
