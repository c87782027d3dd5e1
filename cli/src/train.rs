//! `ltre-cli train`: fine-tune an index's query encoder with LTRe (or a baseline objective),
//! documents fixed, model selection on held-out training queries, optional in-place deployment.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use ltre_core::data::{read_qrels, read_queries};
use ltre_core::encoder::EncoderOptions;
use ltre_core::params::ParamStore;
use ltre_core::train_step::{QueryTower, TowerOptions};
use ltre_core::trainer::{
    evaluate_queries, join_queries, split_dev, Objective, RunOutcome, TrainConfig, TrainQuery,
    Trainer,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tantivy::collector::TopDocs;
use tantivy::Index;
use tantivy_ltre::encoders::{EncoderRecord, EncoderStore, IndexConfig};
use tantivy_ltre::DenseField;

use crate::search::{Mode, RetrievalArgs, Retriever};

/// Arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Index directory (built by `ltre-cli index` with --model).
    #[arg(long)]
    index: PathBuf,
    /// Queries (BEIR queries.jsonl).
    #[arg(long)]
    queries: PathBuf,
    /// Training qrels (BEIR tsv).
    #[arg(long)]
    qrels: PathBuf,
    /// Held-out qrels for model selection; without it a seeded `dev_fraction` of the training
    /// queries is held out.
    #[arg(long)]
    dev_qrels: Option<PathBuf>,
    /// Qrels to report before/after numbers on (e.g. the test qrels). Never used for selection.
    #[arg(long)]
    eval_qrels: Option<PathBuf>,
    /// Training configuration (TOML or JSON); defaults apply without it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run directory: checkpoints, best parameters, summary. Re-running resumes from it.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Query encoder to start from (default: the active one).
    #[arg(long)]
    encoder: Option<String>,
    /// Install the best encoder in the index and make it active if the held-out metric did not drop.
    #[arg(long)]
    deploy: bool,
    /// After selecting the epoch count on the held-out queries, retrain with it on all training
    /// queries (held-out ones included) and use that encoder.
    #[arg(long)]
    refit: bool,
    /// With --deploy: deploy the final parameters even if the held-out metric dropped.
    #[arg(long)]
    force: bool,
    /// Override the config's objective.
    #[arg(long, value_enum)]
    objective: Option<ObjectiveArg>,
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
}

/// Training objective on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ObjectiveArg {
    Ltre,
    InBatch,
    RandomNegatives,
    Bm25Negatives,
}

impl From<ObjectiveArg> for Objective {
    fn from(o: ObjectiveArg) -> Objective {
        match o {
            ObjectiveArg::Ltre => Objective::Ltre,
            ObjectiveArg::InBatch => Objective::InBatch,
            ObjectiveArg::RandomNegatives => Objective::RandomNegatives,
            ObjectiveArg::Bm25Negatives => Objective::Bm25Negatives,
        }
    }
}

/// What a run leaves in `run_dir/summary.json`.
#[derive(Debug, Serialize)]
struct Summary {
    config: TrainConfig,
    start_encoder: String,
    train_queries: usize,
    dev_queries: usize,
    baseline_dev_ndcg10: f64,
    best_dev_ndcg10: f64,
    best_epoch: usize,
    history: Vec<ltre_core::trainer::EpochRecord>,
    refit: Option<Refit>,
    eval_before_ndcg10: Option<f64>,
    eval_after_ndcg10: Option<f64>,
    document_vectors_sha256_before: String,
    document_vectors_sha256_after: String,
    deployed: Option<String>,
}

/// The refit stage of a run.
#[derive(Debug, Serialize)]
struct Refit {
    epochs: usize,
    queries: usize,
}

