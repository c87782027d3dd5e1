//! Fine-tune an index's query encoder in place, from judged queries, with LTRe.
//!
//! LTRe trains only the query tower: the document vectors stored in the dense field stay as
//! they are, so a fine-tuned encoder is deployed by activating it in the index's encoder
//! registry ([`EncoderStore`]), with no re-indexing, while searchers keep running (a
//! [`LiveEncoder`](crate::live::LiveEncoder) picks the new encoder up). This module is the
//! whole workflow as one library call, on any Tantivy index with a dense field:
//!
//! 1. **Describe the index** with a [`TunableIndex`]: the Tantivy `Index` (dense plugin
//!    registered), its [`DenseField`], the [`IdField`] naming documents, the directory whose
//!    `encoders/` holds the registry, and (for the BM25-negatives objective) the lexical fields.
//!    [`TunableIndex::open_ltre_index`] does all that for an index built by `ltre-cli index`.
//! 2. **Give judged queries** as [`TrainingData`]: [`JudgedQuery`] values built by the
//!    application (query text + graded document ids), or [`TrainingData::from_beir`] files.
//! 3. **Choose [`FineTuneOptions`]**: the [`TrainConfig`], the encoder to start from (default:
//!    the active one), the held-out queries for model selection ([`DevSet`]), queries to report
//!    before/after numbers on, refit, deploy / force, threads and the run directory.
//! 4. **Call [`TunableIndex::fine_tune`]**. It reads the fixed document vectors, trains,
//!    selects the best epoch on the held-out queries (optionally retrains on all queries for
//!    that many epochs), checks that the document vectors did not change, and, when asked to
//!    deploy, installs the encoder as a new version and activates it only if the held-out
//!    nDCG@10 improved (or `force`). It returns a [`FineTuneReport`] and writes it to
//!    `RUN_DIR/summary.json`.
//!
//! Progress arrives through a callback of [`FineTuneEvent`]s. Setting the `stop` flag (from a
//! signal handler, another thread or the callback itself) ends the call at the next step with
//! [`FineTuneOutcome::Interrupted`] after a checkpoint; calling again with the same data,
//! options and run directory resumes where it stopped.
//!
//! ```no_run
//! # fn main() -> tantivy_ltre::Result<()> {
//! use std::sync::atomic::AtomicBool;
//! use tantivy_ltre::finetune::{
//!     FineTuneEvent, FineTuneOptions, FineTuneOutcome, JudgedQuery, TrainingData, TunableIndex,
//! };
//!
//! let index = TunableIndex::open_ltre_index(std::path::Path::new("shop-index"))?;
//! let data = TrainingData::new(vec![
//!     JudgedQuery::new("q1", "waterproof hiking boots").judge("sku-17", 2).judge("sku-3", 1),
//!     JudgedQuery::new("q2", "gift for a coffee lover").judge("sku-42", 1),
//! ]);
//! let options = FineTuneOptions::default().refit(true).deploy(true);
//! let stop = AtomicBool::new(false);
//! let outcome = index.fine_tune(&data, &options, &stop, &mut |event: &FineTuneEvent| {
//!     if let FineTuneEvent::Step { step, total_steps, loss, .. } = event {
//!         eprintln!("{step}/{total_steps} loss {loss:.4}");
//!     }
//! })?;
//! match outcome {
//!     FineTuneOutcome::Finished(report) => println!(
//!         "held-out nDCG@10 {:.3} -> {:.3}, deployed: {:?}",
//!         report.baseline_dev_ndcg10,
//!         report.best_dev_ndcg10,
//!         report.deployed_id()
//!     ),
//!     FineTuneOutcome::Interrupted { run_dir, .. } => {
//!         println!("interrupted; call again to resume from {}", run_dir.display())
//!     }
//! }
//! # Ok(())
//! # }
//! ```
mod data;
mod display;
mod hybrid;
mod run;
mod search;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use ltre_core::trainer::{DevPoint, EpochRecord, Objective, TrainConfig};
use serde::Serialize;
use tantivy::schema::Field;
use tantivy::Index;

pub use data::{read_beir_judged, read_beir_judged_half, JudgedQuery, TrainingData};
pub use run::FUSION_ALPHA_METRIC;
pub use search::{RecipeSearch, Trial};

