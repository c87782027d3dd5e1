//! Reads a Hugging Face BERT checkpoint directory: `config.json`, `model.safetensors`, and the
//! sentence-transformers files that say how to pool and normalise.
//!
//! Loading validates everything the exporter relies on, so later stages never meet a missing
//! or misshapen tensor: errors name the file, the field or tensor, and what was expected.
//!
//! ```no_run
//! use ltre_core::checkpoint::Checkpoint;
//!
//! let ckpt = Checkpoint::load(".ltre/models/all-MiniLM-L6-v2".as_ref())?;
//! assert_eq!(ckpt.config.hidden_size, 384);
//! assert!(ckpt.params.get("encoder.layer.5.output.dense.weight").is_some());
//! # Ok::<(), ltre_core::Error>(())
//! ```
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bert::BertModel;
use crate::manifest::{Architecture, Pooling, CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE};
use crate::params::ParamStore;
use crate::{Error, Result};

/// Largest `vocab_size` accepted (real BERTs: 30k to 250k).
pub const MAX_VOCAB_SIZE: usize = 1 << 24;
/// Largest `hidden_size` accepted.
pub const MAX_HIDDEN_SIZE: usize = 1 << 15;
/// Largest `num_hidden_layers` accepted.
pub const MAX_LAYERS: usize = 1 << 9;
/// Largest `intermediate_size` accepted.
pub const MAX_INTERMEDIATE_SIZE: usize = 1 << 17;
/// Largest `max_position_embeddings` accepted.
pub const MAX_POSITIONS: usize = 1 << 20;
/// Largest `type_vocab_size` accepted.
pub const MAX_TYPE_VOCAB_SIZE: usize = 1 << 16;
/// Largest total parameter count accepted (64 GiB of f32).
pub const MAX_PARAMETERS: usize = 1 << 34;

/// The integer size fields of `config.json`.
const SIZE_FIELDS: [&str; 7] = [
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
];

/// Model types the exporter understands.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["bert"];

fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_hidden_act() -> String {
    "gelu".into()
}

