//! `ltre-cli eval`: runs the judged queries of a BEIR split and reports nDCG@10, MRR@10 and
//! Recall@100 (trec_eval conventions, see `ltre_core::metrics`).
use std::path::PathBuf;

use anyhow::Result;
use indicatif::ProgressBar;
use ltre_core::data::{read_qrels, read_queries};
use ltre_core::metrics::{evaluate, write_trec_run, Run, DEFAULT_METRICS};

use crate::search::{Mode, RetrievalArgs, Retriever};

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
    let queries: Vec<_> = read_queries(&args.queries)?
        .into_iter()
        .filter(|q| qrels.contains_key(&q.id))
        .collect();
    if queries.is_empty() {
        anyhow::bail!(
            "no query of {} is judged in {}: check that they come from the same dataset",
            args.queries.display(),
            args.qrels.display()
        );
    }
    let mut retriever = Retriever::open(&args.retrieval)?;
    let vectors: Vec<Option<Vec<f32>>> = if args.retrieval.mode == Mode::Bm25 {
        vec![None; queries.len()]
    } else {
        let mut out = Vec::with_capacity(queries.len());
        for chunk in queries.chunks(64) {
            let texts: Vec<&str> = chunk.iter().map(|q| q.text.as_str()).collect();
            out.extend(retriever.embed_queries(&texts)?.into_iter().map(Some));
        }
        out
    };
    let searcher = retriever.searcher();
    let progress = ProgressBar::new(queries.len() as u64);
    let mut run = Run::new();
    for (query, vector) in queries.iter().zip(&vectors) {
        let hits = retriever.retrieve(&searcher, &query.text, vector.as_deref(), DEPTH)?;
        let mut results = Vec::with_capacity(hits.len());
        for (score, address) in hits {
            results.push((retriever.doc_id(&searcher, address)?, score as f64));
        }
        run.insert(query.id.clone(), results);
        progress.inc(1);
    }
    progress.finish_and_clear();
    if let Some(path) = &args.run_file {
        write_trec_run(path, &run, "ltre")?;
    }
    let evaluation = evaluate(&run, &qrels, &DEFAULT_METRICS);
    let mode = match args.retrieval.mode {
        Mode::Hybrid => format!("hybrid/{:?}", args.retrieval.fusion).to_lowercase(),
        other => format!("{other:?}").to_lowercase(),
    };
    if args.json {
        let metrics: serde_json::Map<String, serde_json::Value> = evaluation
            .metrics
            .iter()
            .zip(&evaluation.mean)
            .map(|(m, v)| (m.to_string(), (*v).into()))
            .collect();
        let json = serde_json::json!({"mode": mode, "queries": evaluation.per_query.len(), "metrics": metrics});
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!("mode {mode}, {} judged queries", evaluation.per_query.len());
        for (metric, value) in evaluation.metrics.iter().zip(&evaluation.mean) {
            println!("{:<12} {value:.4}", metric.to_string());
        }
    }
    Ok(())
}
