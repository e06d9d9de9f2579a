//! What the people who run the cloud side are told, beyond `/status` and the log: the figures of
//! every run, as CloudWatch metrics on AWS ([`emf`]: lines in the log, no API calls) and as
//! alerts self-hosted ([`alerts`]: the conditions, [`webhook`]: the messages), and the last runs
//! on the status page ([`recent_runs`]).
//!
//! The two deployments watch the same conditions with the same thresholds — no agent connected
//! for 5 minutes, more than 10 errors in 15 minutes, any LLM failure, answers written without
//! the agent's context, answers slower than 15 s — on AWS as CloudWatch alarms in
//! `template.yaml`, self-hosted in [`alerts::Monitor`].

pub mod alerts;
pub mod emf;
pub mod recent_runs;
pub mod webhook;

use crate::pipeline::{Cause, Outcome, PipelineError, RunReport};

/// Sees how every run of the pipeline ended (`Pipeline::observe_runs`).
pub trait RunObserver: Send + Sync {
    /// Called once per run, after its last page.
    fn run_ended(&self, result: &Result<RunReport, PipelineError>);
}

/// The figures of one run that metrics and alerts count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFigures {
    /// Questions answered, in any mode.
    pub answers: usize,
    /// Of those, answered without the agent's context (cached context or the template).
    pub degraded: usize,
    /// Questions given up on.
    pub failed: usize,
    /// Failed attempts (retried or given up), plus one if the run itself failed.
    pub errors: usize,
    /// Attempts that failed in the LLM.
    pub llm_failures: usize,
    /// Seconds each answered question took.
    pub answer_seconds: Vec<f64>,
}

impl RunFigures {
    /// The figures of a run's result.
    pub fn of(result: &Result<RunReport, PipelineError>) -> Self {
        let report = match result {
            Ok(report) => report,
            Err(_) => return Self { errors: 1, ..Self::default() },
        };
        let mut figures = Self { degraded: report.answered_offline, failed: report.failed, ..Self::default() };
        for (_, outcome) in &report.pages {
            match outcome {
                Outcome::Answered { seconds, .. } => {
                    figures.answers += 1;
                    figures.answer_seconds.push(*seconds);
                }
                Outcome::Failed { .. } | Outcome::WillRetry { .. } => figures.errors += 1,
                Outcome::Skipped { .. } => {}
            }
            if outcome.cause() == Some(Cause::Llm) {
                figures.llm_failures += 1;
            }
        }
        figures
    }

    /// Whether the run did anything worth a metric (a scheduled run that found nothing is not).
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::ContextMode;

    #[test]
    fn a_run_is_counted_by_its_outcomes() {
        let report = RunReport {
            answered: 1,
            answered_offline: 1,
            failed: 1,
            retrying: 1,
            pages: vec![
                ("a".into(), Outcome::Answered { mode: ContextMode::Full, seconds: 1.5 }),
                ("b".into(), Outcome::Answered { mode: ContextMode::Template, seconds: 2.0 }),
                ("c".into(), Outcome::Failed { reason: "bad key".into(), cause: Some(Cause::Llm) }),
                ("d".into(), Outcome::WillRetry { error: "Notion 502".into(), cause: Cause::Notion }),
                ("e".into(), Outcome::Skipped { reason: "owned".into() }),
            ],
            ..RunReport::default()
        };
        let figures = RunFigures::of(&Ok(report));
        assert_eq!(
            figures,
            RunFigures {
                answers: 2,
                degraded: 1,
                failed: 1,
                errors: 2,
                llm_failures: 1,
                answer_seconds: vec![1.5, 2.0]
            }
        );
        assert!(RunFigures::of(&Ok(RunReport::default())).is_empty());
        let failed_run = RunFigures::of(&Err(PipelineError::Crashed(crate::pipeline::Step::Claimed)));
        assert_eq!(failed_run.errors, 1);
    }
}
