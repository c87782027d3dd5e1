//! `manifest.json`: what an exported model directory holds and how to use it.
//!
//! Written by [`crate::export`], read by [`crate::Encoder`] and the trainer. Every exported
//! directory holds `manifest.json`, `model.onnx` (inference), `tokenizer.json`, `config.json`
//! and `model.safetensors` (the parameters, Hugging Face names, the source of truth for
//! training), and with `--train` also `train.onnx`, `train_forward.onnx` and `train_backward.onnx`.
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// File name of the manifest inside a model directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// File name of the inference graph.
pub const INFERENCE_GRAPH_FILE: &str = "model.onnx";
/// File name of the query-tower training (gradient) graph.
pub const TRAIN_GRAPH_FILE: &str = "train.onnx";
/// File name of the forward-only graph with parameters as inputs.
pub const TRAIN_FORWARD_GRAPH_FILE: &str = "train_forward.onnx";
/// File name of the backward-only graph: saved activations and `embedding_grad` in, gradients
/// out.
pub const TRAIN_BACKWARD_GRAPH_FILE: &str = "train_backward.onnx";
/// File name of the tokenizer.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// File name of the parameters (safetensors, Hugging Face tensor names).
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the Hugging Face config copied next to the weights.
pub const CONFIG_FILE: &str = "config.json";

/// The `format_version` this ltre writes and reads.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

/// A bare file name: no separator, not empty, not `.` or `..`.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// Input and output names shared by every graph ltre writes.
pub mod io_names {
    /// Token ids, int64 `[batch, seq]`.
    pub const INPUT_IDS: &str = "input_ids";
    /// Attention mask (1 = token, 0 = padding), int64 `[batch, seq]`.
    pub const ATTENTION_MASK: &str = "attention_mask";
    /// Token type ids, int64 `[batch, seq]`.
    pub const TOKEN_TYPE_IDS: &str = "token_type_ids";
    /// Pooled (optionally L2-normalised) embedding, float `[batch, dim]`.
    pub const EMBEDDING: &str = "embedding";
    /// Training graph input: upstream gradient dL/d(embedding), float `[batch, dim]`.
    pub const EMBEDDING_GRAD: &str = "embedding_grad";
    /// Training graph output prefix: `grad.<hf tensor name>` is dL/d(parameter).
    pub const GRAD_PREFIX: &str = "grad.";
    /// Training graph output for sparse word-embedding gradients: rows of dL/d(word_embeddings)
    /// for each `input_ids` position, float `[batch, seq, hidden]`, scattered in Rust.
    pub const WORD_EMBEDDING_ROW_GRAD: &str = "grad_rows.word_embeddings";
    /// Prefix of the activations `train_forward.onnx` saves for `train_backward.onnx`
    /// (`saved.0`, `saved.1`, ...; listed in [`super::TrainGraphInfo::saved`]).
    pub const SAVED_PREFIX: &str = "saved.";
}

/// Pooling of the token states into one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Pooling {
    /// Masked mean over non-padding tokens.
    Mean,
    /// The `[CLS]` (first) token's state.
    Cls,
}

/// How the word-embedding gradient is produced by the training graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum WordEmbeddingGrad {
    /// Word embeddings are frozen: no gradient output.
    Frozen,
    /// The graph returns per-token gradient rows; Rust scatters them into the table.
    #[default]
    Sparse,
}

/// Description of the training graph, present when exported with `--train`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainGraphInfo {
    /// File name of the training graph (forward + backward) inside the model directory.
    pub file: String,
    /// File name of the forward-only graph that takes the parameters as inputs
    /// (used to embed queries with the current, not yet exported, parameters).
    pub forward_file: String,
    /// Trainable parameters, in graph-input order (Hugging Face tensor names).
    pub parameters: Vec<String>,
    /// How the word-embedding gradient is produced.
    pub word_embeddings: WordEmbeddingGrad,
    /// File name of the backward-only graph, if exported (older exports have none). It takes
    /// the [`saved`](TrainGraphInfo::saved) outputs of `forward_file`, the parameters and
    /// token inputs it uses and `embedding_grad`, and returns the gradients `file` returns,
    /// so a step runs the forward pass once.
    #[serde(default)]
    pub backward_file: Option<String>,
    /// Outputs of `forward_file` besides `embedding` that `backward_file` takes as inputs of
    /// the same names (may include `embedding` itself).
    #[serde(default)]
    pub saved: Vec<String>,
}

/// Architecture hyper-parameters copied from `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    /// Always `"bert"` for now.
    pub model_type: String,
    /// Hidden size.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Number of attention heads.
    pub num_attention_heads: usize,
    /// Feed-forward inner size.
    pub intermediate_size: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Longest position the checkpoint supports.
    pub max_position_embeddings: usize,
    /// Number of token types.
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
}