/// The fields of a Hugging Face `config.json` that define a BERT encoder. Other fields are
/// kept in `extra` so the config round-trips when re-exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Must be `"bert"`.
    pub model_type: String,
    /// Vocabulary size (rows of the word-embedding table).
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Number of attention heads (must divide `hidden_size`).
    pub num_attention_heads: usize,
    /// Feed-forward inner size.
    pub intermediate_size: usize,
    /// Rows of the position-embedding table.
    pub max_position_embeddings: usize,
    /// Rows of the token-type table.
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Activation; only `"gelu"` (the exact erf form) is supported.
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    /// Every other field of `config.json`, preserved as is.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl BertConfig {
    /// Reads and validates `config.json`.
    pub fn load(path: &Path) -> Result<BertConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text, path)
    }

    /// Parses and validates `config.json` contents; `path` is used in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<BertConfig> {
        let raw: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::bad_file(path, format!("invalid JSON: {e}")))?;
        // Check the architecture first so a GPT-2 config says "unsupported model", not
        // "missing field hidden_size".
        match raw.get("model_type").and_then(|v| v.as_str()) {
            Some(t) if SUPPORTED_MODEL_TYPES.contains(&t) => {}
            Some(t) => {
                return Err(Error::Checkpoint {
                    path: path.into(),
                    message: format!(
                        "field `model_type` is \"{t}\": ltre exports BERT encoders only (supported model_type: {}; \
                         this covers BERT, MiniLM, BGE, E5 and other BertModel checkpoints)",
                        SUPPORTED_MODEL_TYPES.join(", ")
                    ),
                })
            }
            None => {
                return Err(Error::bad_file(
                    path,
                    format!("missing string field `model_type` (expected one of: {})", SUPPORTED_MODEL_TYPES.join(", ")),
                ))
            }
        }
        // serde's own message for a mistyped field ("invalid type: string, expected usize")
        // does not say which field.
        for field in SIZE_FIELDS {
            if let Some(v) = raw.get(field).filter(|v| !v.is_u64()) {
                return Err(Error::bad_file(
                    path,
                    format!("field `{field}`: expected a positive integer, found {v}"),
                ));
            }
        }
        let config: BertConfig = serde_json::from_value(raw).map_err(|e| {
            Error::bad_file(
                path,
                format!("{e} (a Hugging Face BERT config.json is expected)"),
            )
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |field: &str, msg: String| {
            Err(Error::bad_file(path, format!("field `{field}`: {msg}")))
        };
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v == 0 {
                return bad(field, "must be positive".into());
            }
        }
        // Sizes are shapes the exporter and trainer allocate from: refuse absurd ones here, by
        // field, before anything is sized by them (the caps are far above any published BERT).
        for (field, v, cap) in [
            ("vocab_size", self.vocab_size, MAX_VOCAB_SIZE),
            ("hidden_size", self.hidden_size, MAX_HIDDEN_SIZE),
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
            (
                "intermediate_size",
                self.intermediate_size,
                MAX_INTERMEDIATE_SIZE,
            ),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                MAX_POSITIONS,
            ),
            ("type_vocab_size", self.type_vocab_size, MAX_TYPE_VOCAB_SIZE),
        ] {
            if v > cap {
                return bad(
                    field,
                    format!("{v} is larger than the supported maximum {cap}"),
                );
            }
        }
        if self.parameter_count().is_none_or(|n| n > MAX_PARAMETERS) {
            return bad(
                "hidden_size",
                format!(
                    "the sizes in this config make more than {MAX_PARAMETERS} parameters (hidden_size {}, \
                     vocab_size {}, num_hidden_layers {}, intermediate_size {})",
                    self.hidden_size, self.vocab_size, self.num_hidden_layers, self.intermediate_size
                ),
            );
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return bad(
                "layer_norm_eps",
                format!("{} must be a positive number", self.layer_norm_eps),
            );
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            );
        }
        if self.hidden_act != "gelu" {
            return bad(
                "hidden_act",
                format!(
                    "\"{}\" is not supported; only \"gelu\" (erf form) is",
                    self.hidden_act
                ),
            );
        }
        if let Some(p) = self
            .extra
            .get("position_embedding_type")
            .and_then(|v| v.as_str())
        {
            if p != "absolute" {
                return bad(
                    "position_embedding_type",
                    format!("\"{p}\" is not supported; only \"absolute\" is"),
                );
            }
        }
        Ok(())
    }

    /// Number of encoder parameters the sizes imply (`None` on overflow).
    fn parameter_count(&self) -> Option<usize> {
        let h = self.hidden_size;
        let embeddings = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size)
            .checked_mul(h)?;
        // Q, K, V, output (h*h + h each), two LayerNorms, and the feed-forward pair.
        let layer = h
            .checked_mul(h)?
            .checked_add(h)?
            .checked_mul(4)?
            .checked_add(h.checked_mul(self.intermediate_size)?.checked_mul(2)?)?
            .checked_add(self.intermediate_size + 5 * h)?;
        layer
            .checked_mul(self.num_hidden_layers)?
            .checked_add(embeddings)?
            .checked_add(2 * h)
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Every tensor the encoder uses, with its shape, in module order (canonical names): the
    /// list the module structs of [`crate::bert`] load ([`BertModel::tensors`]).
    pub fn expected_tensors(&self) -> Result<Vec<(String, Vec<usize>)>> {
        BertModel::tensors(self)
    }

    /// Checks that `params` holds every expected tensor with the right shape; `source` names
    /// the file in errors.
    pub fn check_params(&self, params: &ParamStore, source: &Path) -> Result<()> {
        for (name, shape) in self.expected_tensors()? {
            let t = params.require(&name, source)?;
            if t.shape() != shape.as_slice() {
                return Err(Error::Checkpoint {
                    path: source.into(),
                    message: format!(
                        "tensor `{name}` has shape {:?}, expected {shape:?} (from config.json)",
                        t.shape()
                    ),
                });
            }
        }
        Ok(())
    }

    /// The manifest's copy of the hyper-parameters.
    pub fn architecture(&self) -> Architecture {
        Architecture {
            model_type: self.model_type.clone(),
            hidden_size: self.hidden_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            intermediate_size: self.intermediate_size,
            vocab_size: self.vocab_size,
            max_position_embeddings: self.max_position_embeddings,
            type_vocab_size: self.type_vocab_size,
            layer_norm_eps: self.layer_norm_eps,
        }
    }

    /// Writes the config as `config.json`-style JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Invalid(format!("config.json: {e}")))
    }
}

/// Settings suggested by sentence-transformers files next to the checkpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckpointHints {
    /// From `1_Pooling/config.json` (or the pooling module named in `modules.json`).
    pub pooling: Option<Pooling>,
    /// A pooling mode ltre cannot build (e.g. max pooling), with the file that asks for it.
    pub unsupported_pooling: Option<String>,
    /// `Some(true)` when `modules.json` lists a `Normalize` module, `Some(false)` when it lists
    /// modules but none normalises.
    pub normalize: Option<bool>,
    /// `max_seq_length` from `sentence_bert_config.json`.
    pub max_seq_length: Option<usize>,
}

