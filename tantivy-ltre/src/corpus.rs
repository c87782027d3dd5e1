//! Indexing a BEIR `corpus.jsonl` as a library call: [`index_corpus`] builds (or resumes) the
//! ltre index that `ltre-cli index` builds.
//!
//! Schema: `id` (`STRING | STORED | FAST`), `title` and `text` (stored, analysed by
//! [`CorpusOptions::analyzer`]), `contents` (title and text in one indexed field, as Anserini
//! indexes BEIR) and, with a model, the dense field `embedding` holding the model's embedding of
//! `"{title}. {text}"` (see `ltre_core::data::Doc::dense_text`). BM25 is Tantivy's (k1 = 1.2,
//! b = 0.75); with `en_stem` on `contents`, SciFact test gives nDCG@10 0.668 (BEIR's BM25: 0.665).
//!
//! Document ids are unique: a corpus line repeating an earlier `_id` is refused and reported
//! ([`CorpusReport::duplicates`]). Indexing is resumable: documents are committed every
//! [`CorpusOptions::commit_every`] documents, and a rerun on an existing index skips the ids it
//! already holds, after checking that the committed vectors are unchanged and that `--model` is
//! the index's base encoder. The model is
//! installed as the base encoder (`encoders/base`, active) and its record gets the checksum of
//! the document vectors.
//!
//! With [`CorpusOptions::vectors`], the document vectors come from a directory of Parquet shards
//! (see [`crate::vectors`]: `ltre-cli embed --corpus`, or a Ray/Spark job) instead of the
//! encoder; `model` must be the model that wrote them (checked by its weights' sha256), and is
//! still installed as the base encoder (it embeds the queries). Every corpus document must have
//! a vector: otherwise the run is refused before anything is written, naming examples, unless
//! [`CorpusOptions::skip_missing_vectors`] asks to leave those documents out (counted in
//! [`CorpusReport::missing_vectors`]; a rerun with their vectors adds them). Vectors of ids not
//! in the corpus are ignored and counted ([`CorpusReport::extra_vectors`]). The index, its
//! commit tallies and its recorded checksum are the same as a direct run's with the same vectors.
//!
//! ```no_run
//! # fn main() -> tantivy_ltre::Result<()> {
//! use tantivy_ltre::corpus::{index_corpus, CorpusOptions};
//! let options = CorpusOptions {
//!     model: Some("models/all-MiniLM-L6-v2-onnx".into()),
//!     ..CorpusOptions::default()
//! };
//! let report = index_corpus("scifact-index".as_ref(), "scifact/corpus.jsonl".as_ref(), &options, |_| {})?;
//! println!("{} added, {} skipped, {} refused", report.added, report.skipped, report.refused);
//! # Ok(())
//! # }
//! ```
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use ltre_core::data::{CorpusReader, Doc};
use ndarray::Array2;
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, STORED, STRING,
};
use tantivy::{Index, IndexWriter, TantivyDocument};

use crate::ann::AnnOptions;
use crate::checksum::document_vectors_sha256;
use crate::corpus_resume::{
    check_same_model, clear_interrupted_creation, is_interrupted_creation, testing_hooks,
    verify_committed_vectors, VectorTally,
};
use crate::embedder::{load_embedder, EmbedderOptions};
use crate::error::{Error, Result};
use crate::field::{add_dense_field, DenseField, DenseFieldOptions};
use crate::layout::{
    Bm25Config, IndexConfig, ACTIVE_FILE, BASE_ENCODER, CONFIG_FILE, ENCODERS_DIR, FORMAT_VERSION,
};
use crate::registry::EncoderStore;
use crate::vectors::{add_precomputed, join_corpus, VectorSet};
use crate::writer::{DenseIndexWriter, EmbeddingWriter, TextEmbedder};

/// The id field of a corpus index.
pub const ID_FIELD: &str = "id";
/// The title field.
pub const TITLE_FIELD: &str = "title";
/// The body field.
pub const TEXT_FIELD: &str = "text";
/// Title and text in one indexed field; BM25 searches it by default.
pub const CONTENTS_FIELD: &str = "contents";
/// The dense field.
pub const DENSE_FIELD: &str = "embedding";

