//! The default recipe: a small budgeted search of the learning rate and the temperature on the
//! held-out queries, so a fine-tune without a tuned configuration still gains (or, gated,
//! deploys nothing).
//!
//! Each [`Trial`] is a short probe: the run it would be (same schedule, same epochs) stopped
//! after [`RecipeSearch::probe_epochs`], with the held-out nDCG@10 logged along the way. The
//! learning rates are probed first at the configured temperature, then the other temperatures
//! at the chosen learning rate. The chosen trial is the one with the best held-out point among
//! the *stable* ones (no point more than [`RecipeSearch::max_drop`] below the start encoder);
//! when none is stable, the smallest learning rate. Every trial trains inside a trust region
//! toward the start encoder ([`RecipeSearch::anchor`]) that fades out over the first 40% of
//! the run ([`RecipeSearch::anchor_fraction`]): measured on SciFact at lr 3e-4, the trust
//! region turns a fall of the held-out nDCG@10 from 0.649 to 0.592 within the first epoch into
//! a rise to 0.716, and letting it fade lets the run go on to 0.777 where a constant one stays
//! near 0.69 (BENCHMARKS.md). The chosen probe then simply continues to
//! its last epoch: its checkpoint is the start of the real run, so no step is wasted.
//!
//! Whether the trust region should fade shows only late in a run (on SciFact the fading run
//! keeps rising where the kept one stalls; on Cranfield's 90 training queries the fading run
//! drifts below the start while the kept one holds): a one-epoch probe cannot see it. So the
//! chosen settings also run at full length with each of [`RecipeSearch::rival_anchor_fractions`]
//! (by default one run with the trust region kept to the end), and the best held-out point of
//! these full runs is the result; with [`RecipeSearch::refit`] the chosen run is then retrained
//! on all the training queries, held-out ones included. Every probe and run shares the one
//! document index
//! (documents are fixed), and each has its own run directory under `RUN_DIR/search/`, so a
//! killed search resumes where it stopped.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use ltre_core::hybrid::LexicalList;
use ltre_core::retrieval::DocumentIndex;
use ltre_core::train_step::QueryTower;
use ltre_core::trainer::{RunOutcome, TrainConfig, TrainQuery, TrainState, Trainer};
use serde::Serialize;

use super::{FineTuneEvent, Phase};
use crate::error::{Error, Result};

/// What the default recipe tries (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct RecipeSearch {
    /// Learning rates probed at the configured temperature, smallest first.
    pub learning_rates: Vec<f32>,
    /// Other temperatures probed at the chosen learning rate.
    pub temperatures: Vec<f32>,
    /// Length of a probe, in epochs of the training queries (at least one step).
    pub probe_epochs: f32,
    /// A trial is stable when no held-out point falls more than this below the start encoder.
    pub max_drop: f64,
    /// The trust region every trial trains with (`TrainConfig::anchor`), unless the
    /// configuration sets one.
    pub anchor: f32,
    /// The share of the run's steps over which that trust region fades to nothing
    /// (`TrainConfig::anchor_steps`; 0: constant).
    pub anchor_fraction: f32,
    /// Other fading shares run at full length with the chosen settings, against the chosen
    /// probe's continuation (empty: none; only when the search sets the trust region).
    pub rival_anchor_fractions: Vec<f32>,
    /// Once everything is chosen on the held-out queries (settings, schedule, step), retrain on
    /// all the training queries, held-out ones included ([`FineTuneOptions::refit`]). The held
    /// out fifth is data the final encoder would otherwise never learn from: on SciFact the
    /// default recipe's test nDCG@10 goes from 0.777 to 0.812 with it (BENCHMARKS.md).
    ///
    /// [`FineTuneOptions::refit`]: super::FineTuneOptions::refit
    pub refit: bool,
}

impl Default for RecipeSearch {
    fn default() -> Self {
        RecipeSearch {
            learning_rates: vec![3e-5, 1e-4, 3e-4],
            temperatures: vec![10.0, 40.0],
            probe_epochs: 1.0,
            max_drop: 0.02,
            anchor: 10.0,
            anchor_fraction: 0.4,
            rival_anchor_fractions: vec![0.0],
            refit: true,
        }
    }
}

impl RecipeSearch {
    fn validate(&self) -> Result<()> {
        let positive = |v: &f32| v.is_finite() && *v > 0.0;
        if self.learning_rates.is_empty() || !self.learning_rates.iter().all(positive) {
            return Err(Error::Invalid(
                "recipe search: give at least one learning rate, all positive".into(),
            ));
        }
        if !self.temperatures.iter().all(positive) || !positive(&self.probe_epochs) {
            return Err(Error::Invalid(
                "recipe search: temperatures and probe_epochs must be positive".into(),
            ));
        }
        let fractions = std::iter::once(&self.anchor_fraction).chain(&self.rival_anchor_fractions);
        if !fractions.into_iter().all(|f| (0.0..=1.0).contains(f)) {
            return Err(Error::Invalid(
                "recipe search: anchor fractions must lie in [0, 1]".into(),
            ));
        }
        if !(self.anchor.is_finite() && self.anchor >= 0.0) {
            return Err(Error::Invalid(
                "recipe search: anchor must be at least 0".into(),
            ));
        }
        if !(self.max_drop.is_finite() && self.max_drop >= 0.0) {
            return Err(Error::Invalid(
                "recipe search: max_drop must be at least 0".into(),
            ));
        }
        Ok(())
    }
}

