//! `ltre-cli export-onnx`: Hugging Face BERT checkpoint -> exported model directory.
use std::path::PathBuf;

use anyhow::Context;
use ltre_core::export::{export_checkpoint, ExportOptions};
use ltre_core::manifest::{Pooling, WordEmbeddingGrad};

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Checkpoint directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Output directory (replaced atomically if it holds an older export).
    #[arg(long)]
    pub out: PathBuf,
    /// Pooling [default: from 1_Pooling/config.json, else mean].
    #[arg(long, value_enum)]
    pub pooling: Option<Pooling>,
    /// L2-normalise embeddings [default: when modules.json lists Normalize].
    #[arg(long, conflicts_with = "no_normalize")]
    pub normalize: bool,
    /// Do not L2-normalise embeddings.
    #[arg(long)]
    pub no_normalize: bool,
    /// Query truncation length in tokens [default: 64].
    #[arg(long)]
    pub query_max_length: Option<usize>,
    /// Document truncation length in tokens [default: sentence_bert_config.json, else 512].
    #[arg(long)]
    pub document_max_length: Option<usize>,
    /// Also write the query tower's training graphs (train.onnx, train_forward.onnx, train_backward.onnx).
    #[arg(long)]
    pub train: bool,
    /// Word-embedding gradients in the training graph.
    #[arg(long, value_enum, default_value = "sparse", requires = "train")]
    pub word_embeddings: WordEmbeddingGrad,
}

/// Runs the export and prints a summary.
pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = ExportOptions {
        pooling: args.pooling,
        normalize: match (args.normalize, args.no_normalize) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        query_max_length: args.query_max_length,
        document_max_length: args.document_max_length,
        train: args.train.then_some(args.word_embeddings),
    };
    let m = export_checkpoint(&args.model, &args.out, &opts).with_context(|| {
        format!(
            "exporting {} to {}",
            args.model.display(),
            args.out.display()
        )
    })?;
    println!(
        "exported {} -> {}\n{m}",
        args.model.display(),
        args.out.display()
    );
    Ok(())
}
