//! The training graph's gradients against central finite differences of `train_forward.onnx`,
//! on a tiny random BERT run by ONNX Runtime; the split graphs (`train_forward.onnx` saving
//! activations, then `train_backward.onnx`) against the fused `train.onnx`.
//!
//! Loss = sum(embedding * R) for a fixed random R, so `embedding_grad` = R. ORT only runs f32
//! here, so each finite difference is Richardson-extrapolated (steps h and h/2, cancelling the
//! h^2 truncation term) over a ladder of steps, and the plateau where neighbouring steps agree
//! is taken as the estimate, with its spread as the uncertainty.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ltre_core::export::{ExportOptions, WORD_EMBEDDINGS};
use ltre_core::manifest::{io_names, Manifest, Pooling, WordEmbeddingGrad};
use ltre_core::params::ParamStore;
use ltre_core::testing::{export_tiny_model_with, TinyBertSpec};
use ndarray::{Array2, ArrayD};
use ort::session::Session;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BATCH: usize = 2;
const SEQ: usize = 8;

struct Fixture {
    _tmp: tempfile::TempDir,
    out: PathBuf,
    manifest: Manifest,
    params: ParamStore,
    tokens: [Array2<i64>; 3],
    r: Array2<f32>,
}

/// Two rows of 8 tokens, the second padded after 5, with repeated ids and both token types.
fn tokens() -> [Array2<i64>; 3] {
    let ids = Array2::from_shape_vec(
        (BATCH, SEQ),
        vec![2, 70, 71, 70, 40, 70, 45, 3, 2, 71, 71, 50, 3, 0, 0, 0],
    )
    .unwrap();
    let mask = Array2::from_shape_vec(
        (BATCH, SEQ),
        vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    )
    .unwrap();
    let types = Array2::from_shape_vec(
        (BATCH, SEQ),
        vec![0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0],
    )
    .unwrap();
    [ids, mask, types]
}

fn fixture(pooling: Pooling, normalize: bool, mode: WordEmbeddingGrad) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    // Weights 1.5x the default scale: attention is far from uniform and GELU far from linear.
    let spec = TinyBertSpec {
        weight_scale: 1.5,
        seed: 7,
        ..Default::default()
    };
    let opts = ExportOptions {
        pooling: Some(pooling),
        normalize: Some(normalize),
        train: Some(mode),
        ..Default::default()
    };
    let out = export_tiny_model_with(tmp.path(), &spec, &opts).unwrap();
    let manifest = Manifest::load(&out).unwrap();
    let params = ParamStore::load(&out.join("model.safetensors")).unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let r = Array2::from_shape_fn((BATCH, 32), |_| rng.random::<f32>() * 2.0 - 1.0);
    Fixture {
        _tmp: tmp,
        out,
        manifest,
        params,
        tokens: tokens(),
        r,
    }
}

fn session(path: &Path) -> Session {
    let env = ltre_core::runtime::environment().unwrap();
    Session::builder(env)
        .unwrap()
        .commit_from_file(path)
        .unwrap()
}

fn run(
    s: &mut Session,
    params: Option<(&ParamStore, &[String])>,
    tokens: &[Array2<i64>; 3],
    seed: Option<&Array2<f32>>,
    outputs: &[&str],
) -> HashMap<String, ArrayD<f32>> {
    let feeds = feeds(params, tokens, seed);
    let res = s.run(feeds).unwrap();
    outputs
        .iter()
        .map(|&o| {
            (
                o.to_string(),
                res[o].try_extract_array::<f32>().unwrap().to_owned(),
            )
        })
        .collect()
}

fn feeds(
    params: Option<(&ParamStore, &[String])>,
    tokens: &[Array2<i64>; 3],
    seed: Option<&Array2<f32>>,
) -> Vec<(String, ort::value::DynValue)> {
    let mut feeds: Vec<(String, ort::value::DynValue)> = Vec::new();
    if let Some((store, names)) = params {
        for n in names {
            let t = store.get(n).unwrap().clone();
            feeds.push((
                n.clone(),
                ort::value::Tensor::from_array(t).unwrap().into_dyn(),
            ));
        }
    }
    let token_names = [
        io_names::INPUT_IDS,
        io_names::ATTENTION_MASK,
        io_names::TOKEN_TYPE_IDS,
    ];
    for (n, t) in token_names.iter().zip(tokens) {
        feeds.push((
            n.to_string(),
            ort::value::Tensor::from_array(t.clone())
                .unwrap()
                .into_dyn(),
        ));
    }
    if let Some(r) = seed {
        feeds.push((
            io_names::EMBEDDING_GRAD.into(),
            ort::value::Tensor::from_array(r.clone())
                .unwrap()
                .into_dyn(),
        ));
    }
    feeds
}