/// Options of [`index_corpus`].
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusOptions {
    /// Exported model directory embedding the documents; `None`: a lexical-only index.
    pub model: Option<PathBuf>,
    /// Texts per encoder call.
    pub batch_size: usize,
    /// Encoder and indexing threads (0: all cores).
    pub threads: usize,
    /// Tantivy tokenizer of the BM25 fields (`en_stem` or `default`).
    pub analyzer: String,
    /// Fields BM25 searches by default: `contents`, or `title` and `text`.
    pub bm25_fields: Vec<String>,
    /// Documents per commit (the resume granularity); at least 1.
    pub commit_every: usize,
    /// A Faiss index per large segment.
    pub ann: Option<AnnOptions>,
    /// A directory of Parquet vector shards ([`crate::vectors`]) to index instead of embedding
    /// the documents with `model` (which must be the model that wrote them).
    pub vectors: Option<PathBuf>,
    /// With `vectors`: leave out the corpus documents that have no vector (reported) instead of
    /// refusing the run.
    pub skip_missing_vectors: bool,
}

impl Default for CorpusOptions {
    fn default() -> Self {
        CorpusOptions {
            model: None,
            batch_size: 32,
            threads: 0,
            analyzer: "en_stem".into(),
            bm25_fields: vec![CONTENTS_FIELD.into()],
            commit_every: 2000,
            ann: None,
            vectors: None,
            skip_missing_vectors: false,
        }
    }
}

/// What [`index_corpus`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorpusReport {
    /// Documents added.
    pub added: usize,
    /// Documents skipped because their id was already indexed.
    pub skipped: usize,
    /// Documents refused (an invalid vector; logged).
    pub refused: usize,
    /// Corpus lines refused because their `_id` appeared on an earlier line: document ids are
    /// unique in an ltre index, and the first occurrence wins (it may already be committed).
    pub duplicates: usize,
    /// The first few refused repeats.
    pub duplicate_examples: Vec<DuplicateId>,
    /// The BM25 analyzer of the index.
    pub analyzer: String,
    /// With [`CorpusOptions::vectors`]: documents left out for want of a vector (only with
    /// [`CorpusOptions::skip_missing_vectors`]; otherwise such a run is refused).
    pub missing_vectors: usize,
    /// The first few of them.
    pub missing_vector_examples: Vec<String>,
    /// With [`CorpusOptions::vectors`]: vectors whose id is not in the corpus (ignored).
    pub extra_vectors: usize,
    /// The first few of them.
    pub extra_vector_examples: Vec<String>,
}

/// A corpus line whose `_id` was already used by an earlier line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateId {
    /// The repeated id.
    pub id: String,
    /// The 1-based line of the refused repeat.
    pub line: usize,
    /// The 1-based line of the occurrence that was indexed.
    pub first_line: usize,
}

/// How many [`DuplicateId`]s a report keeps.
const DUPLICATE_EXAMPLES: usize = 10;

