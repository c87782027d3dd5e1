//! Parity of the exported all-MiniLM-L6-v2 (`export_checkpoint` + `Encoder`, ONNX Runtime) with an
//! independent numpy BERT (`scripts/reference_bert.py`, float64) on 20 fixed sentences: empty
//! strings, a ~1,000-word text truncated at 256 tokens, a query truncated at 64, accents, CJK,
//! emoji and Greek. Token ids must match exactly and every vector must reach cosine >= 0.9999.
//!
//! Needs the checkpoint from `bash scripts/setup.sh` (the test command runs it first).
use std::path::PathBuf;

use ltre::core::encoder::{EncoderOptions, TextKind};
use ltre::core::export::{export_checkpoint, ExportOptions};
use ltre::core::Encoder;
use serde_json::Value;

const MIN_COSINE: f64 = 0.9999;

struct Sentence {
    text: String,
    kind: TextKind,
    input_ids: Vec<i64>,
    vector: Vec<f32>,
}

/// The repository root. Cargo sets CARGO_MANIFEST_DIR when it runs tests; prefer it to the
/// compile-time value, which is stale when a shared target dir reuses another checkout's build.
fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn fixture() -> (Value, Vec<Sentence>) {
    let path = root().join("tests/fixtures/parity/minilm_reference.json");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let sentences = json["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Sentence {
            text: s["text"].as_str().unwrap().to_string(),
            kind: match s["kind"].as_str().unwrap() {
                "query" => TextKind::Query,
                "document" => TextKind::Document,
                other => panic!("unknown kind {other}"),
            },
            input_ids: s["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect(),
            vector: s["vector"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect(),
        })
        .collect();
    (json, sentences)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn minilm_matches_independent_numpy_reference() {
    let checkpoint = root().join(".ltre/models/all-MiniLM-L6-v2");
    assert!(
        checkpoint.join("model.safetensors").is_file(),
        "{} is missing: run `bash scripts/setup.sh` in the repository first",
        checkpoint.display()
    );
    let (json, sentences) = fixture();
    assert_eq!(sentences.len(), 20);

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("minilm-onnx");
    let manifest = export_checkpoint(&checkpoint, &out, &ExportOptions::default()).unwrap();
    assert_eq!(manifest.embedding_dim, 384);
    assert!(
        manifest.normalize,
        "all-MiniLM-L6-v2 has a Normalize module"
    );
    assert_eq!(
        manifest.query_max_length as u64,
        json["query_max_length"].as_u64().unwrap()
    );
    assert_eq!(
        manifest.document_max_length as u64,
        json["document_max_length"].as_u64().unwrap()
    );

    let encoder = Encoder::load_with(
        &out,
        EncoderOptions {
            batch_size: 8,
            ..Default::default()
        },
    )
    .unwrap();
    let mut min = (f64::INFINITY, String::new());
    for kind in [TextKind::Query, TextKind::Document] {
        let group: Vec<&Sentence> = sentences.iter().filter(|s| s.kind == kind).collect();
        let texts: Vec<&str> = group.iter().map(|s| s.text.as_str()).collect();
        let vectors = encoder.encode(&texts, kind).unwrap();
        for (i, s) in group.iter().enumerate() {
            let tokens = encoder.tokenize(&[s.text.as_str()], kind).unwrap();
            assert_eq!(
                tokens.input_ids.row(0).to_vec(),
                s.input_ids,
                "token ids of {:?}",
                s.text
            );
            let cos = cosine(vectors.row(i).as_slice().unwrap(), &s.vector);
            if cos < min.0 {
                min = (cos, s.text.chars().take(40).collect());
            }
            assert!(
                cos >= MIN_COSINE,
                "{kind:?} {:?}: cosine {cos} < {MIN_COSINE}",
                s.text
            );
        }
    }
    println!(
        "parity: min cosine {:.12} (1 - cos = {:.1e}, {:?}) over {} sentences",
        min.0,
        1.0 - min.0,
        min.1,
        sentences.len()
    );
}
