//! `ltre-cli eval`: runs the judged queries of a BEIR split through
//! [`tantivy_ltre::eval::evaluate_queries`] and reports nDCG@10, MRR@10 and Recall@100
//! (trec_eval conventions, see `ltre_core::metrics`).
use std::path::PathBuf;

use anyhow::{Context, Result};
use ltre_core::data::{read_qrels, read_queries};
use ltre_core::metrics::{write_trec_run, DEFAULT_METRICS};
use tantivy_ltre::eval::{evaluate_queries, EvalOptions};

use tantivy_ltre::RetrievalMode;

use crate::search::RetrievalArgs;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    retrieval: RetrievalArgs,
    /// BEIR queries (`{"_id", "text"}` per line).
    #[arg(long)]
    queries: PathBuf,
    /// Qrels (`query-id corpus-id score`); only the queries judged here are run.
    #[arg(long)]
    qrels: PathBuf,
    /// Also write the run in TREC format.
    #[arg(long)]
    run_file: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Documents retrieved per query (Recall@100 needs 100).
const DEPTH: usize = 100;

/// Runs `ltre-cli eval`.
pub fn run(args: Args) -> Result<()> {
    let qrels = read_qrels(&args.qrels)?;
    let queries = read_queries(&args.queries)?;
    let options = EvalOptions {
        search: args.retrieval.search_options(DEPTH)?,
        metrics: DEFAULT_METRICS.to_vec(),
    };
    let index = args.retrieval.open()?;
    let judged = queries.iter().filter(|q| qrels.contains_key(&q.id)).count();
    let progress = crate::progress(Some(judged as u64), "queries");
    let report = evaluate_queries(&index, &queries, &qrels, &options, |done| {
        progress.set_position(done as u64)
    })
    .with_context(|| {
        format!(
            "evaluating {} against {}",
            args.queries.display(),
            args.qrels.display()
        )
    })?;
    progress.finish_and_clear();
    for warning in report.warnings() {
        eprintln!("warning: {warning}");
    }
    if let Some(path) = &args.run_file {
        write_trec_run(path, &report.run, "ltre")?;
    }
    let evaluation = &report.evaluation;
    let mode = match args.retrieval.mode {
        RetrievalMode::Hybrid => format!("hybrid/{:?}", args.retrieval.fusion).to_lowercase(),
        other => format!("{other:?}").to_lowercase(),
    };
    if args.json {
        let metrics: serde_json::Map<String, serde_json::Value> = evaluation
            .metrics
            .iter()
            .zip(&evaluation.mean)
            .map(|(m, v)| (m.to_string(), (*v).into()))
            .collect();
        let json = serde_json::json!({
            "mode": mode,
            "queries": evaluation.per_query.len(),
            "metrics": metrics,
            "missing_queries": report.missing_queries.len(),
            "missing_documents": report.missing_documents.len(),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!("mode {mode}, {} judged queries", evaluation.per_query.len());
        for (metric, value) in evaluation.metrics.iter().zip(&evaluation.mean) {
            println!("{:<12} {value:.4}", metric.to_string());
        }
    }
    Ok(())
}
