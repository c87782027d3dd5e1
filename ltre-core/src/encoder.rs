//! [`Encoder`]: texts in, embeddings out, through an exported model directory.
//!
//! An exported directory (see [`crate::manifest`]) holds `model.onnx`, whose output is already
//! pooled and, when `manifest.normalize` is set, L2-normalised. The encoder tokenises (padding
//! off, truncation at the manifest's query or document length), sorts the texts of a call by
//! token count so that each batch is padded only to its own longest text (dynamic padding), runs
//! one reused ONNX Runtime session per batch and returns the rows in the caller's order.
//!
//! ```no_run
//! # fn main() -> ltre_core::Result<()> {
//! use ltre_core::Encoder;
//!
//! let encoder = Encoder::load("models/all-MiniLM-L6-v2-onnx")?;
//! let queries = encoder.encode_queries(&["what causes scurvy"])?;
//! let docs = encoder.encode_documents(&["Scurvy is caused by a lack of vitamin C."])?;
//! assert_eq!(queries.ncols(), encoder.dim());
//! let score = queries.row(0).dot(&docs.row(0));
//! # let _ = score;
//! # Ok(())
//! # }
//! ```
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ndarray::Array2;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use crate::manifest::{io_names, INFERENCE_GRAPH_FILE, TOKENIZER_FILE};
use crate::tokenize::TextTokenizer;
pub use crate::tokenize::{TextKind, TokenBatch};
use crate::{runtime, Error, Manifest, Result};

/// Where the ONNX Runtime session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The CPU execution provider.
    #[default]
    Cpu,
    /// The CUDA execution provider (cargo feature `cuda` and a CUDA build of ONNX Runtime);
    /// falls back to the CPU with a warning when either is missing.
    Cuda,
}

/// Options for [`Encoder::load_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderOptions {
    /// ONNX Runtime intra-op threads (default: the available cores).
    pub threads: usize,
    /// Texts per session run (default 32).
    pub batch_size: usize,
    /// Execution device (default CPU).
    pub device: Device,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            batch_size: 32,
            device: Device::Cpu,
        }
    }
}

/// A text encoder backed by an exported model directory.
///
/// `Encoder` is `Send + Sync`; concurrent calls share one session and run one at a time
/// (ONNX Runtime runs are not thread safe in `ort`, and each run already uses every intra-op
/// thread).
pub struct Encoder {
    dir: PathBuf,
    manifest: Manifest,
    tokenizer: TextTokenizer,
    session: Mutex<Session>,
    options: EncoderOptions,
    device: Device,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("dir", &self.dir)
            .field("dim", &self.manifest.embedding_dim)
            .field("options", &self.options)
            .field("device", &self.device)
            .finish()
    }
}

const EXPORT_HINT: &str = "create it with `ltre-cli export-onnx --model CHECKPOINT --out DIR`";

impl Encoder {
    /// Loads an exported model directory with default [`EncoderOptions`].
    pub fn load(dir: impl AsRef<Path>) -> Result<Encoder> {
        Encoder::load_with(dir, EncoderOptions::default())
    }

