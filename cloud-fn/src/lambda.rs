//! The AWS Lambda front: one function for every event the deployment sends it, told apart by
//! shape — the schedule (`process_once`), the `$connect` REQUEST authorizer and the WebSocket
//! route events ([`Tunnel`]), and function-URL requests (the same axum router as the
//! self-hosted server, through `lambda_http`).
//!
//! One function rather than four: the handlers share their clients and warm containers, there
//! is one artifact to build and one log group to read, and the events differ only in shape.
//!
//! A container does its cheap work in INIT ([`LambdaFront::new`]: AWS configuration, HTTP
//! client), and its first invocation reads the secrets and builds the Notion, OpenRouter,
//! DynamoDB and API Gateway clients ([`Services`]), which every later invocation reuses. Secrets
//! cannot be read earlier (see [`crate::secrets`]); a failed build is not cached, so a secret
//! added after a failure is picked up without a redeploy.

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayV2httpResponse, ApiGatewayWebsocketProxyRequest,
};
use axum::Router;
use axum::http::StatusCode;
use lambda_http::request::LambdaRequest;
use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tower::ServiceExt;

use crate::app;
use crate::clock::{Clock, SystemClock};
use crate::config::{CloudConfig, Source};
use crate::pipeline::{Pipeline, PipelineError};
use crate::secrets::{self, MissingParameter, ParameterStore, SecretsError};
use crate::server::{self, ApiAccess, ServerSettings, ServerState};
use crate::store::Store;
use crate::store::dynamo::DynamoStore;
use crate::telemetry::emf::Emf;
use crate::tunnel::api_gateway::Tunnel;

/// The kinds of event the function receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// EventBridge (Scheduler or a rule): answer the pending questions.
    Schedule,
    /// The `$connect` REQUEST authorizer.
    Authorizer,
    /// A WebSocket route event (`$connect`, `$disconnect`, a message).
    WebSocket,
    /// A function-URL (HTTP API payload 2.0) request.
    Http,
}

impl EventKind {
    /// Tells the event apart by the fields only its kind carries.
    pub fn of(event: &Value) -> Option<Self> {
        let context = &event["requestContext"];
        if event.get("detail-type").is_some() {
            Some(Self::Schedule)
        } else if event["type"] == "REQUEST" && event.get("methodArn").is_some() {
            Some(Self::Authorizer)
        } else if context.get("eventType").is_some() && context.get("connectionId").is_some() {
            Some(Self::WebSocket)
        } else if context.get("http").is_some() {
            Some(Self::Http)
        } else {
            None
        }
    }
}

/// What failed, kept whole so its chain of causes reaches the log.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why an invocation failed, and whether Lambda should count it as a failure to retry. The
/// cause is kept as it is (`Display` and `source` are its own).
#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    /// Worth retrying: a dependency was unavailable (Notion 5xx or rate limit, DynamoDB, SSM).
    #[error(transparent)]
    Retryable(Cause),
    /// Retrying the same event cannot help: bad configuration, an unknown event, refused access.
    #[error(transparent)]
    Permanent(Cause),
}

impl FrontError {
    /// A failure that retrying the same event cannot mend.
    pub fn permanent(cause: impl Into<Cause>) -> Self {
        Self::Permanent(cause.into())
    }

    /// Whether trying the same event again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }
}

impl From<SecretsError> for FrontError {
    fn from(error: SecretsError) -> Self {
        if error.is_retryable() { Self::Retryable(error.into()) } else { Self::Permanent(error.into()) }
    }
}

/// What Lambda records of a failed invocation: the class in `errorType`, so metrics and
/// alarms can tell a dependency outage from a broken deployment.
impl From<FrontError> for lambda_runtime::Diagnostic {
    fn from(error: FrontError) -> Self {
        let error_type = if error.is_retryable() { "Retryable" } else { "Permanent" };
        Self { error_type: error_type.into(), error_message: error.to_string() }
    }
}

/// The clients and handlers of a warm container.
pub struct Services {
    pipeline: Arc<Pipeline>,
    tunnel: Arc<Tunnel>,
    router: Router,
    metrics: Arc<Emf>,
}

