//! Fine-tuning in place through the library, on an application-style index (its own schema:
//! `sku` id, `title`, `category`, `embedding`), with a tiny random BERT exported with its
//! training graphs.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use ltre_core::encoder::EncoderOptions;
use ltre_core::hybrid::{HybridConfig, ALPHA_GRID};
use ltre_core::testing::export_tiny_model;
use ltre_core::trainer::{Objective, TrainConfig};
use ltre_core::{Encoder, Manifest};
use tantivy::schema::{Field, Schema, FAST, STORED, STRING, TEXT};
use tantivy::{Index, TantivyDocument};
use tantivy_ltre::encoders::{document_vectors_sha256, EncoderStore, BASE_ENCODER};
use tantivy_ltre::finetune::{
    Deployment, FineTuneEvent, FineTuneOptions, FineTuneOutcome, FineTuneReport, JudgedQuery,
    Phase, RecipeSearch, TrainingData, TunableIndex, FUSION_ALPHA_METRIC,
};
use tantivy_ltre::lexical::IdField;
use tantivy_ltre::{add_dense_field, DenseField, DenseFieldOptions, DenseIndexWriter};

const COLORS: [&str; 4] = ["red", "blue", "green", "black"];
const ITEMS: [&str; 6] = ["boots", "jacket", "tent", "lamp", "kettle", "backpack"];

struct App {
    _root: tempfile::TempDir,
    dir: PathBuf,
    index: Index,
    dense: DenseField,
    title: Field,
}

fn one_thread() -> EncoderOptions {
    EncoderOptions {
        threads: 1,
        ..Default::default()
    }
}

/// 24 products embedded by a tiny encoder, installed as `base` and active.
fn app() -> App {
    let root = tempfile::tempdir().unwrap();
    let model = export_tiny_model(root.path(), 5, true).unwrap();
    let encoder = Encoder::load_with(&model, one_thread()).unwrap();
    let mut builder = Schema::builder();
    builder.add_text_field("sku", STRING | FAST | STORED);
    let title = builder.add_text_field("title", TEXT | STORED);
    let category = builder.add_text_field("category", STRING);
    add_dense_field(
        &mut builder,
        "embedding",
        &DenseFieldOptions::new(encoder.dim()),
    );
    let schema = builder.build();
    let sku = schema.get_field("sku").unwrap();
    let dense = DenseField::from_schema(&schema).unwrap();
    let dir = root.path().join("shop");
    std::fs::create_dir_all(&dir).unwrap();
    let index = Index::builder()
        .schema(schema)
        .register_plugin(dense.plugin())
        .create_in_dir(&dir)
        .unwrap();
    let mut writer = DenseIndexWriter::new(
        index.writer_with_num_threads(1, 15_000_000).unwrap(),
        dense.clone(),
    );
    let products = products();
    let texts: Vec<&str> = products.iter().map(|(_, t)| t.as_str()).collect();
    let vectors = encoder.encode_documents(&texts).unwrap();
    for ((id, text), vector) in products.iter().zip(vectors.rows()) {
        let mut doc = TantivyDocument::new();
        doc.add_text(sku, id);
        doc.add_text(title, text);
        doc.add_text(category, if id.ends_with('0') { "sale" } else { "main" });
        writer.add_document(doc, Some(&vector.to_vec())).unwrap();
    }
    writer.commit().unwrap();
    let store = EncoderStore::new(&dir);
    store.install(BASE_ENCODER, &model).unwrap();
    store.activate(BASE_ENCODER).unwrap();
    App {
        _root: root,
        dir,
        index,
        dense,
        title,
    }
}

fn products() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (c, color) in COLORS.iter().enumerate() {
        for (i, item) in ITEMS.iter().enumerate() {
            out.push((
                format!("sku-{c}{i}"),
                format!("{color} {item} for the trip"),
            ));
        }
    }
    out
}

/// One query per product, relevant to it (grade 2) and to the same item in another color.
fn judged() -> TrainingData {
    let mut queries = Vec::new();
    for (c, color) in COLORS.iter().enumerate() {
        for (i, item) in ITEMS.iter().enumerate() {
            queries.push(
                JudgedQuery::new(format!("q{c}{i}"), format!("a {item} in {color}"))
                    .judge(format!("sku-{c}{i}"), 2)
                    .judge(format!("sku-{}{i}", (c + 1) % COLORS.len()), 1)
                    .judge("sku-unknown", 1),
            );
        }
    }
    TrainingData::new(queries)
}

