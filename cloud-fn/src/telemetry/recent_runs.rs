//! The last runs this process saw, for `/status` and the status page: when each ended, what it
//! found and what came of it. In memory and bounded; on AWS it is what one warm container saw
//! (the job ledger, which every container shares, has the questions themselves).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::RunObserver;
use crate::clock::Clock;
use crate::pipeline::{PipelineError, RunReport};

/// Runs kept.
pub const KEPT: usize = 10;

/// One run, summed up.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RunSummary {
    /// When it ended (seconds since the epoch).
    pub at: i64,
    /// Pending pages it found.
    pub found: usize,
    /// Answered with the agent's context.
    pub answered: usize,
    /// Answered from cached or template context.
    pub answered_offline: usize,
    /// Given up on.
    pub failed: usize,
    /// Failed attempts left for a later run.
    pub retrying: usize,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Why the run itself failed (then nothing else is counted).
    pub error: Option<String>,
}

/// The last [`KEPT`] runs, newest first.
pub struct RecentRuns {
    clock: Arc<dyn Clock>,
    runs: Mutex<VecDeque<RunSummary>>,
}

impl RecentRuns {
    /// None yet; runs are stamped with `clock`'s time.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock, runs: Mutex::new(VecDeque::with_capacity(KEPT)) }
    }

    /// The runs, newest first.
    pub fn list(&self) -> Vec<RunSummary> {
        self.runs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().cloned().collect()
    }
}

impl RunObserver for RecentRuns {
    fn run_ended(&self, result: &Result<RunReport, PipelineError>) {
        let at = self.clock.now();
        let summary = match result {
            // A scheduled run that found nothing is not worth a line.
            Ok(report) if report.found == 0 => return,
            Ok(report) => RunSummary {
                at,
                found: report.found,
                answered: report.answered,
                answered_offline: report.answered_offline,
                failed: report.failed,
                retrying: report.retrying,
                seconds: report.seconds,
                error: None,
            },
            Err(error) => RunSummary {
                at,
                found: 0,
                answered: 0,
                answered_offline: 0,
                failed: 0,
                retrying: 0,
                seconds: 0.0,
                error: Some(error.to_string()),
            },
        };
        let mut runs = self.runs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        runs.truncate(KEPT - 1);
        runs.push_front(summary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn newest_first_bounded_and_idle_runs_left_out() {
        let clock = Arc::new(ManualClock::new());
        let start = clock.now();
        let recent = RecentRuns::new(clock.clone());
        recent.run_ended(&Ok(RunReport::default()));
        assert!(recent.list().is_empty(), "a run that found nothing");
        for found in 1..=(KEPT + 3) {
            clock.advance(1);
            recent.run_ended(&Ok(RunReport { found, answered: found, ..RunReport::default() }));
        }
        recent.run_ended(&Err(PipelineError::Crashed(crate::pipeline::Step::Claimed)));
        let runs = recent.list();
        assert_eq!(runs.len(), KEPT);
        assert!(runs[0].error.is_some(), "a failed run shows, newest first");
        assert_eq!((runs[1].found, runs[1].at), (KEPT + 3, start + KEPT as i64 + 3));
    }
}