/// One probe of the search and what it measured on the held-out queries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trial {
    /// Learning rate.
    pub lr: f32,
    /// Temperature.
    pub temperature: f32,
    /// Steps over which the trust region fades (0: kept to the end).
    pub anchor_steps: u64,
    /// Steps the probe ran (all of the run's for a full-length run).
    pub steps: u64,
    /// Held-out nDCG@10 of the start encoder.
    pub start_dev_ndcg10: f64,
    /// Best held-out point of the probe.
    pub best_dev_ndcg10: f64,
    /// The step of that point (0: no point beat the start).
    pub best_step: u64,
    /// Lowest held-out point of the probe.
    pub lowest_dev_ndcg10: f64,
    /// No point fell more than `max_drop` below the start.
    pub stable: bool,
    /// The trial the run continued with.
    pub chosen: bool,
}

/// The shared inputs of every probe.
pub(super) struct Probe<'a> {
    pub base: &'a TrainConfig,
    pub load_tower: &'a dyn Fn() -> Result<QueryTower>,
    pub doc_ids: &'a [String],
    pub train: &'a [TrainQuery],
    pub dev: &'a [TrainQuery],
    pub bm25: &'a HashMap<String, Vec<usize>>,
    pub lexical: &'a HashMap<String, LexicalList>,
    pub run_dir: &'a Path,
}

impl Probe<'_> {
    /// A trainer of `config` over the shared inputs, from `tower` (the start encoder),
    /// checkpointing in `dir`.
    pub fn trainer(
        &self,
        config: TrainConfig,
        tower: QueryTower,
        index: DocumentIndex,
        dir: &Path,
    ) -> Result<Trainer> {
        Ok(Trainer::with_index(
            config,
            tower,
            self.doc_ids.to_vec(),
            index,
            self.train.to_vec(),
            self.dev.to_vec(),
            dir,
        )?
        .with_bm25_candidates(self.bm25.clone())
        .with_lexical(self.lexical.clone()))
    }
}

/// The search's result: the configuration and run directory to continue, and the index back.
pub(super) enum Searched {
    Chosen {
        config: Box<TrainConfig>,
        dir: PathBuf,
        trials: Vec<Trial>,
        index: DocumentIndex,
        /// Full-length rivals of the chosen run: other trust-region schedules, each in its
        /// own directory.
        rivals: Vec<(TrainConfig, PathBuf)>,
    },
    Interrupted {
        step: u64,
        dir: PathBuf,
    },
}

/// The run directory of the trial with these settings.
fn trial_dir(run_dir: &Path, lr: f32, temperature: f32) -> PathBuf {
    run_dir
        .join("search")
        .join(format!("lr{lr:e}-t{temperature}"))
}

pub(super) fn search(
    probe: &Probe<'_>,
    search: &RecipeSearch,
    mut index: DocumentIndex,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(&FineTuneEvent),
) -> Result<Searched> {
    search.validate()?;
    if probe.dev.is_empty() {
        return Err(Error::Invalid(
            "the recipe search selects on held-out queries and there are none: give held-out \
             queries (or a dev_fraction above 0), or a configuration without the search"
                .into(),
        ));
    }
    let base_t = probe.base.temperature;
    let mut base = probe.base.clone();
    let steps_per_epoch = probe.train.len().div_ceil(base.batch_size.max(1)) as u64;
    let total = base
        .max_steps
        .unwrap_or(steps_per_epoch * base.epochs as u64);
    let anchor_steps = |f: f32| match f {
        f if f > 0.0 => ((total as f32 * f).round() as u64).max(1),
        _ => 0,
    };
    // A trust region the configuration sets is kept as it is, without rivals.
    let search_sets_anchor = base.anchor == 0.0;
    if search_sets_anchor {
        base.anchor = search.anchor;
        base.anchor_steps = anchor_steps(search.anchor_fraction);
    }
    let probe = &Probe {
        base: &base,
        ..*probe
    };
    let mut trials: Vec<Trial> = Vec::new();
    // Stage 0: the learning rates at the configured temperature; stage 1: the other
    // temperatures at the learning rate stage 0 chose.
    for stage in 0..2 {
        let settings: Vec<(f32, f32)> = if stage == 0 {
            search
                .learning_rates
                .iter()
                .map(|&lr| (lr, base_t))
                .collect()
        } else {
            let lr = trials[choose(&trials)].lr;
            search
                .temperatures
                .iter()
                .filter(|&&t| t != base_t)
                .map(|&t| (lr, t))
                .collect()
        };
        for (lr, temperature) in settings {
            let (trial, back) =
                match run_probe(probe, search, lr, temperature, index, stop, progress)? {
                    Ok(done) => done,
                    Err(interrupted) => return Ok(interrupted),
                };
            index = back;
            progress(&FineTuneEvent::Trial(trial.clone()));
            trials.push(trial);
        }
    }
    let best = choose(&trials);
    trials[best].chosen = true;
    let mut config = probe.base.clone();
    config.optimizer.lr = trials[best].lr;
    config.temperature = trials[best].temperature;
    let dir = trial_dir(probe.run_dir, config.optimizer.lr, config.temperature);
    let mut rivals = Vec::new();
    if search_sets_anchor {
        for &f in &search.rival_anchor_fractions {
            let mut rival = config.clone();
            rival.anchor_steps = anchor_steps(f);
            if rival.anchor_steps != config.anchor_steps {
                let name = format!(
                    "{}-anchor{f}",
                    dir.file_name().unwrap_or_default().to_string_lossy()
                );
                rivals.push((rival, dir.with_file_name(name)));
            }
        }
    }
    Ok(Searched::Chosen {
        dir,
        config: Box::new(config),
        trials,
        index,
        rivals,
    })
}