fn config(lr: f32) -> TrainConfig {
    let mut config = TrainConfig {
        epochs: 2,
        batch_size: 6,
        top_n: 16,
        rr_cut: 16,
        checkpoint_every: 1,
        dev_fraction: 0.25,
        ..Default::default()
    };
    config.optimizer.lr = lr;
    config.optimizer.weight_decay = 0.0;
    config
}

fn tunable(app: &App) -> TunableIndex {
    TunableIndex::new(
        app.index.clone(),
        app.dense.clone(),
        IdField::new(&app.index.schema(), "sku").unwrap(),
        &app.dir,
    )
    .with_lexical_fields(vec![app.title])
}

fn finish(index: &TunableIndex, data: &TrainingData, options: &FineTuneOptions) -> FineTuneReport {
    let stop = AtomicBool::new(false);
    match index.fine_tune(data, options, &stop, &mut |_| {}).unwrap() {
        FineTuneOutcome::Finished(report) => *report,
        other => panic!("not finished: {other:?}"),
    }
}

fn weights_sha256(store: &EncoderStore, id: &str) -> String {
    Manifest::load(&store.encoder_dir(id).unwrap())
        .unwrap()
        .weights_sha256
}

#[test]
fn trains_reports_and_deploys_only_when_allowed() {
    let app = app();
    let index = tunable(&app);
    let store = index.encoders();
    let data = judged();
    let checksum = {
        let searcher = app.index.reader().unwrap().searcher();
        document_vectors_sha256(&searcher, &app.dense, "sku").unwrap()
    };

    // Training without deployment: a sane report, the index untouched.
    let options = FineTuneOptions::new(config(5e-3))
        .threads(1)
        .run_dir(app.dir.join("runs/a"));
    let mut events = Vec::new();
    let stop = AtomicBool::new(false);
    let outcome = index
        .fine_tune(&data, &options, &stop, &mut |e: &FineTuneEvent| {
            events.push(e.clone())
        })
        .unwrap();
    let report = outcome.report().unwrap().clone();
    assert_eq!(report.train_queries + report.dev_queries, 24);
    assert_eq!(report.dev_queries, 6);
    assert_eq!(report.documents, 24);
    assert_eq!(report.history.len(), 2);
    assert!((0.0..=1.0).contains(&report.baseline_dev_ndcg10));
    assert!(report.best_dev_ndcg10 >= report.baseline_dev_ndcg10);
    assert_eq!(report.improved(), report.best_epoch > 0);
    assert_eq!(report.document_vectors_sha256_before, checksum);
    assert_eq!(report.document_vectors_sha256_after, checksum);
    assert_eq!(report.training_data_sha256, data.sha256());
    assert_eq!(report.deployment, Deployment::NotRequested);
    assert!(app.dir.join("runs/a/summary.json").is_file());
    assert_eq!(store.active_id().unwrap(), BASE_ENCODER);
    assert!(matches!(
        events[0],
        FineTuneEvent::Prepared {
            train_queries: 18,
            ..
        }
    ));
    let steps = events
        .iter()
        .filter(|e| matches!(e, FineTuneEvent::Step { .. }))
        .count();
    assert_eq!(steps, 6, "2 epochs of 3 batches");

    // Deploying follows the held-out result.
    let report = finish(&index, &data, &options.clone().deploy(true));
    match &report.deployment {
        Deployment::Deployed {
            id,
            previous,
            forced,
        } => {
            assert!(report.improved());
            assert!(!forced);
            assert_eq!(previous, BASE_ENCODER);
            assert_eq!(&store.active_id().unwrap(), id);
            store.rollback().unwrap();
        }
        Deployment::NotImproved => assert!(!report.improved()),
        Deployment::NotRequested => panic!("deploy was asked for"),
    }

    // A learning rate too small to move any weight cannot improve: not deployed without
    // force, deployed (and recorded as forced) with it.
    let frozen = FineTuneOptions::new(config(1e-30))
        .threads(1)
        .deploy(true)
        .run_dir(app.dir.join("runs/frozen"));
    let report = finish(&index, &data, &frozen);
    assert!(!report.improved());
    assert_eq!(report.deployment, Deployment::NotImproved);
    assert_eq!(store.active_id().unwrap(), BASE_ENCODER);
    let report = finish(&index, &data, &frozen.clone().force(true));
    let Deployment::Deployed { id, forced, .. } = &report.deployment else {
        panic!("force deploys: {:?}", report.deployment);
    };
    assert!(forced);
    assert_eq!(&store.active_id().unwrap(), id);
    let record = store.record(id).unwrap();
    assert_eq!(record.parent.as_deref(), Some(BASE_ENCODER));
    assert_eq!(record.training_data_sha256.as_deref(), Some(data.sha256()));
    assert_eq!(record.document_vectors_sha256, checksum);
    assert!(record.note.as_deref().unwrap_or("").contains("forced"));
    assert_eq!(store.rollback().unwrap(), BASE_ENCODER);
}

