//! The stand-ins notion-llm's tests run against, since no external service is reachable from
//! a test machine:
//!
//! - [`notion_sandbox`]: a Notion-API-compatible server (in-process, or the `notion-sandbox`
//!   binary for demos), and [`notion_webhook`]: the events and signatures Notion delivers;
//! - [`llm_standin`]: an OpenAI-compatible chat-completions server whose answers reveal their
//!   inputs (in-process, or the `llm-standin` binary);
//! - [`dynalite`]: a launcher for dynalite, the DynamoDB stand-in;
//! - [`parameter_store`]: an SSM Parameter Store stand-in (`GetParameters`), where the
//!   Lambda front reads its secrets;
//! - `api_gateway` (feature `aws`): an API Gateway WebSocket API emulator that turns real
//!   WebSocket clients into Lambda events for the cloud side's handlers and serves the
//!   `@connections` API.
//!
//! `aws::sdk_config` (feature `aws`) points the real AWS SDK clients at any of them.
//!
//! Servers listen on 127.0.0.1, on an ephemeral port unless told otherwise, and stop when
//! their handle is dropped.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "aws")]
pub mod api_gateway;
#[cfg(feature = "aws")]
pub mod aws;
pub mod dynalite;
pub mod llm_standin;
pub mod notion_sandbox;
pub mod notion_webhook;
pub mod parameter_store;

#[cfg(feature = "aws")]
pub use api_gateway::{ApiGatewayEmulator, EmulatorOptions, WebSocketBackend};
pub use dynalite::Dynalite;
pub use llm_standin::{LlmFault, LlmStandIn};
pub use notion_sandbox::{Fault, NotionSandbox, PropertyKind, PropertySchema};
pub use parameter_store::ParameterStoreStandIn;