use crate::encoders::{EncoderStore, IndexConfig};
use crate::error::{Error, Result};
use crate::field::DenseField;
use crate::lexical::IdField;

/// An index whose query encoder can be fine-tuned: what [`TunableIndex::fine_tune`] reads.
#[derive(Clone)]
pub struct TunableIndex {
    index: Index,
    dense: DenseField,
    id_field: IdField,
    index_dir: PathBuf,
    lexical_fields: Vec<Field>,
}

impl TunableIndex {
    /// An application's index: `index` must have the dense plugin registered (create it with
    /// `dense.plugin()`, or call [`DenseField::register`] after opening it); `id_field` names
    /// the documents the judged queries refer to; `index_dir/encoders` is the encoder registry
    /// (it must hold an active encoder, e.g. the document encoder installed as `base`).
    pub fn new(
        index: Index,
        dense: DenseField,
        id_field: IdField,
        index_dir: impl Into<PathBuf>,
    ) -> TunableIndex {
        TunableIndex {
            index,
            dense,
            id_field,
            index_dir: index_dir.into(),
            lexical_fields: Vec::new(),
        }
    }

    /// The text fields BM25 searches, needed by the `bm25_negatives` objective only.
    pub fn with_lexical_fields(mut self, fields: Vec<Field>) -> TunableIndex {
        self.lexical_fields = fields;
        self
    }

    /// Opens an index built by `ltre-cli index`: fields come from its `ltre.json`.
    pub fn open_ltre_index(index_dir: &Path) -> Result<TunableIndex> {
        let config = IndexConfig::load(index_dir)?;
        let mut index = Index::open_in_dir(index_dir)?;
        let dense = DenseField::register(&mut index).map_err(|e| {
            Error::Invalid(format!(
                "{}: no usable dense field ({e}); build the index with a model (`ltre-cli index --model`)",
                index_dir.display()
            ))
        })?;
        let schema = index.schema();
        let id_field = IdField::new(&schema, &config.id_field)?;
        let lexical_fields = config
            .text_fields
            .iter()
            .map(|name| {
                schema.get_field(name).map_err(|_| Error::BadFile {
                    path: index_dir.join(crate::encoders::CONFIG_FILE),
                    message: format!("text field `{name}` is not in the index schema"),
                })
            })
            .collect::<Result<Vec<Field>>>()?;
        Ok(
            TunableIndex::new(index, dense, id_field, index_dir)
                .with_lexical_fields(lexical_fields),
        )
    }

    /// The Tantivy index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The dense field holding the fixed document vectors.
    pub fn dense(&self) -> &DenseField {
        &self.dense
    }

    /// The field naming documents.
    pub fn id_field(&self) -> &IdField {
        &self.id_field
    }

    /// The directory holding the encoder registry (`encoders/`) and, by default, `runs/`.
    pub fn index_dir(&self) -> &Path {
        &self.index_dir
    }

    /// The encoder registry.
    pub fn encoders(&self) -> EncoderStore {
        EncoderStore::new(&self.index_dir)
    }

    /// Fine-tunes the query encoder on `data` (see the [module docs](self)). Returns
    /// [`FineTuneOutcome::Interrupted`] when `stop` was set; calling again resumes.
    pub fn fine_tune(
        &self,
        data: &TrainingData,
        options: &FineTuneOptions,
        stop: &AtomicBool,
        progress: &mut dyn FnMut(&FineTuneEvent),
    ) -> Result<FineTuneOutcome> {
        run::fine_tune(self, data, options, stop, progress)
    }
}

/// The queries that select the best epoch (and decide deployment).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum DevSet {
    /// Hold out a seeded `config.dev_fraction` of the training queries.
    #[default]
    Split,
    /// These queries; training queries with the same ids are left out of training.
    Queries(Vec<JudgedQuery>),
}