#[test]
fn interrupted_run_resumes_to_the_same_parameters() {
    let app = app();
    let index = tunable(&app);
    let store = index.encoders();
    let data = judged();
    let options = |run: &str| {
        FineTuneOptions::new(config(5e-3))
            .start_encoder(BASE_ENCODER)
            .threads(1)
            .deploy(true)
            .force(true)
            .run_dir(app.dir.join(run))
    };

    let straight = finish(&index, &data, &options("runs/straight"));
    let straight_id = straight.deployed_id().unwrap().to_string();

    // Stop from the progress callback after the second step, then call again.
    let stop = AtomicBool::new(false);
    let outcome = index
        .fine_tune(&data, &options("runs/resumed"), &stop, &mut |e| {
            if let FineTuneEvent::Step { step: 2, .. } = e {
                stop.store(true, Ordering::SeqCst);
            }
        })
        .unwrap();
    let FineTuneOutcome::Interrupted {
        phase,
        step,
        run_dir,
        ..
    } = outcome
    else {
        panic!("expected an interruption, got {outcome:?}");
    };
    assert_eq!((phase, step), (Phase::Select, 2));
    assert_eq!(run_dir, app.dir.join("runs/resumed"));
    let mut resumed_at = None;
    let stop = AtomicBool::new(false);
    let resumed = match index
        .fine_tune(&data, &options("runs/resumed"), &stop, &mut |e| {
            if let FineTuneEvent::PhaseStarted { step, .. } = e {
                resumed_at.get_or_insert(*step);
            }
        })
        .unwrap()
    {
        FineTuneOutcome::Finished(report) => report,
        other => panic!("not finished: {other:?}"),
    };
    assert_eq!(resumed_at, Some(2));
    let losses = |r: &FineTuneReport| -> Vec<(f32, f64)> {
        r.history.iter().map(|e| (e.loss, e.dev_ndcg10)).collect()
    };
    assert_eq!(losses(&resumed), losses(&straight));
    assert_eq!(resumed.best_epoch, straight.best_epoch);
    assert_eq!(
        weights_sha256(&store, resumed.deployed_id().unwrap()),
        weights_sha256(&store, &straight_id)
    );
}

#[test]
fn bm25_negatives_need_lexical_fields() {
    let app = app();
    let data = judged();
    let mut config = config(5e-3);
    config.objective = Objective::Bm25Negatives;
    config.epochs = 1;
    let options = FineTuneOptions::new(config)
        .threads(1)
        .run_dir(app.dir.join("runs/bm25"));
    let bare = TunableIndex::new(
        app.index.clone(),
        app.dense.clone(),
        IdField::new(&app.index.schema(), "sku").unwrap(),
        &app.dir,
    );
    let stop = AtomicBool::new(false);
    let err = bare
        .fine_tune(&data, &options, &stop, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("with_lexical_fields"), "{err}");
    let report = finish(&tunable(&app), &data, &options);
    assert_eq!(report.history.len(), 1);
}

#[test]
fn clear_errors_for_bad_inputs() {
    let app = app();
    let index = tunable(&app);
    let stop = AtomicBool::new(false);
    let options = FineTuneOptions::new(config(5e-3)).run_dir(app.dir.join("runs/bad"));
    let nothing = TrainingData::new(vec![JudgedQuery::new("q", "boots").judge("nope", 1)]);
    let err = index
        .fine_tune(&nothing, &options, &stop, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("id field `sku`"), "{err}");
    let err = index
        .fine_tune(
            &judged(),
            &options.clone().start_encoder("ltre-0042"),
            &stop,
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("no encoder `ltre-0042`"), "{err}");
    let err = TunableIndex::open_ltre_index(Path::new(&app.dir))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("ltre.json"), "{err}");
}