    /// Loads an exported model directory.
    pub fn load_with(dir: impl AsRef<Path>, options: EncoderOptions) -> Result<Encoder> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::bad_file(
                dir,
                format!("model directory not found; {EXPORT_HINT}"),
            ));
        }
        if options.threads == 0 || options.batch_size == 0 {
            return Err(Error::Invalid(format!(
                "encoder options: threads ({}) and batch_size ({}) must be at least 1",
                options.threads, options.batch_size
            )));
        }
        let manifest = Manifest::load(dir)?;
        let tokenizer = TextTokenizer::from_file(
            &dir.join(TOKENIZER_FILE),
            manifest.query_max_length,
            manifest.document_max_length,
        )?;
        let graph = dir.join(INFERENCE_GRAPH_FILE);
        if !graph.is_file() {
            return Err(Error::bad_file(
                &graph,
                format!("inference graph not found; {EXPORT_HINT}"),
            ));
        }
        let (session, device) = build_session(&graph, &options)?;
        Ok(Encoder {
            dir: dir.to_path_buf(),
            manifest,
            tokenizer,
            session: Mutex::new(session),
            options,
            device,
        })
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The model's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.manifest.embedding_dim
    }

    /// The options the encoder was loaded with.
    pub fn options(&self) -> &EncoderOptions {
        &self.options
    }

    /// The device the session actually runs on (CPU after a CUDA fallback).
    pub fn device(&self) -> Device {
        self.device
    }

    /// The tokenizer (padding off, the manifest's truncation lengths).
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Tokenises `texts` in order, padded to the longest of them, truncated at the manifest's
    /// length for `kind`.
    pub fn tokenize<S: AsRef<str>>(&self, texts: &[S], kind: TextKind) -> Result<TokenBatch> {
        self.tokenizer.tokenize(texts, kind)
    }

    /// Embeds queries: `[texts.len(), dim]`.
    pub fn encode_queries<S: AsRef<str>>(&self, texts: &[S]) -> Result<Array2<f32>> {
        self.encode(texts, TextKind::Query)
    }

    /// Embeds documents: `[texts.len(), dim]`.
    pub fn encode_documents<S: AsRef<str>>(&self, texts: &[S]) -> Result<Array2<f32>> {
        self.encode(texts, TextKind::Document)
    }

    /// Embeds `texts` as `kind`: `[texts.len(), dim]`, rows in input order.
    pub fn encode<S: AsRef<str>>(&self, texts: &[S], kind: TextKind) -> Result<Array2<f32>> {
        let dim = self.dim();
        let mut out = Array2::zeros((texts.len(), dim));
        if texts.is_empty() {
            return Ok(out);
        }
        let encodings = self.tokenizer.encode(texts, kind)?;
        // Longest first: similar lengths share a batch, so little padding is computed.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encodings[i].len()));
        for chunk in order.chunks(self.options.batch_size) {
            let refs: Vec<_> = chunk.iter().map(|&i| &encodings[i]).collect();
            let batch = TokenBatch::from_encodings(&refs, self.tokenizer.pad_id());
            let rows = self.run(&batch)?;
            for (r, &i) in chunk.iter().enumerate() {
                out.row_mut(i).assign(&rows.row(r));
            }
        }
        Ok(out)
    }

    /// Runs the inference graph on one padded batch: `[batch.len(), dim]`.
    pub fn run(&self, batch: &TokenBatch) -> Result<Array2<f32>> {
        let dim = self.dim();
        if batch.is_empty() {
            return Ok(Array2::zeros((0, dim)));
        }
        let inputs = ort::inputs![
            io_names::INPUT_IDS => TensorRef::from_array_view(batch.input_ids.view())?,
            io_names::ATTENTION_MASK => TensorRef::from_array_view(batch.attention_mask.view())?,
            io_names::TOKEN_TYPE_IDS => TensorRef::from_array_view(batch.token_type_ids.view())?,
        ];
        // A poisoned lock only means another call panicked mid-run; the session itself is intact.
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session.run(inputs)?;
        let value = outputs.get(io_names::EMBEDDING).ok_or_else(|| {
            Error::Runtime(format!(
                "{}: the graph has no `{}` output; re-export the model with `ltre-cli export-onnx`",
                self.dir.join(INFERENCE_GRAPH_FILE).display(),
                io_names::EMBEDDING
            ))
        })?;
        let (shape, data) = value.try_extract_tensor::<f32>()?;
        if shape.len() != 2 || shape[0] as usize != batch.len() || shape[1] as usize != dim {
            return Err(Error::Runtime(format!(
                "{}: output `{}` has shape {:?}, expected [{}, {dim}] (manifest embedding_dim); re-export the model",
                self.dir.join(INFERENCE_GRAPH_FILE).display(),
                io_names::EMBEDDING,
                &shape[..],
                batch.len()
            )));
        }
        Array2::from_shape_vec((batch.len(), dim), data.to_vec())
            .map_err(|e| Error::Runtime(e.to_string()))
    }
}

pub(crate) fn build_session(graph: &Path, options: &EncoderOptions) -> Result<(Session, Device)> {
    runtime::init()?;
    let env = runtime::environment()?;
    let builder = Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(ort::Error::from)?
        .with_intra_threads(options.threads)
        .map_err(ort::Error::from)?;
    let (mut builder, device) = register_device(builder, options.device);
    let session = builder.commit_from_file(graph).map_err(|e| {
        Error::Runtime(format!(
            "cannot load {}: {e}; re-export the model",
            graph.display()
        ))
    })?;
    Ok((session, device))
}

/// Where the CUDA build of ONNX Runtime comes from, quoted when CUDA cannot be used.
#[cfg(feature = "cuda")]
const GPU_HINT: &str = "`bash scripts/setup.sh` on the GPU machine installs it into \
                        .ltre/onnxruntime-gpu/, then `source scripts/env-gpu.sh`";

#[cfg(feature = "cuda")]
fn register_device(
    builder: ort::session::builder::SessionBuilder,
    device: Device,
) -> (ort::session::builder::SessionBuilder, Device) {
    use ort::ep::ExecutionProvider;
    if device != Device::Cuda {
        return (builder, Device::Cpu);
    }
    match ort::ep::CUDA::is_available() {
        Ok(true) => {}
        Ok(false) | Err(_) => {
            tracing::warn!(
                "this ONNX Runtime build has no CUDA execution provider; encoding on the CPU \
                 ({GPU_HINT})"
            );
            return (builder, Device::Cpu);
        }
    }
    match builder.with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()]) {
        Ok(b) => (b, Device::Cuda),
        Err(e) => {
            tracing::warn!("cannot use CUDA ({e}); encoding on the CPU ({GPU_HINT})");
            (e.recover(), Device::Cpu)
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn register_device(
    builder: ort::session::builder::SessionBuilder,
    device: Device,
) -> (ort::session::builder::SessionBuilder, Device) {
    if device == Device::Cuda {
        tracing::warn!("ltre-core was built without the `cuda` feature; encoding on the CPU");
    }
    (builder, Device::Cpu)
}
