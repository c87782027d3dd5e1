//! The crate's error type.
use std::path::PathBuf;

/// Errors from tantivy-ltre.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Tantivy failed (I/O, schema, a missing plugin...). Transparent: with a prefix and a
    /// source, error chains (`{:#}`) printed Tantivy's message twice.
    #[error(transparent)]
    Tantivy(#[from] tantivy::TantivyError),
    /// ltre-core failed (encoder, dataset reader...).
    #[error(transparent)]
    Core(#[from] ltre_core::Error),
    /// A vector that cannot be indexed or used as a query.
    #[error("invalid vector: {0}")]
    InvalidVector(#[from] VectorError),
    /// The schema has no dense field, several, or one with bad parameters.
    #[error("schema: {0}")]
    Schema(String),
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file of an ltre index whose contents are wrong.
    #[error("{path}: {message}")]
    BadFile {
        /// The offending file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// Faiss failed.
    #[error("faiss: {0}")]
    Faiss(String),
    /// Invalid arguments supplied by the caller.
    #[error("{0}")]
    Invalid(String),
}

/// Result alias for tantivy-ltre.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Why a vector was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VectorError {
    /// The vector's length differs from the field's dimension.
    #[error("expected {expected} dimensions, got {got}")]
    WrongDimension {
        /// The field's dimension.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// A component is NaN or infinite.
    #[error("component {index} is {value} (NaN and infinities cannot be ranked)")]
    NotFinite {
        /// Position of the first bad component.
        index: usize,
        /// Its value.
        value: f32,
    },
    /// The field requires a vector on every document and this one has none.
    #[error("the dense field is required and the document has no vector")]
    Missing,
    /// A vector was given for a document that already carries one.
    #[error("the document already carries a vector for the dense field; give it once")]
    Duplicate,
    /// A raw payload whose byte length is not `4 * dim`.
    #[error("payload of {bytes} bytes is not {dim} little-endian f32")]
    BadPayload {
        /// The payload's length in bytes.
        bytes: usize,
        /// The field's dimension.
        dim: usize,
    },
}