impl Services {
    /// Builds everything from `config`, with the AWS clients of `sdk`; `missing` are the secret
    /// parameters that did not exist (a missing API key closes the protected routes, and the
    /// log says which parameter to create).
    pub async fn build(
        config: &CloudConfig,
        sdk: &SdkConfig,
        missing: &[MissingParameter],
    ) -> Result<Self, FrontError> {
        let table = config
            .dynamodb_table
            .clone()
            .ok_or_else(|| FrontError::Permanent("DYNAMODB_TABLE is not set (template.yaml sets it)".into()))?;
        let endpoint = config.websocket_endpoint.clone().ok_or_else(|| {
            FrontError::Permanent("WEBSOCKET_ENDPOINT (the API Gateway management endpoint) is not set".into())
        })?;
        let store: Arc<dyn Store> = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), table));
        let management = aws_sdk_apigatewaymanagement::Client::from_conf(
            aws_sdk_apigatewaymanagement::config::Builder::from(sdk).endpoint_url(endpoint).build(),
        );
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let tunnel = Tunnel::new(
            store.clone(),
            clock.clone(),
            management,
            config.agent_tokens.clone(),
            config.agent_heartbeat,
            config.ladder.cache_ttl,
        );
        let pipeline = app::pipeline_with(config, store, tunnel.clone(), clock).map_err(FrontError::permanent)?;
        // Every run's figures as CloudWatch metrics, which template.yaml's alarms read.
        let metrics = Arc::new(Emf::new(config.lambda_function_name.clone().unwrap_or_else(|| "cloud-fn".into())));
        pipeline.observe_runs(metrics.clone());
        let reason = match missing.iter().find(|missing| missing.setting == "CLOUD_API_KEY") {
            Some(missing) => {
                format!("CLOUD_API_KEY is not set: the SSM parameter {} does not exist", missing.parameter)
            }
            None => "CLOUD_API_KEY is not set, and CLOUD_API_KEY_PARAMETER names no SSM parameter".to_owned(),
        };
        let settings = ServerSettings {
            access: ApiAccess::from_key(config.cloud_api_key.clone(), reason),
            ..ServerSettings::from_config(config)
        };
        let router = server::router(ServerState::new(pipeline.clone(), settings));
        Ok(Self { pipeline, tunnel, router, metrics })
    }
}

/// The function: per-container state and the dispatch of events.
pub struct LambdaFront {
    sdk: SdkConfig,
    settings: Source,
    parameters: Option<ParameterStore>,
    services: OnceCell<Services>,
}

impl LambdaFront {
    /// INIT-phase work: nothing that needs a secret or the network. `settings` are the
    /// function's environment (`Source::new(None)` on Lambda).
    pub fn new(sdk: SdkConfig, settings: Source) -> Self {
        // Every DynamoDB and API Gateway call has a deadline, within the function's own timeout.
        let sdk = sdk.to_builder().timeout_config(app::aws_timeouts()).build();
        let endpoint = settings.value("AWS_ENDPOINT_URL_SSM");
        let parameters = ParameterStore::new(sdk.clone(), reqwest::Client::new(), endpoint)
            .inspect_err(|error| tracing::warn!(%error, "secrets can only come from the environment"))
            .ok();
        Self { sdk, settings, parameters, services: OnceCell::new() }
    }

    /// The services, built on first use.
    pub async fn services(&self) -> Result<&Services, FrontError> {
        self.services
            .get_or_try_init(|| async {
                let mut source = self.settings.clone();
                let missing = match &self.parameters {
                    Some(parameters) => secrets::resolve(&mut source, parameters).await?,
                    None => Vec::new(),
                };
                let config = CloudConfig::load(&source).map_err(FrontError::permanent)?;
                for notice in &config.notices {
                    tracing::warn!("{notice}");
                }
                Services::build(&config, &self.sdk, &missing).await
            })
            .await
    }

