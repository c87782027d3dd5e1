//! Exporting checkpoints to ONNX and running the result in ONNX Runtime.
use std::path::{Path, PathBuf};

use ltre_core::export::{export_checkpoint, export_params, ExportOptions, ExportSettings};
use ltre_core::manifest::{Manifest, Pooling};
use ltre_core::params::ParamStore;
use ltre_core::testing::{write_tiny_bert, TinyBertSpec};
use ndarray::{Array2, ArrayD};
use sha2::{Digest, Sha256};

/// Token ids, mask and types for `texts`, right-padded to `len` (at least the longest).
fn tokenize(tokenizer: &Path, texts: &[&str], len: usize) -> [Array2<i64>; 3] {
    let mut tok = tokenizers::Tokenizer::from_file(tokenizer).unwrap();
    // MiniLM's tokenizer.json pads and truncates to 128 on its own; padding is ours to do.
    tok.with_padding(None).with_truncation(None).unwrap();
    let encs: Vec<_> = texts
        .iter()
        .map(|t| tok.encode(*t, true).unwrap())
        .collect();
    let len = encs
        .iter()
        .map(|e| e.get_ids().len())
        .max()
        .unwrap()
        .max(len);
    let mut ids = Array2::zeros((texts.len(), len));
    let mut mask = Array2::zeros((texts.len(), len));
    let types = Array2::zeros((texts.len(), len));
    for (i, e) in encs.iter().enumerate() {
        for (j, &id) in e.get_ids().iter().enumerate() {
            ids[[i, j]] = id as i64;
            mask[[i, j]] = 1;
        }
    }
    [ids, mask, types]
}

fn embed(model: &Path, inputs: &[Array2<i64>; 3]) -> Array2<f32> {
    let env = ltre_core::runtime::environment().unwrap();
    let mut session = ort::session::Session::builder(env)
        .unwrap()
        .commit_from_file(model)
        .unwrap();
    let outputs = session
        .run(ort::inputs![
            "input_ids" => ort::value::Tensor::from_array(inputs[0].clone()).unwrap(),
            "attention_mask" => ort::value::Tensor::from_array(inputs[1].clone()).unwrap(),
            "token_type_ids" => ort::value::Tensor::from_array(inputs[2].clone()).unwrap(),
        ])
        .unwrap();
    let e = outputs["embedding"].try_extract_array::<f32>().unwrap();
    e.to_owned().into_dimensionality().unwrap()
}

fn tiny(dir: &Path) -> PathBuf {
    let ckpt = dir.join("ckpt");
    write_tiny_bert(&ckpt, &TinyBertSpec::default()).unwrap();
    ckpt
}

