//! What a question's page may choose for itself, through optional properties of the questions
//! database: `Model` (a select naming an OpenRouter model), and `Sources` (a multi-select of
//! `Notes`, `Notion`, `None`) or `Search` (a select of `All`, `Notes`, `Notion`, `None`). A
//! database without them answers as configured.

use notion::Page;

use crate::context::Scope;
use crate::store::Usage;

/// The `Model` property.
pub const MODEL_PROPERTY: &str = "Model";
/// The `Sources` property (multi-select).
pub const SOURCES_PROPERTY: &str = "Sources";
/// The `Search` property (select), for a database that prefers one choice.
pub const SEARCH_PROPERTY: &str = "Search";

/// A page's choices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Choices {
    /// The model to ask first (then `LLM_MODELS`).
    pub model: Option<String>,
    /// What retrieval searches.
    pub scope: Scope,
}

impl Choices {
    /// Reads them off `page`.
    pub fn of(page: &Page) -> Self {
        let model = page.choice(MODEL_PROPERTY).map(str::trim).filter(|model| !model.is_empty()).map(str::to_owned);
        let mut chosen = page.multi_select(SOURCES_PROPERTY);
        chosen.extend(page.choice(SEARCH_PROPERTY).map(str::to_owned));
        Self { model, scope: Scope::from_choices(chosen.iter().map(String::as_str)) }
    }

    /// What the footer says about them: a model the provider did not answer with (it fell
    /// back to `LLM_MODELS`), and a narrowed search.
    pub fn notes(&self, usage: Option<&Usage>) -> Vec<String> {
        let mut notes = Vec::new();
        if let (Some(asked), Some(usage)) = (&self.model, usage)
            && !answered_by(asked, &usage.model)
        {
            notes.push(format!("Model “{asked}” was not available; answered with the configured models"));
        }
        notes.extend(self.scope.describe().map(str::to_owned));
        notes
    }
}

/// Whether the model that answered is the one asked for (providers may add a version: asking
/// for `openai/gpt-4o` can be answered by `openai/gpt-4o-2024-08-06`).
fn answered_by(asked: &str, answered: &str) -> bool {
    let dated = |rest: &str| rest.strip_prefix('-').is_some_and(|date| date.starts_with(|c: char| c.is_ascii_digit()));
    answered == asked || answered.strip_prefix(asked).is_some_and(|rest| rest.starts_with([':', '@']) || dated(rest))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use protocol::SourceKind;

    fn page(properties: serde_json::Value) -> Page {
        serde_json::from_value(json!({ "id": "p", "properties": properties })).unwrap()
    }

    #[test]
    fn a_page_chooses_its_model_and_what_to_search() {
        let chosen = page(json!({
            "Model": { "type": "select", "select": { "name": " anthropic/claude-3.5-haiku " } },
            "Sources": { "type": "multi_select", "multi_select": [{ "name": "notion" }] },
        }));
        let choices = Choices::of(&chosen);
        assert_eq!(choices.model.as_deref(), Some("anthropic/claude-3.5-haiku"));
        assert_eq!(choices.scope, Scope::Only(vec![SourceKind::Notion]));
        assert_eq!(Choices::of(&page(json!({}))), Choices::default(), "no such properties: as configured");
        let none = page(json!({ "Search": { "type": "select", "select": { "name": "None" } } }));
        assert_eq!(Choices::of(&none).scope, Scope::Nothing);
        let both = page(
            json!({ "Sources": { "type": "multi_select", "multi_select": [{ "name": "Notes" }, { "name": "Notion" }] } }),
        );
        assert_eq!(Choices::of(&both).scope, Scope::Everything);
        let empty_select = page(json!({ "Model": { "type": "select", "select": null } }));
        assert_eq!(Choices::of(&empty_select).model, None);
    }

    #[test]
    fn the_footer_says_when_the_chosen_model_did_not_answer() {
        let choices = Choices { model: Some("openai/gpt-4o".into()), scope: Scope::Only(vec![SourceKind::Notes]) };
        let usage = |model: &str| Usage { model: model.into(), ..Usage::default() };
        assert_eq!(choices.notes(Some(&usage("openai/gpt-4o-2024-08-06"))), ["searched: notes only"]);
        let fell_back = choices.notes(Some(&usage("openai/gpt-4o-mini")));
        assert!(fell_back[0].contains("“openai/gpt-4o” was not available"), "{fell_back:?}");
    }
}
