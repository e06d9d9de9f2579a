//! The Lambda events API Gateway sends, and what it makes of the authorizer's answer.
//!
//! Events are written as JSON in the shape API Gateway puts on the wire (see the samples that
//! `aws_lambda_events` ships under `src/fixtures/`) and then deserialized into the typed
//! structs: a handler that reads the typed struct sees what it would see on AWS, and a shape
//! the real crate can't read fails here rather than on AWS.

use std::collections::BTreeMap;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse, ApiGatewayWebsocketProxyRequest,
};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// The region and account the emulated API pretends to live in (they only show in ARNs).
const REGION: &str = "us-east-1";
const ACCOUNT_ID: &str = "123456789012";

/// What every event about one connection repeats.
#[derive(Debug, Clone)]
pub(super) struct ConnectionContext {
    pub connection_id: String,
    pub connected_at: DateTime<Utc>,
    pub source_ip: String,
    pub user_agent: Option<String>,
    /// `host:port` the client dialed, as API Gateway reports the API's domain.
    pub domain_name: String,
    pub stage: String,
    pub api_id: String,
    /// `principalId` and the authorizer's `context`, passed on to every later event as AWS does.
    pub authorizer: Map<String, Value>,
}

/// What the client sent with its upgrade request, for the authorizer and `$connect`.
#[derive(Debug, Clone, Default)]
pub(super) struct UpgradeRequest {
    /// Header name and value pairs in arrival order (names as hyper gives them: lower case).
    pub headers: Vec<(String, String)>,
    /// Decoded query parameters in order.
    pub query: Vec<(String, String)>,
}

