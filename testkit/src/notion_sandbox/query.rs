//! Data-source query filters and sorts, evaluated on pages in their read shape.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use super::ApiError;
use crate::notion_sandbox::model::read_rich_text;

/// Whether `page` (read shape) passes `filter`. Compound filters nest at most two levels.
pub fn matches(filter: &Value, page: &Value, depth: usize) -> Result<bool, ApiError> {
    if let Some(all) = filter.get("and") {
        return compound(all, page, depth, true);
    }
    if let Some(any) = filter.get("or") {
        return compound(any, page, depth, false);
    }
    if let Some(timestamp) = filter["timestamp"].as_str() {
        let field = match timestamp {
            "created_time" | "last_edited_time" => timestamp,
            other => return Err(ApiError::validation(format!("Invalid timestamp filter: {other}"))),
        };
        let value = page[field].as_str().and_then(parse_time);
        return date_condition(&filter[field], value);
    }
    let name = filter["property"]
        .as_str()
        .ok_or_else(|| ApiError::validation("body.filter should define a property, a timestamp, `and` or `or`"))?;
    let property = page["properties"]
        .as_object()
        .and_then(|properties| {
            properties.get(name).or_else(|| properties.values().find(|p| p["id"].as_str() == Some(name)))
        })
        .ok_or_else(|| ApiError::validation(format!("Could not find property with name or id: {name}")))?;
    let kind = property["type"].as_str().unwrap_or_default();
    let condition = filter.get(kind).ok_or_else(|| {
        ApiError::validation(format!("body.filter: the property {name} is a {kind}; the filter must use `{kind}`"))
    })?;
    let value = &property[kind];
    match kind {
        "status" | "select" => option_condition(condition, value["name"].as_str()),
        "multi_select" => {
            let names: Vec<&str> = value.as_array().into_iter().flatten().filter_map(|o| o["name"].as_str()).collect();
            match first_key(condition)? {
                ("contains", wanted) => Ok(names.contains(&wanted.as_str().unwrap_or_default())),
                ("does_not_contain", wanted) => Ok(!names.contains(&wanted.as_str().unwrap_or_default())),
                ("is_empty", _) => Ok(names.is_empty()),
                ("is_not_empty", _) => Ok(!names.is_empty()),
                (other, _) => Err(unsupported(kind, other)),
            }
        }
        "checkbox" => match first_key(condition)? {
            ("equals", wanted) => Ok(value.as_bool() == wanted.as_bool()),
            ("does_not_equal", wanted) => Ok(value.as_bool() != wanted.as_bool()),
            (other, _) => Err(unsupported(kind, other)),
        },
        "title" | "rich_text" => {
            let text: String = read_rich_text(value)
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| item["plain_text"].as_str())
                .collect();
            let (operator, wanted) = first_key(condition)?;
            let wanted = wanted.as_str().unwrap_or_default();
            Ok(match operator {
                "equals" => text == wanted,
                "does_not_equal" => text != wanted,
                "contains" => text.contains(wanted),
                "does_not_contain" => !text.contains(wanted),
                "starts_with" => text.starts_with(wanted),
                "ends_with" => text.ends_with(wanted),
                "is_empty" => text.is_empty(),
                "is_not_empty" => !text.is_empty(),
                other => return Err(unsupported(kind, other)),
            })
        }
        other => Err(ApiError::validation(format!("the sandbox cannot filter {other} properties"))),
    }
}

fn compound(filters: &Value, page: &Value, depth: usize, all: bool) -> Result<bool, ApiError> {
    if depth >= 2 {
        return Err(ApiError::validation("body.filter: compound filters nest at most two levels deep"));
    }
    let filters = filters.as_array().ok_or_else(|| ApiError::validation("body.filter.and/or should be an array"))?;
    let mut result = all;
    for filter in filters {
        let passes = matches(filter, page, depth + 1)?;
        result = if all { result && passes } else { result || passes };
    }
    Ok(result)
}

fn option_condition(condition: &Value, name: Option<&str>) -> Result<bool, ApiError> {
    match first_key(condition)? {
        ("equals", wanted) => Ok(name == wanted.as_str()),
        ("does_not_equal", wanted) => Ok(name != wanted.as_str()),
        ("is_empty", _) => Ok(name.is_none()),
        ("is_not_empty", _) => Ok(name.is_some()),
        (other, _) => Err(unsupported("select", other)),
    }
}

fn date_condition(condition: &Value, value: Option<DateTime<Utc>>) -> Result<bool, ApiError> {
    let (operator, wanted) = first_key(condition)?;
    let Some(value) = value else { return Ok(operator == "is_empty") };
    let wanted = wanted.as_str().and_then(parse_time);
    let Some(wanted) = wanted else {
        return Err(ApiError::validation(format!("body.filter.{operator} should be an ISO 8601 date")));
    };
    Ok(match operator {
        "after" => value > wanted,
        "before" => value < wanted,
        "equals" => value == wanted,
        "on_or_after" => value >= wanted,
        "on_or_before" => value <= wanted,
        other => return Err(unsupported("date", other)),
    })
}

fn first_key(condition: &Value) -> Result<(&str, &Value), ApiError> {
    condition
        .as_object()
        .and_then(|object| object.iter().next())
        .map(|(key, value)| (key.as_str(), value))
        .ok_or_else(|| ApiError::validation("body.filter: a condition object is required"))
}

fn unsupported(kind: &str, operator: &str) -> ApiError {
    ApiError::validation(format!("body.filter.{kind}.{operator} is not a valid condition"))
}

/// An ISO 8601 date or date-time; a date alone is midnight UTC, a time without offset is UTC.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    if let Ok(time) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(time.and_utc());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().and_then(|date| date.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
}

/// Orders pages by `sorts` (property or timestamp, ascending or descending); ties, and no sorts,
/// fall back to newest first.
pub fn sort(pages: &mut [(Value, u64)], sorts: Option<&Value>) -> Result<(), ApiError> {
    let sorts = match sorts {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(sorts)) => sorts.clone(),
        Some(_) => return Err(ApiError::validation("body.sorts should be an array")),
    };
    for sort in &sorts {
        if sort["property"].is_null() && sort["timestamp"].is_null() {
            return Err(ApiError::validation("body.sorts[].property or .timestamp is required"));
        }
    }
    pages.sort_by(|(a, a_seq), (b, b_seq)| {
        for sort in &sorts {
            let key = |page: &Value| sort_key(page, sort);
            let mut order = key(a).cmp(&key(b));
            if sort["direction"] == "descending" {
                order = order.reverse();
            }
            if order != Ordering::Equal {
                return order;
            }
        }
        b_seq.cmp(a_seq)
    });
    Ok(())
}

fn sort_key(page: &Value, sort: &Value) -> String {
    if let Some(timestamp) = sort["timestamp"].as_str() {
        return page[timestamp].as_str().unwrap_or_default().to_owned();
    }
    let name = sort["property"].as_str().unwrap_or_default();
    let property = &page["properties"][name];
    let kind = property["type"].as_str().unwrap_or_default();
    let value = &property[kind];
    match kind {
        "title" | "rich_text" => {
            value.as_array().into_iter().flatten().filter_map(|i| i["plain_text"].as_str()).collect()
        }
        "status" | "select" => value["name"].as_str().unwrap_or_default().to_owned(),
        "number" => value.as_f64().map_or_else(String::new, |n| format!("{:020.6}", n + 1e12)),
        _ => value.to_string(),
    }
}
