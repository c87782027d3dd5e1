//! An existing Tantivy index gains the dense field: [`add_dense_field_to_index`].
//!
//! Tantivy fixes an index's schema and plugin set when it is created, so the dense field cannot
//! be added in place. This module builds a **new** index whose schema is the old one plus the
//! dense field (same index settings), copies every alive document's stored fields and embeds the
//! concatenation of the named stored text fields with the model, which becomes the index's base
//! encoder. The result is a full ltre index (`ltre.json`, `encoders/base` with the
//! document-vector checksum): [`crate::index::LtreIndex`], evaluation and training work on it.
//!
//! - The old index is only read (opened without a writer; nothing in it changes).
//! - The new index is complete or absent: it is built in a hidden sibling directory, verified
//!   (same number of documents, same stored fields) and only then renamed into place. An
//!   existing non-empty destination is refused.
//! - Fields that are indexed or fast but not stored cannot be rebuilt from the old index: they
//!   are refused by name unless [`MigrateOptions::drop_unstored`] drops them from the schema.
//! - Tokenizers: Tantivy's defaults (`default`, `raw`, `en_stem`, `whitespace`) are known; an
//!   index using custom tokenizers needs them in [`MigrateOptions::tokenizers`], and an
//!   application opening the new index must register them again (Tantivy does not persist
//!   tokenizers).
//!
//! ```no_run
//! # fn main() -> tantivy_ltre::Result<()> {
//! use tantivy_ltre::migrate::{add_dense_field_to_index, MigrateOptions};
//! let options = MigrateOptions {
//!     text_fields: vec!["title".into(), "body".into()],
//!     ..MigrateOptions::new("models/all-MiniLM-L6-v2-onnx")
//! };
//! let report = add_dense_field_to_index("app-index".as_ref(), "app-index-dense".as_ref(), &options, |_| {})?;
//! println!("{} documents copied and embedded", report.documents);
//! # Ok(())
//! # }
//! ```
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tantivy::schema::{FieldType, NamedFieldDocument, OwnedValue, Schema};
use tantivy::tokenizer::TokenizerManager;
use tantivy::{DocAddress, Document, Index, IndexWriter, ReloadPolicy, Searcher, TantivyDocument};

use crate::ann::AnnOptions;
use crate::corpus::{ensure_empty_dir, install_base_encoder, record_base_encoder, threads};
use crate::embedder::{load_embedder, EmbedderOptions};
use crate::error::{Error, Result};
use crate::field::{add_dense_field, DenseField, DenseFieldOptions};
use crate::layout::{Bm25Config, IndexConfig, BASE_ENCODER, FORMAT_VERSION};
use crate::lexical::IdField;
use crate::writer::{DenseIndexWriter, EmbeddingWriter};

/// Options of [`add_dense_field_to_index`].
#[derive(Clone)]
pub struct MigrateOptions {
    /// Exported model directory that embeds the documents (installed as the base encoder).
    pub model: PathBuf,
    /// Stored text fields whose values, concatenated in this order, are embedded.
    pub text_fields: Vec<String>,
    /// Name of the new dense field.
    pub dense_field: String,
    /// The external id field (`STRING | FAST` text); `None`: `id` if the schema has one.
    pub id_field: Option<String>,
    /// Fields BM25 searches (`ltre.json`); `None`: the indexed ones among `text_fields`.
    pub bm25_fields: Option<Vec<String>>,
    /// Drop indexed-or-fast but unstored fields from the new schema instead of refusing.
    pub drop_unstored: bool,
    /// Texts per encoder call.
    pub batch_size: usize,
    /// Encoder and indexing threads (0: all cores).
    pub threads: usize,
    /// Documents per commit of the new index.
    pub commit_every: usize,
    /// A Faiss index per large segment of the new index.
    pub ann: Option<AnnOptions>,
    /// The old index's tokenizers, when it uses custom ones (default: Tantivy's).
    pub tokenizers: Option<TokenizerManager>,
}

impl MigrateOptions {
    /// Defaults with `model`: dense field `embedding`, id field detected, batches of 32.
    pub fn new(model: impl Into<PathBuf>) -> MigrateOptions {
        MigrateOptions {
            model: model.into(),
            text_fields: Vec::new(),
            dense_field: crate::corpus::DENSE_FIELD.into(),
            id_field: None,
            bm25_fields: None,
            drop_unstored: false,
            batch_size: 32,
            threads: 0,
            commit_every: 10_000,
            ann: None,
            tokenizers: None,
        }
    }
}

