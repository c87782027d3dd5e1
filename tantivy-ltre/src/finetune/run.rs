//! The fine-tune workflow behind [`TunableIndex::fine_tune`].
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use ltre_core::encoder::EncoderOptions;
use ltre_core::fsutil::write_atomic;
use ltre_core::hybrid::{choose_alpha, HybridConfig, LexicalList};
use ltre_core::params::ParamStore;
use ltre_core::retrieval::DocumentIndex;
use ltre_core::train_step::{QueryTower, TowerOptions};
use ltre_core::trainer::{
    evaluate_ranking, split_dev, Objective, RunOutcome, TrainConfig, TrainQuery, TrainState,
    Trainer,
};
use ndarray::ArrayView2;
use tantivy::collector::TopDocs;
use tantivy::{ReloadPolicy, Searcher};

use super::data::{check_unique_ids, to_train_queries};
use super::hybrid::lexical_lists;
use super::search::{search, Probe, Searched, Trial};
use super::{
    Deployment, DevSet, FineTuneEvent, FineTuneOptions, FineTuneOutcome, FineTuneReport, Phase,
    Refit, TrainingData, TunableIndex,
};
use crate::encoders::{document_vectors_sha256, read_all_vectors, EncoderRecord};
use crate::error::{Error, Result};
use crate::lexical::bag_of_words;

/// BM25 candidates kept per query for the BM25-negatives objective.
const BM25_DEPTH: usize = 100;
/// The encoder record's metric holding the fusion weight chosen for it.
pub const FUSION_ALPHA_METRIC: &str = "fusion_alpha";
/// Queries per batch when evaluating.
const EVAL_BATCH: usize = 64;

type Progress<'a> = dyn FnMut(&FineTuneEvent) + 'a;

