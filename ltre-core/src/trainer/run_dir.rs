//! The run directory: `config.json` (the configuration the run was started with),
//! `checkpoint/` (parameters, optimizer state and `state.json`, replaced atomically every few
//! steps) and `best/` (`params.safetensors` of the best epoch so far).
//!
//! A run directory with a checkpoint resumes only under the same configuration, so that a
//! resumed run computes what the uninterrupted one would have.
use std::path::{Path, PathBuf};

use super::{TrainConfig, TrainState};
use crate::fsutil::{replace_dir_atomically, write_atomic};
use crate::train_step::QueryTower;
use crate::{Error, Result};

const CONFIG_FILE: &str = "config.json";
const CHECKPOINT_DIR: &str = "checkpoint";
const STATE_FILE: &str = "state.json";
const BEST_DIR: &str = "best";
const BEST_PARAMS_FILE: &str = "params.safetensors";

/// A run directory opened for training.
#[derive(Debug, Clone)]
pub(super) struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates `path` if needed. With a checkpoint there, checks that it was written under
    /// `config`, restores `tower` from it and returns its state; otherwise records `config`
    /// and returns a fresh state.
    pub(super) fn open(
        path: &Path,
        config: &TrainConfig,
        tower: &mut QueryTower,
    ) -> Result<(RunDir, TrainState)> {
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        let run = RunDir {
            path: path.to_path_buf(),
        };
        let config_text =
            serde_json::to_string_pretty(config).map_err(|e| Error::Invalid(e.to_string()))?;
        let config_path = path.join(CONFIG_FILE);
        let checkpoint = run.checkpoint_dir();
        let state_path = checkpoint.join(STATE_FILE);
        if !state_path.is_file() {
            write_atomic(&config_path, config_text.as_bytes())?;
            return Ok((run, TrainState::default()));
        }
        let old = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
        if old != config_text {
            return Err(Error::Invalid(format!(
                "{} holds a run with another configuration; use a new run directory or delete it to start over",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
        let state: TrainState =
            serde_json::from_str(&text).map_err(|e| Error::bad_file(&state_path, e.to_string()))?;
        tower.load_state(&checkpoint)?;
        tracing::info!(
            epoch = state.epoch + 1,
            step = state.global_step,
            "resuming from checkpoint"
        );
        Ok((run, state))
    }

    fn checkpoint_dir(&self) -> PathBuf {
        self.path.join(CHECKPOINT_DIR)
    }

    /// Directory holding the best parameters so far.
    pub(super) fn best_dir(&self) -> PathBuf {
        self.path.join(BEST_DIR)
    }

    /// Replaces `checkpoint/` with the tower's parameters and optimizer state and `state`.
    pub(super) fn save_checkpoint(&self, tower: &QueryTower, state: &TrainState) -> Result<()> {
        let state =
            serde_json::to_string_pretty(state).map_err(|e| Error::Invalid(e.to_string()))?;
        replace_dir_atomically(&self.checkpoint_dir(), |tmp| {
            tower.save_state(tmp)?;
            write_atomic(&tmp.join(STATE_FILE), state.as_bytes())
        })
    }

    /// Replaces `best/` with the tower's current parameters.
    pub(super) fn save_best(&self, tower: &QueryTower) -> Result<()> {
        replace_dir_atomically(&self.best_dir(), |tmp| {
            tower.params().save(&tmp.join(BEST_PARAMS_FILE))
        })
    }
}
