//! The Lambda front fed with real event shapes (`tests/fixtures/lambda/`): the schedule, the
//! `$connect` authorizer, WebSocket route events, and function-URL requests including Notion
//! webhook deliveries — against the Notion sandbox, the LLM stand-in, DynamoDB in dynalite, the
//! Parameter Store stand-in holding the secrets, and the API Gateway emulator's management API.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse, ApiGatewayProxyResponse,
    ApiGatewayWebsocketProxyRequest,
};
use cloud_fn::config::Source;
use cloud_fn::lambda::LambdaFront;
use cloud_fn::store::dynamo::DynamoStore;
use common::{KEY, TOKEN, World};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use testkit::{ApiGatewayEmulator, Dynalite, EmulatorOptions, ParameterStoreStandIn, WebSocketBackend};

const CLOUD_KEY: &str = "cloud-key-from-ssm";
const AGENT_TOKEN: &str = "agent-token";
const TABLE: &str = "notion-llm-lambda-test";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/lambda/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A backend that refuses everything: the emulator here only serves the management API.
struct NoBackend;

#[async_trait]
impl WebSocketBackend for NoBackend {
    async fn authorize(&self, _: ApiGatewayCustomAuthorizerRequestTypeRequest) -> ApiGatewayCustomAuthorizerResponse {
        ApiGatewayCustomAuthorizerResponse::default()
    }
    async fn handle(&self, _: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        let mut response = ApiGatewayProxyResponse::default();
        response.status_code = 500;
        response
    }
}

struct Deployment {
    world: World,
    ssm: ParameterStoreStandIn,
    front: LambdaFront,
    _dynalite: Dynalite,
    _emulator: ApiGatewayEmulator,
}

impl Deployment {
    /// Secrets in the parameter store, everything else in the function's environment, as
    /// `template.yaml` sets it up; `webhook_token` pins `NOTION_WEBHOOK_TOKEN`.
    async fn start(webhook_token: Option<&str>) -> Self {
        Self::start_with(webhook_token, Some(CLOUD_KEY)).await
    }

    /// As [`start`](Self::start), with `cloud_key` as the `cloud-api-key` parameter (`None`: the
    /// parameter was never created).
    async fn start_with(webhook_token: Option<&str>, cloud_key: Option<&str>) -> Self {
        let dynalite = Dynalite::start().expect("dynalite is installed by scripts/setup.sh");
        let sdk = testkit::aws::sdk_config(&dynalite.url());
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), TABLE);
        store.ensure_table().await.unwrap(); // template.yaml's job on AWS
        let world = World::with_store(Arc::new(store), tempfile::tempdir().unwrap()).await;
        let mut parameters = vec![
            ("/notion-llm/notion-api-key", TOKEN),
            ("/notion-llm/openrouter-api-key", KEY),
            ("/notion-llm/agent-token", AGENT_TOKEN),
        ];
        if let Some(key) = cloud_key {
            parameters.push(("/notion-llm/cloud-api-key", key));
        }
        if let Some(token) = webhook_token {
            parameters.push(("/notion-llm/notion-webhook-token", token));
        }
        let ssm = ParameterStoreStandIn::start(parameters).await.unwrap();
        let emulator = ApiGatewayEmulator::start(EmulatorOptions::default(), Arc::new(NoBackend)).await.unwrap();
        let settings = Source::from_values([
            ("NOTION_API_KEY_PARAMETER", "/notion-llm/notion-api-key".to_owned()),
            ("OPENROUTER_API_KEY_PARAMETER", "/notion-llm/openrouter-api-key".into()),
            ("CLOUD_API_KEY_PARAMETER", "/notion-llm/cloud-api-key".into()),
            ("AGENT_TOKEN_PARAMETER", "/notion-llm/agent-token".into()),
            ("NOTION_WEBHOOK_TOKEN_PARAMETER", "/notion-llm/notion-webhook-token".into()),
            ("AWS_ENDPOINT_URL_SSM", ssm.url()),
            ("NOTION_DATABASE_ID", world.database.clone()),
            ("NOTION_API_BASE_URL", world.sandbox.url()),
            ("OPENROUTER_BASE_URL", world.llm.url()),
            ("LLM_MODELS", "primary/model".into()),
            ("FALLBACK_TIMEOUT", "200ms".into()),
            ("DYNAMODB_TABLE", TABLE.into()),
            ("WEBSOCKET_ENDPOINT", emulator.management_url()),
        ]);
        let front = LambdaFront::new(sdk, settings);
        Self { world, ssm, front, _dynalite: dynalite, _emulator: emulator }
    }

    async fn invoke(&self, event: Value) -> Result<Value, cloud_fn::lambda::FrontError> {
        self.front.handle(LambdaEvent::new(event, Context::default())).await
    }

    /// A function-URL request; returns the status and the JSON body (a string if it is not JSON).
    async fn http(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> (u16, Value) {
        let mut event = fixture(if method == "GET" { "url-get.json" } else { "url-post-webhook.json" });
        event["rawPath"] = json!(path);
        event["requestContext"]["http"]["path"] = json!(path);
        event["requestContext"]["http"]["method"] = json!(method);
        for (name, value) in headers {
            event["headers"][*name] = json!(value);
        }
        if let Some(body) = body {
            event["body"] = json!(body);
        }
        let response = self.invoke(event).await.expect("function URL requests always get a response");
        let status = response["statusCode"].as_u64().unwrap() as u16;
        let body = response["body"]
            .as_str()
            .map(|text| serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())))
            .unwrap_or(Value::Null);
        (status, body)
    }

    async fn deliver(&self, body: &str, signature: Option<String>) -> (u16, Value) {
        let headers: Vec<(&str, &str)> =
            signature.as_deref().map(|s| vec![("x-notion-signature", s)]).unwrap_or_default();
        self.http("POST", "/webhooks/notion", &headers, Some(body)).await
    }
}

