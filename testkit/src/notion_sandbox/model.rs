//! The sandbox's workspace: databases, data sources, pages and blocks, and how they look on
//! the wire (the shapes of Notion's 2025-09-03 responses).

use std::collections::HashMap;

use chrono::{DateTime, Duration as ChronoDuration, SubsecRound, Utc};
use serde_json::{Map, Value, json};

use super::ApiError;

/// Property types the sandbox understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyKind {
    /// The page title.
    Title,
    /// Text.
    RichText,
    /// Status (options fixed by the schema).
    Status,
    /// Select (new options are created on write).
    Select,
    /// Multi-select.
    MultiSelect,
    /// Checkbox.
    Checkbox,
    /// Number.
    Number,
    /// URL.
    Url,
}

impl PropertyKind {
    fn name(self) -> &'static str {
        match self {
            Self::Title => "title",
            Self::RichText => "rich_text",
            Self::Status => "status",
            Self::Select => "select",
            Self::MultiSelect => "multi_select",
            Self::Checkbox => "checkbox",
            Self::Number => "number",
            Self::Url => "url",
        }
    }

    /// The kind a schema's type key names (`"multi_select"` → MultiSelect).
    fn from_name(name: &str) -> Option<Self> {
        [
            Self::Title,
            Self::RichText,
            Self::Status,
            Self::Select,
            Self::MultiSelect,
            Self::Checkbox,
            Self::Number,
            Self::Url,
        ]
        .into_iter()
        .find(|kind| kind.name() == name)
    }

    fn empty(self) -> Value {
        match self {
            Self::Title | Self::RichText | Self::MultiSelect => json!([]),
            Self::Checkbox => json!(false),
            _ => Value::Null,
        }
    }
}

/// One property of a data source's schema.
#[derive(Debug, Clone)]
pub struct PropertySchema {
    /// Property name.
    pub name: String,
    /// Its type.
    pub kind: PropertyKind,
    /// Options of a status or select property.
    pub options: Vec<String>,
}

impl PropertySchema {
    /// A property of `kind` named `name`.
    pub fn new(name: &str, kind: PropertyKind) -> Self {
        Self { name: name.to_owned(), kind, options: Vec::new() }
    }

    /// The same with options (status, select).
    pub fn with_options(mut self, options: &[&str]) -> Self {
        self.options = options.iter().map(|o| (*o).to_owned()).collect();
        self
    }

    fn id(&self) -> String {
        if self.kind == PropertyKind::Title { "title".to_owned() } else { short_id(&self.name) }
    }
}

fn short_id(name: &str) -> String {
    // Notion uses short, URL-encoded ids that do not change on rename; a hash of the name will do.
    let hash = name.bytes().fold(5381u32, |h, b| h.wrapping_mul(33) ^ u32::from(b));
    format!("{:x}", hash % 0xFFFFF)
}

pub(crate) struct Database {
    pub id: String,
    pub title: String,
    pub data_sources: Vec<String>,
    pub created: DateTime<Utc>,
    /// The page it was created under (`POST /v1/databases`); tests' databases have none.
    pub parent: Option<String>,
}

pub(crate) struct DataSource {
    pub id: String,
    pub database_id: String,
    pub name: String,
    pub schema: Vec<PropertySchema>,
}

pub(crate) struct PageRecord {
    pub id: String,
    pub data_source_id: String,
    pub created: DateTime<Utc>,
    pub last_edited: DateTime<Utc>,
    pub in_trash: bool,
    /// Property values in their read shape (the value under the type key), by name.
    pub values: HashMap<String, Value>,
    /// Creation order, for stable sorting.
    pub seq: u64,
}

pub(crate) struct BlockRecord {
    pub id: String,
    pub parent: String,
    pub parent_is_page: bool,
    pub kind: String,
    pub payload: Value,
    pub created: DateTime<Utc>,
    pub in_trash: bool,
}