fn dot(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

struct FiniteDiff<'a> {
    forward: Session,
    fx: &'a Fixture,
}

impl FiniteDiff<'_> {
    fn loss(&mut self, params: &ParamStore) -> f64 {
        let names = &self.fx.manifest.train.as_ref().unwrap().parameters;
        let e = run(
            &mut self.forward,
            Some((params, names)),
            &self.fx.tokens,
            None,
            &["embedding"],
        );
        dot(&e["embedding"], &self.fx.r.clone().into_dyn())
    }

    /// d loss / d step along `dir` on tensor `name`: Richardson-extrapolated central
    /// differences on a ladder of steps, taking the three neighbouring steps that agree best
    /// (large steps suffer truncation, small ones f32 round-off; the plateau between is reliable).
    /// Returns their mean and their spread as the uncertainty.
    fn directional(&mut self, name: &str, dir: &ArrayD<f32>) -> Estimate {
        let mut central = |step: f32| {
            let mut p = self.fx.params.clone();
            let mut m = self.fx.params.clone();
            *p.get_mut(name).unwrap() += &(dir * step);
            *m.get_mut(name).unwrap() -= &(dir * step);
            (self.loss(&p) - self.loss(&m)) / (2.0 * step as f64)
        };
        let estimates: Vec<f64> = [0.1f32, 0.05, 0.025, 0.0125, 0.00625, 0.003125, 0.0015625]
            .iter()
            .map(|&h| {
                let (d1, d2) = (central(h), central(h / 2.0));
                (4.0 * d2 - d1) / 3.0
            })
            .collect();
        // The three consecutive steps that agree best.
        let range = |w: &[f64]| {
            let (lo, hi) = w
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            hi - lo
        };
        let best = estimates
            .windows(3)
            .min_by(|a, b| range(a).total_cmp(&range(b)))
            .unwrap();
        Estimate {
            value: best.iter().sum::<f64>() / 3.0,
            spread: range(best),
        }
    }
}

struct Estimate {
    value: f64,
    spread: f64,
}

/// Asserts `analytic` matches the finite difference to a relative 1e-3, beyond the finite
/// difference's own f32 uncertainty, which must itself be below 1% (so directions nearly
/// orthogonal to the gradient, where f32 cannot resolve the slope, do not pass vacuously).
/// Returns the relative error.
fn check(what: &str, analytic: f64, numeric: &Estimate) -> f64 {
    let scale = numeric.value.abs().max(analytic.abs()).max(1e-12);
    let diff = (numeric.value - analytic).abs();
    assert!(
        numeric.spread <= 1e-2 * scale,
        "{what}: finite differences too noisy ({} +- {}) to check {analytic}",
        numeric.value,
        numeric.spread
    );
    assert!(
        diff <= 1e-3 * scale + numeric.spread,
        "{what}: gradient {analytic} vs finite difference {} +- {} (rel err {:.2e})",
        numeric.value,
        numeric.spread,
        diff / scale
    );
    diff / scale
}

/// Checks every parameter's gradient: a (mostly) random direction per tensor and the entry with the
/// largest gradient plus two random entries among the non-negligible ones.
/// Gradients from `train_forward.onnx` (embedding plus saved activations) followed by
/// `train_backward.onnx`, fed only the inputs it declares.
fn split_gradients(fx: &Fixture, outputs: &[&str]) -> HashMap<String, ArrayD<f32>> {
    let train = fx.manifest.train.as_ref().unwrap();
    assert!(!train.saved.is_empty());
    let mut forward = session(&fx.out.join(&train.forward_file));
    let mut saved = forward
        .run(feeds(
            Some((&fx.params, &train.parameters)),
            &fx.tokens,
            None,
        ))
        .unwrap();
    let mut backward = session(&fx.out.join(train.backward_file.as_ref().unwrap()));
    let declared: Vec<String> = backward
        .inputs()
        .iter()
        .map(|i| i.name().to_string())
        .collect();
    let mut all = feeds(
        Some((&fx.params, &train.parameters)),
        &fx.tokens,
        Some(&fx.r),
    );
    let mut feeds = Vec::new();
    for name in &declared {
        if train.saved.contains(name) {
            feeds.push((name.clone(), saved.remove(name.as_str()).unwrap()));
        } else {
            let i = all.iter().position(|(n, _)| n == name).unwrap();
            feeds.push(all.swap_remove(i));
        }
    }
    assert!(
        declared.len() < train.parameters.len() + train.saved.len() + 4,
        "the backward graph declares only what it uses: {declared:?}"
    );
    let res = backward.run(feeds).unwrap();
    outputs
        .iter()
        .map(|&o| {
            (
                o.to_string(),
                res[o].try_extract_array::<f32>().unwrap().to_owned(),
            )
        })
        .collect()
}

