//! Test fixtures: a tiny random BERT checkpoint written to disk in Hugging Face layout
//! ([`write_tiny_bert`]), and exported ([`export_tiny_model`]).
//!
//! Used by ltre's own tests and available to downstream tests that need a real (if
//! meaningless) encoder without downloading one. Compiled for ltre-core's own tests and with
//! the `testing` feature, which downstream crates enable in their dev-dependencies:
//! `ltre-core = { workspace = true, features = ["testing"] }`.
//!
//! ```
//! use ltre_core::testing::{write_tiny_bert, TinyBertSpec};
//!
//! let dir = tempfile::tempdir().unwrap();
//! write_tiny_bert(dir.path(), &TinyBertSpec::default()).unwrap();
//! let ckpt = ltre_core::checkpoint::Checkpoint::load(dir.path()).unwrap();
//! assert_eq!(ckpt.config.hidden_size, 32);
//! ```
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::export::{export_checkpoint, ExportOptions};
use crate::manifest::WordEmbeddingGrad;
use crate::params::ParamStore;
use crate::{Error, Result};

/// Words in the tiny vocabulary (besides specials, single letters and digits).
pub const TINY_WORDS: &[&str] = &[
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "it",
    "that",
    "for",
    "on",
    "with",
    "as",
    "was",
    "by",
    "at",
    "from",
    "this",
    "be",
    "are",
    "or",
    "an",
    "not",
    "which",
    "cell",
    "cells",
    "protein",
    "gene",
    "cancer",
    "patients",
    "study",
    "effect",
    "treatment",
    "risk",
    "blood",
    "brain",
    "virus",
    "dog",
    "cat",
    "search",
    "query",
    "document",
    "retrieval",
    "learning",
    "model",
    "dense",
    "vector",
    "index",
    "fast",
    "slow",
    "what",
    "how",
    "does",
];

/// Shape and seed of a tiny random BERT.
#[derive(Debug, Clone, PartialEq)]
pub struct TinyBertSpec {
    /// Hidden size.
    pub hidden: usize,
    /// Attention heads (must divide `hidden`).
    pub heads: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Feed-forward size.
    pub intermediate: usize,
    /// Position-table rows.
    pub max_position: usize,
    /// Token-type rows.
    pub type_vocab: usize,
    /// Multiplies the default weight scale; larger values make the nonlinearities (softmax,
    /// GELU, LayerNorm) work harder, which gradient checks want.
    pub weight_scale: f32,
    /// RNG seed; the same spec always gives the same checkpoint.
    pub seed: u64,
}

impl Default for TinyBertSpec {
    fn default() -> Self {
        TinyBertSpec {
            hidden: 32,
            heads: 2,
            layers: 2,
            intermediate: 64,
            max_position: 64,
            type_vocab: 2,
            weight_scale: 1.0,
            seed: 42,
        }
    }
}

/// The tiny WordPiece vocabulary: `[PAD]`=0, `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]`, punctuation,
/// digits, letters, `##` continuation letters and digits, then [`TINY_WORDS`].
pub fn tiny_vocab() -> Vec<String> {
    let mut v: Vec<String> = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "?", "!", "-", "'",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let singles: Vec<char> = ('0'..='9').chain('a'..='z').collect();
    v.extend(singles.iter().map(|c| c.to_string()));
    v.extend(singles.iter().map(|c| format!("##{c}")));
    v.extend(TINY_WORDS.iter().map(|w| w.to_string()));
    v
}

/// The tiny checkpoint's parameters, seeded.
pub fn tiny_params(spec: &TinyBertSpec, vocab_size: usize) -> Result<ParamStore> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut store = ParamStore::new();
    let uniform = |shape: &[usize], scale: f32, centre: f32, rng: &mut StdRng| {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| centre + scale * (rng.random::<f32>() * 2.0 - 1.0))
            .collect();
        ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| Error::Invalid(e.to_string()))
    };
    let s = spec.weight_scale;
    // Uniform on [-a, a] has variance a^2/3; a = sqrt(3/fan_in) keeps activations near unit scale.
    let w = |fan_in: usize| s * (3.0 / fan_in as f32).sqrt();
    let config = tiny_config(spec, vocab_size)?;
    for (name, shape) in config.expected_tensors()? {
        let t = if name.ends_with("LayerNorm.weight") {
            uniform(&shape, 0.2, 1.0, &mut rng)
        } else if name.ends_with("LayerNorm.bias") || name.ends_with(".bias") {
            uniform(&shape, 0.2, 0.0, &mut rng)
        } else if name.starts_with("embeddings.") {
            uniform(&shape, 1.0, 0.0, &mut rng)
        } else {
            uniform(&shape, w(shape.last().copied().unwrap_or(1)), 0.0, &mut rng)
        }?;
        store.insert(&name, t);
    }
    Ok(store)
}

