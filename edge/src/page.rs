//! `GET /`: a server's status page, for a person rather than a program.
//!
//! A page is its figures (an HTML fragment) and its script, built into the binary, inside the
//! frame both servers' pages share ([`Page::html`]: the header with the health badge, the key
//! form), with [`COMMON_JS`] — the API key prompt, calls to the server's own JSON endpoints with
//! the key as a Bearer header, the refresh loop and the small formatting helpers — and the
//! shared stylesheet. Nothing is fetched from elsewhere (no CDN: the agent is often used
//! offline), and the Content-Security-Policy says so to the browser.
//!
//! The page holds no data, so it needs no key; its script asks for the key once when an
//! endpoint answers 401, keeps it in the tab's `sessionStorage` (gone when the tab closes) and
//! sends it only as `Authorization: Bearer …`, never in a URL, where logs and history keep it.
//! Text from notes, queries or Notion is only ever set with `textContent`, never parsed as
//! HTML.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The script both pages load before their own: `NotionLlm.start(load)` and helpers.
pub const COMMON_JS: &str = include_str!("ui/common.js");
/// The stylesheet both pages use.
pub const STYLE_CSS: &str = include_str!("ui/page.css");

/// Only the page's own files, and requests to its own origin.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                      img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// One server's page.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Its title (`notion-llm agent`).
    pub title: &'static str,
    /// What holds the key, as the page names it (HTML: `the agent's API key (<code>…</code>)`).
    pub key_name: &'static str,
    /// Its figures: HTML shown once the server's endpoints answer (ids its script fills).
    pub figures: &'static str,
    /// The page's script, at `/ui/app.js`.
    pub script: &'static str,
}

impl Page {
    /// The document at `/`: the frame around the figures.
    pub fn html(&self) -> String {
        let Self { title, key_name, figures, .. } = self;
        format!(
            r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="/ui/page.css">
<script src="/ui/common.js" defer></script>
<script src="/ui/app.js" defer></script>
</head>
<body>
<header>
  <h1>{title} <small id="version"></small></h1>
  <span id="health" class="badge">loading…</span>
  <span id="updated" class="quiet"></span>
</header>
<main>
  <form id="key-form" hidden>
    <p>This page needs {key_name}. It is kept in this browser tab only.</p>
    <input id="key" type="password" autocomplete="off" placeholder="API key" aria-label="API key">
    <button type="submit">Use key</button>
    <p id="key-error" class="bad"></p>
  </form>
  <section id="figures" hidden>
{figures}  </section>
</main>
</body>
</html>
"#
        )
    }
}

/// `GET /`, `/ui/app.js`, `/ui/common.js` and `/ui/page.css` for `page`.
pub fn routes<S: Clone + Send + Sync + 'static>(page: Page) -> Router<S> {
    // Rendered once; each request sends a copy (a few KB).
    let html = axum::body::Bytes::from(page.html());
    Router::new()
        .route(
            "/",
            get(move || {
                let html = html.clone();
                async move { asset("text/html; charset=utf-8", html) }
            }),
        )
        .route("/ui/app.js", get(move || async move { asset("text/javascript; charset=utf-8", page.script) }))
        .route("/ui/common.js", get(|| async { asset("text/javascript; charset=utf-8", COMMON_JS) }))
        .route("/ui/page.css", get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }))
}

fn asset(content_type: &'static str, body: impl Into<axum::body::Bytes>) -> Response {
    let body: axum::body::Bytes = body.into();
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_page_and_its_files_allow_nothing_from_elsewhere() {
        let page =
            Page { title: "a page", key_name: "its key", figures: "<p id=\"x\">–</p>\n", script: "\"use strict\";" };
        let html = page.html();
        assert!(
            html.contains("<title>a page</title>") && html.contains("<section id=\"figures\" hidden>\n<p id=\"x\">")
        );
        let app: Router = routes(page);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        for (path, kind) in [
            ("/", "text/html"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/common.js", "text/javascript"),
            ("/ui/page.css", "text/css"),
        ] {
            let reply = reqwest::get(format!("{url}{path}")).await.unwrap();
            assert!(reply.status().is_success(), "{path}");
            let headers = reply.headers();
            assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with(kind), "{path}");
            assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().starts_with("default-src 'none'"));
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        server.abort();
    }
}
