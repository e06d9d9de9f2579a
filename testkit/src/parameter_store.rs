//! An AWS Systems Manager Parameter Store stand-in: `GetParameters` of the SSM JSON protocol,
//! for the cloud side's secret loading (`AWS_ENDPOINT_URL_SSM` points it here).
//!
//! It checks what a stand-in can without the secret key: the request is a SigV4-signed POST for
//! the `ssm` service with the JSON 1.1 content type and target, and asks for decryption. It
//! answers like SSM: found parameters in `Parameters`, unknown names in `InvalidParameters`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::oneshot;

struct Shared {
    parameters: BTreeMap<String, String>,
    requests: Mutex<u64>,
    failures: Mutex<Vec<u16>>,
}

/// A running stand-in; stops when dropped.
pub struct ParameterStoreStandIn {
    address: SocketAddr,
    shared: Arc<Shared>,
    _stop: oneshot::Sender<()>,
}

impl ParameterStoreStandIn {
    /// Serves `parameters` (name → decrypted value) on an ephemeral loopback port.
    pub async fn start<K: Into<String>, V: Into<String>>(
        parameters: impl IntoIterator<Item = (K, V)>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            parameters: parameters.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            requests: Mutex::new(0),
            failures: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let app = Router::new().route("/", post(get_parameters)).with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(async { drop(stopped.await) }).await;
        });
        Ok(Self { address, shared, _stop: stop })
    }

    /// The endpoint (`AWS_ENDPOINT_URL_SSM`).
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        *self.shared.requests.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers the next request with `status` (500 and 400 carry SSM-shaped error bodies).
    pub fn fail_next(&self, status: u16) {
        self.shared.failures.lock().unwrap_or_else(|p| p.into_inner()).push(status);
    }
}

fn refuse(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, axum::Json(json!({ "__type": format!("com.amazonaws.ssm#{kind}"), "message": message }))).into_response()
}

async fn get_parameters(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    *shared.requests.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    let failure = {
        let mut failures = shared.failures.lock().unwrap_or_else(|p| p.into_inner());
        (!failures.is_empty()).then(|| failures.remove(0))
    };
    if let Some(status) = failure {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let kind = if status.is_server_error() { "InternalServerError" } else { "AccessDeniedException" };
        return refuse(status, kind, "injected failure");
    }
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default();
    let authorization = header("authorization");
    let signed = authorization.starts_with("AWS4-HMAC-SHA256 Credential=")
        && authorization.contains("/ssm/aws4_request")
        && authorization.contains("Signature=")
        && !header("x-amz-date").is_empty();
    if !signed {
        return refuse(StatusCode::BAD_REQUEST, "MissingAuthenticationTokenException", "not SigV4-signed for ssm");
    }
    if header("x-amz-target") != "AmazonSSM.GetParameters" || header("content-type") != "application/x-amz-json-1.1" {
        return refuse(StatusCode::BAD_REQUEST, "UnknownOperationException", "only GetParameters is served");
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "SerializationException", "body is not JSON");
    };
    let names: Vec<&str> = request["Names"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if names.is_empty() || names.len() > 10 {
        return refuse(StatusCode::BAD_REQUEST, "ValidationException", "Names must hold 1 to 10 names");
    }
    let decrypt = request["WithDecryption"] == true;
    let (mut found, mut invalid) = (Vec::new(), Vec::new());
    for name in names {
        match shared.parameters.get(name) {
            Some(value) => found.push(json!({
                "Name": name,
                "Type": "SecureString",
                "Value": if decrypt { value.clone() } else { format!("encrypted:{}", value.len()) },
                "Version": 1,
            })),
            None => invalid.push(name),
        }
    }
    axum::Json(json!({ "Parameters": found, "InvalidParameters": invalid })).into_response()
}
