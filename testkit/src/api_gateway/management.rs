//! The `@connections` management API: how a backend talks back to its clients.
//!
//! Errors are shaped the way the restJson1 SDKs classify them: the `x-amzn-ErrorType` header
//! names the exception (`GoneException`, …) and the body is `{"message": …}`, so the real
//! `aws-sdk-apigatewaymanagement` client yields its typed errors.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use tokio::sync::oneshot;

use super::{Command, Shared, events};

/// `POST /{stage}/@connections/{id}`: the body goes to the client as one message.
pub(super) async fn post_to_connection(
    State(shared): State<Arc<Shared>>,
    Path(connection_id): Path<String>,
    headers: HeaderMap,
    payload: Bytes,
) -> Response {
    if let Some(refusal) = refuse_unsigned(&headers) {
        return refusal;
    }
    if payload.len() > shared.options.max_message_bytes {
        return aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            &format!("Message of {} bytes exceeds the {} byte limit", payload.len(), shared.options.max_message_bytes),
        );
    }
    let (sent, was_sent) = oneshot::channel();
    let queued = shared
        .connections()
        .get(&connection_id)
        .is_some_and(|entry| entry.commands.send(Command::Send { payload, sent }).is_ok());
    // The connection may close before the message goes out: that is a 410 too.
    if queued && was_sent.await.unwrap_or(false) {
        return with_request_id(StatusCode::OK.into_response());
    }
    gone(&connection_id)
}

/// `GET /{stage}/@connections/{id}`: when the connection opened and was last active, and who
/// is on it.
pub(super) async fn get_connection(
    State(shared): State<Arc<Shared>>,
    Path(connection_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = refuse_unsigned(&headers) {
        return refusal;
    }
    let description = shared.connections().get(&connection_id).map(|entry| {
        let mut identity = json!({ "sourceIp": entry.source_ip });
        if let Some(user_agent) = &entry.user_agent {
            identity["userAgent"] = json!(user_agent);
        }
        json!({
            "connectedAt": timestamp(entry.connected_at),
            "lastActiveAt": timestamp(entry.last_active_at),
            "identity": identity,
        })
    });
    match description {
        Some(description) => with_request_id(
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], description.to_string()).into_response(),
        ),
        None => gone(&connection_id),
    }
}

/// `DELETE /{stage}/@connections/{id}`: closes the connection (close code 1000).
pub(super) async fn delete_connection(
    State(shared): State<Arc<Shared>>,
    Path(connection_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = refuse_unsigned(&headers) {
        return refusal;
    }
    let command = Command::Close { code: 1000, reason: "Connection deleted through the @connections API" };
    if shared.end_connection(&connection_id, command) {
        with_request_id(StatusCode::NO_CONTENT.into_response())
    } else {
        gone(&connection_id)
    }
}

/// The SDK signs with SigV4; an unsigned request is refused as AWS would. The signature
/// itself is not checked: tests use made-up credentials.
fn refuse_unsigned(headers: &HeaderMap) -> Option<Response> {
    let signed = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("AWS4-HMAC-SHA256"));
    (!signed).then(|| aws_error(StatusCode::FORBIDDEN, "ForbiddenException", "Missing Authentication Token"))
}

fn gone(connection_id: &str) -> Response {
    aws_error(StatusCode::GONE, "GoneException", &format!("Connection {connection_id} is not open"))
}

fn aws_error(status: StatusCode, error_type: &'static str, message: &str) -> Response {
    let body = json!({ "message": message }).to_string();
    with_request_id(
        (status, [("x-amzn-ErrorType", error_type), (header::CONTENT_TYPE.as_str(), "application/json")], body)
            .into_response(),
    )
}

fn with_request_id(mut response: Response) -> Response {
    if let Ok(value) = events::random_id().parse() {
        response.headers_mut().insert("x-amzn-RequestId", value);
    }
    response
}

/// RFC 3339 with milliseconds and `Z`, which the SDK's `date-time` parser accepts.
fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}
