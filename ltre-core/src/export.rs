//! Writes an exported model directory: `model.onnx`, `manifest.json`, `tokenizer.json`,
//! `config.json`, `model.safetensors`, and with training enabled `train.onnx`,
//! `train_forward.onnx` and `train_backward.onnx` (see [`crate::manifest`] for the contract).
//!
//! Exports are atomic: everything is written into a hidden sibling directory which is renamed
//! into place only when complete, replacing an older export only then. On any error nothing is
//! left at the destination.
//!
//! ```no_run
//! use ltre_core::export::{export_checkpoint, ExportOptions};
//!
//! let manifest = export_checkpoint(
//!     ".ltre/models/all-MiniLM-L6-v2".as_ref(),
//!     "/tmp/minilm".as_ref(),
//!     &ExportOptions::default(),
//! )?;
//! assert_eq!(manifest.embedding_dim, 384);
//! # Ok::<(), ltre_core::Error>(())
//! ```
use std::path::Path;

use prost::Message;
use sha2::{Digest, Sha256};

use crate::bert::{build_encoder, EncoderSpec, ParamSource};
use crate::checkpoint::{BertConfig, Checkpoint};
use crate::graph::autodiff::backward;
use crate::graph::{DType, Dim, Graph, Op, Value};
use crate::manifest::{
    io_names, Manifest, Pooling, TrainGraphInfo, WordEmbeddingGrad, CONFIG_FILE,
    INFERENCE_GRAPH_FILE, TOKENIZER_FILE, TRAIN_BACKWARD_GRAPH_FILE, TRAIN_FORWARD_GRAPH_FILE,
    TRAIN_GRAPH_FILE, WEIGHTS_FILE,
};
use crate::onnx::{ModelProto, OPSET};
use crate::params::ParamStore;
use crate::{Error, Result};

/// Default truncation length for queries.
pub const DEFAULT_QUERY_MAX_LENGTH: usize = 64;
/// Default truncation length for documents when the checkpoint does not say.
pub const DEFAULT_DOCUMENT_MAX_LENGTH: usize = 512;

/// What the manifest records about graph optimisation, as observed with ONNX Runtime 1.31.1
/// (`optimized_model_filepath` on the MiniLM export).
pub const GRAPH_OPTIMIZATION: &str = "ORT GraphOptimizationLevel::Level3 at session creation; the graph \
uses only ai.onnx opset-17 ops (native LayerNormalization); on the CPU provider ORT fuses the erf-GELU \
with its bias into BiasGelu and the attention scale into FusedMatMul (no Attention or \
SkipLayerNormalization fusion applies)";

/// Export choices; `None` takes the checkpoint's hint, then the default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportOptions {
    /// Pooling (hint: `1_Pooling/config.json`; default mean).
    pub pooling: Option<Pooling>,
    /// L2-normalise embeddings (hint: a `Normalize` module in `modules.json`; default false).
    pub normalize: Option<bool>,
    /// Query truncation length (default 64).
    pub query_max_length: Option<usize>,
    /// Document truncation length (hint: `sentence_bert_config.json`; default 512), capped at
    /// `max_position_embeddings`.
    pub document_max_length: Option<usize>,
    /// Also write the training graphs, with this word-embedding gradient mode.
    pub train: Option<WordEmbeddingGrad>,
}

/// Fully resolved export settings, as [`export_params`] takes them.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSettings {
    /// Pooling.
    pub pooling: Pooling,
    /// L2-normalise embeddings.
    pub normalize: bool,
    /// Query truncation length.
    pub query_max_length: usize,
    /// Document truncation length.
    pub document_max_length: usize,
    /// Training graphs to write, if any.
    pub train: Option<WordEmbeddingGrad>,
    /// Recorded as the manifest's `source`.
    pub source: String,
}

