//! One training step of the query tower: the gradient graph run by ONNX Runtime, AdamW in Rust.
//!
//! [`QueryTower`] holds the parameters ([`ParamStore`], Hugging Face names) and two sessions
//! over graphs that take the parameters as inputs: `train_forward.onnx` (embeddings only) and
//! `train.onnx` (embeddings plus the gradient of every trainable parameter, given the upstream
//! gradient dL/d(embedding)). A step is therefore: embed, compute dL/d(embedding) in Rust (the
//! retrieval-based losses need the embeddings first), run the gradient graph, apply AdamW.
//! Exports that also have `train_backward.onnx` run the forward pass once per step:
//! [`QueryTower::forward_for_training`] keeps the activations `train_forward.onnx` saves and
//! [`QueryTower::backward`] feeds them to the backward graph.
//!
//! The word-embedding table gets its gradient as one row per token position
//! (`grad_rows.word_embeddings`), scattered here by `input_ids`; or it is frozen. Updated
//! parameters save and load as safetensors and export to an inference model directory that
//! [`crate::Encoder`] loads.
use std::borrow::Cow;
use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, Axis, IxDyn};
use ort::session::{Session, SessionInputValue, SessionOutputs};
use ort::value::{DynValue, Tensor, TensorRef};

use crate::checkpoint::BertConfig;
use crate::encoder::{build_session, EncoderOptions};
use crate::export::{export_params, ExportSettings};
use crate::manifest::{
    io_names, Manifest, TrainGraphInfo, WordEmbeddingGrad, CONFIG_FILE, TOKENIZER_FILE,
    WEIGHTS_FILE,
};
use crate::optim::{AdamW, AdamWConfig, Gradients, StepStats};
use crate::params::ParamStore;
use crate::tokenize::{TextKind, TextTokenizer, TokenBatch};
use crate::{Error, Result};

/// Name of the word-embedding table.
pub const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";
const PARAMS_FILE: &str = "params.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// Options of a [`QueryTower`].
#[derive(Debug, Clone, Default)]
pub struct TowerOptions {
    /// ONNX Runtime session options (threads, device).
    pub session: EncoderOptions,
    /// AdamW configuration.
    pub optimizer: AdamWConfig,
}

/// The trainable query encoder.
pub struct QueryTower {
    dir: PathBuf,
    manifest: Manifest,
    info: TrainGraphInfo,
    tokenizer: TextTokenizer,
    forward: Session,
    train: Session,
    backward: Option<Session>,
    params: ParamStore,
    optimizer: AdamW,
}

impl std::fmt::Debug for QueryTower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryTower")
            .field("dir", &self.dir)
            .field("steps", &self.optimizer.steps_taken())
            .finish()
    }
}

fn no_train_graph(dir: &Path) -> Error {
    Error::bad_file(
        dir.join(crate::manifest::MANIFEST_FILE),
        "this model directory has no training graph; export it with `ltre-cli export-onnx --train`",
    )
}

impl QueryTower {
    /// Loads a model directory exported with `--train`; parameters start from its
    /// `model.safetensors`.
    pub fn load(dir: &Path, options: TowerOptions) -> Result<QueryTower> {
        let manifest = Manifest::load(dir)?;
        let info = manifest.train.clone().ok_or_else(|| no_train_graph(dir))?;
        let tokenizer = TextTokenizer::from_file(
            &dir.join(TOKENIZER_FILE),
            manifest.query_max_length,
            manifest.document_max_length,
        )?;
        let forward = build_session(&dir.join(&info.forward_file), &options.session)?.0;
        let train = build_session(&dir.join(&info.file), &options.session)?.0;
        let backward = match &info.backward_file {
            Some(file) => Some(build_session(&dir.join(file), &options.session)?.0),
            None => None,
        };
        let weights = dir.join(WEIGHTS_FILE);
        let params = ParamStore::load(&weights)?;
        for name in &info.parameters {
            params.require(name, &weights)?;
        }
        Ok(QueryTower {
            dir: dir.to_path_buf(),
            manifest,
            info,
            tokenizer,
            forward,
            train,
            backward,
            params,
            optimizer: AdamW::new(options.optimizer)?,
        })
    }