/// What [`add_dense_field_to_index`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// Documents copied, embedded and verified.
    pub documents: usize,
    /// The embedding dimension.
    pub dim: usize,
    /// Unstored fields dropped ([`MigrateOptions::drop_unstored`]).
    pub dropped_fields: Vec<String>,
    /// The id field recorded in `ltre.json`.
    pub id_field: String,
}

/// Builds at `new_dir` a copy of the Tantivy index at `old_dir` with a dense field holding the
/// embeddings of `options.text_fields`; `progress` is called with the number of documents
/// copied since its last call. See the [module documentation](self).
pub fn add_dense_field_to_index(
    old_dir: &Path,
    new_dir: &Path,
    options: &MigrateOptions,
    mut progress: impl FnMut(usize),
) -> Result<MigrateReport> {
    // The old index is only read: the new one may be neither it nor inside it.
    if let (Ok(old), Ok(new)) = (old_dir.canonicalize(), std::path::absolute(new_dir)) {
        if new.starts_with(&old) || new_dir.canonicalize().is_ok_and(|n| n == old) {
            return Err(Error::Invalid(format!(
                "{}: the new index must be outside the old one ({})",
                new_dir.display(),
                old_dir.display()
            )));
        }
    }
    let mut old = Index::open_in_dir(old_dir).map_err(|e| {
        Error::Invalid(format!(
            "{}: cannot open the Tantivy index: {e}",
            old_dir.display()
        ))
    })?;
    if let Some(tokenizers) = &options.tokenizers {
        old.set_tokenizers(tokenizers.clone());
    }
    let plan = Plan::new(&old, options)?;
    // Manual reloads: no watcher on the old directory.
    let reader = old
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()?;
    let old_searcher = reader.searcher();
    let mut embedder = load_embedder(
        &options.model,
        EmbedderOptions {
            threads: threads(options.threads),
            batch_size: options.batch_size,
        },
    )?;
    let dim = embedder.dim();
    ensure_empty_dir(new_dir)?;
    let mut failure = None;
    // Built in a hidden sibling and renamed into place once verified.
    let built = ltre_core::fsutil::replace_dir_atomically(new_dir, |tmp| {
        build(
            tmp,
            &old,
            &old_searcher,
            &plan,
            &mut embedder,
            options,
            &mut progress,
        )
        .map_err(|e| {
            let message = e.to_string();
            failure = Some(e);
            ltre_core::Error::Invalid(message)
        })
    });
    let documents = match built {
        Ok(documents) => documents,
        Err(e) => return Err(failure.take().unwrap_or(Error::Core(e))),
    };
    Ok(MigrateReport {
        documents,
        dim,
        dropped_fields: plan.dropped,
        id_field: plan.id_field,
    })
}

/// The schema decisions, checked before anything is written.
struct Plan {
    schema: Schema,
    dropped: Vec<String>,
    id_field: String,
    bm25_fields: Vec<String>,
    analyzer: String,
}