fn check_all_gradients(pooling: Pooling, normalize: bool) {
    let fx = fixture(pooling, normalize, WordEmbeddingGrad::Sparse);
    let train = fx.manifest.train.clone().unwrap();
    assert_eq!(train.word_embeddings, WordEmbeddingGrad::Sparse);
    let expected: Vec<String> = fx.params.names().map(String::from).collect();
    let mut listed = train.parameters.clone();
    listed.sort();
    assert_eq!(listed, expected, "every parameter is a graph input");

    let mut outputs: Vec<String> = train
        .parameters
        .iter()
        .filter(|n| *n != WORD_EMBEDDINGS)
        .map(|n| format!("{}{n}", io_names::GRAD_PREFIX))
        .collect();
    outputs.push(io_names::WORD_EMBEDDING_ROW_GRAD.into());
    let out_refs: Vec<&str> = outputs.iter().map(String::as_str).collect();
    let mut train_session = session(&fx.out.join(&train.file));
    let grads = run(
        &mut train_session,
        Some((&fx.params, &train.parameters)),
        &fx.tokens,
        Some(&fx.r),
        &out_refs,
    );

    // The split graphs (forward saving activations, then backward) give the same gradients;
    // the finite-difference checks below then hold for both paths.
    let split = split_gradients(&fx, &out_refs);
    for name in &outputs {
        let (a, b) = (&grads[name], &split[name]);
        let scale = a.iter().fold(1e-12f32, |m, x| m.max(x.abs()));
        let d = a
            .iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            d <= 1e-6 * scale,
            "{name}: split differs from fused by {d:e}"
        );
    }
    let grads = split;

    let mut fd = FiniteDiff {
        forward: session(&fx.out.join(&train.forward_file)),
        fx: &fx,
    };
    let mut rng = StdRng::seed_from_u64(3);
    let (mut worst, mut worst_entry) = (0.0f64, 0.0f64);
    for name in &train.parameters {
        let analytic_full = if name == WORD_EMBEDDINGS {
            // Scatter the per-token rows into the table, as the trainer does.
            let rows = &grads[io_names::WORD_EMBEDDING_ROW_GRAD];
            assert_eq!(rows.shape(), &[BATCH, SEQ, 32]);
            let mut table = ArrayD::<f32>::zeros(fx.params.get(name).unwrap().raw_dim());
            for b in 0..BATCH {
                for s in 0..SEQ {
                    let id = fx.tokens[0][[b, s]] as usize;
                    for h in 0..32 {
                        table[[id, h]] += rows[[b, s, h]];
                    }
                    if fx.tokens[1][[b, s]] == 0 {
                        assert!(
                            rows.slice(ndarray::s![b, s, ..]).iter().all(|&x| x == 0.0),
                            "padding rows get no gradient"
                        );
                    }
                }
            }
            table
        } else {
            grads[&format!("{}{name}", io_names::GRAD_PREFIX)].clone()
        };
        let shape = fx.params.get(name).unwrap().raw_dim();
        assert_eq!(analytic_full.raw_dim(), shape, "{name}: gradient shape");

        let max = analytic_full.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        if name.ends_with("attention.self.key.bias") {
            // Softmax ignores the per-query constant q.b_k that a key bias adds to every score,
            // so this gradient is exactly zero; check that, and that perturbing really does nothing.
            assert!(
                max < 1e-5,
                "{name}: gradient should vanish, max |g| = {max}"
            );
            let dir = ArrayD::from_shape_fn(shape.clone(), |_| rng.random::<f32>() * 2.0 - 1.0);
            let numeric = fd.directional(name, &dir);
            assert!(
                numeric.value.abs() < 1e-3,
                "{name}: finite difference {} should vanish",
                numeric.value
            );
            continue;
        }

        if name == "embeddings.position_embeddings.weight" {
            // Positions past the sequence are never read.
            assert!(analytic_full
                .slice(ndarray::s![SEQ.., ..])
                .iter()
                .all(|&x| x == 0.0));
        }
        // A random direction plus a share of the gradient's own direction: a purely random one
        // can be nearly orthogonal to the gradient, leaving a slope too small for f32 finite
        // differences to resolve. The identity d/dt L(p + t D) = <grad, D> holds for any D.
        let random = ArrayD::from_shape_fn(shape.clone(), |_| rng.random::<f32>() * 2.0 - 1.0);
        let norm = |a: &ArrayD<f32>| dot(a, a).sqrt() as f32;
        let dir =
            &random + &(&analytic_full * (0.5 * norm(&random) / norm(&analytic_full).max(1e-30)));
        let numeric = fd.directional(name, &dir);
        let analytic = dot(&analytic_full, &dir);
        let e = check(&format!("{name} (direction)"), analytic, &numeric);
        worst = worst.max(e);

        let big: Vec<usize> = (0..analytic_full.len())
            .filter(|&i| analytic_full.as_slice().unwrap()[i].abs() >= 0.05 * max)
            .collect();
        let argmax = (0..analytic_full.len())
            .max_by(|&a, &b| {
                let s = analytic_full.as_slice().unwrap();
                s[a].abs().total_cmp(&s[b].abs())
            })
            .unwrap();
        let picks = [
            argmax,
            big[rng.random_range(0..big.len())],
            big[rng.random_range(0..big.len())],
        ];
        for &i in &picks {
            let mut unit = ArrayD::<f32>::zeros(shape.clone());
            unit.as_slice_mut().unwrap()[i] = 1.0;
            let numeric = fd.directional(name, &unit);
            let analytic = analytic_full.as_slice().unwrap()[i] as f64;
            let e = check(&format!("{name}[{i}]"), analytic, &numeric);
            worst_entry = worst_entry.max(e);
        }
    }
    eprintln!("{pooling:?} normalize={normalize}: worst rel err {worst:.2e} (directions), {worst_entry:.2e} (entries)");
}

