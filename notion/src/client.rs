//! The HTTP client: authentication and version headers, a client-side rate limiter, retries
//! that honour `Retry-After`, pagination, recursive block reads and batched appends.

use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::append::{self, Later};
use crate::block::Block;
use crate::comment::Comment;
use crate::error::{NotionError, Result};
use crate::page::{Database, List, Page};

/// The API version the client speaks by default: the one with data sources.
pub const DEFAULT_VERSION: &str = "2025-09-03";
/// Notion's public endpoint.
pub const DEFAULT_BASE_URL: &str = "https://api.notion.com";

/// Requests the client may send at once before pacing sets in (see [`ClientOptions::burst`]).
///
/// Notion documents "an average of three requests per second, some bursts allowed", and its
/// newer request-limits page a budget per 60-second window (180 requests at 3 a second), without
/// naming a bucket size. Ten is two answered questions' worth of requests (retrieve, Processing,
/// read blocks, append, Answered): one question is never paced, and the burst is 3.3 s of the
/// sustained rate, far inside a one-minute budget. Over any span `t` the client sends at most
/// `burst + rate × t` requests, so a long run stays at the sustained rate; a 429 still backs off
/// by its `Retry-After`.
pub const DEFAULT_BURST: u32 = 10;

/// Most blocks in one append request (Notion's limit).
pub const MAX_BLOCKS_PER_APPEND: usize = append::MAX_CHILDREN;

/// How failed requests are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff for 409/5xx/transport errors; doubled each attempt, with jitter.
    pub base_delay: Duration,
    /// Longest backoff.
    pub max_delay: Duration,
    /// Longest `Retry-After` we are willing to wait inside one call; a longer one is returned
    /// to the caller as an error (the next poll will try again).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `https://api.notion.com`, or a stand-in in tests.
    pub base_url: String,
    /// `Notion-Version` header.
    pub version: String,
    /// Client-side limit; Notion allows about 3 requests per second per integration.
    pub requests_per_second: u32,
    /// Requests that may leave at once, drawn from a bucket refilled at `requests_per_second`
    /// ([`DEFAULT_BURST`]); 1 spaces every request evenly.
    pub burst: u32,
    /// Retries.
    pub retry: RetryPolicy,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
    /// Allow `http://` to another machine (the token would travel unencrypted); without it
    /// only `https://`, or `http://` to this machine, is accepted.
    pub allow_insecure: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            version: DEFAULT_VERSION.to_owned(),
            requests_per_second: 3,
            burst: DEFAULT_BURST,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            allow_insecure: false,
        }
    }
}

/// Checked before every attempt of a fenced write ([`NotionClient::append_children_fenced`],
/// [`NotionClient::delete_block_fenced`]): the caller's right to write must still hold when
/// the request leaves, however long the retries before it waited (a job lease, renewed here).
pub trait Fence: Send + Sync {
    /// Why the caller may not write, or could not tell; Notion's own errors convert into it.
    type Error: From<NotionError> + Send;

    /// `Ok` to send the next attempt.
    fn check(&self) -> impl Future<Output = std::result::Result<(), Self::Error>> + Send;
}

/// No fence: every attempt may go.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unfenced;

impl Fence for Unfenced {
    type Error = NotionError;

    async fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// Whether a request may be sent twice without harm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Reads, property updates, deletes: retried on any retryable failure.
    Safe,
    /// Appends: retried only when Notion certainly did not apply them (429, 529, 409). After a
    /// timeout or a 5xx the blocks may exist, so the caller must look before appending again.
    OnlyIfRejected,
}

/// A Notion API client; cheap to clone, all clones share one rate limiter (one budget).
#[derive(Clone)]
pub struct NotionClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    token: String,
    options: ClientOptions,
    limiter: DefaultDirectRateLimiter,
    requests: AtomicU64,
}

impl fmt::Debug for NotionClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token.
        f.debug_struct("NotionClient").field("base_url", &self.inner.options.base_url).finish_non_exhaustive()
    }
}

