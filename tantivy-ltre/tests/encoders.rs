//! Versioned query encoders: install, activate, rollback, the live encoder following them, and
//! the document-vector checksum. Encoders are tiny random BERTs (two seeds = two encoders).
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ltre_core::encoder::{Device, EncoderOptions};
use ltre_core::testing::export_tiny_model;
use ltre_core::Encoder;
use ndarray::Array2;
use tantivy::schema::{Schema, FAST, STORED, STRING};
use tantivy::{Index, IndexWriter, TantivyDocument, Term};
use tantivy_ltre::encoders::{
    document_vectors_sha256, read_all_vectors, EncoderRecord, EncoderStore, BASE_ENCODER,
};
use tantivy_ltre::live::LiveEncoder;
use tantivy_ltre::{add_dense_field, DenseField, DenseFieldOptions};

const QUERY: &str = "what does the fox eat";

fn export_tiny(root: &Path, seed: u64) -> PathBuf {
    export_tiny_model(root, seed, false).unwrap()
}

fn options() -> EncoderOptions {
    EncoderOptions {
        threads: 1,
        batch_size: 8,
        device: Device::Cpu,
    }
}

fn embed(encoder: &Encoder) -> Array2<f32> {
    encoder.encode_queries(&[QUERY]).unwrap()
}

fn close(a: &Array2<f32>, b: &Array2<f32>) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
}

/// An index directory with `base` (seed 1) active and `ltre-0001` (seed 2) installed.
struct Fixture {
    _root: tempfile::TempDir,
    index: PathBuf,
    store: EncoderStore,
    base: Array2<f32>,
    trained: Array2<f32>,
}

fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (export_tiny(root.path(), 1), export_tiny(root.path(), 2));
    let index = root.path().join("index");
    std::fs::create_dir_all(&index).unwrap();
    let store = EncoderStore::new(&index);
    store.install(BASE_ENCODER, &a).unwrap();
    store.activate(BASE_ENCODER).unwrap();
    let mut record = EncoderRecord::new("ckpt-2");
    record.parent = Some(BASE_ENCODER.into());
    record.metrics.insert("dev_ndcg10".into(), 0.5);
    assert_eq!(store.install_version(&b, record).unwrap(), "ltre-0001");
    let base = embed(&Encoder::load_with(&a, options()).unwrap());
    let trained = embed(&Encoder::load_with(&b, options()).unwrap());
    assert!(!close(&base, &trained), "two seeds must give two encoders");
    Fixture {
        _root: root,
        index,
        store,
        base,
        trained,
    }
}

#[test]
fn versions_activate_and_roll_back() {
    let f = fixture();
    let store = &f.store;
    let model = store.encoder_dir(BASE_ENCODER).unwrap();
    let second = store
        .install_version(&model, EncoderRecord::new("again"))
        .unwrap();
    assert_eq!(second, "ltre-0002");
    assert_eq!(
        store.list().unwrap(),
        vec!["base", "ltre-0001", "ltre-0002"]
    );

    let record = store.record("ltre-0001").unwrap();
    assert_eq!(record.id, "ltre-0001");
    assert_eq!(record.parent.as_deref(), Some("base"));
    assert_eq!(record.metrics["dev_ndcg10"], 0.5);
    // The base encoder has no encoder.json: its record comes from the manifest.
    let base = store.record(BASE_ENCODER).unwrap();
    assert!(base.base_model.contains("ckpt-1"), "{}", base.base_model);
    assert!(base.note.is_some());
    assert_eq!(store.list_records().unwrap().len(), 3);

    store.activate("ltre-0001").unwrap();
    store.activate("ltre-0002").unwrap();
    assert_eq!(store.active_id().unwrap(), "ltre-0002");
    assert_eq!(store.rollback().unwrap(), "ltre-0001");
    assert_eq!(store.active_id().unwrap(), "ltre-0001");
    assert_eq!(store.rollback().unwrap(), "base");
    let err = store.rollback().unwrap_err().to_string();
    assert!(err.contains("nothing to roll back"), "{err}");
    assert_eq!(store.active_id().unwrap(), "base");
    assert!(store.activate("ltre-0009").is_err());
    let actions: Vec<String> = store
        .history()
        .unwrap()
        .into_iter()
        .map(|e| format!("{}:{}", e.action, e.id))
        .collect();
    assert_eq!(
        actions,
        [
            "activate:base",
            "activate:ltre-0001",
            "activate:ltre-0002",
            "rollback:ltre-0001",
            "rollback:base"
        ]
    );

    // Ids are never reused, even once a version directory is gone.
    std::fs::remove_dir_all(store.encoder_dir("ltre-0002").unwrap()).unwrap();
    let third = store
        .install_version(&model, EncoderRecord::new("x"))
        .unwrap();
    assert_eq!(third, "ltre-0003");
    assert!(store
        .install_version(&f.index, EncoderRecord::new("x"))
        .is_err());
}

