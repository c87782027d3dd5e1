//! The crate's error type. Every variant says what failed and, where it can, what to do.
use std::path::PathBuf;

/// Errors from ltre-core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file that exists but whose contents are wrong (bad JSON, missing field, bad line...).
    #[error("{path}: {message}")]
    BadFile {
        /// The offending file.
        path: PathBuf,
        /// What is wrong, with the line or field where known, and what to do.
        message: String,
    },
    /// A checkpoint that is not a usable BERT (missing tensor, wrong shape, other architecture).
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// The tensor or field at fault and what is wrong with it.
        message: String,
    },
    /// ONNX Runtime could not be found or failed.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// A graph-building or autodiff error (a bug in ltre or an unsupported op).
    #[error("graph: {0}")]
    Graph(String),
    /// Invalid arguments or configuration supplied by the caller.
    #[error("{0}")]
    Invalid(String),
    /// Faiss failed.
    #[error("faiss: {0}")]
    Faiss(String),
}

/// Result alias for ltre-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    /// A content error in a file.
    pub fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl From<ort::Error> for Error {
    fn from(e: ort::Error) -> Self {
        Error::Runtime(e.to_string())
    }
}