impl ExportSettings {
    /// The settings an existing export was made with, e.g. to re-export trained parameters
    /// the same way; `source` records where the new parameters come from.
    pub fn from_manifest(manifest: &Manifest, source: impl Into<String>) -> ExportSettings {
        ExportSettings {
            pooling: manifest.pooling,
            normalize: manifest.normalize,
            query_max_length: manifest.query_max_length,
            document_max_length: manifest.document_max_length,
            train: manifest.train.as_ref().map(|t| t.word_embeddings),
            source: source.into(),
        }
    }

    /// The pooling/normalisation part.
    pub fn encoder_spec(&self) -> EncoderSpec {
        EncoderSpec {
            pooling: self.pooling,
            normalize: self.normalize,
        }
    }
}

fn check_length(flag: &str, n: usize, config: &BertConfig) -> Result<usize> {
    if n < 2 {
        return Err(Error::Invalid(format!(
            "{flag} {n} is too short: [CLS] and [SEP] alone take 2 tokens"
        )));
    }
    if n > config.max_position_embeddings {
        return Err(Error::Invalid(format!(
            "{flag} {n} exceeds the checkpoint's max_position_embeddings ({}); use at most that",
            config.max_position_embeddings
        )));
    }
    Ok(n)
}

/// Resolves options against a checkpoint's hints.
pub fn resolve_settings(ckpt: &Checkpoint, opts: &ExportOptions) -> Result<ExportSettings> {
    let config = &ckpt.config;
    let pooling = match (
        opts.pooling,
        ckpt.hints.pooling,
        &ckpt.hints.unsupported_pooling,
    ) {
        (Some(p), _, _) => p,
        (None, _, Some(problem)) => return Err(Error::Invalid(problem.clone())),
        (None, Some(p), None) => p,
        (None, None, None) => Pooling::Mean,
    };
    let normalize = opts.normalize.or(ckpt.hints.normalize).unwrap_or(false);
    let query_max_length = match opts.query_max_length {
        Some(n) => check_length("--query-max-length", n, config)?,
        None => DEFAULT_QUERY_MAX_LENGTH.min(config.max_position_embeddings),
    };
    let document_max_length = match opts.document_max_length {
        Some(n) => check_length("--document-max-length", n, config)?,
        None => ckpt
            .hints
            .max_seq_length
            .unwrap_or(DEFAULT_DOCUMENT_MAX_LENGTH)
            .min(config.max_position_embeddings),
    };
    let source = std::fs::canonicalize(&ckpt.dir)
        .unwrap_or_else(|_| ckpt.dir.clone())
        .display()
        .to_string();
    Ok(ExportSettings {
        pooling,
        normalize,
        query_max_length,
        document_max_length,
        train: opts.train,
        source,
    })
}

/// Loads a Hugging Face checkpoint and exports it to `out`.
pub fn export_checkpoint(model_dir: &Path, out: &Path, opts: &ExportOptions) -> Result<Manifest> {
    let ckpt = Checkpoint::load(model_dir)?;
    let settings = resolve_settings(&ckpt, opts)?;
    export_params(
        &ckpt.config,
        &ckpt.params,
        &ckpt.tokenizer_path(),
        &settings,
        out,
    )
}

/// The inference graph with the parameters as initializers.
pub fn inference_graph(
    config: &BertConfig,
    params: &ParamStore,
    spec: EncoderSpec,
) -> Result<ModelProto> {
    Ok(
        build_encoder(config, &ParamSource::Initializers(params), spec)?
            .graph
            .to_model(),
    )
}