fn page_created(deployment: &Deployment, page: &str, event_id: &str) -> String {
    let mut event = fixture("notion-page-created.json");
    event["id"] = json!(event_id);
    event["entity"]["id"] = json!(page);
    event["data"]["parent"]["id"] = json!(deployment.world.database);
    event.to_string()
}

#[tokio::test]
async fn scheduled_events_answer_pending_questions_with_secrets_read_once() {
    let deployment = Deployment::start(None).await;
    let page = deployment.world.ask("How long should I sleep?", &["health"]);
    for name in ["scheduler-schedule.json", "eventbridge-rule-schedule.json"] {
        let result = deployment.invoke(fixture(name)).await.unwrap();
        assert_eq!(result["success"], true, "{result}");
    }
    // No agent is connected: answered from templates, marked offline, exactly once.
    assert_eq!(deployment.world.status(&page), "Answered (offline)");
    assert_eq!(deployment.world.answers(&page), 1);
    assert_eq!(deployment.ssm.requests(), 1, "secrets are read once per container, in one call");
}

#[tokio::test]
async fn a_failed_secret_read_is_retryable_and_not_cached() {
    let deployment = Deployment::start(None).await;
    deployment.ssm.fail_next(500);
    let error = deployment.invoke(fixture("scheduler-schedule.json")).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    let (status, _) = deployment.http("GET", "/health", &[], None).await;
    assert_eq!(status, 200, "the next invocation builds the services");

    let refused = Deployment::start(None).await;
    refused.ssm.fail_next(400);
    let result = refused.invoke(fixture("scheduler-schedule.json")).await.unwrap();
    assert_eq!((result["success"].clone(), result["retryable"].clone()), (json!(false), json!(false)), "{result}");
    assert!(!result.to_string().contains(TOKEN), "no secret in results");

    // The public URL says nothing about why (parameter names, ARNs, SSM's words).
    let unavailable = Deployment::start(None).await;
    unavailable.ssm.fail_next(400);
    let (status, body) = unavailable.http("GET", "/status", &[], None).await;
    assert_eq!(status, 503, "{body}");
    let text = body.to_string();
    assert!(!text.contains("/notion-llm") && !text.contains("SSM") && !text.contains("parameter"), "{text}");
}