fn tiny_config(spec: &TinyBertSpec, vocab_size: usize) -> Result<crate::checkpoint::BertConfig> {
    serde_json::from_value(tiny_config_json(spec, vocab_size))
        .map_err(|e| Error::Invalid(format!("tiny config: {e}")))
}

fn tiny_config_json(spec: &TinyBertSpec, vocab_size: usize) -> serde_json::Value {
    json!({
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab_size,
        "hidden_size": spec.hidden,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "intermediate_size": spec.intermediate,
        "max_position_embeddings": spec.max_position,
        "type_vocab_size": spec.type_vocab,
        "layer_norm_eps": 1e-12,
        "hidden_act": "gelu",
        "position_embedding_type": "absolute",
        "pad_token_id": 0
    })
}

/// A Hugging Face `tokenizer.json` for `vocab` (BERT-style WordPiece, lowercasing, `[CLS] $A [SEP]`).
pub fn tokenizer_json(vocab: &[String]) -> serde_json::Value {
    let id = |t: &str| vocab.iter().position(|v| v == t).unwrap_or(1);
    let added: Vec<serde_json::Value> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|t| {
            json!({"id": id(t), "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let vocab_map: serde_json::Map<String, serde_json::Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [id("[CLS]")], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [id("[SEP]")], "tokens": ["[SEP]"]}
            }
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab_map}
    })
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Invalid(e.to_string()))?;
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Writes a tiny random BERT checkpoint into `dir` (created if needed): `config.json`,
/// `model.safetensors`, `tokenizer.json` and `1_Pooling/config.json` (mean pooling).
pub fn write_tiny_bert(dir: &Path, spec: &TinyBertSpec) -> Result<()> {
    if spec.heads == 0 || !spec.hidden.is_multiple_of(spec.heads) {
        return Err(Error::Invalid(format!(
            "heads {} must divide hidden {}",
            spec.heads, spec.hidden
        )));
    }
    std::fs::create_dir_all(dir.join("1_Pooling")).map_err(|e| Error::io(dir, e))?;
    let vocab = tiny_vocab();
    write_json(
        &dir.join("config.json"),
        &tiny_config_json(spec, vocab.len()),
    )?;
    tiny_params(spec, vocab.len())?.save(&dir.join("model.safetensors"))?;
    write_json(&dir.join("tokenizer.json"), &tokenizer_json(&vocab))?;
    write_json(
        &dir.join("1_Pooling").join("config.json"),
        &json!({"word_embedding_dimension": spec.hidden, "pooling_mode_cls_token": false,
                "pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": false,
                "pooling_mode_mean_sqrt_len_tokens": false}),
    )
}

/// Writes a tiny random BERT checkpoint (seed `seed`) under `root/ckpt-<seed>` and exports it
/// to `root/model-<seed>` with [`tiny_export_options`], returning the export directory: the
/// shared fixture of every test that needs a working encoder without a download.
pub fn export_tiny_model(root: &Path, seed: u64, train: bool) -> Result<PathBuf> {
    let spec = TinyBertSpec {
        seed,
        ..Default::default()
    };
    export_tiny_model_with(root, &spec, &tiny_export_options(train))
}

/// The export options of [`export_tiny_model`]: L2-normalised mean pooling, queries truncated
/// at 16 tokens, documents at 32, and the training graphs (default word-embedding gradient)
/// when `train`. Tests that need other settings start from these.
pub fn tiny_export_options(train: bool) -> ExportOptions {
    ExportOptions {
        normalize: Some(true),
        query_max_length: Some(16),
        document_max_length: Some(32),
        train: train.then(WordEmbeddingGrad::default),
        ..Default::default()
    }
}

