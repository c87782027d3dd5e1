//! `ltre-cli`: export BERT checkpoints to ONNX, embed text, index and search with Tantivy,
//! train query encoders with LTRe and evaluate them.
use clap::{Parser, Subcommand};

mod embed;
mod encoder_cmd;
mod eval;
mod export;
mod feedback;
mod index;
mod search;
mod train;
mod verify;

#[derive(Parser)]
#[command(name = "ltre-cli", version, about = "LTRe dense retrieval for Tantivy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build ONNX graphs (inference, and with --train the query tower's gradient graph) from a
    /// Hugging Face BERT checkpoint.
    ExportOnnx(export::Args),
    /// Print embeddings of texts as JSON.
    Embed(embed::Args),
    /// Index a BEIR corpus.jsonl into a Tantivy index with a dense field.
    Index(index::Args),
    /// Search an index (bm25, dense or hybrid).
    Search(search::Args),
    /// Evaluate retrieval against qrels (nDCG@10, MRR@10, Recall@100).
    Eval(eval::Args),
    /// Fine-tune the query encoder with LTRe (documents stay fixed).
    Train(train::Args),
    /// List, activate or roll back the query encoders stored in an index.
    Encoder(encoder_cmd::Args),
    /// Check every segment file of an index (checksums); exit 1 naming any damaged file.
    Verify(verify::Args),
    /// Record clicks and ratings in an index's feedback log, import them, show its counts.
    Feedback(feedback::Args),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LTRE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: logs redirected to a file carry no escape codes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::ExportOnnx(a) => export::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Index(a) => index::run(a),
        Command::Search(a) => search::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Train(a) => train::run(a),
        Command::Encoder(a) => encoder_cmd::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Feedback(a) => feedback::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The one progress bar style of the CLI: `total` steps of `unit` (a spinner without a total).
pub fn progress(total: Option<u64>, unit: &str) -> indicatif::ProgressBar {
    let template =
        format!("{{bar:40}} {{pos}}/{{len}} {unit} [{{elapsed_precise}}<{{eta_precise}}] {{msg}}");
    let style = indicatif::ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    match total {
        Some(n) => indicatif::ProgressBar::new(n).with_style(style),
        None => indicatif::ProgressBar::new_spinner(),
    }
}
