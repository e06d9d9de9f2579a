//! `GET /`: a server's status page, for a person rather than a program.
//!
//! A page is three files built into the binary — its HTML, its script and the shared stylesheet
//! — plus [`COMMON_JS`], the part both servers' pages share: the API key prompt, calls to the
//! server's own JSON endpoints with the key as a Bearer header, the refresh loop and the small
//! formatting helpers. Nothing is fetched from elsewhere (no CDN: the agent is often used
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

/// One server's page: its HTML and its own script (served at `/ui/app.js`).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// The document at `/`.
    pub html: &'static str,
    /// The page's script, at `/ui/app.js`.
    pub script: &'static str,
}

/// `GET /`, `/ui/app.js`, `/ui/common.js` and `/ui/page.css` for `page`.
pub fn routes<S: Clone + Send + Sync + 'static>(page: Page) -> Router<S> {
    Router::new()
        .route("/", get(move || async move { asset("text/html; charset=utf-8", page.html) }))
        .route("/ui/app.js", get(move || async move { asset("text/javascript; charset=utf-8", page.script) }))
        .route("/ui/common.js", get(|| async { asset("text/javascript; charset=utf-8", COMMON_JS) }))
        .route("/ui/page.css", get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
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
        let page = Page { html: "<!doctype html><p>hi</p>", script: "\"use strict\";" };
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
