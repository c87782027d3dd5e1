//! The layout of an ltre index directory and its query encoders.
//!
//! ```text
//! INDEX/                 the Tantivy index (meta.json, segment files with .ltrevec/.ltreann)
//! INDEX/ltre.json        IndexConfig: dense field, dimension, document encoder, text fields, BM25
//! INDEX/encoders/<id>/   exported model directories (`encoders/base` = the document encoder,
//!                        copied at index time; trained query encoders get other ids)
//! INDEX/encoders/ACTIVE  the id of the query encoder in use (one line, replaced atomically)
//! ```
//!
//! Documents are always embedded by `encoders/base`: LTRe trains only the query tower, so the
//! stored vectors stay valid whichever query encoder is active.
use std::path::{Path, PathBuf};

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
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// The encoders stored in an index directory.
#[derive(Debug, Clone)]
pub struct EncoderStore {
    dir: PathBuf,
}

fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "encoder id `{id}`: use letters, digits, `-`, `_` and `.` only"
        )))
    }
}

impl EncoderStore {
    /// The store of the index at `index_dir`.
    pub fn new(index_dir: &Path) -> EncoderStore {
        EncoderStore {
            dir: index_dir.join(ENCODERS_DIR),
        }
    }

    /// The directory of encoder `id` (whether or not it exists).
    pub fn encoder_dir(&self, id: &str) -> Result<PathBuf> {
        check_id(id)?;
        Ok(self.dir.join(id))
    }

    /// Copies the exported model directory `model_dir` to `encoders/<id>` (replacing it).
    pub fn install(&self, id: &str, model_dir: &Path) -> Result<PathBuf> {
        let target = self.encoder_dir(id)?;
        if !model_dir.is_dir() {
            return Err(Error::Invalid(format!(
                "{}: not a model directory",
                model_dir.display()
            )));
        }
        let staging = self.dir.join(format!(".{id}.partial"));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        }
        copy_dir(model_dir, &staging)?;
        if target.exists() {
            std::fs::remove_dir_all(&target).map_err(|e| Error::io(&target, e))?;
        }
        std::fs::rename(&staging, &target).map_err(|e| Error::io(&target, e))?;
        Ok(target)
    }

    /// The ids of the stored encoders, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !name.starts_with('.') {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The id of the active query encoder (`encoders/ACTIVE`).
    pub fn active_id(&self) -> Result<String> {
        let path = self.dir.join(ACTIVE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let id = text.trim().to_string();
        check_id(&id).map_err(|e| Error::BadFile {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(id)
    }

    /// The directory of the active query encoder.
    pub fn active_dir(&self) -> Result<PathBuf> {
        let id = self.active_id()?;
        let dir = self.encoder_dir(&id)?;
        if !dir.is_dir() {
            return Err(Error::BadFile {
                path: self.dir.join(ACTIVE_FILE),
                message: format!("active encoder `{id}` has no directory {}", dir.display()),
            });
        }
        Ok(dir)
    }

    /// Makes `id` the active query encoder (atomically).
    pub fn set_active(&self, id: &str) -> Result<()> {
        let dir = self.encoder_dir(id)?;
        if !dir.is_dir() {
            return Err(Error::Invalid(format!(
                "no encoder `{id}` in {}",
                self.dir.display()
            )));
        }
        write_atomically(&self.dir.join(ACTIVE_FILE), format!("{id}\n").as_bytes())
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let entry = entry.map_err(|e| Error::io(from, e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(|e| Error::io(&src, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_activate_and_resolve() {
        let root = tempfile::tempdir().unwrap();
        let model = root.path().join("model");
        std::fs::create_dir_all(model.join("sub")).unwrap();
        std::fs::write(model.join("manifest.json"), "{}").unwrap();
        std::fs::write(model.join("sub/x"), "y").unwrap();
        let index = root.path().join("index");
        std::fs::create_dir_all(&index).unwrap();
        let store = EncoderStore::new(&index);
        assert!(store.active_id().is_err());
        store.install(BASE_ENCODER, &model).unwrap();
        store.set_active(BASE_ENCODER).unwrap();
        assert_eq!(store.active_id().unwrap(), "base");
        assert_eq!(
            std::fs::read_to_string(store.active_dir().unwrap().join("sub/x")).unwrap(),
            "y"
        );
        assert!(store.set_active("missing").is_err());
        assert!(store.encoder_dir("../evil").is_err());
        store.install("ltre-1", &model).unwrap();
        assert_eq!(store.list().unwrap(), vec!["base", "ltre-1"]);
    }

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
