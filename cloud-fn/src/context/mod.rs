//! The context ladder: the live agent, else the context cached per tag, else the template's.
//! A context is `full` only when it holds passages: when the agent is reached but nothing in the
//! notes matches, the answer draws on the template's background and says so (`unmatched`);
//! the cache is neither used (it holds other questions' passages) nor overwritten.
//!
//! Every answer from the agent is written through to the [`cache`] under each of the question's
//! tags (`_all` for untagged questions), so when the user's PC sleeps the next question on the
//! same topic still gets context from their notes — marked as cached.

pub mod cache;

use std::sync::Arc;
use std::time::Duration;

use protocol::{SearchRequest, SourceKind};
use serde::{Deserialize, Serialize};

use self::cache::ContextCache;
use crate::agent::{AgentLink, LinkError};
use crate::clock::Clock;
use crate::store::{ContextStore, StoreError, Template};

/// Which rung of the ladder produced the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContextMode {
    /// From the live agent: passages of the user's notes.
    Full,
    /// The agent was reached, but no passage of the notes matched: the template's background.
    Unmatched,
    /// From the per-tag cache.
    Cached,
    /// From the template (possibly empty).
    Template,
    /// Not searched: the question's page asked for no retrieval (`Search` = None).
    NotSearched,
}

impl ContextMode {
    /// Name shown in the answer's footer and stored in the job.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Unmatched => "unmatched",
            Self::Cached => "cached",
            Self::Template => "template",
            Self::NotSearched => "none",
        }
    }

    /// Whether the answer is as the person asked it, not degraded by the agent's absence: the
    /// agent answered, or no search was wanted.
    pub fn agent_answered(self) -> bool {
        matches!(self, Self::Full | Self::Unmatched | Self::NotSearched)
    }
}

/// Context for one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltContext {
    /// Which rung produced it.
    pub mode: ContextMode,
    /// The context block (may be empty).
    pub text: String,
    /// Cited sources.
    pub sources: Vec<String>,
}

/// What a question's page asked retrieval to search (its `Sources` or `Search` property).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every indexed source (no such property, or nothing chosen).
    #[default]
    Everything,
    /// Only these kinds of source: a filter the agent applies. Context built this way is not
    /// cached for the tag (it is not what a question on the tag in general would get), and
    /// without the agent the answer falls back to the template.
    Only(Vec<SourceKind>),
    /// No retrieval at all: the model answers from the question alone.
    Nothing,
}

impl Scope {
    /// Reads the page's choice: a `Sources` multi-select (`Notes`, `Notion`, `None`) or a
    /// `Search` select (`All`, `Notes`, `Notion`, `None`), compared case-insensitively;
    /// anything else is ignored.
    pub fn from_choices<'a>(choices: impl IntoIterator<Item = &'a str>) -> Self {
        let mut kinds = Vec::new();
        let mut nothing = false;
        for choice in choices {
            match choice.trim().to_lowercase().as_str() {
                "notes" | "local notes" | "folders" => kinds.push(SourceKind::Notes),
                "notion" | "notion knowledge" => kinds.push(SourceKind::Notion),
                "none" | "nothing" | "no search" => nothing = true,
                "all" | "everything" => return Self::Everything,
                _ => {}
            }
        }
        kinds.dedup();
        match (nothing, kinds.is_empty()) {
            (_, false) if kinds.len() == 2 => Self::Everything,
            (_, false) => Self::Only(kinds),
            (true, true) => Self::Nothing,
            (false, true) => Self::Everything,
        }
    }

    /// How a footer names a narrowed search (`None` for every source).
    pub fn describe(&self) -> Option<&'static str> {
        match self {
            Self::Everything => None,
            Self::Only(kinds) if kinds.as_slice() == [SourceKind::Notes] => Some("searched: notes only"),
            Self::Only(_) => Some("searched: Notion knowledge only"),
            Self::Nothing => Some("searched: nothing, as asked"),
        }
    }
}

