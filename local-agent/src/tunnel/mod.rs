//! The agent's end of the tunnel: an outbound WebSocket to the cloud, so the user's PC needs no
//! public address, port forwarding or DDNS.
//!
//! - [`connection`] dials (`Authorization: Bearer <AGENT_TOKEN>`, rustls with real certificate
//!   checks, `hello` → `welcome`) and runs a session: requests answered concurrently within
//!   their deadlines, replies trimmed to the message limit and fragmented into 32 KB frames,
//!   heartbeats, and `cache_push` of per-tag context whenever the index changes;
//! - [`supervisor`] keeps a connection up: jittered exponential [`backoff`], a new connection
//!   opened before the old one is drained (API Gateway closes connections at two hours), a
//!   slow retry when the cloud refuses the token (API Gateway also answers 403 during a
//!   redeploy; the local API keeps serving meanwhile), and a fatal error only for a
//!   configuration that cannot work (a bad URL);
//! - [`responder`] is what answers: the search engine;
//! - [`status`] is what it is doing (connected, last heartbeat, last error), for `/stats`.

pub mod backoff;
pub mod connection;
pub mod responder;
pub mod status;
pub mod supervisor;

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::config::Secret;
pub use responder::Responder;
pub use status::{TunnelSnapshot, TunnelState, TunnelStatus};
pub use supervisor::{SupervisorSettings, supervise};

/// Why the tunnel is down.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TunnelError {
    /// The cloud refused the token: retried slowly, since a person has to fix it (or API
    /// Gateway answers 403 while it is being redeployed).
    #[error("the cloud refused the agent token (HTTP {0}); set AGENT_TOKEN to one the cloud accepts")]
    Unauthorized(u16),
    /// The configuration cannot work: retrying cannot help.
    #[error("{0}")]
    Config(String),
    /// The cloud could not be reached or the connection broke: retried.
    #[error("cannot reach the cloud: {0}")]
    Unreachable(String),
    /// The cloud answered something unexpected: retried.
    #[error("the cloud broke the protocol: {0}")]
    Protocol(String),
}

impl TunnelError {
    /// Whether the supervisor should stop instead of retrying: the configuration cannot work.
    pub fn is_fatal(&self) -> bool {
        matches!(self, TunnelError::Config(_))
    }

    /// Whether the cloud refused the token (retried on the slow schedule).
    pub fn is_refused(&self) -> bool {
        matches!(self, TunnelError::Unauthorized(_))
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub struct TunnelConfig {
    /// `wss://…` (or `ws://…` to this machine, or anywhere with `allow_insecure`).
    pub url: String,
    /// The shared secret the cloud checks on the upgrade.
    pub token: Secret,
    /// Stable id of this agent installation.
    pub agent_id: String,
    /// TLS settings: the public web roots, or the user's own CA only.
    pub tls: Arc<ClientConfig>,
    /// Requests answered at once; more wait (within their deadlines).
    pub max_concurrent_requests: usize,
    /// Reconnect and rotation settings.
    pub supervisor: SupervisorSettings,
    /// Where the tunnel reports what it is doing; share it with whoever shows it.
    pub status: Arc<TunnelStatus>,
}

impl TunnelConfig {
    /// A configuration for `url` with defaults: the public web PKI, unless `ca_file` names the
    /// only CA to trust (for a self-hosted cloud with its own certificate).
    pub fn new(url: &str, token: Secret, agent_id: String, ca_file: Option<&Path>) -> Result<Self, TunnelError> {
        Self::with_transport(url, token, agent_id, ca_file, false)
    }

    /// As [`new`](Self::new); `allow_insecure` accepts `ws://` to another machine (the token
    /// would travel unencrypted: only where a VPN or tunnel encrypts the path).
    pub fn with_transport(
        url: &str,
        token: Secret,
        agent_id: String,
        ca_file: Option<&Path>,
        allow_insecure: bool,
    ) -> Result<Self, TunnelError> {
        protocol::cleartext::check_url(url, protocol::cleartext::Transport::WebSocket, allow_insecure)
            .map_err(|error| TunnelError::Config(format!("CLOUD_URL: {error}")))?;
        Ok(Self {
            url: url.to_owned(),
            token,
            agent_id,
            tls: Arc::new(client_tls(ca_file)?),
            max_concurrent_requests: std::thread::available_parallelism().map_or(2, |n| n.get()) * 2,
            supervisor: SupervisorSettings::default(),
            status: Arc::default(),
        })
    }
}

fn client_tls(ca_file: Option<&Path>) -> Result<ClientConfig, TunnelError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs =
                CertificateDer::pem_file_iter(path).and_then(|certs| certs.collect::<Result<Vec<_>, _>>()).map_err(
                    |error| TunnelError::Config(format!("cannot read CLOUD_CA_FILE {}: {error}", path.display())),
                )?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TunnelError::Config(format!(
                    "CLOUD_CA_FILE {} holds no usable certificate",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // The provider is named explicitly: other crates in the build enable a second one.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TunnelError::Config(format!("TLS setup failed: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Connects to the cloud and stays connected until a fatal error, which it returns (and
/// records in the status), or until `shutdown` fires: the session then finishes the requests in
/// flight and closes, and this returns `Ok`.
pub async fn run(
    config: TunnelConfig,
    responder: Arc<dyn Responder>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), TunnelError> {
    let settings = config.supervisor;
    let config = &config;
    let dial = || {
        let responder = responder.clone();
        async move {
            let dialled = connection::dial(config, responder).await;
            match &dialled {
                Err(error) if error.is_refused() => config.status.refused(&error.to_string()),
                Err(error) => config.status.dial_failed(&error.to_string()),
                Ok(_) => {}
            }
            dialled
        }
    };
    let ended = supervise(dial, settings, shutdown).await;
    if let Err(error) = &ended {
        config.status.stopped(&error.to_string());
    }
    ended
}
