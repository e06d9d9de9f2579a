//! What a pipeline is told: the questions database's names and the scheduling knobs.

/// Names in the questions database (all configurable).
#[derive(Debug, Clone)]
pub struct Vocabulary {
    /// The status property (a `status` or `select`).
    pub status_property: String,
    /// The tags property (multi-select).
    pub tags_property: String,
    /// Status of a new question.
    pub pending: String,
    /// Status while answering.
    pub processing: String,
    /// Status after an answer with the agent's context.
    pub answered: String,
    /// Status after an answer without it.
    pub answered_offline: String,
    /// Status after the last failed attempt.
    pub failed: String,
}

impl Default for Vocabulary {
    fn default() -> Self {
        Self {
            status_property: "Status".into(),
            tags_property: "Tags".into(),
            pending: "Pending".into(),
            processing: "Processing".into(),
            answered: "Answered".into(),
            answered_offline: "Answered (offline)".into(),
            failed: "Failed".into(),
        }
    }
}

/// Pipeline settings.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Names in the questions database.
    pub vocabulary: Vocabulary,
    /// How long a run owns a job before another may take it over (seconds).
    pub lease_secs: i64,
    /// Attempts per question generation before it is marked failed.
    pub max_attempts: u32,
    /// How long to wait before retrying a failed attempt (seconds).
    pub retry_delay_secs: i64,
    /// Questions answered at the same time (Notion's rate limit is shared by all of them).
    pub concurrency: usize,
    /// Most pages one run claims, oldest first; the rest wait for the next run. Bounds what
    /// one run (one Lambda invocation) can spend.
    pub max_pages_per_run: usize,
    /// Least time between two sweeps of the answers' `Helpful` marks by one process (a
    /// scheduled run reads the pages marked since the last sweep; webhook events record marks
    /// at once).
    pub feedback_interval: std::time::Duration,
    /// What a comment starts with to be answered (`?`); `None`: comments are not answered.
    pub comment_trigger: Option<String>,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            vocabulary: Vocabulary::default(),
            lease_secs: 300,
            max_attempts: 3,
            retry_delay_secs: 60,
            concurrency: 4,
            max_pages_per_run: 50,
            feedback_interval: std::time::Duration::from_secs(600),
            comment_trigger: Some("?".into()),
        }
    }
}
