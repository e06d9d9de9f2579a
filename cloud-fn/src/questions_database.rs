//! The questions database's shape: what the pipeline needs of it, checked against a real
//! database (`cloud-fn notion check`, and `serve` at start), and created from nothing
//! (`cloud-fn notion init`).
//!
//! What the pipeline needs: a title (the question), the status property as a Notion *status*
//! or *select* with the five options of [`Vocabulary`], and optionally a multi-select of tags.
//! Notion's API cannot set a status property's options, so a status property must be given
//! them by hand, and a database this module creates uses a select instead (whose options the
//! API does create).

use notion::{NotionClient, NotionError};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::pipeline::{Vocabulary, choices, feedback};

/// Notion's own first option of a new status property: new rows start in it.
const NOTION_DEFAULT_STATUS: &str = "Not started";

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Questions cannot be answered (or answers cannot be marked) until it is fixed.
    Problem,
    /// Works, but not as a person would expect.
    Advice,
}

/// One thing the check found, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Problem or advice.
    pub severity: Severity,
    /// What is wrong and exactly what to add or change.
    pub message: String,
}

impl Finding {
    fn problem(message: impl Into<String>) -> Self {
        Self { severity: Severity::Problem, message: message.into() }
    }

    fn advice(message: impl Into<String>) -> Self {
        Self { severity: Severity::Advice, message: message.into() }
    }
}

/// The outcome of checking a database.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The database checked.
    pub database_id: String,
    /// Its title as Notion shows it.
    pub title: String,
    /// What is wrong or could be better; empty when all is well.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether the pipeline can work with the database as it is.
    pub fn is_usable(&self) -> bool {
        self.findings.iter().all(|finding| finding.severity != Severity::Problem)
    }
}

/// The options the status property must have, in the pipeline's order.
fn status_options(vocabulary: &Vocabulary) -> [&str; 5] {
    [
        vocabulary.pending.as_str(),
        vocabulary.processing.as_str(),
        vocabulary.answered.as_str(),
        vocabulary.answered_offline.as_str(),
        vocabulary.failed.as_str(),
    ]
}

fn quoted(names: &[&str]) -> String {
    names.iter().map(|name| format!("\"{name}\"")).collect::<Vec<_>>().join(", ")
}