pub(super) fn fine_tune(
    target: &TunableIndex,
    data: &TrainingData,
    options: &FineTuneOptions,
    stop: &AtomicBool,
    progress: &mut Progress<'_>,
) -> Result<FineTuneOutcome> {
    let config = &options.config;
    config.validate()?;
    check_unique_ids(data.queries(), "training data")?;

    // The fixed documents, straight from the dense field. A manual reader: the "after"
    // checksum must see what was committed meanwhile, when we ask, not on a timer.
    let reader = target
        .index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()?;
    let searcher = reader.searcher();
    let id_name = target.id_field.name();
    let (doc_ids, doc_vectors) = read_all_vectors(&searcher, &target.dense, id_name)?;
    if doc_ids.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no document has a vector in the dense field; index documents with vectors first",
            target.index_dir.display()
        )));
    }
    let checksum_before = document_vectors_sha256(&searcher, &target.dense, id_name)?;
    let doc_rows: HashMap<String, usize> = doc_ids
        .iter()
        .enumerate()
        .map(|(i, d)| (d.clone(), i))
        .collect();

    // The encoder to start from.
    let store = target.encoders();
    let start_id = match &options.start_encoder {
        Some(id) => id.clone(),
        None => store.active_id().map_err(|e| {
            Error::Invalid(format!(
                "no active query encoder ({e}); install the document encoder with \
                 EncoderStore::install(\"base\", model_dir) and activate it"
            ))
        })?,
    };
    let start_dir = store.encoder_dir(&start_id)?;
    if !start_dir.is_dir() {
        return Err(Error::Invalid(format!(
            "no encoder `{start_id}` in {}; EncoderStore::list shows the installed ones",
            target
                .index_dir
                .join(crate::encoders::ENCODERS_DIR)
                .display()
        )));
    }
    let tower_options = TowerOptions {
        session: EncoderOptions {
            threads: if options.threads == 0 {
                EncoderOptions::default().threads
            } else {
                options.threads
            },
            ..Default::default()
        },
        optimizer: config.optimizer.clone(),
    };
    let load_start = || {
        QueryTower::load(&start_dir, tower_options.clone()).map_err(|e| {
            Error::Invalid(format!(
                "query encoder `{start_id}` ({}): {e}",
                start_dir.display()
            ))
        })
    };
    // Loaded first so that a broken start encoder fails before any heavy work.
    let mut tower = load_start()?;

    // Judged queries -> training and held-out queries over the document rows.
    let all = to_train_queries(data.queries(), &doc_rows);
    let (train, dev) = match &options.dev {
        DevSet::Split => split_dev(all, config.dev_fraction, config.seed),
        DevSet::Queries(dev) => {
            check_unique_ids(dev, "held-out queries")?;
            let dev = to_train_queries(dev, &doc_rows);
            let dev_ids: HashSet<&str> = dev.iter().map(|q| q.id.as_str()).collect();
            let train = all
                .into_iter()
                .filter(|q| !dev_ids.contains(q.id.as_str()))
                .collect();
            (train, dev)
        }
    };
    if train.is_empty() {
        return Err(Error::Invalid(format!(
            "no training query has a relevant document (grade >= 1) in the index; judged \
             documents are looked up by their id field `{id_name}`"
        )));
    }
    let eval = match options.eval.as_deref() {
        Some(queries) => {
            let eval = to_train_queries(queries, &doc_rows);
            if eval.is_empty() {
                return Err(Error::Invalid(format!(
                    "none of the {} evaluation queries has a relevant document (grade >= 1) in \
                     the index; judged documents are looked up by their id field `{id_name}`",
                    queries.len()
                )));
            }
            Some(eval)
        }
        None => None,
    };
    progress(&FineTuneEvent::Prepared {
        start_encoder: start_id.clone(),
        train_queries: train.len(),
        dev_queries: dev.len(),
        documents: doc_ids.len(),
        objective: config.objective,
        faiss_index: config.index.clone(),
    });

    let run_dir = options
        .run_dir
        .clone()
        .unwrap_or_else(|| target.index_dir.join("runs").join("latest"));
    // BM25 lists: hybrid-aware training needs them for every query; the fusion weight served
    // with the result is chosen on the held-out ones whenever the index has lexical fields.
    let depth = config.hybrid.unwrap_or_default().depth;
    let lexical = if config.hybrid.is_some() {
        let all = train.iter().chain(&dev).chain(eval.iter().flatten());
        lexical_lists(target, &searcher, all, &doc_rows, depth)?
    } else if !target.lexical_fields.is_empty() && !dev.is_empty() {
        lexical_lists(target, &searcher, &dev, &doc_rows, depth)?
    } else {
        HashMap::new()
    };
    let mut config_owned = config.clone();
    if let (Some(hybrid), true) = (&mut config_owned.hybrid, options.choose_alpha) {
        hybrid.alpha = held_out_alpha(
            &mut tower,
            doc_vectors.view(),
            &doc_ids,
            &dev,
            &lexical,
            hybrid.depth,
        )?
        .0;
    }
    let config = &config_owned;
    let bm25 = bm25_candidates(target, &searcher, config.objective, &train, &doc_rows)?;
    ltre_core::retrieval::set_faiss_threads(1);
    let index = DocumentIndex::build(doc_vectors, &config.index, config.nprobe)?;
    // The default recipe first chooses the learning rate and temperature on the held-out
    // queries; the chosen probe's run directory is where the training run continues.
    let probe = Probe {
        base: config,
        load_tower: &load_start,
        doc_ids: &doc_ids,
        train: &train,
        dev: &dev,
        bm25: &bm25,
        lexical: &lexical,
        run_dir: &run_dir,
    };
    let (config, select_dir, mut trials, mut documents, rivals) = match &options.search {
        None => (
            config.clone(),
            run_dir.clone(),
            Vec::new(),
            index,
            Vec::new(),
        ),
        Some(recipe) => match search(&probe, recipe, index, stop, progress)? {
            Searched::Chosen {
                config,
                dir,
                trials,
                index,
                rivals,
            } => (*config, dir, trials, index, rivals),
            Searched::Interrupted { step, dir } => {
                return Ok(interrupted(Phase::Search, step, dir))
            }
        },
    };
    // The chosen run, then its full-length rivals (other trust-region schedules, each in its
    // own directory): the best held-out point wins. The one copy of the document vectors
    // moves from trainer to trainer.
    let mut start_tower = Some(tower);
    let mut selected: Option<Selected> = None;
    let max_drop = options.search.as_ref().map_or(0.0, |r| r.max_drop);
    let full_runs_from = trials.len();
    let runs = std::iter::once((config, select_dir)).chain(rivals);
    for (config, dir) in runs {
        let tower = match start_tower.take() {
            Some(tower) => tower,
            None => load_start()?,
        };
        let mut trainer = probe.trainer(config.clone(), tower, documents, &dir)?;
        if let Some(step) = run_phase(&mut trainer, Phase::Select, train.len(), stop, progress)? {
            return Ok(interrupted(Phase::Select, step, dir));
        }
        let run = Selected {
            steps_per_epoch: trainer.steps_per_epoch(),
            state: trainer.state().clone(),
            best_dir: trainer.best_dir(),
            final_params: trainer.tower().params().clone(),
            config,
        };
        documents = trainer.into_documents();
        if options.search.is_some() {
            let trial = Trial::of_run(&run.config, &run.state, u64::MAX, max_drop);
            progress(&FineTuneEvent::Trial(trial.clone()));
            trials.push(trial);
        }
        if selected
            .as_ref()
            .is_none_or(|s| run.state.best_dev_ndcg10 > s.state.best_dev_ndcg10)
        {
            selected = Some(run);
        }
    }
    let Some(Selected {
        steps_per_epoch: train_steps_per_epoch,
        state,
        best_dir,
        final_params,
        config,
    }) = selected
    else {
        return Err(Error::Invalid("no training run was selected".into()));
    };
    // The probes' flag marks the chosen settings; the full runs', the schedule kept.
    for t in &mut trials[full_runs_from..] {
        t.chosen = t.anchor_steps == config.anchor_steps;
    }
    let config = &config;
    // Checkpoints of earlier versions selected per epoch only.
    let best_step = if state.best_step > 0 {
        state.best_step
    } else {
        state.best_epoch as u64 * train_steps_per_epoch
    };
    let improved = best_step > 0;

    let mut tower = load_start()?;
    let hybrid = config.hybrid.map(|h| (h, &lexical));
    let evaluate = |tower: &mut QueryTower, docs: ArrayView2<f32>| -> Result<Option<f64>> {
        match &eval {
            Some(set) => Ok(Some(evaluate_on(tower, docs, &doc_ids, set, hybrid)?)),
            None => Ok(None),
        }
    };
    let eval_before = evaluate(&mut tower, documents.vectors())?;
    // The encoder chosen on the held-out queries, which have not trained it.
    tower.set_params(if improved {
        ParamStore::load(&best_dir.join("params.safetensors"))?
    } else {
        final_params
    })?;
    // The fusion weight to serve, chosen on the held-out queries with that encoder: a refit
    // trains on those queries, and a weight chosen with its encoder would favour the dense
    // side it has fitted to them (SciFact: 0.9 for every objective).
    let fusion = if lexical.is_empty() || dev.is_empty() {
        None
    } else {
        Some(held_out_alpha(
            &mut tower,
            documents.vectors(),
            &doc_ids,
            &dev,
            &lexical,
            depth,
        )?)
    };
    let mut refit = None;
    let refit_wanted = options.refit || options.search.as_ref().is_some_and(|r| r.refit);
    if improved && refit_wanted {
        // The stopping point was chosen on the held-out queries; now train on all the training
        // queries, held-out ones included, from the same start, with the same schedule scaled
        // to the larger set, for as many epochs' worth of data as the best point had seen.
        let all: Vec<TrainQuery> = train.iter().chain(dev.iter()).cloned().collect();
        let all_steps_per_epoch = all.len().div_ceil(config.batch_size) as u64;
        let scale = all_steps_per_epoch as f64 / train_steps_per_epoch.max(1) as f64;
        let steps = ((best_step as f64 * scale).round() as u64).max(1);
        let mut refit_config = config.clone();
        refit_config.anchor_steps = (config.anchor_steps as f64 * scale).round() as u64;
        refit_config.epochs = refit_config_epochs(steps, all_steps_per_epoch);
        refit_config.max_steps = Some(steps);
        refit_config.optimizer.total_steps = all_steps_per_epoch * config.epochs as u64;
        let refit_dir = run_dir.join("refit");
        let bm25 = bm25_candidates(target, &searcher, config.objective, &all, &doc_rows)?;
        let mut trainer = Trainer::with_index(
            refit_config,
            load_start()?,
            doc_ids.clone(),
            documents,
            all.clone(),
            vec![],
            &refit_dir,
        )?
        .with_bm25_candidates(bm25)
        .with_lexical(lexical.clone());
        if let Some(step) = run_phase(&mut trainer, Phase::Refit, all.len(), stop, progress)? {
            return Ok(interrupted(Phase::Refit, step, run_dir));
        }
        refit = Some(Refit {
            epochs: refit_config_epochs(steps, all_steps_per_epoch),
            steps,
            queries: all.len(),
        });
        tower.set_params(trainer.tower().params().clone())?;
        documents = trainer.into_documents();
    }
    let eval_after = evaluate(&mut tower, documents.vectors())?;

    // LTRe never writes documents: a change means another writer committed meanwhile, and
    // the encoder was trained against vectors the index no longer holds.
    reader.reload()?;
    let checksum_after = document_vectors_sha256(&reader.searcher(), &target.dense, id_name)?;
    if checksum_after != checksum_before {
        return Err(Error::Invalid(format!(
            "the document vectors of {} changed during fine-tuning ({checksum_before} -> \
             {checksum_after}): documents were added, deleted or re-embedded meanwhile; nothing \
             was deployed; run again while the index is not being written",
            target.index_dir.display()
        )));
    }

    let mut report = FineTuneReport {
        config: config.clone(),
        start_encoder: start_id.clone(),
        run_dir: run_dir.clone(),
        documents: doc_ids.len(),
        train_queries: train.len(),
        dev_queries: dev.len(),
        baseline_dev_ndcg10: state.baseline_dev_ndcg10.unwrap_or(0.0),
        best_dev_ndcg10: state.best_dev_ndcg10,
        best_epoch: state.best_epoch,
        best_step,
        history: state.history,
        dev_curve: state.dev_curve,
        search: trials,
        refit,
        eval_queries: eval.as_ref().map_or(0, Vec::len),
        eval_before_ndcg10: eval_before,
        eval_after_ndcg10: eval_after,
        training_data_sha256: data.sha256().to_string(),
        document_vectors_sha256_before: checksum_before,
        document_vectors_sha256_after: checksum_after,
        deployment: Deployment::NotRequested,
        fusion_alpha: fusion.as_ref().map(|f| f.0),
        fusion_table: fusion.map(|f| f.1).unwrap_or_default(),
    };
    if options.deploy {
        report.deployment = if improved || options.force {
            deploy(target, &tower, &report, &run_dir, !improved)?
        } else {
            Deployment::NotImproved
        };
    }
    let summary =
        serde_json::to_string_pretty(&report).map_err(|e| Error::Invalid(e.to_string()))?;
    write_atomic(&run_dir.join("summary.json"), summary.as_bytes())?;
    Ok(FineTuneOutcome::Finished(Box::new(report)))
}

