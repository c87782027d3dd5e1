//! Training progress: per-epoch records, step timings and the state saved with every
//! checkpoint (so an interrupted run resumes where it stopped).
use serde::{Deserialize, Serialize};

/// One epoch's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub loss: f32,
    /// Held-out nDCG@10 after the epoch (0, not measured, when there are no held-out queries).
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
/// One point of the held-out curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DevPoint {
    /// Global step (0: the start encoder).
    pub step: u64,
    /// Epochs done, fractional (`step / steps_per_epoch`).
    pub epoch: f64,
    /// Held-out nDCG@10.
    pub dev_ndcg10: f64,
}

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
    pub(super) fn add(&mut self, o: &StepPhases) {
        self.forward += o.forward;
        self.retrieval_loss += o.retrieval_loss;
        self.backward += o.backward;
        self.optimizer += o.optimizer;
    }

    pub(super) fn scaled(&self, f: f64) -> StepPhases {
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
    /// The global step that reached `best_dev_ndcg10` (0: none improved on the start); the
    /// refit phase trains this many steps' worth of data.
    #[serde(default)]
    pub best_step: u64,
    /// Held-out nDCG@10 every `eval_every` steps and at each epoch's end: the training curve.
    #[serde(default)]
    pub dev_curve: Vec<DevPoint>,
    /// Its held-out nDCG@10.
    pub best_dev_ndcg10: f64,
    /// Whether all epochs are done.
    pub finished: bool,
}

/// What happened during one [`Trainer::run`](super::Trainer::run) call.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// All epochs done.
    Finished,
    /// Stopped early by the caller's flag (a checkpoint was written).
    Interrupted,
}
