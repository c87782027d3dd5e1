//! `Encoder` on a tiny random BERT (no download): shapes, unit norm, dynamic-padding invariance,
//! order restoration, truncation and the query/document length split.
use std::path::Path;

use ltre::core::encoder::{Device, EncoderOptions, TextKind};
use ltre::core::export::ExportOptions;
use ltre::core::manifest::Pooling;
use ltre::core::testing::{export_tiny_model_with, TinyBertSpec};
use ltre::core::Encoder;
use ndarray::{Array2, ArrayView1};

const QUERY_MAX: usize = 8;
const DOCUMENT_MAX: usize = 24;

/// The shared tiny model with short, distinct query and document lengths.
fn export_tiny(root: &Path, pooling: Pooling) -> std::path::PathBuf {
    let opts = ExportOptions {
        pooling: Some(pooling),
        normalize: Some(true),
        query_max_length: Some(QUERY_MAX),
        document_max_length: Some(DOCUMENT_MAX),
        ..Default::default()
    };
    export_tiny_model_with(root, &TinyBertSpec::default(), &opts).unwrap()
}

fn load(dir: &Path, batch_size: usize) -> Encoder {
    Encoder::load_with(
        dir,
        EncoderOptions {
            threads: 1,
            batch_size,
            device: Device::Cpu,
        },
    )
    .unwrap()
}

