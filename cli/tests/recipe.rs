//! `ltre-cli train` without a configuration (the default recipe's search), hybrid-aware
//! training and the fusion weight `eval` then serves with, and Cranfield's SMART layout
//! through `index` and `eval --split`.
mod common;

use std::path::Path;

use common::{ok, trainable_collection};
use ltre_core::testing::{export_tiny_model, TINY_CORPUS};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn train_without_config_searches_reports_its_trials_and_gates() {
    let root = tempfile::tempdir().unwrap();
    let [index, queries, qrels, _, _] = trainable_collection(root.path());
    let run = root.path().join("run");
    let out = common::cli(&[
        "train",
        "--index",
        path(&index),
        "--queries",
        path(&queries),
        "--qrels",
        path(&qrels),
        "--run-dir",
        path(&run),
        "--threads",
        "1",
        "--deploy",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Three learning rates at temperature 20, then 10 and 40 at the chosen rate, then the
    // chosen settings at full length with the trust region fading and kept: each printed when
    // done, and again in the final report, which marks the chosen probe and the chosen run.
    let trials: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("search: lr"))
        .collect();
    assert_eq!(trials.len(), 14, "{stderr}");
    for lr in ["3e-5", "1e-4", "3e-4"] {
        assert!(
            trials[..5]
                .iter()
                .any(|t| t.contains(&format!("lr {lr}, temperature 20,"))),
            "{stderr}"
        );
    }
    assert_eq!(trials.iter().filter(|t| t.ends_with(", chosen")).count(), 2);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let search = report["search"].as_array().unwrap();
    assert_eq!(search.len(), 7);
    let chosen = |trials: &[serde_json::Value]| -> Vec<serde_json::Value> {
        trials
            .iter()
            .filter(|t| t["chosen"] == true)
            .cloned()
            .collect()
    };
    let (probe, run) = (chosen(&search[..5]), chosen(&search[5..]));
    assert_eq!((probe.len(), run.len()), (1, 1), "{report}");
    assert_eq!(report["config"]["optimizer"]["lr"], probe[0]["lr"]);
    assert_eq!(report["config"]["anchor"], 10.0);
    // 13 training queries in batches of 32, 5 epochs: the trust region fades over 40% of 5
    // steps, or is kept (0), whichever full run held out better.
    let schedules: Vec<_> = search[5..]
        .iter()
        .map(|t| t["anchor_steps"].clone())
        .collect();
    assert_eq!(schedules, vec![serde_json::json!(2), serde_json::json!(0)]);
    assert_eq!(report["config"]["anchor_steps"], run[0]["anchor_steps"]);
    // The gate: deployed exactly when the held-out metric improved.
    let improved = report["best_dev_ndcg10"].as_f64() > report["baseline_dev_ndcg10"].as_f64();
    // The recipe retrains on all training queries once it has chosen (only after a gain).
    assert_eq!(report["refit"].is_null(), !improved, "{report}");
    assert_eq!(
        report["deployment"]["status"] == "deployed",
        improved,
        "{report}"
    );
}

#[test]
fn hybrid_training_records_the_fusion_weight_that_eval_serves() {
    let root = tempfile::tempdir().unwrap();
    let [index, queries, qrels, _, config] = trainable_collection(root.path());
    let run = root.path().join("run");
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "train",
        "--index",
        path(&index),
        "--queries",
        path(&queries),
        "--qrels",
        path(&qrels),
        "--config",
        path(&config),
        "--run-dir",
        path(&run),
        "--threads",
        "1",
        "--hybrid",
        "--deploy",
        "--force",
    ]))
    .unwrap();
    let alpha = report["fusion_alpha"].as_f64().expect("a fusion weight");
    assert!(report["config"]["hybrid"]["alpha"].as_f64().is_some());
    let eval = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "eval",
            "--index",
            path(&index),
            "--queries",
            path(&queries),
            "--qrels",
            path(&qrels),
            "--mode",
            "hybrid",
            "--fusion",
            "linear",
            "--json",
        ];
        args.extend_from_slice(extra);
        serde_json::from_str(&ok(&args)).unwrap()
    };
    // The deployed encoder is active: a linear hybrid without --alpha uses its weight...
    let mode = eval(&[])["mode"].as_str().unwrap().to_string();
    assert_eq!(mode, format!("hybrid/linear alpha {}", alpha as f32));
    // ... --alpha overrides it, and the base encoder has none recorded (0.5).
    assert_eq!(
        eval(&["--alpha", "0.25"])["mode"],
        "hybrid/linear alpha 0.25"
    );
    assert_eq!(
        eval(&["--encoder", "base"])["mode"],
        "hybrid/linear alpha 0.5"
    );
    // --per-query: every evaluated query's values, whose mean is the reported metric.
    let full = eval(&["--per-query"]);
    let per_query = full["per_query"].as_object().expect("per_query");
    assert_eq!(per_query.len() as u64, full["queries"].as_u64().unwrap());
    let mean = per_query
        .values()
        .map(|v| v["nDCG@10"].as_f64().unwrap())
        .sum::<f64>()
        / per_query.len() as f64;
    assert!((mean - full["metrics"]["nDCG@10"].as_f64().unwrap()).abs() < 1e-12);
    assert!(eval(&[]).get("per_query").is_none());
}