/// The number of worker threads for `requested` (0: every available core).
pub fn threads(requested: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Indexes `corpus` into `index_dir` (created, or resumed when it is an ltre index); `progress`
/// is called with the number of corpus documents handled since its last call.
///
/// A malformed corpus line stops the run after committing everything before it, so that a rerun
/// (once the line is fixed) resumes there. A run killed at any point leaves a directory the same
/// call resumes: an interrupted creation is recognised and restarted, and every commit carries
/// a tally of the committed vectors that the next run checks before extending or re-recording
/// (see `corpus_resume.rs`). Resuming with a model other than the index's base encoder
/// is refused.
pub fn index_corpus(
    index_dir: &Path,
    corpus: &Path,
    options: &CorpusOptions,
    mut progress: impl FnMut(usize),
) -> Result<CorpusReport> {
    let threads = threads(options.threads);
    let commit_every = options.commit_every.max(1);
    if index_dir.exists() && !index_dir.is_dir() {
        return Err(Error::Invalid(format!(
            "{}: is a file, not a directory: the index is a directory (created if missing, resumed if it is an ltre index)",
            index_dir.display()
        )));
    }
    if let Some(model) = &options.model {
        if index_dir.join(CONFIG_FILE).exists() {
            check_same_model(index_dir, model)?;
        }
    }
    let mut extra = (0, Vec::new());
    let mut source = match (&options.model, &options.vectors) {
        (None, Some(dir)) => {
            return Err(Error::Invalid(format!(
                "{}: indexing precomputed vectors needs --model, the model that embedded them (installed as the base encoder; it embeds the queries)",
                dir.display()
            )))
        }
        (Some(model), Some(dir)) => {
            let vectors = VectorSet::load(dir)?;
            let join = join_corpus(corpus, &vectors, model, options.skip_missing_vectors)?;
            extra = (join.extra, join.extra_examples);
            Some(Source::Vectors(Box::new(vectors)))
        }
        (Some(model), None) => Some(Source::Embed(load_embedder(
            model,
            EmbedderOptions {
                threads,
                batch_size: options.batch_size,
            },
        )?)),
        (None, None) => None,
    };
    let dim = source.as_ref().map(Source::dim);
    let (index, dense, config) = open_or_create(index_dir, options, dim)?;
    let fields = Fields::of(&index.schema())?;
    // Before anything is written: the committed documents must be the ones committed.
    let mut tally = match &dense {
        Some(dense) => Some(verify_committed_vectors(
            index_dir, &index, dense, ID_FIELD,
        )?),
        None => None,
    };
    if let Some(model) = &options.model {
        install_base_encoder(index_dir, model)?;
    }
    let done = indexed_ids(&index, fields.id)?;
    if !done.is_empty() {
        tracing::info!(
            "resuming: {} documents already indexed are skipped",
            done.len()
        );
    }
    let mut reader = CorpusReader::open(corpus)?;
    let workers = threads.min(8);
    let writer: IndexWriter = index.writer_with_num_threads(workers, 100_000_000 * workers)?;
    let mut report = CorpusReport {
        analyzer: config.bm25.analyzer.clone(),
        extra_vectors: extra.0,
        extra_vector_examples: extra.1,
        ..CorpusReport::default()
    };
    let mut failure = None;
    let mut writer = match (dense.clone(), source.as_ref()) {
        (Some(dense), Some(_)) => Writer::Dense(DenseIndexWriter::new(writer, dense)),
        (None, None) => Writer::Lexical(writer),
        (Some(_), None) => {
            return Err(Error::Invalid(format!(
                "{}: this index has a dense field: give the model that embeds the documents",
                index_dir.display()
            )))
        }
        (None, Some(_)) => {
            return Err(Error::Invalid(format!(
                "{}: this index was built without a dense field; index into a new directory",
                index_dir.display()
            )))
        }
    };
    // Line of the first occurrence of every id met in this run (repeats are refused).
    let mut first_lines: HashMap<String, usize> = HashMap::new();
    testing_hooks::pause("created");
    // One chunk of `commit_every` new documents per iteration, committed at its end.
    loop {
        let mut chunk: Vec<Doc> = Vec::new();
        while let Some(doc) = reader.next() {
            let line = reader.line_number();
            let doc = match doc {
                Ok(doc) => doc,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            if let Some(&first_line) = first_lines.get(&doc.id) {
                report.duplicates += 1;
                if report.duplicate_examples.len() < DUPLICATE_EXAMPLES {
                    report.duplicate_examples.push(DuplicateId {
                        id: doc.id.clone(),
                        line,
                        first_line,
                    });
                }
                progress(1);
                continue;
            }
            first_lines.insert(doc.id.clone(), line);
            if done.contains(&doc.id) {
                report.skipped += 1;
                progress(1);
                continue;
            }
            chunk.push(doc);
            if chunk.len() == commit_every {
                break;
            }
        }
        let full = chunk.len() == commit_every;
        match &mut writer {
            Writer::Dense(writer) => {
                let tally = tally.get_or_insert_with(VectorTally::default);
                let (added, refused) = match source.as_mut() {
                    Some(Source::Embed(embedder)) => add_embedded(
                        writer,
                        &mut **embedder,
                        &chunk,
                        &fields,
                        options,
                        tally,
                        &mut progress,
                    )?,
                    Some(Source::Vectors(vectors)) => add_precomputed(
                        writer,
                        vectors,
                        &chunk,
                        |doc| document(&fields, doc),
                        tally,
                        &mut report,
                        &mut progress,
                    )?,
                    None => {
                        return Err(Error::Invalid(
                            "a dense index needs a model to embed the documents".into(),
                        ))
                    }
                };
                report.added += added;
                report.refused += refused;
                // The tally travels in the commit itself: whatever survives a kill is
                // described exactly by the last commit's payload.
                let mut commit = writer.writer_mut().prepare_commit()?;
                commit.set_payload(&tally.to_payload());
                commit.commit()?;
            }
            Writer::Lexical(writer) => {
                for doc in &chunk {
                    writer.add_document(document(&fields, doc))?;
                    progress(1);
                }
                report.added += chunk.len();
                writer.commit()?;
            }
        }
        testing_hooks::pause("committed");
        if failure.is_some() || !full {
            break;
        }
    }
    match writer {
        Writer::Dense(w) => w.into_inner().wait_merging_threads()?,
        Writer::Lexical(w) => w.wait_merging_threads()?,
    }
    if let Some(error) = failure {
        return Err(Error::Invalid(format!(
            "{error}; indexing stopped after committing {} new documents: fix the line and rerun the same command to resume",
            report.added
        )));
    }
    if let Some(dense) = &dense {
        // The committed vectors were verified above (or written by this run), so a recorded
        // checksum that differs is that of a run killed before recording: bring it up to date.
        let store = EncoderStore::new(index_dir);
        let recorded = store.record(BASE_ENCODER)?.document_vectors_sha256;
        let current = document_vectors_sha256(&index.reader()?.searcher(), dense, ID_FIELD)?;
        if recorded != current {
            write_base_record(index_dir, current, "document encoder (ltre-cli index)")?;
        }
    }
    Ok(report)
}

enum Writer {
    Dense(DenseIndexWriter),
    Lexical(IndexWriter),
}

/// Where the document vectors come from.
enum Source {
    Embed(Box<dyn TextEmbedder>),
    Vectors(Box<VectorSet>),
}

impl Source {
    fn dim(&self) -> usize {
        match self {
            Source::Embed(e) => e.dim(),
            Source::Vectors(v) => v.dim(),
        }
    }
}

/// Embeds and adds `chunk`, adding every added document to `tally`; returns (added, refused).
fn add_embedded(
    writer: &DenseIndexWriter,
    embedder: &mut dyn TextEmbedder,
    chunk: &[Doc],
    fields: &Fields,
    options: &CorpusOptions,
    tally: &mut VectorTally,
    progress: &mut impl FnMut(usize),
) -> Result<(usize, usize)> {
    let batch_size = options.batch_size.max(1);
    let mut capturing = Capturing {
        inner: embedder,
        rows: Vec::with_capacity(chunk.len()),
    };
    let mut embedding = EmbeddingWriter::new(writer, &mut capturing, batch_size);
    for (i, doc) in chunk.iter().enumerate() {
        embedding.add(document(fields, doc), doc.dense_text())?;
        // `add` embeds and adds a batch each time `batch_size` documents are queued.
        if (i + 1) % batch_size == 0 {
            progress(batch_size);
        }
    }
    let report = embedding.finish()?;
    progress(chunk.len() % batch_size);
    let rejected: HashSet<usize> = report.rejected.iter().map(|(p, _)| *p).collect();
    for (position, doc) in chunk.iter().enumerate() {
        if !rejected.contains(&position) {
            tally.add(&doc.id, capturing.rows.get(position).map(Vec::as_slice));
        }
    }
    for (position, error) in &report.rejected {
        let id = chunk.get(*position).map_or("?", |d| d.id.as_str());
        tracing::warn!("document `{id}` refused: {error}");
    }
    Ok((report.added, report.rejected.len()))
}

/// Keeps the vectors it returns, in order (the writer stores them unchanged), for the tally.
struct Capturing<'e> {
    inner: &'e mut dyn TextEmbedder,
    rows: Vec<Vec<f32>>,
}

impl TextEmbedder for Capturing<'_> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn embed_documents(&mut self, texts: &[&str]) -> Result<Array2<f32>> {
        let embeddings = self.inner.embed_documents(texts)?;
        self.rows
            .extend(embeddings.rows().into_iter().map(|r| r.to_vec()));
        Ok(embeddings)
    }
    fn embed_queries(&mut self, texts: &[&str]) -> Result<Array2<f32>> {
        self.inner.embed_queries(texts)
    }
}