/// The linear fusion weight with the best nDCG@10 on the held-out queries `dev` for `tower`,
/// and the whole grid's values (both logged).
fn held_out_alpha(
    tower: &mut QueryTower,
    docs: ArrayView2<f32>,
    doc_ids: &[String],
    dev: &[TrainQuery],
    lexical: &HashMap<String, LexicalList>,
    depth: usize,
) -> Result<(f32, Vec<(f32, f64)>)> {
    let (alpha, table) = choose_alpha(tower, docs, doc_ids, dev, lexical, depth)?;
    tracing::info!(
        alpha,
        ?table,
        "fusion weight chosen on the held-out queries"
    );
    Ok((alpha, table))
}

/// A finished selection run.
struct Selected {
    config: TrainConfig,
    steps_per_epoch: u64,
    state: TrainState,
    best_dir: PathBuf,
    final_params: ParamStore,
}

/// Epochs (rounded up) that `steps` steps cover.
fn refit_config_epochs(steps: u64, steps_per_epoch: u64) -> usize {
    (steps.div_ceil(steps_per_epoch.max(1)) as usize).max(1)
}

fn interrupted(phase: Phase, step: u64, run_dir: PathBuf) -> FineTuneOutcome {
    FineTuneOutcome::Interrupted {
        phase,
        step,
        run_dir,
    }
}