fn max_abs_diff(a: ndarray::ArrayView1<f32>, b: ndarray::ArrayView1<f32>) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn tiny_checkpoint_exports_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tiny(tmp.path());
    let out = tmp.path().join("out");
    let opts = ExportOptions {
        normalize: Some(true),
        ..Default::default()
    };
    let manifest = export_checkpoint(&ckpt, &out, &opts).unwrap();

    assert_eq!(manifest, Manifest::load(&out).unwrap());
    assert_eq!(manifest.embedding_dim, 32);
    assert_eq!(
        manifest.pooling,
        Pooling::Mean,
        "1_Pooling/config.json says mean"
    );
    assert!(manifest.normalize);
    assert_eq!(
        (manifest.query_max_length, manifest.document_max_length),
        (64, 64),
        "capped at max_position"
    );
    assert_eq!(manifest.opset, 17);
    assert!(manifest.train.is_none());
    let weights = std::fs::read(out.join("model.safetensors")).unwrap();
    assert_eq!(
        manifest.weights_sha256,
        hex::encode(Sha256::digest(&weights))
    );
    let exported = ParamStore::load(&out.join("model.safetensors")).unwrap();
    assert_eq!(
        exported,
        ltre_core::checkpoint::Checkpoint::load(&ckpt)
            .unwrap()
            .params
    );
    for f in ["model.onnx", "tokenizer.json", "config.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // Re-exporting the same parameters with the manifest's settings reproduces the export.
    let config = ltre_core::checkpoint::BertConfig::load(&out.join("config.json")).unwrap();
    let settings = ExportSettings::from_manifest(&manifest, "retrained");
    let again = tmp.path().join("again");
    let m2 = export_params(
        &config,
        &exported,
        &out.join("tokenizer.json"),
        &settings,
        &again,
    )
    .unwrap();
    assert_eq!(m2.source, "retrained");
    assert_eq!(m2.weights_sha256, manifest.weights_sha256);
    assert_eq!(
        std::fs::read(again.join("model.onnx")).unwrap(),
        std::fs::read(out.join("model.onnx")).unwrap()
    );
    std::fs::remove_dir_all(&again).unwrap();

    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temp dirs left: {leftovers:?}");

    let inputs = tokenize(
        &out.join("tokenizer.json"),
        &["the dog is fast", "what does a cell do?"],
        0,
    );
    let e = embed(&out.join("model.onnx"), &inputs);
    assert_eq!(e.shape(), &[2, 32]);
    for row in e.rows() {
        let norm = row.dot(&row).sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
    assert!(
        max_abs_diff(e.row(0), e.row(1)) > 1e-3,
        "different texts, different vectors"
    );
}

#[test]
fn padding_does_not_change_embeddings() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tiny(tmp.path());
    for pooling in [Pooling::Mean, Pooling::Cls] {
        let out = tmp.path().join(format!("out-{pooling:?}"));
        let opts = ExportOptions {
            pooling: Some(pooling),
            normalize: Some(false),
            ..Default::default()
        };
        export_checkpoint(&ckpt, &out, &opts).unwrap();
        let tok = out.join("tokenizer.json");
        let model = out.join("model.onnx");
        let alone = embed(&model, &tokenize(&tok, &["the cat and the dog"], 0));
        let padded = embed(&model, &tokenize(&tok, &["the cat and the dog", "a"], 20));
        let d = max_abs_diff(alone.row(0), padded.row(0));
        assert!(
            d < 1e-5,
            "{pooling:?}: padding changed the embedding by {d}"
        );
    }
}

#[test]
fn re_export_replaces_an_export_but_never_other_files() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tiny(tmp.path());
    let out = tmp.path().join("out");
    export_checkpoint(&ckpt, &out, &ExportOptions::default()).unwrap();
    let m = export_checkpoint(
        &ckpt,
        &out,
        &ExportOptions {
            pooling: Some(Pooling::Cls),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(Manifest::load(&out).unwrap().pooling, Pooling::Cls);
    assert_eq!(m.pooling, Pooling::Cls);

    let precious = tmp.path().join("precious");
    std::fs::create_dir(&precious).unwrap();
    std::fs::write(precious.join("notes.txt"), "keep me").unwrap();
    let err = export_checkpoint(&ckpt, &precious, &ExportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not an ltre export"), "{err}");
    assert_eq!(
        std::fs::read_to_string(precious.join("notes.txt")).unwrap(),
        "keep me"
    );

    // A file the user added inside an existing export is not silently deleted by a re-export
    // (before: the whole directory was swapped and the file lost).
    std::fs::write(out.join("README.txt"), "my notes").unwrap();
    let err = export_checkpoint(&ckpt, &out, &ExportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("README.txt"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("README.txt")).unwrap(),
        "my notes"
    );

    // A killed export's temporary directory (a dead pid) is cleaned up by the next export.
    std::fs::remove_file(out.join("README.txt")).unwrap();
    let leftover = tmp.path().join(".out.tmp-0-1-0");
    std::fs::create_dir(&leftover).unwrap();
    export_checkpoint(&ckpt, &out, &ExportOptions::default()).unwrap();
    if Path::new("/proc/self").exists() {
        assert!(!leftover.exists(), "the killed export's leftover stays");
    }
    let hidden: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".out."))
        .collect();
    assert!(hidden.is_empty(), "no temporary directory left behind");
}