fn indexed_options(analyzer: &str) -> TextOptions {
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(analyzer)
        .set_index_option(IndexRecordOption::WithFreqsAndPositions);
    TextOptions::default().set_indexing_options(indexing)
}

struct Fields {
    id: Field,
    title: Field,
    text: Field,
    contents: Field,
}

impl Fields {
    fn of(schema: &Schema) -> Result<Fields> {
        let get = |name: &str| {
            schema.get_field(name).map_err(|_| {
                Error::Schema(format!(
                    "the index has no `{name}` field: not an index of a BEIR corpus"
                ))
            })
        };
        Ok(Fields {
            id: get(ID_FIELD)?,
            title: get(TITLE_FIELD)?,
            text: get(TEXT_FIELD)?,
            contents: get(CONTENTS_FIELD)?,
        })
    }
}

fn document(fields: &Fields, doc: &Doc) -> TantivyDocument {
    let mut out = TantivyDocument::new();
    out.add_text(fields.id, &doc.id);
    out.add_text(fields.title, &doc.title);
    out.add_text(fields.text, &doc.text);
    out.add_text(fields.contents, format!("{} {}", doc.title, doc.text));
    out
}

/// Ids already in the index (to resume an interrupted run).
fn indexed_ids(index: &Index, id: Field) -> Result<HashSet<String>> {
    let mut ids = HashSet::new();
    let searcher = index.reader()?.searcher();
    for reader in searcher.segment_readers() {
        let inverted = reader.inverted_index(id)?;
        let mut terms = inverted
            .terms()
            .stream()
            .map_err(|e| Error::Tantivy(e.into()))?;
        while terms.advance() {
            ids.insert(String::from_utf8_lossy(terms.key()).into_owned());
        }
    }
    Ok(ids)
}

