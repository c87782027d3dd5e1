//! Query tower and LTRe trainer on a tiny random BERT: AdamW steps, save/load/export
//! round-trips, the loss pushing a relevant document up, fixed document vectors, resume.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use ltre_core::data::Query;
use ltre_core::encoder::{Encoder, EncoderOptions};
use ltre_core::export::ExportOptions;
use ltre_core::manifest::WordEmbeddingGrad;
use ltre_core::optim::{AdamWConfig, Gradients};
use ltre_core::retrieval::vectors_checksum;
use ltre_core::testing::{
    export_tiny_model, export_tiny_model_with, tiny_export_options, TinyBertSpec,
};
use ltre_core::train_step::{QueryTower, TowerOptions, WORD_EMBEDDINGS};
use ltre_core::trainer::{join_queries, Objective, RunOutcome, TrainConfig, TrainQuery, Trainer};
use ndarray::{Array1, Array2};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// The shared tiny model, exported with the training graphs for `mode`.
fn tiny_model(root: &Path, mode: WordEmbeddingGrad) -> PathBuf {
    let options = ExportOptions {
        train: Some(mode),
        ..tiny_export_options(true)
    };
    export_tiny_model_with(root, &TinyBertSpec::default(), &options).unwrap()
}

fn options(lr: f32) -> TowerOptions {
    TowerOptions {
        session: EncoderOptions {
            threads: 1,
            ..Default::default()
        },
        optimizer: AdamWConfig {
            lr,
            weight_decay: 0.0,
            max_grad_norm: None,
            ..Default::default()
        },
    }
}

const TEXTS: [&str; 4] = [
    "what does the cat eat",
    "how fast is a dog",
    "a slow red fox",
    "the bird and the fish",
];

#[test]
fn adamw_steps_reduce_a_toy_loss_and_sparse_rows_update_only_used_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let model = export_tiny_model(dir.path(), 42, true).unwrap();
    let mut tower = QueryTower::load(&model, options(1e-2)).unwrap();
    let dim = tower.manifest().embedding_dim;
    // Pull every query embedding towards one fixed target: L = -sum_b <q_b, target>.
    let target = Array1::from_iter((0..dim).map(|i| if i % 3 == 0 { 1.0f32 } else { -0.5 }));
    let target = &target / target.dot(&target).sqrt();
    let upstream = Array2::from_shape_fn((TEXTS.len(), dim), |(_, j)| -target[j]);
    let loss = |q: &Array2<f32>| -q.dot(&target).sum();
    let before = tower.params().get(WORD_EMBEDDINGS).unwrap().clone();
    let first = loss(&tower.embed(&TEXTS).unwrap());
    for _ in 0..5 {
        let grads = tower.gradients(&TEXTS, &upstream).unwrap();
        tower.apply(&grads).unwrap();
    }
    let last = loss(&tower.embed(&TEXTS).unwrap());
    assert!(last < first - 0.1, "loss {first} -> {last}");
    // Rows of tokens that never occur keep their values (no weight decay here).
    let after = tower.params().get(WORD_EMBEDDINGS).unwrap();
    let batch = tower.tokenize(&TEXTS).unwrap();
    let used: std::collections::HashSet<i64> = batch.input_ids.iter().copied().collect();
    let (mut moved, mut kept) = (0, 0);
    for row in 0..after.shape()[0] {
        let same = (0..dim).all(|j| after[[row, j]] == before[[row, j]]);
        if used.contains(&(row as i64)) {
            moved += usize::from(!same);
        } else {
            kept += usize::from(same);
        }
    }
    assert_eq!(
        moved,
        used.len() - usize::from(used.contains(&0)),
        "every used token row moves"
    );
    assert_eq!(kept, after.shape()[0] - used.len(), "unused rows stay");
}

