//! `--train` exports of the real MiniLM checkpoint: the training graphs load in ONNX Runtime
//! and compute the inference graph's embedding; the split forward/backward graphs give the
//! fused graph's gradients.
use std::path::Path;

use ltre_core::export::{export_checkpoint, ExportOptions};
use ltre_core::manifest::{io_names, WordEmbeddingGrad};
use ltre_core::params::ParamStore;
use ltre_core::tokenize::TokenBatch;
use ltre_core::train_step::{QueryTower, TowerOptions};
use ndarray::{Array2, ArrayD};
use ort::session::Session;

fn session(path: &Path) -> Session {
    let env = ltre_core::runtime::environment().unwrap();
    Session::builder(env)
        .unwrap()
        .commit_from_file(path)
        .unwrap()
}

#[test]
fn minilm_training_graphs_match_inference() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ltre/models/all-MiniLM-L6-v2");
    if !model.join("model.safetensors").is_file() {
        eprintln!(
            "skipping: {} not present (run scripts/setup.sh)",
            model.display()
        );
        return;
    }
    // Tensors can only be created once the library is loaded.
    ltre_core::runtime::environment().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("minilm");
    let opts = ExportOptions {
        train: Some(WordEmbeddingGrad::Sparse),
        ..Default::default()
    };
    let m = export_checkpoint(&model, &out, &opts).unwrap();
    let train = m.train.unwrap();
    assert_eq!(train.parameters.len(), 5 + 6 * 16);
    assert_eq!(train.parameters[0], "embeddings.word_embeddings.weight");
    let params = ParamStore::load(&out.join("model.safetensors")).unwrap();

    // Batch of 3, the last two rows padded, ids from the middle of the vocabulary.
    let (b, s) = (3, 12);
    let ids = Array2::from_shape_fn((b, s), |(i, j)| {
        if j == 0 {
            101
        } else {
            2000 + (i * 37 + j * 101) as i64 % 20000
        }
    });
    let mask = Array2::from_shape_fn((b, s), |(i, j)| i64::from(j < s - 4 * i));
    let types = Array2::<i64>::zeros((b, s));
    let tokens = [
        (io_names::INPUT_IDS, ids),
        (io_names::ATTENTION_MASK, mask),
        (io_names::TOKEN_TYPE_IDS, types),
    ];
    let token_feeds = || -> Vec<(String, ort::value::DynValue)> {
        tokens
            .iter()
            .map(|(n, t)| {
                (
                    n.to_string(),
                    ort::value::Tensor::from_array(t.clone())
                        .unwrap()
                        .into_dyn(),
                )
            })
            .collect()
    };
    let param_feeds = || -> Vec<(String, ort::value::DynValue)> {
        train
            .parameters
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    ort::value::Tensor::from_array(params.get(n).unwrap().clone())
                        .unwrap()
                        .into_dyn(),
                )
            })
            .collect()
    };
    let embed = |file: &str, mut feeds: Vec<(String, ort::value::DynValue)>| -> Array2<f32> {
        let mut s = session(&out.join(file));
        let res = s.run(std::mem::take(&mut feeds)).unwrap();
        let e: ArrayD<f32> = res[io_names::EMBEDDING]
            .try_extract_array::<f32>()
            .unwrap()
            .to_owned();
        e.into_dimensionality().unwrap()
    };
    let reference = embed("model.onnx", token_feeds());
    let forward = embed(
        &train.forward_file,
        param_feeds().into_iter().chain(token_feeds()).collect(),
    );
    let mut feeds: Vec<_> = param_feeds().into_iter().chain(token_feeds()).collect();
    let seed = Array2::<f32>::ones((b, 384));
    feeds.push((
        io_names::EMBEDDING_GRAD.into(),
        ort::value::Tensor::from_array(seed).unwrap().into_dyn(),
    ));
    let trained = embed(&train.file, feeds);
    for other in [&forward, &trained] {
        for (x, y) in reference.rows().into_iter().zip(other.rows()) {
            let cos = x.dot(&y) / (x.dot(&x).sqrt() * y.dot(&y).sqrt());
            assert!(cos >= 0.9999, "cosine {cos}");
        }
    }

    // The split forward (saving activations) + backward graphs give the fused graph's
    // gradients; ORT may fuse the two differently, hence a float-rounding tolerance.
    let mut tower = QueryTower::load(&out, TowerOptions::default()).unwrap();
    assert!(tower.has_backward_graph());
    let [ids, mask, types] = tokens.map(|(_, t)| t);
    let batch = TokenBatch {
        input_ids: ids,
        attention_mask: mask,
        token_type_ids: types,
    };
    let upstream = Array2::from_shape_fn((b, 384), |(i, j)| ((i * 7 + j) % 11) as f32 / 11.0 - 0.5);
    let (_, fused) = tower.gradients_batch(&batch, &upstream).unwrap();
    let (_, saved) = tower.forward_for_training(&batch).unwrap();
    let split = tower.backward(&batch, saved, &upstream).unwrap();
    assert_eq!(fused.len(), split.len());
    let mut worst = 0.0f32;
    for (name, f) in &fused {
        let scale = f.iter().fold(1e-12f32, |m, x| m.max(x.abs()));
        let d = f
            .iter()
            .zip(&split[name])
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        worst = worst.max(d / scale);
    }
    eprintln!("MiniLM split vs fused gradients: worst relative difference {worst:e}");
    assert!(
        worst < 1e-4,
        "split gradients differ from fused by {worst:e}"
    );
}