#[test]
fn live_encoder_follows_activation_and_rollback() {
    let f = fixture();
    let live = LiveEncoder::open(&f.index, options())
        .unwrap()
        .with_check_interval(Duration::ZERO);
    assert!(close(&embed(&live.get().unwrap()), &f.base));
    let held = live.get().unwrap();

    f.store.activate("ltre-0001").unwrap();
    assert!(close(&embed(&live.get().unwrap()), &f.trained));
    assert_eq!(live.current_id(), "ltre-0001");
    // A query that started before the switch keeps its encoder.
    assert!(close(&embed(&held), &f.base));

    f.store.rollback().unwrap();
    assert!(close(&embed(&live.get().unwrap()), &f.base));

    // A broken encoder is not swapped in: the current one keeps serving.
    let broken = f.store.encoder_dir("broken").unwrap();
    std::fs::create_dir_all(&broken).unwrap();
    f.store.activate("broken").unwrap();
    assert!(close(&embed(&live.get().unwrap()), &f.base));
    assert_eq!(live.current_id(), "base");
    f.store.activate("ltre-0001").unwrap();
    assert!(close(&embed(&live.get().unwrap()), &f.trained));
}

#[test]
fn queries_never_fail_while_encoders_switch() {
    let f = fixture();
    let live = Arc::new(
        LiveEncoder::open(&f.index, options())
            .unwrap()
            .with_check_interval(Duration::ZERO),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (base, trained) = (f.base.clone(), f.trained.clone());
    let worker = {
        let (live, stop) = (live.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = [0usize; 2];
            while !stop.load(Ordering::Relaxed) {
                let embedding = embed(&live.get().expect("get never fails"));
                // Always one whole model's output, never a mix or an error.
                if close(&embedding, &base) {
                    seen[0] += 1;
                } else {
                    assert!(close(&embedding, &trained));
                    seen[1] += 1;
                }
            }
            seen
        })
    };
    for _ in 0..20 {
        f.store.activate("ltre-0001").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        f.store.rollback().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    f.store.activate("ltre-0001").unwrap();
    // The worker must observe the final activation.
    while live.current_id() != "ltre-0001" {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let seen = worker.join().unwrap();
    assert!(seen[0] + seen[1] > 0);
}

#[test]
fn document_checksum_ignores_layout_and_sees_vector_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut builder = Schema::builder();
    let id = builder.add_text_field("id", STRING | STORED | FAST);
    add_dense_field(&mut builder, "embedding", &DenseFieldOptions::new(2));
    let schema = builder.build();
    let dense = DenseField::from_schema(&schema).unwrap();
    let index = Index::builder()
        .schema(schema)
        .register_plugin(dense.plugin())
        .create_in_dir(dir.path())
        .unwrap();
    let add = |writer: &mut IndexWriter, key: &str, v: [f32; 2]| {
        let mut doc = TantivyDocument::new();
        doc.add_text(id, key);
        dense.set_vector(&mut doc, &v).unwrap();
        writer.add_document(doc).unwrap();
    };
    let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
    // Two segments, ids out of order.
    add(&mut writer, "d3", [3.0, 0.0]);
    add(&mut writer, "d1", [1.0, 0.0]);
    writer.commit().unwrap();
    add(&mut writer, "d2", [2.0, 0.0]);
    writer.commit().unwrap();
    let searcher = index.reader().unwrap().searcher();
    let sum = document_vectors_sha256(&searcher, &dense, "id").unwrap();
    let (ids, vectors) = read_all_vectors(&searcher, &dense, "id").unwrap();
    assert_eq!(ids, ["d1", "d2", "d3"]);
    assert_eq!(vectors.column(0).to_vec(), [1.0, 2.0, 3.0]);

    // Merging the segments changes doc ids, not the checksum.
    let segments = index.searchable_segment_ids().unwrap();
    writer.merge(&segments).wait().unwrap();
    writer.commit().unwrap();
    drop(writer);
    let mut reopened = Index::open_in_dir(dir.path()).unwrap();
    let dense2 = DenseField::register(&mut reopened).unwrap();
    let searcher = reopened.reader().unwrap().searcher();
    assert_eq!(searcher.segment_readers().len(), 1);
    assert_eq!(
        document_vectors_sha256(&searcher, &dense2, "id").unwrap(),
        sum
    );

    // Changing one vector changes it; deleted documents do not count.
    let mut writer: IndexWriter = reopened.writer_with_num_threads(1, 15_000_000).unwrap();
    writer.delete_term(Term::from_field_text(id, "d2"));
    let mut doc = TantivyDocument::new();
    doc.add_text(id, "d2");
    dense2.set_vector(&mut doc, &[2.0, 0.5]).unwrap();
    writer.add_document(doc).unwrap();
    writer.commit().unwrap();
    let searcher = reopened.reader().unwrap().searcher();
    assert_ne!(
        document_vectors_sha256(&searcher, &dense2, "id").unwrap(),
        sum
    );
    let (ids, vectors) = read_all_vectors(&searcher, &dense2, "id").unwrap();
    assert_eq!(ids, ["d1", "d2", "d3"]);
    assert_eq!(vectors.row(1).to_vec(), [2.0, 0.5]);
}