/// Largest |a - b| relative to the largest |a|, over every gradient.
fn max_rel_diff(a: &Gradients, b: &Gradients) -> f32 {
    let mut names_a: Vec<&String> = a.keys().collect();
    let mut names_b: Vec<&String> = b.keys().collect();
    names_a.sort();
    names_b.sort();
    assert_eq!(names_a, names_b, "same gradients");
    let mut worst = 0.0f32;
    for (name, ga) in a {
        let gb = &b[name];
        assert_eq!(ga.shape(), gb.shape(), "{name}");
        let scale = ga.iter().fold(1e-12f32, |m, x| m.max(x.abs()));
        let d = ga
            .iter()
            .zip(gb)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        worst = worst.max(d / scale);
    }
    worst
}

#[test]
fn split_forward_backward_equals_the_fused_gradient_graph() {
    for mode in [WordEmbeddingGrad::Sparse, WordEmbeddingGrad::Frozen] {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model(dir.path(), mode);
        let mut tower = QueryTower::load(&model, options(1e-2)).unwrap();
        assert!(tower.has_backward_graph());
        let dim = tower.manifest().embedding_dim;
        let mut rng = StdRng::seed_from_u64(5);
        let upstream = Array2::from_shape_fn((TEXTS.len(), dim), |_| rng.random::<f32>() - 0.5);
        let batch = tower.tokenize(&TEXTS).unwrap();
        let (fused_q, fused) = tower.gradients_batch(&batch, &upstream).unwrap();
        let (q, saved) = tower.forward_for_training(&batch).unwrap();
        assert!(!saved.is_empty());
        assert_eq!(q, tower.embed_batch(&batch).unwrap());
        let eq = q
            .iter()
            .zip(&fused_q)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(eq < 1e-6, "{mode:?}: embeddings differ by {eq}");
        let split = tower.backward(&batch, saved, &upstream).unwrap();
        assert_eq!(
            split.contains_key(WORD_EMBEDDINGS),
            mode == WordEmbeddingGrad::Sparse
        );
        let d = max_rel_diff(&fused, &split);
        assert!(
            d < 1e-5,
            "{mode:?}: split gradients differ by {d:e} (relative)"
        );
        // A second step from the saved activations of a mismatched batch is refused.
        let (_, saved) = tower.forward_for_training(&batch).unwrap();
        let short = tower.tokenize(&TEXTS[..2]).unwrap();
        let err = tower.backward(&short, saved, &upstream).unwrap_err();
        assert!(err.to_string().contains("forward_for_training"), "{err}");
    }
}

#[test]
fn exports_without_a_backward_graph_train_through_the_fused_graph() {
    let dir = tempfile::tempdir().unwrap();
    let model = export_tiny_model(dir.path(), 42, true).unwrap();
    // A manifest written before train_backward.onnx existed.
    let path = model.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let train = m["train"].as_object_mut().unwrap();
    assert!(train.remove("backward_file").is_some());
    assert!(train.remove("saved").is_some());
    std::fs::write(&path, m.to_string()).unwrap();
    std::fs::remove_file(model.join("train_backward.onnx")).unwrap();

    let mut tower = QueryTower::load(&model, options(1e-2)).unwrap();
    assert!(!tower.has_backward_graph());
    let dim = tower.manifest().embedding_dim;
    let upstream = Array2::from_shape_fn((TEXTS.len(), dim), |(i, j)| ((i + j) % 5) as f32 - 2.0);
    let batch = tower.tokenize(&TEXTS).unwrap();
    let (q, saved) = tower.forward_for_training(&batch).unwrap();
    assert!(saved.is_empty());
    assert_eq!(q, tower.embed_batch(&batch).unwrap());
    let grads = tower.backward(&batch, saved, &upstream).unwrap();
    let fused = tower.gradients_batch(&batch, &upstream).unwrap().1;
    assert_eq!(max_rel_diff(&fused, &grads), 0.0);
}

