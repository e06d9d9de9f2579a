//! The LLM edge: chat completions on OpenRouter or any OpenAI-compatible endpoint.
//!
//! Models are tried in order (`LLM_MODELS`: primary, then fallbacks). Each gets a few attempts:
//! 408, 429 and 5xx are retried with backoff (honouring `Retry-After`), and so are OpenRouter's
//! failures that arrive as HTTP 200 (an `error` body, or `finish_reason: "error"`). A bad key
//! (401) or exhausted credits (402) stop at once with a message that says so: another model
//! would fail the same way.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::store::Usage;

/// What the model is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// Instructions (from the template).
    pub system: String,
    /// Context and question.
    pub user: String,
}

/// What the model answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The answer, in Markdown.
    pub text: String,
    /// Tokens, cost and the model that actually answered.
    pub usage: Usage,
}

/// Why no answer came back.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    /// The key was refused: nothing will work until it is fixed.
    #[error("the LLM provider refused the API key (HTTP 401): check OPENROUTER_API_KEY")]
    Unauthorized,
    /// No credits left.
    #[error(
        "the LLM provider reports insufficient credits (HTTP 402): add credits or choose a free model in LLM_MODELS"
    )]
    InsufficientCredits,
    /// Every model failed; the last reason is kept.
    #[error("no model answered ({models}): {last}")]
    Exhausted {
        /// The models tried.
        models: String,
        /// The last failure.
        last: String,
    },
}

impl LlmError {
    /// Whether a later attempt can succeed without a person fixing something.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Exhausted { .. })
    }
}

/// Why the LLM client could not be created.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LlmSetupError(String);

/// A chat-completion model.
#[async_trait]
pub trait Llm: Send + Sync {
    /// Answers a prompt, with `model` first if given (a question page's `Model`), then the
    /// configured models in order: a model the provider does not know falls back to them, and
    /// the completion's usage names the model that answered.
    async fn complete(&self, prompt: &Prompt, model: Option<&str>) -> Result<Completion, LlmError>;
}

/// OpenRouter (or another OpenAI-compatible endpoint) settings.
#[derive(Debug, Clone)]
pub struct OpenRouterOptions {
    /// Base URL; requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    /// Models in order of preference.
    pub models: Vec<String>,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Attempts per model.
    pub attempts: u32,
    /// First backoff between attempts.
    pub backoff: Duration,
    /// Longest `Retry-After` honoured within one call.
    pub max_retry_after: Duration,
    /// Allow an `http://` base URL on another machine (the key would travel unencrypted).
    pub allow_insecure: bool,
}

impl Default for OpenRouterOptions {
    fn default() -> Self {
        Self {
            base_url: "https://openrouter.ai/api/v1".into(),
            models: vec!["openai/gpt-4o-mini".into()],
            timeout: Duration::from_secs(60),
            attempts: 3,
            backoff: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(20),
            allow_insecure: false,
        }
    }
}

/// The OpenRouter client.
pub struct OpenRouter {
    http: reqwest::Client,
    key: String,
    options: OpenRouterOptions,
}

impl std::fmt::Debug for OpenRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenRouter").field("options", &self.options).finish_non_exhaustive()
    }
}

/// One failed attempt, and whether to try again.
enum Attempt {
    Retry(String, Option<Duration>),
    NextModel(String),
    Fatal(LlmError),
}

impl OpenRouter {
    /// A client with `key`. Refuses a base URL that would send the key unencrypted to another
    /// machine, unless the options allow it.
    pub fn new(key: impl Into<String>, options: OpenRouterOptions) -> Result<Self, LlmSetupError> {
        use protocol::cleartext::{Transport, check_url};
        check_url(&options.base_url, Transport::Http, options.allow_insecure)
            .map_err(|error| LlmSetupError(format!("OPENROUTER_BASE_URL: {error}")))?;
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .build()
            .map_err(|error| LlmSetupError(format!("cannot create the HTTP client: {error}")))?;
        Ok(Self { http, key: key.into(), options })
    }

    async fn attempt(&self, model: &str, prompt: &Prompt) -> Result<Completion, Attempt> {
        let url = format!("{}/chat/completions", self.options.base_url.trim_end_matches('/'));
        let body = json!({
            "model": model,
            "messages": [
                { "role": "system", "content": prompt.system },
                { "role": "user", "content": prompt.user },
            ],
        });
        let response = self
            .http
            .post(url)
            .bearer_auth(&self.key)
            .header("HTTP-Referer", "https://github.com/notion-llm/notion-llm")
            .header("X-Title", "notion-llm")
            .json(&body)
            .send()
            .await
            .map_err(|error| Attempt::Retry(error.without_url().to_string(), None))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs);
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = body["error"]["message"].as_str().unwrap_or("no message").to_owned();
        match status {
            200 => {}
            401 => return Err(Attempt::Fatal(LlmError::Unauthorized)),
            402 => return Err(Attempt::Fatal(LlmError::InsufficientCredits)),
            408 | 429 | 500..=599 => return Err(Attempt::Retry(format!("HTTP {status}: {message}"), retry_after)),
            _ => return Err(Attempt::NextModel(format!("HTTP {status}: {message}"))),
        }
        // OpenRouter reports some failures with HTTP 200.
        if body.get("error").is_some_and(|e| !e.is_null()) {
            return Err(Attempt::Retry(format!("error in a 200 answer: {message}"), None));
        }
        let choice = &body["choices"][0];
        if choice["finish_reason"] == "error" {
            let reason = choice["error"]["message"].as_str().unwrap_or("finish_reason error");
            return Err(Attempt::Retry(format!("generation failed: {reason}"), None));
        }
        let text = choice["message"]["content"].as_str().unwrap_or_default().trim().to_owned();
        if text.is_empty() {
            return Err(Attempt::Retry("empty answer".into(), None));
        }
        let usage = &body["usage"];
        Ok(Completion {
            text,
            usage: Usage {
                model: body["model"].as_str().unwrap_or(model).to_owned(),
                prompt_tokens: usage["prompt_tokens"].as_u64().unwrap_or(0),
                completion_tokens: usage["completion_tokens"].as_u64().unwrap_or(0),
                cost: usage["cost"].as_f64(),
            },
        })
    }
}

#[async_trait]
impl Llm for OpenRouter {
    async fn complete(&self, prompt: &Prompt, first: Option<&str>) -> Result<Completion, LlmError> {
        let mut last = String::from("no model configured");
        let first = first.map(str::trim).filter(|model| !model.is_empty());
        let models: Vec<&str> = first
            .into_iter()
            .chain(self.options.models.iter().map(String::as_str).filter(|model| Some(*model) != first))
            .collect();
        for &model in &models {
            for attempt in 1..=self.options.attempts.max(1) {
                match self.attempt(model, prompt).await {
                    Ok(completion) => return Ok(completion),
                    Err(Attempt::Fatal(error)) => return Err(error),
                    Err(Attempt::NextModel(reason)) => {
                        tracing::warn!(model, %reason, "model refused the request; trying the next one");
                        last = reason;
                        break;
                    }
                    Err(Attempt::Retry(reason, retry_after)) => {
                        tracing::warn!(model, attempt, %reason, "LLM call failed");
                        last = reason;
                        if attempt < self.options.attempts {
                            let backoff = self.options.backoff.saturating_mul(1 << (attempt - 1).min(8));
                            let wait = retry_after.filter(|w| *w <= self.options.max_retry_after).unwrap_or(backoff);
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
            }
        }
        Err(LlmError::Exhausted { models: models.join(", "), last })
    }
}