/// Exports `params` (e.g. freshly trained ones) with `config` and the tokenizer to `out`.
pub fn export_params(
    config: &BertConfig,
    params: &ParamStore,
    tokenizer_json: &Path,
    settings: &ExportSettings,
    out: &Path,
) -> Result<Manifest> {
    config.check_params(params, Path::new(WEIGHTS_FILE))?;
    if !tokenizer_json.is_file() {
        return Err(Error::Checkpoint {
            path: tokenizer_json.into(),
            message: "tokenizer.json not found: ltre needs the fast-tokenizer file \
                      (write it with `AutoTokenizer.from_pretrained(...).save_pretrained(dir)`)"
                .into(),
        });
    }
    tokenizers::Tokenizer::from_file(tokenizer_json)
        .map_err(|e| Error::bad_file(tokenizer_json, format!("not a valid tokenizer.json: {e}")))?;
    let spec = settings.encoder_spec();
    let model = inference_graph(config, params, spec)?;
    let train = match settings.train {
        Some(mode) => Some((mode, training_graphs(config, spec, mode)?)),
        None => None,
    };
    write_dir_atomically(out, |dir| {
        let weights = dir.join(WEIGHTS_FILE);
        params.save(&weights)?;
        let bytes = std::fs::read(&weights).map_err(|e| Error::io(&weights, e))?;
        let weights_sha256 = hex::encode(Sha256::digest(&bytes));
        write_model(&dir.join(INFERENCE_GRAPH_FILE), &model)?;
        let train_info = match &train {
            Some((mode, graphs)) => {
                write_model(&dir.join(TRAIN_GRAPH_FILE), &graphs.train)?;
                write_model(&dir.join(TRAIN_FORWARD_GRAPH_FILE), &graphs.forward)?;
                write_model(&dir.join(TRAIN_BACKWARD_GRAPH_FILE), &graphs.backward)?;
                Some(TrainGraphInfo {
                    file: TRAIN_GRAPH_FILE.into(),
                    forward_file: TRAIN_FORWARD_GRAPH_FILE.into(),
                    parameters: graphs.parameters.clone(),
                    word_embeddings: *mode,
                    backward_file: Some(TRAIN_BACKWARD_GRAPH_FILE.into()),
                    saved: graphs.saved.clone(),
                })
            }
            None => None,
        };
        let tok = dir.join(TOKENIZER_FILE);
        std::fs::copy(tokenizer_json, &tok).map_err(|e| Error::io(tokenizer_json, e))?;
        let cfg = dir.join(CONFIG_FILE);
        std::fs::write(&cfg, config.to_json()?).map_err(|e| Error::io(&cfg, e))?;
        let manifest = Manifest {
            format_version: 1,
            architecture: config.architecture(),
            embedding_dim: config.hidden_size,
            pooling: settings.pooling,
            normalize: settings.normalize,
            query_max_length: settings.query_max_length,
            document_max_length: settings.document_max_length,
            opset: OPSET,
            weights_sha256,
            source: settings.source.clone(),
            graph_optimization: GRAPH_OPTIMIZATION.into(),
            train: train_info,
        };
        manifest.save(dir)?;
        Ok(manifest)
    })
}

fn write_model(path: &Path, model: &ModelProto) -> Result<()> {
    std::fs::write(path, model.encode_to_vec()).map_err(|e| Error::io(path, e))
}

/// Training graphs built in memory (see [`training_graphs`]).
#[derive(Debug, Clone)]
pub struct TrainingGraphs {
    /// Forward and backward: `train.onnx`.
    pub train: ModelProto,
    /// Forward only, parameters as inputs: `train_forward.onnx`. Outputs `embedding` and the
    /// activations in `saved`.
    pub forward: ModelProto,
    /// Backward only: `train_backward.onnx`. Inputs: the `saved` activations, the parameters
    /// and token inputs it uses, `embedding_grad`; outputs as `train`'s gradients.
    pub backward: ModelProto,
    /// Names of the activations `forward` hands `backward`.
    pub saved: Vec<String>,
    /// Parameter inputs in graph order.
    pub parameters: Vec<String>,
}