#[test]
fn held_out_curve_is_logged_every_eval_every_steps_and_selects_a_step() {
    let app = app();
    let index = tunable(&app);
    let mut cfg = config(5e-3);
    cfg.eval_every = 1;
    let options = FineTuneOptions::new(cfg)
        .threads(1)
        .run_dir(app.dir.join("runs/curve"));
    let report = finish(&index, &judged(), &options);
    let steps: Vec<u64> = report.dev_curve.iter().map(|p| p.step).collect();
    let total = report.history.len() as u64 * 3; // 18 training queries, batches of 6
    assert_eq!(steps, (0..=total).collect::<Vec<_>>());
    assert_eq!(report.dev_curve[0].dev_ndcg10, report.baseline_dev_ndcg10);
    let best = report
        .dev_curve
        .iter()
        .map(|p| p.dev_ndcg10)
        .fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(report.best_dev_ndcg10, best);
    // The first point reaching the best is the selected one (0: the start encoder).
    let first_best = report
        .dev_curve
        .iter()
        .find(|p| p.dev_ndcg10 == best)
        .unwrap();
    assert_eq!(report.best_step, first_best.step);
}

#[test]
fn recipe_search_reports_its_trials_continues_the_chosen_one_and_resumes() {
    let app = app();
    let index = tunable(&app);
    let store = index.encoders();
    let data = judged();
    let recipe = RecipeSearch {
        learning_rates: vec![1e-3, 5e-3],
        temperatures: vec![10.0],
        probe_epochs: 1.0,
        max_drop: 1.0,
        anchor: 1.0,
        anchor_fraction: 0.5,
        rival_anchor_fractions: vec![0.0],
        refit: false,
    };
    let options = |run: &str| {
        FineTuneOptions::new(config(1.0))
            .search(recipe.clone())
            .start_encoder(BASE_ENCODER)
            .threads(1)
            .deploy(true)
            .force(true)
            .run_dir(app.dir.join(run))
    };
    let straight = finish(&index, &data, &options("runs/straight"));
    // Two learning rates at the configured temperature, then the other one at the chosen rate;
    // then the chosen settings at full length, fading (the chosen probe continued) and kept.
    let tried: Vec<(f32, f32, u64, u64)> = straight
        .search
        .iter()
        .map(|t| (t.lr, t.temperature, t.anchor_steps, t.steps))
        .collect();
    assert_eq!(tried.len(), 5, "{tried:?}");
    // 2 epochs of 3 steps: probes run 3 steps, with a trust region fading over half the run.
    assert_eq!(&tried[..2], &[(1e-3, 20.0, 3, 3), (5e-3, 20.0, 3, 3)]);
    assert_eq!((tried[2].1, tried[2].2, tried[2].3), (10.0, 3, 3));
    let (probes, full) = straight.search.split_at(3);
    let chosen: Vec<_> = probes.iter().filter(|t| t.chosen).collect();
    assert_eq!(chosen.len(), 1);
    assert_eq!(straight.config.optimizer.lr, chosen[0].lr);
    assert_eq!(straight.config.temperature, chosen[0].temperature);
    assert_eq!(straight.config.anchor, 1.0);
    for t in full {
        assert_eq!(
            (t.lr, t.temperature, t.steps),
            (chosen[0].lr, chosen[0].temperature, 6)
        );
    }
    assert_eq!(
        full.iter().map(|t| t.anchor_steps).collect::<Vec<_>>(),
        vec![3, 0]
    );
    // The full run with the best held-out point is the result.
    let kept: Vec<_> = full.iter().filter(|t| t.chosen).collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(straight.config.anchor_steps, kept[0].anchor_steps);
    assert_eq!(straight.best_dev_ndcg10, kept[0].best_dev_ndcg10);
    assert!(full
        .iter()
        .all(|t| t.best_dev_ndcg10 <= kept[0].best_dev_ndcg10));
    for t in &straight.search {
        assert!(
            t.best_dev_ndcg10 >= t.start_dev_ndcg10 && t.lowest_dev_ndcg10 <= t.start_dev_ndcg10
        );
    }
    // The chosen probe continued: its directory holds the whole run.
    assert!(straight.run_dir.join("search").is_dir());

    // Interrupted at step 2 of the second probe, or of the second full run (the rival with the
    // trust region kept), then resumed: the same result.
    for (phase, run) in [
        (Phase::Search, "runs/resumed"),
        (Phase::Select, "runs/rival"),
    ] {
        let stop = AtomicBool::new(false);
        let mut started = 0;
        let outcome = index
            .fine_tune(&data, &options(run), &stop, &mut |e| match e {
                FineTuneEvent::PhaseStarted { phase: p, .. } if *p == phase => started += 1,
                FineTuneEvent::Step {
                    phase: p, step: 2, ..
                } if *p == phase && started == 2 => stop.store(true, Ordering::SeqCst),
                _ => {}
            })
            .unwrap();
        assert!(
            matches!(
                outcome,
                FineTuneOutcome::Interrupted { phase: p, step: 2, .. } if p == phase
            ),
            "{outcome:?}"
        );
        let resumed = finish(&index, &data, &options(run));
        assert_eq!(resumed.search, straight.search);
        assert_eq!(resumed.dev_curve, straight.dev_curve);
        assert_eq!(
            weights_sha256(&store, resumed.deployed_id().unwrap()),
            weights_sha256(&store, straight.deployed_id().unwrap())
        );
    }
}