    /// The model directory the tower was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest of that directory.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Current parameters.
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// Replaces the parameters (every training-graph parameter must be present, same shapes).
    pub fn set_params(&mut self, params: ParamStore) -> Result<()> {
        for name in &self.info.parameters {
            let (Some(new), Some(old)) = (params.get(name), self.params.get(name)) else {
                return Err(Error::Invalid(format!("parameter `{name}` is missing")));
            };
            if new.shape() != old.shape() {
                return Err(Error::Invalid(format!(
                    "parameter `{name}` has shape {:?}, the model needs {:?}",
                    new.shape(),
                    old.shape()
                )));
            }
        }
        self.params = params;
        Ok(())
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &AdamW {
        &self.optimizer
    }

    /// Replaces the optimizer configuration, keeping its state.
    pub fn set_optimizer_config(&mut self, config: AdamWConfig) -> Result<()> {
        config.validate()?;
        let state = std::mem::replace(&mut self.optimizer, AdamW::new(config.clone())?);
        self.optimizer = state.with_config(config);
        Ok(())
    }

    /// Tokenises queries as the tower sees them.
    pub fn tokenize(&self, texts: &[&str]) -> Result<TokenBatch> {
        self.tokenizer.tokenize(texts, TextKind::Query)
    }

    fn feeds<'a>(
        params: &'a ParamStore,
        info: &'a TrainGraphInfo,
        batch: &'a TokenBatch,
    ) -> Result<Vec<(Cow<'a, str>, SessionInputValue<'a>)>> {
        let mut feeds: Vec<(Cow<'a, str>, SessionInputValue<'a>)> =
            Vec::with_capacity(info.parameters.len() + 4);
        for name in &info.parameters {
            let p = params
                .get(name)
                .ok_or_else(|| Error::Invalid(format!("parameter `{name}` is missing")))?;
            feeds.push((
                Cow::Borrowed(name.as_str()),
                TensorRef::from_array_view(p.view())?.into(),
            ));
        }
        feeds.push((
            io_names::INPUT_IDS.into(),
            TensorRef::from_array_view(batch.input_ids.view())?.into(),
        ));
        feeds.push((
            io_names::ATTENTION_MASK.into(),
            TensorRef::from_array_view(batch.attention_mask.view())?.into(),
        ));
        feeds.push((
            io_names::TOKEN_TYPE_IDS.into(),
            TensorRef::from_array_view(batch.token_type_ids.view())?.into(),
        ));
        Ok(feeds)
    }

    /// Query embeddings `[n, dim]` with the current parameters.
    pub fn embed(&mut self, texts: &[&str]) -> Result<Array2<f32>> {
        let batch = self.tokenize(texts)?;
        self.embed_batch(&batch)
    }

    /// Embeddings of an already tokenised batch.
    pub fn embed_batch(&mut self, batch: &TokenBatch) -> Result<Array2<f32>> {
        let feeds = Self::feeds(&self.params, &self.info, batch)?;
        let outputs = self.forward.run(feeds)?;
        extract_embedding(&outputs)
    }

    /// Runs the gradient graph: dL/d(parameter) for every trainable parameter, given
    /// `upstream` = dL/d(embedding) `[n, dim]`.
    pub fn gradients(&mut self, texts: &[&str], upstream: &Array2<f32>) -> Result<Gradients> {
        let batch = self.tokenize(texts)?;
        Ok(self.gradients_batch(&batch, upstream)?.1)
    }

    /// As [`QueryTower::gradients`] on a tokenised batch; also returns the embeddings the
    /// gradient graph computed.
    pub fn gradients_batch(
        &mut self,
        batch: &TokenBatch,
        upstream: &Array2<f32>,
    ) -> Result<(Array2<f32>, Gradients)> {
        if upstream.nrows() != batch.len() {
            return Err(Error::Invalid(format!(
                "upstream gradient has {} rows for a batch of {}",
                upstream.nrows(),
                batch.len()
            )));
        }
        let upstream = upstream.as_standard_layout();
        let mut feeds = Self::feeds(&self.params, &self.info, batch)?;
        feeds.push((
            io_names::EMBEDDING_GRAD.into(),
            TensorRef::from_array_view(upstream.view())?.into(),
        ));
        let outputs = self.train.run(feeds)?;
        let embedding = extract_embedding(&outputs)?;
        let grads = collect_gradients(&outputs, &self.params, &self.info, batch)?;
        Ok((embedding, grads))
    }

