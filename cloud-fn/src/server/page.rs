//! `GET /`: the cloud side's status page, for a person (see [`edge::page`] for what every
//! status page shares: no CDN, the key asked once and kept in the tab, never in a URL, text
//! never parsed as HTML). The page itself is open — it holds nothing — and shows nothing until
//! `/status` accepts the key; the same page answers on `serve` and on the Lambda function URL.

use axum::Router;

/// The page and its script.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    edge::page::routes(edge::page::Page {
        title: "notion-llm cloud",
        key_name: "the cloud's API key (<code>CLOUD_API_KEY</code>)",
        figures: include_str!("ui/figures.html"),
        script: include_str!("ui/app.js"),
    })
}
