//! AdamW with decoupled weight decay, bias correction, linear warm-up then linear decay, and
//! global-norm gradient clipping, applied in Rust to a [`ParamStore`].
//!
//! The update matches PyTorch's `torch.optim.AdamW` on dense gradients: every parameter that
//! has a moment estimate is updated every step (moments decay even where this step's gradient
//! is zero), so a sparse word-embedding gradient behaves exactly like its dense equivalent.
use std::collections::BTreeMap;
use std::path::Path;

use ndarray::{ArrayD, Zip};
use serde::{Deserialize, Serialize};

use crate::params::ParamStore;
use crate::{Error, Result};

/// AdamW hyper-parameters and learning-rate schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    /// Peak learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator epsilon.
    pub eps: f32,
    /// Decoupled weight decay (not applied to biases and LayerNorm parameters).
    pub weight_decay: f32,
    /// Clip the global gradient L2 norm to this value; `None` disables clipping.
    pub max_grad_norm: Option<f32>,
    /// Steps of linear warm-up from 0 to `lr`.
    pub warmup_steps: u64,
    /// Total steps; the rate decays linearly to 0 at this step. 0 keeps it constant after warm-up.
    pub total_steps: u64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 5e-5,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            max_grad_norm: Some(1.0),
            warmup_steps: 0,
            total_steps: 0,
        }
    }
}

impl AdamWConfig {
    /// The learning rate used for the update numbered `step` (1-based).
    pub fn lr_at(&self, step: u64) -> f32 {
        if self.warmup_steps > 0 && step <= self.warmup_steps {
            return self.lr * step as f32 / self.warmup_steps as f32;
        }
        if self.total_steps == 0 || self.total_steps <= self.warmup_steps {
            return self.lr;
        }
        let left = self.total_steps.saturating_sub(step) as f32;
        self.lr * left / (self.total_steps - self.warmup_steps) as f32
    }

    /// Checks the values make sense.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, why: &str| Err(Error::Invalid(format!("optimizer.{field}: {why}")));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", "must be a positive number");
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad("beta1/beta2", "must lie in [0, 1)");
        }
        // Infinite eps or decay would not fail, just zero or wipe every weight.
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad("eps", "must be a positive number");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", "must be a number >= 0");
        }
        if let Some(c) = self.max_grad_norm {
            if c.is_nan() || c <= 0.0 {
                return bad(
                    "max_grad_norm",
                    "must be positive (omit it to disable clipping)",
                );
            }
        }
        Ok(())
    }
}

/// Whether decoupled weight decay applies to a parameter (the usual BERT recipe exempts
/// biases and LayerNorm gains).
pub fn decays(name: &str) -> bool {
    !(name.ends_with(".bias") || name.contains("LayerNorm"))
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// 1-based step number.
    pub step: u64,
    /// Learning rate used.
    pub lr: f32,
    /// Global gradient L2 norm before clipping.
    pub grad_norm: f32,
    /// Whether the gradient was clipped.
    pub clipped: bool,
}

/// Per-parameter gradients, by canonical name. A missing name means "zero gradient".
pub type Gradients = BTreeMap<String, ArrayD<f32>>;

/// AdamW state: moment estimates and the step counter.
#[derive(Debug, Clone)]
pub struct AdamW {
    config: AdamWConfig,
    step: u64,
    m: BTreeMap<String, ArrayD<f32>>,
    v: BTreeMap<String, ArrayD<f32>>,
}

