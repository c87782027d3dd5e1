//! Shared by the loader fuzz tests and the seed-corpus replay: valid minimal inputs for each
//! loader, and the checks every loader error must pass.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ltre_core::manifest::{Architecture, Manifest, Pooling};
use ltre_core::params::ParamStore;
use ndarray::ArrayD;
use serde_json::{json, Value};

/// The seed corpus, one folder per loader.
pub fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-seeds")
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write fuzz input");
    path
}

/// An error must name the file it is about (by file name: the rest of the path is a temp dir).
pub fn assert_names_file(err: &ltre_core::Error, path: &Path) {
    let msg = err.to_string();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("fuzz inputs have UTF-8 names");
    assert!(msg.contains(name), "error does not name {name}: {msg}");
}

/// A small valid safetensors file: an f32 matrix, an f32 vector and an integer tensor that
/// the loader skips.
pub fn valid_safetensors() -> Vec<u8> {
    let mut store = ParamStore::new();
    let w = ArrayD::from_shape_vec(
        ndarray::IxDyn(&[2, 3]),
        vec![0.5f32, -1.0, 2.0, 0.0, 3.5, 1e-3],
    )
    .expect("shape matches");
    store.insert("bert.w", w);
    store.insert("b", ArrayD::from_elem(ndarray::IxDyn(&[3]), 0.25f32));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.safetensors");
    store.save(&path).expect("save");
    std::fs::read(&path).expect("read back")
}

/// A safetensors file with a hand-written JSON header and `data` as the byte buffer.
pub fn safetensors_with_header(header: &Value, data: &[u8]) -> Vec<u8> {
    let header = serde_json::to_vec(header).expect("json");
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    out
}

/// A minimal valid `config.json` (2 layers, hidden 8).
pub fn valid_config() -> Value {
    json!({
        "model_type": "bert", "vocab_size": 16, "hidden_size": 8, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 12,
        "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu",
        "architectures": ["BertModel"]
    })
}

/// A minimal valid manifest.
pub fn valid_manifest() -> Manifest {
    Manifest {
        format_version: 1,
        architecture: Architecture {
            model_type: "bert".into(),
            hidden_size: 8,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 16,
            vocab_size: 16,
            max_position_embeddings: 12,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
        },
        embedding_dim: 8,
        pooling: Pooling::Mean,
        normalize: true,
        query_max_length: 8,
        document_max_length: 12,
        opset: 17,
        weights_sha256: "00".repeat(32),
        source: "fuzz".into(),
        graph_optimization: "all".into(),
        train: None,
    }
}

/// A minimal valid WordPiece `tokenizer.json`.
pub fn valid_tokenizer() -> Value {
    ltre_core::testing::tokenizer_json(&ltre_core::testing::tiny_vocab())
}

/// Numbers and values that break careless loaders: zero, negatives, powers of two at type
/// boundaries, fractions, huge floats, wrong types.
pub fn nasty_values() -> Vec<Value> {
    vec![
        json!(0),
        json!(1),
        json!(-1),
        json!(i64::MIN),
        json!(1u64 << 31),
        json!(1u64 << 32),
        json!(1u64 << 40),
        json!(1u64 << 53),
        json!(u64::MAX),
        json!(0.5),
        json!(-0.0),
        json!(1e308),
        json!(-1e308),
        json!(""),
        json!("bert"),
        json!("../../etc/passwd"),
        json!(null),
        json!(true),
        json!([]),
        json!({}),
        json!([1, 2]),
    ]
}
