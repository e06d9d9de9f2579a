//! Questions asked in comments. A comment on a question page (or on any block of a page of the
//! questions database) that starts with the trigger (`COMMENT_TRIGGER`, `?` by default) is
//! answered as a reply in the same discussion thread, grounded in the agent's notes and in the
//! page itself (its question, body and answers).
//!
//! Comments arrive only through Notion's `comment.created` webhook event: listing every page's
//! comments on a schedule would cost a request per page and run, so a poll-only deployment does
//! not answer comments.
//!
//! Exactly once per comment, as for questions: the comment's job (`job#comment:<id>`) is
//! claimed with a lease before anything is asked, and the reply carries a marker link naming
//! the comment, so an attempt that finds its reply already in the thread (a run stopped after
//! replying, a lost response) records the job instead of replying again.

use serde::Serialize;
use tracing::{Instrument, info_span};

use super::Pipeline;
use super::choices::Choices;
use crate::context::{ContextError, ContextMode};
use crate::llm::LlmError;
use crate::store::{JobRecord, JobStatus, JobWrite, StoreError, short_question};
use crate::templates::{Asked, Templates, build_prompt};
use crate::webhook::CommentCreated;

/// Where reply markers point; the comment id follows.
const REPLY_MARKER: &str = "https://github.com/notion-llm/notion-llm#reply-";

/// Longest reply, in characters: a comment is read in a narrow side panel.
const MAX_REPLY_CHARS: usize = 6_000;

/// Estimated tokens of the page's own text sent with a comment's question.
const PAGE_TOKENS: usize = 3_000;

/// What became of a comment.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CommentOutcome {
    /// Answered with a reply in its thread.
    Answered {
        /// Where the reply's context came from.
        mode: ContextMode,
        /// The reply's comment id.
        reply_id: String,
    },
    /// Answered before (by an earlier delivery or run).
    AlreadyAnswered,
    /// Another run is answering it now; Notion's redelivery comes back later.
    Busy,
    /// Not a question for notion-llm.
    Ignored {
        /// Why.
        reason: String,
    },
}

