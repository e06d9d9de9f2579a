//! Runs [schemathesis](https://schemathesis.readthedocs.io) (PyPI; scripts/setup.sh installs it
//! into `.runtime/schemathesis`) against a server that is already listening: it reads the
//! server's `/openapi.json`, generates requests from it (valid ones and ones the document says
//! are wrong), and fails on any 5xx and on any reply the document does not describe — a
//! status, a content type, a body that breaks its schema, a key that is not checked.
//!
//! Bounded: a fixed seed, a few examples per operation and a time budget, so a test run stays
//! short and reproducible.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One bounded run.
#[derive(Debug, Clone)]
pub struct Fuzz {
    /// The document, e.g. `http://127.0.0.1:4321/openapi.json`.
    pub document_url: String,
    /// Headers sent with every request (`Authorization: Bearer …`).
    pub headers: Vec<String>,
    /// Test cases per operation.
    pub max_examples: u32,
    /// Time budget for the whole run.
    pub max_time: Duration,
    /// Checks to leave out, each with the reason in the caller's code.
    pub exclude_checks: Vec<&'static str>,
}

impl Fuzz {
    /// Every check, 20 examples per operation, at most 45 s.
    pub fn new(document_url: impl Into<String>) -> Self {
        Self {
            document_url: document_url.into(),
            headers: Vec::new(),
            max_examples: 20,
            max_time: Duration::from_secs(45),
            exclude_checks: Vec::new(),
        }
    }

    /// Sends `Authorization: Bearer <key>` with every request.
    pub fn bearer(mut self, key: &str) -> Self {
        self.headers.push(format!("Authorization: Bearer {key}"));
        self
    }

    /// Runs schemathesis (blocking); `Err` holds its report when it found anything or could
    /// not run.
    pub fn run(&self) -> Result<String, String> {
        let program = program().ok_or_else(|| {
            "schemathesis is not installed: run scripts/setup.sh (it installs it from PyPI into \
             .runtime/schemathesis), or set SCHEMATHESIS to its path"
                .to_owned()
        })?;
        let report = tempfile::tempdir().map_err(|error| format!("cannot make a report folder: {error}"))?;
        let mut command = Command::new(&program);
        command
            .arg("run")
            .arg(&self.document_url)
            .args(["--checks", "all", "--seed", "20261206", "--workers", "1", "--no-color"])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--max-examples", &self.max_examples.to_string()])
            .args(["--max-time", &self.max_time.as_secs().max(1).to_string()])
            .args(["--request-timeout", "10", "--generation-database", "none"])
            .args(["--suppress-health-check", "all"])
            .arg("--report-dir")
            .arg(report.path())
            // Its telemetry would try the network.
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .current_dir(report.path());
        if !self.exclude_checks.is_empty() {
            command.args(["--exclude-checks", &self.exclude_checks.join(",")]);
        }
        for header in &self.headers {
            command.args(["--header", header]);
        }
        let output = command.output().map_err(|error| format!("cannot run {}: {error}", program.display()))?;
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        if output.status.success() { Ok(text) } else { Err(text) }
    }
}

fn program() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SCHEMATHESIS") {
        return Some(PathBuf::from(path));
    }
    crate::runtime_file(Path::new("schemathesis/bin/schemathesis"))
}
