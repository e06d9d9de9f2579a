//! The fence every write to a question's page passes: the job's lease, renewed before each
//! request attempt.

use notion::Fence;

use super::{Pipeline, StepError};
use crate::clock::Clock;
use crate::store::{JobLedger, JobRecord, JobWrite};

/// Renews a job's lease, conditionally on its version, before every write to the page: a
/// delete or append (with Notion's retries, up to minutes of `Retry-After`) can outlast the
/// lease, and a run that lost the job to a takeover must stop instead of interleaving its
/// blocks with the new owner's. A renewal is skipped when the last one is under a tenth of the
/// lease old: no other run can have taken the job within its lease.
pub(super) struct LeaseFence<'a> {
    store: &'a dyn JobLedger,
    clock: &'a dyn Clock,
    lease_secs: i64,
    /// The job as last written, and when its lease was last renewed.
    state: std::sync::Mutex<(JobRecord, i64)>,
}

impl<'a> LeaseFence<'a> {
    /// A fence for `job`, whose lease was just renewed.
    pub(super) fn new(pipeline: &'a Pipeline, job: JobRecord) -> Self {
        let renewed = pipeline.clock.now();
        Self {
            store: pipeline.store.as_ref(),
            clock: pipeline.clock.as_ref(),
            lease_secs: pipeline.settings.lease_secs,
            state: std::sync::Mutex::new((job, renewed)),
        }
    }

    /// The job with the version of its last renewal.
    pub(super) fn into_job(self) -> JobRecord {
        self.state.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()).0
    }
}

impl Fence for LeaseFence<'_> {
    type Error = StepError;

    async fn check(&self) -> Result<(), StepError> {
        let now = self.clock.now();
        let mut job = {
            let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if now - state.1 < self.lease_secs / 10 {
                return Ok(());
            }
            state.0.clone()
        };
        job.lease_until = now + self.lease_secs;
        if self.store.put_job(&mut job).await? == JobWrite::Conflict {
            return Err(StepError::LostLease);
        }
        *self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = (job, now);
        Ok(())
    }
}
