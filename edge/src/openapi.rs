//! Where a server describes itself: `GET /openapi.json`, the OpenAPI 3.1 document that utoipa
//! generates from the handlers and the wire types (so it cannot drift from the code), and
//! `GET /docs`, the same document as a page a person reads.
//!
//! The page is rendered here, on the server, from the document: no script, no stylesheet or
//! font from a CDN (the agent's API is often used offline, and its Content-Security-Policy
//! allows nothing from outside). Both routes are open, like `/health`: the document holds no
//! secrets, and says which endpoints need a key.
//!
//! [`with_error_responses`] adds to every operation the failures every endpoint of these
//! servers can answer with, each in the one error shape `{success: false, error: {code,
//! message}}`, so that no handler has to repeat them and a client (or schemathesis) can rely on
//! the list.

use std::fmt::Write as _;

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::{OpenApi, RefOr, ResponseBuilder};

/// A failure that endpoints answer with: its status and what it means.
#[derive(Debug, Clone, Copy)]
pub struct Failure {
    /// The HTTP status.
    pub status: u16,
    /// When it happens.
    pub description: &'static str,
    /// Which operations can answer with it.
    pub applies: Applies,
}

/// Which operations a [`Failure`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    /// Every operation.
    All,
    /// Operations that take a request body.
    WithBody,
    /// Every POST (a body of the wrong type may come with any of them).
    Post,
    /// Operations that declare a security requirement (need a key).
    Secured,
}

/// Adds `failures` to every operation of `document` that does not describe that status
/// itself, with `error_schema` (a reference to the error body's schema) as the body.
pub fn with_error_responses(mut document: OpenApi, failures: &[Failure], error_schema: &str) -> OpenApi {
    let secured_by_default = document.security.as_ref().is_some_and(|security| !security.is_empty());
    for item in document.paths.paths.values_mut() {
        for (method, operation) in operations_mut(item) {
            let has_body = operation.request_body.is_some();
            // An operation's own `security` wins over the document's; an empty one means open.
            let secured = match &operation.security {
                Some(security) => security.iter().any(|requirement| !is_empty_requirement(requirement)),
                None => secured_by_default,
            };
            for failure in failures {
                let applies = match failure.applies {
                    Applies::All => true,
                    Applies::WithBody => has_body,
                    Applies::Post => method == "POST",
                    Applies::Secured => secured,
                };
                let status = failure.status.to_string();
                if applies && !operation.responses.responses.contains_key(&status) {
                    let response = ResponseBuilder::new()
                        .description(failure.description)
                        .content(
                            "application/json",
                            utoipa::openapi::ContentBuilder::new()
                                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(error_schema))))
                                .build(),
                        )
                        .build();
                    operation.responses.responses.insert(status, RefOr::T(response));
                }
            }
        }
    }
    document
}

fn is_empty_requirement(requirement: &utoipa::openapi::security::SecurityRequirement) -> bool {
    // SecurityRequirement keeps its map private; its JSON form is `{}` when it asks for nothing.
    serde_json::to_value(requirement).is_ok_and(|value| value.as_object().is_some_and(|map| map.is_empty()))
}

fn operations(item: &PathItem) -> Vec<(&'static str, &Operation)> {
    [
        ("GET", &item.get),
        ("PUT", &item.put),
        ("POST", &item.post),
        ("DELETE", &item.delete),
        ("PATCH", &item.patch),
        ("HEAD", &item.head),
        ("OPTIONS", &item.options),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_ref().map(|operation| (method, operation)))
    .collect()
}

fn operations_mut(item: &mut PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("GET", &mut item.get),
        ("PUT", &mut item.put),
        ("POST", &mut item.post),
        ("DELETE", &mut item.delete),
        ("PATCH", &mut item.patch),
        ("HEAD", &mut item.head),
        ("OPTIONS", &mut item.options),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|operation| (method, operation)))
    .collect()
}

/// `GET /openapi.json` and `GET /docs` for `document`, rendered once.
pub fn routes<S: Clone + Send + Sync + 'static>(document: &OpenApi) -> Router<S> {
    let json = document.to_pretty_json().unwrap_or_else(|error| {
        tracing::error!(%error, "cannot serialise the OpenAPI document");
        String::from("{}")
    });
    let page = render_page(document);
    Router::new()
        .route(
            "/openapi.json",
            get(move || {
                let json = json.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], json).into_response() }
            }),
        )
        .route(
            "/docs",
            get(move || {
                let page = page.clone();
                async move { docs_response(page) }
            }),
        )
}

fn docs_response(page: String) -> Response {
    let mut response = Html(page).into_response();
    // The page needs nothing but its own inline style.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    response
}

/// The document as one HTML page: every operation with its summary, description, request body
/// and responses, then every schema.
pub fn render_page(document: &OpenApi) -> String {
    let title = escape(&document.info.title);
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} — API</title><style>{STYLE}</style></head><body><main>\
         <h1>{title} <small>{}</small></h1>",
        escape(&document.info.version)
    );
    if let Some(description) = &document.info.description {
        let _ = write!(page, "<p>{}</p>", escape(description));
    }
    page.push_str("<p>The same description as JSON: <a href=\"openapi.json\">openapi.json</a> (OpenAPI 3.1).</p>");
    for (path, item) in &document.paths.paths {
        for (method, operation) in operations(item) {
            render_operation(&mut page, method, path, operation);
        }
    }
    if let Some(components) = &document.components {
        page.push_str("<h2>Schemas</h2>");
        for (name, schema) in &components.schemas {
            let json = serde_json::to_string_pretty(schema).unwrap_or_default();
            let _ = write!(
                page,
                "<section id=\"schema-{0}\"><h3>{0}</h3><pre>{1}</pre></section>",
                escape(name),
                escape(&json)
            );
        }
    }
    page.push_str("</main></body></html>");
    page
}

