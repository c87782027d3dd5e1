//! `ltre-cli embed`: print the embeddings of texts as a JSON array of vectors.
//!
//! ```text
//! ltre-cli embed --query "what causes scurvy" "vitamin c deficiency"
//! ltre-cli embed --model DIR --document "Scurvy is caused by a lack of vitamin C."
//! ```
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use ltre_core::encoder::{EncoderOptions, TextKind};
use ltre_core::Encoder;

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
    /// Texts to embed; one vector is printed per text, in order.
    #[arg(value_name = "TEXT", required = true)]
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
