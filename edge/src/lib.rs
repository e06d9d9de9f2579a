//! The network edge both notion-llm servers stand on (`cloud-fn serve` and the agent's
//! loopback API): an axum [`Router`] served over HTTP/1.1 with limits on everything a client
//! controls.
//!
//! `axum::serve` has none of these: no timer, so no header-read timeout (a socket that never
//! finishes its headers holds a task forever), no idle timeout on kept-alive connections, no
//! request timeout and no connection cap — 200 silent sockets starve it. [`serve`] is the same
//! thing with [`Limits`]:
//!
//! - **connections**: at most [`Limits::max_connections`] at once; further ones wait in the
//!   kernel's listen backlog until one closes, so the server's memory stays bounded;
//! - **headers and idleness**: a client has [`Limits::header_read_timeout`] to send a request's
//!   headers, and hyper starts that clock again whenever a kept-alive connection goes idle, so
//!   an idle connection is closed after the same time;
//! - **requests**: a handler (body read included) that runs longer than
//!   [`Limits::request_timeout`] is answered `503 {success:false, error:{code:"timeout"}}`;
//! - **bodies**: [`Limits::max_body_bytes`] unless a route sets its own limit;
//! - **shutdown**: when `shutdown` completes, no new connection is accepted and open ones finish
//!   their current request (for at most [`Limits::shutdown_grace`]).
//!
//! WebSocket upgrades pass through: the request timeout covers the upgrade handshake only, and
//! an upgraded connection no longer counts against the cap (it is the caller's to bound, as the
//! cloud's agent gate does by token).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod openapi;
pub mod page;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use protocol::{ErrorCode, ErrorResponse};
use tokio::sync::{Semaphore, watch};

/// What a server allows its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to send a request's headers, and longest idle time of a kept-alive connection.
    pub header_read_timeout: Duration,
    /// Longest time from a request's headers to its response (body read included).
    pub request_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Largest request body, for routes that do not set their own limit.
    pub max_body_bytes: usize,
    /// How long open connections may take to finish once shutdown starts.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 256,
            max_body_bytes: 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Why limits cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLimits(&'static str);

impl std::fmt::Display for InvalidLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for InvalidLimits {}

impl Limits {
    /// Checks that every limit can work (no zero timeouts or caps).
    pub fn validate(&self) -> Result<(), InvalidLimits> {
        if self.header_read_timeout.is_zero() {
            return Err(InvalidLimits("the header-read timeout must be above zero"));
        }
        if self.request_timeout.is_zero() {
            return Err(InvalidLimits("the request timeout must be above zero"));
        }
        if self.max_connections == 0 {
            return Err(InvalidLimits("the connection limit must be at least 1"));
        }
        if self.max_body_bytes == 0 {
            return Err(InvalidLimits("the body limit must be at least 1 byte"));
        }
        Ok(())
    }
}

/// `router` with the per-request limits: the request timeout and the default body limit.
pub fn with_request_limits(router: Router, limits: &Limits) -> Router {
    let timeout = limits.request_timeout;
    router
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn(move |request: Request, next: Next| answer_within(timeout, request, next)))
}

async fn answer_within(timeout: Duration, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(path, ?timeout, "a request took too long; answered 503");
            let body = ErrorResponse::new(
                ErrorCode::Timeout,
                format!("the request was not answered within {} s", timeout.as_secs_f64()),
            );
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
    }
}

/// Serves `router` on `listener` with `limits` until `shutdown` completes; see the crate docs.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
{
    limits.validate().map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
    let router = with_request_limits(router, &limits);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closing_seen) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        // A free slot first, then a connection: over the cap, clients wait in the backlog.
        let slot = tokio::select! {
            slot = connections.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let io = tokio::select! {
            (io, _) = listener.accept() => io,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = http.serve_connection(TokioIo::new(io), service).with_upgrades();
        let mut closing = closing_seen.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = async { closing.wait_for(|closing| *closing).await.map(|_| ()) } => {
                    // Finish the request in progress, then close.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                // Timeouts and resets are the clients' doing; nothing to act on.
                tracing::debug!(%error, "a connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    let _ = closing.send(true);
    // Every slot back means every connection has finished.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_grace, connections.acquire_many(all)).await.is_err() {
        tracing::warn!(grace = ?limits.shutdown_grace, "connections still open at shutdown were dropped");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_limits_are_refused() {
        assert!(Limits::default().validate().is_ok());
        for broken in [
            Limits { header_read_timeout: Duration::ZERO, ..Limits::default() },
            Limits { request_timeout: Duration::ZERO, ..Limits::default() },
            Limits { max_connections: 0, ..Limits::default() },
            Limits { max_body_bytes: 0, ..Limits::default() },
        ] {
            assert!(broken.validate().is_err(), "{broken:?}");
        }
    }
}