/// What is wrong with a data source whose schema is `properties` (the `properties` object of
/// `GET /v1/data_sources/{id}`), for the pipeline's `vocabulary`.
pub fn check_properties(properties: &Map<String, Value>, vocabulary: &Vocabulary) -> Vec<Finding> {
    let mut findings = Vec::new();
    let kind_of = |property: &Value| property["type"].as_str().unwrap_or("unknown").to_owned();
    if !properties.values().any(|property| kind_of(property) == "title") {
        findings.push(Finding::problem("the database has no title property to hold the question"));
    }
    let wanted = status_options(vocabulary);
    let status_name = &vocabulary.status_property;
    match properties.get(status_name) {
        None => findings.push(Finding::problem(format!(
            "there is no property \"{status_name}\": add a Select property \"{status_name}\" with the options {} \
             (or set NOTION_STATUS_PROPERTY to the name of yours)",
            quoted(&wanted)
        ))),
        Some(property) => {
            let kind = kind_of(property);
            if kind != "status" && kind != "select" {
                findings.push(Finding::problem(format!(
                    "\"{status_name}\" is a {kind} property; it must be a Status or a Select"
                )));
            } else {
                let options: Vec<&str> = property[&kind]["options"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|o| o["name"].as_str())
                    .collect();
                let missing: Vec<&str> = wanted.iter().copied().filter(|name| !options.contains(name)).collect();
                if !missing.is_empty() && kind == "status" {
                    // The API cannot create status options: writing one that is missing fails.
                    findings.push(Finding::problem(format!(
                        "the status property \"{status_name}\" lacks the options {}: add them in Notion \
                         (the property's menu → Edit property; Notion's API cannot add status options)",
                        quoted(&missing)
                    )));
                } else if missing.contains(&vocabulary.pending.as_str()) {
                    findings.push(Finding::advice(format!(
                        "the select \"{status_name}\" has no option \"{}\" for people to pick; add it (the others are \
                         created when first written: {})",
                        vocabulary.pending,
                        quoted(&missing)
                    )));
                }
                if kind == "status"
                    && options.contains(&NOTION_DEFAULT_STATUS)
                    && vocabulary.pending != NOTION_DEFAULT_STATUS
                {
                    findings.push(Finding::advice(format!(
                        "\"{status_name}\" still has Notion's default option \"{NOTION_DEFAULT_STATUS}\": if it is the \
                         default, new questions start there and are never picked up — make \"{}\" the default (Edit \
                         property → \"{}\" → Set as default), or set STATUS_PENDING=\"{NOTION_DEFAULT_STATUS}\"",
                        vocabulary.pending, vocabulary.pending
                    )));
                }
                if kind == "select" {
                    findings.push(Finding::advice(format!(
                        "\"{status_name}\" is a select, so a new question has no status until someone sets it to \"{}\"",
                        vocabulary.pending
                    )));
                }
            }
        }
    }
    let tags_name = &vocabulary.tags_property;
    match properties.get(tags_name).map(kind_of) {
        None => findings.push(Finding::advice(format!(
            "there is no property \"{tags_name}\": add a Multi-select \"{tags_name}\" to choose a template and a \
             cached context per topic (or set NOTION_TAGS_PROPERTY)"
        ))),
        Some(kind) if kind != "multi_select" => findings.push(Finding::problem(format!(
            "\"{tags_name}\" is a {kind} property; tags are read only from a Multi-select"
        ))),
        Some(_) => {}
    }
    // The optional properties a page chooses with (see `pipeline::choices` and `feedback`).
    let optional: [(&str, &[&str], &str); 4] = [
        (choices::MODEL_PROPERTY, &["select"], "a Select of OpenRouter model ids"),
        (choices::SOURCES_PROPERTY, &["multi_select"], "a Multi-select of Notes, Notion, None"),
        (choices::SEARCH_PROPERTY, &["select"], "a Select of All, Notes, Notion, None"),
        (feedback::HELPFUL_PROPERTY, &["select", "checkbox"], "a Select (Yes, No) or a Checkbox"),
    ];
    for (name, kinds, wanted) in optional {
        if let Some(kind) = properties.get(name).map(kind_of)
            && !kinds.contains(&kind.as_str())
        {
            findings.push(Finding::advice(format!(
                "\"{name}\" is a {kind} property and is ignored: it is read only as {wanted}"
            )));
        }
    }
    findings
}

/// Checks the database `database_id` through `notion`.
pub async fn check(notion: &NotionClient, database_id: &str, vocabulary: &Vocabulary) -> Result<Report, NotionError> {
    let database = notion.retrieve_database(database_id).await?;
    let title = notion::rich_text::plain_text(&database.title);
    let Some(source) = database.data_sources.first() else {
        let finding = Finding::problem("the database has no data source the integration can see");
        return Ok(Report { database_id: database.id, title, findings: vec![finding] });
    };
    let schema = notion.retrieve_data_source(&source.id).await?;
    let properties = schema["properties"].as_object().cloned().unwrap_or_default();
    let mut findings = check_properties(&properties, vocabulary);
    if database.data_sources.len() > 1 {
        findings.push(Finding::advice(format!(
            "the database has {} data sources; only the first (\"{}\") is read",
            database.data_sources.len(),
            source.name
        )));
    }
    Ok(Report { database_id: database.id, title, findings })
}