    /// Whether the export has a separate backward graph, so that
    /// [`QueryTower::forward_for_training`] and [`QueryTower::backward`] can run a step with
    /// one forward pass (older exports only have the fused `train.onnx`).
    pub fn has_backward_graph(&self) -> bool {
        self.backward.is_some()
    }

    /// The forward pass of a training step: the embeddings `[n, dim]` and the activations the
    /// backward pass needs. Pass both, with the same batch, to [`QueryTower::backward`] before
    /// the parameters change.
    ///
    /// Without a backward graph (an export older than `train_backward.onnx`) nothing is saved
    /// and [`QueryTower::backward`] runs the fused `train.onnx`.
    pub fn forward_for_training(
        &mut self,
        batch: &TokenBatch,
    ) -> Result<(Array2<f32>, SavedActivations)> {
        let feeds = Self::feeds(&self.params, &self.info, batch)?;
        let mut outputs = self.forward.run(feeds)?;
        let embedding = extract_embedding(&outputs)?;
        let mut values = Vec::new();
        if self.backward.is_some() {
            values.reserve(self.info.saved.len());
            for name in &self.info.saved {
                let v = if name == io_names::EMBEDDING {
                    Some(Tensor::from_array(embedding.clone())?.into_dyn())
                } else {
                    outputs.remove(name)
                };
                let v = v.ok_or_else(|| {
                    Error::Runtime(format!(
                        "{} has no output `{name}` that the manifest lists as saved; re-export with --train",
                        self.info.forward_file
                    ))
                })?;
                values.push((name.clone(), v));
            }
        }
        Ok((
            embedding,
            SavedActivations {
                values,
                rows: batch.len(),
            },
        ))
    }

    /// The backward pass of a training step: dL/d(parameter) for every trainable parameter,
    /// given what [`QueryTower::forward_for_training`] returned for `batch` and `upstream` =
    /// dL/d(embedding) `[n, dim]`. The same gradients as [`QueryTower::gradients_batch`],
    /// without recomputing the forward pass.
    pub fn backward(
        &mut self,
        batch: &TokenBatch,
        saved: SavedActivations,
        upstream: &Array2<f32>,
    ) -> Result<Gradients> {
        let Some(session) = self.backward.as_mut() else {
            return Ok(self.gradients_batch(batch, upstream)?.1);
        };
        if upstream.nrows() != batch.len() || saved.rows != batch.len() {
            return Err(Error::Invalid(format!(
                "upstream gradient has {} rows and the saved activations {} for a batch of {}; \
                 pass the batch given to forward_for_training",
                upstream.nrows(),
                saved.rows,
                batch.len()
            )));
        }
        let upstream = upstream.as_standard_layout();
        let mut feeds = Self::feeds(&self.params, &self.info, batch)?;
        // The backward graph declares only the parameters and token inputs it reads.
        feeds.retain(|(name, _)| session.inputs().iter().any(|i| i.name() == name));
        feeds.push((
            io_names::EMBEDDING_GRAD.into(),
            TensorRef::from_array_view(upstream.view())?.into(),
        ));
        for (name, value) in saved.values {
            feeds.push((name.into(), value.into()));
        }
        let outputs = session.run(feeds)?;
        collect_gradients(&outputs, &self.params, &self.info, batch)
    }

    /// Applies AdamW to the parameters.
    pub fn apply(&mut self, grads: &Gradients) -> Result<StepStats> {
        self.optimizer.step(&mut self.params, grads)
    }

    /// Saves parameters and optimizer state into `dir` (`params.safetensors`,
    /// `optimizer.safetensors`).
    pub fn save_state(&self, dir: &Path) -> Result<()> {
        self.params.save(&dir.join(PARAMS_FILE))?;
        self.optimizer.save(&dir.join(OPTIMIZER_FILE))
    }

    /// Restores what [`QueryTower::save_state`] wrote.
    pub fn load_state(&mut self, dir: &Path) -> Result<()> {
        let params = ParamStore::load(&dir.join(PARAMS_FILE))?;
        self.set_params(params)?;
        self.optimizer = AdamW::load(&dir.join(OPTIMIZER_FILE), self.optimizer.config().clone())?;
        Ok(())
    }

