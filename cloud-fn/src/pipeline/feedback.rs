//! What people say of the answers: a question page's optional `Helpful` property, a select
//! (`Yes`/`No`, `👍`/`👎`, `Helpful`/`Not helpful`) or a checkbox (checked: helpful), recorded
//! with the page's job so that `/status` can show the helpful ratio by context mode and model
//! and list the unhelpful answers with the sources they were built from.
//!
//! Marks arrive two ways: a webhook event about an answered page (read for its mark at once),
//! and a sweep in the scheduled run, at most every `feedback_interval` (10 min), of the pages
//! marked since the last sweep (one query; the first sweep of a process reads every marked
//! page). The mark is
//! for the answer on the page: a new turn clears it (see `Pipeline::set_finished`).

use std::time::Instant;

use notion::Page;
use serde_json::{Value, json};

use super::Pipeline;
use crate::store::{JobWrite, StoreError};

/// The property.
pub const HELPFUL_PROPERTY: &str = "Helpful";

/// Edits this close before the last mark seen are read again (Notion keeps edit times to the
/// minute).
const OVERLAP_SECS: i64 = 120;

/// Where the sweep stands, per process.
#[derive(Debug, Default)]
pub(super) struct Sweep {
    /// When the last sweep ran.
    last: Option<Instant>,
    /// The property's type (`select`, `checkbox`), once the data source was read; `Some(None)`
    /// when the database has no usable `Helpful`.
    kind: Option<Option<String>>,
    /// The newest edit time among the marked pages seen.
    cursor: Option<chrono::DateTime<chrono::Utc>>,
}

/// The mark on `page`, if any.
pub(super) fn mark(page: &Page) -> Option<bool> {
    let property = page.property(HELPFUL_PROPERTY)?;
    match property["type"].as_str()? {
        "checkbox" => property["checkbox"].as_bool().filter(|checked| *checked),
        "select" | "status" => {
            let name = page.choice(HELPFUL_PROPERTY)?.trim().to_lowercase();
            match name.as_str() {
                "yes" | "helpful" | "useful" | "good" | "true" | "👍" | "✅" | "是" | "有用" => Some(true),
                "no" | "not helpful" | "unhelpful" | "not useful" | "bad" | "false" | "👎" | "❌" | "否" | "没用" => {
                    Some(false)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// The property's value that clears a mark, for a page that has one.
pub(super) fn cleared(page: &Page) -> Option<Value> {
    mark(page)?;
    match page.property(HELPFUL_PROPERTY)?["type"].as_str()? {
        "checkbox" => Some(json!({ "checkbox": false })),
        _ => Some(json!({ "select": null })),
    }
}

impl Pipeline {
    /// Records `page`'s mark on its job, if the job is finished and the mark changed. Returns
    /// whether it wrote.
    pub(super) async fn record_mark(&self, page: &Page) -> Result<bool, StoreError> {
        let Some(helpful) = mark(page) else { return Ok(false) };
        let Some(mut job) = self.store.get_job(&page.id).await? else { return Ok(false) };
        // A mark made while a new turn is being answered is for the answer it replaces.
        if !job.status.is_terminal() || job.helpful == Some(helpful) {
            return Ok(false);
        }
        job.helpful = Some(helpful);
        // Conditional: a run that started a new turn meanwhile wins, and the mark is read again.
        Ok(self.store.put_job(&mut job).await? == JobWrite::Written)
    }

    /// The scheduled run's sweep of marked pages, when one is due; failures are logged, and the
    /// next sweep tries again.
    pub(super) async fn sweep_feedback(&self) {
        let mut sweep = self.feedback.lock().await;
        if sweep.last.is_some_and(|last| last.elapsed() < self.settings.feedback_interval) {
            return;
        }
        sweep.last = Some(Instant::now());
        match self.sweep_marks(&mut sweep).await {
            Ok(0) => {}
            Ok(recorded) => tracing::info!(recorded, "recorded what people said of answers"),
            Err(error) => {
                tracing::warn!(%error, "could not read the answers' Helpful marks; the next sweep tries again")
            }
        }
    }

    async fn sweep_marks(&self, sweep: &mut Sweep) -> Result<usize, super::PipelineError> {
        let source = self.data_source().await?.to_owned();
        if sweep.kind.is_none() {
            let schema = self.notion.retrieve_data_source(&source).await?;
            let kind = schema["properties"][HELPFUL_PROPERTY]["type"].as_str().map(str::to_owned);
            sweep.kind = Some(kind.filter(|kind| kind == "select" || kind == "checkbox"));
        }
        let Some(Some(kind)) = &sweep.kind else { return Ok(0) };
        let marked = if kind == "checkbox" {
            json!({ "property": HELPFUL_PROPERTY, "checkbox": { "equals": true } })
        } else {
            json!({ "property": HELPFUL_PROPERTY, "select": { "is_not_empty": true } })
        };
        let filter = match sweep.cursor {
            None => marked,
            Some(cursor) => {
                let since = (cursor - chrono::Duration::seconds(OVERLAP_SECS)).to_rfc3339();
                json!({ "and": [marked, { "timestamp": "last_edited_time", "last_edited_time": { "on_or_after": since } }] })
            }
        };
        let pages = self.notion.query_all(&source, Some(filter), None).await?;
        let mut recorded = 0;
        for page in &pages {
            if self.record_mark(page).await? {
                recorded += 1;
            }
            let edited = chrono::DateTime::parse_from_rfc3339(&page.last_edited_time).map(|at| at.to_utc());
            if let Ok(edited) = edited {
                sweep.cursor = Some(sweep.cursor.map_or(edited, |cursor| cursor.max(edited)));
            }
        }
        Ok(recorded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(property: Value) -> Page {
        serde_json::from_value(json!({ "id": "p", "properties": { "Helpful": property } })).unwrap()
    }

    #[test]
    fn marks_are_read_from_a_select_or_a_checkbox() {
        let select = |name: &str| page(json!({ "type": "select", "select": { "name": name } }));
        assert_eq!(mark(&select("Yes")), Some(true));
        assert_eq!(mark(&select(" 👎 ")), Some(false));
        assert_eq!(mark(&select("Not helpful")), Some(false));
        assert_eq!(mark(&select("Maybe")), None);
        assert_eq!(mark(&page(json!({ "type": "select", "select": null }))), None);
        assert_eq!(mark(&page(json!({ "type": "checkbox", "checkbox": true }))), Some(true));
        assert_eq!(mark(&page(json!({ "type": "checkbox", "checkbox": false }))), None, "unchecked says nothing");
        assert_eq!(cleared(&select("Yes")), Some(json!({ "select": null })));
        assert_eq!(cleared(&page(json!({ "type": "checkbox", "checkbox": true }))), Some(json!({ "checkbox": false })));
        assert_eq!(cleared(&select("Maybe")), None);
    }
}