/// Creates the index, or opens it to resume.
fn open_or_create(
    dir: &Path,
    options: &CorpusOptions,
    dim: Option<usize>,
) -> Result<(Index, Option<DenseField>, IndexConfig)> {
    if dir.join(CONFIG_FILE).exists() {
        let config = IndexConfig::load(dir)?;
        if config.dim != dim.unwrap_or(0) {
            return Err(Error::Invalid(format!(
                "{}: the index holds {}-d vectors but the model embeds {}-d; use a new index directory",
                dir.display(),
                config.dim,
                dim.unwrap_or(0)
            )));
        }
        let mut index = Index::open_in_dir(dir)?;
        let dense = match config.dense_field {
            Some(_) => Some(DenseField::register(&mut index)?),
            None => None,
        };
        return Ok((index, dense, config));
    }
    // A kill between Tantivy's meta.json and ltre.json leaves exactly these artefacts.
    if dir.is_dir() && is_interrupted_creation(dir)? {
        tracing::info!("{}: finishing an interrupted index creation", dir.display());
        clear_interrupted_creation(dir)?;
    }
    ensure_empty_dir(dir)?;
    for f in &options.bm25_fields {
        if ![TITLE_FIELD, TEXT_FIELD, CONTENTS_FIELD].contains(&f.as_str()) {
            return Err(Error::Invalid(format!(
                "BM25 fields: unknown field `{f}`; use `{CONTENTS_FIELD}` or `{TITLE_FIELD},{TEXT_FIELD}`"
            )));
        }
    }
    if tantivy::tokenizer::TokenizerManager::default()
        .get(&options.analyzer)
        .is_none()
    {
        return Err(Error::Invalid(format!(
            "unknown analyzer `{}`: use `en_stem` or `default`",
            options.analyzer
        )));
    }
    let mut builder = Schema::builder();
    builder.add_text_field(ID_FIELD, STRING | STORED | FAST);
    builder.add_text_field(TITLE_FIELD, indexed_options(&options.analyzer).set_stored());
    builder.add_text_field(TEXT_FIELD, indexed_options(&options.analyzer).set_stored());
    builder.add_text_field(CONTENTS_FIELD, indexed_options(&options.analyzer));
    if let Some(dim) = dim {
        let mut dense = DenseFieldOptions::new(dim).required();
        if let Some(ann) = &options.ann {
            ann.validate(dim)?;
            dense = dense.with_ann(ann.clone());
        }
        add_dense_field(&mut builder, DENSE_FIELD, &dense);
    }
    let schema = builder.build();
    let index_builder = Index::builder().schema(schema.clone());
    let (index, dense) = match dim {
        Some(_) => {
            let dense = DenseField::from_schema(&schema)?;
            let index = index_builder
                .register_plugin(dense.plugin())
                .create_in_dir(dir)?;
            (index, Some(dense))
        }
        None => (index_builder.create_in_dir(dir)?, None),
    };
    let config = IndexConfig {
        format_version: FORMAT_VERSION,
        id_field: ID_FIELD.into(),
        dense_field: dim.map(|_| DENSE_FIELD.into()),
        dim: dim.unwrap_or(0),
        document_encoder: dim.map(|_| BASE_ENCODER.into()),
        dense_text: "{title}. {text}".into(),
        text_fields: options.bm25_fields.clone(),
        bm25: Bm25Config {
            k1: 1.2,
            b: 0.75,
            analyzer: options.analyzer.clone(),
        },
    };
    testing_hooks::pause("tantivy-created");
    // Written right after Tantivy's files: from here on the directory is an ltre index that a
    // rerun resumes (the base encoder is installed next, idempotently).
    config.save(dir)?;
    Ok((index, dense, config))
}