impl UpgradeRequest {
    pub fn from_parts(headers: &HeaderMap, raw_query: Option<&str>) -> Self {
        let headers = headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
            .collect();
        let query = raw_query.map(parse_query).unwrap_or_default();
        Self { headers, query }
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

/// Decodes `a=1&b=x%20y` the way a browser form would (`+` is a space).
fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = match bytes[index] {
            b'%' => bytes
                .get(index + 1..index + 3)
                .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()),
            _ => None,
        };
        match (escaped, bytes[index]) {
            (Some(byte), _) => {
                decoded.push(byte);
                index += 3;
            }
            (None, b'+') => {
                decoded.push(b' ');
                index += 1;
            }
            (None, other) => {
                decoded.push(other);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// `headers` (last value wins, as API Gateway does) and `multiValueHeaders` of an event.
fn header_maps(pairs: &[(String, String)]) -> (Value, Value) {
    let mut single = BTreeMap::new();
    let mut multi: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, value) in pairs {
        single.insert(name.as_str(), value.as_str());
        multi.entry(name.as_str()).or_default().push(value.as_str());
    }
    (json!(single), json!(multi))
}

/// The `requestTime` format API Gateway uses: `09/Feb/2024:18:23:28 +0000`.
fn request_time(now: DateTime<Utc>) -> String {
    now.format("%d/%b/%Y:%H:%M:%S +0000").to_string()
}

/// A random id in the style of API Gateway's connection and request ids: 12 base64-ish
/// characters and `=` (`TWegAcC4EowCHnA=` on AWS).
pub(super) fn random_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let random = uuid::Uuid::new_v4();
    let mut id: String = random
        .as_bytes()
        .iter()
        .take(12)
        .map(|byte| char::from(ALPHABET[usize::from(*byte) % ALPHABET.len()]))
        .collect();
    id.push('=');
    id
}

/// The ARN the authorizer's policy must allow: `arn:aws:execute-api:REGION:ACCOUNT:API/STAGE/$connect`.
pub(super) fn connect_method_arn(context: &ConnectionContext) -> String {
    format!("arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{}/{}/$connect", context.api_id, context.stage)
}

/// The `requestContext` every WebSocket event carries.
fn request_context(
    context: &ConnectionContext,
    route_key: &str,
    event_type: &str,
    now: DateTime<Utc>,
) -> Map<String, Value> {
    let request_id = random_id();
    let mut identity = Map::new();
    identity.insert("sourceIp".into(), json!(context.source_ip));
    if let Some(user_agent) = &context.user_agent {
        identity.insert("userAgent".into(), json!(user_agent));
    }
    let request_context = json!({
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": request_time(now),
        "messageDirection": "IN",
        "stage": context.stage,
        "connectedAt": context.connected_at.timestamp_millis(),
        "requestTimeEpoch": now.timestamp_millis(),
        "identity": identity,
        "requestId": request_id,
        "domainName": context.domain_name,
        "connectionId": context.connection_id,
        "apiId": context.api_id,
    });
    let mut map = match request_context {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    if !context.authorizer.is_empty() {
        let mut authorizer = context.authorizer.clone();
        authorizer.insert("integrationLatency".into(), json!(0));
        map.insert("authorizer".into(), Value::Object(authorizer));
    }
    map
}

/// The REQUEST authorizer's input for a `$connect`.
pub(super) fn authorizer_request(
    context: &ConnectionContext,
    upgrade: &UpgradeRequest,
) -> Result<ApiGatewayCustomAuthorizerRequestTypeRequest, serde_json::Error> {
    let now = Utc::now();
    let (headers, multi_value_headers) = header_maps(&upgrade.headers);
    let (query, multi_value_query) = header_maps(&upgrade.query);
    let mut request_context = request_context(context, "$connect", "CONNECT", now);
    request_context.remove("authorizer");
    serde_json::from_value(json!({
        "type": "REQUEST",
        "methodArn": connect_method_arn(context),
        "headers": headers,
        "multiValueHeaders": multi_value_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_value_query,
        "stageVariables": {},
        "requestContext": request_context,
    }))
}

/// The `$connect` event: it alone carries the upgrade request's headers and query string.
pub(super) fn connect_event(
    context: &ConnectionContext,
    upgrade: &UpgradeRequest,
) -> Result<ApiGatewayWebsocketProxyRequest, serde_json::Error> {
    let now = Utc::now();
    let (headers, multi_value_headers) = header_maps(&upgrade.headers);
    let mut event = json!({
        "headers": headers,
        "multiValueHeaders": multi_value_headers,
        "requestContext": request_context(context, "$connect", "CONNECT", now),
        "isBase64Encoded": false,
    });
    if !upgrade.query.is_empty() {
        let (query, multi_value_query) = header_maps(&upgrade.query);
        event["queryStringParameters"] = query;
        event["multiValueQueryStringParameters"] = multi_value_query;
    }
    serde_json::from_value(event)
}

/// A `MESSAGE` event for `route_key`; binary frames arrive base64-encoded, as on AWS.
pub(super) fn message_event(
    context: &ConnectionContext,
    route_key: &str,
    body: String,
    is_base64_encoded: bool,
) -> Result<ApiGatewayWebsocketProxyRequest, serde_json::Error> {
    let now = Utc::now();
    let mut request_context = request_context(context, route_key, "MESSAGE", now);
    request_context.insert("messageId".into(), json!(random_id()));
    serde_json::from_value(json!({
        "requestContext": request_context,
        "body": body,
        "isBase64Encoded": is_base64_encoded,
    }))
}

/// The `$disconnect` event, with the close code and reason API Gateway reports.
pub(super) fn disconnect_event(
    context: &ConnectionContext,
    status_code: u16,
    reason: &str,
) -> Result<ApiGatewayWebsocketProxyRequest, serde_json::Error> {
    let now = Utc::now();
    let mut request_context = request_context(context, "$disconnect", "DISCONNECT", now);
    request_context.insert("disconnectStatusCode".into(), json!(status_code));
    request_context.insert("disconnectReason".into(), json!(reason));
    let headers = vec![
        ("Host".to_owned(), context.domain_name.clone()),
        ("X-Forwarded-For".to_owned(), context.source_ip.clone()),
    ];
    let (headers, multi_value_headers) = header_maps(&headers);
    serde_json::from_value(json!({
        "headers": headers,
        "multiValueHeaders": multi_value_headers,
        "requestContext": request_context,
        "isBase64Encoded": false,
    }))
}

/// The route `routeSelectionExpression = $request.body.action` picks: the custom route whose
/// key equals the message's `action`, else `$default` (also for non-JSON messages).
pub(super) fn select_route(message: &str, custom_routes: &[String]) -> String {
    let action = serde_json::from_str::<Value>(message).ok().and_then(|parsed| match parsed.get("action") {
        Some(Value::String(action)) => Some(action.clone()),
        _ => None,
    });
    match action {
        Some(action) if !action.starts_with('$') && custom_routes.contains(&action) => action,
        _ => "$default".to_owned(),
    }
}

/// Whether the authorizer's policy lets the client invoke `method_arn`: some `Allow`
/// statement covers it and no `Deny` statement does (an explicit deny wins, as in IAM).
/// Conditions are not evaluated.
pub(super) fn policy_allows(response: &ApiGatewayCustomAuthorizerResponse, method_arn: &str) -> bool {
    let covers = |statement: &IamPolicyStatement| {
        statement.action.iter().any(|action| wildcard_matches(&action.to_ascii_lowercase(), "execute-api:invoke"))
            && statement.resource.iter().any(|resource| wildcard_matches(resource, method_arn))
    };
    let statements = &response.policy_document.statement;
    let denied =
        statements.iter().any(|statement| matches!(statement.effect, IamPolicyEffect::Deny) && covers(statement));
    let allowed =
        statements.iter().any(|statement| matches!(statement.effect, IamPolicyEffect::Allow) && covers(statement));
    allowed && !denied
}

/// What the authorizer hands on to later events' `requestContext.authorizer`.
pub(super) fn authorizer_fields(response: &ApiGatewayCustomAuthorizerResponse) -> Map<String, Value> {
    let mut fields = match &response.context {
        Value::Object(context) => context.clone(),
        _ => Map::new(),
    };
    if let Some(principal_id) = &response.principal_id {
        fields.insert("principalId".into(), json!(principal_id));
    }
    fields
}

/// IAM-style matching: `*` is any run of characters, `?` any one character.
fn wildcard_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            backtrack = Some((p, t));
            p += 1;
        } else if let Some((star, matched)) = backtrack {
            p = star + 1;
            t = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> ConnectionContext {
        ConnectionContext {
            connection_id: "AbCdEfGhIjKl=".into(),
            connected_at: Utc::now(),
            source_ip: "127.0.0.1".into(),
            user_agent: Some("tests".into()),
            domain_name: "127.0.0.1:1234".into(),
            stage: "test".into(),
            api_id: "emulated1".into(),
            authorizer: Map::new(),
        }
    }

    fn policy(statements: Value) -> ApiGatewayCustomAuthorizerResponse {
        serde_json::from_value(json!({
            "principalId": "user",
            "policyDocument": { "Version": "2012-10-17", "Statement": statements },
        }))
        .unwrap()
    }

    #[test]
    fn routes_on_the_action_field() {
        let routes = vec!["hello".to_owned(), "reply".to_owned()];
        assert_eq!(select_route(r#"{"action":"hello","x":1}"#, &routes), "hello");
        assert_eq!(select_route(r#"{"action":"nope"}"#, &routes), "$default");
        assert_eq!(select_route(r#"{"action":5}"#, &routes), "$default");
        assert_eq!(select_route(r#"["hello"]"#, &routes), "$default");
        assert_eq!(select_route("not json", &routes), "$default");
        assert_eq!(select_route(r#"{"action":"$connect"}"#, &["$connect".to_owned()]), "$default");
    }

    #[test]
    fn policies_allow_only_what_they_cover() {
        let arn = "arn:aws:execute-api:us-east-1:123456789012:emulated1/test/$connect";
        let allow =
            |resource: &str| json!([{ "Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resource }]);
        assert!(policy_allows(&policy(allow(arn)), arn));
        assert!(policy_allows(&policy(allow("arn:aws:execute-api:*:*:emulated1/*")), arn));
        assert!(policy_allows(&policy(allow("*")), arn));
        assert!(!policy_allows(&policy(allow("arn:aws:execute-api:us-east-1:123456789012:other/test/$connect")), arn));
        let deny = json!([{ "Action": "execute-api:Invoke", "Effect": "Deny", "Resource": arn }]);
        assert!(!policy_allows(&policy(deny), arn));
        let both = json!([
            { "Action": ["execute-api:*"], "Effect": "Allow", "Resource": ["*"] },
            { "Action": "execute-api:Invoke", "Effect": "Deny", "Resource": arn },
        ]);
        assert!(!policy_allows(&policy(both), arn));
        let other_action = json!([{ "Action": "s3:GetObject", "Effect": "Allow", "Resource": "*" }]);
        assert!(!policy_allows(&policy(other_action), arn));
        assert!(!policy_allows(&policy(json!([])), arn));
    }

    #[test]
    fn events_have_the_real_shape() {
        let mut context = context();
        context.authorizer.insert("principalId".into(), json!("user-1"));
        let upgrade = UpgradeRequest {
            headers: vec![
                ("authorization".into(), "Bearer t".into()),
                ("x-multi".into(), "a".into()),
                ("x-multi".into(), "b".into()),
            ],
            query: vec![("agent".into(), "a 1".into())],
        };
        let connect = connect_event(&context, &upgrade).unwrap();
        assert_eq!(connect.request_context.event_type.as_deref(), Some("CONNECT"));
        assert_eq!(connect.request_context.connection_id.as_deref(), Some("AbCdEfGhIjKl="));
        assert_eq!(connect.request_context.connected_at, context.connected_at.timestamp_millis());
        assert_eq!(connect.headers["authorization"], "Bearer t");
        assert_eq!(connect.multi_value_headers.get_all("x-multi").iter().count(), 2);
        assert_eq!(connect.query_string_parameters.first("agent"), Some("a 1"));
        assert_eq!(connect.request_context.authorizer.fields["principalId"], "user-1");

        let message = message_event(&context, "hello", "{}".into(), false).unwrap();
        assert_eq!(message.request_context.route_key.as_deref(), Some("hello"));
        assert!(message.request_context.message_id.is_some());
        assert_eq!(message.body.as_deref(), Some("{}"));

        let disconnect = disconnect_event(&context, 1001, "Going away").unwrap();
        assert_eq!(disconnect.request_context.disconnect_status_code, Some(1001));
        assert_eq!(disconnect.request_context.disconnect_reason.as_deref(), Some("Going away"));

        let authorize = authorizer_request(&context, &upgrade).unwrap();
        assert_eq!(authorize.type_.as_deref(), Some("REQUEST"));
        assert_eq!(
            authorize.method_arn.as_deref(),
            Some("arn:aws:execute-api:us-east-1:123456789012:emulated1/test/$connect")
        );
        assert_eq!(authorize.headers["authorization"], "Bearer t");
    }

    #[test]
    fn query_strings_decode() {
        assert_eq!(
            parse_query("a=1&b=x%20y+z&c&d=%zz"),
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "x y z".to_owned()),
                ("c".to_owned(), String::new()),
                ("d".to_owned(), "%zz".to_owned())
            ]
        );
    }

    #[test]
    fn ids_look_like_api_gateway_ids() {
        let id = random_id();
        assert_eq!(id.len(), 13);
        assert!(id.ends_with('='));
        assert_ne!(random_id(), random_id());
    }
}
