//! Replays the fuzz seed corpus (`tests/fuzz-seeds/<loader>/`) through its loader: every
//! `ok-*` file loads, every `err-*` file is an `Err` naming the file, nothing panics.
//! Optimizer `steperr-*` states load but must make the next step fail (moments that do not
//! fit the parameters). Regression seeds for fixed bugs are listed in the folder's README.
mod fuzz_common;

use std::path::{Path, PathBuf};

use fuzz_common::{assert_names_file, seeds_dir};
use ltre_core::checkpoint::BertConfig;
use ltre_core::data::{read_corpus, read_cranfield, read_qrels, read_queries};
use ltre_core::manifest::Manifest;
use ltre_core::optim::{AdamW, AdamWConfig, Gradients};
use ltre_core::params::ParamStore;
use ltre_core::tokenize::{TextKind, TextTokenizer};
use ltre_core::trainer::TrainConfig;
use ltre_core::{Error, Result};
use ndarray::{ArrayD, IxDyn};

#[derive(Debug, PartialEq)]
enum Expect {
    Ok,
    Err,
    StepErr,
}

/// The seeds of one loader with what each must do.
fn seeds(loader: &str) -> Vec<(PathBuf, Expect)> {
    let dir = seeds_dir().join(loader);
    let mut out: Vec<(PathBuf, Expect)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let expect = if name.starts_with("ok-") {
                Expect::Ok
            } else if name.starts_with("err-") {
                Expect::Err
            } else if name.starts_with("steperr-") {
                Expect::StepErr
            } else {
                panic!("seed {name}: name must start with ok-, err- or steperr-");
            };
            (path, expect)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.iter().any(|(_, e)| *e == Expect::Ok) && out.iter().any(|(_, e)| *e == Expect::Err),
        "{loader}: the corpus needs both valid and nasty seeds"
    );
    out
}

/// Runs `load` on each seed of `loader`; `named` is the file the error must name (the seed
/// itself, or the copy a directory loader reads).
fn replay<T>(loader: &str, mut load: impl FnMut(&Path) -> (Result<T>, PathBuf)) {
    for (seed, expect) in seeds(loader) {
        let (result, named) = load(&seed);
        match (result, expect) {
            (Ok(_), Expect::Ok) => {}
            (Err(e), Expect::Err) => assert_names_file(&e, &named),
            (Ok(_), _) => panic!("{}: loaded, expected an error", seed.display()),
            (Err(e), _) => panic!("{}: expected to load: {e}", seed.display()),
        }
    }
}

/// Copies `seed` into a fresh directory as `name`.
fn copy_as(seed: &Path, name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::copy(seed, &path).unwrap();
    (dir, path)
}

#[test]
fn safetensors_seeds() {
    replay("safetensors", |p| (ParamStore::load(p), p.into()));
}

#[test]
fn config_seeds() {
    replay("config", |p| {
        let r = BertConfig::load(p).and_then(|c| c.expected_tensors().map(|_| c));
        (r, p.into())
    });
}

#[test]
fn tokenizer_seeds() {
    replay("tokenizer", |p| {
        let r = TextTokenizer::from_file(p, 8, 16).and_then(|t| {
            // Loading is not enough: the template panic only showed when encoding.
            let b = t.tokenize(&["the wings flow", "", "ünïcödé 漢字"], TextKind::Query)?;
            assert_eq!(b.len(), 3);
            assert!(b.seq_len() <= 8);
            Ok(t)
        });
        (r, p.into())
    });
}

#[test]
fn manifest_seeds() {
    replay("manifest", |p| {
        let (dir, path) = copy_as(p, "manifest.json");
        (Manifest::load(dir.path()), path)
    });
}

#[test]
fn corpus_and_queries_seeds() {
    replay("corpus", |p| (read_corpus(p), p.into()));
    replay("queries", |p| (read_queries(p), p.into()));
}

#[test]
fn qrels_seeds() {
    replay("qrels", |p| (read_qrels(p), p.into()));
}

#[test]
fn smart_seeds() {
    replay("smart", |p| {
        let (dir, path) = copy_as(p, "cran.all.1400");
        std::fs::write(dir.path().join("cran.qry"), ".I 1\n.W\nwing\n").unwrap();
        std::fs::write(dir.path().join("cranqrel"), "1 1 2\n").unwrap();
        (read_cranfield(dir.path()), path)
    });
}

#[test]
fn modules_json_seeds() {
    let ckpt = tempfile::tempdir().unwrap();
    ltre_core::testing::write_tiny_bert(ckpt.path(), &Default::default()).unwrap();
    replay("modules", |p| {
        let path = ckpt.path().join("modules.json");
        std::fs::copy(p, &path).unwrap();
        (ltre_core::checkpoint::Checkpoint::load(ckpt.path()), path)
    });
}

#[test]
fn train_config_seeds() {
    replay("train-config", |p| (TrainConfig::load(p), p.into()));
}

#[test]
fn optimizer_seeds() {
    for (seed, expect) in seeds("optimizer") {
        let loaded = AdamW::load(&seed, AdamWConfig::default());
        match (loaded, expect) {
            (Err(e), Expect::Err) => assert_names_file(&e, &seed),
            (Err(e), _) => panic!("{}: expected to load: {e}", seed.display()),
            (Ok(_), Expect::Err) => panic!("{}: loaded, expected an error", seed.display()),
            (Ok(mut opt), expect) => {
                let mut params = ParamStore::new();
                params.insert("w", ArrayD::zeros(IxDyn(&[2])));
                let mut grads = Gradients::new();
                grads.insert("w".into(), ArrayD::from_elem(IxDyn(&[2]), 0.5));
                let before = params.clone();
                let step: Result<_, Error> = opt.step(&mut params, &grads);
                match expect {
                    Expect::Ok => assert!(step.is_ok(), "{}: {step:?}", seed.display()),
                    _ => {
                        assert!(step.is_err(), "{}: step accepted", seed.display());
                        assert_eq!(params, before, "a refused step must not move parameters");
                    }
                }
            }
        }
    }
}
