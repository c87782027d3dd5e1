//! `ltre-cli embed`: print the embeddings of texts as a JSON array of vectors, or, with
//! `--corpus` and `--out`, embed a BEIR corpus (or one shard of it) into Parquet files for
//! `ltre-cli index --vectors` ([`tantivy_ltre::vectors::embed_corpus`]).
//!
//! ```text
//! ltre-cli embed --query "what causes scurvy" "vitamin c deficiency"
//! ltre-cli embed --model DIR --document "Scurvy is caused by a lack of vitamin C."
//! ltre-cli embed --model DIR --corpus corpus.jsonl --out vectors --shard 0/4
//! ```
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use ltre_core::encoder::{EncoderOptions, TextKind};
use ltre_core::Encoder;
use tantivy_ltre::vectors::{embed_corpus, EmbedOptions, Shard};

/// Arguments of `ltre-cli embed`.
#[derive(clap::Args)]
pub struct Args {
    /// Exported model directory (default: .ltre/models/all-MiniLM-L6-v2-onnx in the enclosing
    /// repository).
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Embed the texts as queries (truncated at the manifest's query_max_length).
    #[arg(long, conflicts_with = "document")]
    query: bool,
    /// Embed the texts as documents (truncated at document_max_length); the default.
    #[arg(long)]
    document: bool,
    /// ONNX Runtime intra-op threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Embed the documents of this BEIR corpus.jsonl into Parquet shards in --out.
    #[arg(long, value_name = "FILE", requires = "out", conflicts_with_all = ["query", "texts"])]
    corpus: Option<PathBuf>,
    /// With --corpus: the directory of the Parquet shards (`part-IIIII-of-NNNNN.parquet`).
    #[arg(long, value_name = "DIR", requires = "corpus")]
    out: Option<PathBuf>,
    /// With --corpus: write shard i of n (every n-th encoder batch from batch i); rerunning
    /// skips a shard already written.
    #[arg(long, value_name = "I/N", default_value = "0/1", requires = "corpus")]
    shard: Shard,
    /// With --corpus: texts per encoder batch (as `index --batch-size`, for identical vectors).
    #[arg(long, default_value_t = 32, requires = "corpus")]
    batch_size: usize,
    /// With --corpus: the `index --commit-every` the batches align to (identical vectors).
    #[arg(long, default_value_t = 2000, requires = "corpus")]
    commit_every: usize,
    /// Texts to embed; one vector is printed per text, in order.
    #[arg(value_name = "TEXT", required_unless_present = "corpus")]
    texts: Vec<String>,
}

/// Runs `ltre-cli embed`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let model = match args.model {
        Some(dir) => dir,
        None => ltre_core::manifest::default_model_dir(
            &std::env::current_dir().context("reading the current directory")?,
        )?,
    };
    if let (Some(corpus), Some(out)) = (&args.corpus, &args.out) {
        let options = EmbedOptions {
            shard: args.shard,
            batch_size: args.batch_size,
            commit_every: args.commit_every,
            threads: args.threads.unwrap_or(0),
            ..EmbedOptions::new(&model)
        };
        let total = ltre_core::data::count_lines(corpus)?;
        let progress = crate::progress(Some(total as u64), "docs");
        let report = embed_corpus(corpus, out, &options, |n| progress.inc(n as u64))?;
        progress.finish_and_clear();
        eprintln!("{report}");
        return Ok(());
    }
    let mut options = EncoderOptions::default();
    if let Some(threads) = args.threads {
        options.threads = threads;
    }
    let encoder = Encoder::load_with(&model, options)
        .with_context(|| format!("loading the model in {}", model.display()))?;
    let kind = if args.query {
        TextKind::Query
    } else {
        TextKind::Document
    };
    let vectors = encoder.encode(&args.texts, kind)?;
    let rows: Vec<Vec<f32>> = vectors.outer_iter().map(|r| r.to_vec()).collect();
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &rows)?;
    writeln!(out)?;
    Ok(())
}