/// Writes the tiny corpus as a Cranfield directory (`cran.all.1400`, `cran.qry`, `cranqrel`)
/// with one query per document; every document judged grade 1 (best) for its query and grade 4
/// for the next one.
fn tiny_cranfield(dir: &Path) -> usize {
    std::fs::create_dir_all(dir).unwrap();
    let (mut docs, mut queries, mut qrels) = (String::new(), String::new(), String::new());
    for (n, (_, title, text)) in TINY_CORPUS.iter().enumerate() {
        let id = n + 1;
        docs += &format!(".I {id}\n.T\n{title}\n.A\nsomeone\n.W\n{text}\n");
        queries += &format!(".I {:03}\n.W\n{title}\n", id * 2);
        let next = id % TINY_CORPUS.len() + 1;
        qrels += &format!("{id} {id} 1\n{id} {next} 4\n");
    }
    std::fs::write(dir.join("cran.all.1400"), docs).unwrap();
    std::fs::write(dir.join("cran.qry"), queries).unwrap();
    std::fs::write(dir.join("cranqrel"), qrels).unwrap();
    TINY_CORPUS.len()
}

#[test]
fn cranfield_directory_indexes_and_evaluates_in_seeded_halves() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("cranfield");
    let n = tiny_cranfield(&data);
    let model = export_tiny_model(root.path(), 3, false).unwrap();
    let index = root.path().join("index");
    ok(&[
        "index",
        "--corpus",
        path(&data),
        "--model",
        path(&model),
        "--index",
        path(&index),
        "--threads",
        "1",
    ]);
    let eval = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "eval",
            "--index",
            path(&index),
            "--queries",
            path(&data),
            "--qrels",
            path(&data),
            "--mode",
            "bm25",
            "--json",
        ];
        args.extend_from_slice(extra);
        serde_json::from_str(&ok(&args)).unwrap()
    };
    let all = eval(&[]);
    assert_eq!(all["queries"], n);
    assert_eq!(all["mode"], "bm25");
    assert_eq!(all["missing_documents"], 0);
    let train = eval(&["--split", "train"]);
    let test = eval(&["--split", "test"]);
    assert_eq!(train["queries"], n.div_ceil(2));
    assert_eq!(test["queries"], n / 2);
    // The title query finds its own document: grade 1 (gain 4) must dominate nDCG, which it
    // would not if cranqrel were read as plain qrels (gain 1 for the best answer).
    let ndcg = all["metrics"]["nDCG@10"].as_f64().unwrap();
    assert!(ndcg > 0.0 && ndcg <= 1.0, "{all}");
    let other_seed = eval(&["--split", "test", "--split-seed", "14"]);
    assert_eq!(other_seed["queries"], n / 2);
}