#[test]
fn frozen_word_embeddings_get_no_gradient() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), WordEmbeddingGrad::Frozen);
    let mut tower = QueryTower::load(&model, options(1e-2)).unwrap();
    let dim = tower.manifest().embedding_dim;
    let grads = tower
        .gradients(&TEXTS[..2], &Array2::from_elem((2, dim), 0.1))
        .unwrap();
    assert!(!grads.contains_key(WORD_EMBEDDINGS));
    assert!(grads.contains_key("encoder.layer.0.attention.self.query.weight"));
}

#[test]
fn save_load_export_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let model = export_tiny_model(dir.path(), 42, true).unwrap();
    let mut tower = QueryTower::load(&model, options(1e-2)).unwrap();
    let dim = tower.manifest().embedding_dim;
    let grads: Gradients = tower
        .gradients(&TEXTS, &Array2::from_elem((4, dim), 0.05))
        .unwrap();
    tower.apply(&grads).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    tower.save_state(&state).unwrap();

    let mut again = QueryTower::load(&model, options(1e-2)).unwrap();
    assert_ne!(again.params(), tower.params());
    again.load_state(&state).unwrap();
    assert_eq!(again.params(), tower.params());
    assert_eq!(again.optimizer().steps_taken(), 1);

    let exported = dir.path().join("exported");
    tower.export(&exported, "test").unwrap();
    let encoder = Encoder::load_with(
        &exported,
        EncoderOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let from_encoder = encoder.encode_queries(&TEXTS).unwrap();
    let from_tower = tower.embed(&TEXTS).unwrap();
    for (a, b) in from_encoder.iter().zip(from_tower.iter()) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    // The exported directory trains further from the updated parameters.
    let reloaded = QueryTower::load(&exported, options(1e-2)).unwrap();
    assert_eq!(
        reloaded.params().get(WORD_EMBEDDINGS),
        tower.params().get(WORD_EMBEDDINGS)
    );
}

/// A tiny collection: random unit document vectors (fixed) and a few queries.
fn collection(dim: usize, n: usize) -> (Vec<String>, Array2<f32>) {
    let mut rng = StdRng::seed_from_u64(7);
    let mut docs = Array2::from_shape_fn((n, dim), |_| rng.random::<f32>() - 0.5);
    for mut r in docs.rows_mut() {
        let norm = r.dot(&r).sqrt();
        r /= norm;
    }
    ((0..n).map(|i| format!("d{i}")).collect(), docs)
}

fn rank_of(q: ndarray::ArrayView1<f32>, docs: &Array2<f32>, doc: usize) -> usize {
    let s = docs.dot(&q);
    s.iter().filter(|&&x| x > s[doc]).count() + 1
}

