//! The ltre index directory and its query encoders, in one place for applications: the layout
//! and `ltre.json` ([`crate::layout`]), the encoder registry ([`crate::registry`]) and the
//! document-vector checksums ([`crate::checksum`]).
//!
//! ```text
//! INDEX/                 the Tantivy index (meta.json, segment files with .ltrevec/.ltreann)
//! INDEX/ltre.json        IndexConfig: dense field, dimension, document encoder, text fields, BM25
//! INDEX/encoders/<id>/   exported model directories (`encoders/base` = the document encoder,
//!                        copied at index time; trained query encoders get other ids)
//! INDEX/encoders/ACTIVE  the id of the query encoder in use (one line, replaced atomically)
//! INDEX/encoders/HISTORY activations and rollbacks, one JSON object per line
//! INDEX/encoders/<id>/encoder.json  EncoderRecord: provenance, training config, metrics
//! ```
pub use crate::checksum::{document_vectors_sha256, read_all_vectors};
pub use crate::layout::*;
pub use crate::registry::*;
