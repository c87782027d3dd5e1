//! `ltre-cli feedback`: record the application's clicks and ratings in an index's feedback log
//! (`INDEX/feedback/log.jsonl`), import them in bulk, and show its counts, through
//! [`tantivy_ltre::feedback`]; `ltre-cli train --feedback` trains from the log. Any number of
//! these commands may run at once: appends are serialised by `INDEX/feedback/.lock`.
use std::path::{Path, PathBuf};

use anyhow::Result;
use tantivy_ltre::feedback::{
    now, read_feedback_file, records_from_beir, FeedbackLog, FeedbackRecord, Signal,
};

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Append one record: a grade or a click of a document for a query.
    Add {
        /// Index directory.
        #[arg(long)]
        index: PathBuf,
        /// The query text.
        #[arg(long)]
        query: String,
        /// The document id (the index's id field).
        #[arg(long)]
        doc: String,
        /// An explicit grade (>= 1 relevant, 0 judged not relevant, -1 ..= 1000).
        #[arg(
            long,
            allow_hyphen_values = true,
            required_unless_present = "click",
            conflicts_with = "click"
        )]
        grade: Option<i32>,
        /// A click on the document in the query's results.
        #[arg(long)]
        click: bool,
        /// Unix seconds (default: now).
        #[arg(long)]
        time: Option<u64>,
    },
    /// Append many records: a JSON-lines file (`{"query":..,"doc":..,"grade":G}` or
    /// `{"query":..,"doc":..,"click":true}`, optional "time"), or BEIR judgments replayed as
    /// grades (--queries and --qrels) to simulate feedback.
    Import {
        /// Index directory.
        #[arg(long)]
        index: PathBuf,
        /// JSON-lines feedback file.
        #[arg(long, required_unless_present = "qrels", conflicts_with_all = ["queries", "qrels"])]
        file: Option<PathBuf>,
        /// BEIR queries.jsonl (with --qrels).
        #[arg(long, requires = "qrels")]
        queries: Option<PathBuf>,
        /// BEIR qrels .tsv: each judged (query, document, grade) becomes a grade record.
        #[arg(long, requires = "queries")]
        qrels: Option<PathBuf>,
        /// Unix seconds of records without a time (default: now). Re-importing with the same
        /// time adds only exact duplicates, which training ignores.
        #[arg(long)]
        time: Option<u64>,
    },
    /// Print the log's counts (records, clicks, grades, duplicates, a torn last line).
    Stats {
        /// Index directory.
        #[arg(long)]
        index: PathBuf,
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn append(index: &Path, records: &[FeedbackRecord]) -> Result<()> {
    let log = FeedbackLog::open(index)?;
    let report = log.append(records)?;
    if report.repaired_tail_bytes > 0 {
        eprintln!(
            "removed a torn last line of {} bytes (an earlier append was interrupted)",
            report.repaired_tail_bytes
        );
    }
    println!(
        "appended {} records to {}",
        report.appended,
        log.path().display()
    );
    Ok(())
}

/// Runs `ltre-cli feedback`.
pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Add {
            index,
            query,
            doc,
            grade,
            click,
            time,
        } => {
            let signal = match (grade, click) {
                (Some(g), false) => Signal::Grade(g),
                // clap enforces exactly one of --grade / --click.
                _ => Signal::Click,
            };
            let record = FeedbackRecord {
                query,
                doc,
                signal,
                time: time.unwrap_or_else(now),
            };
            append(&index, &[record])
        }
        Command::Import {
            index,
            file,
            queries,
            qrels,
            time,
        } => {
            let time = time.unwrap_or_else(now);
            let records = match (file, queries, qrels) {
                (Some(file), _, _) => read_feedback_file(&file, time)?,
                (None, Some(queries), Some(qrels)) => records_from_beir(&queries, &qrels, time)?,
                _ => anyhow::bail!("give --file, or --queries and --qrels"),
            };
            append(&index, &records)
        }
        Command::Stats { index, json } => {
            let log = FeedbackLog::open(&index)?;
            let stats = log.stats()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                println!("{}: {stats}", log.path().display());
            }
            Ok(())
        }
    }
}
