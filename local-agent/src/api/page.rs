//! `GET /`: the agent's status page, for a person (see [`edge::page`] for what every status
//! page shares: no CDN, the key asked once and kept in the tab, text never parsed as HTML).
//! Its script reads `/health` and `/stats` every few seconds and searches with `/search`, on
//! the same origin, so the browser guard lets it in.

use axum::Router;

/// The page and its script.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    edge::page::routes(edge::page::Page { html: include_str!("ui/index.html"), script: include_str!("ui/app.js") })
}