/// Creates `dir` if missing; refuses an existing non-empty directory.
pub(crate) fn ensure_empty_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::Invalid(format!(
            "{}: is a file, not a directory; name a new index directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    if entries.next().is_some() {
        return Err(Error::Invalid(format!(
            "{}: exists, is not empty and is not an ltre index; choose a new index directory",
            dir.display()
        )));
    }
    Ok(())
}

/// Installs `model` as the base (document) encoder of the index at `index_dir`, unless a base
/// encoder is already installed, and activates it when no encoder is active yet (so a run killed
/// between the copy and the activation is completed, and a later choice is never undone).
pub fn install_base_encoder(index_dir: &Path, model: &Path) -> Result<()> {
    let store = EncoderStore::new(index_dir);
    let base = store.encoder_dir(BASE_ENCODER)?;
    // Staging copies of a killed install.
    ltre_core::fsutil::remove_stale_siblings(&base);
    if !base.is_dir() {
        testing_hooks::pause("installing");
        store.install(BASE_ENCODER, model)?;
    }
    if !index_dir.join(ENCODERS_DIR).join(ACTIVE_FILE).exists() {
        store.activate(BASE_ENCODER)?;
    }
    Ok(())
}

/// Writes `encoders/base/encoder.json` with the checksum of the document vectors of `index`.
pub fn record_base_encoder(
    index_dir: &Path,
    index: &Index,
    dense: &DenseField,
    id_field: &str,
    note: &str,
) -> Result<()> {
    let checksum = document_vectors_sha256(&index.reader()?.searcher(), dense, id_field)?;
    write_base_record(index_dir, checksum, note)
}

/// Writes `encoders/base/encoder.json` with an already computed document-vector checksum.
fn write_base_record(index_dir: &Path, checksum: String, note: &str) -> Result<()> {
    let store = EncoderStore::new(index_dir);
    let mut record = store.record(BASE_ENCODER)?;
    record.document_vectors_sha256 = checksum;
    record.note = Some(note.into());
    store.write_record(&record)
}