/// A validated BERT checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: BertConfig,
    /// The encoder's tensors (canonical names; heads and poolers dropped).
    pub params: ParamStore,
    /// sentence-transformers hints.
    pub hints: CheckpointHints,
}

#[derive(Deserialize)]
struct StModule {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct StPooling {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct StBertConfig {
    max_seq_length: Option<usize>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::bad_file(path, format!("{e}")))
}

impl Checkpoint {
    /// Loads and validates a checkpoint directory.
    pub fn load(dir: &Path) -> Result<Checkpoint> {
        if !dir.is_dir() {
            return Err(Error::Checkpoint {
                path: dir.into(),
                message:
                    "not a directory; pass the folder holding config.json and model.safetensors"
                        .into(),
            });
        }
        let config_path = dir.join(CONFIG_FILE);
        if !config_path.is_file() {
            return Err(Error::Checkpoint {
                path: dir.into(),
                message: "no config.json: this is not a Hugging Face checkpoint directory".into(),
            });
        }
        let config = BertConfig::load(&config_path)?;
        let weights = dir.join(WEIGHTS_FILE);
        if !weights.is_file() {
            let hint = if dir.join("pytorch_model.bin").is_file() {
                " (pytorch_model.bin is not supported: convert it to safetensors first)"
            } else {
                ""
            };
            return Err(Error::Checkpoint {
                path: dir.into(),
                message: format!("no {WEIGHTS_FILE}{hint}"),
            });
        }
        let mut all = ParamStore::load(&weights)?;
        // Old TensorFlow-converted checkpoints call the LayerNorm parameters gamma/beta.
        let renames: Vec<(String, String)> = all
            .names()
            .filter_map(|n| {
                let new = n
                    .strip_suffix(".gamma")
                    .map(|b| format!("{b}.weight"))
                    .or_else(|| n.strip_suffix(".beta").map(|b| format!("{b}.bias")))?;
                Some((n.to_string(), new))
            })
            .collect();
        for (old, new) in renames {
            if let Some(t) = all.get(&old).cloned() {
                all.insert(&new, t);
            }
        }
        config.check_params(&all, &weights)?;
        let mut params = ParamStore::new();
        for (name, _) in config.expected_tensors()? {
            if let Some(t) = all.get(&name) {
                params.insert(&name, t.clone());
            }
        }
        let hints = Self::read_hints(dir)?;
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            config,
            params,
            hints,
        })
    }

    /// The checkpoint's `tokenizer.json`.
    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join(TOKENIZER_FILE)
    }

    fn read_hints(dir: &Path) -> Result<CheckpointHints> {
        let mut hints = CheckpointHints::default();
        let modules_path = dir.join("modules.json");
        let modules: Option<Vec<StModule>> = read_json(&modules_path)?;
        let mut pooling_dir = "1_Pooling".to_string();
        if let Some(modules) = &modules {
            hints.normalize = Some(modules.iter().any(|m| m.kind.ends_with(".Normalize")));
            if let Some(p) = modules.iter().find(|m| m.kind.ends_with(".Pooling")) {
                // Joined onto the checkpoint directory: it must not lead out of it.
                let inside = Path::new(&p.path)
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)));
                if !inside {
                    return Err(Error::bad_file(
                        &modules_path,
                        format!(
                            "the Pooling module's path \"{}\" is not a folder inside the checkpoint",
                            p.path
                        ),
                    ));
                }
                pooling_dir = p.path.clone();
            }
        }
        let pooling_path = dir.join(&pooling_dir).join("config.json");
        if let Some(p) = read_json::<StPooling>(&pooling_path)? {
            if p.pooling_mode_cls_token && !p.pooling_mode_mean_tokens {
                hints.pooling = Some(Pooling::Cls);
            } else if p.pooling_mode_mean_tokens && !p.pooling_mode_cls_token {
                hints.pooling = Some(Pooling::Mean);
            }
            if hints.pooling.is_none()
                || p.pooling_mode_max_tokens
                || p.pooling_mode_mean_sqrt_len_tokens
            {
                hints.pooling = None;
                hints.unsupported_pooling = Some(format!(
                    "{}: the pooling modes it enables are not supported (ltre builds mean or cls pooling); \
                     pass --pooling mean or --pooling cls to choose one",
                    pooling_path.display()
                ));
            }
        }
        let st_path = dir.join("sentence_bert_config.json");
        if let Some(st) = read_json::<StBertConfig>(&st_path)? {
            hints.max_seq_length = st.max_seq_length;
        }
        Ok(hints)
    }
}