/// Everything the sandbox stores.
#[derive(Default)]
pub(crate) struct Workspace {
    pub databases: HashMap<String, Database>,
    pub data_sources: HashMap<String, DataSource>,
    pub pages: HashMap<String, PageRecord>,
    pub blocks: HashMap<String, BlockRecord>,
    /// Children (block ids, in order) of a page or block.
    pub children: HashMap<String, Vec<String>>,
    /// Comments, oldest first.
    pub comments: Vec<super::comments::CommentRecord>,
    pub clock_offset: ChronoDuration,
    seq: u64,
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Notion's timestamp format; page and block times are truncated to the minute.
pub(crate) fn timestamp(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn minute(time: DateTime<Utc>) -> DateTime<Utc> {
    let time = time.trunc_subsecs(0);
    time - ChronoDuration::seconds(i64::from(chrono::Timelike::second(&time)))
}

impl Workspace {
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn create_database(&mut self, title: &str, schema: Vec<PropertySchema>) -> (String, String) {
        let database_id = new_id();
        let data_source_id = new_id();
        let now = self.now();
        self.databases.insert(
            database_id.clone(),
            Database {
                id: database_id.clone(),
                title: title.to_owned(),
                data_sources: vec![data_source_id.clone()],
                created: now,
                parent: None,
            },
        );
        self.data_sources.insert(
            data_source_id.clone(),
            DataSource { id: data_source_id.clone(), database_id: database_id.clone(), name: title.to_owned(), schema },
        );
        (database_id, data_source_id)
    }

    /// `POST /v1/databases` (2025-09-03): a database under a page, its properties in
    /// `initial_data_source.properties` (`{"Name": {"title": {}}, "Status": {"select": {"options": […]}}}`).
    /// As in Notion, a status property cannot be given options through the API: it gets
    /// Notion's defaults (Not started, In progress, Done).
    pub fn create_database_from_request(&mut self, body: &Value) -> Result<Value, ApiError> {
        let parent = body["parent"]["page_id"]
            .as_str()
            .ok_or_else(|| ApiError::validation("body.parent.page_id should be defined"))?;
        if self.pages.get(parent).is_none_or(|page| page.in_trash) {
            return Err(ApiError::not_found("page", parent));
        }
        let title = read_rich_text(&body["title"]);
        let title = title.as_array().into_iter().flatten().filter_map(|t| t["plain_text"].as_str()).collect::<String>();
        let properties = body["initial_data_source"]["properties"]
            .as_object()
            .ok_or_else(|| ApiError::validation("body.initial_data_source.properties should be an object"))?;
        let mut schema = Vec::new();
        for (name, definition) in properties {
            let Some((key, config)) = definition.as_object().and_then(|d| d.iter().find(|(k, _)| k.as_str() != "name"))
            else {
                return Err(ApiError::validation(format!("{name} should define a property type")));
            };
            let kind = PropertyKind::from_name(key).ok_or_else(|| {
                ApiError::validation(format!("{name}: the sandbox does not model `{key}` properties"))
            })?;
            let options: Vec<String> = config["options"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|option| option["name"].as_str().map(str::to_owned))
                .collect();
            let options = match kind {
                PropertyKind::Status if !options.is_empty() => {
                    return Err(ApiError::validation(format!(
                        "{name}: the options of a status property cannot be set through the API"
                    )));
                }
                PropertyKind::Status => ["Not started", "In progress", "Done"].map(str::to_owned).to_vec(),
                _ => options,
            };
            schema.push(PropertySchema { name: name.clone(), kind, options });
        }
        if schema.iter().filter(|p| p.kind == PropertyKind::Title).count() != 1 {
            return Err(ApiError::validation("a database must have exactly one title property"));
        }
        let (database, _) = self.create_database(&title, schema);
        if let Some(record) = self.databases.get_mut(&database) {
            record.parent = Some(parent.to_owned());
        }
        self.database_json(&database).ok_or_else(|| ApiError::not_found("database", &database))
    }

    /// `GET /v1/data_sources/{id}`: the data source with its properties' schema.
    pub fn data_source_json(&self, id: &str) -> Option<Value> {
        let source = self.data_sources.get(id)?;
        let mut properties = Map::new();
        for property in &source.schema {
            let options: Vec<Value> = property
                .options
                .iter()
                .map(|name| json!({ "id": short_id(name), "name": name, "color": "default" }))
                .collect();
            let config = match property.kind {
                PropertyKind::Select | PropertyKind::MultiSelect => json!({ "options": options }),
                PropertyKind::Status => json!({ "options": options, "groups": [] }),
                PropertyKind::Number => json!({ "format": "number" }),
                _ => json!({}),
            };
            let kind = property.kind.name();
            properties.insert(
                property.name.clone(),
                json!({ "id": property.id(), "name": property.name, "type": kind, kind: config }),
            );
        }
        Some(json!({
            "object": "data_source",
            "id": source.id,
            "name": source.name,
            "title": read_rich_text(&json!([{ "text": { "content": source.name } }])),
            "parent": { "type": "database_id", "database_id": source.database_id },
            "properties": properties,
        }))
    }

    pub fn database_json(&self, id: &str) -> Option<Value> {
        let database = self.databases.get(id)?;
        let sources: Vec<Value> = database
            .data_sources
            .iter()
            .filter_map(|source| self.data_sources.get(source))
            .map(|source| json!({ "id": source.id, "name": source.name }))
            .collect();
        let parent = match &database.parent {
            Some(page) => json!({ "type": "page_id", "page_id": page }),
            None => json!({ "type": "workspace", "workspace": true }),
        };
        Some(json!({
            "object": "database",
            "id": database.id,
            "parent": parent,
            "title": read_rich_text(&json!([{ "text": { "content": database.title } }])),
            "created_time": timestamp(database.created),
            "data_sources": sources,
            "in_trash": false,
            "archived": false,
        }))
    }

    /// Creates a page from properties in the write shape.
    pub fn create_page(&mut self, data_source_id: &str, properties: &Map<String, Value>) -> Result<String, ApiError> {
        let source =
            self.data_sources.get(data_source_id).ok_or_else(|| ApiError::not_found("data source", data_source_id))?;
        let mut values: HashMap<String, Value> =
            source.schema.iter().map(|property| (property.name.clone(), property.kind.empty())).collect();
        for (name, value) in properties {
            let stored = self.write_property(data_source_id, name, value)?;
            values.insert(name.clone(), stored);
        }
        let now = minute(self.now());
        let id = new_id();
        let seq = self.next_seq();
        let page = PageRecord {
            id: id.clone(),
            data_source_id: data_source_id.to_owned(),
            created: now,
            last_edited: now,
            in_trash: false,
            values,
            seq,
        };
        self.pages.insert(id.clone(), page);
        Ok(id)
    }

    /// Validates a property value in the write shape and returns its read shape.
    pub fn write_property(&mut self, data_source_id: &str, name: &str, value: &Value) -> Result<Value, ApiError> {
        let source = self
            .data_sources
            .get_mut(data_source_id)
            .ok_or_else(|| ApiError::not_found("data source", data_source_id))?;
        let Some(property) = source.schema.iter_mut().find(|p| p.name == name || p.id() == name) else {
            return Err(ApiError::validation(format!("{name} is not a property that exists.")));
        };
        let kind = property.kind;
        let inner = value
            .get(kind.name())
            .ok_or_else(|| ApiError::validation(format!("{name} is expected to be {}.", kind.name())))?;
        let option = |options: &mut Vec<String>, name: &str, create: bool| -> Result<Value, ApiError> {
            if !options.iter().any(|o| o == name) {
                if !create {
                    return Err(ApiError::validation(format!(
                        "Invalid status option \"{name}\": it is not in the schema."
                    )));
                }
                options.push(name.to_owned());
            }
            Ok(json!({ "id": short_id(name), "name": name, "color": "default" }))
        };
        Ok(match kind {
            PropertyKind::Title | PropertyKind::RichText => {
                validate_rich_text(inner, name)?;
                read_rich_text(inner)
            }
            PropertyKind::Status | PropertyKind::Select => match inner {
                Value::Null => Value::Null,
                _ => {
                    let option_name = inner["name"].as_str().ok_or_else(|| {
                        ApiError::validation(format!("{name}.{}.name should be a string", kind.name()))
                    })?;
                    option(&mut property.options, option_name, kind == PropertyKind::Select)?
                }
            },
            PropertyKind::MultiSelect => {
                let items =
                    inner.as_array().ok_or_else(|| ApiError::validation(format!("{name} should be an array")))?;
                let mut out = Vec::new();
                for item in items {
                    let option_name =
                        item["name"].as_str().ok_or_else(|| ApiError::validation("option name missing"))?;
                    out.push(option(&mut property.options, option_name, true)?);
                }
                Value::Array(out)
            }
            PropertyKind::Checkbox => {
                json!(inner.as_bool().ok_or_else(|| ApiError::validation(format!("{name} should be a boolean")))?)
            }
            PropertyKind::Number | PropertyKind::Url => inner.clone(),
        })
    }

    pub fn page_json(&self, id: &str) -> Option<Value> {
        let page = self.pages.get(id)?;
        let source = self.data_sources.get(&page.data_source_id)?;
        let mut properties = Map::new();
        for property in &source.schema {
            let value = page.values.get(&property.name).cloned().unwrap_or_else(|| property.kind.empty());
            let kind = property.kind.name();
            properties.insert(property.name.clone(), json!({ "id": property.id(), "type": kind, kind: value }));
        }
        Some(json!({
            "object": "page",
            "id": page.id,
            "created_time": timestamp(page.created),
            "last_edited_time": timestamp(page.last_edited),
            "created_by": { "object": "user", "id": "sandbox-user" },
            "last_edited_by": { "object": "user", "id": "sandbox-user" },
            "cover": null,
            "icon": null,
            "parent": { "type": "data_source_id", "data_source_id": source.id, "database_id": source.database_id },
            "archived": page.in_trash,
            "in_trash": page.in_trash,
            "is_locked": false,
            "properties": properties,
            "url": format!("https://www.notion.so/{}", page.id.replace('-', "")),
            "public_url": null,
        }))
    }

    pub fn touch(&mut self, page_id: &str) {
        let now = minute(self.now());
        if let Some(page) = self.pages.get_mut(page_id) {
            page.last_edited = now;
        }
    }

    /// The page a block belongs to, following parents up.
    pub fn page_of(&self, id: &str) -> Option<String> {
        let mut id = id.to_owned();
        for _ in 0..64 {
            if self.pages.contains_key(&id) {
                return Some(id);
            }
            id = self.blocks.get(&id)?.parent.clone();
        }
        None
    }

    pub fn block_json(&self, id: &str) -> Option<Value> {
        let block = self.blocks.get(id)?;
        let has_children = self
            .children
            .get(id)
            .is_some_and(|children| children.iter().any(|c| self.blocks.get(c).is_some_and(|b| !b.in_trash)));
        let parent = if block.parent_is_page {
            json!({ "type": "page_id", "page_id": block.parent })
        } else {
            json!({ "type": "block_id", "block_id": block.parent })
        };
        let time = timestamp(block.created);
        Some(json!({
            "object": "block",
            "id": block.id,
            "parent": parent,
            "created_time": time,
            "last_edited_time": time,
            "created_by": { "object": "user", "id": "sandbox-integration" },
            "last_edited_by": { "object": "user", "id": "sandbox-integration" },
            "has_children": has_children,
            "archived": block.in_trash,
            "in_trash": block.in_trash,
            "type": block.kind,
            block.kind.clone(): block.payload,
        }))
    }

    /// Live children of a page or block, in order.
    pub fn live_children(&self, parent: &str) -> Vec<String> {
        self.children
            .get(parent)
            .map(|children| {
                children.iter().filter(|c| self.blocks.get(*c).is_some_and(|b| !b.in_trash)).cloned().collect()
            })
            .unwrap_or_default()
    }
}

/// Checks a rich-text array against Notion's limits (100 items, 2000 characters each).
pub(crate) fn validate_rich_text(value: &Value, path: &str) -> Result<(), ApiError> {
    let items = value.as_array().ok_or_else(|| ApiError::validation(format!("body.{path} should be an array")))?;
    if items.len() > 100 {
        return Err(ApiError::validation(format!(
            "body failed validation: body.{path}.length should be ≤ `100`, instead was `{}`.",
            items.len()
        )));
    }
    for (index, item) in items.iter().enumerate() {
        if let Some(content) = item.get("text").map(|text| &text["content"]) {
            let content = content
                .as_str()
                .ok_or_else(|| ApiError::validation(format!("body.{path}[{index}].text.content should be a string")))?;
            let length = content.chars().count();
            if length > 2000 {
                return Err(ApiError::validation(format!(
                    "body failed validation: body.{path}[{index}].text.content.length should be ≤ `2000`, instead was `{length}`."
                )));
            }
        }
    }
    Ok(())
}

/// Rich text as Notion returns it: every item with `type`, `annotations`, `plain_text`, `href`.
pub(crate) fn read_rich_text(value: &Value) -> Value {
    let items = value.as_array().cloned().unwrap_or_default();
    Value::Array(
        items
            .into_iter()
            .map(|item| {
                let annotations = json!({
                    "bold": item["annotations"]["bold"].as_bool().unwrap_or(false),
                    "italic": item["annotations"]["italic"].as_bool().unwrap_or(false),
                    "strikethrough": item["annotations"]["strikethrough"].as_bool().unwrap_or(false),
                    "underline": item["annotations"]["underline"].as_bool().unwrap_or(false),
                    "code": item["annotations"]["code"].as_bool().unwrap_or(false),
                    "color": item["annotations"]["color"].as_str().unwrap_or("default"),
                });
                if item.get("equation").is_some() {
                    let expression = item["equation"]["expression"].as_str().unwrap_or_default();
                    return json!({ "type": "equation", "equation": { "expression": expression },
                        "annotations": annotations, "plain_text": expression, "href": null });
                }
                let content = item["text"]["content"].as_str().unwrap_or_default();
                let link = item["text"]["link"].clone();
                let href = link["url"].clone();
                json!({
                    "type": "text",
                    "text": { "content": content, "link": if link.is_object() { link } else { Value::Null } },
                    "annotations": annotations,
                    "plain_text": content,
                    "href": href,
                })
            })
            .collect(),
    )
}
