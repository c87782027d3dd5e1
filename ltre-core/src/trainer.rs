//! The LTRe trainer: fine-tunes the query tower against fixed document vectors.
//!
//! Each step encodes a batch of training queries with the current parameters, runs full
//! retrieval over the whole document index ([`DocumentIndex`], exact or compressed), takes the
//! top `top_n`, appends relevant documents that were not retrieved, and minimises LTRe's
//! pairwise loss ([`crate::loss::ltre_loss`]). dL/d(query) is computed here and run back through
//! the query tower's gradient graph; AdamW updates the parameters in Rust. Documents are never
//! re-encoded: the document vectors are the same bytes before and after (see
//! [`DocumentIndex::checksum`]).
//!
//! The same loop runs the baselines the LTRe paper compares against ([`Objective`]): in-batch
//! negatives and sampled negatives (random, or BM25 top-k supplied by the caller).
//!
//! Training is seeded and deterministic on CPU, checkpoints every few steps into a run
//! directory, and resumes from the last checkpoint after an interruption.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use ndarray::{Array2, ArrayView2};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::data::{Qrels, Query};
use crate::loss::{self, Candidate, QueryLoss};
use crate::metrics::{evaluate, Metric, Run};
use crate::optim::AdamWConfig;
use crate::params::write_atomic;
use crate::retrieval::DocumentIndex;
use crate::train_step::QueryTower;
use crate::{Error, Result};

/// The training objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// LTRe: full retrieval, pairwise loss weighted by the change in reciprocal rank.
    #[default]
    Ltre,
    /// Softmax cross-entropy against the other queries' positives in the batch.
    InBatch,
    /// Softmax cross-entropy over one positive and `negatives` random documents.
    RandomNegatives,
    /// Softmax cross-entropy over one positive and `negatives` documents from the BM25 top-k.
    Bm25Negatives,
}

/// Training configuration (TOML or JSON). Every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Seed for shuffling, splits and negative sampling.
    pub seed: u64,
    /// Passes over the training queries.
    pub epochs: usize,
    /// Queries per step.
    pub batch_size: usize,
    /// Training objective.
    pub objective: Objective,
    /// LTRe: documents retrieved per query.
    pub top_n: usize,
    /// LTRe: reciprocal ranks beyond this cut count as 0.
    pub rr_cut: usize,
    /// Scores are `temperature * <q, d>` (about 20 for L2-normalised encoders).
    pub temperature: f32,
    /// Sampled-negative objectives: negatives per query.
    pub negatives: usize,
    /// Faiss factory string of the retrieval index (`Flat`, `IVF256,PQ48np`, ...).
    pub index: String,
    /// IVF probes.
    pub nprobe: usize,
    /// Fraction of the steps used for linear warm-up (overrides `optimizer.warmup_steps`).
    pub warmup_ratio: f32,
    /// Steps between checkpoints.
    pub checkpoint_every: u64,
    /// Fraction of the training queries held out for model selection when no dev qrels are given.
    pub dev_fraction: f32,
    /// Stop after this many steps in total (for quick runs and benchmarks).
    pub max_steps: Option<u64>,
    /// AdamW settings (`total_steps` is filled in from the epochs when 0).
    pub optimizer: AdamWConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            seed: 13,
            epochs: 5,
            batch_size: 32,
            objective: Objective::Ltre,
            top_n: 200,
            rr_cut: 200,
            temperature: 20.0,
            negatives: 7,
            index: "Flat".into(),
            nprobe: 32,
            warmup_ratio: 0.1,
            checkpoint_every: 10,
            dev_fraction: 0.2,
            max_steps: None,
            optimizer: AdamWConfig::default(),
        }
    }
}

