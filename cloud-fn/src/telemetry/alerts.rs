//! When to alert, self-hosted: the conditions `template.yaml`'s alarms watch on AWS, over the
//! same windows, as a pure state machine fed with run figures and the number of live agents.
//!
//! An incident is a condition becoming true: receivers hear of it once, and once more when it
//! ends. A condition that flaps is not announced at each flap: after a message about a
//! condition, the next one about it waits until [`Rules::quiet`] has passed, and then says
//! only how things stand by then (nothing, if it flapped back).

use std::collections::VecDeque;
use std::time::Duration;

use super::RunFigures;

/// What is watched, and when it counts as an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// No agent connected for this long; `None` watches nothing (no agent is ever asked).
    pub agent_offline: Option<Duration>,
    /// More than this many failed attempts (or failed runs) in [`SHORT_WINDOW`].
    pub errors: usize,
    /// An answer slower than this in [`SHORT_WINDOW`].
    pub slow_answer: Duration,
    /// At least this many answers without the agent's context in [`LONG_WINDOW`].
    pub degraded_answers: usize,
    /// Least time between two messages about one condition.
    pub quiet: Duration,
}

impl Default for Rules {
    /// The seed's promises: an agent offline for more than 5 minutes, more than 10 errors,
    /// answers slower than 15 s; and 3 answers without the agent in an hour.
    fn default() -> Self {
        Self {
            agent_offline: Some(Duration::from_secs(300)),
            errors: 10,
            slow_answer: Duration::from_secs(15),
            degraded_answers: 3,
            quiet: Duration::from_secs(600),
        }
    }
}

/// The window of errors, LLM failures and slow answers (the alarms' 15-minute period).
pub const SHORT_WINDOW: i64 = 15 * 60;
/// The window of answers without the agent (the alarm's one-hour period).
pub const LONG_WINDOW: i64 = 60 * 60;

/// Something worth a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// No agent has been connected for a while.
    AgentOffline,
    /// Many attempts failed.
    Errors,
    /// The LLM failed.
    LlmFailures,
    /// Answers were written without the agent's context.
    Fallback,
    /// An answer took long.
    SlowAnswers,
}

impl Condition {
    const ALL: [Condition; 5] =
        [Self::AgentOffline, Self::Errors, Self::LlmFailures, Self::Fallback, Self::SlowAnswers];
}

/// Whether a condition started or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// It became true.
    Firing,
    /// It is over.
    Resolved,
}

/// One message to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// About what.
    pub condition: Condition,
    /// Started or ended.
    pub state: State,
    /// What a person reads.
    pub text: String,
    /// When (seconds since the epoch).
    pub at: i64,
}

/// Something that happened at a time, counted in a window.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Event {
    Error,
    LlmFailure,
    Degraded,
    Slow(f64),
}

/// The alert state.
#[derive(Debug)]
pub struct Monitor {
    rules: Rules,
    /// Since when no agent has been live (`None` while one is).
    offline_since: Option<i64>,
    events: VecDeque<(i64, Event)>,
    /// Per condition: whether receivers were last told it is firing, and when.
    announced: [(bool, Option<i64>); 5],
}

impl Monitor {
    /// A monitor that starts at `now` with no agent connected.
    pub fn new(rules: Rules, now: i64) -> Self {
        Self { rules, offline_since: Some(now), events: VecDeque::new(), announced: [(false, None); 5] }
    }

    /// The rules it applies.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Counts a run that ended at `now`.
    pub fn record_run(&mut self, now: i64, figures: &RunFigures) {
        let mut push = |event: Event, times: usize| self.events.extend(std::iter::repeat_n((now, event), times));
        push(Event::Error, figures.errors);
        push(Event::LlmFailure, figures.llm_failures);
        push(Event::Degraded, figures.degraded);
        let slow = self.rules.slow_answer.as_secs_f64();
        for seconds in figures.answer_seconds.iter().filter(|seconds| **seconds > slow) {
            self.events.push_back((now, Event::Slow(*seconds)));
        }
    }

    /// Notes how many agents are live at `now`.
    pub fn agents(&mut self, now: i64, live: usize) {
        match (live, self.offline_since) {
            (0, None) => self.offline_since = Some(now),
            (1.., Some(_)) => self.offline_since = None,
            _ => {}
        }
    }