#[test]
fn hybrid_training_chooses_and_records_the_fusion_weight() {
    let app = app();
    let index = tunable(&app);
    let store = index.encoders();
    let mut cfg = config(1e-3);
    cfg.hybrid = Some(HybridConfig {
        alpha: 0.5,
        depth: 8,
        ..HybridConfig::default()
    });
    let mut options = FineTuneOptions::new(cfg)
        .threads(1)
        .deploy(true)
        .force(true)
        .run_dir(app.dir.join("runs/hybrid"));
    options.refit = true;
    let report = finish(&index, &judged(), &options);
    let alpha = report.fusion_alpha.expect("a fusion weight");
    assert!(ALPHA_GRID.contains(&alpha));
    let trained_with = report.config.hybrid.unwrap().alpha;
    assert!(ALPHA_GRID.contains(&trained_with));
    // The weight is chosen with the encoder selected on the held-out queries, not with the
    // refit one, which has trained on them: at the training weight, the table scores exactly
    // the held-out hybrid nDCG@10 the selection saw.
    assert!(report.improved() && report.refit.is_some(), "{report}");
    let table: HashMap<_, _> = report
        .fusion_table
        .iter()
        .map(|&(a, v)| (a.to_bits(), v))
        .collect();
    assert_eq!(table.len(), ALPHA_GRID.len());
    assert_eq!(table[&trained_with.to_bits()], report.best_dev_ndcg10);
    let best = report.fusion_table.iter().map(|x| x.1).fold(0.0, f64::max);
    assert_eq!(table[&alpha.to_bits()], best);
    let id = report.deployed_id().unwrap();
    let recorded = store.record(id).unwrap().metrics[FUSION_ALPHA_METRIC];
    assert_eq!(recorded, alpha as f64);

    // choose_alpha trains at the grid's best weight for the start encoder on the held-out
    // queries: on this data not the configured 0.5, and scoring the start above it.
    let mut choosing = options
        .clone()
        .deploy(false)
        .run_dir(app.dir.join("runs/choose"));
    choosing.refit = false;
    choosing.choose_alpha = true;
    let chosen = finish(&index, &judged(), &choosing);
    let chosen_alpha = chosen.config.hybrid.unwrap().alpha;
    assert!(ALPHA_GRID.contains(&chosen_alpha));
    assert_ne!(chosen_alpha, trained_with, "{chosen}");
    assert!(
        chosen.baseline_dev_ndcg10 > report.baseline_dev_ndcg10,
        "{} at {chosen_alpha} against {} at {trained_with}",
        chosen.baseline_dev_ndcg10,
        report.baseline_dev_ndcg10
    );

    // Without lexical fields there is no BM25 side to fuse: a clear error.
    let bare = TunableIndex::new(
        app.index.clone(),
        app.dense.clone(),
        IdField::new(&app.index.schema(), "sku").unwrap(),
        &app.dir,
    );
    let stop = AtomicBool::new(false);
    let err = bare
        .fine_tune(&judged(), &options, &stop, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("lexical fields"), "{err}");
}
