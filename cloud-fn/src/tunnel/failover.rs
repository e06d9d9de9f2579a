//! Asking the user's agents in turn: the one rule both links follow.
//!
//! A search goes to one live agent; if it fails, the next is asked, all within the search's
//! deadline. An agent is given all the time left, or half of it when another agent could still
//! be asked, so one slow agent cannot use up the time of the one after it. The links differ only
//! in how they reach an agent (an in-process outbox, or API Gateway and the store), which is
//! what a [`Turns`] implementation supplies.

use std::future::Future;
use std::time::Duration;

use protocol::tunnel::ReplyBody;
use tokio::time::Instant;

use crate::agent::LinkError;

/// What asking one agent came to.
#[derive(Debug)]
pub enum Attempt {
    /// The agent answered.
    Answered(ReplyBody),
    /// The agent could not answer; another may. The error is the search's if none does.
    Failed(LinkError),
    /// The agent went away before it could be asked; the search's error stays as it was.
    Skipped,
    /// No agent could answer this request (it is too large to send): stop asking.
    GiveUp(LinkError),
    /// There is no agent left to ask.
    NoneLeft,
}

/// The agents of one search, asked one after another.
pub trait Turns {
    /// Asks the next agent, with `remaining` of the search's time left (see [`patience`]).
    fn ask_next(&mut self, remaining: Duration) -> impl Future<Output = Attempt> + Send;
}

/// How long to wait for one agent: all of `remaining`, or half when `others_left`.
pub fn patience(remaining: Duration, others_left: bool) -> Duration {
    if others_left { remaining / 2 } else { remaining }
}

/// Asks agents in turn until one answers, within `deadline` overall. Fails with the last
/// agent's error, [`LinkError::Offline`] if there was no agent to ask, or
/// [`LinkError::Timeout`] when the time ran out.
pub async fn ask_in_turn(turns: &mut impl Turns, deadline: Duration) -> Result<ReplyBody, LinkError> {
    let started = Instant::now();
    let mut last_error = LinkError::Offline;
    loop {
        let remaining = deadline.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            return Err(LinkError::Timeout(deadline));
        }
        match turns.ask_next(remaining).await {
            Attempt::Answered(reply) => return Ok(reply),
            Attempt::Failed(error) => last_error = error,
            Attempt::Skipped => {}
            Attempt::GiveUp(error) => return Err(error),
            Attempt::NoneLeft => return Err(last_error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use protocol::SearchResponse;

    use super::*;

    /// Agents that do what they are told, recording the patience each was given.
    struct Scripted {
        script: VecDeque<(Duration, Attempt)>,
        given: Vec<Duration>,
    }

    impl Turns for Scripted {
        async fn ask_next(&mut self, remaining: Duration) -> Attempt {
            let Some((takes, attempt)) = self.script.pop_front() else { return Attempt::NoneLeft };
            let patience = patience(remaining, !self.script.is_empty());
            self.given.push(patience);
            if takes > patience {
                tokio::time::sleep(patience).await;
                return Attempt::Failed(LinkError::Timeout(patience));
            }
            tokio::time::sleep(takes).await;
            attempt
        }
    }

    fn answer() -> Attempt {
        Attempt::Answered(ReplyBody::Search(SearchResponse {
            success: true,
            results: Vec::new(),
            context: "ok".into(),
            processing_time: 0.0,
            fusion: None,
        }))
    }

    fn scripted(steps: Vec<(u64, Attempt)>) -> Scripted {
        let script = steps.into_iter().map(|(ms, attempt)| (Duration::from_millis(ms), attempt)).collect();
        Scripted { script, given: Vec::new() }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_agent_gets_half_the_time_and_the_next_one_the_rest() {
        let mut turns = scripted(vec![(10_000, answer()), (100, answer())]);
        let reply = ask_in_turn(&mut turns, Duration::from_secs(4)).await;
        assert!(reply.is_ok(), "{reply:?}");
        assert_eq!(turns.given, vec![Duration::from_secs(2), Duration::from_secs(2)]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_agents_error_is_the_searchs_and_no_agent_is_offline() {
        let failed = || Attempt::Failed(LinkError::Agent("index missing".into()));
        let mut turns = scripted(vec![(10, failed()), (10, Attempt::Skipped)]);
        assert_eq!(
            ask_in_turn(&mut turns, Duration::from_secs(1)).await.unwrap_err(),
            LinkError::Agent("index missing".into()),
            "a skipped agent does not hide the error before it"
        );
        let mut nobody = scripted(Vec::new());
        assert_eq!(ask_in_turn(&mut nobody, Duration::from_secs(1)).await.unwrap_err(), LinkError::Offline);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_holds_however_many_agents_there_are() {
        let mut turns = scripted((0..50).map(|_| (10_000, answer())).collect());
        let started = Instant::now();
        let error = ask_in_turn(&mut turns, Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(error, LinkError::Timeout(_)), "{error:?}");
        assert!(started.elapsed() <= Duration::from_secs(1));
    }
}
