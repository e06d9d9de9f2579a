//! `GET /`: the agent's status page, for a person (see [`edge::page`] for what every status
//! page shares: no CDN, the key asked once and kept in the tab, text never parsed as HTML).
//! Its script reads `/health` and `/stats` every few seconds and searches with `/search`, on
//! the same origin, so the browser guard lets it in.

use axum::Router;

/// The page and its script.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    edge::page::routes(edge::page::Page {
        title: "notion-llm agent",
        key_name: "the agent's API key (<code>LOCAL_RAG_API_KEY</code>)",
        figures: include_str!("ui/figures.html"),
        script: include_str!("ui/app.js"),
    })
}
