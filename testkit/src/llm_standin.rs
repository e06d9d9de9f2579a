//! An OpenAI-compatible chat-completions stand-in (the API OpenRouter speaks).
//!
//! Its answers are deterministic and reveal what it was given, so tests can assert that the
//! right context and template reached the model: the answer names the model, quotes the first
//! line of the system prompt, lists the context citations (`[n] …` lines) of the user message
//! and repeats the question. Faults can be queued per model: 429 with `Retry-After`, 5xx, 401,
//! 402, slow answers, and the "HTTP 200 with an error body" case.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A fault for the next matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmFault {
    /// 429 with `Retry-After: secs`.
    RateLimited {
        /// Seconds in `Retry-After`.
        retry_after_secs: u64,
    },
    /// An HTTP error status (500, 502, 503, 408, 401, 402…) with an OpenRouter error body.
    Status(u16),
    /// HTTP 200 whose body is `{"error": {...}}` (OpenRouter does this for upstream failures).
    ErrorIn200,
    /// HTTP 200 with a choice whose `finish_reason` is `"error"`.
    FinishedWithError,
    /// Answer after this delay (to trip client timeouts).
    Delay(Duration),
    /// Fail with this status after this delay (a run that loses its lease while it waits).
    SlowFailure(Duration, u16),
}

/// One request the stand-in received.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    /// The `model` asked for.
    pub model: String,
    /// The messages.
    pub messages: Vec<Value>,
    /// What the stand-in answered with (status).
    pub status: u16,
}

struct Queued {
    model: Option<String>,
    fault: LlmFault,
    remaining: usize,
}

struct Shared {
    key: String,
    faults: Mutex<Vec<Queued>>,
    log: Mutex<Vec<LlmRequest>>,
    /// Markdown to answer with instead of the echo (long tables, deep lists…).
    canned: Mutex<Option<String>>,
    /// The key's spending limit left, as `GET /key` reports it (`None`: no limit).
    credits_left: Mutex<Option<f64>>,
}

/// A running stand-in; stops when dropped.
pub struct LlmStandIn {
    address: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl LlmStandIn {
    /// Starts on an ephemeral loopback port, accepting `Authorization: Bearer <key>`.
    pub async fn start(key: &str) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().expect("valid address"), key).await
    }

    /// Starts on `address`.
    pub async fn start_on(address: SocketAddr, key: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            key: key.to_owned(),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            canned: Mutex::new(None),
            credits_left: Mutex::new(None),
        });
        let listener = tokio::net::TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let app = Router::new()
            .route("/api/v1/key", axum::routing::get(key_info))
            .route("/{*path}", post(complete))
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "LLM stand-in stopped");
            }
        });
        Ok(Self { address, shared, stop: Some(stop) })
    }

    /// OpenAI-compatible base URL (`OPENROUTER_BASE_URL`); requests go to `{url}/chat/completions`.
    pub fn url(&self) -> String {
        format!("http://{}/api/v1", self.address)
    }

    /// Fails the next `times` requests (for `model` only, if given) with `fault`.
    pub fn inject(&self, model: Option<&str>, fault: LlmFault, times: usize) {
        lock(&self.shared.faults).push(Queued { model: model.map(str::to_owned), fault, remaining: times });
    }

    /// Forgets the faults not yet used up.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<LlmRequest> {
        lock(&self.shared.log).clone()
    }

    /// Answers every later request with `markdown` (`None`: the echo again), for answers of a
    /// shape the echo never has: long tables, deep lists, text that imitates prompt markers.
    pub fn answer_with(&self, markdown: Option<&str>) {
        *lock(&self.shared.canned) = markdown.map(str::to_owned);
    }

    /// What `GET /key` reports as the key's limit left (`None`: no limit, OpenRouter's `null`).
    pub fn set_credits_left(&self, left: Option<f64>) {
        *lock(&self.shared.credits_left) = left;
    }
}

impl Drop for LlmStandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": { "code": status.as_u16(), "message": message } }))).into_response()
}

/// OpenRouter's `GET /api/v1/key`: the key's label, limit, what is left of it and its usage.
async fn key_info(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let presented = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if presented != Some(shared.key.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "No auth credentials found");
    }
    let left = *lock(&shared.credits_left);
    let usage = lock(&shared.log).iter().filter(|request| request.status == 200).count() as f64 * 0.0001;
    let limit = left.map(|left| left + usage);
    axum::Json(serde_json::json!({ "data": {
        "label": "stand-in", "limit": limit, "limit_remaining": left, "usage": usage, "is_free_tier": false,
    }}))
    .into_response()
}

async fn complete(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(_) => return error(StatusCode::BAD_REQUEST, "Invalid JSON body"),
    };
    let model = request["model"].as_str().unwrap_or("default").to_owned();
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let response = answer(&shared, &headers, &model, &messages).await;
    lock(&shared.log).push(LlmRequest { model, messages, status: response.status().as_u16() });
    response
}