/// Exports a damaged copy of the tiny checkpoint and returns the error text; `--out` must not exist.
fn broken_export(damage: impl FnOnce(&Path)) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tiny(tmp.path());
    damage(&ckpt);
    let out = tmp.path().join("out");
    let err = export_checkpoint(&ckpt, &out, &ExportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        !out.exists(),
        "--out must be absent after a failed export ({err})"
    );
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec![std::ffi::OsString::from("ckpt")],
        "no temp dirs left"
    );
    err
}

fn rewrite_params(ckpt: &Path, edit: impl FnOnce(&ParamStore) -> ParamStore) {
    let path = ckpt.join("model.safetensors");
    let store = ParamStore::load(&path).unwrap();
    edit(&store).save(&path).unwrap();
}

#[test]
fn missing_tensor_is_named() {
    let gone = "encoder.layer.1.attention.self.key.bias";
    let err = broken_export(|ckpt| {
        rewrite_params(ckpt, |s| {
            let mut out = ParamStore::new();
            for (n, t) in s.iter().filter(|(n, _)| *n != gone) {
                out.insert(n, t.clone());
            }
            out
        })
    });
    assert!(err.contains(gone) && err.contains("missing"), "{err}");
}

#[test]
fn misshapen_tensor_is_named_with_both_shapes() {
    let name = "encoder.layer.0.intermediate.dense.weight";
    let err = broken_export(|ckpt| {
        rewrite_params(ckpt, |s| {
            let mut out = s.clone();
            out.insert(name, ArrayD::zeros(vec![64, 31]));
            out
        })
    });
    assert!(
        err.contains(name) && err.contains("[64, 31]") && err.contains("[64, 32]"),
        "{err}"
    );
}

#[test]
fn other_architectures_are_refused_by_model_type() {
    let err = broken_export(|ckpt| {
        std::fs::write(
            ckpt.join("config.json"),
            r#"{"model_type": "gpt2", "n_embd": 32}"#,
        )
        .unwrap();
    });
    assert!(
        err.contains("model_type") && err.contains("gpt2") && err.contains("bert"),
        "{err}"
    );
}

#[test]
fn invalid_json_names_the_file() {
    let err = broken_export(|ckpt| {
        std::fs::write(ckpt.join("config.json"), "{\"model_type\": \"bert\",").unwrap()
    });
    assert!(
        err.contains("config.json") && err.contains("invalid JSON"),
        "{err}"
    );
    let err = broken_export(|ckpt| {
        std::fs::write(
            ckpt.join("config.json"),
            r#"{"model_type": "bert", "vocab_size": 10}"#,
        )
        .unwrap()
    });
    assert!(
        err.contains("config.json") && err.contains("hidden_size"),
        "{err}"
    );
    let err = broken_export(|ckpt| {
        std::fs::write(ckpt.join("1_Pooling").join("config.json"), "[").unwrap()
    });
    assert!(err.contains("1_Pooling"), "{err}");
}

#[test]
fn bad_lengths_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tiny(tmp.path());
    let out = tmp.path().join("out");
    let opts = ExportOptions {
        document_max_length: Some(65),
        ..Default::default()
    };
    let err = export_checkpoint(&ckpt, &out, &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--document-max-length 65") && err.contains("max_position_embeddings"),
        "{err}"
    );
    assert!(!out.exists());
}

/// The real MiniLM checkpoint, when the setup script has fetched it.
#[test]
fn minilm_exports_and_ranks_paraphrases_first() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ltre/models/all-MiniLM-L6-v2");
    if !model.join("model.safetensors").is_file() {
        eprintln!(
            "skipping: {} not present (run scripts/setup.sh)",
            model.display()
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("minilm");
    let m = export_checkpoint(&model, &out, &ExportOptions::default()).unwrap();
    assert_eq!(
        (
            m.embedding_dim,
            m.pooling,
            m.normalize,
            m.document_max_length
        ),
        (384, Pooling::Mean, true, 256)
    );
    let texts = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The stock market fell sharply today.",
    ];
    let e = embed(
        &out.join("model.onnx"),
        &tokenize(&out.join("tokenizer.json"), &texts, 0),
    );
    let (close, far) = (e.row(0).dot(&e.row(1)), e.row(0).dot(&e.row(2)));
    assert!(close > far + 0.2, "paraphrase {close} vs unrelated {far}");
}
