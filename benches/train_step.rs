//! Query-tower training step on all-MiniLM-L6-v2, batch 32, sequence 32, each with sparse
//! word-embedding gradients and with word embeddings frozen: `inference` (`model.onnx`),
//! `forward` (`train_forward.onnx`, embeddings only), `forward_saved` (the same graph keeping
//! the activations for the backward pass), `backward` (`train_backward.onnx` from them),
//! `forward_backward` (the fused `train.onnx`, which recomputes the forward), `adamw`, and
//! the full step: `full_step` (forward, fused gradients, AdamW, as before the split) and
//! `full_step_split` (forward with saves, backward, AdamW, as `Trainer::step` runs it).
//!
//! Needs `bash scripts/setup.sh` (the checkpoint in `.ltre/models/all-MiniLM-L6-v2`).
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ltre::core::encoder::Encoder;
use ltre::core::manifest::WordEmbeddingGrad;
use ltre::core::optim::AdamWConfig;
use ltre::core::tokenize::TokenBatch;
use ltre::core::train_step::{QueryTower, TowerOptions};
use ndarray::Array2;

#[path = "support/minilm.rs"]
mod minilm;

const BATCH: usize = 32;
const SEQ: usize = 32;

fn model_dir(mode: WordEmbeddingGrad) -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = root.join(format!("target/ltre-bench/minilm-train-{mode:?}").to_lowercase());
    minilm::train_export(&root, &out, mode)
        .map_err(|e| eprintln!("skipping: {e}"))
        .ok()
}

/// A fixed batch of 32 sequences of 32 tokens (ids from the vocabulary's word range).
fn batch() -> TokenBatch {
    let input_ids = Array2::from_shape_fn((BATCH, SEQ), |(b, s)| match s {
        0 => 101,
        s if s == SEQ - 1 => 102,
        _ => 2000 + ((b * 131 + s * 17) % 20000) as i64,
    });
    TokenBatch {
        input_ids,
        attention_mask: Array2::ones((BATCH, SEQ)),
        token_type_ids: Array2::zeros((BATCH, SEQ)),
    }
}

fn bench(c: &mut Criterion) {
    for mode in [WordEmbeddingGrad::Sparse, WordEmbeddingGrad::Frozen] {
        let Some(dir) = model_dir(mode) else { return };
        let opts = TowerOptions {
            optimizer: AdamWConfig {
                lr: 1e-7,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut tower = QueryTower::load(&dir, opts).expect("load tower");
        let batch = batch();
        let upstream = Array2::from_elem((BATCH, tower.manifest().embedding_dim), 1e-3f32);
        let name = format!("{mode:?}").to_lowercase();
        let mut group = c.benchmark_group(format!("train_step_minilm_b32_s32_{name}"));
        group.sample_size(10);
        let encoder = Encoder::load(&dir).expect("load encoder");
        group.bench_function("inference", |b| {
            b.iter(|| encoder.run(&batch).expect("inference"))
        });
        group.bench_function("forward", |b| {
            b.iter(|| tower.embed_batch(&batch).expect("forward"))
        });
        group.bench_function("forward_saved", |b| {
            b.iter(|| tower.forward_for_training(&batch).expect("forward"))
        });
        group.bench_function("backward", |b| {
            // Times the backward pass alone; each iteration needs a fresh forward's activations.
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (_, saved) = tower.forward_for_training(&batch).expect("forward");
                    let started = Instant::now();
                    black_box(tower.backward(&batch, saved, &upstream).expect("backward"));
                    total += started.elapsed();
                }
                total
            })
        });
        group.bench_function("forward_backward", |b| {
            b.iter(|| tower.gradients_batch(&batch, &upstream).expect("backward"))
        });
        let grads = tower
            .gradients_batch(&batch, &upstream)
            .expect("backward")
            .1;
        group.bench_function("adamw", |b| b.iter(|| tower.apply(&grads).expect("adamw")));
        group.bench_function("full_step", |b| {
            b.iter(|| {
                tower.embed_batch(&batch).expect("forward");
                let g = tower
                    .gradients_batch(&batch, &upstream)
                    .expect("backward")
                    .1;
                tower.apply(&g).expect("adamw")
            })
        });
        group.bench_function("full_step_split", |b| {
            b.iter(|| {
                let (_, saved) = tower.forward_for_training(&batch).expect("forward");
                let g = tower.backward(&batch, saved, &upstream).expect("backward");
                tower.apply(&g).expect("adamw")
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