/// [`export_tiny_model`] with a chosen checkpoint `spec` and export `options`: writes
/// `root/ckpt-<seed>` and exports it to `root/model-<seed>` (replacing an earlier export).
pub fn export_tiny_model_with(
    root: &Path,
    spec: &TinyBertSpec,
    options: &ExportOptions,
) -> Result<PathBuf> {
    let ckpt = root.join(format!("ckpt-{}", spec.seed));
    write_tiny_bert(&ckpt, spec)?;
    let out = root.join(format!("model-{}", spec.seed));
    export_checkpoint(&ckpt, &out, options)?;
    Ok(out)
}

/// A six-document corpus `(id, title, text)` whose words are all in the tiny vocabulary: the
/// shared fixture of the index, search and CLI tests.
pub const TINY_CORPUS: &[(&str, &str, &str)] = &[
    (
        "d1",
        "the quick fox",
        "the quick brown fox jumps over the lazy dog",
    ),
    ("d2", "cats", "a cat sleeps all day"),
    ("d3", "rivers", "water flows down the river to the sea"),
    ("d4", "fox dens", "a fox digs a den under the tree"),
    ("d5", "bread", "flour water and salt make bread"),
    ("d6", "stars", "the night sky is full of stars"),
];

/// Writes [`TINY_CORPUS`] to `path` as a BEIR `corpus.jsonl`.
pub fn write_tiny_corpus(path: &Path) -> Result<()> {
    let lines: Vec<String> = TINY_CORPUS
        .iter()
        .map(|(id, title, text)| json!({"_id": id, "title": title, "text": text}).to_string())
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").map_err(|e| Error::io(path, e))
}

/// A synthetic judged collection over [`TINY_WORDS`], as BEIR file contents: the shared
/// fixture of the training, feedback and CLI tests.
#[derive(Debug, Clone)]
pub struct TinyJudged {
    /// `corpus.jsonl`: documents `d0..` of eight seeded words, titled by the first.
    pub corpus: String,
    /// `queries.jsonl`: query `qN` is two words of its target document.
    pub queries: String,
    /// `qrels.tsv` with its header line.
    pub qrels: String,
}

/// [`TinyJudged`] with `docs` documents and `queries` queries (seeded by `seed`): query `q`
/// is the words at `words` of document `d = (q * stride) % docs`, and `judge(q, d)` gives its
/// qrels lines (without the header).
pub fn tiny_judged(
    docs: usize,
    queries: usize,
    seed: u64,
    stride: usize,
    words: [usize; 2],
    judge: impl Fn(usize, usize) -> String,
) -> TinyJudged {
    // A fixed linear congruential generator: the collections must not change with a crate's
    // version.
    let mut state = seed;
    let mut next = |n: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % n.max(1)
    };
    let docs: Vec<Vec<&str>> = (0..docs.max(1))
        .map(|_| (0..8).map(|_| TINY_WORDS[next(TINY_WORDS.len())]).collect())
        .collect();
    let mut out = TinyJudged {
        corpus: String::new(),
        queries: String::new(),
        qrels: String::from("query-id\tcorpus-id\tscore\n"),
    };
    for (d, w) in docs.iter().enumerate() {
        out.corpus +=
            &json!({"_id": format!("d{d}"), "title": w[0], "text": w.join(" ")}).to_string();
        out.corpus.push('\n');
    }
    for q in 0..queries {
        let d = (q * stride) % docs.len();
        let text = format!("{} {}", docs[d][words[0] % 8], docs[d][words[1] % 8]);
        out.queries += &json!({"_id": format!("q{q}"), "text": text}).to_string();
        out.queries.push('\n');
        out.qrels += &judge(q, d);
    }
    out
}

/// SplitMix64: a seeded pseudo-random generator without a dependency, so a failing
/// fault-injection trial replays from its seed.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_tokenizer_loads_and_tokenizes() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_bert(dir.path(), &TinyBertSpec::default()).unwrap();
        let tok = tokenizers::Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
        let enc = tok.encode("The dog, xyz!", true).unwrap();
        let toks = enc.get_tokens();
        assert_eq!(toks.first().map(String::as_str), Some("[CLS]"));
        assert_eq!(toks.last().map(String::as_str), Some("[SEP]"));
        assert!(toks.contains(&"dog".to_string()));
        assert!(toks.contains(&"##y".to_string()), "{toks:?}");
        assert!(!enc.get_ids().contains(&1), "no [UNK] expected: {toks:?}");
    }
}