impl TrainConfig {
    /// Reads a TOML (`.toml`) or JSON configuration file.
    pub fn load(path: &Path) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: TrainConfig = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text)
                .map_err(|e| Error::bad_file(path, format!("invalid training config: {e}")))?
        } else {
            toml::from_str(&text)
                .map_err(|e| Error::bad_file(path, format!("invalid training config: {e}")))?
        };
        cfg.validate()
            .map_err(|e| Error::bad_file(path, e.to_string()))?;
        Ok(cfg)
    }

    /// Checks the values make sense.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Invalid(m.to_string()));
        if self.epochs == 0 || self.batch_size == 0 {
            return bad("epochs and batch_size must be at least 1");
        }
        if self.checkpoint_every == 0 {
            return bad("checkpoint_every must be at least 1");
        }
        if self.top_n == 0 || self.rr_cut == 0 {
            return bad("top_n and rr_cut must be at least 1");
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad("temperature must be a positive number");
        }
        if !(0.0..1.0).contains(&self.dev_fraction) {
            return bad("dev_fraction must lie in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad("warmup_ratio must lie in [0, 1)");
        }
        if matches!(
            self.objective,
            Objective::RandomNegatives | Objective::Bm25Negatives
        ) && self.negatives == 0
        {
            return bad("negatives must be at least 1 for sampled-negative objectives");
        }
        self.optimizer.validate()
    }
}

/// A training query with the rows of its relevant documents.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainQuery {
    /// Query id.
    pub id: String,
    /// Query text.
    pub text: String,
    /// Rows (in the document matrix) of documents graded >= 1.
    pub relevant: Vec<usize>,
}

/// Queries joined with qrels and the document id -> row map. Queries without a relevant
/// document in the collection are dropped (they carry no signal).
pub fn join_queries(
    queries: &[Query],
    qrels: &Qrels,
    doc_rows: &HashMap<String, usize>,
) -> Vec<TrainQuery> {
    queries
        .iter()
        .filter_map(|q| {
            let judged = qrels.get(&q.id)?;
            let relevant: Vec<usize> = judged
                .iter()
                .filter(|(_, &g)| g >= 1)
                .filter_map(|(d, _)| doc_rows.get(d).copied())
                .collect();
            (!relevant.is_empty()).then(|| TrainQuery {
                id: q.id.clone(),
                text: q.text.clone(),
                relevant,
            })
        })
        .collect()
}

/// Splits queries into (train, dev) with a seeded shuffle; `fraction` of them go to dev.
pub fn split_dev(
    mut queries: Vec<TrainQuery>,
    fraction: f32,
    seed: u64,
) -> (Vec<TrainQuery>, Vec<TrainQuery>) {
    queries.sort_by(|a, b| a.id.cmp(&b.id));
    queries.shuffle(&mut StdRng::seed_from_u64(seed ^ 0xdead_beef));
    let n_dev = ((queries.len() as f32) * fraction).round() as usize;
    let dev = queries.split_off(queries.len() - n_dev.min(queries.len()));
    (queries, dev)
}

/// One epoch's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub loss: f32,
    /// Held-out nDCG@10 after the epoch.
    pub dev_ndcg10: f64,
    /// Mean wall time per step (seconds).
    pub step_seconds: f64,
    /// Wall time of the epoch (seconds, evaluation excluded).
    pub epoch_seconds: f64,
    /// Mean seconds per step spent in each phase.
    #[serde(default)]
    pub phases: StepPhases,
}

/// Where a step's time goes (seconds; summed over steps while an epoch runs, then averaged).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct StepPhases {
    /// Tokenising and encoding the batch (forward graph).
    pub forward: f64,
    /// Retrieval over the document index and the loss with dL/d(query).
    pub retrieval_loss: f64,
    /// The gradient graph (forward + backward) and gathering its outputs.
    pub backward: f64,
    /// AdamW.
    pub optimizer: f64,
}

impl StepPhases {
    fn add(&mut self, o: &StepPhases) {
        self.forward += o.forward;
        self.retrieval_loss += o.retrieval_loss;
        self.backward += o.backward;
        self.optimizer += o.optimizer;
    }

    fn scaled(&self, f: f64) -> StepPhases {
        StepPhases {
            forward: self.forward * f,
            retrieval_loss: self.retrieval_loss * f,
            backward: self.backward * f,
            optimizer: self.optimizer * f,
        }
    }
}

