//! Property-based fuzzing of every ltre-core loader of outside data: safetensors (weights and
//! optimizer state), `config.json`, `tokenizer.json`, `manifest.json`, BEIR corpus/queries/
//! qrels, Cranfield SMART files and the training config (TOML and JSON).
//!
//! Properties: no panic; an error is an `Err` naming the file (and the line for line-based
//! formats); a length or size field never drives an allocation (claims of terabytes come back
//! as `Err` without allocating, which a test run proves by not running out of memory).
//!
//! The test profile runs `CASES` cases per loader (quick). For a longer run:
//! `PROPTEST_CASES=20000 cargo test -p ltre-core --test fuzz_loaders --release`
//! (or `scripts/fuzz.sh`). A failure found here gets a regression seed under
//! `tests/fuzz-seeds/<loader>/`, replayed by `tests/fuzz_seeds.rs`.
mod fuzz_common;

use fuzz_common::*;
use ltre_core::checkpoint::BertConfig;
use ltre_core::data::{read_corpus, read_cranfield, read_qrels, read_queries};
use ltre_core::manifest::Manifest;
use ltre_core::optim::{AdamW, AdamWConfig, Gradients};
use ltre_core::params::ParamStore;
use ltre_core::tokenize::{TextKind, TextTokenizer};
use ltre_core::trainer::TrainConfig;
use ndarray::ArrayD;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Value};

/// Cases per loader in the normal test run; `PROPTEST_CASES` overrides it.
const CASES: u32 = 96;

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    Config {
        cases,
        // Regressions live in the seed corpus, not in files proptest would write next to us.
        failure_persistence: None,
        ..Config::default()
    }
}