/// Creates a questions database titled `title` under the page `parent_page_id`: a title
/// `Question`, the status property as a select with its five options, a multi-select of tags,
/// and the optional choices of a page (`Model`, `Sources`) and its feedback (`Helpful`).
/// Returns the new database's id.
pub async fn create(
    notion: &NotionClient,
    parent_page_id: &str,
    title: &str,
    vocabulary: &Vocabulary,
) -> Result<String, NotionError> {
    let colors = ["blue", "yellow", "green", "orange", "red"];
    let options: Vec<Value> = status_options(vocabulary)
        .iter()
        .zip(colors)
        .map(|(name, color)| json!({ "name": name, "color": color }))
        .collect();
    let mut properties = Map::new();
    properties.insert("Question".into(), json!({ "title": {} }));
    properties.insert(vocabulary.status_property.clone(), json!({ "select": { "options": options } }));
    properties.insert(vocabulary.tags_property.clone(), json!({ "multi_select": { "options": [] } }));
    properties.insert(choices::MODEL_PROPERTY.into(), json!({ "select": { "options": [] } }));
    let sources = ["Notes", "Notion", "None"].map(|name| json!({ "name": name }));
    properties.insert(choices::SOURCES_PROPERTY.into(), json!({ "multi_select": { "options": sources } }));
    let marks = [("Yes", "green"), ("No", "red")].map(|(name, color)| json!({ "name": name, "color": color }));
    properties.insert(feedback::HELPFUL_PROPERTY.into(), json!({ "select": { "options": marks } }));
    let database = notion.create_database(parent_page_id, title, Value::Object(properties)).await?;
    Ok(database.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    fn select_like(kind: &str, options: &[&str]) -> Value {
        let options: Vec<Value> = options.iter().map(|name| json!({ "name": name })).collect();
        json!({ "type": kind, kind: { "options": options } })
    }

    const FIVE: [&str; 5] = ["Pending", "Processing", "Answered", "Answered (offline)", "Failed"];

    #[test]
    fn a_complete_database_has_nothing_to_fix() {
        let vocabulary = Vocabulary::default();
        for kind in ["status", "select"] {
            let properties = schema(json!({
                "Question": { "type": "title", "title": {} },
                "Status": select_like(kind, &FIVE),
                "Tags": { "type": "multi_select", "multi_select": { "options": [] } },
            }));
            let findings = check_properties(&properties, &vocabulary);
            assert!(findings.iter().all(|f| f.severity == Severity::Advice), "{kind}: {findings:?}");
            assert_eq!(findings.len(), usize::from(kind == "select"), "{kind}: {findings:?}");
        }
    }

    #[test]
    fn notions_default_status_property_is_named_with_what_to_add() {
        let properties = schema(json!({
            "Name": { "type": "title", "title": {} },
            "Status": select_like("status", &["Not started", "In progress", "Done"]),
        }));
        let findings = check_properties(&properties, &Vocabulary::default());
        let problem = findings.iter().find(|f| f.severity == Severity::Problem).expect("missing options are a problem");
        for option in FIVE {
            assert!(problem.message.contains(&format!("\"{option}\"")), "{problem:?}");
        }
        assert!(findings.iter().any(|f| f.message.contains("Not started") && f.message.contains("never picked up")));
        assert!(findings.iter().any(|f| f.message.contains("\"Tags\"") && f.severity == Severity::Advice));
    }

    #[test]
    fn wrong_types_and_missing_properties_are_problems() {
        let vocabulary = Vocabulary::default();
        let properties = schema(json!({
            "Name": { "type": "title", "title": {} },
            "Status": { "type": "checkbox", "checkbox": {} },
            "Tags": { "type": "rich_text", "rich_text": {} },
        }));
        let findings = check_properties(&properties, &vocabulary);
        assert_eq!(findings.iter().filter(|f| f.severity == Severity::Problem).count(), 2, "{findings:?}");
        let findings = check_properties(&schema(json!({ "Name": { "type": "title", "title": {} } })), &vocabulary);
        assert!(findings[0].message.contains("no property \"Status\"") && findings[0].message.contains("Select"));
        // A select without Pending: advice, since the API creates the rest on first write.
        let properties = schema(json!({
            "Name": { "type": "title", "title": {} },
            "Status": select_like("select", &["Answered"]),
            "Tags": { "type": "multi_select", "multi_select": {} },
        }));
        let findings = check_properties(&properties, &vocabulary);
        assert!(findings.iter().all(|f| f.severity == Severity::Advice), "{findings:?}");
        assert!(findings.iter().any(|f| f.message.contains("no option \"Pending\"")), "{findings:?}");
        // Optional properties of the wrong type are named, as advice.
        let properties = schema(json!({
            "Name": { "type": "title", "title": {} },
            "Status": select_like("select", &FIVE),
            "Tags": { "type": "multi_select", "multi_select": {} },
            "Model": { "type": "rich_text", "rich_text": {} },
            "Helpful": { "type": "checkbox", "checkbox": {} },
        }));
        let findings = check_properties(&properties, &vocabulary);
        assert!(
            findings.iter().any(|f| f.message.starts_with("\"Model\" is a rich_text property and is ignored")),
            "{findings:?}"
        );
        assert!(!findings.iter().any(|f| f.message.contains("Helpful")), "a checkbox is a mark: {findings:?}");
    }
}
