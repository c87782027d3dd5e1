//! # ltre-core
//!
//! The model side of ltre: BERT encoders built as ONNX graphs in Rust and run by ONNX Runtime,
//! plus everything LTRe training needs on the query tower.
//!
//! - [`checkpoint`]: reads a Hugging Face BERT checkpoint (`config.json`, `model.safetensors`).
//! - [`graph`]: an ONNX graph builder with symbolic shapes and reverse-mode autodiff.
//! - [`bert`]: the BERT encoder written once over the graph builder (inference and training);
//!   its module structs are also the one list of checkpoint tensors that [`checkpoint`] checks.
//! - [`export`]: writes an exported model directory (`model.onnx`, `manifest.json`, tokenizer,
//!   optionally `train.onnx`).
//! - [`fsutil`]: atomic file and directory writes (the one helper for both).
//! - [`runtime`]: finds and initialises the ONNX Runtime shared library.
//! - [`encoder`]: [`Encoder`], text in, `Array2<f32>` embeddings out; [`tokenize`]: its tokenizer.
//! - [`params`], [`optim`], [`train_step`]: parameters in Rust, AdamW, one gradient step.
//! - [`trainer`]: the LTRe trainer (full retrieval over fixed document vectors), its
//!   configuration and its run directory (checkpoints, best parameters, resume); [`hybrid`]:
//!   hybrid-aware LTRe (the loss on the BM25 + dense ranking the index serves).
//! - [`data`], [`metrics`]: BEIR readers and trec_eval-compatible metrics.
//! - `testing` (with the `testing` feature, and in ltre-core's own tests): a tiny random BERT
//!   checkpoint and its export, the shared fixture for tests.
//!
//! Features: `cuda` (ONNX Runtime's CUDA execution provider), `testing` (the `testing` module;
//! downstream crates enable it in `[dev-dependencies]`).
pub mod bert;
pub mod checkpoint;
pub mod data;
pub mod encoder;
pub mod error;
pub mod export;
pub mod fsutil;
pub mod graph;
pub mod hybrid;
pub mod loss;
pub mod manifest;
pub mod metrics;
pub mod onnx;
pub mod optim;
pub mod params;
pub mod retrieval;
pub mod runtime;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tokenize;
pub mod train_step;
pub mod trainer;

pub use encoder::Encoder;
pub use error::{Error, Result};
pub use manifest::Manifest;
