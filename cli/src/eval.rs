//! `ltre-cli eval`: runs the judged queries of a BEIR split through
//! [`tantivy_ltre::eval::evaluate_queries`] and reports nDCG@10, MRR@10 and Recall@100
//! (trec_eval conventions, see `ltre_core::metrics`).
use std::path::PathBuf;

use anyhow::{Context, Result};
use ltre_core::data::{read_qrels, read_queries, split_queries, Qrels, QuerySplit};
use ltre_core::metrics::{write_trec_run, DEFAULT_METRICS};
use tantivy_ltre::eval::{evaluate_queries, EvalOptions};

use tantivy_ltre::{FusionMethod, RetrievalMode};

use crate::search::RetrievalArgs;

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    retrieval: RetrievalArgs,
    /// BEIR queries (`{"_id", "text"}` per line), or a Cranfield directory (`cran.qry`).
    #[arg(long)]
    queries: PathBuf,
    /// Qrels (`query-id corpus-id score`), or a Cranfield directory (`cranqrel`, grades mapped to
    /// gains); only the queries judged here are run.
    #[arg(long)]
    qrels: PathBuf,
    #[command(flatten)]
    split: SplitArgs,
    /// Also write the run in TREC format.
    #[arg(long)]
    run_file: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// With --json: also each query's metrics (`per_query`), for paired comparisons of runs.
    #[arg(long, requires = "json")]
    per_query: bool,
}

/// `--split`: one seeded half of the judged queries, for collections with a single qrels file
/// such as Cranfield (`ltre_core::data::split_queries`).
#[derive(clap::Args)]
pub struct SplitArgs {
    /// Keep only this seeded half of the judged queries (train or test).
    #[arg(long, value_enum)]
    split: Option<QuerySplit>,
    /// Seed of --split.
    #[arg(long, default_value_t = 13, requires = "split")]
    split_seed: u64,
}

impl SplitArgs {
    /// The judgements of the chosen half (all of them without --split).
    pub fn apply(&self, qrels: Qrels) -> Qrels {
        match self.split {
            Some(split) => split_queries(&qrels, split, self.split_seed),
            None => qrels,
        }
    }

    /// The half and seed, when --split was given.
    pub fn half(&self) -> Option<(QuerySplit, u64)> {
        self.split.map(|split| (split, self.split_seed))
    }
}

/// Documents retrieved per query (Recall@100 needs 100).
const DEPTH: usize = 100;

/// Runs `ltre-cli eval`.
pub fn run(args: Args) -> Result<()> {
    let qrels = args.split.apply(read_qrels(&args.qrels)?);
    let queries = read_queries(&args.queries)?;
    let index = args.retrieval.open()?;
    let options = EvalOptions {
        search: args.retrieval.search_options(&index, DEPTH)?,
        metrics: DEFAULT_METRICS.to_vec(),
    };
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
    let mode = match (args.retrieval.mode, options.search.fusion) {
        (RetrievalMode::Hybrid, FusionMethod::Linear { alpha, .. }) => {
            format!("hybrid/linear alpha {alpha}")
        }
        (RetrievalMode::Hybrid, _) => format!("hybrid/{:?}", args.retrieval.fusion).to_lowercase(),
        (other, _) => format!("{other:?}").to_lowercase(),
    };
    if args.json {
        // {"nDCG@10": v, ...} for one value per metric.
        let named = |values: &[f64]| -> serde_json::Value {
            let map: serde_json::Map<String, serde_json::Value> = evaluation
                .metrics
                .iter()
                .zip(values)
                .map(|(m, v)| (m.to_string(), (*v).into()))
                .collect();
            map.into()
        };
        let mut json = serde_json::json!({
            "mode": mode,
            "queries": evaluation.per_query.len(),
            "metrics": named(&evaluation.mean),
            "missing_queries": report.missing_queries.len(),
            "missing_documents": report.missing_documents.len(),
        });
        if args.per_query {
            json["per_query"] = evaluation
                .per_query
                .iter()
                .map(|(query, values)| (query.clone(), named(values)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!("mode {mode}, {} judged queries", evaluation.per_query.len());
        for (metric, value) in evaluation.metrics.iter().zip(&evaluation.mean) {
            println!("{:<12} {value:.4}", metric.to_string());
        }
    }
    Ok(())
}