impl AdamW {
    /// A fresh optimizer.
    pub fn new(config: AdamWConfig) -> Result<AdamW> {
        config.validate()?;
        Ok(AdamW {
            config,
            step: 0,
            m: BTreeMap::new(),
            v: BTreeMap::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// The same state under a new configuration (for example a schedule computed once the
    /// number of steps is known).
    pub fn with_config(mut self, config: AdamWConfig) -> AdamW {
        self.config = config;
        self
    }

    /// Number of steps taken.
    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// Global L2 norm of a set of gradients.
    pub fn global_norm(grads: &Gradients) -> f32 {
        grads
            .values()
            .map(|g| g.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>())
            .sum::<f64>()
            .sqrt() as f32
    }

    /// Applies one AdamW update to `params`. Gradients for names not in `params` are an error;
    /// parameters without a gradient this step still have their moments decayed and, if they
    /// have moments, are moved (as PyTorch does with a zero gradient).
    pub fn step(&mut self, params: &mut ParamStore, grads: &Gradients) -> Result<StepStats> {
        let grad_norm = Self::global_norm(grads);
        if !grad_norm.is_finite() {
            return Err(Error::Invalid(format!(
                "gradient norm is {grad_norm}: the loss diverged; lower the learning rate or the temperature"
            )));
        }
        let scale = match self.config.max_grad_norm {
            Some(c) if grad_norm > c => c / (grad_norm + 1e-6),
            _ => 1.0,
        };
        let next = self.step.checked_add(1).ok_or_else(|| {
            Error::Invalid("optimizer step counter overflowed; restart the optimizer state".into())
        })?;
        // Past i32::MAX steps the bias corrections are 1 anyway.
        let t = i32::try_from(next).unwrap_or(i32::MAX);
        let lr = self.config.lr_at(next);
        let (b1, b2, eps, wd) = (
            self.config.beta1,
            self.config.beta2,
            self.config.eps,
            self.config.weight_decay,
        );
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        let step_size = lr / bc1;
        let bc2_sqrt = bc2.sqrt();

        for (name, g) in grads {
            let p = params.get(name).ok_or_else(|| {
                Error::Invalid(format!("gradient for unknown parameter `{name}`"))
            })?;
            if p.shape() != g.shape() {
                return Err(Error::Invalid(format!(
                    "gradient for `{name}` has shape {:?}, parameter has {:?}",
                    g.shape(),
                    p.shape()
                )));
            }
        }
        // Moments restored from a file must fit their parameters, or the update below would
        // panic mid-step with some parameters already moved.
        for (name, m) in &self.m {
            let (Some(v), Some(p)) = (self.v.get(name), params.get(name)) else {
                continue;
            };
            if m.shape() != p.shape() || v.shape() != p.shape() {
                return Err(Error::Invalid(format!(
                    "optimizer state for `{name}` has shape {:?}/{:?}, parameter has {:?}; \
                     delete the optimizer state to restart it",
                    m.shape(),
                    v.shape(),
                    p.shape()
                )));
            }
        }
        for (name, g) in grads {
            if !self.m.contains_key(name) {
                self.m.insert(name.clone(), ArrayD::zeros(g.raw_dim()));
                self.v.insert(name.clone(), ArrayD::zeros(g.raw_dim()));
            }
        }
        self.step = next;
        let names: Vec<String> = self.m.keys().cloned().collect();
        for name in names {
            let (Some(m), Some(v), Some(p)) = (
                self.m.get_mut(&name),
                self.v.get_mut(&name),
                params.get_mut(&name),
            ) else {
                continue;
            };
            let decay = if decays(&name) { 1.0 - lr * wd } else { 1.0 };
            let update = |p: &mut f32, m: &mut f32, v: &mut f32, g: f32| {
                let g = g * scale;
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *p *= decay;
                *p -= step_size * *m / ((*v).sqrt() / bc2_sqrt + eps);
            };
            match grads.get(&name) {
                Some(g) => Zip::from(p)
                    .and(m)
                    .and(v)
                    .and(g)
                    .par_for_each(|p, m, v, &g| update(p, m, v, g)),
                None => Zip::from(p)
                    .and(m)
                    .and(v)
                    .par_for_each(|p, m, v| update(p, m, v, 0.0)),
            }
        }
        Ok(StepStats {
            step: self.step,
            lr,
            grad_norm,
            clipped: scale < 1.0,
        })
    }

    /// Saves the moments and step counter as safetensors (`m.<name>`, `v.<name>`, step in the
    /// metadata), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut store = ParamStore::new();
        for (n, a) in &self.m {
            store.insert(&format!("m.{n}"), a.clone());
        }
        for (n, a) in &self.v {
            store.insert(&format!("v.{n}"), a.clone());
        }
        store.insert(
            "step",
            ArrayD::from_elem(ndarray::IxDyn(&[1]), self.step as f32),
        );
        store.save(path)
    }

    /// Restores state written by [`AdamW::save`] under `config`.
    pub fn load(path: &Path, config: AdamWConfig) -> Result<AdamW> {
        config.validate()?;
        let store = ParamStore::load(path)?;
        let mut opt = AdamW::new(config)?;
        for (n, a) in store.iter() {
            if let Some(rest) = n.strip_prefix("m.") {
                opt.m.insert(rest.to_string(), a.clone());
            } else if let Some(rest) = n.strip_prefix("v.") {
                opt.v.insert(rest.to_string(), a.clone());
            } else if n == "step" {
                opt.step = read_step(a, path)?;
            }
        }
        for (name, m) in &opt.m {
            if opt.v.get(name).map(|v| v.shape()) != Some(m.shape()) {
                return Err(Error::bad_file(
                    path,
                    format!("optimizer state: `m.{name}` has no `v.{name}` of the same shape; delete it to restart"),
                ));
            }
        }
        if opt.m.len() != opt.v.len() {
            return Err(Error::bad_file(
                path,
                "optimizer state has unmatched m./v. tensors; delete it to restart",
            ));
        }
        Ok(opt)
    }
}

/// The saved step counter: one finite, non-negative whole number (a NaN or infinity cast to
/// `u64` would silently become 0 or overflow the next step).
fn read_step(a: &ArrayD<f32>, path: &Path) -> Result<u64> {
    const MAX_STEP: f32 = (1u64 << 53) as f32;
    match a.as_slice_memory_order() {
        Some(&[s]) if s.is_finite() && (0.0..=MAX_STEP).contains(&s) && s.fract() == 0.0 => {
            Ok(s as u64)
        }
        Some(&[s]) => Err(Error::bad_file(
            path,
            format!(
                "optimizer state: `step` is {s}, not a whole number >= 0; delete it to restart"
            ),
        )),
        _ => Err(Error::bad_file(
            path,
            format!(
                "optimizer state: `step` has shape {:?}, expected one number; delete it to restart",
                a.shape()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr1, IxDyn};

    fn store(vals: &[f32]) -> ParamStore {
        let mut s = ParamStore::new();
        s.insert("w", arr1(vals).into_dyn());
        s
    }

    #[test]
    fn first_step_matches_hand_computed_adamw() {
        // With bias correction, step 1 moves each weight by lr * sign(g) (plus decay).
        let cfg = AdamWConfig {
            lr: 0.1,
            weight_decay: 0.5,
            max_grad_norm: None,
            ..Default::default()
        };
        let mut opt = AdamW::new(cfg).unwrap();
        let mut p = store(&[1.0, -2.0]);
        let mut g = Gradients::new();
        g.insert("w".into(), arr1(&[0.3f32, -4.0]).into_dyn());
        opt.step(&mut p, &g).unwrap();
        let w = p.get("w").unwrap();
        let expect = |p0: f32, s: f32| p0 * (1.0 - 0.1 * 0.5) - 0.1 * s / (1.0 + 1e-8 / (s.abs()));
        assert!((w[[0]] - expect(1.0, 1.0)).abs() < 1e-6, "{}", w[[0]]);
        assert!((w[[1]] - expect(-2.0, -1.0)).abs() < 1e-6, "{}", w[[1]]);
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let cfg = AdamWConfig {
            lr: 1.0,
            warmup_steps: 4,
            total_steps: 12,
            ..Default::default()
        };
        assert_eq!(cfg.lr_at(1), 0.25);
        assert_eq!(cfg.lr_at(4), 1.0);
        assert_eq!(cfg.lr_at(8), 0.5);
        assert_eq!(cfg.lr_at(12), 0.0);
    }

    #[test]
    fn clipping_bounds_the_norm_and_bias_is_not_decayed() {
        let cfg = AdamWConfig {
            lr: 0.01,
            max_grad_norm: Some(1.0),
            ..Default::default()
        };
        let mut opt = AdamW::new(cfg).unwrap();
        let mut p = ParamStore::new();
        p.insert("layer.bias", arr1(&[1.0f32]).into_dyn());
        let mut g = Gradients::new();
        g.insert("layer.bias".into(), arr1(&[0.0f32]).into_dyn());
        let s = opt.step(&mut p, &g).unwrap();
        assert!(!s.clipped);
        assert_eq!(
            p.get("layer.bias").unwrap()[[0]],
            1.0,
            "zero grad + no decay leaves a bias alone"
        );
        g.insert("layer.bias".into(), arr1(&[30.0f32]).into_dyn());
        let s = opt.step(&mut p, &g).unwrap();
        assert!(s.clipped && (s.grad_norm - 30.0).abs() < 1e-4);
    }

    #[test]
    fn minimises_a_quadratic() {
        let cfg = AdamWConfig {
            lr: 0.05,
            weight_decay: 0.0,
            ..Default::default()
        };
        let mut opt = AdamW::new(cfg).unwrap();
        let mut p = store(&[3.0, -1.5, 0.7]);
        let loss = |p: &ParamStore| {
            p.get("w")
                .unwrap()
                .iter()
                .map(|x| (x - 0.5) * (x - 0.5))
                .sum::<f32>()
        };
        let before = loss(&p);
        for _ in 0..200 {
            let g = p.get("w").unwrap().mapv(|x| 2.0 * (x - 0.5));
            let mut grads = Gradients::new();
            grads.insert("w".into(), g);
            opt.step(&mut p, &grads).unwrap();
        }
        assert!(loss(&p) < before * 1e-2, "{} -> {}", before, loss(&p));
    }

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AdamWConfig::default();
        let mut opt = AdamW::new(cfg.clone()).unwrap();
        let mut p = store(&[1.0, 2.0]);
        let mut g = Gradients::new();
        g.insert("w".into(), arr1(&[0.1f32, 0.2]).into_dyn());
        opt.step(&mut p, &g).unwrap();
        let path = dir.path().join("opt.safetensors");
        opt.save(&path).unwrap();
        let mut a = opt.clone();
        let mut b = AdamW::load(&path, cfg).unwrap();
        assert_eq!(b.steps_taken(), 1);
        let (mut pa, mut pb) = (p.clone(), p.clone());
        a.step(&mut pa, &g).unwrap();
        b.step(&mut pb, &g).unwrap();
        assert_eq!(pa, pb);
        let _ = IxDyn(&[1]);
    }

    #[test]
    fn rejects_bad_config_and_non_finite_gradients() {
        assert!(AdamW::new(AdamWConfig {
            lr: -1.0,
            ..Default::default()
        })
        .is_err());
        let mut opt = AdamW::new(AdamWConfig::default()).unwrap();
        let mut p = store(&[1.0]);
        let mut g = Gradients::new();
        g.insert("w".into(), arr1(&[f32::NAN]).into_dyn());
        let err = opt.step(&mut p, &g).unwrap_err().to_string();
        assert!(err.contains("diverged"), "{err}");
        assert_eq!(
            p.get("w").unwrap()[[0]],
            1.0,
            "a failed step must not touch parameters"
        );
    }
}
