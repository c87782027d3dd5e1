//! Human-readable lines for fine-tune events and reports, shared by every front end.
use std::fmt;

use super::{Deployment, FineTuneEvent, FineTuneReport, Phase};

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Search => "search",
            Phase::Select => "training",
            Phase::Refit => "refit",
        })
    }
}

impl fmt::Display for FineTuneEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FineTuneEvent::Prepared {
                start_encoder,
                train_queries,
                dev_queries,
                documents,
                objective,
                faiss_index,
            } => write!(
                f,
                "train: {train_queries} training queries, {dev_queries} held out, {documents} \
                 documents, objective {objective:?}, index {faiss_index}, from encoder \
                 `{start_encoder}`"
            ),
            FineTuneEvent::PhaseStarted {
                phase,
                epochs,
                queries,
                step,
                total_steps,
            } => {
                let all = if *phase == Phase::Refit { "all " } else { "" };
                write!(
                    f,
                    "{phase}: {epochs} epochs on {all}{queries} training queries"
                )?;
                if *step > 0 {
                    write!(f, ", resuming at step {step}/{total_steps}")?;
                }
                Ok(())
            }
            FineTuneEvent::Step {
                phase,
                step,
                total_steps,
                loss,
                seconds,
            } => write!(
                f,
                "{phase} step {step}/{total_steps}: loss {loss:.4}, {seconds:.2} s"
            ),
            FineTuneEvent::Trial(t) => write!(
                f,
                "search: lr {:e}, temperature {}, {}, {} steps: held-out nDCG@10 {:.4} -> best \
                 {:.4} at step {}, lowest {:.4} ({}){}",
                t.lr,
                t.temperature,
                match t.anchor_steps {
                    0 => "trust region kept".to_string(),
                    n => format!("trust region fading over {n} steps"),
                },
                t.steps,
                t.start_dev_ndcg10,
                t.best_dev_ndcg10,
                t.best_step,
                t.lowest_dev_ndcg10,
                if t.stable { "stable" } else { "unstable" },
                if t.chosen { ", chosen" } else { "" }
            ),
            FineTuneEvent::PhaseEnded { phase, interrupted } => write!(
                f,
                "{phase} {}",
                if *interrupted {
                    "interrupted (checkpoint written)"
                } else {
                    "done"
                }
            ),
        }
    }
}

/// One line per epoch, then the held-out result, the refit, the evaluation and the deployment.
impl fmt::Display for FineTuneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Without held-out queries the recorded 0s are placeholders, not measurements.
        let held_out = self.dev_queries > 0;
        for t in &self.search {
            writeln!(f, "{}", FineTuneEvent::Trial(t.clone()))?;
        }
        for r in &self.history {
            let p = &r.phases;
            let dev = if held_out {
                format!("{:.4}", r.dev_ndcg10)
            } else {
                "none".to_string()
            };
            writeln!(
                f,
                "epoch {}: loss {:.4}, held-out nDCG@10 {dev}, {:.3} s/step (forward {:.3}, \
                 retrieval+loss {:.3}, backward {:.3}, AdamW {:.3}), {:.1} s/epoch",
                r.epoch,
                r.loss,
                r.step_seconds,
                p.forward,
                p.retrieval_loss,
                p.backward,
                p.optimizer,
                r.epoch_seconds
            )?;
        }
        let baseline = self.baseline_dev_ndcg10;
        if held_out {
            write!(
                f,
                "held-out nDCG@10: {baseline:.4} before, best {:.4} (step {}, epoch {})",
                self.best_dev_ndcg10, self.best_step, self.best_epoch
            )?;
            if let Some(low) = self
                .dev_curve
                .iter()
                .min_by(|a, b| a.dev_ndcg10.total_cmp(&b.dev_ndcg10))
            {
                write!(
                    f,
                    ", lowest {:.4} (step {}) over {} points",
                    low.dev_ndcg10,
                    low.step,
                    self.dev_curve.len()
                )?;
            }
        } else {
            write!(f, "held-out nDCG@10: none (no held-out queries)")?;
        }
        if let Some(refit) = &self.refit {
            write!(
                f,
                "\nrefit: {} steps ({} epochs) on all {} training queries",
                refit.steps, refit.epochs, refit.queries
            )?;
        }
        if let Some(alpha) = self.fusion_alpha {
            write!(
                f,
                "\nfusion weight (linear, min-max) chosen on the held-out queries: alpha {alpha}"
            )?;
            if let Some((_, ndcg)) = self.fusion_table.iter().find(|x| x.0 == alpha) {
                write!(f, " (held-out nDCG@10 {ndcg:.4}, before any refit)")?;
            }
        }
        if let (Some(before), Some(after)) = (self.eval_before_ndcg10, self.eval_after_ndcg10) {
            write!(
                f,
                "\nevaluation ({} queries): nDCG@10 {before:.4} -> {after:.4}",
                self.eval_queries
            )?;
        }
        let start = &self.start_encoder;
        match &self.deployment {
            Deployment::NotRequested => Ok(()),
            Deployment::NotImproved if !held_out => write!(
                f,
                "\nnot deployed: no held-out queries to select on; `{start}` stays active \
                 (force deploys the final parameters)"
            ),
            Deployment::NotImproved => write!(
                f,
                "\nnot deployed: no epoch improved the held-out nDCG@10 ({baseline:.4}); \
                 `{start}` stays active (force deploys the final parameters)"
            ),
            Deployment::Deployed {
                id,
                previous,
                forced,
            } => write!(
                f,
                "\ndeployed: encoder `{id}` is now active{} (a rollback restores `{previous}`)",
                if *forced {
                    ", forced although the held-out nDCG@10 did not improve"
                } else {
                    ""
                }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use ltre_core::trainer::{EpochRecord, StepPhases, TrainConfig};

    use super::*;

    fn report(dev_queries: usize) -> FineTuneReport {
        FineTuneReport {
            config: TrainConfig::default(),
            start_encoder: "base".into(),
            run_dir: "run".into(),
            documents: 10,
            train_queries: 4,
            dev_queries,
            baseline_dev_ndcg10: 0.0,
            best_dev_ndcg10: 0.0,
            best_epoch: 0,
            best_step: 0,
            dev_curve: Vec::new(),
            search: Vec::new(),
            fusion_alpha: None,
            fusion_table: Vec::new(),
            history: vec![EpochRecord {
                epoch: 1,
                loss: 0.5,
                dev_ndcg10: 0.0,
                step_seconds: 0.1,
                epoch_seconds: 0.4,
                phases: StepPhases::default(),
            }],
            refit: None,
            eval_queries: 0,
            eval_before_ndcg10: None,
            eval_after_ndcg10: None,
            training_data_sha256: String::new(),
            document_vectors_sha256_before: String::new(),
            document_vectors_sha256_after: String::new(),
            deployment: Deployment::NotImproved,
        }
    }

    #[test]
    fn no_held_out_queries_show_no_held_out_value() {
        let text = report(0).to_string();
        assert!(!text.contains("0.0000"), "{text}");
        assert!(text.contains("held-out nDCG@10 none"), "{text}");
        assert!(text.contains("no held-out queries"), "{text}");
        let text = report(2).to_string();
        assert!(text.contains("held-out nDCG@10 0.0000"), "{text}");
    }
}