fn render_operation(page: &mut String, method: &str, path: &str, operation: &Operation) {
    let open = operation.security.as_ref().is_some_and(|security| security.iter().all(is_empty_requirement));
    let _ = write!(
        page,
        "<section class=\"op\"><h2><span class=\"method {}\">{method}</span> <code>{}</code>{}</h2>",
        method.to_lowercase(),
        escape(path),
        if open { " <span class=\"open\">no key needed</span>" } else { "" }
    );
    if let Some(summary) = &operation.summary {
        let _ = write!(page, "<p><strong>{}</strong></p>", escape(summary));
    }
    if let Some(description) = &operation.description {
        let _ = write!(page, "<p>{}</p>", escape(description));
    }
    if let Some(body) = &operation.request_body {
        page.push_str("<h4>Request body</h4><ul>");
        for (media, content) in &body.content {
            let _ = write!(page, "<li><code>{}</code>: {}</li>", escape(media), schema_link(content.schema.as_ref()));
        }
        page.push_str("</ul>");
    }
    page.push_str("<h4>Responses</h4><table>");
    for (status, response) in &operation.responses.responses {
        let (description, bodies) = match response {
            RefOr::T(response) => (
                response.description.clone(),
                response
                    .content
                    .iter()
                    .map(|(media, content)| {
                        format!("<code>{}</code> {}", escape(media), schema_link(content.schema.as_ref()))
                    })
                    .collect::<Vec<_>>()
                    .join("<br>"),
            ),
            RefOr::Ref(reference) => (reference.ref_location.clone(), String::new()),
        };
        let _ = write!(page, "<tr><th>{}</th><td>{}</td><td>{bodies}</td></tr>", escape(status), escape(&description));
    }
    page.push_str("</table></section>");
}

fn schema_link(schema: Option<&RefOr<utoipa::openapi::schema::Schema>>) -> String {
    match schema {
        Some(RefOr::Ref(reference)) => {
            let name = reference.ref_location.rsplit('/').next().unwrap_or_default();
            format!("<a href=\"#schema-{0}\">{0}</a>", escape(name))
        }
        Some(RefOr::T(schema)) => {
            format!("<code>{}</code>", escape(&serde_json::to_string(schema).unwrap_or_default()))
        }
        None => String::new(),
    }
}

/// `text` safe inside HTML elements and double-quoted attributes.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0;background:#fafafa;color:#222}\
main{max-width:60rem;margin:auto;padding:1rem 2rem}h1 small{color:#888;font-size:60%}\
.op{background:#fff;border:1px solid #ddd;border-radius:6px;padding:0 1rem 1rem;margin:1rem 0}\
.method{display:inline-block;min-width:4.5rem;text-align:center;border-radius:4px;color:#fff;font-size:80%;padding:2px 6px}\
.get{background:#2b7bb9}.post{background:#2e9e5b}.delete{background:#c0392b}.put,.patch{background:#b9770e}\
.open{font-size:60%;color:#2e9e5b;font-weight:normal}table{border-collapse:collapse}\
th,td{border-top:1px solid #eee;padding:4px 8px;text-align:left;vertical-align:top}\
pre{background:#f3f3f3;padding:.5rem;overflow:auto;font-size:85%}";

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
    use utoipa::openapi::{InfoBuilder, OpenApiBuilder, PathsBuilder};

    fn document() -> OpenApi {
        let open = OperationBuilder::new()
            .summary(Some("Is it up? <b>"))
            .security(utoipa::openapi::security::SecurityRequirement::default())
            .response("200", ResponseBuilder::new().description("up").build())
            .build();
        let secured = OperationBuilder::new()
            .request_body(Some(utoipa::openapi::request_body::RequestBodyBuilder::new().build()))
            .response("200", ResponseBuilder::new().description("found").build())
            .build();
        OpenApiBuilder::new()
            .info(InfoBuilder::new().title("test").version("1").build())
            .paths(
                PathsBuilder::new()
                    .path("/health", PathItem::new(HttpMethod::Get, open))
                    .path("/search", PathItem::new(HttpMethod::Post, secured)),
            )
            .security(Some(vec![utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new())]))
            .build()
    }

    const FAILURES: &[Failure] = &[
        Failure { status: 500, description: "internal", applies: Applies::All },
        Failure { status: 400, description: "bad body", applies: Applies::WithBody },
        Failure { status: 401, description: "no key", applies: Applies::Secured },
    ];

    #[test]
    fn failures_go_where_they_can_happen() {
        let document = with_error_responses(document(), FAILURES, "ErrorResponse");
        let statuses = |path: &str, method: &str| {
            let item = &document.paths.paths[path];
            let (_, operation) = operations(item).into_iter().find(|(m, _)| *m == method).unwrap();
            operation.responses.responses.keys().cloned().collect::<Vec<_>>()
        };
        assert_eq!(statuses("/health", "GET"), ["200", "500"]);
        assert_eq!(statuses("/search", "POST"), ["200", "400", "401", "500"]);
        let json = serde_json::to_value(&document).unwrap();
        assert_eq!(
            json["paths"]["/search"]["post"]["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorResponse"
        );
    }

    #[test]
    fn the_page_escapes_what_it_quotes_and_marks_open_endpoints() {
        let page = render_page(&document());
        assert!(page.contains("Is it up? &lt;b&gt;"), "{page}");
        assert!(!page.contains("<b>"));
        assert_eq!(page.matches("no key needed").count(), 1, "{page}");
        assert!(!page.contains("<script"));
    }
}
