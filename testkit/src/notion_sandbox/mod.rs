//! A Notion-API-compatible sandbox: the endpoints notion-llm uses, with Notion's headers,
//! authentication, versions, data sources, filters, sorts, pagination, block validation and
//! error objects — plus what tests need and Notion cannot give: injectable faults (429 with
//! `Retry-After`, 5xx, slow answers), an optional rate limit, and a log of every request.
//!
//! Tests seed and inspect the workspace directly ([`NotionSandbox::create_database`],
//! [`NotionSandbox::add_page`], [`NotionSandbox::page`], [`NotionSandbox::page_text`]) and
//! point the code under test at [`NotionSandbox::url`].

mod blocks;
mod comments;
mod model;
mod query;
mod routes;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use model::Workspace;
pub use model::{PropertyKind, PropertySchema};

/// API versions the sandbox accepts in `Notion-Version`.
const VERSIONS: &[&str] = &["2022-06-28", "2025-09-03", "2026-03-11"];
/// Largest request body Notion accepts.
const MAX_BODY_BYTES: usize = 500 * 1024;

/// An error in Notion's shape.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    pub(crate) fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "validation_error", message)
    }

    pub(crate) fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "object_not_found",
            format!(
                "Could not find {what} with ID: {id}. Make sure the relevant pages and databases are shared with your integration."
            ),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "object": "error",
            "status": self.status.as_u16(),
            "code": self.code,
            "message": self.message,
            "request_id": uuid::Uuid::new_v4().to_string(),
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert("retry-after", HeaderValue::from(seconds));
        }
        response
    }
}

/// A fault to inject into matching requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429 `rate_limited` with `Retry-After: secs`.
    RateLimited {
        /// Seconds in the `Retry-After` header.
        retry_after_secs: u64,
    },
    /// 529 `service_overload` with `Retry-After`.
    Overloaded {
        /// Seconds in the `Retry-After` header.
        retry_after_secs: u64,
    },
    /// An error status (500, 502, 503, 504, 409…) with a matching Notion code.
    Status(u16),
    /// Answer normally, but only after this long (for client timeouts).
    Delay(Duration),
    /// Apply the request, then answer 500 as if it failed (the ambiguous case of a lost reply).
    ApplyThenFail,
}

struct Injection {
    method: Option<Method>,
    path_contains: String,
    fault: Fault,
    /// Matching requests to let through before the fault starts.
    skip: usize,
    remaining: usize,
}

/// One request the sandbox received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Status answered.
    pub status: u16,
}

struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Shared {
    token: String,
    workspace: Mutex<Workspace>,
    injections: Mutex<Vec<Injection>>,
    log: Mutex<Vec<Logged>>,
    /// Notion's "average of N requests per second, bursts allowed": a token bucket of N tokens
    /// refilled at N per second; `None` = unlimited.
    rate_limit: Mutex<Option<TokenBucket>>,
}

/// A running sandbox; it stops when dropped.
pub struct NotionSandbox {
    address: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl NotionSandbox {
    /// Starts a sandbox on an ephemeral loopback port, accepting `token`.
    pub async fn start(token: &str) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0".parse().expect("valid address"), token).await
    }