impl Plan {
    fn new(old: &Index, options: &MigrateOptions) -> Result<Plan> {
        let schema = old.schema();
        if schema.get_field(&options.dense_field).is_ok() {
            return Err(Error::Invalid(format!(
                "the old index already has a field `{}`; choose another dense field name",
                options.dense_field
            )));
        }
        if options.text_fields.is_empty() {
            return Err(Error::Invalid(
                "name the stored text fields to embed (--text-fields a,b)".into(),
            ));
        }
        for name in &options.text_fields {
            let field = schema.get_field(name).map_err(|_| {
                Error::Invalid(format!("the old index has no field `{name}` to embed"))
            })?;
            let entry = schema.get_field_entry(field);
            if !entry.is_stored() || !matches!(entry.field_type(), FieldType::Str(_)) {
                return Err(Error::Invalid(format!(
                    "field `{name}` is not a stored text field: its text cannot be read back to embed it"
                )));
            }
        }
        let mut builder = Schema::builder();
        let mut dropped = Vec::new();
        let mut unstored = Vec::new();
        for (_, entry) in schema.fields() {
            if !entry.is_stored() && (entry.is_indexed() || entry.is_fast()) {
                unstored.push(entry.name().to_string());
                if options.drop_unstored {
                    dropped.push(entry.name().to_string());
                    continue;
                }
            }
            if let FieldType::Str(text) = entry.field_type() {
                if let Some(indexing) = text.get_indexing_options() {
                    if old.tokenizers().get(indexing.tokenizer()).is_none() {
                        return Err(Error::Invalid(format!(
                            "field `{}` uses the tokenizer `{}`, unknown here: register it in MigrateOptions::tokenizers",
                            entry.name(),
                            indexing.tokenizer()
                        )));
                    }
                }
            }
            builder.add_field(entry.clone());
        }
        if !unstored.is_empty() && !options.drop_unstored {
            return Err(Error::Invalid(format!(
                "indexed or fast fields that are not stored cannot be rebuilt (their values cannot be read back): `{}`; store them in the old index, or drop them (--drop-unstored, MigrateOptions::drop_unstored)",
                unstored.join("`, `")
            )));
        }
        let mut dense = DenseFieldOptions::new(1).required();
        if let Some(ann) = &options.ann {
            dense = dense.with_ann(ann.clone());
        }
        // The dimension is patched in `build`, once the model is loaded.
        add_dense_field(&mut builder, &options.dense_field, &dense);
        let new_schema = builder.build();
        let id_field = options.id_field.clone().unwrap_or_else(|| "id".into());
        IdField::new(&new_schema, &id_field).map_err(|e| {
            Error::Invalid(format!(
                "{e}; an ltre index needs an external id field: name a STRING | FAST text field with --id-field (MigrateOptions::id_field)"
            ))
        })?;
        let bm25_fields = match &options.bm25_fields {
            Some(fields) => fields.clone(),
            None => options
                .text_fields
                .iter()
                .filter(|name| {
                    new_schema
                        .get_field(name)
                        .is_ok_and(|f| new_schema.get_field_entry(f).is_indexed())
                })
                .cloned()
                .collect(),
        };
        let mut analyzer = String::from("default");
        for name in &bm25_fields {
            let field = new_schema.get_field(name).map_err(|_| {
                Error::Invalid(format!("BM25 field `{name}` is not in the new schema"))
            })?;
            if let FieldType::Str(text) = new_schema.get_field_entry(field).field_type() {
                if let Some(indexing) = text.get_indexing_options() {
                    analyzer = indexing.tokenizer().to_string();
                }
            }
        }
        Ok(Plan {
            schema,
            dropped,
            id_field,
            bm25_fields,
            analyzer,
        })
    }

    /// The new schema: the kept old fields in their order, then the `dim`-d dense field.
    fn new_schema(&self, options: &MigrateOptions, dim: usize) -> Schema {
        let mut builder = Schema::builder();
        for (_, entry) in self.schema.fields() {
            if !self.dropped.iter().any(|d| d == entry.name()) {
                builder.add_field(entry.clone());
            }
        }
        let mut dense = DenseFieldOptions::new(dim).required();
        if let Some(ann) = &options.ann {
            dense = dense.with_ann(ann.clone());
        }
        add_dense_field(&mut builder, &options.dense_field, &dense);
        builder.build()
    }

    /// A stored document of the old index, without the dropped fields.
    fn named(&self, doc: &TantivyDocument) -> NamedFieldDocument {
        let mut named = doc.to_named_doc(&self.schema);
        for name in &self.dropped {
            named.0.remove(name);
        }
        named
    }
}

/// The text embedded for a document: its `text_fields` values, a period between fields.
fn dense_text(named: &BTreeMap<String, Vec<OwnedValue>>, text_fields: &[String]) -> String {
    let mut out = String::new();
    for name in text_fields {
        for value in named.get(name).into_iter().flatten() {
            let OwnedValue::Str(text) = value else {
                continue;
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push_str(if out.ends_with(['.', '?', '!', ':']) {
                    " "
                } else {
                    ". "
                });
            }
            out.push_str(text);
        }
    }
    out
}

