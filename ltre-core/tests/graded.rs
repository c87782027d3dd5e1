//! Graded relevance end to end on a tiny random BERT: grades survive the join, the held-out
//! selection metric equals `metrics::evaluate` on graded qrels, and the ΔnDCG-weighted LTRe
//! step pushes a highly graded document up.
use std::collections::BTreeMap;

use ltre_core::data::{Qrels, Query};
use ltre_core::encoder::{Encoder, EncoderOptions};
use ltre_core::loss::PairWeight;
use ltre_core::metrics::{evaluate, Metric, Run};
use ltre_core::optim::AdamWConfig;
use ltre_core::testing::export_tiny_model;
use ltre_core::train_step::{QueryTower, TowerOptions};
use ltre_core::trainer::{evaluate_queries, join_queries, TrainConfig, TrainQuery, Trainer};
use ndarray::{Array1, Array2, ArrayView1};
use rand::{rngs::StdRng, Rng, SeedableRng};

const TEXTS: [&str; 3] = [
    "what does the cat eat",
    "how fast is a dog",
    "a slow red fox",
];

fn options() -> TowerOptions {
    TowerOptions {
        session: EncoderOptions {
            threads: 1,
            ..Default::default()
        },
        optimizer: AdamWConfig {
            lr: 1e-3,
            weight_decay: 0.0,
            max_grad_norm: None,
            ..Default::default()
        },
    }
}

fn collection(dim: usize, n: usize) -> (Vec<String>, Array2<f32>) {
    let mut rng = StdRng::seed_from_u64(11);
    let mut docs = Array2::from_shape_fn((n, dim), |_| rng.random::<f32>() - 0.5);
    for mut r in docs.rows_mut() {
        let norm = r.dot(&r).sqrt();
        r /= norm;
    }
    ((0..n).map(|i| format!("d{i}")).collect(), docs)
}

/// Document rows by descending score for `q`.
fn ranking(q: ArrayView1<f32>, docs: &Array2<f32>) -> Vec<usize> {
    let s = docs.dot(&q);
    let mut order: Vec<usize> = (0..docs.nrows()).collect();
    order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
    order
}

#[test]
fn held_out_ndcg_uses_the_grades_like_eval() {
    let dir = tempfile::tempdir().unwrap();
    let model = export_tiny_model(dir.path(), 42, true).unwrap();
    let mut tower = QueryTower::load(&model, options()).unwrap();
    let (ids, docs) = collection(tower.manifest().embedding_dim, 40);
    let q = tower.embed(&TEXTS).unwrap();
    // Per query: grade 1 at rank 1, grade 3 at rank 6, grade 0 at rank 2 (judged, not relevant).
    let mut qrels = Qrels::new();
    let mut queries = Vec::new();
    for (k, text) in TEXTS.iter().enumerate() {
        let order = ranking(q.row(k), &docs);
        let judged: BTreeMap<String, i32> = [(order[0], 1), (order[5], 3), (order[1], 0)]
            .iter()
            .map(|&(d, g)| (ids[d].clone(), g))
            .collect();
        qrels.insert(format!("q{k}"), judged);
        queries.push(Query {
            id: format!("q{k}"),
            text: text.to_string(),
        });
    }
    let rows = ids
        .iter()
        .enumerate()
        .map(|(i, d)| (d.clone(), i))
        .collect();
    let joined: Vec<TrainQuery> = join_queries(&queries, &qrels, &rows);
    assert_eq!(joined.len(), 3);
    for tq in &joined {
        assert_eq!(tq.relevant.len(), 2, "grade 0 stays out");
        let mut grades: Vec<i32> = tq.judged().map(|(_, g)| g).collect();
        grades.sort_unstable();
        assert_eq!(grades, vec![1, 3]);
    }

    let held_out = evaluate_queries(&mut tower, docs.view(), &ids, &joined, 2).unwrap();
    let scores = q.dot(&docs.t());
    let run: Run = (0..TEXTS.len())
        .map(|k| {
            let hits = (0..ids.len())
                .map(|d| (ids[d].clone(), scores[[k, d]] as f64))
                .collect();
            (format!("q{k}"), hits)
        })
        .collect();
    let graded = evaluate(&run, &qrels, &[Metric::Ndcg(10)]).mean[0];
    assert!(
        (held_out - graded).abs() < 1e-9,
        "held-out {held_out} vs eval {graded}"
    );
    // The grades matter: with gain 1 for every relevant document the value differs.
    let binary: Qrels = qrels
        .iter()
        .map(|(q, j)| {
            (
                q.clone(),
                j.iter().map(|(d, &g)| (d.clone(), g.min(1))).collect(),
            )
        })
        .collect();
    let flat = evaluate(&run, &binary, &[Metric::Ndcg(10)]).mean[0];
    assert!(
        (held_out - flat).abs() > 1e-3,
        "{held_out} vs binary {flat}"
    );
}

fn trainer_query(trainer: &Trainer, text: &str) -> Array1<f32> {
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

#[test]
fn one_delta_ndcg_step_raises_a_highly_graded_document() {
    let dir = tempfile::tempdir().unwrap();
    let model = export_tiny_model(dir.path(), 42, true).unwrap();
    let mut tower = QueryTower::load(&model, options()).unwrap();
    let (ids, docs) = collection(tower.manifest().embedding_dim, 60);
    let q = tower.embed(&[TEXTS[0]]).unwrap();
    let order = ranking(q.row(0), &docs);
    // Grade 3 ranked 20th, grade 1 ranked 2nd.
    let (high, low) = (order[19], order[1]);
    let train = vec![TrainQuery {
        id: "q0".into(),
        text: TEXTS[0].into(),
        relevant: vec![low, high],
        grades: vec![1, 3],
    }];
    let config = TrainConfig {
        batch_size: 1,
        top_n: 50,
        rr_cut: 50,
        pair_weight: PairWeight::DeltaNdcg,
        warmup_ratio: 0.0,
        optimizer: options().optimizer,
        ..Default::default()
    };
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
    assert!(trainer.step(&[0]).unwrap() > 0.0);
    let after = trainer_query(&trainer, TEXTS[0]);
    let new_rank = ranking(after.view(), &docs)
        .iter()
        .position(|&d| d == high)
        .unwrap()
        + 1;
    assert!(new_rank < 20, "rank 20 -> {new_rank}");
}