/// Progress saved with every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TrainState {
    /// Epoch in progress (0-based).
    pub epoch: usize,
    /// Steps of that epoch already done.
    pub step_in_epoch: usize,
    /// Steps done in total.
    pub global_step: u64,
    /// Loss sum and count of the epoch in progress.
    pub epoch_loss: (f64, u64),
    /// Step seconds of the epoch in progress.
    pub epoch_seconds: f64,
    /// Phase seconds of the epoch in progress (sums).
    #[serde(default)]
    pub epoch_phases: StepPhases,
    /// Held-out nDCG@10 before training.
    pub baseline_dev_ndcg10: Option<f64>,
    /// Completed epochs.
    pub history: Vec<EpochRecord>,
    /// Best epoch by held-out nDCG@10 (1-based; 0 = the starting encoder).
    pub best_epoch: usize,
    /// Its held-out nDCG@10.
    pub best_dev_ndcg10: f64,
    /// Whether all epochs are done.
    pub finished: bool,
}

/// What happened during one [`Trainer::run`] call.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// All epochs done.
    Finished,
    /// Stopped early by the caller's flag (a checkpoint was written).
    Interrupted,
}

/// Callback for progress reporting: (global step, total steps, loss, step seconds).
pub type ProgressFn<'a> = dyn FnMut(u64, u64, f32, f64) + 'a;

/// The LTRe trainer.
pub struct Trainer {
    config: TrainConfig,
    tower: QueryTower,
    index: DocumentIndex,
    train: Vec<TrainQuery>,
    dev: Vec<TrainQuery>,
    doc_ids: Vec<String>,
    bm25: HashMap<String, Vec<usize>>,
    run_dir: PathBuf,
    state: TrainState,
}

const STATE_FILE: &str = "state.json";
const CONFIG_FILE: &str = "config.json";
const CHECKPOINT_DIR: &str = "checkpoint";
const BEST_DIR: &str = "best";

impl Trainer {
    /// Sets up training. `doc_ids[i]` names row `i` of `doc_vectors`. `run_dir` receives
    /// checkpoints; if it holds a checkpoint of a run with the same configuration, training
    /// resumes from it.
    pub fn new(
        config: TrainConfig,
        mut tower: QueryTower,
        doc_ids: Vec<String>,
        doc_vectors: Array2<f32>,
        train: Vec<TrainQuery>,
        dev: Vec<TrainQuery>,
        run_dir: &Path,
    ) -> Result<Trainer> {
        config.validate()?;
        if train.is_empty() {
            return Err(Error::Invalid(
                "no training query has a relevant document in the collection".into(),
            ));
        }
        if doc_ids.len() != doc_vectors.nrows() {
            return Err(Error::Invalid(
                "document ids and vectors differ in number".into(),
            ));
        }
        crate::retrieval::set_faiss_threads(1);
        let index = DocumentIndex::build(doc_vectors, &config.index, config.nprobe)?;
        std::fs::create_dir_all(run_dir).map_err(|e| Error::io(run_dir, e))?;
        let config_text =
            serde_json::to_string_pretty(&config).map_err(|e| Error::Invalid(e.to_string()))?;
        let cfg_path = run_dir.join(CONFIG_FILE);
        let mut state = TrainState::default();
        if run_dir.join(CHECKPOINT_DIR).join(STATE_FILE).is_file() {
            let old = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
            if old != config_text {
                return Err(Error::Invalid(format!(
                    "{} holds a run with another configuration; use a new run directory or delete it to start over",
                    run_dir.display()
                )));
            }
            let ck = run_dir.join(CHECKPOINT_DIR);
            let st = ck.join(STATE_FILE);
            let text = std::fs::read_to_string(&st).map_err(|e| Error::io(&st, e))?;
            state = serde_json::from_str(&text).map_err(|e| Error::bad_file(&st, e.to_string()))?;
            tower.load_state(&ck)?;
            tracing::info!(
                epoch = state.epoch + 1,
                step = state.global_step,
                "resuming from checkpoint"
            );
        } else {
            write_atomic(&cfg_path, config_text.as_bytes())?;
        }
        let steps_per_epoch = train.len().div_ceil(config.batch_size) as u64;
        let mut config = config;
        if config.optimizer.total_steps == 0 {
            config.optimizer.total_steps = config
                .max_steps
                .unwrap_or(steps_per_epoch * config.epochs as u64);
        }
        config.optimizer.warmup_steps =
            (config.optimizer.total_steps as f32 * config.warmup_ratio).round() as u64;
        tower.set_optimizer_config(config.optimizer.clone())?;
        Ok(Trainer {
            config,
            tower,
            index,
            train,
            dev,
            doc_ids,
            bm25: HashMap::new(),
            run_dir: run_dir.to_path_buf(),
            state,
        })
    }

