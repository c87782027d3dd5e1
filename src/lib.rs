//! `ltre`: LTRe (Learning To Retrieve, Zhan et al. 2020) for Rust applications that use Tantivy.
//!
//! This facade re-exports the workspace crates:
//! - [`core`] (`ltre-core`): ONNX graph building from BERT checkpoints, the ONNX Runtime encoder,
//!   the query-tower gradient graph, AdamW and the LTRe trainer.
//! - [`tantivy`] (`tantivy-ltre`): a dense vector field inside Tantivy segments, a dense query
//!   and hybrid fusion.
pub use ltre_core as core;
pub use tantivy_ltre as tantivy;
