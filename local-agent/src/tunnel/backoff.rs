//! Reconnect delays: exponential, capped, with jitter so many agents do not reconnect in step.

use std::time::Duration;

/// Settings of [`Backoff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffSettings {
    /// Delay ceiling of the first retry.
    pub initial: Duration,
    /// Largest delay ceiling.
    pub max: Duration,
    /// A connection that lasted this long counts as healthy: the next failure starts over from
    /// `initial` instead of continuing to grow.
    pub healthy_after: Duration,
}

impl Default for BackoffSettings {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
            healthy_after: Duration::from_secs(60),
        }
    }
}

/// Delays between reconnection attempts: the ceiling doubles from `initial` up to `max`, and
/// each delay is drawn from the upper half of the ceiling ("equal jitter"), so it is never
/// near zero yet agents restarted together spread out.
#[derive(Debug, Clone)]
pub struct Backoff {
    settings: BackoffSettings,
    attempt: u32,
}

impl Backoff {
    /// A backoff at its first step.
    pub fn new(settings: BackoffSettings) -> Self {
        Self { settings, attempt: 0 }
    }

    /// The settings.
    pub fn settings(&self) -> BackoffSettings {
        self.settings
    }

    /// The delay before the next attempt; each call moves one step up.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.settings.initial.saturating_mul(1 << self.attempt.min(20)).min(self.settings.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// Starts over from the first step (after a healthy connection).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_and_reset() {
        let settings = BackoffSettings {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(8),
            healthy_after: Duration::from_secs(60),
        };
        let mut backoff = Backoff::new(settings);
        let ceilings = [1, 2, 4, 8, 8, 8];
        for ceiling in ceilings {
            let ceiling = Duration::from_secs(ceiling);
            let delay = backoff.next_delay();
            assert!(delay >= ceiling / 2 && delay <= ceiling, "{delay:?} outside [{:?}, {ceiling:?}]", ceiling / 2);
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_secs(1));
        let spread: std::collections::HashSet<Duration> =
            (0..20).map(|_| Backoff::new(settings).next_delay()).collect();
        assert!(spread.len() > 10, "delays must be jittered");
    }
}