#[tokio::test]
async fn without_the_api_key_parameter_the_function_url_fails_closed() {
    let deployment = Deployment::start_with(None, None).await;
    let (status, _) = deployment.http("GET", "/health", &[], None).await;
    assert_eq!(status, 200, "health stays open");
    for (method, path) in [
        ("GET", "/status"),
        ("GET", "/rag/status"),
        ("POST", "/process-once"),
        ("POST", "/templates/sync-from-notion"),
        ("GET", "/webhooks/notion/verification"),
        ("DELETE", "/webhooks/notion/verification"),
    ] {
        for authorization in [None, Some("Bearer anything")] {
            let headers: Vec<(&str, &str)> = authorization.map(|a| vec![("authorization", a)]).unwrap_or_default();
            let (status, body) = deployment.http(method, path, &headers, Some("")).await;
            assert_eq!(status, 503, "{method} {path}: {body}");
            assert_eq!(body["error"]["code"], "unavailable");
            assert!(!body.to_string().contains("cloud-api-key"), "the parameter is named in the log only: {body}");
        }
    }
    // The signed webhook does not need the API key: Notion signs it.
    let page = deployment.world.ask("Still answered?", &[]);
    assert_eq!(deployment.http("POST", "/webhooks/notion", &[], None).await.0, 200, "handshake");
    let event = page_created(&deployment, &page, "evt-closed");
    let (status, body) =
        deployment.deliver(&event, Some(testkit::notion_webhook::signature("secret_fixture", &event))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(deployment.world.status(&page), "Answered (offline)");
}

#[tokio::test]
async fn a_stored_webhook_token_is_replaced_only_with_the_api_key() {
    let deployment = Deployment::start(None).await;
    assert_eq!(deployment.http("POST", "/webhooks/notion", &[], None).await.0, 200, "the first handshake");
    // An unsigned handshake from anyone else must not become the signing key.
    let forged = r#"{"verification_token":"secret_attacker"}"#;
    let (status, body) = deployment.http("POST", "/webhooks/notion", &[], Some(forged)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("already_verified")), "{body}");
    let page = deployment.world.ask("Whose key?", &[]);
    let event = page_created(&deployment, &page, "evt-forged");
    let (status, _) =
        deployment.deliver(&event, Some(testkit::notion_webhook::signature("secret_attacker", &event))).await;
    assert_eq!(status, 401, "events signed with the forged token are refused");
    assert_eq!(deployment.world.status(&page), "Pending");

    // Replacing the token takes the API key.
    let (status, _) = deployment.http("DELETE", "/webhooks/notion/verification", &[], None).await;
    assert_eq!(status, 401);
    let bearer = format!("Bearer {CLOUD_KEY}");
    let (status, body) =
        deployment.http("DELETE", "/webhooks/notion/verification", &[("authorization", &bearer)], None).await;
    assert_eq!((status, body["forgotten"].as_bool()), (200, Some(true)), "{body}");
    let renewed = r#"{"verification_token":"secret_renewed"}"#;
    assert_eq!(deployment.http("POST", "/webhooks/notion", &[], Some(renewed)).await.0, 200);
    let (status, _) =
        deployment.deliver(&event, Some(testkit::notion_webhook::signature("secret_renewed", &event))).await;
    assert_eq!(status, 200);
    assert_eq!(deployment.world.status(&page), "Answered (offline)");
}

#[tokio::test]
async fn the_authorizer_admits_only_the_agent_token() {
    let deployment = Deployment::start(None).await;
    let mut event = fixture("ws-authorizer.json");
    let effect = |response: &Value| response["policyDocument"]["Statement"][0]["Effect"].clone();
    let allowed = deployment.invoke(event.clone()).await.unwrap();
    assert_eq!(effect(&allowed), "Allow", "{allowed}");
    event["headers"]["Authorization"] = json!("Bearer wrong");
    assert_eq!(effect(&deployment.invoke(event.clone()).await.unwrap()), "Deny");
    event["headers"].as_object_mut().unwrap().remove("Authorization");
    assert_eq!(effect(&deployment.invoke(event).await.unwrap()), "Deny");
}

#[tokio::test]
async fn websocket_route_events_track_connections() {
    let deployment = Deployment::start(None).await;
    let store = deployment.world.store.clone();
    let connect = deployment.invoke(fixture("ws-connect.json")).await.unwrap();
    assert_eq!(connect["statusCode"], 200, "{connect}");
    assert_eq!(store.connections().await.unwrap()[0].connection_id, "Fz8RnfP1IAMCJpQ=");
    let heartbeat = deployment.invoke(fixture("ws-heartbeat.json")).await.unwrap();
    assert_eq!(heartbeat["statusCode"], 200, "{heartbeat}");
    let disconnect = deployment.invoke(fixture("ws-disconnect.json")).await.unwrap();
    assert_eq!(disconnect["statusCode"], 200, "{disconnect}");
    assert!(store.connections().await.unwrap().is_empty());
    let unknown = deployment.invoke(json!({ "hello": "world" })).await.unwrap_err();
    assert!(!unknown.is_retryable(), "{unknown}");
}

