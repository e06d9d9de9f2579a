//! The sandbox's HTTP side: authentication, versions, faults and rate limits in one gate, then
//! one handler per Notion endpoint over the shared workspace.

use super::*;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/databases", post(create_database))
        .route("/v1/databases/{id}", get(retrieve_database))
        .route("/v1/data_sources/{id}", get(retrieve_data_source))
        .route("/v1/data_sources/{id}/query", post(query_data_source))
        .route("/v1/pages", post(create_page))
        .route("/v1/pages/{id}", get(retrieve_page).patch(update_page))
        .route("/v1/blocks/{id}/children", get(list_children).patch(append_children))
        .route("/v1/blocks/{id}", get(retrieve_block).delete(delete_block))
        .route("/v1/comments", get(list_comments).post(create_comment))
        .fallback(|| async { ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_url", "Invalid request URL.") })
        .layer(axum::middleware::from_fn_with_state(shared.clone(), gate))
        .layer(axum::extract::DefaultBodyLimit::max(4 * MAX_BODY_BYTES))
        .with_state(shared)
}

/// Logging, faults, rate limit, authentication and version checks — in Notion's order.
async fn gate(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path_and_query().map_or_else(String::new, |p| p.to_string());
    let response = check(&shared, &method, &path, request.headers());
    let response = match response {
        Err(error) => error.into_response(),
        Ok(Some(Fault::Delay(delay))) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        Ok(Some(Fault::ApplyThenFail)) => {
            let _ = next.run(request).await;
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_server_error", "Unexpected error.")
                .into_response()
        }
        Ok(_) => next.run(request).await,
    };
    lock(&shared.log).push(Logged { method: method.to_string(), path, status: response.status().as_u16() });
    response
}

fn check(shared: &Shared, method: &Method, path: &str, headers: &HeaderMap) -> Result<Option<Fault>> {
    let fault = {
        let mut injections = lock(&shared.injections);
        let found = injections.iter_mut().find(|i| {
            i.remaining > 0 && path.contains(&i.path_contains) && i.method.as_ref().is_none_or(|m| m == method)
        });
        found.and_then(|injection| {
            if injection.skip > 0 {
                injection.skip -= 1;
                return None;
            }
            injection.remaining -= 1;
            Some(injection.fault.clone())
        })
    };
    match &fault {
        Some(Fault::RateLimited { retry_after_secs }) => {
            return Err(ApiError {
                retry_after: Some(*retry_after_secs),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "You have been rate limited. Please try again in a few minutes.",
                )
            });
        }
        Some(Fault::Overloaded { retry_after_secs }) => {
            let status = StatusCode::from_u16(529).expect("valid status");
            return Err(ApiError {
                retry_after: Some(*retry_after_secs),
                ..ApiError::new(status, "service_overload", "Notion is overloaded. Please try again later.")
            });
        }
        Some(Fault::Status(status)) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = match status.as_u16() {
                409 => "conflict_error",
                502 => "bad_gateway",
                503 => "service_unavailable",
                504 => "gateway_timeout",
                _ => "internal_server_error",
            };
            return Err(ApiError::new(status, code, "Injected failure."));
        }
        _ => {}
    }
    if let Some(bucket) = &mut *lock(&shared.rate_limit)
        && !bucket.take()
    {
        return Err(ApiError {
            retry_after: Some(1),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "You have been rate limited.")
        });
    }
    let presented = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if presented != Some(shared.token.as_str()) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "API token is invalid."));
    }
    match headers.get("notion-version").and_then(|v| v.to_str().ok()) {
        None => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_version",
            "Notion-Version header failed validation: Notion-Version header should be defined, instead was `undefined`.",
        )),
        Some(version) if !VERSIONS.contains(&version) => Err(ApiError::validation(format!(
            "Notion-Version header failed validation: Notion-Version header should be a valid version, instead was `{version}`."
        ))),
        Some(_) => Ok(fault),
    }
}

fn parse_body(body: &Bytes) -> Result<Value> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "validation_error", "Request body too large."));
    }
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|error| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("Error parsing JSON body: {error}"))
    })
}

fn workspace(shared: &Shared) -> MutexGuard<'_, Workspace> {
    lock(&shared.workspace)
}

