//! Pages (rows of a data source) and their property values.
//!
//! Property values are kept as JSON and read through typed accessors: Notion has some twenty
//! property types and adds more, and the agent and the cloud read only a handful of them.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::rich_text::plain_text;

/// A page as returned by query and retrieve calls.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Page {
    /// Page id (UUID with dashes).
    pub id: String,
    /// Link to the page in Notion.
    #[serde(default)]
    pub url: String,
    /// When the page was created (RFC 3339; Notion truncates page times to the minute).
    #[serde(default)]
    pub created_time: String,
    /// When the page was last edited (RFC 3339, minute precision).
    #[serde(default)]
    pub last_edited_time: String,
    /// Archived (API versions before 2026-03-11).
    #[serde(default)]
    pub archived: bool,
    /// In the trash (2026-03-11 and later; recent responses carry both).
    #[serde(default)]
    pub in_trash: bool,
    /// Property values by property name.
    #[serde(default)]
    pub properties: Map<String, Value>,
    /// Where the page lives (`{"type": "data_source_id", "data_source_id": …, "database_id": …}`).
    #[serde(default)]
    pub parent: Value,
}

impl Page {
    /// The text of the page's title property (whatever it is named).
    pub fn title(&self) -> String {
        self.properties
            .values()
            .find(|value| value["type"] == "title")
            .map(|value| plain_text(&value["title"]))
            .unwrap_or_default()
    }

    /// Whether the page is a row of data source `data_source_id` of database `database_id` (ids
    /// compare without dashes; API versions before 2025-09-03 name only the database).
    pub fn is_row_of(&self, database_id: &str, data_source_id: &str) -> bool {
        let bare = |id: &str| id.replace('-', "").to_lowercase();
        match self.parent["type"].as_str() {
            Some("data_source_id") => {
                self.parent["data_source_id"].as_str().is_some_and(|id| bare(id) == bare(data_source_id))
            }
            Some("database_id") => self.parent["database_id"].as_str().is_some_and(|id| bare(id) == bare(database_id)),
            _ => false,
        }
    }

    /// Whether the page is archived or in the trash.
    pub fn is_trashed(&self) -> bool {
        self.archived || self.in_trash
    }

    /// The raw value of a property.
    pub fn property(&self, name: &str) -> Option<&Value> {
        self.properties.get(name)
    }

    /// The option name of a `status` or `select` property.
    pub fn choice(&self, name: &str) -> Option<&str> {
        let value = self.property(name)?;
        let kind = value["type"].as_str()?;
        value[kind]["name"].as_str()
    }

    /// The option names of a `multi_select` property (empty if absent).
    pub fn multi_select(&self, name: &str) -> Vec<String> {
        self.property(name)
            .and_then(|value| value["multi_select"].as_array())
            .map(|options| options.iter().filter_map(|o| o["name"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// The plain text of a `rich_text` or `title` property.
    pub fn text(&self, name: &str) -> Option<String> {
        let value = self.property(name)?;
        let kind = value["type"].as_str()?;
        matches!(kind, "rich_text" | "title").then(|| plain_text(&value[kind]))
    }

    /// The value of a `checkbox` property.
    pub fn checkbox(&self, name: &str) -> Option<bool> {
        self.property(name)?["checkbox"].as_bool()
    }
}

/// Property values to write with `PATCH /v1/pages/{id}`.
pub mod write {
    use super::*;
    use crate::rich_text::{RichTextBuilder, Style};

    /// A `status` property set to `name`.
    pub fn status(name: &str) -> Value {
        json!({ "status": { "name": name } })
    }

    /// A `select` property set to `name`.
    pub fn select(name: &str) -> Value {
        json!({ "select": { "name": name } })
    }

    /// A `rich_text` property holding `text` (split within Notion's limits).
    pub fn rich_text(text: &str) -> Value {
        let mut builder = RichTextBuilder::new();
        builder.push(text, &Style::default());
        let items: Vec<Value> = builder.build().into_iter().take(crate::rich_text::MAX_RICH_TEXT_ITEMS).collect();
        json!({ "rich_text": items })
    }

    /// A `title` property holding `text`.
    pub fn title(text: &str) -> Value {
        let mut builder = RichTextBuilder::new();
        builder.push(text, &Style::default());
        json!({ "title": builder.build() })
    }

    /// A `multi_select` property with these options.
    pub fn multi_select(names: &[String]) -> Value {
        json!({ "multi_select": names.iter().map(|name| json!({ "name": name })).collect::<Vec<_>>() })
    }
}

/// A database and the data sources it contains (`GET /v1/databases/{id}`, 2025-09-03).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Database {
    /// Database id.
    pub id: String,
    /// Its data sources; queries go to these.
    #[serde(default)]
    pub data_sources: Vec<DataSourceRef>,
    /// The database's title.
    #[serde(default)]
    pub title: Value,
}

/// A data source of a database.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DataSourceRef {
    /// Data source id.
    pub id: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
}

/// One page of a paginated list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct List<T> {
    /// The items.
    pub results: Vec<T>,
    /// Whether more items follow.
    #[serde(default)]
    pub has_more: bool,
    /// Cursor of the next page.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> List<Page> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn real_query_responses_parse_with_every_property_type() {
        let list = fixture("data-source-query.json");
        assert!(list.has_more && list.next_cursor.is_some());
        let page = &list.results[0];
        assert!(!page.title().is_empty());
        assert!(page.url.starts_with("https://www.notion.so/"));
        assert!(page.last_edited_time.ends_with("Z"));
        // Every property type of the fixture is readable through the generic accessors.
        for (name, value) in &page.properties {
            match value["type"].as_str().unwrap() {
                "select" | "status" => {
                    let _ = page.choice(name);
                }
                "multi_select" => {
                    let _ = page.multi_select(name);
                }
                "rich_text" | "title" => assert!(page.text(name).is_some()),
                "checkbox" => assert!(page.checkbox(name).is_some()),
                _ => {}
            }
        }
        for name in ["data-source-query-select-filter.json", "database-query-2022-06-28.json"] {
            assert!(!fixture(name).results.is_empty(), "{name}");
        }
    }

    #[test]
    fn accessors_read_status_select_and_tags() {
        let page: Page = serde_json::from_value(json!({
            "id": "p1",
            "properties": {
                "Question": {"id": "title", "type": "title", "title": [{"plain_text": "Why?"}]},
                "Status": {"id": "s", "type": "status", "status": {"name": "Pending"}},
                "Kind": {"id": "k", "type": "select", "select": null},
                "Tags": {"id": "t", "type": "multi_select", "multi_select": [{"name": "AI效率"}, {"name": "Rust"}]},
            }
        }))
        .unwrap();
        assert_eq!(page.title(), "Why?");
        assert_eq!(page.choice("Status"), Some("Pending"));
        assert_eq!(page.choice("Kind"), None);
        assert_eq!(page.choice("Missing"), None);
        assert_eq!(page.multi_select("Tags"), ["AI效率", "Rust"]);
        assert!(!page.is_trashed());
    }
}