fn max_abs_diff(a: ArrayView1<f32>, b: ArrayView1<f32>) -> f32 {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const SHORT: &str = "the cat";
const TEXTS: &[&str] = &[
    "the dog is fast",
    "",
    SHORT,
    "what cells does the virus search in the brain of patients with cancer",
    "dense vector index for retrieval",
    "a",
];

#[test]
fn shapes_and_unit_norm() {
    let tmp = tempfile::tempdir().unwrap();
    let encoder = load(&export_tiny(tmp.path(), Pooling::Mean), 32);
    assert_eq!(encoder.dim(), 32);
    for kind in [TextKind::Query, TextKind::Document] {
        let v = encoder.encode(TEXTS, kind).unwrap();
        assert_eq!(v.dim(), (TEXTS.len(), 32));
        for row in v.outer_iter() {
            let norm = row.dot(&row).sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
            assert!(row.iter().all(|x| x.is_finite()));
        }
    }
    let none: Array2<f32> = encoder.encode_queries::<&str>(&[]).unwrap();
    assert_eq!(none.dim(), (0, 32));
}

#[test]
fn padding_and_batching_do_not_change_vectors() {
    let tmp = tempfile::tempdir().unwrap();
    for pooling in [Pooling::Mean, Pooling::Cls] {
        let dir = export_tiny(&tmp.path().join(format!("{pooling:?}")), pooling);
        // Batch size 2 splits the (length-sorted) texts over several runs.
        for batch_size in [1, 2, 32] {
            let encoder = load(&dir, batch_size);
            let together = encoder.encode_documents(TEXTS).unwrap();
            for (i, text) in TEXTS.iter().enumerate() {
                let alone = encoder.encode_documents(&[text]).unwrap();
                let diff = max_abs_diff(alone.row(0), together.row(i));
                assert!(
                    diff <= 1e-5,
                    "{pooling:?} batch {batch_size}: text {i} differs by {diff}"
                );
            }
        }
        // The short text padded next to a much longer one in a single run.
        let encoder = load(&dir, 32);
        let batch = encoder
            .tokenize(&[SHORT, TEXTS[3]], TextKind::Document)
            .unwrap();
        assert!(batch.token_count(0) < batch.seq_len());
        let padded = encoder.run(&batch).unwrap();
        let alone = encoder.encode_documents(&[SHORT]).unwrap();
        assert!(max_abs_diff(padded.row(0), alone.row(0)) <= 1e-5);
    }
}

#[test]
fn distinct_texts_get_distinct_vectors_in_input_order() {
    let tmp = tempfile::tempdir().unwrap();
    let encoder = load(&export_tiny(tmp.path(), Pooling::Mean), 2);
    let v = encoder.encode_documents(TEXTS).unwrap();
    let reversed: Vec<&str> = TEXTS.iter().rev().copied().collect();
    let r = encoder.encode_documents(&reversed).unwrap();
    for i in 0..TEXTS.len() {
        assert!(max_abs_diff(v.row(i), r.row(TEXTS.len() - 1 - i)) <= 1e-5);
        for j in 0..i {
            assert!(
                max_abs_diff(v.row(i), v.row(j)) > 1e-3,
                "texts {i} and {j} share a vector"
            );
        }
    }
}

#[test]
fn truncates_queries_and_documents_at_their_manifest_lengths() {
    let tmp = tempfile::tempdir().unwrap();
    let encoder = load(&export_tiny(tmp.path(), Pooling::Mean), 32);
    assert_eq!(encoder.manifest().query_max_length, QUERY_MAX);
    assert_eq!(encoder.manifest().document_max_length, DOCUMENT_MAX);
    let long = "the cat and the dog ".repeat(20);
    let longer = format!("{long} protein gene cancer");

    let q = encoder
        .tokenize(&[long.as_str(), SHORT], TextKind::Query)
        .unwrap();
    assert_eq!(q.seq_len(), QUERY_MAX);
    assert_eq!(q.token_count(0), QUERY_MAX);
    let d = encoder
        .tokenize(&[long.as_str(), SHORT], TextKind::Document)
        .unwrap();
    assert_eq!(d.seq_len(), DOCUMENT_MAX);
    // Truncation keeps [CLS] ... [SEP]; the short text is padded with mask 0.
    let cls = d.input_ids[[0, 0]];
    let sep = d.input_ids[[0, DOCUMENT_MAX - 1]];
    assert_eq!(d.input_ids[[1, 0]], cls);
    assert_eq!(d.input_ids[[1, d.token_count(1) - 1]], sep);
    assert_eq!(d.attention_mask[[1, d.token_count(1)]], 0);
    assert!(d.token_type_ids.iter().all(|&t| t == 0));

    // Text past the limit does not reach the model.
    for kind in [TextKind::Query, TextKind::Document] {
        let v = encoder
            .encode(&[long.as_str(), longer.as_str()], kind)
            .unwrap();
        assert!(max_abs_diff(v.row(0), v.row(1)) <= 1e-6, "{kind:?}");
    }
    // Queries see fewer tokens than documents, so the two sides differ on long text.
    let q = encoder.encode_queries(&[long.as_str()]).unwrap();
    let d = encoder.encode_documents(&[long.as_str()]).unwrap();
    assert!(max_abs_diff(q.row(0), d.row(0)) > 1e-4);
    // ...and agree on short text.
    let q = encoder.encode_queries(&[SHORT]).unwrap();
    let d = encoder.encode_documents(&[SHORT]).unwrap();
    assert!(max_abs_diff(q.row(0), d.row(0)) <= 1e-6);
}

#[test]
fn cuda_request_falls_back_to_cpu_without_a_gpu() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = export_tiny(tmp.path(), Pooling::Mean);
    let options = EncoderOptions {
        device: Device::Cuda,
        ..Default::default()
    };
    let encoder = Encoder::load_with(&dir, options).unwrap();
    let v = encoder.encode_queries(&[SHORT]).unwrap();
    assert_eq!(v.dim(), (1, 32));
    let cpu = load(&dir, 32).encode_queries(&[SHORT]).unwrap();
    assert!(max_abs_diff(v.row(0), cpu.row(0)) <= 1e-4);
}

#[test]
fn missing_files_say_how_to_export() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Encoder::load(tmp.path().join("nowhere"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("export-onnx"), "{err}");
    let err = Encoder::load(tmp.path()).unwrap_err().to_string();
    assert!(
        err.contains("manifest.json") && err.contains("export-onnx"),
        "{err}"
    );

    let dir = export_tiny(&tmp.path().join("model"), Pooling::Mean);
    std::fs::remove_file(dir.join("model.onnx")).unwrap();
    let err = Encoder::load(&dir).unwrap_err().to_string();
    assert!(
        err.contains("model.onnx") && err.contains("export-onnx"),
        "{err}"
    );

    let dir = export_tiny(&tmp.path().join("model2"), Pooling::Mean);
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let err = Encoder::load(&dir).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("export-onnx"),
        "{err}"
    );

    let dir = export_tiny(&tmp.path().join("model3"), Pooling::Mean);
    let err = Encoder::load_with(
        &dir,
        EncoderOptions {
            batch_size: 0,
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("batch_size"), "{err}");
}
