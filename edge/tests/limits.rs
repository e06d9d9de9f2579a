//! The limits, against a real server on an ephemeral port: silent and idle sockets are closed,
//! slow handlers are answered, the connection cap holds, shutdown finishes.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use edge::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER_TIMEOUT: Duration = Duration::from_millis(400);

struct Server {
    address: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(max_connections: usize) -> Self {
        let router = Router::new().route("/fast", get(|| async { "ok" })).route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
        let limits = Limits {
            header_read_timeout: HEADER_TIMEOUT,
            request_timeout: Duration::from_millis(300),
            max_connections,
            shutdown_grace: Duration::from_secs(2),
            ..Limits::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(edge::serve(listener, router, limits, async {
            let _ = stopped.await;
        }));
        Self { address, stop: Some(stop), task }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), &mut self.task).await.unwrap().unwrap().unwrap();
    }
}

/// Reads until the peer closes; how long that took (or `None` if it stayed open for `within`).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(within.saturating_sub(started.elapsed()), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

async fn get_on(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&response).contains("\r\n\r\n") || !complete(&response) {
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(read > 0, "closed before a response");
        response.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8_lossy(&response).into_owned()
}

fn complete(response: &[u8]) -> bool {
    let text = String::from_utf8_lossy(response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let length = head
        .lines()
        .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .and_then(|value| value.parse::<usize>().ok())
        .unwrap_or(0);
    body.len() >= length
}

#[tokio::test]
async fn a_socket_that_never_finishes_its_headers_is_closed() {
    let server = Server::start(16).await;
    let mut silent = TcpStream::connect(server.address).await.unwrap();
    silent.write_all(b"GET /fast HTTP/1.1\r\nHost: loc").await.unwrap();
    let closed = closed_within(&mut silent, Duration::from_secs(5)).await;
    assert!(closed.is_some_and(|after| after >= HEADER_TIMEOUT / 2), "closed after {closed:?}");
    server.stop().await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let server = Server::start(16).await;
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    let response = get_on(&mut stream, "/fast").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // Kept alive: a second request on the same connection works.
    assert!(get_on(&mut stream, "/fast").await.starts_with("HTTP/1.1 200"));
    let closed = closed_within(&mut stream, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "an idle keep-alive connection stayed open");
    server.stop().await;
}

#[tokio::test]
async fn a_slow_handler_is_answered_with_a_timeout_error() {
    let server = Server::start(16).await;
    let started = Instant::now();
    let response = reqwest::get(format!("http://{}/slow", server.address)).await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    let server = Server::start(2).await;
    // Two sockets hold both slots until their header timeout closes them.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut socket = TcpStream::connect(server.address).await.unwrap();
        socket.write_all(b"GET /fa").await.unwrap();
        holders.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let response = reqwest::get(format!("http://{}/fast", server.address)).await.unwrap();
    assert_eq!(response.status(), 200);
    let waited = started.elapsed();
    assert!(waited >= HEADER_TIMEOUT / 2, "served at once ({waited:?}) although both slots were taken");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_stops_accepting_and_returns() {
    let server = Server::start(16).await;
    let address = server.address;
    assert_eq!(reqwest::get(format!("http://{address}/fast")).await.unwrap().status(), 200);
    server.stop().await;
    assert!(TcpStream::connect(address).await.is_err(), "still accepting after shutdown");
}
