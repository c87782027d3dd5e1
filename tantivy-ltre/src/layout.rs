//! The layout of an ltre index directory: the file names and `ltre.json` ([`IndexConfig`]).
//!
//! ```text
//! INDEX/                 the Tantivy index (meta.json, segment files with .ltrevec/.ltreann)
//! INDEX/ltre.json        IndexConfig: dense field, dimension, document encoder, text fields, BM25
//! INDEX/encoders/<id>/   exported model directories (see crate::registry)
//! INDEX/encoders/ACTIVE  the id of the query encoder in use
//! INDEX/encoders/HISTORY activations and rollbacks
//! ```
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// File name of the index configuration.
pub const CONFIG_FILE: &str = "ltre.json";
/// Directory of the encoders inside an index.
pub const ENCODERS_DIR: &str = "encoders";
/// File naming the active query encoder.
pub const ACTIVE_FILE: &str = "ACTIVE";
/// Id of the encoder the documents were embedded with.
pub const BASE_ENCODER: &str = "base";
/// File of an encoder's [`EncoderRecord`](crate::registry::EncoderRecord), inside its directory.
pub const RECORD_FILE: &str = "encoder.json";
/// Activation log (JSON lines of [`HistoryEntry`](crate::registry::HistoryEntry)).
pub const HISTORY_FILE: &str = "HISTORY";
/// Prefix of the ids given by [`EncoderStore::install_version`](crate::registry::EncoderStore::install_version).
pub const VERSION_PREFIX: &str = "ltre-";
/// Current [`IndexConfig::format_version`].
pub const FORMAT_VERSION: u32 = 1;

/// BM25 settings of the lexical side, recorded for reproducibility.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bm25Config {
    /// Term-frequency saturation (Tantivy's is fixed at 1.2).
    pub k1: f32,
    /// Length normalisation (Tantivy's is fixed at 0.75).
    pub b: f32,
    /// Tantivy tokenizer name of the text fields (`default`, `en_stem`...).
    pub analyzer: String,
}

/// `INDEX/ltre.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexConfig {
    /// Format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Name of the document id field (stored, fast, untokenized).
    pub id_field: String,
    /// Name of the dense field, `None` for a lexical-only index.
    pub dense_field: Option<String>,
    /// Vector dimension (0 without a dense field).
    pub dim: usize,
    /// Id of the document encoder under `encoders/` ([`BASE_ENCODER`]).
    pub document_encoder: Option<String>,
    /// How the dense text of a document is built, e.g. `"{title}. {text}"`.
    pub dense_text: String,
    /// Lexical fields searched by BM25 queries.
    pub text_fields: Vec<String>,
    /// BM25 settings.
    pub bm25: Bm25Config,
}

impl IndexConfig {
    /// Reads `INDEX/ltre.json`.
    pub fn load(index_dir: &Path) -> Result<IndexConfig> {
        let path = index_dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::BadFile {
                    path: path.clone(),
                    message: "not an ltre index (no ltre.json); build one with `ltre-cli index`"
                        .into(),
                }
            } else {
                Error::io(&path, e)
            }
        })?;
        let config: IndexConfig = serde_json::from_str(&text).map_err(|e| Error::BadFile {
            path: path.clone(),
            message: format!("invalid ltre.json: {e}"),
        })?;
        if config.format_version != FORMAT_VERSION {
            return Err(Error::BadFile {
                path,
                message: format!(
                    "format version {} but this build reads {FORMAT_VERSION}; rebuild the index",
                    config.format_version
                ),
            });
        }
        Ok(config)
    }

    /// Writes `INDEX/ltre.json` atomically.
    pub fn save(&self, index_dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Invalid(e.to_string()))?;
        write_atomically(&index_dir.join(CONFIG_FILE), text.as_bytes())
    }
}

/// Replaces `path` with `bytes` through a temporary file and a rename, so readers see either
/// the old or the new contents.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(ltre_core::params::write_atomic(path, bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let config = IndexConfig {
            format_version: FORMAT_VERSION,
            id_field: "id".into(),
            dense_field: Some("embedding".into()),
            dim: 384,
            document_encoder: Some(BASE_ENCODER.into()),
            dense_text: "{title}. {text}".into(),
            text_fields: vec!["title".into(), "text".into()],
            bm25: Bm25Config {
                k1: 1.2,
                b: 0.75,
                analyzer: "en_stem".into(),
            },
        };
        config.save(dir.path()).unwrap();
        assert_eq!(IndexConfig::load(dir.path()).unwrap(), config);
        let err = IndexConfig::load(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ltre-cli index"), "{err}");
    }
}
