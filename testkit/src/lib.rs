//! The stand-ins notion-llm's tests run against, since no external service is reachable from
//! a test machine:
//!
//! - [`notion_sandbox`]: a Notion-API-compatible server (in-process, or the `notion-sandbox`
//!   binary for demos), and [`notion_webhook`]: the events and signatures Notion delivers;
//! - [`llm_standin`]: an OpenAI-compatible chat-completions server whose answers reveal their
//!   inputs (in-process, or the `llm-standin` binary);
//! - [`dynalite`]: a launcher for dynalite, the DynamoDB stand-in;
//! - [`browser`]: a headless Chromium that renders a page against a live server;
//! - [`schemathesis`]: runs schemathesis, the OpenAPI fuzzer, against a running server;
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
pub mod browser;
pub mod dynalite;
pub mod llm_standin;
pub mod notion_sandbox;
pub mod notion_webhook;
pub mod parameter_store;
pub mod schemathesis;

#[cfg(feature = "aws")]
pub use api_gateway::{ApiGatewayEmulator, EmulatorOptions, WebSocketBackend};
pub use dynalite::Dynalite;
pub use llm_standin::{LlmFault, LlmStandIn};
pub use notion_sandbox::{Fault, NotionSandbox, PropertyKind, PropertySchema};
pub use parameter_store::ParameterStoreStandIn;

/// `relative` under the runtime folder scripts/setup.sh fills: `$NOTION_LLM_RUNTIME`, else the
/// `.runtime` of the checkout the test runs in.
pub(crate) fn runtime_file(relative: &std::path::Path) -> Option<std::path::PathBuf> {
    if let Ok(runtime) = std::env::var("NOTION_LLM_RUNTIME") {
        let path = std::path::Path::new(&runtime).join(relative);
        return path.is_file().then_some(path);
    }
    let starts = [std::env::current_exe().ok(), std::env::current_dir().ok()];
    starts
        .into_iter()
        .flatten()
        .flat_map(|start| start.ancestors().map(|dir| dir.join(".runtime").join(relative)).collect::<Vec<_>>())
        .find(|path| path.is_file())
}