/// Settings of the ladder (`ENABLE_FALLBACK`, `FALLBACK_TIMEOUT`, `CONTEXT_CACHE_TTL`).
#[derive(Debug, Clone, Copy)]
pub struct LadderSettings {
    /// Whether to answer at all when the agent is offline.
    pub enable_fallback: bool,
    /// How long to wait for the agent.
    pub agent_timeout: Duration,
    /// How long cached context stays usable.
    pub cache_ttl: Duration,
    /// Passages asked from the agent.
    pub max_results: usize,
}

impl Default for LadderSettings {
    fn default() -> Self {
        Self {
            enable_fallback: true,
            agent_timeout: Duration::from_secs(5),
            cache_ttl: Duration::from_secs(7 * 24 * 3600),
            max_results: 5,
        }
    }
}

/// Why no context could be built.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The agent is unreachable and the fallback is switched off.
    #[error("the local agent is unreachable ({0}) and ENABLE_FALLBACK is off")]
    AgentUnavailable(LinkError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Builds context by the ladder.
pub struct ContextBuilder {
    link: Arc<dyn AgentLink>,
    cache: ContextCache,
    settings: LadderSettings,
}

impl ContextBuilder {
    /// A ladder over `link`, caching in `store`.
    pub fn new(
        link: Arc<dyn AgentLink>,
        store: Arc<dyn ContextStore>,
        clock: Arc<dyn Clock>,
        settings: LadderSettings,
    ) -> Self {
        Self { link, cache: ContextCache::new(store, clock, settings.cache_ttl), settings }
    }

    /// The agent link (for status endpoints).
    pub fn link(&self) -> &Arc<dyn AgentLink> {
        &self.link
    }

    /// Context for `question`, tagged `tags`, from what `scope` allows, using `template` as
    /// the last resort.
    pub async fn build(
        &self,
        question: &str,
        tags: &[String],
        scope: &Scope,
        template: &Template,
    ) -> Result<BuiltContext, ContextError> {
        let kinds = match scope {
            Scope::Nothing => {
                return Ok(BuiltContext { mode: ContextMode::NotSearched, text: String::new(), sources: Vec::new() });
            }
            Scope::Only(kinds) => kinds.clone(),
            Scope::Everything => Vec::new(),
        };
        let narrowed = !kinds.is_empty();
        let request = SearchRequest {
            tags: tags.to_vec(),
            max_results: self.settings.max_results,
            sources: kinds,
            ..SearchRequest::new(question)
        };
        // No `is_live()` first: an offline link fails fast by contract, and on AWS asking
        // twice would read the connections twice.
        let offline = match self.link.search(&request, self.settings.agent_timeout).await {
            Ok(response) if response.context.trim().is_empty() => {
                tracing::info!("no passage of the notes matched the question; answering from the template");
                return Ok(BuiltContext {
                    mode: ContextMode::Unmatched,
                    text: template.fallback_context.clone(),
                    sources: Vec::new(),
                });
            }
            Ok(response) => {
                let mut sources: Vec<String> = Vec::new();
                for hit in &response.results {
                    if !sources.contains(&hit.source) {
                        sources.push(hit.source.clone());
                    }
                }
                if !narrowed {
                    self.cache.remember_answer(tags, &response.context, &sources).await;
                }
                return Ok(BuiltContext { mode: ContextMode::Full, text: response.context, sources });
            }
            Err(LinkError::Offline) => LinkError::Offline,
            Err(error) => {
                tracing::warn!(%error, "the agent gave no context; falling back");
                error
            }
        };
        if !self.settings.enable_fallback {
            return Err(ContextError::AgentUnavailable(offline));
        }
        if !narrowed && let Some(cached) = self.cache.recall(tags).await? {
            return Ok(BuiltContext { mode: ContextMode::Cached, text: cached.context, sources: cached.sources });
        }
        Ok(BuiltContext { mode: ContextMode::Template, text: template.fallback_context.clone(), sources: Vec::new() })
    }
}