/// Fills `dir` with the new index and returns its number of documents.
fn build(
    dir: &Path,
    old: &Index,
    old_searcher: &Searcher,
    plan: &Plan,
    embedder: &mut Box<dyn crate::writer::TextEmbedder>,
    options: &MigrateOptions,
    progress: &mut impl FnMut(usize),
) -> Result<usize> {
    if let Some(ann) = &options.ann {
        ann.validate(embedder.dim())?;
    }
    let schema = plan.new_schema(options, embedder.dim());
    let dense = DenseField::from_schema(&schema)?;
    let mut builder = Index::builder()
        .schema(schema.clone())
        .settings(old.settings().clone())
        .register_plugin(dense.plugin());
    if let Some(tokenizers) = &options.tokenizers {
        builder = builder.tokenizers(tokenizers.clone());
    }
    let index = builder.create_in_dir(dir)?;
    let workers = threads(options.threads).min(8);
    let writer: IndexWriter = index.writer_with_num_threads(workers, 50_000_000 * workers)?;
    let mut writer = DenseIndexWriter::new(writer, dense.clone());
    let commit_every = options.commit_every.max(1);
    let batch_size = options.batch_size.max(1);
    let mut since_commit = 0;
    let mut refused = 0;
    for (ord, segment) in old_searcher.segment_readers().iter().enumerate() {
        let mut embedding = EmbeddingWriter::new(&writer, &mut **embedder, batch_size);
        let mut in_batch = 0;
        for doc_id in segment.doc_ids_alive() {
            let doc: TantivyDocument = old_searcher.doc(DocAddress::new(ord as u32, doc_id))?;
            let named = plan.named(&doc);
            let text = dense_text(&named.0, &options.text_fields);
            let copy = TantivyDocument::convert_named_doc(&schema, named)
                .map_err(|e| Error::Invalid(format!("segment {ord}, document {doc_id}: {e}")))?;
            embedding.add(copy, text)?;
            in_batch += 1;
            if in_batch == batch_size {
                progress(in_batch);
                in_batch = 0;
            }
        }
        refused += embedding.finish()?.rejected.len();
        progress(in_batch);
        since_commit += segment.num_docs() as usize;
        if since_commit >= commit_every {
            writer.commit()?;
            since_commit = 0;
        }
    }
    writer.commit()?;
    writer.into_inner().wait_merging_threads()?;
    if refused > 0 {
        return Err(Error::Invalid(format!(
            "{refused} documents got an invalid vector from the model; nothing was written"
        )));
    }
    let documents = verify(old_searcher, plan, &index, &options.dense_field)?;
    IndexConfig {
        format_version: FORMAT_VERSION,
        id_field: plan.id_field.clone(),
        dense_field: Some(options.dense_field.clone()),
        dim: dense.dim(),
        document_encoder: Some(BASE_ENCODER.into()),
        dense_text: options
            .text_fields
            .iter()
            .map(|f| format!("{{{f}}}"))
            .collect::<Vec<_>>()
            .join(". "),
        text_fields: plan.bm25_fields.clone(),
        bm25: Bm25Config {
            k1: 1.2,
            b: 0.75,
            analyzer: plan.analyzer.clone(),
        },
    }
    .save(dir)?;
    install_base_encoder(dir, &options.model)?;
    record_base_encoder(
        dir,
        &index,
        &dense,
        &plan.id_field,
        "document encoder (migrated index)",
    )?;
    Ok(documents)
}

/// Checks that the new index holds exactly the old alive documents' kept stored fields
/// (compared as a multiset of digests, whatever the order), and returns their number.
fn verify(old_searcher: &Searcher, plan: &Plan, new: &Index, dense_field: &str) -> Result<usize> {
    let digest = |named: &NamedFieldDocument| -> Result<[u8; 32]> {
        let json = serde_json::to_vec(named).map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(Sha256::digest(&json).into())
    };
    let mut expected = Vec::new();
    for (ord, segment) in old_searcher.segment_readers().iter().enumerate() {
        for doc_id in segment.doc_ids_alive() {
            let doc: TantivyDocument = old_searcher.doc(DocAddress::new(ord as u32, doc_id))?;
            expected.push(digest(&plan.named(&doc))?);
        }
    }
    let new_schema = new.schema();
    let new_searcher = new.reader()?.searcher();
    let mut found = Vec::new();
    for (ord, segment) in new_searcher.segment_readers().iter().enumerate() {
        for doc_id in segment.doc_ids_alive() {
            let doc: TantivyDocument = new_searcher.doc(DocAddress::new(ord as u32, doc_id))?;
            let mut named = doc.to_named_doc(&new_schema);
            named.0.remove(dense_field);
            found.push(digest(&named)?);
        }
    }
    if expected.len() != found.len() {
        return Err(Error::Invalid(format!(
            "verification failed: the old index has {} documents, the new one {}; nothing was written",
            expected.len(),
            found.len()
        )));
    }
    expected.sort_unstable();
    found.sort_unstable();
    if expected != found {
        return Err(Error::Invalid(
            "verification failed: stored fields differ between the old and the new index; nothing was written".into(),
        ));
    }
    Ok(found.len())
}