/// Builds `train.onnx`, `train_forward.onnx` and `train_backward.onnx` in memory.
///
/// Both take every parameter as an input (canonical Hugging Face names, in module order) plus
/// the token inputs; `train.onnx` also takes `embedding_grad` (dL/d`embedding`) and returns
/// `grad.<name>` for every parameter except the word-embedding table, whose gradient is
/// `grad_rows.word_embeddings` (per token, `[batch, seq, hidden]`) in sparse mode and absent
/// when frozen.
pub fn training_graphs(
    config: &BertConfig,
    spec: EncoderSpec,
    mode: WordEmbeddingGrad,
) -> Result<TrainingGraphs> {
    let built = build_encoder(config, &ParamSource::Inputs, spec)?;
    let n_forward_nodes = built.graph.nodes().len();
    let forward_inputs = built.graph.inputs().to_vec();
    let mut g = built.graph;
    let batch = g.shape(built.embedding)[0].clone();
    let seed = g.input(
        io_names::EMBEDDING_GRAD,
        DType::F32,
        vec![batch, Dim::Fixed(config.hidden_size)],
    )?;
    let mut wrt: Vec<(String, Value)> = built
        .parameters
        .iter()
        .filter(|(n, _)| n != WORD_EMBEDDINGS)
        .cloned()
        .collect();
    if mode == WordEmbeddingGrad::Sparse {
        wrt.push((
            io_names::WORD_EMBEDDING_ROW_GRAD.to_string(),
            built.word_rows,
        ));
    }
    let values: Vec<Value> = wrt.iter().map(|(_, v)| *v).collect();
    let grads = backward(&mut g, &[(built.embedding, seed)], &values)?;
    for ((name, _), grad) in wrt.iter().zip(grads) {
        let grad =
            grad.ok_or_else(|| Error::Graph(format!("`{name}` does not influence the embedding")))?;
        let out = if name == io_names::WORD_EMBEDDING_ROW_GRAD {
            name.clone()
        } else {
            format!("{}{name}", io_names::GRAD_PREFIX)
        };
        g.output(&out, grad)?;
    }
    let train = g.to_model();
    let grad_outputs: Vec<Value> = g
        .outputs()
        .iter()
        .copied()
        .filter(|&v| v != built.embedding)
        .collect();
    let saved = saved_activations(&g, n_forward_nodes, &grad_outputs);
    let mut saved_names = Vec::with_capacity(saved.len());
    for (i, &v) in saved.iter().enumerate() {
        if v != built.embedding {
            g.rename(v, &format!("{}{i}", io_names::SAVED_PREFIX))?;
        }
        saved_names.push(g.name(v).to_string());
    }
    let mut forward_outputs = vec![built.embedding];
    forward_outputs.extend(saved.iter().filter(|&&v| v != built.embedding));
    let forward = g.to_model_between(&forward_inputs, &forward_outputs);
    let mut backward_inputs = saved;
    backward_inputs.extend(g.inputs());
    let backward = g.to_model_between(&backward_inputs, &grad_outputs);
    Ok(TrainingGraphs {
        train,
        forward,
        backward,
        saved: saved_names,
        parameters: built.parameters.into_iter().map(|(n, _)| n).collect(),
    })
}

/// The values the forward pass (nodes `..n_forward`) must hand the backward pass so that
/// `grad_outputs` need no expensive forward op again.
///
/// Nodes whose inputs are all graph inputs or constants and whose op is cheap (the mask and
/// shape arithmetic) are recomputed by the backward graph instead of saved; so are the
/// seed-independent helpers autodiff added (weight transposes, LayerNorm's normalised input),
/// except `Shape`, which runs in the forward graph so that a tensor is not saved for its
/// shape alone.
fn saved_activations(g: &Graph, n_forward: usize, grad_outputs: &[Value]) -> Vec<Value> {
    let nodes = g.nodes();
    let n_values = g.values.len();
    // Free: available to both graphs at no real cost (inputs, constants, cheap ops on them).
    let mut free = vec![true; n_values];
    for node in nodes {
        for &o in &node.outputs {
            free[o.index()] = false;
        }
    }
    let mut in_forward = vec![false; nodes.len()];
    let mut depends_on_seed = vec![false; n_values];
    for &v in g.inputs() {
        depends_on_seed[v.index()] = g.name(v) == io_names::EMBEDDING_GRAD;
    }
    for (i, node) in nodes.iter().enumerate() {
        let seeded = node.inputs.iter().any(|x| depends_on_seed[x.index()]);
        let all_free = node.inputs.iter().all(|x| free[x.index()]);
        if seeded {
            for &o in &node.outputs {
                depends_on_seed[o.index()] = true;
            }
        } else if all_free && cheap(&node.op) {
            for &o in &node.outputs {
                free[o.index()] = true;
            }
        } else {
            in_forward[i] = i < n_forward || matches!(node.op, Op::Shape { .. });
        }
    }
    let mut needed = vec![false; n_values];
    for &o in grad_outputs {
        needed[o.index()] = true;
    }
    let mut saved: Vec<Value> = Vec::new();
    for (i, node) in nodes.iter().enumerate().rev() {
        if !node.outputs.iter().any(|o| needed[o.index()]) {
            continue;
        }
        if in_forward[i] {
            saved.extend(node.outputs.iter().filter(|o| needed[o.index()]));
        } else {
            for &x in &node.inputs {
                needed[x.index()] = true;
            }
        }
    }
    saved.sort_by_key(|v| v.index());
    saved
}