    /// Handles one event. `Err` is reported to Lambda as a failed invocation (retried for
    /// asynchronous sources such as the schedule); permanent failures of the schedule are
    /// logged and returned as a result instead, since a retry would fail the same way.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, FrontError> {
        let LambdaEvent { payload, context } = event;
        let kind = EventKind::of(&payload)
            .ok_or_else(|| FrontError::permanent("an event of unknown shape; see cloud_fn::lambda::EventKind"))?;
        match kind {
            EventKind::Http => Ok(self.http(payload, context).await),
            EventKind::Schedule => match self.schedule().await {
                Err(error) if !error.is_retryable() => {
                    tracing::error!(%error, "the scheduled run failed; retrying cannot help");
                    Ok(json!({ "success": false, "retryable": false, "error": error.to_string() }))
                }
                result => result,
            },
            EventKind::Authorizer => {
                let request: ApiGatewayCustomAuthorizerRequestTypeRequest =
                    serde_json::from_value(payload).map_err(FrontError::permanent)?;
                let services = self.services().await?;
                to_value(services.tunnel.authorize(&request))
            }
            EventKind::WebSocket => {
                let request: ApiGatewayWebsocketProxyRequest =
                    serde_json::from_value(payload).map_err(FrontError::permanent)?;
                let services = self.services().await?;
                let response = services.tunnel.handle(&request).await;
                // An agent's hello or heartbeat, accepted: the metric the offline alarm reads.
                let route = request.request_context.route_key.as_deref();
                if matches!(route, Some("hello" | "heartbeat")) && response.status_code == 200 {
                    services.metrics.heartbeat();
                }
                to_value(response)
            }
        }
    }

    async fn schedule(&self) -> Result<Value, FrontError> {
        let services = self.services().await?;
        match services.pipeline.process_once().await {
            Ok(report) => to_value(json!({ "success": true, "report": report })),
            Err(PipelineError::Notion(error)) if !error.is_retryable() => {
                Err(FrontError::permanent(PipelineError::Notion(error)))
            }
            Err(error) => Err(FrontError::Retryable(error.into())),
        }
    }

    /// A function-URL request through the router; when the services cannot be built, a 503
    /// JSON error in the same shape as the router's own. The URL is public, so the response
    /// says nothing of why (SSM parameter names, ARNs); the log does.
    async fn http(&self, payload: Value, context: lambda_runtime::Context) -> Value {
        let router = match self.services().await {
            Ok(services) => services.router.clone(),
            Err(error) => {
                tracing::error!(%error, "cannot serve the function URL");
                let body = json!({ "success": false, "error": {
                    "code": "unavailable",
                    "message": "the service is not available; the function's log says why",
                } });
                Router::new().fallback(move || async move { (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)) })
            }
        };
        let request: LambdaRequest = match serde_json::from_value(payload) {
            Ok(request) => request,
            Err(error) => return json!({ "statusCode": 400, "body": format!("malformed function URL event: {error}") }),
        };
        // lambda_http turns the event into an http::Request (path, query, headers, base64 body);
        // the response is converted here rather than by its Adapter, whose future is not `Send`.
        let request: lambda_http::Request = request.into();
        let request = lambda_http::RequestExt::with_lambda_context(request, context);
        let response = match router.oneshot(request).await {
            Ok(response) => response,
            Err(infallible) => match infallible {},
        };
        match function_url_response(response).await {
            Ok(response) => serde_json::to_value(response).unwrap_or_else(|error| internal_error(&error)),
            Err(error) => internal_error(&error),
        }
    }
}

/// The function URL's response shape (HTTP API payload 2.0): text bodies as they are, anything
/// else base64, `set-cookie` in `cookies`.
async fn function_url_response(response: axum::response::Response) -> Result<ApiGatewayV2httpResponse, axum::Error> {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_RESPONSE_BYTES).await?;
    let mut converted = ApiGatewayV2httpResponse::default();
    converted.status_code = i64::from(parts.status.as_u16());
    converted.cookies = parts
        .headers
        .get_all(axum::http::header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok().map(str::to_owned))
        .collect();
    parts.headers.remove(axum::http::header::SET_COOKIE);
    if !bytes.is_empty() {
        converted.body = Some(match String::from_utf8(bytes.to_vec()) {
            Ok(text) => aws_lambda_events::encodings::Body::Text(text),
            Err(binary) => {
                converted.is_base64_encoded = true;
                aws_lambda_events::encodings::Body::Binary(binary.into_bytes())
            }
        });
    }
    converted.headers = parts.headers;
    Ok(converted)
}

/// A function URL's (buffered) response may carry at most 6 MB.
const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

fn to_value(value: impl serde::Serialize) -> Result<Value, FrontError> {
    serde_json::to_value(value).map_err(FrontError::permanent)
}

fn internal_error(error: &dyn std::fmt::Display) -> Value {
    tracing::error!(%error, "the function URL response could not be produced");
    json!({ "statusCode": 500, "body": "internal error" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_told_apart_by_shape() {
        let cases = [
            (
                json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}),
                Some(EventKind::Schedule),
            ),
            (
                json!({"type": "REQUEST", "methodArn": "arn:aws:execute-api:us-east-1:1:a/agents/$connect"}),
                Some(EventKind::Authorizer),
            ),
            (
                json!({"requestContext": {"eventType": "MESSAGE", "connectionId": "c=", "routeKey": "heartbeat"}}),
                Some(EventKind::WebSocket),
            ),
            (json!({"version": "2.0", "requestContext": {"http": {"method": "GET"}}}), Some(EventKind::Http)),
            (json!({"hello": "world"}), None),
        ];
        for (event, kind) in cases {
            assert_eq!(EventKind::of(&event), kind, "{event}");
        }
    }
}