#[test]
fn gradients_match_finite_differences_mean_normalized() {
    check_all_gradients(Pooling::Mean, true);
}

#[test]
fn gradients_match_finite_differences_cls() {
    check_all_gradients(Pooling::Cls, true);
}

#[test]
fn training_forward_equals_inference() {
    let fx = fixture(Pooling::Mean, true, WordEmbeddingGrad::Sparse);
    let train = fx.manifest.train.clone().unwrap();
    let p = Some((&fx.params, train.parameters.as_slice()));
    let inference = run(
        &mut session(&fx.out.join("model.onnx")),
        None,
        &fx.tokens,
        None,
        &["embedding"],
    );
    let forward = run(
        &mut session(&fx.out.join(&train.forward_file)),
        p,
        &fx.tokens,
        None,
        &["embedding"],
    );
    let trained = run(
        &mut session(&fx.out.join(&train.file)),
        p,
        &fx.tokens,
        Some(&fx.r),
        &["embedding"],
    );
    for other in [&forward, &trained] {
        let d = inference["embedding"]
            .iter()
            .zip(other["embedding"].iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-6, "forward differs from inference by {d}");
    }
}

#[test]
fn frozen_word_embeddings_have_no_gradient_output() {
    let fx = fixture(Pooling::Mean, true, WordEmbeddingGrad::Frozen);
    let train = fx.manifest.train.clone().unwrap();
    assert_eq!(train.word_embeddings, WordEmbeddingGrad::Frozen);
    assert!(
        train.parameters.iter().any(|n| n == WORD_EMBEDDINGS),
        "the table is still an input"
    );
    let s = session(&fx.out.join(&train.file));
    let names: Vec<&str> = s.outputs().iter().map(|o| o.name()).collect();
    assert!(
        !names.contains(&io_names::WORD_EMBEDDING_ROW_GRAD),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.ends_with(WORD_EMBEDDINGS)),
        "{names:?}"
    );
    assert_eq!(
        names.len(),
        1 + train.parameters.len() - 1,
        "embedding + one gradient per other parameter"
    );
    let grads: Vec<String> = names[1..].iter().map(|n| n.to_string()).collect();
    let grad_refs: Vec<&str> = grads.iter().map(String::as_str).collect();
    let backward = session(&fx.out.join(train.backward_file.as_ref().unwrap()));
    let mut split_names: Vec<&str> = backward.outputs().iter().map(|o| o.name()).collect();
    let mut fused_names = grad_refs.clone();
    split_names.sort();
    fused_names.sort();
    assert_eq!(
        split_names, fused_names,
        "the backward graph returns the same gradients"
    );
    let fused = run(
        &mut session(&fx.out.join(&train.file)),
        Some((&fx.params, &train.parameters)),
        &fx.tokens,
        Some(&fx.r),
        &grad_refs,
    );
    let split = split_gradients(&fx, &grad_refs);
    for name in &grad_refs {
        let (a, b) = (&fused[*name], &split[*name]);
        let scale = a.iter().fold(1e-12f32, |m, x| m.max(x.abs()));
        let d = a
            .iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            d <= 1e-6 * scale,
            "{name}: split differs from fused by {d:e}"
        );
    }
}