impl NotionClient {
    /// A client authenticating with an integration `token`.
    pub fn new(token: impl Into<String>, options: ClientOptions) -> Result<Self> {
        protocol::cleartext::check_url(&options.base_url, protocol::cleartext::Transport::Http, options.allow_insecure)
            .map_err(|error| NotionError::Invalid(format!("NOTION_API_BASE_URL: {error}")))?;
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .user_agent(concat!("notion-llm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| NotionError::Transport(error.to_string()))?;
        let rate = NonZeroU32::new(options.requests_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(options.burst).unwrap_or(NonZeroU32::MIN);
        // A token bucket shared by every clone (so by every question in flight in this process):
        // `burst` at once, then `rate` a second.
        let limiter = RateLimiter::direct(Quota::per_second(rate).allow_burst(burst));
        let inner = Inner { http, token: token.into(), options, limiter, requests: AtomicU64::new(0) };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// HTTP requests sent so far (retries included), for benchmarks and tests.
    pub fn requests_sent(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// `GET /v1/users/me`: the bot user the token belongs to (a cheap way to check a token).
    pub async fn me(&self) -> Result<Value> {
        self.call(Method::GET, "/v1/users/me", None, Repeat::Safe).await
    }

    /// `GET /v1/databases/{id}`: the database and its data sources.
    pub async fn retrieve_database(&self, database_id: &str) -> Result<Database> {
        self.call(Method::GET, &format!("/v1/databases/{database_id}"), None, Repeat::Safe).await
    }

    /// The (first) data source of a database: where its rows are queried since 2025-09-03.
    pub async fn data_source_id(&self, database_id: &str) -> Result<String> {
        let database = self.retrieve_database(database_id).await?;
        database.data_sources.into_iter().next().map(|source| source.id).ok_or_else(|| {
            NotionError::Decode(format!("database {database_id} has no data source the integration can see"))
        })
    }

    /// `GET /v1/data_sources/{id}`: the data source with its properties' schema (`properties`
    /// by name, each with its `type` and, for select-like types, its `options`).
    pub async fn retrieve_data_source(&self, data_source_id: &str) -> Result<Value> {
        self.call(Method::GET, &format!("/v1/data_sources/{data_source_id}"), None, Repeat::Safe).await
    }

    /// `POST /v1/databases`: a new database under page `parent_page_id`, its data source having
    /// `properties` (`{"Question": {"title": {}}, …}`). Not repeated after a lost reply: that
    /// would make a second database.
    pub async fn create_database(&self, parent_page_id: &str, title: &str, properties: Value) -> Result<Database> {
        let body = json!({
            "parent": { "type": "page_id", "page_id": parent_page_id },
            "title": [{ "type": "text", "text": { "content": title } }],
            "initial_data_source": { "properties": properties },
        });
        self.call(Method::POST, "/v1/databases", Some(&body), Repeat::OnlyIfRejected).await
    }

    /// One page of `POST /v1/data_sources/{id}/query` results.
    pub async fn query(&self, data_source_id: &str, body: &Value) -> Result<List<Page>> {
        let path = format!("/v1/data_sources/{data_source_id}/query");
        self.call(Method::POST, &path, Some(body), Repeat::Safe).await
    }

    /// Every page matching `filter`, in `sorts` order, following the pagination cursor.
    pub async fn query_all(
        &self,
        data_source_id: &str,
        filter: Option<Value>,
        sorts: Option<Value>,
    ) -> Result<Vec<Page>> {
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut body = json!({ "page_size": 100 });
            if let Some(filter) = &filter {
                body["filter"] = filter.clone();
            }
            if let Some(sorts) = &sorts {
                body["sorts"] = sorts.clone();
            }
            if let Some(cursor) = &cursor {
                body["start_cursor"] = json!(cursor);
            }
            let list = self.query(data_source_id, &body).await?;
            pages.extend(list.results);
            match (list.has_more, list.next_cursor) {
                (true, Some(next)) => cursor = Some(next),
                _ => return Ok(pages),
            }
        }
    }

    /// `GET /v1/pages/{id}`.
    pub async fn retrieve_page(&self, page_id: &str) -> Result<Page> {
        self.call(Method::GET, &format!("/v1/pages/{page_id}"), None, Repeat::Safe).await
    }

    /// `PATCH /v1/pages/{id}` with new property values (`{"Status": {"status": {"name": …}}}`).
    pub async fn update_properties(&self, page_id: &str, properties: Value) -> Result<Page> {
        let body = json!({ "properties": properties });
        self.call(Method::PATCH, &format!("/v1/pages/{page_id}"), Some(&body), Repeat::Safe).await
    }

    /// `POST /v1/pages`: a new row in a data source, with up to 100 blocks of content.
    pub async fn create_page(&self, data_source_id: &str, properties: Value, children: Vec<Value>) -> Result<Page> {
        let mut body = json!({ "parent": { "data_source_id": data_source_id }, "properties": properties });
        if !children.is_empty() {
            body["children"] = Value::Array(children);
        }
        self.call(Method::POST, "/v1/pages", Some(&body), Repeat::OnlyIfRejected).await
    }

    /// One page of a block's children.
    pub async fn children_page(&self, block_id: &str, cursor: Option<&str>) -> Result<List<Block>> {
        let mut path = format!("/v1/blocks/{block_id}/children?page_size=100");
        if let Some(cursor) = cursor {
            path.push_str("&start_cursor=");
            path.push_str(cursor);
        }
        self.call(Method::GET, &path, None, Repeat::Safe).await
    }

    /// All direct children of a block (a page id works as a block id).
    pub async fn children(&self, block_id: &str) -> Result<Vec<Block>> {
        let mut blocks = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let list = self.children_page(block_id, cursor.as_deref()).await?;
            blocks.extend(list.results);
            match (list.has_more, list.next_cursor) {
                (true, Some(next)) => cursor = Some(next),
                _ => return Ok(blocks),
            }
        }
    }

    /// A page's content as a tree: children of children are fetched down to `max_depth`.
    /// Child pages and databases are separate pages and are not entered.
    pub async fn block_tree(&self, block_id: &str, max_depth: usize) -> Result<Vec<Block>> {
        let mut top = self.children(block_id).await?;
        // Iterative, so deep pages cannot overflow the stack.
        let mut pending: Vec<(Vec<usize>, usize)> = (0..top.len()).map(|index| (vec![index], 1)).collect();
        while let Some((path, depth)) = pending.pop() {
            let block = block_at(&mut top, &path);
            if !block.has_children
                || depth >= max_depth
                || matches!(block.kind.as_str(), "child_page" | "child_database")
            {
                continue;
            }
            let id = block.id.clone();
            let children = self.children(&id).await?;
            let count = children.len();
            block_at(&mut top, &path).children = children;
            for index in 0..count {
                let mut child = path.clone();
                child.push(index);
                pending.push((child, depth + 1));
            }
        }
        Ok(top)
    }

    /// `PATCH /v1/blocks/{id}/children`, split into requests within Notion's limits (see
    /// [`crate::append`]). Returns the created top-level blocks.
    pub async fn append_children(&self, block_id: &str, blocks: Vec<Value>) -> Result<Vec<Block>> {
        self.append_children_fenced(block_id, blocks, &Unfenced).await
    }

    /// [`append_children`](Self::append_children), checking `fence` before every request
    /// attempt. Content that does not fit one request (a table's rows beyond 100, a list
    /// nested deeper than two levels) is appended under its parent before any later block is
    /// sent, so blocks after it never appear while it is incomplete.
    pub async fn append_children_fenced<F: Fence>(
        &self,
        block_id: &str,
        blocks: Vec<Value>,
        fence: &F,
    ) -> std::result::Result<Vec<Block>, F::Error> {
        self.append_children_after(block_id, None, blocks, fence).await
    }

    /// [`append_children_fenced`](Self::append_children_fenced), placing the blocks right after
    /// `after` (a child of `block_id`) instead of at the end when it is given: what a person
    /// wrote below that block meanwhile stays below what is appended. Every request after the
    /// first goes after the last block the previous one created, so the blocks stay together.
    pub async fn append_children_after<F: Fence>(
        &self,
        block_id: &str,
        after: Option<&str>,
        blocks: Vec<Value>,
        fence: &F,
    ) -> std::result::Result<Vec<Block>, F::Error> {
        let mut created = Vec::new();
        let mut after = after.map(str::to_owned);
        for batch in append::batches(blocks).map_err(NotionError::Invalid)? {
            let sent = self.append_request(block_id, batch.blocks, after.as_deref(), fence).await?;
            if let Some(later) = batch.later {
                self.append_later(last_id(&sent)?, later, fence).await?;
            }
            if after.is_some() {
                after = Some(last_id(&sent)?);
            }
            created.extend(sent);
        }
        Ok(created)
    }

    /// Sends what stayed behind under `block_id` and its descendants.
    async fn append_later<F: Fence>(
        &self,
        block_id: String,
        later: Later,
        fence: &F,
    ) -> std::result::Result<(), F::Error> {
        let mut work = vec![(block_id, later)];
        while let Some((id, later)) = work.pop() {
            if !later.within.is_empty() {
                // The block was sent with at most 100 children: all on the first page.
                let children = self.children_page(&id, None).await?.results;
                for (index, inner) in later.within {
                    let child = children
                        .get(index)
                        .ok_or_else(|| NotionError::Decode(format!("block {id} lacks the child it was sent with")))?;
                    work.push((child.id.clone(), inner));
                }
            }
            for batch in append::batches(later.rest).map_err(NotionError::Invalid)? {
                let sent = self.append_request(&id, batch.blocks, None, fence).await?;
                if let Some(more) = batch.later {
                    work.push((last_id(&sent)?, more));
                }
            }
        }
        Ok(())
    }

    async fn append_request<F: Fence>(
        &self,
        block_id: &str,
        blocks: Vec<Value>,
        after: Option<&str>,
        fence: &F,
    ) -> std::result::Result<Vec<Block>, F::Error> {
        let path = format!("/v1/blocks/{block_id}/children");
        let mut body = json!({ "children": blocks });
        if let Some(after) = after {
            body["after"] = json!(after);
        }
        let list: List<Block> =
            self.call_fenced(Method::PATCH, &path, Some(&body), Repeat::OnlyIfRejected, fence).await?;
        Ok(list.results)
    }

    /// The open comments on a page or block (a page's own, or those on one block), oldest
    /// first, every page of them.
    pub async fn comments(&self, block_id: &str) -> Result<Vec<Comment>> {
        let mut comments = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/comments?block_id={block_id}&page_size=100");
            if let Some(cursor) = &cursor {
                path.push_str("&start_cursor=");
                path.push_str(cursor);
            }
            let list: List<Comment> = self.call(Method::GET, &path, None, Repeat::Safe).await?;
            comments.extend(list.results);
            match (list.has_more, list.next_cursor) {
                (true, Some(next)) => cursor = Some(next),
                _ => return Ok(comments),
            }
        }
    }

    /// Replies in discussion `discussion_id` with `rich_text` (at most 100 objects of 2000
    /// characters). Like an append it is repeated only when Notion certainly refused it: after
    /// a timeout the reply may exist, and the caller looks before replying again.
    pub async fn reply_in_discussion(&self, discussion_id: &str, rich_text: Vec<Value>) -> Result<Comment> {
        let body = json!({ "discussion_id": discussion_id, "rich_text": rich_text });
        self.call(Method::POST, "/v1/comments", Some(&body), Repeat::OnlyIfRejected).await
    }

    /// `DELETE /v1/blocks/{id}` (moves the block to the trash).
    pub async fn delete_block(&self, block_id: &str) -> Result<()> {
        self.delete_block_fenced(block_id, &Unfenced).await
    }

    /// [`delete_block`](Self::delete_block), checking `fence` before every attempt.
    pub async fn delete_block_fenced<F: Fence>(&self, block_id: &str, fence: &F) -> std::result::Result<(), F::Error> {
        let path = format!("/v1/blocks/{block_id}");
        let _: Value = self.call_fenced(Method::DELETE, &path, None, Repeat::Safe, fence).await?;
        Ok(())
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        repeat: Repeat,
    ) -> Result<T> {
        self.call_fenced(method, path, body, repeat, &Unfenced).await
    }

    async fn call_fenced<T: DeserializeOwned, F: Fence>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        repeat: Repeat,
        fence: &F,
    ) -> std::result::Result<T, F::Error> {
        let value = self.send(method, path, body, repeat, fence).await?;
        Ok(serde_json::from_value(value).map_err(|error| NotionError::Decode(format!("{path}: {error}")))?)
    }

    async fn send<F: Fence>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        repeat: Repeat,
        fence: &F,
    ) -> std::result::Result<Value, F::Error> {
        let inner = &self.inner;
        let policy = inner.options.retry;
        let url = format!("{}{path}", inner.options.base_url.trim_end_matches('/'));
        let mut attempt = 0;
        loop {
            attempt += 1;
            inner.limiter.until_ready().await;
            // After the limiter and any backoff: the fence holds when the request leaves.
            fence.check().await?;
            inner.requests.fetch_add(1, Ordering::Relaxed);
            let mut request = inner
                .http
                .request(method.clone(), &url)
                .bearer_auth(&inner.token)
                .header("Notion-Version", &inner.options.version);
            if let Some(body) = body {
                request = request.json(body);
            }
            let error = match request.send().await {
                Ok(response) => match read_response(response).await {
                    Ok(value) => return Ok(value),
                    Err(error) => error,
                },
                Err(error) => NotionError::Transport(error.without_url().to_string()),
            };
            let rejected = matches!(error.status(), Some(409 | 429 | 529));
            let may_retry = error.is_retryable() && (repeat == Repeat::Safe || rejected);
            if !may_retry || attempt >= policy.max_attempts {
                return Err(error.into());
            }
            let delay = match &error {
                NotionError::Api { retry_after: Some(wait), .. } => {
                    if *wait > policy.max_retry_after {
                        return Err(error.into());
                    }
                    *wait
                }
                _ => backoff(policy, attempt),
            };
            tracing::warn!(%error, attempt, delay_ms = delay.as_millis() as u64, %method, path, "retrying Notion request");
            tokio::time::sleep(delay).await;
        }
    }
}

