//! Every setting the cloud side reads, and the original system's names it no longer needs.
//!
//! The catalogue is what makes "no setting is silently ignored" checkable: a config file may
//! hold only these names (a typo is refused with the closest one), a retired name is answered
//! with one line saying what replaced it, and in debug builds reading a name that is not listed
//! here panics, so the list cannot fall behind the code. README's settings table is tested
//! against it.

/// The settings `CloudConfig::load` and its callers read, by name.
pub const SETTINGS: &[&str] = &[
    "NOTION_API_KEY",
    "NOTION_DATABASE_ID",
    "NOTION_TEMPLATES_DATABASE_ID",
    "NOTION_API_BASE_URL",
    "NOTION_VERSION",
    "NOTION_RATE_LIMIT",
    "NOTION_RATE_BURST",
    "NOTION_STATUS_PROPERTY",
    "NOTION_TAGS_PROPERTY",
    "STATUS_PENDING",
    "STATUS_PROCESSING",
    "STATUS_ANSWERED",
    "STATUS_ANSWERED_OFFLINE",
    "STATUS_FAILED",
    "NOTION_WEBHOOK_TOKEN",
    "OPENROUTER_API_KEY",
    "OPENROUTER_BASE_URL",
    "LLM_MODELS",
    "LLM_TIMEOUT",
    "CLOUD_API_KEY",
    "AGENT_TOKEN",
    "AGENT_HEARTBEAT",
    "LOCAL_RAG_ENABLED",
    "RAG_REQUEST_TIMEOUT",
    "FALLBACK_TIMEOUT",
    "RAG_MAX_RESULTS",
    "ENABLE_FALLBACK",
    "CONTEXT_CACHE_TTL",
    "DYNAMODB_TABLE",
    "DATA_DIR",
    "POLL_INTERVAL",
    "JOB_LEASE",
    "MAX_ATTEMPTS",
    "RETRY_DELAY",
    "CONCURRENCY",
    "MAX_PAGES_PER_RUN",
    "FEEDBACK_INTERVAL",
    "COMMENT_TRIGGER",
    "WEBSOCKET_ENDPOINT",
    "TLS_CERT_FILE",
    "TLS_KEY_FILE",
    "HTTP_HEADER_TIMEOUT",
    "HTTP_REQUEST_TIMEOUT",
    "HTTP_MAX_CONNECTIONS",
    "ALLOW_INSECURE_HTTP",
    "ALERT_WEBHOOK_URL",
    "ALERT_AGENT_OFFLINE",
    "ALERT_ERRORS",
    "ALERT_SLOW_ANSWER",
    "ALERT_FALLBACK_ANSWERS",
    "ALERT_QUIET",
    // Set by Lambda: the dimension of the function's CloudWatch metrics.
    "AWS_LAMBDA_FUNCTION_NAME",
    // On AWS: where each secret is read from (crate::secrets::SECRET_SETTINGS), and the SSM
    // endpoint the tests point at a stand-in.
    "NOTION_API_KEY_PARAMETER",
    "OPENROUTER_API_KEY_PARAMETER",
    "CLOUD_API_KEY_PARAMETER",
    "AGENT_TOKEN_PARAMETER",
    "NOTION_WEBHOOK_TOKEN_PARAMETER",
    "AWS_ENDPOINT_URL_SSM",
];

/// What agents dial instead of being dialled.
const AGENT_DIALS_OUT: &str = "the agent now dials out to the cloud, so the cloud needs no address for it: \
     set CLOUD_URL and AGENT_TOKEN on the PC and the same AGENT_TOKEN here";

/// The original system's settings that mean nothing here, with what replaced each.
pub const RETIRED: &[(&str, &str)] = &[
    ("LOCAL_RAG_SERVICE_URL", AGENT_DIALS_OUT),
    ("LOCAL_RAG_ENDPOINTS", AGENT_DIALS_OUT),
    ("LOCAL_RAG_API_KEY", "agents authenticate to the cloud with AGENT_TOKEN; the agent's own API key stays on the PC"),
    (
        "DEPLOYMENT_MODE",
        "one binary serves both ways: `cloud-fn serve` self-hosted, the Lambda functions of template.yaml on AWS",
    ),
    (
        "RAG_HEALTH_CHECK_INTERVAL",
        "agents send heartbeats on their own connection; AGENT_HEARTBEAT sets how often (30 s)",
    ),
];

/// Whether the code reads `name`.
pub fn is_known(name: &str) -> bool {
    SETTINGS.contains(&name)
}

/// What replaced a retired setting, if `name` is one.
pub fn retired(name: &str) -> Option<&'static str> {
    RETIRED.iter().find(|(retired, _)| *retired == name).map(|(_, replaced_by)| *replaced_by)
}

/// The known setting closest to a misspelt `name` (at most a third of its letters off).
pub fn closest(name: &str) -> Option<&'static str> {
    SETTINGS
        .iter()
        .map(|known| (edit_distance(name, known), *known))
        .filter(|(distance, _)| *distance * 3 <= name.len().max(3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_name_finds_the_setting_it_meant() {
        assert_eq!(closest("POLL_INTERVALL"), Some("POLL_INTERVAL"));
        assert_eq!(closest("notion_databse_id".to_uppercase().as_str()), Some("NOTION_DATABASE_ID"));
        assert_eq!(closest("COLOUR"), None);
    }

    #[test]
    fn every_secret_can_be_read_from_the_parameter_store() {
        for secret in crate::secrets::SECRET_SETTINGS {
            assert!(is_known(secret), "{secret}");
            assert!(is_known(&format!("{secret}_PARAMETER")), "{secret}_PARAMETER");
        }
    }

    #[test]
    fn the_readme_documents_every_setting_and_every_retired_name() {
        let readme = include_str!("../../../README.md");
        for name in SETTINGS.iter().filter(|name| !name.ends_with("_PARAMETER")).chain(RETIRED.iter().map(|(n, _)| n)) {
            assert!(readme.contains(&format!("`{name}`")), "README.md does not document `{name}`");
        }
        assert!(readme.contains("`X_PARAMETER`"), "README.md does not document the _PARAMETER settings");
    }
}
