//! Writing one Parquet shard of document vectors: [`embed_corpus`].
use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use ltre_core::data::CorpusReader;
use ltre_core::manifest::Manifest;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::read::read_footer;
use super::{batch_of, keys, short, Shard, FORMAT_VERSION, ID_COLUMN, VECTOR_COLUMN};
use crate::embedder::{load_embedder, EmbedderOptions};
use crate::error::{Error, Result};
use crate::writer::TextEmbedder;

/// Rows per Parquet row group: bounds the writer's memory (about 100 MB at 384 dimensions).
const ROW_GROUP_ROWS: usize = 65_536;

/// Options of [`embed_corpus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedOptions {
    /// Exported model directory (`ltre-cli export-onnx`).
    pub model: PathBuf,
    /// Which shard to write (default: the whole corpus, `0/1`).
    pub shard: Shard,
    /// Texts per encoder batch; must equal the `batch_size` a direct index would use for the
    /// vectors to be bit-identical (`CorpusOptions::batch_size`, default 32).
    pub batch_size: usize,
    /// Documents per commit of a direct index (`CorpusOptions::commit_every`, default 2000):
    /// the batches restart at each commit there, so they do here.
    pub commit_every: usize,
    /// ONNX Runtime intra-op threads (0: all cores).
    pub threads: usize,
}

impl EmbedOptions {
    /// The defaults of `index_corpus` for `model`, whole corpus.
    pub fn new(model: impl Into<PathBuf>) -> EmbedOptions {
        EmbedOptions {
            model: model.into(),
            shard: Shard::default(),
            batch_size: 32,
            commit_every: 2000,
            threads: 0,
        }
    }
}

/// What [`embed_corpus`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedReport {
    /// The shard file.
    pub file: PathBuf,
    /// The shard.
    pub shard: Shard,
    /// Vectors in the file.
    pub documents: usize,
    /// The file already existed (complete, same model) and was left as it was.
    pub already_done: bool,
    /// Corpus lines skipped because their `_id` appeared on an earlier line (as the index does).
    pub duplicates: usize,
    /// Documents whose vector was not finite (not written; logged).
    pub refused: usize,
}

impl std::fmt::Display for EmbedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.already_done {
            return write!(
                f,
                "shard {} already written: {} ({} vectors); nothing to do",
                self.shard,
                self.file.display(),
                self.documents
            );
        }
        write!(
            f,
            "shard {}: wrote {} vectors to {} ({} duplicate ids skipped, {} refused)",
            self.shard,
            self.documents,
            self.file.display(),
            self.duplicates,
            self.refused
        )
    }
}