    /// What receivers should be told at `now`: conditions whose state differs from what they
    /// were last told and about which nothing was said for [`Rules::quiet`]. Call
    /// [`Monitor::sent`] for each notice delivered; an undelivered one comes again.
    pub fn due(&mut self, now: i64) -> Vec<Notice> {
        self.events.retain(|(at, _)| now - at < LONG_WINDOW);
        let quiet = self.rules.quiet.as_secs() as i64;
        let mut notices = Vec::new();
        for (index, condition) in Condition::ALL.into_iter().enumerate() {
            let (told_firing, told_at) = self.announced[index];
            let firing = self.firing(condition, now);
            if firing == told_firing || told_at.is_some_and(|at| now - at < quiet) {
                continue;
            }
            let state = if firing { State::Firing } else { State::Resolved };
            notices.push(Notice { condition, state, text: self.text(condition, state, now), at: now });
        }
        notices
    }

    /// Records that receivers were told `notice`.
    pub fn sent(&mut self, notice: &Notice) {
        let index = Condition::ALL.iter().position(|c| *c == notice.condition).unwrap_or_default();
        self.announced[index] = (notice.state == State::Firing, Some(notice.at));
    }

    fn count(&self, now: i64, window: i64, wanted: fn(&Event) -> bool) -> usize {
        self.events.iter().filter(|(at, event)| now - at < window && wanted(event)).count()
    }

    fn offline_for(&self, now: i64) -> Option<i64> {
        self.offline_since.map(|since| now - since)
    }

    fn firing(&self, condition: Condition, now: i64) -> bool {
        match condition {
            Condition::AgentOffline => match (self.rules.agent_offline, self.offline_for(now)) {
                (Some(limit), Some(offline)) => offline >= limit.as_secs() as i64,
                _ => false,
            },
            Condition::Errors => self.count(now, SHORT_WINDOW, |e| *e == Event::Error) > self.rules.errors,
            Condition::LlmFailures => self.count(now, SHORT_WINDOW, |e| *e == Event::LlmFailure) > 0,
            Condition::Fallback => {
                self.count(now, LONG_WINDOW, |e| *e == Event::Degraded) >= self.rules.degraded_answers.max(1)
            }
            Condition::SlowAnswers => self.count(now, SHORT_WINDOW, |e| matches!(e, Event::Slow(_))) > 0,
        }
    }

    fn text(&self, condition: Condition, state: State, now: i64) -> String {
        let rules = &self.rules;
        let errors = self.count(now, SHORT_WINDOW, |e| *e == Event::Error);
        match (condition, state) {
            (Condition::AgentOffline, State::Firing) => format!(
                "No agent has been connected for {}: questions are answered from cached context and templates. \
                 Is the PC on, and is `local-agent serve` running with CLOUD_URL and AGENT_TOKEN?",
                minutes(self.offline_for(now).unwrap_or_default())
            ),
            (Condition::AgentOffline, State::Resolved) => "An agent is connected again.".to_owned(),
            (Condition::Errors, State::Firing) => format!(
                "{errors} failed attempts in the last 15 min (more than {}): see the cloud's log and /status.",
                rules.errors
            ),
            (Condition::Errors, State::Resolved) => {
                format!("Errors are back to normal ({errors} failed attempts in the last 15 min).")
            }
            (Condition::LlmFailures, State::Firing) => format!(
                "The LLM failed {} time(s) in the last 15 min: check OPENROUTER_API_KEY, the credits left and \
                 LLM_MODELS.",
                self.count(now, SHORT_WINDOW, |e| *e == Event::LlmFailure)
            ),
            (Condition::LlmFailures, State::Resolved) => "The LLM has not failed for 15 min.".to_owned(),
            (Condition::Fallback, State::Firing) => format!(
                "{} in the last hour written without the agent's context (cached context or the template).",
                protocol::console::count(self.count(now, LONG_WINDOW, |e| *e == Event::Degraded) as u64, "answer")
            ),
            (Condition::Fallback, State::Resolved) => {
                "No answer has been written without the agent's context for an hour.".to_owned()
            }
            (Condition::SlowAnswers, State::Firing) => {
                let slowest = self
                    .events
                    .iter()
                    .filter_map(|(at, event)| match event {
                        Event::Slow(seconds) if now - at < SHORT_WINDOW => Some(*seconds),
                        _ => None,
                    })
                    .fold(0.0, f64::max);
                format!(
                    "An answer took {slowest:.1} s (more than {} s) in the last 15 min.",
                    rules.slow_answer.as_secs_f64()
                )
            }
            (Condition::SlowAnswers, State::Resolved) => {
                format!("Answers have been quicker than {} s for 15 min.", rules.slow_answer.as_secs_f64())
            }
        }
    }
}