/// The id of the last block an append created: where its later content goes.
fn last_id(created: &[Block]) -> Result<String> {
    created
        .last()
        .map(|block| block.id.clone())
        .ok_or_else(|| NotionError::Decode("an append created no blocks".into()))
}

fn block_at<'a>(blocks: &'a mut [Block], path: &[usize]) -> &'a mut Block {
    let (first, rest) = path.split_first().expect("paths are never empty");
    rest.iter().fold(&mut blocks[*first], |block, &index| &mut block.children[index])
}

/// Exponential backoff with jitter: `base × 2^(attempt-1)`, capped, scaled by 0.5–1.0.
fn backoff(policy: RetryPolicy, attempt: u32) -> Duration {
    let exponential = policy.base_delay.saturating_mul(1 << (attempt - 1).min(16));
    exponential.min(policy.max_delay).mul_f64(0.5 + fastrand::f64() / 2.0)
}

async fn read_response(response: reqwest::Response) -> Result<Value> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = response.text().await.map_err(|error| NotionError::Transport(error.without_url().to_string()))?;
    if status.is_success() {
        return serde_json::from_str(&text).map_err(|error| NotionError::Decode(error.to_string()));
    }
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let field = |name: &str| body[name].as_str().map(str::to_owned);
    Err(NotionError::Api {
        status: status.as_u16(),
        code: field("code").unwrap_or_else(|| default_code(status)),
        message: field("message").unwrap_or_else(|| text.chars().take(200).collect()),
        request_id: field("request_id"),
        retry_after,
    })
}

fn default_code(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("error").to_ascii_lowercase().replace(' ', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy::default();
        assert!(backoff(policy, 1) <= Duration::from_millis(500));
        assert!(backoff(policy, 3) >= Duration::from_millis(1000));
        assert!(backoff(policy, 30) <= policy.max_delay);
    }
}
