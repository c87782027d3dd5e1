//! The training loop: [`Trainer`] encodes a batch, retrieves, computes the objective's loss
//! and its gradient, runs it back through the query tower and steps AdamW; it evaluates on
//! held-out queries after each epoch and checkpoints through the run directory.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use ndarray::{Array2, ArrayView2};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::queries::embed_queries;
use super::run_dir::RunDir;
use super::{
    DevPoint, EpochRecord, Objective, RunOutcome, StepPhases, TrainConfig, TrainQuery, TrainState,
};
use crate::data::Qrels;
use crate::hybrid::{hybrid_candidates, served_run, HybridConfig, LexicalList};
use crate::loss::{self, Candidate, QueryLoss};
use crate::metrics::{evaluate, Metric, Run};
use crate::retrieval::{DocumentIndex, Hit};
use crate::train_step::QueryTower;
use crate::{Error, Result};

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
    lexical: HashMap<String, LexicalList>,
    /// The start encoder's embeddings of the training queries (row = index in `train`), for
    /// the trust region (`config.anchor`); empty without it.
    anchors: Array2<f32>,
    run_dir: RunDir,
    state: TrainState,
}

impl Trainer {
    /// Sets up training. `doc_ids[i]` names row `i` of `doc_vectors`. `run_dir` receives
    /// checkpoints; if it holds a checkpoint of a run with the same configuration, training
    /// resumes from it.
    pub fn new(
        config: TrainConfig,
        tower: QueryTower,
        doc_ids: Vec<String>,
        doc_vectors: Array2<f32>,
        train: Vec<TrainQuery>,
        dev: Vec<TrainQuery>,
        run_dir: &Path,
    ) -> Result<Trainer> {
        config.validate()?;
        if doc_ids.len() != doc_vectors.nrows() {
            return Err(Error::Invalid(
                "document ids and vectors differ in number".into(),
            ));
        }
        crate::retrieval::set_faiss_threads(1);
        let index = DocumentIndex::build(doc_vectors, &config.index, config.nprobe)?;
        Trainer::with_index(config, tower, doc_ids, index, train, dev, run_dir)
    }