#[test]
fn one_ltre_step_raises_a_relevant_document_ranked_below_negatives() {
    let dir = tempfile::tempdir().unwrap();
    let model = export_tiny_model(dir.path(), 42, true).unwrap();
    let mut tower = QueryTower::load(&model, options(1e-3)).unwrap();
    let (ids, docs) = collection(tower.manifest().embedding_dim, 60);
    let q = tower.embed(&[TEXTS[0]]).unwrap();
    // The relevant document: the one ranked 20th for this query.
    let scores = docs.dot(&q.row(0));
    let mut order: Vec<usize> = (0..docs.nrows()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let positive = order[19];
    assert_eq!(rank_of(q.row(0), &docs, positive), 20);
    let train = vec![TrainQuery {
        id: "q0".into(),
        text: TEXTS[0].into(),
        relevant: vec![positive],
        grades: vec![1],
    }];
    let config = TrainConfig {
        batch_size: 1,
        top_n: 50,
        rr_cut: 50,
        optimizer: AdamWConfig {
            lr: 1e-3,
            weight_decay: 0.0,
            ..Default::default()
        },
        warmup_ratio: 0.0,
        ..Default::default()
    };
    let checksum = vectors_checksum(docs.view());
    let mut trainer = Trainer::new(
        config,
        tower,
        ids,
        docs.clone(),
        train,
        vec![],
        &dir.path().join("run"),
    )
    .unwrap();
    let loss = trainer.step(&[0]).unwrap();
    assert!(loss > 0.0);
    let after = trainer_query(&mut trainer, TEXTS[0]);
    let new_rank = rank_of(after.view(), &docs, positive);
    assert!(new_rank < 20, "rank 20 -> {new_rank}");
    assert_eq!(
        trainer.documents().checksum(),
        checksum,
        "documents are never changed"
    );
}

fn trainer_query(trainer: &mut Trainer, text: &str) -> Array1<f32> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    trainer.tower().export(&out, "test").unwrap();
    let enc = Encoder::load_with(
        &out,
        EncoderOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap();
    enc.encode_queries(&[text]).unwrap().row(0).to_owned()
}

fn small_run(
    model: &Path,
    run_dir: &Path,
    objective: Objective,
    stop_after: Option<u64>,
) -> (Trainer, RunOutcome) {
    let tower = QueryTower::load(model, options(1e-3)).unwrap();
    let (ids, docs) = collection(tower.manifest().embedding_dim, 40);
    let rows: std::collections::HashMap<String, usize> = ids
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, d)| (d, i))
        .collect();
    let words = ltre_core::testing::TINY_WORDS;
    let queries: Vec<Query> = (0..12)
        .map(|i| Query {
            id: format!("q{i}"),
            text: format!(
                "{} {} {}",
                words[i % words.len()],
                words[(i * 7 + 3) % words.len()],
                words[(i * 5 + 1) % words.len()]
            ),
        })
        .collect();
    let mut qrels = ltre_core::data::Qrels::new();
    for i in 0..12 {
        qrels
            .entry(format!("q{i}"))
            .or_default()
            .insert(format!("d{}", (i * 3) % 40), 1);
    }
    let all = join_queries(&queries, &qrels, &rows);
    let (train, dev) = ltre_core::trainer::split_dev(all, 0.25, 1);
    let config = TrainConfig {
        epochs: 2,
        batch_size: 3,
        top_n: 20,
        rr_cut: 20,
        objective,
        checkpoint_every: 1,
        negatives: 3,
        ..Default::default()
    };
    let mut trainer = Trainer::new(config, tower, ids, docs, train, dev, run_dir).unwrap();
    let stop = AtomicBool::new(false);
    let mut progress = |step: u64, _total: u64, _loss: f32, _secs: f64| {
        if stop_after == Some(step) {
            stop.store(true, Ordering::SeqCst);
        }
    };
    let outcome = trainer.run(&stop, &mut progress).unwrap();
    (trainer, outcome)
}

#[test]
fn interrupted_training_resumes_to_the_same_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let model = export_tiny_model(dir.path(), 42, true).unwrap();
    let (full, outcome) = small_run(&model, &dir.path().join("full"), Objective::Ltre, None);
    assert_eq!(outcome, RunOutcome::Finished);
    assert_eq!(full.state().history.len(), 2);

    let run = dir.path().join("resumed");
    let (part, outcome) = small_run(&model, &run, Objective::Ltre, Some(4));
    assert_eq!(outcome, RunOutcome::Interrupted);
    assert_eq!(part.state().global_step, 4);
    drop(part);
    let (resumed, outcome) = small_run(&model, &run, Objective::Ltre, None);
    assert_eq!(outcome, RunOutcome::Finished);
    assert_eq!(resumed.state().global_step, full.state().global_step);
    assert_eq!(
        resumed.tower().params(),
        full.tower().params(),
        "resume continues exactly where it stopped"
    );
    assert_eq!(
        resumed.state().history,
        full.state()
            .history
            .iter()
            .cloned()
            .map(|mut r| {
                // Wall times differ between runs; everything else must match.
                r.step_seconds = resumed.state().history[r.epoch - 1].step_seconds;
                r.epoch_seconds = resumed.state().history[r.epoch - 1].epoch_seconds;
                r.phases = resumed.state().history[r.epoch - 1].phases;
                r
            })
            .collect::<Vec<_>>()
    );
}