/// A byte-level mutation of a file.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, byte: u8 },
    Truncate { at: usize },
    Splice { at: usize, bytes: Vec<u8> },
    Prefix(u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 0..16)
        )
            .prop_map(|(at, bytes)| Mutation::Splice { at, bytes }),
        prop_oneof![any::<u64>(), Just(u64::MAX), Just(1 << 40), Just(0)]
            .prop_map(Mutation::Prefix),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let n = bytes.len().max(1);
        match m {
            Mutation::Flip { at, byte } => {
                if let Some(b) = bytes.get_mut(at % n) {
                    *b ^= byte | 1;
                }
            }
            Mutation::Truncate { at } => bytes.truncate(at % n),
            Mutation::Splice { at, bytes: new } => {
                let at = (at % n).min(bytes.len());
                bytes.splice(at..at, new.iter().copied());
            }
            Mutation::Prefix(len) => {
                if bytes.len() >= 8 {
                    bytes[..8].copy_from_slice(&len.to_le_bytes());
                }
            }
        }
    }
    bytes
}

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        proptest::sample::select(nasty_values()),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Replaces, removes or adds fields of `base` (top level and one level down).
fn mutate_fields(base: Value) -> impl Strategy<Value = Value> {
    let edits = proptest::collection::vec(
        (
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
            0u8..4,
            json_value(),
        ),
        1..4,
    );
    edits.prop_map(move |edits| {
        let mut v = base.clone();
        for (key, sub, op, value) in edits {
            let Some(obj) = v.as_object_mut() else { break };
            let keys: Vec<String> = obj.keys().cloned().collect();
            if keys.is_empty() {
                break;
            }
            let k = keys[key.index(keys.len())].clone();
            match op {
                0 => {
                    obj.remove(&k);
                }
                1 => {
                    obj.insert(k, value);
                }
                2 => {
                    obj.insert(format!("{k}_x"), value);
                }
                _ => {
                    // One level down, so nested objects (the tokenizer model, the manifest's
                    // architecture) are reached too.
                    if let Some(inner) = obj.get_mut(&k).and_then(Value::as_object_mut) {
                        let ik: Vec<String> = inner.keys().cloned().collect();
                        if !ik.is_empty() {
                            let ik = ik[sub.index(ik.len())].clone();
                            inner.insert(ik, value);
                        }
                    }
                }
            }
        }
        v
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn safetensors_mutations_never_panic(muts in proptest::collection::vec(mutation(), 1..4)) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "model.safetensors", &apply(valid_safetensors(), &muts));
        match ParamStore::load(&path) {
            Ok(store) => {
                for (_, t) in store.iter() {
                    prop_assert_eq!(t.len(), t.shape().iter().product::<usize>());
                }
            }
            Err(e) => assert_names_file(&e, &path),
        }
    }

    #[test]
    fn safetensors_header_claims_are_checked(
        shape in proptest::collection::vec(prop_oneof![0usize..4, Just(1 << 20), Just(1 << 40), Just(usize::MAX)], 0..4),
        end in prop_oneof![0usize..64, Just(1 << 40), Just(usize::MAX)],
        dtype in proptest::sample::select(vec!["F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "XX"]),
        data_len in 0usize..64,
    ) {
        let header = json!({"t": {"dtype": dtype, "shape": shape, "data_offsets": [0, end]}});
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "model.safetensors", &safetensors_with_header(&header, &vec![0u8; data_len]));
        match ParamStore::load(&path) {
            Ok(store) => {
                for (_, t) in store.iter() {
                    prop_assert!(t.len() * 4 <= data_len * 2);
                }
            }
            Err(e) => assert_names_file(&e, &path),
        }
    }

    #[test]
    fn safetensors_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "model.safetensors", &bytes);
        if let Err(e) = ParamStore::load(&path) {
            assert_names_file(&e, &path);
        }
    }

    #[test]
    fn config_json_fields(cfg in mutate_fields(valid_config())) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "config.json", cfg.to_string().as_bytes());
        match BertConfig::load(&path) {
            Ok(c) => {
                prop_assert!(c.hidden_size > 0 && c.num_attention_heads > 0);
                prop_assert_eq!(c.hidden_size % c.num_attention_heads, 0);
                prop_assert!(c.layer_norm_eps.is_finite() && c.layer_norm_eps > 0.0);
                // Accepted sizes are small enough to list the tensors without a huge graph.
                let tensors = c.expected_tensors().unwrap();
                prop_assert_eq!(tensors.len(), 5 + 16 * c.num_hidden_layers);
            }
            Err(e) => assert_names_file(&e, &path),
        }
    }

    #[test]
    fn config_json_bytes(muts in proptest::collection::vec(mutation(), 1..4)) {
        let dir = tempfile::tempdir().unwrap();
        let text = valid_config().to_string().into_bytes();
        // Skip the prefix mutation's meaning: config.json has no length field.
        let path = write(dir.path(), "config.json", &apply(text, &muts));
        if let Err(e) = BertConfig::load(&path) {
            assert_names_file(&e, &path);
        }
    }

    #[test]
    fn tokenizer_json(
        tok in mutate_fields(valid_tokenizer()),
        qlen in prop_oneof![0usize..4, 4usize..600, Just(usize::MAX)],
        texts in proptest::collection::vec(any::<String>(), 1..3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "tokenizer.json", tok.to_string().as_bytes());
        match TextTokenizer::from_file(&path, qlen, 16) {
            Ok(t) => {
                for kind in [TextKind::Query, TextKind::Document] {
                    if let Ok(batch) = t.tokenize(&texts, kind) {
                        prop_assert_eq!(batch.len(), texts.len());
                        prop_assert!(batch.seq_len() <= t.max_length(kind));
                    }
                }
            }
            Err(e) => assert_names_file(&e, &path),
        }
    }

    #[test]
    fn tokenizer_bytes(muts in proptest::collection::vec(mutation(), 1..3)) {
        let dir = tempfile::tempdir().unwrap();
        let text = valid_tokenizer().to_string().into_bytes();
        let path = write(dir.path(), "tokenizer.json", &apply(text, &muts));
        match TextTokenizer::from_file(&path, 8, 16) {
            Ok(t) => {
                let _ = t.tokenize(&["what is a dense vector", ""], TextKind::Query);
            }
            Err(e) => assert_names_file(&e, &path),
        }
    }

    #[test]
    fn manifest_json(m in mutate_fields(serde_json::to_value(valid_manifest()).unwrap())) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "manifest.json", m.to_string().as_bytes());
        match Manifest::load(dir.path()) {
            Ok(m) => {
                prop_assert_eq!(m.format_version, 1);
                prop_assert!(m.embedding_dim > 0);
                prop_assert!(m.query_max_length >= 2 && m.document_max_length >= 2);
                if let Some(t) = &m.train {
                    for f in [&t.file, &t.forward_file] {
                        prop_assert!(!f.contains('/') && !f.contains('\\') && f != ".." && !f.is_empty());
                    }
                }
            }
            Err(e) => assert_names_file(&e, &path),
        }
    }

    #[test]
    fn jsonl_lines(lines in proptest::collection::vec(jsonl_line(), 0..6)) {
        let dir = tempfile::tempdir().unwrap();
        let bytes = lines.concat();
        let corpus = write(dir.path(), "corpus.jsonl", &bytes);
        let queries = write(dir.path(), "queries.jsonl", &bytes);
        match read_corpus(&corpus) {
            Ok(docs) => prop_assert!(docs.iter().all(|d| !d.id.is_empty())),
            Err(e) => assert_line_error(&e, &corpus),
        }
        match read_queries(&queries) {
            Ok(qs) => prop_assert!(qs.iter().all(|q| !q.id.is_empty())),
            Err(e) => assert_line_error(&e, &queries),
        }
    }

    #[test]
    fn qrels_lines(lines in proptest::collection::vec(qrels_line(), 0..8)) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "test.tsv", &lines.concat());
        if let Err(e) = read_qrels(&path) {
            assert_line_error(&e, &path);
        }
    }

    #[test]
    fn smart_files(
        docs in proptest::collection::vec(smart_line(), 0..10),
        qry in proptest::collection::vec(smart_line(), 0..10),
    ) {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "cran.all.1400", &docs.concat());
        write(dir.path(), "cran.qry", &qry.concat());
        write(dir.path(), "cranqrel", b"1 1 2\n");
        if let Err(e) = read_cranfield(dir.path()) {
            let msg = e.to_string();
            prop_assert!(msg.contains("cran.all.1400") || msg.contains("cran.qry"), "{}", msg);
        }
    }

    #[test]
    fn train_config_toml(entries in proptest::collection::vec(train_entry(), 0..6)) {
        let dir = tempfile::tempdir().unwrap();
        let (top, opt): (Vec<_>, Vec<_>) = entries.into_iter().partition(|(o, _, _)| !o);
        let mut text: String = top.iter().map(|(_, k, v)| format!("{k} = {v}\n")).collect();
        text.push_str("[optimizer]\n");
        text.extend(opt.iter().map(|(_, k, v)| format!("{k} = {v}\n")));
        let path = write(dir.path(), "train.toml", text.as_bytes());
        check_train_config(&path)?;
    }

    #[test]
    fn train_config_json(cfg in mutate_fields(serde_json::to_value(TrainConfig::default()).unwrap())) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "train.json", cfg.to_string().as_bytes());
        check_train_config(&path)?;
    }

    #[test]
    fn optimizer_state(
        m_shape in proptest::collection::vec(0usize..4, 0..3),
        v_shape in proptest::collection::vec(0usize..4, 0..3),
        v_name in proptest::sample::select(vec!["v.w", "v.x", "m.w"]),
        step in prop_oneof![Just(f32::NAN), Just(f32::INFINITY), Just(-1.0f32), Just(1e30), Just(16_777_217.0), 0.0f32..100.0],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("optimizer.safetensors");
        let mut state = ParamStore::new();
        state.insert("m.w", ArrayD::zeros(ndarray::IxDyn(&m_shape)));
        state.insert(v_name, ArrayD::zeros(ndarray::IxDyn(&v_shape)));
        state.insert("step", ArrayD::from_elem(ndarray::IxDyn(&[1]), step));
        state.save(&path).unwrap();
        match AdamW::load(&path, AdamWConfig::default()) {
            Ok(mut opt) => {
                let mut params = ParamStore::new();
                params.insert("w", ArrayD::zeros(ndarray::IxDyn(&[2])));
                let mut grads = Gradients::new();
                grads.insert("w".into(), ArrayD::from_elem(ndarray::IxDyn(&[2]), 0.1));
                // A state that does not fit the parameters is refused here, never a panic.
                let _ = opt.step(&mut params, &grads);
            }
            Err(e) => assert_names_file(&e, &path),
        }
    }
}

