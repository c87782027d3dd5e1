//! A query encoder that follows `encoders/ACTIVE` while the index is open.
//!
//! [`LiveEncoder::get`] returns the encoder of the active id. At most once per check interval
//! it re-reads `ACTIVE` (a few bytes); when the id changed it loads the new encoder completely
//! and only then swaps it in. Queries already running keep the `Arc` of the old encoder, so an
//! `ltre-cli encoder activate` or `rollback` takes effect without restarting the searcher and
//! without failing a query. If the new encoder cannot be loaded, the old one keeps serving and
//! a warning is logged (once per failing id).
//!
//! ```no_run
//! # fn main() -> tantivy_ltre::Result<()> {
//! use tantivy_ltre::live::LiveEncoder;
//! let live = LiveEncoder::open(std::path::Path::new("scifact-index"), Default::default())?;
//! let encoder = live.get()?; // the active encoder, reloaded after an activation
//! let embedding = encoder.encode_queries(&["what causes scurvy?"])?;
//! # Ok(())
//! # }
//! ```
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ltre_core::encoder::EncoderOptions;
use ltre_core::Encoder;

use crate::encoders::EncoderStore;
use crate::error::{Error, Result};

/// How often [`LiveEncoder::get`] looks at `ACTIVE` by default.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_millis(200);

struct Current {
    id: String,
    encoder: Arc<Encoder>,
}

struct Check {
    at: Option<Instant>,
    /// An id that failed to load: not retried until `ACTIVE` names another one.
    failed: Option<String>,
}

/// The active query encoder of an index, reloaded when the active id changes.
pub struct LiveEncoder {
    store: EncoderStore,
    options: EncoderOptions,
    interval: Duration,
    current: RwLock<Current>,
    check: Mutex<Check>,
}

impl LiveEncoder {
    /// Loads the active encoder of the index at `index_dir`.
    pub fn open(index_dir: &Path, options: EncoderOptions) -> Result<LiveEncoder> {
        let store = EncoderStore::new(index_dir);
        let id = store.active_id()?;
        let encoder = Arc::new(Encoder::load_with(
            store.encoder_dir(&id)?,
            options.clone(),
        )?);
        Ok(LiveEncoder {
            store,
            options,
            interval: DEFAULT_CHECK_INTERVAL,
            current: RwLock::new(Current { id, encoder }),
            check: Mutex::new(Check {
                at: Some(Instant::now()),
                failed: None,
            }),
        })
    }

    /// Looks at `ACTIVE` at most once per `interval` (zero: on every [`LiveEncoder::get`]).
    pub fn with_check_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The id of the encoder [`LiveEncoder::get`] currently returns.
    pub fn current_id(&self) -> String {
        self.read_current().id.clone()
    }

    /// The active encoder. Errors only if the lock was poisoned by a panic elsewhere; a
    /// failing reload keeps the previous encoder.
    pub fn get(&self) -> Result<Arc<Encoder>> {
        self.refresh();
        Ok(self.read_current().encoder.clone())
    }

    fn read_current(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        // A panic while holding the lock cannot leave `Current` half-written (it is replaced
        // whole), so a poisoned lock is still usable.
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Reloads if `ACTIVE` names another encoder. One thread checks and loads at a time; the
    /// others keep using the current encoder meanwhile instead of waiting.
    fn refresh(&self) {
        let Ok(mut check) = self.check.try_lock() else {
            return;
        };
        if check.at.is_some_and(|at| at.elapsed() < self.interval) {
            return;
        }
        check.at = Some(Instant::now());
        let id = match self.store.active_id() {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!("keeping query encoder `{}`: {e}", self.current_id());
                return;
            }
        };
        if id == self.read_current().id || check.failed.as_deref() == Some(id.as_str()) {
            return;
        }
        match self.load(&id) {
            Ok(encoder) => {
                let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
                tracing::info!("query encoder switched from `{}` to `{id}`", current.id);
                *current = Current { id, encoder };
                check.failed = None;
            }
            Err(e) => {
                tracing::warn!(
                    "cannot load query encoder `{id}`, keeping `{}`: {e}",
                    self.current_id()
                );
                check.failed = Some(id);
            }
        }
    }

    fn load(&self, id: &str) -> Result<Arc<Encoder>> {
        let dir = self.store.encoder_dir(id)?;
        let encoder = Encoder::load_with(&dir, self.options.clone())?;
        let current = self.read_current();
        if encoder.dim() != current.encoder.dim() {
            return Err(Error::Invalid(format!(
                "encoder `{id}` embeds in {} dimensions, the index in {}",
                encoder.dim(),
                current.encoder.dim()
            )));
        }
        Ok(Arc::new(encoder))
    }
}