#[tokio::test]
async fn the_function_url_serves_the_router_behind_the_api_key() {
    let deployment = Deployment::start(None).await;
    let (status, health) = deployment.http("GET", "/health", &[], None).await;
    assert_eq!((status, health["store"].as_str()), (200, Some("dynamodb")), "{health}");
    let (status, _) = deployment.http("GET", "/status", &[], None).await;
    assert_eq!(status, 401);
    let bearer = format!("Bearer {CLOUD_KEY}");
    let (status, report) = deployment.http("GET", "/status", &[("authorization", &bearer)], None).await;
    assert_eq!(status, 200, "{report}");
    assert!(report["recent_questions"].is_array() && report["runs"].is_array(), "what the status page shows: {report}");
    let (status, _) = deployment.http("POST", "/process-once", &[("authorization", "Bearer nope")], Some("")).await;
    assert_eq!(status, 401);
    // The status page and its files are open (they hold nothing; the page asks for the key).
    let (status, page) = deployment.http("GET", "/", &[], None).await;
    assert_eq!(status, 200);
    assert!(page.as_str().is_some_and(|page| page.contains("<title>notion-llm cloud</title>")), "{page}");
    for asset in ["/ui/app.js", "/ui/common.js", "/ui/page.css"] {
        assert_eq!(deployment.http("GET", asset, &[], None).await.0, 200, "{asset}");
    }
}

#[tokio::test]
async fn webhooks_verify_then_process_signed_events_once() {
    let deployment = Deployment::start(None).await;
    let page = deployment.world.ask("What is in my notes about sleep?", &[]);
    let event = page_created(&deployment, &page, "evt-1");

    // Before the handshake nothing can be checked: refused, nothing processed.
    let (status, _) =
        deployment.deliver(&event, Some(testkit::notion_webhook::signature("secret_fixture", &event))).await;
    assert_eq!(status, 401);

    // The handshake (the fixture's body) stores the token; the user reads it with the API key.
    let (status, _) = deployment.http("POST", "/webhooks/notion", &[], None).await;
    assert_eq!(status, 200);
    let bearer = format!("Bearer {CLOUD_KEY}");
    let (_, verification) =
        deployment.http("GET", "/webhooks/notion/verification", &[("authorization", &bearer)], None).await;
    assert_eq!(verification["verification_token"], "secret_fixture");

    // Bad or missing signatures: 401, the page stays pending.
    for signature in [None, Some(testkit::notion_webhook::signature("secret_other", &event)), Some("sha256=00".into())]
    {
        let (status, body) = deployment.deliver(&event, signature).await;
        assert_eq!(status, 401, "{body}");
    }
    assert_eq!(deployment.world.status(&page), "Pending");

    // The signed event answers the page at once; its redelivery is a duplicate.
    let (status, body) =
        deployment.deliver(&event, Some(testkit::notion_webhook::signature("secret_fixture", &event))).await;
    assert_eq!((status, body["report"]["answered_offline"].as_u64()), (200, Some(1)), "{body}");
    assert_eq!(deployment.world.status(&page), "Answered (offline)");
    let (status, body) =
        deployment.deliver(&event, Some(testkit::notion_webhook::signature("secret_fixture", &event))).await;
    assert_eq!((status, body["duplicate"].as_str()), (200, Some("evt-1")), "{body}");
    assert_eq!(deployment.world.answers(&page), 1);

    // A signed event about a page of another database changes nothing.
    let stranger = deployment.world.sandbox.add_page(
        &deployment.world.sandbox.create_questions_database().1,
        json!({ "Question": notion::page::write::title("Not ours"), "Status": notion::page::write::status("Pending") }),
        Value::Null,
    );
    let other = page_created(&deployment, &stranger, "evt-2");
    let (status, body) =
        deployment.deliver(&other, Some(testkit::notion_webhook::signature("secret_fixture", &other))).await;
    assert_eq!((status, body["report"]["found"].as_u64()), (200, Some(0)), "{body}");
    assert_eq!(deployment.world.status(&stranger), "Pending");
}

#[tokio::test]
async fn a_pinned_webhook_token_is_never_replaced_by_a_handshake() {
    let deployment = Deployment::start(Some("secret_pinned")).await;
    let (status, _) = deployment.http("POST", "/webhooks/notion", &[], None).await; // carries secret_fixture
    assert_eq!(status, 200);
    let page = deployment.world.ask("Pinned?", &[]);
    let event = page_created(&deployment, &page, "evt-3");
    let (status, _) =
        deployment.deliver(&event, Some(testkit::notion_webhook::signature("secret_fixture", &event))).await;
    assert_eq!(status, 401, "the handshake's token is not the key");
    let (status, _) =
        deployment.deliver(&event, Some(testkit::notion_webhook::signature("secret_pinned", &event))).await;
    assert_eq!(status, 200);
    assert_eq!(deployment.world.status(&page), "Answered (offline)");
}
