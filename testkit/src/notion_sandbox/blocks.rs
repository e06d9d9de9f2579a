//! Appending blocks, with the validation Notion applies to `PATCH /v1/blocks/{id}/children`.

use serde_json::{Value, json};

use super::ApiError;
use super::model::{BlockRecord, Workspace, new_id, read_rich_text, validate_rich_text};

/// Block types that may be appended, and whether their payload carries `rich_text`.
const WRITABLE: &[(&str, bool)] = &[
    ("paragraph", true),
    ("heading_1", true),
    ("heading_2", true),
    ("heading_3", true),
    ("bulleted_list_item", true),
    ("numbered_list_item", true),
    ("to_do", true),
    ("toggle", true),
    ("quote", true),
    ("callout", true),
    ("code", true),
    ("divider", false),
    ("equation", false),
    ("bookmark", false),
    ("table", false),
    ("table_row", false),
];

/// Languages a code block accepts (a subset of Notion's list, enough for tests to catch typos).
const LANGUAGES: &[&str] = &[
    "bash",
    "c",
    "c++",
    "c#",
    "css",
    "diff",
    "docker",
    "go",
    "graphql",
    "haskell",
    "html",
    "java",
    "javascript",
    "json",
    "kotlin",
    "latex",
    "lua",
    "makefile",
    "markdown",
    "plain text",
    "python",
    "r",
    "ruby",
    "rust",
    "scala",
    "shell",
    "sql",
    "swift",
    "toml",
    "typescript",
    "xml",
    "yaml",
];

/// Most children one request may append.
const MAX_CHILDREN: usize = 100;
/// Most block elements, nested ones included, in one request.
const MAX_ELEMENTS: usize = 1000;

/// Checks a whole append request; the messages follow Notion's `body failed validation` style.
pub fn validate(children: &Value) -> Result<(), ApiError> {
    let children = children.as_array().ok_or_else(|| ApiError::validation("body.children should be an array"))?;
    if children.len() > MAX_CHILDREN {
        return Err(ApiError::validation(format!(
            "body failed validation: body.children.length should be ≤ `{MAX_CHILDREN}`, instead was `{}`.",
            children.len()
        )));
    }
    let mut elements = 0;
    for (index, block) in children.iter().enumerate() {
        validate_block(block, &format!("children[{index}]"), 0, &mut elements)?;
    }
    if elements > MAX_ELEMENTS {
        return Err(ApiError::validation(format!(
            "body failed validation: {elements} block elements, the limit is {MAX_ELEMENTS}"
        )));
    }
    Ok(())
}

fn validate_block(block: &Value, path: &str, depth: usize, elements: &mut usize) -> Result<(), ApiError> {
    *elements += 1;
    let kind = block_kind(block).ok_or_else(|| ApiError::validation(format!("body.{path} has no block type")))?;
    let Some(&(_, has_text)) = WRITABLE.iter().find(|(name, _)| *name == kind) else {
        return Err(ApiError::validation(format!("body.{path}.{kind} is not a block type that can be created")));
    };
    let payload = &block[kind];
    if has_text {
        validate_rich_text(&payload["rich_text"], &format!("{path}.{kind}.rich_text"))?;
    }
    if kind == "code" {
        let language = payload["language"].as_str().unwrap_or("plain text");
        if !LANGUAGES.contains(&language) {
            return Err(ApiError::validation(format!(
                "body.{path}.code.language should be a known language, instead was `{language}`"
            )));
        }
    }
    if kind == "table_row" {
        for (index, cell) in payload["cells"].as_array().into_iter().flatten().enumerate() {
            validate_rich_text(cell, &format!("{path}.table_row.cells[{index}]"))?;
        }
    }
    // A table is created with its rows, and rows live only in tables.
    let rows_only = |children: &[Value]| children.iter().all(|child| block_kind(child) == Some("table_row"));
    match (kind, payload.get("children").and_then(Value::as_array)) {
        ("table", None) => {
            return Err(ApiError::validation(format!("body.{path}.table.children should be defined")));
        }
        ("table", Some(rows)) if rows.is_empty() || !rows_only(rows) => {
            return Err(ApiError::validation(format!(
                "body.{path}.table.children should be a non-empty array of table_row blocks"
            )));
        }
        (other, Some(children)) if other != "table" && children.iter().any(|c| block_kind(c) == Some("table_row")) => {
            return Err(ApiError::validation(format!("body.{path}.{other}.children: table_row belongs in a table")));
        }
        _ => {}
    }
    if let Some(children) = payload.get("children") {
        // A request may nest two levels below its top-level blocks.
        if depth >= 2 {
            return Err(ApiError::validation(format!(
                "body.{path}.{kind}.children: blocks nest at most two levels per request"
            )));
        }
        let children = children
            .as_array()
            .ok_or_else(|| ApiError::validation(format!("body.{path}.{kind}.children should be an array")))?;
        if children.len() > MAX_CHILDREN {
            return Err(ApiError::validation(format!(
                "body.{path}.{kind}.children.length should be ≤ `{MAX_CHILDREN}`"
            )));
        }
        for (index, child) in children.iter().enumerate() {
            validate_block(child, &format!("{path}.{kind}.children[{index}]"), depth + 1, elements)?;
        }
    }
    Ok(())
}