    /// [`Trainer::new`] over an index already built (`config.index` is not used): runs that
    /// differ only in their hyper-parameters share one index (see [`Trainer::into_documents`]).
    pub fn with_index(
        config: TrainConfig,
        mut tower: QueryTower,
        doc_ids: Vec<String>,
        index: DocumentIndex,
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
        if doc_ids.len() != index.len() {
            return Err(Error::Invalid(
                "document ids and vectors differ in number".into(),
            ));
        }
        crate::retrieval::set_faiss_threads(1);
        // Before a checkpoint is loaded: the tower holds the start parameters.
        let anchors = if config.anchor > 0.0 {
            embed_queries(&mut tower, &train, config.batch_size)?
        } else {
            Array2::zeros((0, 0))
        };
        let (run_dir, state) = RunDir::open(run_dir, &config, &mut tower)?;
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
            lexical: HashMap::new(),
            anchors,
            run_dir,
            state,
        })
    }

    /// The document index back, for the next run over the same documents.
    pub fn into_documents(self) -> DocumentIndex {
        self.index
    }

    /// Supplies BM25 candidates (document rows, best first) per training query id, for
    /// [`Objective::Bm25Negatives`].
    pub fn with_bm25_candidates(mut self, bm25: HashMap<String, Vec<usize>>) -> Self {
        self.bm25 = bm25;
        self
    }

    /// Supplies each query's BM25 list (document rows and scores, best first, at least
    /// `hybrid.depth` long when there are that many matches), by query id, for the training
    /// and held-out queries of hybrid-aware training ([`TrainConfig::hybrid`]).
    pub fn with_lexical(mut self, lexical: HashMap<String, LexicalList>) -> Self {
        self.lexical = lexical;
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
        self.run_dir.best_dir()
    }

    /// nDCG@10 of `queries` with the current parameters, retrieving exactly over the documents.
    pub fn evaluate(&mut self, queries: &[TrainQuery]) -> Result<f64> {
        let hybrid = self.config.hybrid.map(|h| (h, &self.lexical));
        evaluate_ranking(
            &mut self.tower,
            self.index.vectors(),
            &self.doc_ids,
            queries,
            self.config.batch_size,
            hybrid,
        )
    }

    /// Writes params, optimizer state and progress into `run_dir/checkpoint`, atomically.
    pub fn checkpoint(&self) -> Result<()> {
        self.run_dir.save_checkpoint(&self.tower, &self.state)
    }

    /// Trains until all epochs are done, `max_steps` is reached, or `stop` is set (then a
    /// checkpoint is written and [`RunOutcome::Interrupted`] returned).
    pub fn run(&mut self, stop: &AtomicBool, progress: &mut ProgressFn<'_>) -> Result<RunOutcome> {
        crate::hybrid::check_lexical(&self.lexical, self.index.len())?;
        if self.state.baseline_dev_ndcg10.is_none() {
            let dev = self.dev.clone();
            // Without held-out queries (a refit) there is no value to log: the 0 recorded
            // below only keeps the starting encoder "best".
            let base = if dev.is_empty() {
                tracing::info!("no held-out queries: no model selection");
                0.0
            } else {
                let base = self.evaluate(&dev)?;
                tracing::info!(dev_ndcg10 = base, "held-out nDCG@10 before training");
                base
            };
            self.state.baseline_dev_ndcg10 = Some(base);
            self.state.best_dev_ndcg10 = base;
            self.state.best_epoch = 0;
            self.state.best_step = 0;
            if !dev.is_empty() {
                self.state.dev_curve.push(DevPoint {
                    step: 0,
                    epoch: 0.0,
                    dev_ndcg10: base,
                });
            }
            self.run_dir.save_best(&self.tower)?;
        }
        let total = self.total_steps();
        let eval_interval = self.config.eval_interval(self.steps_per_epoch());
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
                // Mid-epoch selection points; the epoch's end evaluates in `finish_epoch`.
                if !self.dev.is_empty()
                    && self.state.step_in_epoch < batches.len()
                    && self.state.global_step.is_multiple_of(eval_interval)
                {
                    self.observe()?;
                }
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

    /// Evaluates the held-out queries now (a point of [`TrainState::dev_curve`], saving the
    /// best parameters when it is the best point), unless the current step already has one.
    /// For callers that stop a run between scheduled points.
    pub fn observe_dev(&mut self) -> Result<()> {
        let step = self.state.global_step;
        if self.dev.is_empty() || self.state.dev_curve.last().is_some_and(|p| p.step == step) {
            return Ok(());
        }
        self.observe()?;
        self.checkpoint()
    }

    /// Evaluates the held-out queries at the current step: a point of the curve, and the best
    /// parameters so far when it beats every earlier point (strictly, so the start encoder
    /// stays "best" unless training improves on it).
    fn observe(&mut self) -> Result<f64> {
        let dev = std::mem::take(&mut self.dev);
        let value = self.evaluate(&dev);
        self.dev = dev;
        let value = value?;
        let step = self.state.global_step;
        let epoch = step as f64 / self.steps_per_epoch().max(1) as f64;
        tracing::info!(step, epoch, dev_ndcg10 = value, "held-out nDCG@10");
        self.state.dev_curve.push(DevPoint {
            step,
            epoch,
            dev_ndcg10: value,
        });
        if value > self.state.best_dev_ndcg10 {
            self.state.best_dev_ndcg10 = value;
            self.state.best_epoch = self.state.epoch + 1;
            self.state.best_step = step;
            self.run_dir.save_best(&self.tower)?;
        }
        Ok(value)
    }

    fn finish_epoch(&mut self) -> Result<()> {
        let dev_ndcg10 = if self.dev.is_empty() {
            0.0
        } else {
            self.observe()?
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
        if self.dev.is_empty() {
            tracing::info!(epoch = record.epoch, loss = record.loss, "epoch done");
        } else {
            tracing::info!(
                epoch = record.epoch,
                loss = record.loss,
                dev_ndcg10,
                "epoch done"
            );
        }
        self.state.history.push(record);
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
        let (mut loss, mut upstream) = loss::batch_gradient(&per_query, q.ncols());
        if self.config.anchor > 0.0 {
            // d/dq of mu * (1 - <q, q_start>), averaged over the batch.
            let decay = match self.config.anchor_steps {
                0 => 1.0,
                n => (1.0 - self.state.global_step as f32 / n as f32).max(0.0),
            };
            let mu = self.config.anchor * decay / batch.len() as f32;
            for (b, &qi) in batch.iter().enumerate() {
                let start = self.anchors.row(qi);
                loss += mu * (1.0 - q.row(b).dot(&start));
                upstream.row_mut(b).scaled_add(-mu, &start);
            }
        }
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
                let empty = Vec::new();
                batch
                    .iter()
                    .zip(hits)
                    .enumerate()
                    .map(|(b, (&qi, hits))| {
                        let tq = &self.train[qi];
                        let dense = |share: f32| {
                            (share > 0.0)
                                .then(|| {
                                    loss::ltre_loss_weighted(
                                        q.row(b),
                                        &dense_candidates(&hits, tq),
                                        docs,
                                        t,
                                        self.config.rr_cut,
                                        self.config.pair_weight,
                                    )
                                })
                                .flatten()
                        };
                        let Some(hybrid) = &self.config.hybrid else {
                            return dense(1.0);
                        };
                        let lexical = self.lexical.get(&tq.id).unwrap_or(&empty);
                        let judged: Vec<(usize, i32)> = tq.judged().collect();
                        let fused = hybrid_candidates(&hits, lexical, &judged, hybrid).loss(
                            q.row(b),
                            docs,
                            t,
                            self.config.rr_cut,
                            self.config.pair_weight,
                            hybrid.range_gradient,
                        );
                        QueryLoss::mix(fused, dense(hybrid.dense_share), hybrid.dense_share)
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
}

fn pick(rows: &[usize], rng: &mut StdRng) -> usize {
    rows[rng.random_range(0..rows.len())]
}

/// nDCG@10 of `queries` encoded by `tower`, retrieving exactly over `docs` (row i = `doc_ids[i]`),
/// with the queries' grades as gains (as [`crate::metrics::evaluate`] scores graded qrels).
pub fn evaluate_queries(
    tower: &mut QueryTower,
    docs: ArrayView2<f32>,
    doc_ids: &[String],
    queries: &[TrainQuery],
    batch_size: usize,
) -> Result<f64> {
    evaluate_ranking(tower, docs, doc_ids, queries, batch_size, None)
}

/// [`evaluate_queries`], or with `hybrid` the nDCG@10 of the served hybrid ranking (the dense
/// scores fused with each query's BM25 list, by query id; see [`crate::hybrid`]).
pub fn evaluate_ranking(
    tower: &mut QueryTower,
    docs: ArrayView2<f32>,
    doc_ids: &[String],
    queries: &[TrainQuery],
    batch_size: usize,
    hybrid: Option<(HybridConfig, &HashMap<String, LexicalList>)>,
) -> Result<f64> {
    let mut run = Run::new();
    let mut qrels = Qrels::new();
    for chunk in queries.chunks(batch_size.max(1)) {
        let texts: Vec<&str> = chunk.iter().map(|q| q.text.as_str()).collect();
        let q = tower.embed(&texts)?;
        let scores = q.dot(&docs.t());
        for (tq, row) in chunk.iter().zip(scores.rows()) {
            // Graded gains, as `eval` scores the test queries.
            qrels.insert(tq.id.clone(), tq.judged_ids(doc_ids));
            if let Some((config, lexical)) = &hybrid {
                let list = lexical.get(&tq.id).map_or(&[][..], Vec::as_slice);
                run.insert(tq.id.clone(), served_run(row, list, config, doc_ids));
                continue;
            }
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
        }
    }
    Ok(evaluate(&run, &qrels, &[Metric::Ndcg(10)]).mean[0])
}

/// The plain LTRe candidates of a query: its dense top n, ranked, then the judged relevant
/// documents outside it (unranked).
fn dense_candidates(hits: &[Hit], tq: &TrainQuery) -> Vec<Candidate> {
    let mut cands: Vec<Candidate> = hits
        .iter()
        .enumerate()
        .map(|(r, h)| {
            let grade = tq.grade_of(h.doc);
            Candidate {
                doc: h.doc,
                rank: Some(r + 1),
                relevant: grade.is_some(),
                grade: grade.unwrap_or(0),
            }
        })
        .collect();
    for (d, grade) in tq.judged() {
        if !hits.iter().any(|h| h.doc == d) {
            cands.push(Candidate {
                doc: d,
                rank: None,
                relevant: true,
                grade,
            });
        }
    }
    cands
}