/// Runs one phase to its end; `Some(step)` when `stop` interrupted it.
fn run_phase(
    trainer: &mut Trainer,
    phase: Phase,
    queries: usize,
    stop: &AtomicBool,
    progress: &mut Progress<'_>,
) -> Result<Option<u64>> {
    let total_steps = trainer.total_steps();
    progress(&FineTuneEvent::PhaseStarted {
        phase,
        epochs: trainer.config().epochs,
        queries,
        step: trainer.state().global_step,
        total_steps,
    });
    let outcome = trainer.run(stop, &mut |step, total_steps, loss, seconds| {
        progress(&FineTuneEvent::Step {
            phase,
            step,
            total_steps,
            loss,
            seconds,
        })
    })?;
    let interrupted = outcome == RunOutcome::Interrupted;
    progress(&FineTuneEvent::PhaseEnded { phase, interrupted });
    Ok(interrupted.then(|| trainer.state().global_step))
}

fn evaluate_on(
    tower: &mut QueryTower,
    docs: ArrayView2<f32>,
    doc_ids: &[String],
    queries: &[TrainQuery],
    hybrid: Option<(HybridConfig, &HashMap<String, LexicalList>)>,
) -> Result<f64> {
    if queries.is_empty() {
        return Ok(0.0);
    }
    Ok(evaluate_ranking(
        tower, docs, doc_ids, queries, EVAL_BATCH, hybrid,
    )?)
}