/// How to fine-tune; `FineTuneOptions::default()` trains with the default [`TrainConfig`]
/// from the active encoder and deploys nothing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FineTuneOptions {
    /// Training configuration.
    pub config: TrainConfig,
    /// Encoder id to start from (default: the active one).
    pub start_encoder: Option<String>,
    /// Held-out queries for model selection.
    pub dev: DevSet,
    /// Queries to report nDCG@10 on before and after (e.g. a test set); never used to select.
    pub eval: Option<Vec<JudgedQuery>>,
    /// After selecting the epoch count, retrain that many epochs on all the training queries,
    /// held-out ones included, and use that encoder.
    pub refit: bool,
    /// Install the encoder as a new version and activate it, if the held-out nDCG@10 improved.
    pub deploy: bool,
    /// With `deploy`: deploy even if the held-out nDCG@10 did not improve.
    pub force: bool,
    /// ONNX Runtime threads (0: all cores). With 1, runs are bit-for-bit reproducible.
    pub threads: usize,
    /// Checkpoints, best parameters and `summary.json` (default `INDEX_DIR/runs/latest`).
    pub run_dir: Option<PathBuf>,
    /// Choose the learning rate and temperature on the held-out queries first (the default
    /// recipe of `ltre-cli train` without a configuration); `None`: train `config` as it is.
    pub search: Option<RecipeSearch>,
    /// With `config.hybrid`: choose its fusion weight on the held-out queries (with the start
    /// encoder) instead of using the configured one.
    pub choose_alpha: bool,
}

impl FineTuneOptions {
    /// Default options with this training configuration.
    pub fn new(config: TrainConfig) -> FineTuneOptions {
        FineTuneOptions {
            config,
            ..Default::default()
        }
    }
    /// Starts from encoder `id` instead of the active one.
    pub fn start_encoder(mut self, id: impl Into<String>) -> Self {
        self.start_encoder = Some(id.into());
        self
    }
    /// Selects on these held-out queries.
    pub fn dev(mut self, dev: DevSet) -> Self {
        self.dev = dev;
        self
    }
    /// Reports before/after nDCG@10 on these queries.
    pub fn eval(mut self, queries: Vec<JudgedQuery>) -> Self {
        self.eval = Some(queries);
        self
    }
    /// Retrains on all training queries with the selected epoch count.
    pub fn refit(mut self, refit: bool) -> Self {
        self.refit = refit;
        self
    }
    /// Deploys when the held-out metric improved.
    pub fn deploy(mut self, deploy: bool) -> Self {
        self.deploy = deploy;
        self
    }
    /// Deploys even without improvement (with `deploy`).
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }
    /// ONNX Runtime threads (0: all cores).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }
    /// Run directory (resumes from it).
    pub fn run_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.run_dir = Some(dir.into());
        self
    }
    /// Searches the learning rate and temperature on the held-out queries first.
    pub fn search(mut self, search: RecipeSearch) -> Self {
        self.search = Some(search);
        self
    }
}

/// A training phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A probe of the recipe search (`RUN_DIR/search/...`).
    Search,
    /// Training with held-out evaluation after each epoch (`RUN_DIR`).
    Select,
    /// Retraining on all training queries for the selected epoch count (`RUN_DIR/refit`).
    Refit,
}

/// Progress of [`TunableIndex::fine_tune`], in order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FineTuneEvent {
    /// Data and documents are ready; training starts.
    Prepared {
        /// The encoder training starts from.
        start_encoder: String,
        /// Training queries with a relevant document in the index.
        train_queries: usize,
        /// Held-out queries.
        dev_queries: usize,
        /// Documents with a vector.
        documents: usize,
        /// The objective.
        objective: Objective,
        /// The Faiss index used for retrieval during training.
        faiss_index: String,
    },
    /// A phase starts (or resumes at `step`).
    PhaseStarted {
        /// Which phase.
        phase: Phase,
        /// Its epochs.
        epochs: usize,
        /// Its training queries.
        queries: usize,
        /// Steps already done (resumed from a checkpoint).
        step: u64,
        /// Steps in the phase.
        total_steps: u64,
    },
    /// One optimisation step done.
    Step {
        /// Which phase.
        phase: Phase,
        /// Steps done.
        step: u64,
        /// Steps in the phase.
        total_steps: u64,
        /// The batch loss.
        loss: f32,
        /// Seconds the step took.
        seconds: f64,
    },
    /// A probe of the recipe search is done: what it measured.
    Trial(Trial),
    /// A phase ended, finished or interrupted.
    PhaseEnded {
        /// Which phase.
        phase: Phase,
        /// Whether `stop` ended it (a checkpoint was written).
        interrupted: bool,
    },
}

/// What [`TunableIndex::fine_tune`] returns.
#[derive(Debug, Clone)]
pub enum FineTuneOutcome {
    /// All phases done.
    Finished(Box<FineTuneReport>),
    /// `stop` was set: a checkpoint was written; call again to resume.
    Interrupted {
        /// The phase that was running.
        phase: Phase,
        /// Its steps done.
        step: u64,
        /// The run directory the next call resumes from.
        run_dir: PathBuf,
    },
}

