//! `ltre-cli train`: fine-tune an index's query encoder with LTRe (documents fixed), through
//! [`tantivy_ltre::finetune`]; this file only parses arguments and prints.
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use ltre_core::trainer::{Objective, TrainConfig};
use tantivy_ltre::feedback::{keyed_by_text, FeedbackLog, FeedbackPolicy};
use tantivy_ltre::finetune::{
    read_beir_judged, read_beir_judged_half, DevSet, FineTuneEvent, FineTuneOptions,
    FineTuneOutcome, RecipeSearch, TrainingData, TunableIndex,
};

#[derive(clap::Args)]
pub struct Args {
    /// Index directory (built by `ltre-cli index` with --model).
    #[arg(long)]
    index: PathBuf,
    /// Queries (BEIR queries.jsonl): the texts of --qrels, --dev-qrels and --eval-qrels.
    #[arg(long)]
    queries: Option<PathBuf>,
    /// Training qrels (BEIR tsv). Give either this or --feedback.
    #[arg(long)]
    qrels: Option<PathBuf>,
    /// Train from the index's feedback log (`ltre-cli feedback`) instead of --qrels.
    #[arg(long)]
    feedback: bool,
    /// With --feedback: clicks a (query, document) pair without a grade needs to count as
    /// relevant.
    #[arg(long, default_value_t = 1)]
    min_clicks: u32,
    /// Held-out qrels for model selection; without it a seeded `dev_fraction` of the training
    /// queries is held out.
    #[arg(long)]
    dev_qrels: Option<PathBuf>,
    /// Qrels to report before/after numbers on (e.g. the test qrels). Never used for selection.
    #[arg(long)]
    eval_qrels: Option<PathBuf>,
    #[command(flatten)]
    split: crate::eval::SplitArgs,
    /// Training configuration (TOML or JSON); defaults apply without it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run directory: checkpoints, best parameters, summary. Re-running resumes from it.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Query encoder to start from (default: the active one).
    #[arg(long)]
    encoder: Option<String>,
    /// Install the best encoder in the index and make it active if the held-out metric improved.
    #[arg(long)]
    deploy: bool,
    /// After selecting the epoch count on the held-out queries, retrain with it on all training
    /// queries (held-out ones included) and use that encoder (the default recipe always does).
    #[arg(long, conflicts_with = "no_refit")]
    refit: bool,
    /// With the default recipe: keep the selected run's encoder instead of retraining on all
    /// training queries.
    #[arg(long)]
    no_refit: bool,
    /// With --deploy: deploy the final parameters even if the held-out metric did not improve.
    #[arg(long)]
    force: bool,
    /// Override the config's objective (ltre, in-batch, random-negatives, bm25-negatives).
    #[arg(long, value_parser = parse_objective)]
    objective: Option<Objective>,
    /// Override the config's learning rate.
    #[arg(long)]
    lr: Option<f32>,
    /// Override the config's number of epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override the config's temperature.
    #[arg(long)]
    temperature: Option<f32>,
    /// Override the config's Faiss index (e.g. `Flat`, `IVF256,PQ48np`).
    #[arg(long)]
    faiss_index: Option<String>,
    /// ONNX Runtime threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Hybrid-aware LTRe: the loss and the held-out selection use the ranking the index serves,
    /// BM25 fused with the dense score (linear, min-max); the fusion weight is chosen on the
    /// held-out queries unless --hybrid-alpha gives it.
    #[arg(long)]
    hybrid: bool,
    /// With --hybrid: the fusion weight of the dense side, in (0, 1].
    #[arg(long, requires = "hybrid")]
    hybrid_alpha: Option<f32>,
    /// With --hybrid: the share of the plain dense LTRe loss mixed in, in [0, 1) (default 0.5).
    #[arg(long, requires = "hybrid")]
    hybrid_dense_share: Option<f32>,
    /// With --hybrid: whether the gradient flows through the dense leg's min-max range, so the
    /// query learns how much BM25 weighs for it (true or false).
    #[arg(long, requires = "hybrid", value_name = "BOOL")]
    hybrid_range_gradient: Option<bool>,
    /// Without --config, --lr or --temperature, the learning rate and temperature are chosen on
    /// the held-out queries by short probes (the default recipe); this trains the defaults as
    /// they are instead.
    #[arg(long)]
    no_search: bool,
}

fn parse_objective(name: &str) -> Result<Objective, String> {
    serde_json::from_value(serde_json::Value::String(name.replace('-', "_")))
        .map_err(|_| "expected ltre, in-batch, random-negatives or bm25-negatives".to_string())
}