fn check_train_config(path: &std::path::Path) -> Result<(), TestCaseError> {
    match TrainConfig::load(path) {
        Ok(c) => {
            prop_assert!(c.validate().is_ok());
            prop_assert!(c.optimizer.eps.is_finite() && c.optimizer.weight_decay.is_finite());
        }
        Err(e) => assert_names_file(&e, path),
    }
    Ok(())
}

fn assert_line_error(e: &ltre_core::Error, path: &std::path::Path) {
    assert_names_file(e, path);
    assert!(e.to_string().contains("line "), "no line number: {e}");
}

/// A line of a JSONL file: often a plausible object, sometimes garbage or invalid UTF-8.
fn jsonl_line() -> impl Strategy<Value = Vec<u8>> {
    let id = prop_oneof![
        Just(json!("d1")),
        Just(json!("")),
        Just(json!(7)),
        Just(json!(1.5)),
        json_value()
    ];
    let obj = (id, json_value(), prop::option::of(json_value())).prop_map(|(id, text, title)| {
        let mut o = json!({"_id": id, "text": text});
        if let Some(t) = title {
            o["title"] = t;
        }
        o.to_string().into_bytes()
    });
    let garbage = proptest::collection::vec(any::<u8>(), 0..40);
    let deep = (1usize..400).prop_map(|n| "[".repeat(n).into_bytes());
    (
        prop_oneof![4 => obj, 1 => garbage, 1 => deep],
        prop_oneof![Just("\n"), Just("\r\n"), Just("")],
    )
        .prop_map(|(mut l, end)| {
            l.extend_from_slice(end.as_bytes());
            l
        })
}