async fn answer(shared: &Shared, headers: &HeaderMap, model: &str, messages: &[Value]) -> Response {
    let presented = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if presented != Some(shared.key.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "No auth credentials found");
    }
    if messages.is_empty() {
        return error(StatusCode::BAD_REQUEST, "messages must not be empty");
    }
    let fault = {
        let mut faults = lock(&shared.faults);
        faults.iter_mut().find(|q| q.remaining > 0 && q.model.as_deref().is_none_or(|m| m == model)).map(|q| {
            q.remaining -= 1;
            q.fault.clone()
        })
    };
    if let Some(LlmFault::SlowFailure(delay, _)) = &fault {
        tokio::time::sleep(*delay).await;
    }
    match fault {
        Some(LlmFault::RateLimited { retry_after_secs }) => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded");
            response.headers_mut().insert("retry-after", HeaderValue::from(retry_after_secs));
            return response;
        }
        Some(LlmFault::Status(status) | LlmFault::SlowFailure(_, status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = match status.as_u16() {
                401 => "User not found.",
                402 => "Insufficient credits. Add more using https://openrouter.ai/credits",
                408 => "Request timed out",
                502 => "Provider returned error",
                503 => "No available model provider that meets your routing requirements",
                _ => "Internal Server Error",
            };
            return error(status, message);
        }
        Some(LlmFault::ErrorIn200) => {
            return (
                StatusCode::OK,
                axum::Json(json!({ "error": { "code": 502, "message": "Provider returned error" } })),
            )
                .into_response();
        }
        Some(LlmFault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(LlmFault::FinishedWithError) => {
            let body = json!({
                "id": "gen-error", "object": "chat.completion", "model": model,
                "choices": [{ "index": 0, "finish_reason": "error", "message": { "role": "assistant", "content": "" },
                              "error": { "code": 502, "message": "upstream stream failed" } }],
            });
            return (StatusCode::OK, axum::Json(body)).into_response();
        }
        None => {}
    }
    let canned = lock(&shared.canned).clone();
    let content = canned.unwrap_or_else(|| echo(model, messages));
    let prompt_tokens: usize = messages.iter().map(|m| words(m["content"].as_str().unwrap_or_default())).sum();
    let completion_tokens = words(&content);
    let body = json!({
        "id": format!("gen-{}", uuid::Uuid::new_v4()),
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{ "index": 0, "finish_reason": "stop", "native_finish_reason": "stop",
                      "message": { "role": "assistant", "content": content } }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "cost": (prompt_tokens + completion_tokens) as f64 * 1e-6,
        },
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn words(text: &str) -> usize {
    text.split_whitespace().count().max(1)
}

/// The deterministic answer: Markdown that says what the model was given.
fn echo(model: &str, messages: &[Value]) -> String {
    let system = messages
        .iter()
        .find(|m| m["role"] == "system")
        .and_then(|m| m["content"].as_str())
        .and_then(|text| text.lines().next())
        .unwrap_or("(none)");
    let user =
        messages.iter().rev().find(|m| m["role"] == "user").and_then(|m| m["content"].as_str()).unwrap_or_default();
    let citations: Vec<&str> = user
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with('[') && line.find("] ").is_some_and(|end| line[1..end].parse::<u32>().is_ok()))
        .collect();
    // The prompt ends with `Question: …` (or `Follow-up question: …`); the echo names it once.
    let question = user.lines().rev().find(|line| !line.trim().is_empty()).map(str::trim).unwrap_or_default();
    let question = ["Question:", "Follow-up question:"]
        .iter()
        .find_map(|label| question.strip_prefix(label))
        .map_or(question, str::trim);
    let mut answer =
        format!("## Stand-in answer\n\n- **Model:** {model}\n- **System:** {system}\n- **Question:** {question}\n");
    if citations.is_empty() {
        answer.push_str("- **Context:** none\n");
    } else {
        answer.push_str("- **Context:**\n");
        for citation in citations {
            answer.push_str(&format!("  - {citation}\n"));
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_echo_reveals_model_template_context_and_question() {
        let messages = vec![
            json!({"role": "system", "content": "You are a careful assistant.\nMore rules."}),
            json!({"role": "user", "content": "Context:\n[1] Rust ownership (rust.md)\ntext\n[2] 番茄工作法 (p.md)\n\nQuestion: why?"}),
        ];
        let answer = echo("m1", &messages);
        assert!(answer.contains("**Model:** m1"));
        assert!(answer.contains("**System:** You are a careful assistant."));
        assert!(answer.contains("  - [1] Rust ownership (rust.md)\n  - [2] 番茄工作法 (p.md)"));
        assert!(answer.contains("**Question:** why?\n"), "{answer}");
    }
}