fn block_kind(block: &Value) -> Option<&str> {
    if let Some(kind) = block["type"].as_str() {
        return Some(kind);
    }
    // `type` may be omitted: the payload's key names it.
    block.as_object()?.keys().find(|key| WRITABLE.iter().any(|(name, _)| name == key)).map(String::as_str)
}

/// Checks that `children` may go under a parent of kind `parent_kind` (`None`: a page): rows
/// only into tables, and nothing else into them.
pub fn validate_parent(parent_kind: Option<&str>, children: &Value) -> Result<(), ApiError> {
    let into_table = parent_kind == Some("table");
    for (index, child) in children.as_array().into_iter().flatten().enumerate() {
        if (block_kind(child) == Some("table_row")) != into_table {
            return Err(ApiError::validation(format!(
                "body.children[{index}]: table_row blocks can be appended to a table, and only they can"
            )));
        }
    }
    Ok(())
}

/// Creates validated blocks under `parent`; returns the ids of the top-level ones.
pub fn append(workspace: &mut Workspace, parent: &str, parent_is_page: bool, children: &Value) -> Vec<String> {
    let mut created = Vec::new();
    for block in children.as_array().into_iter().flatten() {
        created.push(create(workspace, parent, parent_is_page, block));
    }
    created
}

/// Refuses Append Block Children's `after` unless it is a live child of `parent`.
pub fn check_after(workspace: &Workspace, parent: &str, after: &str) -> Result<(), ApiError> {
    match workspace.blocks.get(after) {
        Some(block) if block.parent == parent && !block.in_trash => Ok(()),
        _ => Err(ApiError::validation(format!("body.after: block {after} is not a child of {parent}"))),
    }
}

/// Moves the just-created top-level blocks `created` of `parent` (at the end of its children)
/// right after its child `after`, as Append Block Children's `after` does.
pub fn place_after(workspace: &mut Workspace, parent: &str, after: &str, created: &[String]) {
    let children = workspace.children.entry(parent.to_owned()).or_default();
    children.retain(|id| !created.contains(id));
    let at = children.iter().position(|id| id == after).map_or(children.len(), |index| index + 1);
    children.splice(at..at, created.iter().cloned());
}

fn create(workspace: &mut Workspace, parent: &str, parent_is_page: bool, block: &Value) -> String {
    let kind = block_kind(block).unwrap_or("paragraph").to_owned();
    let mut payload = block[&kind].clone();
    let nested = payload.as_object_mut().and_then(|object| object.remove("children"));
    if payload.get("rich_text").is_some() {
        payload["rich_text"] = read_rich_text(&payload["rich_text"]);
    }
    if kind == "table_row" {
        let cells: Vec<Value> = payload["cells"].as_array().into_iter().flatten().map(read_rich_text).collect();
        payload["cells"] = json!(cells);
    }
    let id = new_id();
    let created = workspace.now();
    workspace.blocks.insert(
        id.clone(),
        BlockRecord {
            id: id.clone(),
            parent: parent.to_owned(),
            parent_is_page,
            kind,
            payload,
            created,
            in_trash: false,
        },
    );
    workspace.children.entry(parent.to_owned()).or_default().push(id.clone());
    if let Some(nested) = nested {
        for child in nested.as_array().into_iter().flatten() {
            create(workspace, &id, false, child);
        }
    }
    id
}
