//! # tantivy-ltre
pub mod ann;
pub mod error;
pub mod field;
pub mod fusion;
pub mod query;
pub mod scan;
pub mod writer;

pub use ann::{AnnOptions, AnnParams};
pub use error::{Error, Result, VectorError};
pub use field::{add_dense_field, DenseField, DenseFieldOptions, SegmentVectors, DENSE_TYPE_NAME};
pub use fusion::{Cascade, Fusion, HybridSearcher, LinearFusion, Normalization, Rrf};
pub use query::{DenseQuery, SearchMode};
pub use writer::{BatchReport, DenseIndexWriter, EmbeddingWriter, TextEmbedder};
