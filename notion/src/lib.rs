//! A Notion API client for notion-llm, used by the cloud function (questions in, answers out)
//! and by the agent (knowledge sync).
//!
//! - [`client`]: the HTTP client — `Notion-Version` 2025-09-03 (data sources), a client-side rate
//!   limiter (3 requests/s by default), retries that honour `Retry-After`, pagination, recursive
//!   block reads and appends batched within Notion's limits;
//! - [`page`], [`block`] and [`comment`]: the objects read back, with accessors for property values and a
//!   renderer from blocks to Markdown-like text;
//! - [`markdown`]: Markdown (an LLM's answer) to blocks; [`rich_text`]: rich text both ways;
//!   [`link`]: page ids and titles in the links people paste;
//! - [`error`]: Notion's error objects, typed.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod append;
pub mod block;
pub mod client;
pub mod comment;
pub mod error;
pub mod link;
pub mod markdown;
pub mod page;
pub mod rich_text;

pub use block::{Block, Rendered, render};
pub use client::{ClientOptions, DEFAULT_BURST, Fence, NotionClient, RetryPolicy, Unfenced};
pub use comment::Comment;
pub use error::{NotionError, Result};
pub use page::{Database, List, Page};