/// Exports `tower`, installs it as a new version with its provenance, and activates it.
fn deploy(
    target: &TunableIndex,
    tower: &QueryTower,
    report: &FineTuneReport,
    run_dir: &Path,
    forced: bool,
) -> Result<Deployment> {
    let store = target.encoders();
    let start_id = &report.start_encoder;
    // A staging directory inside the run directory (same file system as nothing else needs
    // it), removed when dropped whatever happens.
    let staging = tempfile::Builder::new()
        .prefix(".export-")
        .tempdir_in(run_dir)
        .map_err(|e| Error::io(run_dir, e))?;
    let model_dir = staging.path().join("model");
    tower.export(&model_dir, &format!("fine-tuned from encoder `{start_id}`"))?;

    let mut record = EncoderRecord::new(tower.manifest().source.clone());
    record.parent = Some(start_id.clone());
    record.training_data_sha256 = Some(report.training_data_sha256.clone());
    record.config =
        serde_json::to_value(&report.config).map_err(|e| Error::Invalid(e.to_string()))?;
    record
        .metrics
        .insert("baseline_dev_ndcg10".into(), report.baseline_dev_ndcg10);
    record
        .metrics
        .insert("dev_ndcg10".into(), report.best_dev_ndcg10);
    if let (Some(before), Some(after)) = (report.eval_before_ndcg10, report.eval_after_ndcg10) {
        record.metrics.insert("eval_before_ndcg10".into(), before);
        record.metrics.insert("eval_ndcg10".into(), after);
    }
    record.document_vectors_sha256 = report.document_vectors_sha256_after.clone();
    if let Some(alpha) = report.fusion_alpha {
        record
            .metrics
            .insert(FUSION_ALPHA_METRIC.into(), alpha as f64);
    }
    record.note = Some(format!(
        "{:?}, best epoch {}{}{}",
        report.config.objective,
        report.best_epoch,
        if report.refit.is_some() {
            ", refit on all training queries"
        } else {
            ""
        },
        if forced {
            ", forced (held-out nDCG@10 did not improve)"
        } else {
            ""
        }
    ));
    let previous = store.active_id()?;
    let id = store.install_version(&model_dir, record)?;
    store.activate(&id)?;
    Ok(Deployment::Deployed {
        id,
        previous,
        forced,
    })
}

/// BM25 top-[`BM25_DEPTH`] document rows per query, for the BM25-negatives objective (empty
/// for the others).
fn bm25_candidates(
    target: &TunableIndex,
    searcher: &Searcher,
    objective: Objective,
    queries: &[TrainQuery],
    doc_rows: &HashMap<String, usize>,
) -> Result<HashMap<String, Vec<usize>>> {
    let mut out = HashMap::new();
    if objective != Objective::Bm25Negatives {
        return Ok(out);
    }
    if target.lexical_fields.is_empty() {
        return Err(Error::Invalid(
            "the bm25_negatives objective needs the lexical fields to search: give them with \
             TunableIndex::with_lexical_fields"
                .into(),
        ));
    }
    let collector = TopDocs::with_limit(BM25_DEPTH).order_by_score();
    for q in queries {
        let query = bag_of_words(&target.index, &target.lexical_fields, &q.text)?;
        let hits = searcher.search(&*query, &collector)?;
        let mut rows = Vec::with_capacity(hits.len());
        for (_, address) in hits {
            if let Some(&row) = doc_rows.get(&target.id_field.get(searcher, address)?) {
                rows.push(row);
            }
        }
        out.insert(q.id.clone(), rows);
    }
    Ok(out)
}