/// Why a comment could not be answered now.
#[derive(Debug, thiserror::Error)]
pub enum CommentError {
    /// Notion failed.
    #[error("Notion: {0}")]
    Notion(#[from] notion::NotionError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The LLM failed.
    #[error("LLM: {0}")]
    Llm(#[from] LlmError),
    /// No context could be built.
    #[error("{0}")]
    Context(#[from] ContextError),
}

fn ignored(reason: &str) -> Result<CommentOutcome, CommentError> {
    Ok(CommentOutcome::Ignored { reason: reason.to_owned() })
}

/// The marker a reply to `comment_id` carries.
pub(super) fn reply_marker(comment_id: &str) -> String {
    format!("{REPLY_MARKER}{}", comment_id.replace('-', ""))
}

impl Pipeline {
    /// Answers the comment `event` announces, if it asks notion-llm something.
    pub async fn answer_comment(&self, event: &CommentCreated) -> Result<CommentOutcome, CommentError> {
        let Some(trigger) = self.settings.comment_trigger.clone() else {
            return ignored("comments are not answered (COMMENT_TRIGGER is off)");
        };
        let page = match self.notion.retrieve_page(&event.page_id).instrument(info_span!("read_page")).await {
            Ok(page) => page,
            Err(error) if error.is_not_found() => return ignored("the page is gone, or not shared with notion-llm"),
            Err(error) => return Err(error.into()),
        };
        let source = self.data_source().await?.to_owned();
        if page.is_trashed() || !page.is_row_of(&self.database_id, &source) {
            return ignored("not a page of the questions database");
        }
        let comments = self.notion.comments(&event.parent_id).instrument(info_span!("read_comments")).await?;
        let Some(comment) = comments.iter().find(|comment| comment.id == event.comment_id) else {
            return ignored("the comment is gone (deleted or resolved)");
        };
        if comment.text().contains(REPLY_MARKER) || comment.rich_text.to_string().contains(REPLY_MARKER) {
            return ignored("a reply of notion-llm");
        }
        let text = comment.text();
        let Some(question) = text.trim_start().strip_prefix(trigger.as_str()).map(str::trim) else {
            return ignored("not a question for notion-llm: it does not start with the trigger");
        };
        if question.is_empty() {
            return ignored("nothing asked after the trigger");
        }

        let key = format!("comment:{}", event.comment_id);
        let now = self.clock.now();
        let mut job = match self.store.get_job(&key).await? {
            Some(job) if job.status.is_terminal() => return Ok(CommentOutcome::AlreadyAnswered),
            Some(job) if job.lease_until > now => return Ok(CommentOutcome::Busy),
            // A run stopped midway: take over.
            Some(job) => JobRecord { attempts: job.attempts + 1, lease_until: now + self.settings.lease_secs, ..job },
            None => JobRecord::fresh(&key, 1, "comment", now + self.settings.lease_secs),
        };
        job.question = Some(short_question(&format!("💬 {question}")));
        if self.store.put_job(&mut job).await? == JobWrite::Conflict {
            return Ok(CommentOutcome::Busy);
        }
        let marker = reply_marker(&event.comment_id);
        let thread = comments.iter().filter(|other| other.discussion_id == comment.discussion_id);
        if let Some(reply) = thread.clone().find(|reply| reply.links_to(&marker)) {
            tracing::info!(comment = %event.comment_id, reply = %reply.id, "the reply was written before; recording it");
            job.status = JobStatus::Answered;
            job.finished_at = Some(self.clock.now());
            // A conflict: another run took the job over, and records the same reply.
            let _recorded = self.store.put_job(&mut job).await?;
            return Ok(CommentOutcome::AlreadyAnswered);
        }

        let templates = Templates::load(self.store.as_ref()).await?;
        let vocabulary = &self.settings.vocabulary;
        let tags = page.multi_select(&vocabulary.tags_property);
        let template = templates.select(&tags);
        let choices = Choices::of(&page);
        let title = page.title();
        let query = super::page::truncate(&format!("{question}\n{title}"), 1_000);
        let (tree, context) = tokio::join!(
            self.notion.block_tree(&page.id, 6).instrument(info_span!("read_blocks")),
            self.context.build(&query, &tags, &choices.scope, template).instrument(info_span!("agent_search")),
        );
        let (tree, context) = (tree?, context?);
        // The page is what the comment is about: its question, body and answers, and the thread.
        let mut about = format!("Page: {title}\n{}", notion::render(&tree).text);
        let earlier_in_thread: Vec<String> = thread
            .take_while(|other| other.id != comment.id)
            .map(|other| format!("Comment: {}", other.text()))
            .collect();
        if !earlier_in_thread.is_empty() {
            about.push_str("\n\nThe comment thread so far:\n");
            about.push_str(&earlier_in_thread.join("\n"));
        }
        let about = super::conversation::cut_to_tokens(&about, PAGE_TOKENS);
        let (answer, usage) = match &self.llm {
            Some(llm) => {
                let asked = Asked { question, details: "", earlier: &about, brief: true };
                let prompt = build_prompt(template, &context, &asked);
                let completion = llm.complete(&prompt, choices.model.as_deref()).instrument(info_span!("llm")).await?;
                (completion.text, Some(completion.usage))
            }
            None => (super::page::extractive_answer(&context), None),
        };
        job.mode = Some(context.mode);
        job.usage = usage.clone();
        job.sources = context.sources.iter().take(crate::store::MAX_JOB_SOURCES).cloned().collect();
        job.lease_until = self.clock.now() + self.settings.lease_secs;
        if self.store.put_job(&mut job).await? == JobWrite::Conflict {
            return Ok(CommentOutcome::Busy);
        }

        let reply = reply_text(&marker, &answer, &context.sources, context.mode, usage.as_ref());
        let written =
            self.notion.reply_in_discussion(&comment.discussion_id, reply).instrument(info_span!("reply")).await?;
        job.status = if context.mode.agent_answered() { JobStatus::Answered } else { JobStatus::AnsweredOffline };
        job.finished_at = Some(self.clock.now());
        if let Err(error) = self.store.put_job(&mut job).await {
            // The reply is written: a later delivery finds it by its marker and records it.
            tracing::warn!(%error, comment = %event.comment_id, "replied, but could not record it");
        }
        Ok(CommentOutcome::Answered { mode: context.mode, reply_id: written.id })
    }
}

/// The reply as rich text: a marker-linked signature, the answer as plain text (a comment takes
/// inline formatting only), and its sources.
fn reply_text(
    marker: &str,
    answer: &str,
    sources: &[String],
    mode: ContextMode,
    usage: Option<&crate::store::Usage>,
) -> Vec<serde_json::Value> {
    use notion::rich_text::{MAX_RICH_TEXT_ITEMS, RichTextBuilder, Style};
    let mut builder = RichTextBuilder::new();
    builder.push("notion-llm", &Style { italic: true, link: Some(marker.to_owned()), ..Style::default() });
    builder.push(": ", &Style::default());
    builder.push(&super::page::truncate(plain(answer).trim(), MAX_REPLY_CHARS), &Style::default());
    let mut footer = format!("\n— mode: {}", mode.as_str());
    if let Some(usage) = usage {
        footer.push_str(&format!(" · {}", usage.model));
    }
    if !sources.is_empty() {
        let shown: Vec<String> = sources
            .iter()
            .take(5)
            .map(|source| notion::link::page_title(source).unwrap_or_else(|| source.clone()))
            .collect();
        footer.push_str(&format!(" · sources: {}", shown.join(", ")));
    }
    builder.push(&footer, &Style { italic: true, ..Style::default() });
    let mut items = builder.build();
    items.truncate(MAX_RICH_TEXT_ITEMS);
    items
}

/// Markdown read as plain text: headings lose their `#`s and emphasis its stars, the rest (lists,
/// line breaks) reads well as it is.
fn plain(markdown: &str) -> String {
    markdown
        .lines()
        .map(|line| {
            let line = line.trim_start_matches('#').trim_start_matches(' ');
            line.replace("**", "").replace("__", "")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_carries_its_marker_the_answer_as_text_and_its_sources() {
        let marker = reply_marker("c-1");
        let items = reply_text(
            &marker,
            "## Sleep\n\n**Go to bed** at ten.",
            &["notes/sleep.md".into()],
            ContextMode::Full,
            None,
        );
        assert_eq!(items[0]["text"]["link"]["url"], marker);
        let text: String = items.iter().filter_map(|item| item["text"]["content"].as_str()).collect();
        assert_eq!(text, "notion-llm: Sleep\n\nGo to bed at ten.\n— mode: full · sources: notes/sleep.md");
        let long = reply_text(&marker, &"word ".repeat(5_000), &[], ContextMode::Full, None);
        let length: usize =
            long.iter().filter_map(|item| item["text"]["content"].as_str()).map(|t| t.chars().count()).sum();
        assert!(length < MAX_REPLY_CHARS + 100, "{length}");
    }
}
