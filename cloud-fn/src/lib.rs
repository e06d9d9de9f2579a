//! The notion-llm cloud side: finds pending questions in a Notion database, answers each
//! exactly once with context from the user's local agent (or, when it is offline, from cache
//! or templates), and writes the answer back into the page.
//!
//! The core talks to the world only through traits, each with its real adapter:
//!
//! - [`store::Store`]: job ledger, context cache, templates — [`store::dynamo`] (AWS) and
//!   [`store::embedded`] (self-hosted, redb);
//! - [`llm::Llm`]: OpenRouter or any OpenAI-compatible endpoint;
//! - [`agent::AgentLink`]: the tunnel to the agent — [`tunnel::hub::Hub`] when self-hosted,
//!   [`agent::OfflineLink`] where no agent can connect;
//! - the Notion client of the `notion` crate.
//!
//! [`pipeline`] is the job itself (`process_once`), [`context`] the fallback ladder,
//! [`templates`] the prompts, [`questions_database`] the database's shape (checked and
//! created); [`telemetry`] what operators are told (metrics, alerts); [`server`] is the self-hosted HTTP front, [`app`] the wiring and
//! [`config`] the settings.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod app;
pub mod clock;
pub mod config;
pub mod context;
pub mod doctor;
pub mod lambda;
pub mod llm;
pub mod pipeline;
pub mod questions_database;
pub mod secrets;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod templates;
pub mod tunnel;
pub mod webhook;