/// Embeds shard `options.shard` of the BEIR corpus `corpus` and writes it to
/// `out_dir/part-{i:05}-of-{n:05}.parquet` (see the [module docs](super) for the format and which
/// documents a shard holds); `progress` is called with the number of corpus lines handled.
///
/// The file is written to a hidden temporary sibling and renamed into place once complete, so a
/// killed run never leaves a file that looks complete, and rerunning the same command skips a
/// shard already written by the same model. `out_dir` holding shards of another model or of
/// another shard count is refused.
pub fn embed_corpus(
    corpus: &Path,
    out_dir: &Path,
    options: &EmbedOptions,
    mut progress: impl FnMut(usize),
) -> Result<EmbedReport> {
    let manifest = Manifest::load(&options.model)?;
    prepare_out_dir(out_dir, &options.model, &manifest, options.shard)?;
    let target = out_dir.join(options.shard.file_name());
    // Temporary files of a killed earlier run of this shard.
    ltre_core::fsutil::remove_stale_siblings(&target);
    if target.exists() {
        let footer = read_footer(&target)?;
        return Ok(EmbedReport {
            file: target,
            shard: options.shard,
            documents: footer.rows,
            already_done: true,
            duplicates: 0,
            refused: 0,
        });
    }
    let mut embedder = load_embedder(
        &options.model,
        EmbedderOptions {
            threads: options.threads,
            batch_size: options.batch_size.max(1),
        },
    )?;
    let tmp = ltre_core::fsutil::unique_sibling(&target, "tmp");
    let result = write_shard(
        corpus,
        &tmp,
        &mut *embedder,
        options,
        &manifest,
        &mut progress,
    )
    .and_then(|report| {
        std::fs::rename(&tmp, &target).map_err(|e| Error::io(&target, e))?;
        if let Ok(dir) = File::open(out_dir) {
            // Best effort: the rename survives a power loss.
            let _ = dir.sync_all();
        }
        Ok(report)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let (documents, duplicates, refused) = result?;
    Ok(EmbedReport {
        file: target,
        shard: options.shard,
        documents,
        already_done: false,
        duplicates,
        refused,
    })
}

/// Creates `out_dir`, and refuses it when it holds shards of another model, another dimension
/// or another shard count (mixing them would make a set that cannot be indexed).
fn prepare_out_dir(out_dir: &Path, model: &Path, manifest: &Manifest, shard: Shard) -> Result<()> {
    if out_dir.exists() && !out_dir.is_dir() {
        return Err(Error::Invalid(format!(
            "{}: is a file; --out names a directory of Parquet shards",
            out_dir.display()
        )));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let entries = std::fs::read_dir(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| super::is_shard_file(p))
        .collect();
    files.sort();
    for file in files {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(other) = Shard::parse_file_name(name) {
            if other.count() != shard.count() {
                return Err(Error::Invalid(format!(
                    "{}: this directory holds shards of a {}-way split, not {}; use the same n, or another --out directory",
                    file.display(),
                    other.count(),
                    shard.count()
                )));
            }
        }
        let footer = read_footer(&file)?;
        if footer.weights_sha256 != manifest.weights_sha256 || footer.dim != manifest.embedding_dim
        {
            return Err(Error::BadFile {
                path: file.clone(),
                message: format!(
                    "holds {}-d vectors of another model (weights sha256 {}) than {} ({}-d, weights sha256 {}); use another --out directory, or delete the old shards",
                    footer.dim,
                    short(&footer.weights_sha256),
                    model.display(),
                    manifest.embedding_dim,
                    short(&manifest.weights_sha256)
                ),
            });
        }
    }
    Ok(())
}

/// The Arrow schema of a shard of `dim`-d vectors.
pub(crate) fn shard_schema(dim: usize) -> Result<SchemaRef> {
    let dim = i32::try_from(dim)
        .map_err(|_| Error::Invalid(format!("dimension {dim} is too large for Parquet")))?;
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    Ok(Arc::new(Schema::new(vec![
        Field::new(ID_COLUMN, DataType::Utf8, false),
        Field::new(VECTOR_COLUMN, DataType::FixedSizeList(item, dim), false),
    ])))
}

/// Streams the shard's documents through the embedder into `path`; returns (written,
/// duplicates, refused).
fn write_shard(
    corpus: &Path,
    path: &Path,
    embedder: &mut dyn TextEmbedder,
    options: &EmbedOptions,
    manifest: &Manifest,
    progress: &mut impl FnMut(usize),
) -> Result<(usize, usize, usize)> {
    let dim = manifest.embedding_dim;
    if embedder.dim() != dim {
        return Err(Error::Invalid(format!(
            "{}: the encoder embeds {}-d vectors but the manifest says {dim}; re-export the model",
            options.model.display(),
            embedder.dim()
        )));
    }
    let schema = shard_schema(dim)?;
    let model_name = options
        .model
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let metadata = [
        (keys::FORMAT_VERSION, FORMAT_VERSION.to_string()),
        (keys::WEIGHTS_SHA256, manifest.weights_sha256.clone()),
        (keys::DIM, dim.to_string()),
        (keys::MODEL, model_name),
        (keys::SHARD, options.shard.to_string()),
        (keys::BATCH_SIZE, options.batch_size.max(1).to_string()),
        (keys::COMMIT_EVERY, options.commit_every.max(1).to_string()),
        (
            keys::PRODUCER,
            format!("ltre {}", env!("CARGO_PKG_VERSION")),
        ),
    ];
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(
            metadata
                .into_iter()
                .map(|(k, v)| KeyValue::new(k.to_string(), v))
                .collect(),
        ))
        .build();
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let parquet = |e: parquet::errors::ParquetError| Error::BadFile {
        path: path.to_path_buf(),
        message: format!("cannot write Parquet: {e}"),
    };
    let mut writer =
        ArrowWriter::try_new(file, schema.clone(), Some(properties)).map_err(parquet)?;
    let reader = CorpusReader::open(corpus)?;
    let mut seen: HashSet<String> = HashSet::new();
    let (mut position, mut written, mut duplicates, mut refused) = (0usize, 0, 0, 0);
    // (id, text) of the current batch, when it belongs to this shard.
    let mut pending: Vec<(String, String)> = Vec::new();
    let mut current_batch = 0usize;
    let mut flush =
        |pending: &mut Vec<(String, String)>, writer: &mut ArrowWriter<File>| -> Result<()> {
            if pending.is_empty() {
                return Ok(());
            }
            let pending = std::mem::take(pending);
            let texts: Vec<&str> = pending.iter().map(|(_, t)| t.as_str()).collect();
            let embeddings = embedder.embed_documents(&texts)?;
            if embeddings.nrows() != pending.len() || embeddings.ncols() != dim {
                return Err(Error::Invalid(format!(
                    "the encoder returned a {}x{} matrix for {} texts of dimension {dim}",
                    embeddings.nrows(),
                    embeddings.ncols(),
                    pending.len()
                )));
            }
            let (mut ids, mut values) = (Vec::with_capacity(pending.len()), Vec::new());
            for ((id, _), row) in pending.iter().zip(embeddings.rows()) {
                if let Some(bad) = row.iter().position(|x| !x.is_finite()) {
                    tracing::warn!(
                        "document `{id}` refused: component {bad} of its vector is not finite"
                    );
                    refused += 1;
                    continue;
                }
                ids.push(id.as_str());
                values.extend(row.iter().copied());
            }
            if ids.is_empty() {
                return Ok(());
            }
            written += ids.len();
            let batch = record_batch(&schema, dim, ids, values)?;
            writer.write(&batch).map_err(parquet)
        };
    for doc in reader {
        let doc = doc.map_err(|e| {
            Error::Invalid(format!(
                "{e}; nothing was written for shard {}: fix the line and rerun the same command",
                options.shard
            ))
        })?;
        progress(1);
        if !seen.insert(doc.id.clone()) {
            duplicates += 1;
            continue;
        }
        let batch = batch_of(position, options.batch_size, options.commit_every);
        position += 1;
        if batch != current_batch {
            flush(&mut pending, &mut writer)?;
            current_batch = batch;
        }
        if options.shard.holds_batch(batch) {
            let text = doc.dense_text();
            pending.push((doc.id, text));
        }
    }
    flush(&mut pending, &mut writer)?;
    let file = writer.into_inner().map_err(parquet)?;
    file.sync_all().map_err(|e| Error::io(path, e))?;
    Ok((written, duplicates, refused))
}

/// One record batch of the shard schema.
pub(crate) fn record_batch(
    schema: &SchemaRef,
    dim: usize,
    ids: Vec<&str>,
    values: Vec<f32>,
) -> Result<RecordBatch> {
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let vectors =
        FixedSizeListArray::try_new(item, dim as i32, Arc::new(Float32Array::from(values)), None)
            .map_err(|e| Error::Invalid(format!("vector column: {e}")))?;
    let columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(ids)), Arc::new(vectors)];
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::Invalid(format!("record batch: {e}")))
}
