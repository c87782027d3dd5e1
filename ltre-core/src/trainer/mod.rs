//! The LTRe trainer: fine-tunes the query tower against fixed document vectors.
//!
//! Each step encodes a batch of training queries with the current parameters, runs full
//! retrieval over the whole document index
//! ([`DocumentIndex`](crate::retrieval::DocumentIndex), exact or compressed), takes the top
//! `top_n`, appends relevant documents that were not retrieved, and minimises LTRe's pairwise
//! loss ([`crate::loss::ltre_loss`]). dL/d(query) is computed here and run back through the
//! query tower's gradient graph; AdamW updates the parameters in Rust. Documents are never
//! re-encoded: the document vectors are the same bytes before and after (see
//! [`DocumentIndex::checksum`](crate::retrieval::DocumentIndex::checksum)).
//!
//! The same loop runs the baselines the LTRe paper compares against ([`Objective`]): in-batch
//! negatives and sampled negatives (random, or BM25 top-k supplied by the caller).
//!
//! Training is seeded and deterministic on CPU, checkpoints every few steps into a run
//! directory, and resumes from the last checkpoint after an interruption.
//!
//! One file per concern: `config.rs` (configuration and objectives), `queries.rs` (data
//! preparation: the join with qrels and the held-out split), `state.rs` (progress saved with
//! checkpoints), `training.rs` (the loop, [`Trainer`]) and `run_dir.rs` (the run directory:
//! configuration check, checkpoint, best parameters, resume).
mod config;
mod queries;
mod run_dir;
mod state;
mod training;

pub use config::{Objective, TrainConfig};
pub(crate) use queries::embed_queries;
pub use queries::{join_queries, split_dev, TrainQuery};
pub use state::{DevPoint, EpochRecord, RunOutcome, StepPhases, TrainState};
pub use training::{evaluate_queries, evaluate_ranking, ProgressFn, Trainer};