/// The chosen trial: best held-out point among the stable ones, else the first (smallest lr).
fn choose(trials: &[Trial]) -> usize {
    let mut best: Option<usize> = None;
    for (i, t) in trials.iter().enumerate() {
        if t.stable && best.is_none_or(|b| t.best_dev_ndcg10 > trials[b].best_dev_ndcg10) {
            best = Some(i);
        }
    }
    best.unwrap_or(0)
}

type ProbeResult = std::result::Result<(Trial, DocumentIndex), Searched>;

fn run_probe(
    probe: &Probe<'_>,
    search: &RecipeSearch,
    lr: f32,
    temperature: f32,
    index: DocumentIndex,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(&FineTuneEvent),
) -> Result<ProbeResult> {
    let mut config = probe.base.clone();
    config.optimizer.lr = lr;
    config.temperature = temperature;
    let dir = trial_dir(probe.run_dir, lr, temperature);
    let mut trainer = probe.trainer(config, (probe.load_tower)()?, index, &dir)?;
    let steps = ((trainer.steps_per_epoch() as f32 * search.probe_epochs).ceil() as u64)
        .clamp(1, trainer.total_steps().max(1));
    // The probe is the real run stopped early: its own flag ends it after `steps`.
    let halt = AtomicBool::new(trainer.state().global_step >= steps || stop.load(Ordering::SeqCst));
    progress(&FineTuneEvent::PhaseStarted {
        phase: Phase::Search,
        epochs: trainer.config().epochs,
        queries: probe.train.len(),
        step: trainer.state().global_step,
        total_steps: steps,
    });
    let outcome = trainer.run(&halt, &mut |step, _, loss, seconds| {
        progress(&FineTuneEvent::Step {
            phase: Phase::Search,
            step,
            total_steps: steps,
            loss,
            seconds,
        });
        // After the callback, which may itself set `stop`.
        if step >= steps || stop.load(Ordering::SeqCst) {
            halt.store(true, Ordering::SeqCst);
        }
    })?;
    let done = trainer.state().global_step;
    if stop.load(Ordering::SeqCst) && done < steps && outcome == RunOutcome::Interrupted {
        progress(&FineTuneEvent::PhaseEnded {
            phase: Phase::Search,
            interrupted: true,
        });
        return Ok(Err(Searched::Interrupted { step: done, dir }));
    }
    trainer.observe_dev()?;
    progress(&FineTuneEvent::PhaseEnded {
        phase: Phase::Search,
        interrupted: false,
    });
    let trial = Trial::of_run(trainer.config(), trainer.state(), steps, search.max_drop);
    Ok(Ok((trial, trainer.into_documents())))
}

impl Trial {
    /// What a run measured on the held-out queries up to step `steps`.
    pub(super) fn of_run(
        config: &TrainConfig,
        state: &TrainState,
        steps: u64,
        max_drop: f64,
    ) -> Trial {
        let start = state.baseline_dev_ndcg10.unwrap_or(0.0);
        let (mut best, mut best_step, mut lowest) = (start, 0, start);
        for p in state.dev_curve.iter().filter(|p| p.step <= steps) {
            if p.dev_ndcg10 > best {
                (best, best_step) = (p.dev_ndcg10, p.step);
            }
            lowest = lowest.min(p.dev_ndcg10);
        }
        Trial {
            lr: config.optimizer.lr,
            temperature: config.temperature,
            anchor_steps: config.anchor_steps,
            steps: state.global_step.min(steps),
            start_dev_ndcg10: start,
            best_dev_ndcg10: best,
            best_step,
            lowest_dev_ndcg10: lowest,
            stable: lowest >= start - max_drop,
            chosen: false,
        }
    }
}