/// Ops cheap enough to recompute rather than save when their inputs are at hand.
fn cheap(op: &Op) -> bool {
    matches!(
        op,
        Op::Identity
            | Op::Shape { .. }
            | Op::ConstantOfShape { .. }
            | Op::Cast { .. }
            | Op::Unsqueeze
            | Op::Squeeze
            | Op::Reshape
            | Op::Concat { .. }
            | Op::Slice
            | Op::Expand
            | Op::Transpose { .. }
            | Op::Equal
            | Op::Greater
            | Op::Where
            | Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Neg
            | Op::Max
            | Op::ReduceSum { .. }
    )
}

/// Canonical name of the word-embedding table.
pub const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";

/// The entries of an existing export directory that an export does not write.
fn foreign_entries(out: &Path) -> Result<Vec<String>> {
    use crate::manifest::*;
    const EXPORT_FILES: [&str; 8] = [
        MANIFEST_FILE,
        INFERENCE_GRAPH_FILE,
        TRAIN_GRAPH_FILE,
        TRAIN_FORWARD_GRAPH_FILE,
        TRAIN_BACKWARD_GRAPH_FILE,
        TOKENIZER_FILE,
        WEIGHTS_FILE,
        CONFIG_FILE,
    ];
    let mut foreign = Vec::new();
    for entry in std::fs::read_dir(out).map_err(|e| Error::io(out, e))? {
        let name = entry.map_err(|e| Error::io(out, e))?.file_name();
        let name = name.to_string_lossy().into_owned();
        if !EXPORT_FILES.contains(&name.as_str()) {
            foreign.push(name);
        }
    }
    foreign.sort();
    Ok(foreign)
}

/// Fills a fresh sibling directory with `fill` and renames it to `out`, replacing an existing
/// export only once the new one is complete ([`crate::fsutil::replace_dir_atomically`]).
/// Refuses to replace a directory that is neither empty nor an export, so a mistyped `--out`
/// cannot delete unrelated files.
pub fn write_dir_atomically<T>(out: &Path, fill: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let exists = out.exists();
    if exists {
        if !out.is_dir() {
            return Err(Error::Invalid(format!(
                "{} exists and is not a directory; choose another --out",
                out.display()
            )));
        }
        let empty = std::fs::read_dir(out)
            .map_err(|e| Error::io(out, e))?
            .next()
            .is_none();
        if !empty && !out.join(crate::manifest::MANIFEST_FILE).is_file() {
            return Err(Error::Invalid(format!(
                "{} exists and is not an ltre export (no manifest.json); choose another --out or remove it",
                out.display()
            )));
        }
        // Replacing the directory would delete whatever else the user keeps in it.
        let foreign = foreign_entries(out)?;
        if !foreign.is_empty() {
            return Err(Error::Invalid(format!(
                "{} holds files that are not part of an ltre export ({}); move them away or choose another --out",
                out.display(),
                foreign.join(", ")
            )));
        }
    }
    crate::fsutil::remove_stale_siblings(out);
    crate::fsutil::replace_dir_atomically(out, fill)
}