#[test]
fn baselines_run_in_the_same_trainer() {
    let dir = tempfile::tempdir().unwrap();
    let model = export_tiny_model(dir.path(), 42, true).unwrap();
    for (i, objective) in [Objective::InBatch, Objective::RandomNegatives]
        .into_iter()
        .enumerate()
    {
        let (t, outcome) = small_run(&model, &dir.path().join(format!("b{i}")), objective, None);
        assert_eq!(outcome, RunOutcome::Finished);
        assert!(
            t.state()
                .history
                .iter()
                .all(|r| r.loss.is_finite() && r.loss > 0.0),
            "{objective:?}"
        );
    }
}

#[test]
fn a_run_directory_of_another_configuration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = export_tiny_model(dir.path(), 42, true).unwrap();
    let run = dir.path().join("run");
    small_run(&model, &run, Objective::Ltre, Some(1));
    let tower = QueryTower::load(&model, options(1e-3)).unwrap();
    let (ids, docs) = collection(tower.manifest().embedding_dim, 40);
    let train = vec![TrainQuery {
        id: "q".into(),
        text: "cat".into(),
        relevant: vec![0],
        grades: vec![1],
    }];
    let config = TrainConfig {
        epochs: 9,
        ..Default::default()
    };
    let err = Trainer::new(config, tower, ids, docs, train, vec![], &run)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("another configuration"), "{err}");
}

/// The trust region (`anchor`) keeps the training queries' embeddings nearer the start
/// encoder's than the same run without it, at a learning rate that moves them far.
#[test]
fn anchor_keeps_query_embeddings_near_the_start_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let model = export_tiny_model(dir.path(), 42, true).unwrap();
    let drift = |anchor: f32, run: &str| -> f32 {
        let tower = QueryTower::load(&model, options(3e-2)).unwrap();
        let (ids, docs) = collection(tower.manifest().embedding_dim, 40);
        let rows: std::collections::HashMap<String, usize> = ids
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, d)| (d, i))
            .collect();
        let queries: Vec<Query> = (0..12)
            .map(|i| Query {
                id: format!("q{i}"),
                text: format!("{} {}", TEXTS[i % 4], ltre_core::testing::TINY_WORDS[i]),
            })
            .collect();
        let mut qrels = ltre_core::data::Qrels::new();
        for i in 0..12 {
            qrels
                .entry(format!("q{i}"))
                .or_default()
                .insert(format!("d{}", (i * 7) % 40), 1);
        }
        let train = join_queries(&queries, &qrels, &rows);
        let texts: Vec<String> = train.iter().map(|q| q.text.clone()).collect();
        let config = TrainConfig {
            epochs: 4,
            batch_size: 4,
            top_n: 20,
            rr_cut: 20,
            anchor,
            optimizer: options(3e-2).optimizer,
            ..Default::default()
        };
        let mut trainer = Trainer::new(
            config,
            tower,
            ids,
            docs,
            train,
            vec![],
            &dir.path().join(run),
        )
        .unwrap();
        let start: Vec<Array1<f32>> = texts
            .iter()
            .map(|t| trainer_query(&mut trainer, t))
            .collect();
        trainer
            .run(&AtomicBool::new(false), &mut |_, _, _, _| {})
            .unwrap();
        let cos: f32 = texts
            .iter()
            .zip(&start)
            .map(|(t, s)| trainer_query(&mut trainer, t).dot(s))
            .sum::<f32>()
            / texts.len() as f32;
        1.0 - cos
    };
    let (free, anchored) = (drift(0.0, "free"), drift(200.0, "anchored"));
    assert!(free > 0.01, "the run should move the queries: drift {free}");
    assert!(anchored < free * 0.5, "anchored drift {anchored} vs {free}");
}