fn qrels_line() -> impl Strategy<Value = Vec<u8>> {
    let col = prop_oneof![
        Just("query-id".to_string()),
        Just("q1".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("99999999999".to_string()),
        Just("+2".to_string()),
        "[^\\s]{1,6}",
    ];
    let cols = proptest::collection::vec(col, 0..6)
        .prop_map(|c| format!("{}\n", c.join("\t")).into_bytes());
    let garbage = proptest::collection::vec(any::<u8>(), 0..24);
    prop_oneof![5 => cols, 1 => garbage]
}

fn smart_line() -> impl Strategy<Value = Vec<u8>> {
    let tag = prop_oneof![
        Just(".I 1".to_string()),
        Just(".I".to_string()),
        Just(".I 001".to_string()),
        Just(".W".to_string()),
        Just(".T".to_string()),
        Just(".".to_string()),
        Just(".é".to_string()),
        Just("..".to_string()),
        Just("".to_string()),
        ".{0,10}",
    ];
    let garbage = proptest::collection::vec(any::<u8>(), 0..12);
    prop_oneof![
        6 => tag.prop_map(|t| format!("{t}\n").into_bytes()),
        1 => garbage
    ]
}

/// `(in [optimizer], key, TOML value)`, keys from the real schema plus an unknown one.
fn train_entry() -> impl Strategy<Value = (bool, String, String)> {
    let top = [
        "seed",
        "epochs",
        "batch_size",
        "objective",
        "top_n",
        "rr_cut",
        "temperature",
        "negatives",
        "index",
        "nprobe",
        "warmup_ratio",
        "checkpoint_every",
        "dev_fraction",
        "max_steps",
        "bogus",
    ];
    let opt = [
        "lr",
        "beta1",
        "beta2",
        "eps",
        "weight_decay",
        "max_grad_norm",
        "warmup_steps",
        "total_steps",
    ];
    let value = prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("1".to_string()),
        Just("9223372036854775807".to_string()),
        Just("18446744073709551615".to_string()),
        Just("nan".to_string()),
        Just("inf".to_string()),
        Just("-inf".to_string()),
        Just("1e40".to_string()),
        Just("0.5".to_string()),
        Just("\"ltre\"".to_string()),
        Just("\"in_batch\"".to_string()),
        Just("\"\"".to_string()),
        Just("[]".to_string()),
        Just("true".to_string()),
        any::<f32>().prop_map(|f| format!("{f:?}")),
        any::<i64>().prop_map(|i| i.to_string()),
    ];
    (
        any::<bool>(),
        proptest::sample::select(top.to_vec()),
        proptest::sample::select(opt.to_vec()),
        value,
    )
        .prop_map(|(in_opt, t, o, v)| (in_opt, if in_opt { o } else { t }.to_string(), v))
}

/// A tiny valid checkpoint directory, written once and copied per case.
fn tiny_checkpoint() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let spec = ltre_core::testing::TinyBertSpec {
            hidden: 8,
            layers: 1,
            intermediate: 16,
            max_position: 16,
            ..Default::default()
        };
        ltre_core::testing::write_tiny_bert(dir.path(), &spec).unwrap();
        dir
    })
    .path()
}

/// The tiny checkpoint's `config.json`, so that some edits still load.
fn tiny_config() -> Value {
    let text = std::fs::read(tiny_checkpoint().join("config.json")).unwrap();
    serde_json::from_slice(&text).unwrap()
}

