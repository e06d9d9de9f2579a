//! CloudWatch metrics as log lines, in CloudWatch's embedded metric format: on Lambda a JSON
//! line on stdout that carries an `_aws` member becomes metrics, with no `PutMetricData` call,
//! no permission and no cost while nothing happens (a run that found no question writes no
//! line). `template.yaml`'s alarms read these metrics, per function (`FunctionName`).

use serde_json::{Map, Value, json};

use super::{RunFigures, RunObserver};
use crate::pipeline::{PipelineError, RunReport};

/// The metrics' namespace (`template.yaml`'s alarms use the same).
pub const NAMESPACE: &str = "NotionLLM";

/// Questions answered, in any mode.
pub const ANSWERS: &str = "Answers";
/// Answers written without the agent's context (cached context or the template).
pub const DEGRADED_ANSWERS: &str = "DegradedAnswers";
/// Questions given up on.
pub const FAILED_QUESTIONS: &str = "FailedQuestions";
/// Failed attempts, and failed runs (`template.yaml` adds the function's own `Errors`).
pub const FAILED_ATTEMPTS: &str = "FailedAttempts";
/// Attempts that failed in the LLM.
pub const LLM_FAILURES: &str = "LlmFailures";
/// Seconds per answered question (one value per question).
pub const ANSWER_SECONDS: &str = "AnswerSeconds";
/// Hello and heartbeat messages from agents: none for a while means no agent is connected.
pub const AGENT_HEARTBEATS: &str = "AgentHeartbeats";

/// Every metric this module writes.
pub const METRICS: [&str; 7] =
    [ANSWERS, DEGRADED_ANSWERS, FAILED_QUESTIONS, FAILED_ATTEMPTS, LLM_FAILURES, ANSWER_SECONDS, AGENT_HEARTBEATS];

/// CloudWatch keeps at most 100 values of one metric per line.
const MAX_VALUES: usize = 100;

/// Writes metric lines for one function.
#[derive(Debug, Clone)]
pub struct Emf {
    function_name: String,
}

impl Emf {
    /// Metrics with the dimension `FunctionName = function_name`.
    pub fn new(function_name: impl Into<String>) -> Self {
        Self { function_name: function_name.into() }
    }

    /// The line for a run, or `None` when the run did nothing worth counting.
    pub fn run_line(&self, figures: &RunFigures, timestamp_ms: i64) -> Option<String> {
        if figures.is_empty() {
            return None;
        }
        let mut values = vec![
            (ANSWERS, json!(figures.answers), "Count"),
            (DEGRADED_ANSWERS, json!(figures.degraded), "Count"),
            (FAILED_QUESTIONS, json!(figures.failed), "Count"),
            (FAILED_ATTEMPTS, json!(figures.errors), "Count"),
            (LLM_FAILURES, json!(figures.llm_failures), "Count"),
        ];
        if !figures.answer_seconds.is_empty() {
            let seconds: Vec<f64> = figures.answer_seconds.iter().take(MAX_VALUES).copied().collect();
            values.push((ANSWER_SECONDS, json!(seconds), "Seconds"));
        }
        Some(self.line(&values, timestamp_ms))
    }

    /// The line for one agent's hello or heartbeat.
    pub fn heartbeat_line(&self, timestamp_ms: i64) -> String {
        self.line(&[(AGENT_HEARTBEATS, json!(1), "Count")], timestamp_ms)
    }

    fn line(&self, values: &[(&str, Value, &str)], timestamp_ms: i64) -> String {
        let definitions: Vec<Value> =
            values.iter().map(|(name, _, unit)| json!({ "Name": name, "Unit": unit })).collect();
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["FunctionName"]],
                    "Metrics": definitions,
                }],
            }),
        );
        root.insert("FunctionName".into(), json!(self.function_name));
        for (name, value, _) in values {
            root.insert((*name).into(), value.clone());
        }
        Value::Object(root).to_string()
    }
}

/// Milliseconds since the Unix epoch, as the format's `Timestamp` wants.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

impl Emf {
    /// Writes the heartbeat line to stdout (the function's log).
    pub fn heartbeat(&self) {
        println!("{}", self.heartbeat_line(now_ms()));
    }
}

impl RunObserver for Emf {
    fn run_ended(&self, result: &Result<RunReport, PipelineError>) {
        if let Some(line) = self.run_line(&RunFigures::of(result), now_ms()) {
            println!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape CloudWatch reads: every metric defined is a root member, under one dimension
    /// set whose names are root members too.
    fn assert_well_formed(line: &str) -> Value {
        let value: Value = serde_json::from_str(line).expect("one JSON object per line");
        let directive = &value["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert!(value["_aws"]["Timestamp"].is_i64());
        for dimension in directive["Dimensions"][0].as_array().expect("a dimension set") {
            assert!(value[dimension.as_str().expect("a name")].is_string(), "{line}");
        }
        for metric in directive["Metrics"].as_array().expect("metrics") {
            let name = metric["Name"].as_str().expect("a name");
            assert!(METRICS.contains(&name), "{name}");
            assert!(value[name].is_number() || value[name].is_array(), "{name} has no value in {line}");
        }
        value
    }

    #[test]
    fn a_run_becomes_one_line_of_metrics() {
        let emf = Emf::new("notion-llm-CloudFunction-abc");
        let figures = RunFigures {
            answers: 2,
            degraded: 1,
            errors: 1,
            llm_failures: 1,
            answer_seconds: vec![0.8, 16.5],
            ..RunFigures::default()
        };
        let line = emf.run_line(&figures, 1_764_000_000_000).expect("a run that answered is counted");
        let value = assert_well_formed(&line);
        assert_eq!(value["FunctionName"], "notion-llm-CloudFunction-abc");
        assert_eq!(value[ANSWERS], 2);
        assert_eq!(value[DEGRADED_ANSWERS], 1);
        assert_eq!(value[FAILED_QUESTIONS], 0);
        assert_eq!(value[ANSWER_SECONDS], json!([0.8, 16.5]));
        assert!(!line.contains('\n'));
    }

    #[test]
    fn an_idle_run_writes_nothing_and_a_heartbeat_counts_one() {
        let emf = Emf::new("f");
        assert_eq!(emf.run_line(&RunFigures::default(), 0), None);
        let value = assert_well_formed(&emf.heartbeat_line(5));
        assert_eq!(value[AGENT_HEARTBEATS], 1);
        let only_time = RunFigures { answers: 1, answer_seconds: vec![1.0; 150], ..RunFigures::default() };
        let value = assert_well_formed(&emf.run_line(&only_time, 0).expect("counted"));
        assert_eq!(value[ANSWER_SECONDS].as_array().map(Vec::len), Some(MAX_VALUES));
    }

    #[test]
    fn the_template_alarms_on_metrics_this_module_writes() {
        let template = include_str!("../../../template.yaml");
        assert!(template.contains(&format!("Namespace: {NAMESPACE}")), "template.yaml uses another namespace");
        let used: Vec<&str> = template.lines().filter_map(|line| line.trim().strip_prefix("MetricName: ")).collect();
        for name in &used {
            // The function's own metrics (AWS/Lambda) besides ours.
            assert!(METRICS.contains(name) || ["Errors", "Throttles"].contains(name), "nothing writes {name}");
        }
        for name in [AGENT_HEARTBEATS, DEGRADED_ANSWERS, FAILED_ATTEMPTS, LLM_FAILURES, ANSWER_SECONDS] {
            assert!(used.contains(&name), "no alarm in template.yaml reads {name}");
        }
    }
}