/// Runs `trainer` with a progress bar; `false` when interrupted (a checkpoint was written).
fn run_to_end(trainer: &mut Trainer, stop: &AtomicBool, run_dir: &Path) -> Result<bool> {
    let bar = ProgressBar::new(trainer.total_steps());
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(trainer.state().global_step);
    let mut progress = |step: u64, _total: u64, loss: f32, secs: f64| {
        bar.set_position(step);
        bar.set_message(format!("loss {loss:.4}  {secs:.2} s/step"));
    };
    let outcome = trainer.run(stop, &mut progress)?;
    bar.finish_and_clear();
    if outcome == RunOutcome::Interrupted {
        eprintln!(
            "interrupted at step {}; run the same command again to resume from {}",
            trainer.state().global_step,
            run_dir.display()
        );
        return Ok(false);
    }
    Ok(true)
}

fn file_sha256(paths: &[&Path]) -> Result<String> {
    let mut h = Sha256::new();
    for p in paths {
        h.update(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?);
    }
    Ok(hex::encode(h.finalize()))
}

/// Runs `ltre-cli train`.
pub fn run(args: Args) -> Result<()> {
    let mut config = match &args.config {
        Some(p) => TrainConfig::load(p)?,
        None => TrainConfig::default(),
    };
    if let Some(o) = args.objective {
        config.objective = o.into();
    }
    if let Some(lr) = args.lr {
        config.optimizer.lr = lr;
    }
    if let Some(e) = args.epochs {
        config.epochs = e;
    }
    if let Some(t) = args.temperature {
        config.temperature = t;
    }
    if let Some(f) = &args.faiss_index {
        config.index = f.clone();
    }
    config.validate()?;

    // Fixed documents, straight from the index's dense field.
    let index_config = IndexConfig::load(&args.index)?;
    let mut index = Index::open_in_dir(&args.index)
        .with_context(|| format!("opening {}", args.index.display()))?;
    let dense = DenseField::register(&mut index).with_context(|| {
        format!(
            "{}: no dense field; index with --model",
            args.index.display()
        )
    })?;
    let searcher = index.reader()?.searcher();
    let (doc_ids, doc_vectors) =
        tantivy_ltre::encoders::read_all_vectors(&searcher, &dense, &index_config.id_field)?;
    let checksum_before =
        tantivy_ltre::encoders::document_vectors_sha256(&searcher, &dense, &index_config.id_field)?;
    let doc_rows: HashMap<String, usize> = doc_ids
        .iter()
        .enumerate()
        .map(|(i, d)| (d.clone(), i))
        .collect();

    let store = EncoderStore::new(&args.index);
    let start_id = match &args.encoder {
        Some(id) => id.clone(),
        None => store.active_id()?,
    };
    let start_dir = store.encoder_dir(&start_id)?;
    let threads = if args.threads == 0 {
        EncoderOptions::default().threads
    } else {
        args.threads
    };
    let tower_options = TowerOptions {
        session: EncoderOptions {
            threads,
            ..Default::default()
        },
        optimizer: config.optimizer.clone(),
    };
    let tower = QueryTower::load(&start_dir, tower_options.clone())
        .with_context(|| format!("query encoder `{start_id}` ({})", start_dir.display()))?;

    let queries = read_queries(&args.queries)?;
    let qrels = read_qrels(&args.qrels)?;
    let all = join_queries(&queries, &qrels, &doc_rows);
    let (train, dev) = match &args.dev_qrels {
        Some(p) => {
            let dev = join_queries(&queries, &read_qrels(p)?, &doc_rows);
            let dev_ids: std::collections::HashSet<&str> =
                dev.iter().map(|q| q.id.as_str()).collect();
            let train: Vec<TrainQuery> = all
                .iter()
                .filter(|q| !dev_ids.contains(q.id.as_str()))
                .cloned()
                .collect();
            (train, dev)
        }
        None => split_dev(all, config.dev_fraction, config.seed),
    };
    if train.is_empty() {
        bail!(
            "{}: no query has a relevant document in the index",
            args.qrels.display()
        );
    }
    eprintln!(
        "train: {} training queries, {} held out, {} documents, objective {:?}, index {}",
        train.len(),
        dev.len(),
        doc_ids.len(),
        config.objective,
        config.index
    );

    let eval_set = match &args.eval_qrels {
        Some(p) => Some(join_queries(&queries, &read_qrels(p)?, &doc_rows)),
        None => None,
    };

    let bm25 = if config.objective == Objective::Bm25Negatives {
        bm25_candidates(&args.index, &train, &doc_rows)?
    } else {
        HashMap::new()
    };

    let run_dir = args
        .run_dir
        .clone()
        .unwrap_or_else(|| args.index.join("runs").join("latest"));
    let mut trainer = Trainer::new(
        config.clone(),
        tower,
        doc_ids.clone(),
        doc_vectors,
        train.clone(),
        dev.clone(),
        &run_dir,
    )?
    .with_bm25_candidates(bm25);

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ninterrupt: finishing the step and writing a checkpoint (Ctrl-C again to quit now)");
        })
        .context("installing the Ctrl-C handler")?;
    }
    if !run_to_end(&mut trainer, &stop, &run_dir)? {
        return Ok(());
    }

    let state = trainer.state().clone();
    for r in &state.history {
        let p = &r.phases;
        eprintln!(
            "epoch {}: loss {:.4}, held-out nDCG@10 {:.4}, {:.3} s/step (forward {:.3}, retrieval+loss {:.3}, backward {:.3}, AdamW {:.3}), {:.1} s/epoch",
            r.epoch, r.loss, r.dev_ndcg10, r.step_seconds, p.forward, p.retrieval_loss, p.backward, p.optimizer, r.epoch_seconds
        );
    }
    let baseline = state.baseline_dev_ndcg10.unwrap_or(0.0);
    eprintln!(
        "held-out nDCG@10: {baseline:.4} before, best {:.4} (epoch {})",
        state.best_dev_ndcg10, state.best_epoch
    );

    // Report numbers on the evaluation qrels with the start and the selected parameters.
    let improved = state.best_epoch > 0;
    let final_params = trainer.tower().params().clone();
    let doc_vectors = trainer.documents().vectors().to_owned();
    drop(trainer);
    let mut tower = QueryTower::load(&start_dir, tower_options.clone())?;
    let evaluate = |tower: &mut QueryTower| -> Result<Option<f64>> {
        eval_set
            .as_ref()
            .map(|set| evaluate_queries(tower, doc_vectors.view(), &doc_ids, set, 64))
            .transpose()
            .map_err(Into::into)
    };
    let eval_before = evaluate(&mut tower)?;
    let mut refit = None;
    let chosen = if improved && args.refit {
        // Settings (epochs included) were chosen on the held-out queries; now train them on all
        // the training queries, held-out ones included, from the same start.
        let mut refit_config = config.clone();
        refit_config.epochs = state.best_epoch;
        let all: Vec<TrainQuery> = train.iter().chain(dev.iter()).cloned().collect();
        let start = QueryTower::load(&start_dir, tower_options.clone())?;
        let refit_dir = run_dir.join("refit");
        eprintln!(
            "refit: {} epochs on all {} training queries",
            state.best_epoch,
            all.len()
        );
        let bm25 = if config.objective == Objective::Bm25Negatives {
            bm25_candidates(&args.index, &all, &doc_rows)?
        } else {
            HashMap::new()
        };
        let mut trainer = Trainer::new(
            refit_config,
            start,
            doc_ids.clone(),
            doc_vectors.clone(),
            all.clone(),
            vec![],
            &refit_dir,
        )?
        .with_bm25_candidates(bm25);
        if !run_to_end(&mut trainer, &stop, &refit_dir)? {
            return Ok(());
        }
        refit = Some(Refit {
            epochs: state.best_epoch,
            queries: all.len(),
        });
        trainer.tower().params().clone()
    } else if improved {
        ParamStore::load(&run_dir.join("best").join("params.safetensors"))?
    } else {
        final_params
    };
    tower.set_params(chosen)?;
    let eval_after = evaluate(&mut tower)?;
    if let (Some(b), Some(a), Some(p)) = (eval_before, eval_after, &args.eval_qrels) {
        eprintln!("{}: nDCG@10 {b:.4} -> {a:.4}", p.display());
    }

    let searcher = index.reader()?.searcher();
    let checksum_after =
        tantivy_ltre::encoders::document_vectors_sha256(&searcher, &dense, &index_config.id_field)?;
    if checksum_after != checksum_before {
        bail!("document vectors changed during training ({checksum_before} -> {checksum_after}); this is a bug");
    }

    let mut deployed = None;
    if args.deploy {
        if !improved && !args.force {
            eprintln!(
                "not deployed: no epoch improved the held-out nDCG@10 ({baseline:.4}); `{start_id}` stays active (--force deploys the final parameters)"
            );
        } else {
            let staging = run_dir.join("export");
            if staging.exists() {
                std::fs::remove_dir_all(&staging)
                    .with_context(|| format!("removing {}", staging.display()))?;
            }
            tower.export(
                &staging,
                &format!("ltre-cli train from encoder `{start_id}`"),
            )?;
            let mut metrics = std::collections::BTreeMap::new();
            metrics.insert("baseline_dev_ndcg10".to_string(), baseline);
            metrics.insert("dev_ndcg10".to_string(), state.best_dev_ndcg10);
            if let (Some(b), Some(a)) = (eval_before, eval_after) {
                metrics.insert("eval_before_ndcg10".to_string(), b);
                metrics.insert("eval_ndcg10".to_string(), a);
            }
            let mut record = EncoderRecord::new(tower.manifest().source.clone());
            record.parent = Some(start_id.clone());
            record.training_data_sha256 = Some(file_sha256(&[&args.queries, &args.qrels])?);
            record.config = serde_json::to_value(&config)?;
            record.metrics = metrics;
            record.document_vectors_sha256 = checksum_after.clone();
            record.note = Some(format!(
                "{:?}, best epoch {}{}",
                config.objective,
                state.best_epoch,
                if refit.is_some() {
                    ", refit on all training queries"
                } else {
                    ""
                }
            ));
            let id = store.install_version(&staging, record)?;
            store.activate(&id)?;
            std::fs::remove_dir_all(&staging).ok();
            eprintln!("deployed: encoder `{id}` is now active (`ltre-cli encoder rollback` restores `{start_id}`)");
            deployed = Some(id);
        }
    }

    let summary = Summary {
        config,
        start_encoder: start_id,
        train_queries: train.len(),
        dev_queries: dev.len(),
        baseline_dev_ndcg10: baseline,
        best_dev_ndcg10: state.best_dev_ndcg10,
        best_epoch: state.best_epoch,
        history: state.history,
        refit,
        eval_before_ndcg10: eval_before,
        eval_after_ndcg10: eval_after,
        document_vectors_sha256_before: checksum_before,
        document_vectors_sha256_after: checksum_after,
        deployed,
    };
    let path = run_dir.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// BM25 top-100 document rows per training query, for the BM25-negatives baseline.
fn bm25_candidates(
    index_dir: &Path,
    train: &[TrainQuery],
    doc_rows: &HashMap<String, usize>,
) -> Result<HashMap<String, Vec<usize>>> {
    let args = RetrievalArgs {
        index: index_dir.to_path_buf(),
        mode: Mode::Bm25,
        fusion: crate::search::FusionKind::Rrf,
        rrf_k: 60.0,
        alpha: 0.5,
        normalization: crate::search::NormKind::Minmax,
        depth: 100,
        fields: None,
        encoder: None,
        nprobe: None,
        ef_search: None,
        threads: 0,
    };
    let retriever = Retriever::open(&args)?;
    let searcher = retriever.searcher();
    let mut out = HashMap::new();
    for q in train {
        let hits = searcher.search(
            &*retriever.lexical_query(&q.text)?,
            &TopDocs::with_limit(100).order_by_score(),
        )?;
        let rows: Vec<usize> = hits
            .iter()
            .filter_map(|(_, addr)| retriever.doc_id(&searcher, *addr).ok())
            .filter_map(|id| doc_rows.get(&id).copied())
            .collect();
        out.insert(q.id.clone(), rows);
    }
    Ok(out)
}
