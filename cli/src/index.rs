//! `ltre-cli index`: a BEIR `corpus.jsonl` into an ltre index
//! ([`tantivy_ltre::corpus::index_corpus`]: BM25 fields, a dense field, resumable), or, with
//! `--from-index`, an existing Tantivy index copied into a new one that gains the dense field
//! ([`tantivy_ltre::migrate::add_dense_field_to_index`]).
use std::path::PathBuf;

use anyhow::{bail, Result};
use tantivy_ltre::corpus::{index_corpus, CorpusOptions};
use tantivy_ltre::migrate::{add_dense_field_to_index, MigrateOptions};
use tantivy_ltre::AnnOptions;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// BEIR corpus (`{"_id", "title", "text"}` per line), or a Cranfield directory.
    #[arg(long, required_unless_present = "from_index")]
    corpus: Option<PathBuf>,
    /// An existing Tantivy index to copy into `--index` with a dense field added (read only;
    /// needs --model and --text-fields).
    #[arg(long, conflicts_with = "corpus", requires_all = ["model", "text_fields"])]
    from_index: Option<PathBuf>,
    /// With --from-index: the stored text fields embedded (concatenated in this order).
    #[arg(long, value_delimiter = ',')]
    text_fields: Option<Vec<String>>,
    /// With --from-index: the external id field (STRING | FAST); default `id`.
    #[arg(long)]
    id_field: Option<String>,
    /// With --from-index: the name of the new dense field.
    #[arg(long, default_value = "embedding")]
    dense_field: String,
    /// With --from-index: drop indexed-but-unstored fields instead of refusing them.
    #[arg(long)]
    drop_unstored: bool,
    /// Exported model directory (`ltre-cli export-onnx`) that embeds the documents; without it
    /// the index is lexical only.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Index the document vectors of this directory of Parquet shards (`ltre-cli embed
    /// --corpus`, distributed/embed_ray.py) instead of embedding the documents; --model must be
    /// the model that wrote them.
    #[arg(long, value_name = "DIR", requires_all = ["corpus", "model"], conflicts_with = "from_index")]
    vectors: Option<PathBuf>,
    /// With --vectors: index only the documents that have a vector (the others are reported)
    /// instead of refusing the run.
    #[arg(long, requires = "vectors")]
    skip_missing_vectors: bool,
    /// Index directory (created if missing; an existing ltre index is resumed).
    #[arg(long)]
    index: PathBuf,
    /// Texts per encoder call.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Encoder and indexing threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Tantivy tokenizer of the BM25 fields: `en_stem` (English stemmer) or `default`.
    #[arg(long, default_value = "en_stem")]
    analyzer: String,
    /// Fields BM25 searches by default (`contents` = title + text in one field, as Anserini
    /// indexes BEIR; or `title,text`); `search`/`eval --fields` override it per query.
    #[arg(long, value_delimiter = ',', default_value = "contents")]
    bm25_fields: Vec<String>,
    /// Commit every this many documents (the resume granularity).
    #[arg(long, default_value_t = 2000)]
    commit_every: usize,
    /// Build a Faiss index per segment of at least `--ann-min-docs` vectors, e.g. "HNSW32" or
    /// "IVF256,PQ48np" (inner product).
    #[arg(long)]
    ann: Option<String>,
    /// Segment size from which `--ann` indexes are built.
    #[arg(long, default_value_t = 50_000)]
    ann_min_docs: usize,
    /// HNSW graph construction breadth for `--ann HNSW..` (Faiss efConstruction; default 40).
    #[arg(long)]
    ann_ef_construction: Option<usize>,
}

/// Runs `ltre-cli index`.
pub fn run(args: Args) -> Result<()> {
    let ann = args.ann.as_ref().map(|factory| AnnOptions {
        ef_construction: args.ann_ef_construction,
        ..AnnOptions::new(factory, args.ann_min_docs)
    });
    if ann.is_none() && args.ann_ef_construction.is_some() {
        bail!("--ann-ef-construction needs --ann (an HNSW factory string)");
    }
    if let Some(old) = &args.from_index {
        let Some(model) = &args.model else {
            bail!("--from-index needs --model (the encoder of the documents)");
        };
        let options = MigrateOptions {
            text_fields: args.text_fields.clone().unwrap_or_default(),
            dense_field: args.dense_field.clone(),
            id_field: args.id_field.clone(),
            drop_unstored: args.drop_unstored,
            batch_size: args.batch_size,
            threads: args.threads,
            commit_every: args.commit_every,
            ann,
            ..MigrateOptions::new(model)
        };
        let progress = crate::progress(None, "docs");
        let report =
            add_dense_field_to_index(old, &args.index, &options, |n| progress.inc(n as u64))?;
        progress.finish_and_clear();
        eprintln!("{report}: {} -> {}", old.display(), args.index.display());
        return Ok(());
    }
    let Some(corpus) = &args.corpus else {
        bail!("give --corpus (a BEIR corpus.jsonl) or --from-index (a Tantivy index)");
    };
    let options = CorpusOptions {
        model: args.model.clone(),
        batch_size: args.batch_size,
        threads: args.threads,
        analyzer: args.analyzer.clone(),
        bm25_fields: args.bm25_fields.clone(),
        commit_every: args.commit_every,
        ann,
        vectors: args.vectors.clone(),
        skip_missing_vectors: args.skip_missing_vectors,
    };
    let total = ltre_core::data::count_documents(corpus)?;
    let progress = crate::progress(Some(total as u64), "docs");
    let report = index_corpus(&args.index, corpus, &options, |n| progress.inc(n as u64))?;
    progress.finish_and_clear();
    if let Some(warning) = report.duplicate_warning() {
        eprintln!("warning: {warning}");
    }
    for warning in report.vector_warnings() {
        eprintln!("warning: {warning}");
    }
    eprintln!("{report} into {}", args.index.display());
    Ok(())
}