    /// Supplies BM25 candidates (document rows, best first) per training query id, for
    /// [`Objective::Bm25Negatives`].
    pub fn with_bm25_candidates(mut self, bm25: HashMap<String, Vec<usize>>) -> Self {
        self.bm25 = bm25;
        self
    }

    /// Steps in one epoch.
    pub fn steps_per_epoch(&self) -> u64 {
        self.train.len().div_ceil(self.config.batch_size) as u64
    }

    /// Total steps planned.
    pub fn total_steps(&self) -> u64 {
        self.config.optimizer.total_steps
    }

    /// The state (history, best epoch...).
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// The configuration in effect (with total and warm-up steps filled in).
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The query tower (current parameters).
    pub fn tower(&self) -> &QueryTower {
        &self.tower
    }

    /// The fixed document index.
    pub fn documents(&self) -> &DocumentIndex {
        &self.index
    }

    /// Directory holding the best parameters so far (`params.safetensors`).
    pub fn best_dir(&self) -> PathBuf {
        self.run_dir.join(BEST_DIR)
    }

    /// nDCG@10 of `queries` with the current parameters, retrieving exactly over the documents.
    pub fn evaluate(&mut self, queries: &[TrainQuery]) -> Result<f64> {
        evaluate_queries(
            &mut self.tower,
            self.index.vectors(),
            &self.doc_ids,
            queries,
            self.config.batch_size,
        )
    }

    /// Trains until all epochs are done, `max_steps` is reached, or `stop` is set (then a
    /// checkpoint is written and [`RunOutcome::Interrupted`] returned).
    pub fn run(&mut self, stop: &AtomicBool, progress: &mut ProgressFn<'_>) -> Result<RunOutcome> {
        if self.state.baseline_dev_ndcg10.is_none() {
            let dev = self.dev.clone();
            let base = if dev.is_empty() {
                0.0
            } else {
                self.evaluate(&dev)?
            };
            tracing::info!(dev_ndcg10 = base, "held-out nDCG@10 before training");
            self.state.baseline_dev_ndcg10 = Some(base);
            self.state.best_dev_ndcg10 = base;
            self.state.best_epoch = 0;
            self.save_best()?;
        }
        let total = self.total_steps();
        while self.state.epoch < self.config.epochs && !self.state.finished {
            let order = self.epoch_order(self.state.epoch);
            let batches: Vec<Vec<usize>> = order
                .chunks(self.config.batch_size)
                .map(<[usize]>::to_vec)
                .collect();
            while self.state.step_in_epoch < batches.len() {
                if stop.load(Ordering::SeqCst) {
                    self.checkpoint()?;
                    return Ok(RunOutcome::Interrupted);
                }
                if self
                    .config
                    .max_steps
                    .is_some_and(|m| self.state.global_step >= m)
                {
                    break;
                }
                let started = Instant::now();
                let loss = self.step(&batches[self.state.step_in_epoch])?;
                let secs = started.elapsed().as_secs_f64();
                self.state.step_in_epoch += 1;
                self.state.global_step += 1;
                self.state.epoch_loss.0 += loss as f64;
                self.state.epoch_loss.1 += 1;
                self.state.epoch_seconds += secs;
                progress(self.state.global_step, total, loss, secs);
                if self
                    .state
                    .global_step
                    .is_multiple_of(self.config.checkpoint_every)
                {
                    self.checkpoint()?;
                }
            }
            self.finish_epoch()?;
            if self
                .config
                .max_steps
                .is_some_and(|m| self.state.global_step >= m)
            {
                break;
            }
        }
        self.state.finished = true;
        self.checkpoint()?;
        Ok(RunOutcome::Finished)
    }