    /// Exports the current parameters as an inference model directory (with the training
    /// graph too, so it can be trained further) that [`crate::Encoder`] loads.
    pub fn export(&self, out: &Path, source: &str) -> Result<Manifest> {
        let config = BertConfig::load(&self.dir.join(CONFIG_FILE))?;
        let m = &self.manifest;
        let settings = ExportSettings {
            pooling: m.pooling,
            normalize: m.normalize,
            query_max_length: m.query_max_length,
            document_max_length: m.document_max_length,
            train: m.train.as_ref().map(|t| t.word_embeddings),
            source: source.to_string(),
        };
        export_params(
            &config,
            &self.params,
            &self.dir.join(TOKENIZER_FILE),
            &settings,
            out,
        )
    }
}

/// Forward activations kept for the backward pass of the same step (ONNX Runtime values,
/// handed back without copying). See [`QueryTower::forward_for_training`].
#[derive(Debug)]
pub struct SavedActivations {
    values: Vec<(String, DynValue)>,
    rows: usize,
}

impl SavedActivations {
    /// Number of saved tensors (0 when the export has no backward graph).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether nothing was saved.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

fn extract_embedding(outputs: &SessionOutputs<'_>) -> Result<Array2<f32>> {
    outputs
        .get(io_names::EMBEDDING)
        .ok_or_else(|| Error::Runtime(format!("graph has no output `{}`", io_names::EMBEDDING)))?
        .try_extract_array::<f32>()?
        .into_dimensionality()
        .map(|a| a.to_owned())
        .map_err(|e| Error::Runtime(e.to_string()))
}

/// Reads `grad.<name>` (and scatters `grad_rows.word_embeddings`) from a gradient graph's
/// outputs.
fn collect_gradients(
    outputs: &SessionOutputs<'_>,
    params: &ParamStore,
    info: &TrainGraphInfo,
    batch: &TokenBatch,
) -> Result<Gradients> {
    let mut grads = Gradients::new();
    for name in &info.parameters {
        if name == WORD_EMBEDDINGS {
            continue;
        }
        let key = format!("{}{name}", io_names::GRAD_PREFIX);
        let g = outputs
            .get(&key)
            .ok_or_else(|| {
                Error::Runtime(format!(
                    "training graph has no output `{key}`; re-export with --train"
                ))
            })?
            .try_extract_array::<f32>()?
            .to_owned();
        grads.insert(name.clone(), g);
    }
    if info.word_embeddings == WordEmbeddingGrad::Sparse {
        let rows = outputs
            .get(io_names::WORD_EMBEDDING_ROW_GRAD)
            .ok_or_else(|| {
                Error::Runtime(format!(
                    "training graph has no output `{}`; re-export with --train",
                    io_names::WORD_EMBEDDING_ROW_GRAD
                ))
            })?
            .try_extract_array::<f32>()?;
        let table = params
            .get(WORD_EMBEDDINGS)
            .ok_or_else(|| Error::Invalid("no word embeddings".into()))?;
        grads.insert(
            WORD_EMBEDDINGS.to_string(),
            scatter_rows(rows, &batch.input_ids, table.shape())?,
        );
    }
    Ok(grads)
}

/// Sums per-position gradient rows `[batch, seq, hidden]` into a dense `[vocab, hidden]` table
/// gradient by token id. Padding positions carry zero rows (their mask is 0), so they add
/// nothing.
pub fn scatter_rows(
    rows: ndarray::ArrayViewD<f32>,
    ids: &Array2<i64>,
    table_shape: &[usize],
) -> Result<ArrayD<f32>> {
    let hidden = table_shape[1];
    let rows = rows
        .into_shape_with_order((ids.len(), hidden))
        .map_err(|e| Error::Runtime(format!("word-embedding row gradient: {e}")))?;
    let mut grad = ArrayD::<f32>::zeros(IxDyn(table_shape));
    let mut g2 = grad
        .view_mut()
        .into_dimensionality::<ndarray::Ix2>()
        .map_err(|e| Error::Runtime(e.to_string()))?;
    for (row, &id) in rows.axis_iter(Axis(0)).zip(ids.iter()) {
        let id = usize::try_from(id)
            .ok()
            .filter(|&i| i < table_shape[0])
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "token id {id} outside the vocabulary of {}",
                    table_shape[0]
                ))
            })?;
        let mut dst = g2.row_mut(id);
        dst += &row;
    }
    Ok(grad)
}
