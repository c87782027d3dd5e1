//! Human-readable lines for fine-tune events and reports, shared by every front end.
use std::fmt;

use super::{Deployment, FineTuneEvent, FineTuneReport, Phase};

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
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
        for r in &self.history {
            let p = &r.phases;
            writeln!(
                f,
                "epoch {}: loss {:.4}, held-out nDCG@10 {:.4}, {:.3} s/step (forward {:.3}, \
                 retrieval+loss {:.3}, backward {:.3}, AdamW {:.3}), {:.1} s/epoch",
                r.epoch,
                r.loss,
                r.dev_ndcg10,
                r.step_seconds,
                p.forward,
                p.retrieval_loss,
                p.backward,
                p.optimizer,
                r.epoch_seconds
            )?;
        }
        let baseline = self.baseline_dev_ndcg10;
        write!(
            f,
            "held-out nDCG@10: {baseline:.4} before, best {:.4} (epoch {})",
            self.best_dev_ndcg10, self.best_epoch
        )?;
        if let Some(refit) = &self.refit {
            write!(
                f,
                "\nrefit: {} epochs on all {} training queries",
                refit.epochs, refit.queries
            )?;
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