/// Runs `ltre-cli train`.
pub fn run(args: Args) -> Result<()> {
    // The default recipe: nothing tuned was given, so choose on the held-out queries.
    let search =
        args.config.is_none() && args.lr.is_none() && args.temperature.is_none() && !args.no_search;
    let mut config = match &args.config {
        Some(p) => TrainConfig::load(p)?,
        None => TrainConfig::default(),
    };
    config.objective = args.objective.unwrap_or(config.objective);
    config.optimizer.lr = args.lr.unwrap_or(config.optimizer.lr);
    config.epochs = args.epochs.unwrap_or(config.epochs);
    config.temperature = args.temperature.unwrap_or(config.temperature);
    config.index = args.faiss_index.clone().unwrap_or(config.index);

    if args.hybrid {
        let mut hybrid = config.hybrid.unwrap_or_default();
        if let Some(alpha) = args.hybrid_alpha {
            hybrid.alpha = alpha;
        }
        if let Some(share) = args.hybrid_dense_share {
            hybrid.dense_share = share;
        }
        if let Some(through) = args.hybrid_range_gradient {
            hybrid.range_gradient = through;
        }
        config.hybrid = Some(hybrid);
    }

    let index = TunableIndex::open_ltre_index(&args.index)?;
    let queries = || {
        args.queries
            .as_deref()
            .context("--queries is needed to read --qrels, --dev-qrels and --eval-qrels")
    };
    let data = match (&args.qrels, args.feedback) {
        (Some(qrels), false) => match args.split.half() {
            Some((half, seed)) => TrainingData::from_beir_half(queries()?, qrels, half, seed)?,
            None => TrainingData::from_beir(queries()?, qrels)?,
        },
        (None, true) => FeedbackLog::open(&args.index)?
            .to_training_data(&FeedbackPolicy::default().min_clicks(args.min_clicks))?,
        (Some(_), true) => {
            bail!("give one source of training data: --qrels or --feedback, not both")
        }
        (None, false) => bail!(
            "no training data: give --queries and --qrels, or --feedback to train from the \
             index's feedback log (`ltre-cli feedback add/import`)"
        ),
    };
    let mut options = FineTuneOptions::new(config)
        .refit(args.refit)
        .deploy(args.deploy)
        .force(args.force)
        .threads(args.threads);
    options.start_encoder = args.encoder.clone();
    if search {
        options.search = Some(RecipeSearch {
            refit: !args.no_refit,
            ..RecipeSearch::default()
        });
    }
    options.choose_alpha = args.hybrid && args.hybrid_alpha.is_none();
    options.run_dir = args.run_dir.clone();
    if let Some(p) = &args.dev_qrels {
        let dev = read_beir_judged(queries()?, p)?;
        // Feedback queries are keyed by their text: key the held-out ones alike, so that
        // they are left out of training.
        let dev = if args.feedback {
            keyed_by_text(&dev)
        } else {
            dev
        };
        options.dev = DevSet::Queries(dev);
    }
    if let Some(p) = &args.eval_qrels {
        // `--split` trains on one half; the report's numbers are on the other.
        options.eval = Some(match args.split.half() {
            Some((half, seed)) => read_beir_judged_half(queries()?, p, half.other(), seed)?,
            None => read_beir_judged(queries()?, p)?,
        });
    }

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: finishing the step, writing a checkpoint (Ctrl-C again: quit now)");
    })
    .context("installing the Ctrl-C handler")?;
    let mut bar = ProgressBar::hidden();
    let report = match index.fine_tune(&data, &options, &stop, &mut |e| show(&mut bar, e))? {
        FineTuneOutcome::Finished(report) => report,
        FineTuneOutcome::Interrupted { step, run_dir, .. } => {
            eprintln!(
                "interrupted at step {step}; run the same command again to resume from {}",
                run_dir.display()
            );
            return Ok(());
        }
    };

    eprintln!("{report}");
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Prints the library's lines, with a progress bar per training phase.
fn show(bar: &mut ProgressBar, event: &FineTuneEvent) {
    match event {
        FineTuneEvent::Step { step, loss, .. } => {
            bar.set_position(*step);
            bar.set_message(format!("loss {loss:.4}"));
        }
        FineTuneEvent::PhaseEnded { .. } => bar.finish_and_clear(),
        _ => eprintln!("{event}"),
    }
    if let FineTuneEvent::PhaseStarted { total_steps, .. } = event {
        *bar = crate::progress(Some(*total_steps), "steps");
    }
}