    fn finish_epoch(&mut self) -> Result<()> {
        let dev = self.dev.clone();
        let dev_ndcg10 = if dev.is_empty() {
            0.0
        } else {
            self.evaluate(&dev)?
        };
        let (sum, n) = self.state.epoch_loss;
        let record = EpochRecord {
            epoch: self.state.epoch + 1,
            loss: if n > 0 { (sum / n as f64) as f32 } else { 0.0 },
            dev_ndcg10,
            step_seconds: if n > 0 {
                self.state.epoch_seconds / n as f64
            } else {
                0.0
            },
            epoch_seconds: self.state.epoch_seconds,
            phases: self
                .state
                .epoch_phases
                .scaled(if n > 0 { 1.0 / n as f64 } else { 0.0 }),
        };
        tracing::info!(
            epoch = record.epoch,
            loss = record.loss,
            dev_ndcg10,
            "epoch done"
        );
        self.state.history.push(record);
        // Strictly better only: with no held-out queries the starting encoder stays "best"
        // unless the caller deploys with force.
        if !dev.is_empty() && dev_ndcg10 > self.state.best_dev_ndcg10 {
            self.state.best_dev_ndcg10 = dev_ndcg10;
            self.state.best_epoch = self.state.epoch + 1;
            self.save_best()?;
        }
        self.state.epoch += 1;
        self.state.step_in_epoch = 0;
        self.state.epoch_loss = (0.0, 0);
        self.state.epoch_seconds = 0.0;
        self.state.epoch_phases = StepPhases::default();
        self.checkpoint()
    }

    fn epoch_order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(
            self.config
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(epoch as u64),
        ));
        order
    }

    /// One optimisation step on the given training queries; returns the batch loss.
    pub fn step(&mut self, batch: &[usize]) -> Result<f32> {
        let owned: Vec<String> = batch.iter().map(|&i| self.train[i].text.clone()).collect();
        let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
        let mut clock = Instant::now();
        let mut lap = || {
            let s = clock.elapsed().as_secs_f64();
            clock = Instant::now();
            s
        };
        let tokens = self.tower.tokenize(&texts)?;
        let (q, saved) = self.tower.forward_for_training(&tokens)?;
        let forward = lap();
        let per_query = self.losses(batch, q.view())?;
        let (loss, upstream) = loss::batch_gradient(&per_query, q.ncols());
        let retrieval_loss = lap();
        if per_query.iter().all(Option::is_none) {
            return Ok(0.0);
        }
        let grads = self.tower.backward(&tokens, saved, &upstream)?;
        let backward = lap();
        self.tower.apply(&grads)?;
        let optimizer = lap();
        self.state.epoch_phases.add(&StepPhases {
            forward,
            retrieval_loss,
            backward,
            optimizer,
        });
        Ok(loss)
    }

    fn losses(&mut self, batch: &[usize], q: ArrayView2<f32>) -> Result<Vec<Option<QueryLoss>>> {
        let t = self.config.temperature;
        let hits = match self.config.objective {
            Objective::Ltre => Some(self.index.search(q, self.config.top_n)?),
            _ => None,
        };
        let docs = self.index.vectors();
        let mut rng = StdRng::seed_from_u64(
            self.config.seed ^ (self.state.global_step.wrapping_mul(0x9e37_79b9)),
        );
        Ok(match self.config.objective {
            Objective::Ltre => {
                let hits = hits.unwrap_or_default();
                batch
                    .iter()
                    .zip(hits)
                    .enumerate()
                    .map(|(b, (&qi, hits))| {
                        let rel = &self.train[qi].relevant;
                        let mut cands: Vec<Candidate> = hits
                            .iter()
                            .enumerate()
                            .map(|(r, h)| Candidate {
                                doc: h.doc,
                                rank: Some(r + 1),
                                relevant: rel.contains(&h.doc),
                            })
                            .collect();
                        for &d in rel {
                            if !hits.iter().any(|h| h.doc == d) {
                                cands.push(Candidate {
                                    doc: d,
                                    rank: None,
                                    relevant: true,
                                });
                            }
                        }
                        loss::ltre_loss(q.row(b), &cands, docs, t, self.config.rr_cut)
                    })
                    .collect()
            }
            Objective::InBatch => {
                let positives: Vec<usize> = batch
                    .iter()
                    .map(|&qi| pick(&self.train[qi].relevant, &mut rng))
                    .collect();
                let train = &self.train;
                loss::in_batch_loss(q, &positives, docs, t, |b, d| {
                    train[batch[b]].relevant.contains(&d)
                })
                .into_iter()
                .map(|l| (l.pairs > 0).then_some(l))
                .collect()
            }
            Objective::RandomNegatives | Objective::Bm25Negatives => batch
                .iter()
                .enumerate()
                .map(|(b, &qi)| {
                    let tq = &self.train[qi];
                    let pos = pick(&tq.relevant, &mut rng);
                    let pool: Vec<usize> = match self.config.objective {
                        Objective::Bm25Negatives => self
                            .bm25
                            .get(&tq.id)
                            .map(|c| {
                                c.iter()
                                    .copied()
                                    .filter(|d| !tq.relevant.contains(d))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        _ => Vec::new(),
                    };
                    let negs: Vec<usize> = if pool.is_empty() {
                        let mut v = Vec::new();
                        while v.len() < self.config.negatives && docs.nrows() > tq.relevant.len() {
                            let d = rng.random_range(0..docs.nrows());
                            if !tq.relevant.contains(&d) {
                                v.push(d);
                            }
                        }
                        v
                    } else {
                        pool.choose_multiple(&mut rng, self.config.negatives.min(pool.len()))
                            .copied()
                            .collect()
                    };
                    (!negs.is_empty())
                        .then(|| loss::sampled_negatives_loss(q.row(b), pos, &negs, docs, t))
                })
                .collect(),
        })
    }

    fn save_best(&self) -> Result<()> {
        let dir = self.best_dir();
        let tmp = self.run_dir.join("best.tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        self.tower.params().save(&tmp.join("params.safetensors"))?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, e))
    }

    /// Writes params, optimizer state and progress into `run_dir/checkpoint`, atomically.
    pub fn checkpoint(&self) -> Result<()> {
        let dir = self.run_dir.join(CHECKPOINT_DIR);
        let tmp = self.run_dir.join("checkpoint.tmp");
        let old = self.run_dir.join("checkpoint.old");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        self.tower.save_state(&tmp)?;
        let state =
            serde_json::to_string_pretty(&self.state).map_err(|e| Error::Invalid(e.to_string()))?;
        std::fs::write(tmp.join(STATE_FILE), state)
            .map_err(|e| Error::io(tmp.join(STATE_FILE), e))?;
        let _ = std::fs::remove_dir_all(&old);
        if dir.exists() {
            std::fs::rename(&dir, &old).map_err(|e| Error::io(&dir, e))?;
        }
        std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, e))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }
}

