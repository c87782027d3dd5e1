//! Fine-tuning in place through the library, on an application-style index (its own schema:
//! `sku` id, `title`, `category`, `embedding`), with a tiny random BERT exported with its
//! training graphs.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use ltre_core::encoder::EncoderOptions;
use ltre_core::testing::export_tiny_model;
use ltre_core::trainer::{Objective, TrainConfig};
use ltre_core::{Encoder, Manifest};
use tantivy::schema::{Field, Schema, FAST, STORED, STRING, TEXT};
use tantivy::{Index, TantivyDocument};
use tantivy_ltre::encoders::{document_vectors_sha256, EncoderStore, BASE_ENCODER};
use tantivy_ltre::finetune::{
    Deployment, FineTuneEvent, FineTuneOptions, FineTuneOutcome, FineTuneReport, JudgedQuery,
    Phase, TrainingData, TunableIndex,
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