/// The manifest of an exported model directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version (1).
    pub format_version: u32,
    /// Architecture from `config.json`.
    pub architecture: Architecture,
    /// Output embedding dimension.
    pub embedding_dim: usize,
    /// Pooling of token states.
    pub pooling: Pooling,
    /// Whether the embedding is L2-normalised inside the graph.
    pub normalize: bool,
    /// Truncation length for queries (tokens, specials included).
    pub query_max_length: usize,
    /// Truncation length for documents (tokens, specials included).
    pub document_max_length: usize,
    /// ONNX opset of the graphs (17).
    pub opset: i64,
    /// sha256 of `model.safetensors` as exported (hex).
    pub weights_sha256: String,
    /// Where the weights came from (source directory, or a parent encoder id).
    pub source: String,
    /// ONNX Runtime graph optimisation level the encoder sessions use, and fused ops the graph uses.
    pub graph_optimization: String,
    /// Training graph, if exported.
    #[serde(default)]
    pub train: Option<TrainGraphInfo>,
}

/// A short human-readable summary (architecture, embedding, truncation, training graphs), as
/// `ltre-cli export-onnx` prints it.
impl std::fmt::Display for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = &self.architecture;
        write!(
            f,
            "  bert: {} layers, hidden {}, {} heads, vocab {}\n  embedding: dim {}, {:?} pooling, normalize {}\n  max length: query {}, document {}",
            a.num_hidden_layers,
            a.hidden_size,
            a.num_attention_heads,
            a.vocab_size,
            self.embedding_dim,
            self.pooling,
            self.normalize,
            self.query_max_length,
            self.document_max_length
        )?;
        if let Some(t) = &self.train {
            write!(
                f,
                "\n  training: {}, {} + {} ({} parameters, word embeddings {:?})",
                t.file,
                t.forward_file,
                t.backward_file.as_deref().unwrap_or("-"),
                t.parameters.len(),
                t.word_embeddings
            )?;
        }
        Ok(())
    }
}

/// The default exported model of `ltre-cli embed` (`.ltre/models/all-MiniLM-L6-v2-onnx`) under
/// the nearest ancestor of `from` that holds `.ltre/`; the error says how to create it.
pub fn default_model_dir(from: &Path) -> Result<std::path::PathBuf> {
    const DEFAULT_MODEL: &str = ".ltre/models/all-MiniLM-L6-v2-onnx";
    let Some(root) = from.ancestors().find(|d| d.join(".ltre").is_dir()) else {
        return Err(Error::Invalid(format!(
            "no model given and no .ltre/ directory in {} or its parents; pass a model directory (an `ltre-cli export-onnx` output), or run from inside the ltre repository after `bash scripts/setup.sh`",
            from.display()
        )));
    };
    let dir = root.join(DEFAULT_MODEL);
    if !dir.join(MANIFEST_FILE).is_file() {
        let models = root.join(".ltre").join("models");
        return Err(Error::Invalid(format!(
            "no model given and the default model {} does not exist; create it with `ltre-cli export-onnx --model {} --out {}` (the checkpoint comes from `bash scripts/setup.sh`)",
            dir.display(),
            models.join("all-MiniLM-L6-v2").display(),
            dir.display()
        )));
    }
    Ok(dir)
}

impl Manifest {
    /// Reads `manifest.json` from a model directory.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::bad_file(
                    &path,
                    "no manifest: this is not an exported model directory; create one with `ltre-cli export-onnx --model CHECKPOINT --out DIR`",
                )
            } else {
                Error::io(&path, e)
            }
        })?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(&path, format!("invalid manifest: {e}")))?;
        manifest
            .validate()
            .map_err(|m| Error::bad_file(&path, format!("invalid manifest: {m}")))?;
        Ok(manifest)
    }

    /// What [`crate::export`] guarantees and the encoder and trainer rely on; a hand-edited or
    /// newer manifest that breaks it is refused rather than misread.
    fn validate(&self) -> std::result::Result<(), String> {
        if self.format_version != MANIFEST_FORMAT_VERSION {
            return Err(format!(
                "field `format_version`: {} is not supported (this ltre reads {MANIFEST_FORMAT_VERSION}); re-export the model",
                self.format_version
            ));
        }
        if self.embedding_dim == 0 {
            return Err("field `embedding_dim`: must be positive".into());
        }
        let positions = self.architecture.max_position_embeddings;
        for (field, n) in [
            ("query_max_length", self.query_max_length),
            ("document_max_length", self.document_max_length),
        ] {
            if n < 2 || n > positions {
                return Err(format!(
                    "field `{field}`: {n} must lie in [2, {positions}] (architecture.max_position_embeddings)"
                ));
            }
        }
        if let Some(train) = &self.train {
            // Graph files are opened as `dir.join(name)`: a path here would leave the directory.
            let names = [
                ("train.file", Some(&train.file)),
                ("train.forward_file", Some(&train.forward_file)),
                ("train.backward_file", train.backward_file.as_ref()),
            ];
            for (field, name) in names {
                if let Some(name) = name.filter(|n| !is_plain_file_name(n)) {
                    return Err(format!(
                        "field `{field}`: \"{name}\" is not a file name inside the model directory"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Writes `manifest.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Invalid(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
    }
}