fn pick(rows: &[usize], rng: &mut StdRng) -> usize {
    rows[rng.random_range(0..rows.len())]
}

/// nDCG@10 of `queries` encoded by `tower`, retrieving exactly over `docs` (row i = `doc_ids[i]`).
pub fn evaluate_queries(
    tower: &mut QueryTower,
    docs: ArrayView2<f32>,
    doc_ids: &[String],
    queries: &[TrainQuery],
    batch_size: usize,
) -> Result<f64> {
    let mut run = Run::new();
    let mut qrels = Qrels::new();
    for chunk in queries.chunks(batch_size.max(1)) {
        let texts: Vec<&str> = chunk.iter().map(|q| q.text.as_str()).collect();
        let q = tower.embed(&texts)?;
        let scores = q.dot(&docs.t());
        for (tq, row) in chunk.iter().zip(scores.rows()) {
            let mut idx: Vec<usize> = (0..row.len()).collect();
            let k = 100.min(idx.len());
            idx.select_nth_unstable_by(k.saturating_sub(1), |&a, &b| row[b].total_cmp(&row[a]));
            run.insert(
                tq.id.clone(),
                idx[..k]
                    .iter()
                    .map(|&d| (doc_ids[d].clone(), row[d] as f64))
                    .collect(),
            );
            let judged: BTreeMap<String, i32> = tq
                .relevant
                .iter()
                .map(|&d| (doc_ids[d].clone(), 1))
                .collect();
            qrels.insert(tq.id.clone(), judged);
        }
    }
    Ok(evaluate(&run, &qrels, &[Metric::Ndcg(10)]).mean[0])
}
