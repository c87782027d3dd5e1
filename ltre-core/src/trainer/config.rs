//! Training configuration ([`TrainConfig`], read from TOML or JSON) and the objectives it
//! chooses between ([`Objective`]).
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::hybrid::HybridConfig;
use crate::loss::PairWeight;
use crate::optim::AdamWConfig;
use crate::{Error, Result};

/// Largest `epochs` accepted.
pub const MAX_EPOCHS: usize = 1_000_000;
/// Largest `negatives` (per query) accepted.
pub const MAX_NEGATIVES: usize = 1 << 16;

/// The training objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// LTRe: full retrieval, pairwise loss weighted by the change in reciprocal rank or in
    /// graded nDCG ([`TrainConfig::pair_weight`]).
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
    /// LTRe: reciprocal ranks (and nDCG discounts) beyond this cut count as 0.
    pub rr_cut: usize,
    /// LTRe: pair weighting, `reciprocal_rank` (ADORE's, grades ignored) or `delta_ndcg` (the
    /// change in graded nDCG). Left out of the stored config when default, so run directories
    /// of earlier versions still resume.
    #[serde(skip_serializing_if = "PairWeight::is_default")]
    pub pair_weight: PairWeight,
    /// LTRe: train on the hybrid ranking the index serves (BM25 fused with the dense score,
    /// see [`crate::hybrid`]) instead of the dense ranking; held-out selection scores that
    /// ranking too. Needs the queries' BM25 lists (`Trainer::with_lexical`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hybrid: Option<HybridConfig>,
    /// Trust region toward the start encoder: weight `mu` of the penalty
    /// `mu * (1 - <q, q_start>)` on each training query's embedding, `q_start` being the start
    /// encoder's embedding of the same query (computed once). 0 disables it; left out of the
    /// stored config when 0.
    #[serde(skip_serializing_if = "is_zero_f32")]
    pub anchor: f32,
    /// With `anchor`: its weight decays linearly to 0 over this many steps (a trust region for
    /// the start only); 0 keeps it constant. Left out of the stored config when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub anchor_steps: u64,
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
    /// Steps between held-out evaluations (model selection points, besides each epoch's end);
    /// 0: four times per epoch. Left out of the stored config when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub eval_every: u64,
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
            pair_weight: PairWeight::ReciprocalRank,
            hybrid: None,
            anchor: 0.0,
            anchor_steps: 0,
            temperature: 20.0,
            negatives: 7,
            index: "Flat".into(),
            nprobe: 32,
            warmup_ratio: 0.1,
            checkpoint_every: 10,
            eval_every: 0,
            dev_fraction: 0.2,
            max_steps: None,
            optimizer: AdamWConfig::default(),
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_f32(x: &f32) -> bool {
    *x == 0.0
}

impl TrainConfig {
    /// Steps between held-out evaluations for `steps_per_epoch` steps per epoch.
    pub fn eval_interval(&self, steps_per_epoch: u64) -> u64 {
        if self.eval_every > 0 {
            self.eval_every
        } else {
            steps_per_epoch.div_ceil(4).max(1)
        }
    }

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
        // The trainer sizes step counts and per-query negative lists from these: a typo'd
        // 10^18 must be an error here, not an overflow or an allocation failure hours later.
        if self.epochs > MAX_EPOCHS {
            return bad(&format!("epochs must be at most {MAX_EPOCHS}"));
        }
        if self.negatives > MAX_NEGATIVES {
            return bad(&format!("negatives must be at most {MAX_NEGATIVES}"));
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
        if !(self.anchor.is_finite() && self.anchor >= 0.0) {
            return bad("anchor must be a number >= 0");
        }
        if let Some(hybrid) = &self.hybrid {
            if self.objective != Objective::Ltre {
                return bad("hybrid applies to the ltre objective only");
            }
            hybrid.validate()?;
        }
        self.optimizer.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_weight_defaults_to_adore_and_is_omitted_when_default() {
        let cfg: TrainConfig = toml::from_str("epochs = 2").unwrap();
        assert_eq!(cfg.pair_weight, PairWeight::ReciprocalRank);
        // Stored configs of earlier runs stay byte-identical, so their run directories resume.
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(!json.contains("pair_weight"), "{json}");
        let cfg: TrainConfig = toml::from_str("pair_weight = \"delta_ndcg\"").unwrap();
        assert_eq!(cfg.pair_weight, PairWeight::DeltaNdcg);
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<TrainConfig>(&json).unwrap(), cfg);
        assert!(toml::from_str::<TrainConfig>("pair_weight = \"ndcg\"").is_err());
    }
}