/// Which file of a checkpoint directory a case corrupts.
#[derive(Debug, Clone)]
enum CheckpointEdit {
    Config(Value),
    Weights(Vec<Mutation>),
    Modules(Value),
    Pooling(Value),
    SentenceBert(Value),
}

fn checkpoint_edit() -> impl Strategy<Value = CheckpointEdit> {
    let st_module = (
        json_value(),
        proptest::sample::select(vec![
            "sentence_transformers.models.Pooling",
            "sentence_transformers.models.Normalize",
            "x",
        ]),
    )
        .prop_map(|(path, kind)| json!({"idx": 0, "name": "1", "path": path, "type": kind}));
    prop_oneof![
        mutate_fields(tiny_config()).prop_map(CheckpointEdit::Config),
        proptest::collection::vec(mutation(), 1..3).prop_map(CheckpointEdit::Weights),
        prop_oneof![
            json_value(),
            proptest::collection::vec(st_module, 0..3).prop_map(Value::from),
            Just(json!([{"path": "../..", "type": "sentence_transformers.models.Pooling"}])),
        ]
        .prop_map(CheckpointEdit::Modules),
        mutate_fields(
            json!({"pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true,
            "pooling_mode_max_tokens": false, "pooling_mode_mean_sqrt_len_tokens": false})
        )
        .prop_map(CheckpointEdit::Pooling),
        json_value().prop_map(CheckpointEdit::SentenceBert),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn checkpoint_directory(edit in checkpoint_edit()) {
        let src = tiny_checkpoint();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
        for f in ["config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json"] {
            std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
        }
        let json_to = |name: &str, v: &Value| write(dir.path(), name, v.to_string().as_bytes());
        match &edit {
            CheckpointEdit::Config(v) => { json_to("config.json", v); }
            CheckpointEdit::Weights(m) => {
                let bytes = apply(std::fs::read(src.join("model.safetensors")).unwrap(), m);
                write(dir.path(), "model.safetensors", &bytes);
            }
            CheckpointEdit::Modules(v) => { json_to("modules.json", v); }
            CheckpointEdit::Pooling(v) => { json_to("1_Pooling/config.json", v); }
            CheckpointEdit::SentenceBert(v) => { json_to("sentence_bert_config.json", v); }
        }
        if let Err(e) = ltre_core::checkpoint::Checkpoint::load(dir.path()) {
            let msg = e.to_string();
            prop_assert!(msg.contains(&dir.path().display().to_string()), "{}", msg);
        }
    }
}

#[test]
fn safetensors_terabyte_header_length_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for claimed in [1u64 << 40, u64::MAX, (1 << 27) + 1] {
        let mut bytes = valid_safetensors();
        bytes[..8].copy_from_slice(&claimed.to_le_bytes());
        let path = write(dir.path(), "model.safetensors", &bytes);
        let err = ParamStore::load(&path).unwrap_err();
        assert_names_file(&err, &path);
    }
}

#[test]
fn config_sizes_that_would_allocate_terabytes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (field, value) in [
        ("vocab_size", json!(1u64 << 40)),
        ("hidden_size", json!(1u64 << 40)),
        ("num_hidden_layers", json!(1u64 << 40)),
        ("intermediate_size", json!(1u64 << 40)),
        ("max_position_embeddings", json!(1u64 << 40)),
        ("type_vocab_size", json!(1u64 << 40)),
        ("hidden_size", json!(0)),
        ("num_attention_heads", json!(3)),
        ("layer_norm_eps", json!(-1.0)),
        ("layer_norm_eps", json!(0.0)),
        ("intermediate_size", json!(-16)),
        ("hidden_size", json!("8")),
        ("vocab_size", json!(16.5)),
    ] {
        let mut cfg = valid_config();
        cfg[field] = value.clone();
        let path = write(dir.path(), "config.json", cfg.to_string().as_bytes());
        let err = BertConfig::load(&path).expect_err(&format!("{field} = {value}"));
        let msg = err.to_string();
        assert!(msg.contains("config.json") && msg.contains(field), "{msg}");
    }
}

#[test]
fn huge_jsonl_line_is_an_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"{\"_id\": \"a\", \"text\": \"x\"}\n{\"_id\": \"b\", \"text\": \"".to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 4 << 20));
    bytes.extend_from_slice(b"\n");
    let path = write(dir.path(), "corpus.jsonl", &bytes);
    let err = read_corpus(&path).unwrap_err();
    assert_line_error(&err, &path);
    assert!(err.to_string().contains("line 2"), "{err}");
}