    /// Starts a sandbox on `address`.
    pub async fn start_on(address: SocketAddr, token: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            workspace: Mutex::new(Workspace::default()),
            injections: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            rate_limit: Mutex::new(None),
        });
        let listener = tokio::net::TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = routes::router(shared.clone());
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "notion sandbox stopped");
            }
        });
        Ok(Self { address, shared, stop: Some(stop) })
    }

    /// Base URL to give the client (`NOTION_API_BASE_URL`).
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Creates a database with one data source; returns `(database_id, data_source_id)`.
    pub fn create_database(&self, title: &str, schema: Vec<PropertySchema>) -> (String, String) {
        self.workspace().create_database(title, schema)
    }

    /// Creates the questions database with notion-llm's default names: title `Question`, status
    /// `Status` (Pending, Processing, Answered, Answered (offline), Failed), multi-select `Tags`.
    /// Returns `(database_id, data_source_id)`.
    pub fn create_questions_database(&self) -> (String, String) {
        self.create_questions_database_with(Vec::new())
    }

    /// [`create_questions_database`](Self::create_questions_database) with `more` properties
    /// (a page's optional choices, `Helpful`…).
    pub fn create_questions_database_with(&self, more: Vec<PropertySchema>) -> (String, String) {
        let mut schema = vec![
            PropertySchema::new("Question", PropertyKind::Title),
            PropertySchema::new("Status", PropertyKind::Status).with_options(&[
                "Pending",
                "Processing",
                "Answered",
                "Answered (offline)",
                "Failed",
            ]),
            PropertySchema::new("Tags", PropertyKind::MultiSelect),
        ];
        schema.extend(more);
        self.create_database("Questions", schema)
    }

    /// Adds a page to a data source, properties in Notion's write shape, optional content
    /// blocks in the append shape. Panics on invalid input: this is for test setup.
    pub fn add_page(&self, data_source_id: &str, properties: Value, children: Value) -> String {
        let mut workspace = self.workspace();
        let properties = properties.as_object().cloned().unwrap_or_default();
        let id = workspace.create_page(data_source_id, &properties).expect("valid page properties");
        if !children.is_null() {
            blocks::validate(&children).expect("valid page content");
            blocks::append(&mut workspace, &id, true, &children);
        }
        id
    }

    /// Puts a block of any type (even one the API cannot create, like `unsupported`) at the end
    /// of a page, as content made in the Notion app would be.
    pub fn add_raw_block(&self, page_id: &str, kind: &str, payload: Value) {
        let mut workspace = self.workspace();
        let id = model::new_id();
        let created = workspace.now();
        workspace.blocks.insert(
            id.clone(),
            model::BlockRecord {
                id: id.clone(),
                parent: page_id.to_owned(),
                parent_is_page: true,
                kind: kind.to_owned(),
                payload,
                created,
                in_trash: false,
            },
        );
        workspace.children.entry(page_id.to_owned()).or_default().push(id);
    }

    /// Types a paragraph at the end of a page, as a person does in the Notion app.
    pub fn type_paragraph(&self, page_id: &str, text: &str) {
        let rich_text = model::read_rich_text(&json!([{ "type": "text", "text": { "content": text } }]));
        self.add_raw_block(page_id, "paragraph", json!({ "rich_text": rich_text, "color": "default" }));
    }

    /// A person comments on a page or block, starting a discussion (as in the Notion app);
    /// returns `(comment_id, discussion_id)`.
    pub fn add_comment(&self, parent: &str, text: &str) -> (String, String) {
        let rich_text = json!([{ "type": "text", "text": { "content": text } }]);
        let comment = comments::add(&mut self.workspace(), parent, None, "sandbox-user", &rich_text);
        (comment.id, comment.discussion_id)
    }

    /// A person replies in a discussion; returns the comment's id.
    pub fn reply_in(&self, discussion: &str, text: &str) -> String {
        let mut workspace = self.workspace();
        let parent = workspace
            .comments
            .iter()
            .find(|comment| comment.discussion_id == discussion)
            .map(|comment| comment.parent.clone())
            .expect("the discussion exists");
        let rich_text = json!([{ "type": "text", "text": { "content": text } }]);
        comments::add(&mut workspace, &parent, Some(discussion.to_owned()), "sandbox-user", &rich_text).id
    }

    /// Every comment of a discussion, oldest first, in their read shape.
    pub fn discussion(&self, discussion: &str) -> Vec<Value> {
        let workspace = self.workspace();
        workspace
            .comments
            .iter()
            .filter(|comment| comment.discussion_id == discussion)
            .map(|comment| comment.json())
            .collect()
    }

    /// A page in its read shape (`GET /v1/pages/{id}`), trashed pages included.
    pub fn page(&self, id: &str) -> Option<Value> {
        self.workspace().page_json(id)
    }

    /// Sets a property as a person would in the Notion UI (write shape).
    pub fn set_property(&self, page_id: &str, name: &str, value: Value) {
        let mut workspace = self.workspace();
        let source = workspace.pages.get(page_id).map(|page| page.data_source_id.clone()).expect("page exists");
        let stored = workspace.write_property(&source, name, &value).expect("valid property");
        if let Some(page) = workspace.pages.get_mut(page_id) {
            page.values.insert(name.to_owned(), stored);
        }
        workspace.touch(page_id);
    }

    /// Moves a page to the trash.
    pub fn trash_page(&self, page_id: &str) {
        let mut workspace = self.workspace();
        if let Some(page) = workspace.pages.get_mut(page_id) {
            page.in_trash = true;
        }
        workspace.touch(page_id);
    }

    /// The page's live blocks, top level first, in their read shape with `children` filled in.
    pub fn blocks(&self, page_id: &str) -> Vec<Value> {
        let workspace = self.workspace();
        tree(&workspace, page_id)
    }

    /// All text of a page's live blocks, one block a line.
    pub fn page_text(&self, page_id: &str) -> String {
        fn collect(blocks: &[Value], out: &mut String) {
            for block in blocks {
                let kind = block["type"].as_str().unwrap_or_default();
                let text: String = block[kind]["rich_text"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|item| item["plain_text"].as_str())
                    .collect();
                out.push_str(&text);
                out.push('\n');
                if let Some(children) = block["children"].as_array() {
                    collect(children, out);
                }
            }
        }
        let mut out = String::new();
        collect(&self.blocks(page_id), &mut out);
        out
    }

    /// Moves the sandbox's clock (page timestamps) forward.
    pub fn advance_clock(&self, by: Duration) {
        let mut workspace = self.workspace();
        workspace.clock_offset += chrono::Duration::from_std(by).unwrap_or_default();
    }

    /// Makes the next `times` requests whose path contains `path_contains` (and whose method is
    /// `method`, if given) fail with `fault`.
    pub fn inject(&self, method: Option<&str>, path_contains: &str, fault: Fault, times: usize) {
        self.inject_after(method, path_contains, fault, 0, times);
    }

    /// Forgets the faults not yet used up.
    pub fn clear_faults(&self) {
        lock(&self.shared.injections).clear();
    }

    /// As [`inject`](Self::inject), but lets the first `skip` matching requests through (the
    /// second append of an answer, say).
    pub fn inject_after(&self, method: Option<&str>, path_contains: &str, fault: Fault, skip: usize, times: usize) {
        let method = method.map(|m| Method::from_bytes(m.as_bytes()).expect("valid method"));
        lock(&self.shared.injections).push(Injection {
            method,
            path_contains: path_contains.to_owned(),
            fault,
            skip,
            remaining: times,
        });
    }

    /// Answers 429 (`Retry-After: 1`) to requests beyond an average of `per_second` (a token
    /// bucket holding `per_second` tokens); `None` removes the limit.
    pub fn set_rate_limit(&self, per_second: Option<u32>) {
        match per_second {
            Some(rate) => self.set_rate_limit_with_burst(rate, rate),
            None => *lock(&self.shared.rate_limit) = None,
        }
    }

    /// Like [`Self::set_rate_limit`], with a bucket of `burst` tokens (requests that may arrive at
    /// once), refilled at `per_second`.
    pub fn set_rate_limit_with_burst(&self, per_second: u32, burst: u32) {
        let (rate, capacity) = (f64::from(per_second), f64::from(burst.max(1)));
        *lock(&self.shared.rate_limit) = Some(TokenBucket { rate, capacity, tokens: capacity, at: Instant::now() });
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Logged> {
        lock(&self.shared.log).clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    fn workspace(&self) -> MutexGuard<'_, Workspace> {
        lock(&self.shared.workspace)
    }
}

impl Drop for NotionSandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn tree(workspace: &Workspace, parent: &str) -> Vec<Value> {
    workspace
        .live_children(parent)
        .iter()
        .filter_map(|id| {
            let mut block = workspace.block_json(id)?;
            let children = tree(workspace, id);
            if !children.is_empty() {
                block["children"] = Value::Array(children);
            }
            Some(block)
        })
        .collect()
}

type Result<T> = std::result::Result<T, ApiError>;