async fn retrieve_database(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    workspace(&shared).database_json(&id).map(axum::Json).ok_or_else(|| ApiError::not_found("database", &id))
}

async fn create_database(State(shared): State<Arc<Shared>>, body: Bytes) -> Result<axum::Json<Value>> {
    let body = parse_body(&body)?;
    workspace(&shared).create_database_from_request(&body).map(axum::Json)
}

async fn retrieve_data_source(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    workspace(&shared).data_source_json(&id).map(axum::Json).ok_or_else(|| ApiError::not_found("data source", &id))
}

async fn query_data_source(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<axum::Json<Value>> {
    let body = parse_body(&body)?;
    let workspace = workspace(&shared);
    if !workspace.data_sources.contains_key(&id) {
        return Err(ApiError::not_found("data source", &id));
    }
    let page_size = match &body["page_size"] {
        Value::Null => 100,
        value => value.as_u64().filter(|n| (1..=100).contains(n)).ok_or_else(|| {
            ApiError::validation(format!(
                "body failed validation: body.page_size should be ≤ `100`, instead was `{value}`."
            ))
        })? as usize,
    };
    let mut pages = Vec::new();
    for page in workspace.pages.values().filter(|p| p.data_source_id == id && !p.in_trash) {
        let json = workspace.page_json(&page.id).expect("the page exists");
        if body["filter"].is_null() || query::matches(&body["filter"], &json, 0)? {
            pages.push((json, page.seq));
        }
    }
    query::sort(&mut pages, body.get("sorts"))?;
    let start = match body["start_cursor"].as_str() {
        None => 0,
        Some(cursor) => pages.iter().position(|(page, _)| page["id"] == cursor).ok_or_else(|| {
            ApiError::validation(format!("body.start_cursor should be a valid cursor, instead was `{cursor}`."))
        })?,
    };
    let end = (start + page_size).min(pages.len());
    let next_cursor = pages.get(end).map(|(page, _)| page["id"].clone());
    let results: Vec<Value> = pages[start..end].iter().map(|(page, _)| page.clone()).collect();
    Ok(axum::Json(json!({
        "object": "list",
        "results": results,
        "next_cursor": next_cursor,
        "has_more": next_cursor.is_some(),
        "type": "page_or_data_source",
        "page_or_data_source": {},
        "request_id": uuid::Uuid::new_v4().to_string(),
    })))
}

async fn retrieve_page(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    workspace(&shared).page_json(&id).map(axum::Json).ok_or_else(|| ApiError::not_found("page", &id))
}

async fn create_page(State(shared): State<Arc<Shared>>, body: Bytes) -> Result<axum::Json<Value>> {
    let body = parse_body(&body)?;
    let source = body["parent"]["data_source_id"]
        .as_str()
        .ok_or_else(|| ApiError::validation("body.parent.data_source_id should be defined"))?;
    let properties: Map<String, Value> = body["properties"].as_object().cloned().unwrap_or_default();
    if let Some(children) = body.get("children") {
        blocks::validate(children)?;
    }
    let mut workspace = workspace(&shared);
    let id = workspace.create_page(source, &properties)?;
    if let Some(children) = body.get("children") {
        blocks::append(&mut workspace, &id, true, children);
    }
    Ok(axum::Json(workspace.page_json(&id).expect("just created")))
}

async fn update_page(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<axum::Json<Value>> {
    let body = parse_body(&body)?;
    let mut workspace = workspace(&shared);
    let source =
        workspace.pages.get(&id).map(|p| p.data_source_id.clone()).ok_or_else(|| ApiError::not_found("page", &id))?;
    let mut updates = Vec::new();
    for (name, value) in body["properties"].as_object().into_iter().flatten() {
        updates.push((name.clone(), workspace.write_property(&source, name, value)?));
    }
    let trash = body["in_trash"].as_bool().or_else(|| body["archived"].as_bool());
    if let Some(page) = workspace.pages.get_mut(&id) {
        for (name, value) in updates {
            page.values.insert(name, value);
        }
        if let Some(trash) = trash {
            page.in_trash = trash;
        }
    }
    workspace.touch(&id);
    Ok(axum::Json(workspace.page_json(&id).expect("the page exists")))
}

async fn retrieve_block(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    workspace(&shared).block_json(&id).map(axum::Json).ok_or_else(|| ApiError::not_found("block", &id))
}

async fn delete_block(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    let mut workspace = workspace(&shared);
    let block = workspace.blocks.get_mut(&id).ok_or_else(|| ApiError::not_found("block", &id))?;
    block.in_trash = true;
    if let Some(page) = workspace.page_of(&id) {
        workspace.touch(&page);
    }
    Ok(axum::Json(workspace.block_json(&id).expect("the block exists")))
}

async fn create_comment(State(shared): State<Arc<Shared>>, body: Bytes) -> Result<axum::Json<Value>> {
    let body = parse_body(&body)?;
    let created = comments::create(&mut workspace(&shared), &body)?;
    Ok(axum::Json(created))
}

#[derive(serde::Deserialize)]
struct CommentQuery {
    block_id: Option<String>,
    page_size: Option<usize>,
    start_cursor: Option<String>,
}

async fn list_comments(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<CommentQuery>,
) -> Result<axum::Json<Value>> {
    let block = query.block_id.ok_or_else(|| ApiError::validation("block_id should be defined"))?;
    let listed =
        comments::list(&workspace(&shared), &block, query.start_cursor.as_deref(), query.page_size.unwrap_or(100))?;
    Ok(axum::Json(listed))
}

#[derive(serde::Deserialize)]
struct Paging {
    page_size: Option<usize>,
    start_cursor: Option<String>,
}

async fn list_children(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
) -> Result<axum::Json<Value>> {
    let workspace = workspace(&shared);
    if !workspace.pages.contains_key(&id) && !workspace.blocks.contains_key(&id) {
        return Err(ApiError::not_found("block", &id));
    }
    let page_size = paging.page_size.unwrap_or(100);
    if !(1..=100).contains(&page_size) {
        return Err(ApiError::validation(format!("page_size should be ≤ `100`, instead was `{page_size}`.")));
    }
    let children = workspace.live_children(&id);
    let start = match &paging.start_cursor {
        None => 0,
        Some(cursor) => children.iter().position(|c| c == cursor).ok_or_else(|| {
            ApiError::validation(format!("start_cursor should be a valid cursor, instead was `{cursor}`."))
        })?,
    };
    let end = (start + page_size).min(children.len());
    let results: Vec<Value> = children[start..end].iter().filter_map(|c| workspace.block_json(c)).collect();
    let next_cursor = children.get(end).cloned();
    Ok(axum::Json(json!({
        "object": "list",
        "results": results,
        "next_cursor": next_cursor,
        "has_more": next_cursor.is_some(),
        "type": "block",
        "block": {},
        "request_id": uuid::Uuid::new_v4().to_string(),
    })))
}

async fn append_children(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    _uri: Uri,
    body: Bytes,
) -> Result<axum::Json<Value>> {
    let body = parse_body(&body)?;
    let children = body.get("children").ok_or_else(|| ApiError::validation("body.children should be defined"))?;
    blocks::validate(children)?;
    let mut workspace = workspace(&shared);
    let parent_is_page = workspace.pages.contains_key(&id);
    if !parent_is_page && !workspace.blocks.contains_key(&id) {
        return Err(ApiError::not_found("block", &id));
    }
    let parent_kind = workspace.blocks.get(&id).map(|block| block.kind.clone());
    blocks::validate_parent(parent_kind.as_deref(), children)?;
    let after = match body.get("after") {
        None | Some(Value::Null) => None,
        Some(Value::String(after)) => Some(after.clone()),
        Some(_) => return Err(ApiError::validation("body.after should be a string")),
    };
    if let Some(after) = &after {
        blocks::check_after(&workspace, &id, after)?;
    }
    let created = blocks::append(&mut workspace, &id, parent_is_page, children);
    if let Some(after) = &after {
        blocks::place_after(&mut workspace, &id, after, &created);
    }
    if let Some(page) = workspace.page_of(&id) {
        workspace.touch(&page);
    }
    let results: Vec<Value> = created.iter().filter_map(|c| workspace.block_json(c)).collect();
    Ok(axum::Json(json!({
        "object": "list",
        "results": results,
        "next_cursor": null,
        "has_more": false,
        "type": "block",
        "block": {},
        "request_id": uuid::Uuid::new_v4().to_string(),
    })))
}