impl FineTuneOutcome {
    /// The report, if finished.
    pub fn report(&self) -> Option<&FineTuneReport> {
        match self {
            FineTuneOutcome::Finished(report) => Some(report),
            FineTuneOutcome::Interrupted { .. } => None,
        }
    }
}

/// The refit phase of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refit {
    /// Epochs it spans (the last one possibly partial).
    pub epochs: usize,
    /// Steps: the selected point's share of the data, on all the training queries.
    pub steps: u64,
    /// Training queries (held-out ones included).
    pub queries: usize,
}

/// Whether and what was deployed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Deployment {
    /// `deploy` was not asked for.
    NotRequested,
    /// No epoch improved the held-out nDCG@10 and `force` was not set: nothing changed.
    NotImproved,
    /// Installed as a new version and activated.
    Deployed {
        /// The new encoder id.
        id: String,
        /// The encoder active before (what `EncoderStore::rollback` returns to).
        previous: String,
        /// Deployed by `force` although the held-out nDCG@10 did not improve.
        forced: bool,
    },
}

/// The result of a finished fine-tune (also written to `RUN_DIR/summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FineTuneReport {
    /// The configuration used.
    pub config: TrainConfig,
    /// The encoder training started from.
    pub start_encoder: String,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Documents with a vector.
    pub documents: usize,
    /// Training queries (with a relevant document in the index, held-out ones excluded).
    pub train_queries: usize,
    /// Held-out queries.
    pub dev_queries: usize,
    /// Held-out nDCG@10 of the start encoder.
    pub baseline_dev_ndcg10: f64,
    /// Best held-out nDCG@10 over the epochs (the baseline if none improved).
    pub best_dev_ndcg10: f64,
    /// The epoch that reached it (0: none improved on the start encoder).
    pub best_epoch: usize,
    /// The step that reached it (0: none improved).
    pub best_step: u64,
    /// Per-epoch loss, held-out nDCG@10 and timings.
    pub history: Vec<EpochRecord>,
    /// The held-out nDCG@10 every `eval_every` steps of the training run (step 0: the start).
    pub dev_curve: Vec<DevPoint>,
    /// The recipe search's probes, if it ran (the chosen one is marked).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<Trial>,
    /// The refit phase, if one ran.
    pub refit: Option<Refit>,
    /// Evaluation queries (with a relevant document in the index).
    pub eval_queries: usize,
    /// nDCG@10 on the evaluation queries with the start encoder.
    pub eval_before_ndcg10: Option<f64>,
    /// nDCG@10 on the evaluation queries with the resulting encoder.
    pub eval_after_ndcg10: Option<f64>,
    /// sha256 of the training data ([`TrainingData::sha256`]).
    pub training_data_sha256: String,
    /// Document-vector checksum before training.
    pub document_vectors_sha256_before: String,
    /// Document-vector checksum after training (always equal: the call fails otherwise).
    pub document_vectors_sha256_after: String,
    /// Whether the encoder was deployed.
    pub deployment: Deployment,
    /// The linear fusion weight (min-max, dense side) to serve with the resulting encoder, when
    /// the index has lexical fields: the best of [`FineTuneReport::fusion_table`]. Recorded in
    /// the deployed encoder's metrics as [`FUSION_ALPHA_METRIC`], where searches find it.
    pub fusion_alpha: Option<f32>,
    /// Held-out nDCG@10 of the linear hybrid at each weight of `ltre_core::hybrid::ALPHA_GRID`,
    /// for the encoder selected on the held-out queries. A refit trains on those queries, so
    /// the weight is chosen before it: chosen with the refit encoder, it would favour the
    /// dense side fitted to them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fusion_table: Vec<(f32, f64)>,
}

impl FineTuneReport {
    /// Whether an epoch improved the held-out nDCG@10 on the start encoder.
    pub fn improved(&self) -> bool {
        self.best_epoch > 0
    }

    /// The id of the deployed encoder, if one was.
    pub fn deployed_id(&self) -> Option<&str> {
        match &self.deployment {
            Deployment::Deployed { id, .. } => Some(id),
            _ => None,
        }
    }
}