fn minutes(seconds: i64) -> String {
    match seconds {
        ..120 => format!("{seconds} s"),
        _ => format!("{} min", seconds / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver(monitor: &mut Monitor, now: i64) -> Vec<(Condition, State)> {
        let notices = monitor.due(now);
        for notice in &notices {
            monitor.sent(notice);
        }
        notices.iter().map(|notice| (notice.condition, notice.state)).collect()
    }

    #[test]
    fn an_agent_offline_for_five_minutes_is_one_incident_with_one_recovery() {
        let mut monitor = Monitor::new(Rules::default(), 0);
        monitor.agents(10, 1);
        monitor.agents(100, 0);
        assert_eq!(deliver(&mut monitor, 399), vec![]);
        assert_eq!(deliver(&mut monitor, 400), vec![(Condition::AgentOffline, State::Firing)]);
        // Still offline: said once.
        monitor.agents(500, 0);
        assert_eq!(deliver(&mut monitor, 2000), vec![]);
        monitor.agents(2100, 1);
        assert_eq!(deliver(&mut monitor, 2100), vec![(Condition::AgentOffline, State::Resolved)]);
        assert_eq!(deliver(&mut monitor, 2200), vec![]);
    }

    #[test]
    fn a_flapping_condition_waits_out_the_quiet_time_and_then_says_how_things_stand() {
        let mut monitor = Monitor::new(Rules::default(), 0);
        assert_eq!(deliver(&mut monitor, 300), vec![(Condition::AgentOffline, State::Firing)]);
        monitor.agents(310, 1);
        monitor.agents(320, 0);
        // Back and gone again within the quiet time: nothing is said.
        assert_eq!(deliver(&mut monitor, 330), vec![]);
        monitor.agents(400, 1);
        assert_eq!(deliver(&mut monitor, 899), vec![]);
        // Quiet time over: the agent is connected, which is news.
        assert_eq!(deliver(&mut monitor, 900), vec![(Condition::AgentOffline, State::Resolved)]);
        // Flapped back within the quiet time, then stayed: nothing, then the new incident.
        monitor.agents(950, 0);
        monitor.agents(960, 1);
        assert_eq!(deliver(&mut monitor, 1500), vec![]);
    }

    #[test]
    fn an_undelivered_notice_comes_again() {
        let mut monitor = Monitor::new(Rules::default(), 0);
        assert_eq!(monitor.due(300).len(), 1);
        assert_eq!(monitor.due(315).len(), 1);
        assert_eq!(deliver(&mut monitor, 330), vec![(Condition::AgentOffline, State::Firing)]);
    }

    #[test]
    fn no_agent_rule_means_no_offline_alert() {
        let rules = Rules { agent_offline: None, ..Rules::default() };
        let mut monitor = Monitor::new(rules, 0);
        assert_eq!(deliver(&mut monitor, 100_000), vec![]);
    }

    #[test]
    fn more_than_ten_errors_in_fifteen_minutes_fire_and_age_out() {
        let mut monitor = Monitor::new(Rules { agent_offline: None, ..Rules::default() }, 0);
        monitor.record_run(10, &RunFigures { errors: 10, ..RunFigures::default() });
        assert_eq!(deliver(&mut monitor, 20), vec![]);
        monitor.record_run(30, &RunFigures { errors: 1, ..RunFigures::default() });
        let notices = monitor.due(40);
        assert_eq!(notices.len(), 1);
        assert!(notices[0].text.starts_with("11 failed attempts"), "{}", notices[0].text);
        monitor.sent(&notices[0]);
        assert_eq!(deliver(&mut monitor, 10 + SHORT_WINDOW - 1), vec![]);
        assert_eq!(deliver(&mut monitor, 10 + SHORT_WINDOW), vec![(Condition::Errors, State::Resolved)]);
    }

    #[test]
    fn llm_failures_slow_answers_and_fallback_each_have_their_incident() {
        let mut monitor = Monitor::new(Rules { agent_offline: None, ..Rules::default() }, 0);
        let figures = RunFigures {
            answers: 3,
            degraded: 3,
            errors: 1,
            llm_failures: 1,
            answer_seconds: vec![2.0, 16.0, 30.3],
            ..RunFigures::default()
        };
        monitor.record_run(100, &figures);
        let notices = monitor.due(100);
        let conditions: Vec<_> = notices.iter().map(|notice| notice.condition).collect();
        assert_eq!(conditions, vec![Condition::LlmFailures, Condition::Fallback, Condition::SlowAnswers]);
        assert!(notices[2].text.contains("30.3 s"), "{}", notices[2].text);
        assert!(notices[1].text.starts_with("3 answers"), "{}", notices[1].text);
        for notice in &notices {
            monitor.sent(notice);
        }
        let later = deliver(&mut monitor, 100 + SHORT_WINDOW);
        assert_eq!(later, vec![(Condition::LlmFailures, State::Resolved), (Condition::SlowAnswers, State::Resolved)]);
        assert_eq!(deliver(&mut monitor, 100 + LONG_WINDOW), vec![(Condition::Fallback, State::Resolved)]);
    }
}
