//! The client against the Notion sandbox: discovery, queries, pagination, blocks, limits,
//! rate limits and failures.

use std::time::{Duration, Instant};

use notion::page::write;
use notion::{ClientOptions, NotionClient, NotionError, RetryPolicy, render};
use serde_json::{Value, json};
use testkit::{Fault, NotionSandbox, PropertyKind, PropertySchema};

const TOKEN: &str = "secret_sandbox_token";

fn client(sandbox: &NotionSandbox) -> NotionClient {
    client_with(sandbox, TOKEN, 1000)
}

fn client_with(sandbox: &NotionSandbox, token: &str, requests_per_second: u32) -> NotionClient {
    let options = ClientOptions {
        base_url: sandbox.url(),
        requests_per_second,
        retry: RetryPolicy {
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            ..RetryPolicy::default()
        },
        ..ClientOptions::default()
    };
    NotionClient::new(token, options).unwrap()
}

fn questions(sandbox: &NotionSandbox) -> (String, String) {
    sandbox.create_database(
        "Questions",
        vec![
            PropertySchema::new("Question", PropertyKind::Title),
            PropertySchema::new("Status", PropertyKind::Status).with_options(&["Pending", "Processing", "Answered"]),
            PropertySchema::new("Tags", PropertyKind::MultiSelect),
        ],
    )
}

fn question(sandbox: &NotionSandbox, source: &str, title: &str, status: &str) -> String {
    sandbox.add_page(
        source,
        json!({ "Question": write::title(title), "Status": write::status(status), "Tags": write::multi_select(&["Rust".into()]) }),
        Value::Null,
    )
}

#[tokio::test]
async fn discovery_filters_sorts_and_pagination_beyond_one_page() {
    let sandbox = NotionSandbox::start(TOKEN).await.unwrap();
    let (database, source) = questions(&sandbox);
    for i in 0..230 {
        question(&sandbox, &source, &format!("q{i:03}"), if i % 3 == 0 { "Answered" } else { "Pending" });
    }
    let notion = client(&sandbox);
    assert_eq!(notion.data_source_id(&database).await.unwrap(), source);

    let filter = json!({ "property": "Status", "status": { "equals": "Pending" } });
    let sorts = json!([{ "property": "Question", "direction": "ascending" }]);
    let pending = notion.query_all(&source, Some(filter), Some(sorts)).await.unwrap();
    assert_eq!(pending.len(), 153, "230 minus every third");
    assert_eq!(pending[0].title(), "q001");
    assert!(pending.windows(2).all(|w| w[0].title() < w[1].title()), "sorted ascending across pages");
    assert!(pending.iter().all(|p| p.choice("Status") == Some("Pending") && p.multi_select("Tags") == ["Rust"]));
    let queries = sandbox.requests().iter().filter(|r| r.path.ends_with("/query")).count();
    assert_eq!(queries, 2, "100 + 53 pages");
}

#[tokio::test]
async fn properties_are_updated_and_bad_values_are_refused_without_retry() {
    let sandbox = NotionSandbox::start(TOKEN).await.unwrap();
    let (_, source) = questions(&sandbox);
    let id = question(&sandbox, &source, "Why?", "Pending");
    let notion = client(&sandbox);

    let page = notion.update_properties(&id, json!({ "Status": write::status("Processing") })).await.unwrap();
    assert_eq!(page.choice("Status"), Some("Processing"));
    assert_eq!(notion.retrieve_page(&id).await.unwrap().choice("Status"), Some("Processing"));

    let before = sandbox.requests().len();
    let error = notion.update_properties(&id, json!({ "Status": write::status("Nonsense") })).await.unwrap_err();
    assert_eq!((error.status(), error.code()), (Some(400), Some("validation_error")));
    assert!(!error.is_retryable());
    assert_eq!(sandbox.requests().len(), before + 1, "a validation error is not retried");

    let error = notion.retrieve_page("00000000-0000-0000-0000-000000000000").await.unwrap_err();
    assert!(error.is_not_found(), "{error}");
    let error = client_with(&sandbox, "wrong", 1000).retrieve_page(&id).await.unwrap_err();
    assert_eq!((error.status(), error.code()), (Some(401), Some("unauthorized")));
}

#[tokio::test]
async fn markdown_answers_are_appended_in_batches_and_read_back_as_a_tree() {
    let sandbox = NotionSandbox::start(TOKEN).await.unwrap();
    let (_, source) = questions(&sandbox);
    let id = question(&sandbox, &source, "Explain", "Pending");
    let notion = client(&sandbox);

    let mut markdown =
        String::from("# Answer\n\n- level 1\n  - level 2\n    - level 3\n\n```rust\nfn main() {}\n```\n\n");
    for i in 0..240 {
        markdown.push_str(&format!("Paragraph {i}.\n\n"));
    }
    markdown.push_str(&"长".repeat(9000));
    let blocks = notion::markdown::to_blocks(&markdown);
    let created = notion.append_children(&id, blocks.clone()).await.unwrap();
    assert_eq!(created.len(), blocks.len());
    let appends = sandbox.requests().iter().filter(|r| r.method == "PATCH" && r.path.ends_with("/children")).count();
    assert_eq!(appends, blocks.len().div_ceil(100));

    let tree = notion.block_tree(&id, 8).await.unwrap();
    assert_eq!(tree.len(), blocks.len());
    let text = render(&tree).text;
    assert!(text.starts_with("# Answer\n- level 1\n  - level 2\n    - level 3"), "{text}");
    assert!(text.contains("```rust\nfn main() {}\n```"));
    assert!(text.contains("Paragraph 239."));
    assert!(text.ends_with(&"长".repeat(100)));
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried() {
    let sandbox = NotionSandbox::start(TOKEN).await.unwrap();
    let (_, source) = questions(&sandbox);
    let id = question(&sandbox, &source, "Why?", "Pending");
    let notion = client(&sandbox);

    sandbox.inject(Some("GET"), "/v1/pages/", Fault::RateLimited { retry_after_secs: 1 }, 1);
    sandbox.inject(Some("GET"), "/v1/pages/", Fault::Overloaded { retry_after_secs: 0 }, 1);
    sandbox.inject(Some("GET"), "/v1/pages/", Fault::Status(502), 1);
    sandbox.inject(Some("GET"), "/v1/pages/", Fault::Status(409), 1);
    let started = Instant::now();
    let page = notion.retrieve_page(&id).await.unwrap();
    assert_eq!(page.title(), "Why?");
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After was honoured");
    let statuses: Vec<u16> = sandbox.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 529, 502, 409, 200]);

    sandbox.inject(None, "/v1/pages/", Fault::Status(500), 10);
    let error = notion.retrieve_page(&id).await.unwrap_err();
    assert_eq!(error.status(), Some(500));
    assert!(error.is_retryable(), "the caller may try again later");
    assert_eq!(sandbox.requests().len(), 5 + 5, "five attempts, then the error");
}

#[tokio::test]
async fn an_append_that_may_have_been_applied_is_not_repeated_blindly() {
    let sandbox = NotionSandbox::start(TOKEN).await.unwrap();
    let (_, source) = questions(&sandbox);
    let id = question(&sandbox, &source, "Why?", "Pending");
    let notion = client(&sandbox);
    let blocks = notion::markdown::to_blocks("Only once.");

    // A lost reply: the blocks exist, the client sees a 500 and must not append them again.
    sandbox.inject(Some("PATCH"), "/children", Fault::ApplyThenFail, 1);
    let error = notion.append_children(&id, blocks.clone()).await.unwrap_err();
    assert_eq!(error.status(), Some(500));
    assert_eq!(sandbox.page_text(&id).matches("Only once.").count(), 1);

    // A rejected append (429) was certainly not applied: it is retried.
    sandbox.inject(Some("PATCH"), "/children", Fault::RateLimited { retry_after_secs: 0 }, 1);
    notion.append_children(&id, blocks).await.unwrap();
    assert_eq!(sandbox.page_text(&id).matches("Only once.").count(), 2);
}

/// A client at Notion's documented rate, with the default burst.
fn paced_client(sandbox: &NotionSandbox) -> NotionClient {
    NotionClient::new(TOKEN, ClientOptions { base_url: sandbox.url(), ..ClientOptions::default() }).unwrap()
}

#[tokio::test]
async fn a_long_run_never_exceeds_the_sustained_rate() {
    let sandbox = NotionSandbox::start(TOKEN).await.unwrap();
    let (_, source) = questions(&sandbox);
    let id = question(&sandbox, &source, "Why?", "Pending");
    // The sandbox keeps the client's bucket, one token deeper for arrival jitter (the burst's
    // first request opens a connection, a later one reuses it and may arrive early): a client
    // sending more than `burst + 3 × t` in a span `t` would be answered 429.
    sandbox.set_rate_limit_with_burst(3, notion::DEFAULT_BURST + 1);
    let notion = paced_client(&sandbox);
    let requests = notion::DEFAULT_BURST as usize + 9;
    let started = Instant::now();
    // Concurrent callers, as concurrent questions are: clones share one budget.
    let reads: Vec<_> = (0..requests)
        .map(|_| {
            let (notion, id) = (notion.clone(), id.clone());
            tokio::spawn(async move { notion.retrieve_page(&id).await })
        })
        .collect();
    for read in reads {
        read.await.unwrap().unwrap();
    }
    assert!(sandbox.requests().iter().all(|r| r.status == 200), "no 429: {:?}", sandbox.requests());
    assert_eq!(notion.requests_sent(), requests as u64, "nothing was retried");
    // The burst leaves at once; the 9 after it at 3 a second.
    assert!(started.elapsed() >= Duration::from_millis(2900), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn one_question_is_not_paced() {
    let sandbox = NotionSandbox::start(TOKEN).await.unwrap();
    let (_, source) = questions(&sandbox);
    let id = question(&sandbox, &source, "Why?", "Pending");
    sandbox.set_rate_limit_with_burst(3, notion::DEFAULT_BURST);
    let notion = paced_client(&sandbox);
    let started = Instant::now();
    // A question's requests: read the page, Processing, read its blocks, append, Answered.
    notion.retrieve_page(&id).await.unwrap();
    notion.update_properties(&id, json!({ "Status": write::status("Processing") })).await.unwrap();
    notion.children(&id).await.unwrap();
    notion
        .append_children(&id, vec![json!({ "paragraph": { "rich_text": [{ "text": { "content": "An answer." } }] } })])
        .await
        .unwrap();
    notion.update_properties(&id, json!({ "Status": write::status("Answered") })).await.unwrap();
    // Evenly spaced at 3 a second, these five would take 1.33 s.
    assert!(started.elapsed() < Duration::from_millis(700), "paced: {:?}", started.elapsed());
    assert!(sandbox.requests().iter().all(|r| r.status == 200), "no 429: {:?}", sandbox.requests());
}

#[tokio::test]
async fn notion_refuses_what_breaks_its_limits() {
    let sandbox = NotionSandbox::start(TOKEN).await.unwrap();
    let (_, source) = questions(&sandbox);
    let id = question(&sandbox, &source, "Why?", "Pending");
    let http = reqwest::Client::new();
    let send = |body: Value| {
        http.patch(format!("{}/v1/blocks/{id}/children", sandbox.url()))
            .bearer_auth(TOKEN)
            .header("Notion-Version", "2025-09-03")
            .json(&body)
            .send()
    };
    let paragraph =
        |text: &str| json!({"type": "paragraph", "paragraph": {"rich_text": [{"text": {"content": text}}]}});
    let too_many = json!({ "children": (0..101).map(|_| paragraph("x")).collect::<Vec<_>>() });
    let too_long = json!({ "children": [paragraph(&"x".repeat(2001))] });
    for body in [too_many, too_long] {
        let response = send(body).await.unwrap();
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["code"], "validation_error");
        assert!(error["message"].as_str().unwrap().starts_with("body failed validation"), "{error}");
    }
    let response = http.get(format!("{}/v1/pages/{id}", sandbox.url())).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<Value>().await.unwrap()["code"], "missing_version");
    let error = NotionError::Transport("x".into());
    assert!(error.is_retryable());
}

fn paragraph(text: &str) -> Value {
    json!({ "type": "paragraph", "paragraph": { "rich_text": [{ "text": { "content": text } }] } })
}

fn item(text: &str, children: Vec<Value>) -> Value {
    let mut block = json!({ "type": "bulleted_list_item", "bulleted_list_item": {
        "rich_text": [{ "text": { "content": text } }] } });
    if !children.is_empty() {
        block["bulleted_list_item"]["children"] = json!(children);
    }
    block
}

fn table(rows: std::ops::Range<usize>) -> Value {
    let rows: Vec<Value> = rows
        .map(|i| {
            json!({ "type": "table_row", "table_row": { "cells": [
            [{ "text": { "content": i.to_string() } }], [{ "text": { "content": (i * i).to_string() } }]] } })
        })
        .collect();
    json!({ "type": "table", "table": { "table_width": 2, "has_column_header": false, "children": rows } })
}

#[tokio::test]
async fn long_tables_and_deep_nesting_arrive_whole_and_in_order() {
    let sandbox = NotionSandbox::start(TOKEN).await.unwrap();
    let (_, source) = questions(&sandbox);
    let id = question(&sandbox, &source, "Tables", "Pending");
    let notion = client(&sandbox);

    // An LLM's answer with a 150-row table: Notion takes 100 rows per array.
    let mut markdown = String::from("Before the table.\n\n| n | square |\n|---|---|\n");
    for i in 0..150 {
        markdown.push_str(&format!("| {i} | {} |\n", i * i));
    }
    markdown.push_str("\nAfter the table.\n");
    notion.append_children(&id, notion::markdown::to_blocks(&markdown)).await.unwrap();
    // A list four levels deep with a table at the third level, then a closing paragraph:
    // two levels of nesting per request are all Notion takes.
    let deep = item("one", vec![item("two", vec![item("three", vec![table(0..3), item("four", vec![])])])]);
    notion.append_children(&id, vec![deep, paragraph("The end.")]).await.unwrap();

    let refused: Vec<_> = sandbox.requests().into_iter().filter(|request| request.status >= 400).collect();
    assert!(refused.is_empty(), "every request within Notion's limits: {refused:?}");
    let tree = notion.block_tree(&id, 10).await.unwrap();
    let kinds: Vec<&str> = tree.iter().map(|block| block.kind.as_str()).collect();
    assert_eq!(kinds, ["paragraph", "table", "paragraph", "bulleted_list_item", "paragraph"]);
    let rows = &tree[1].children;
    assert_eq!(rows.len(), 151, "the header and all 150 rows");
    let first_cells: Vec<String> = rows
        .iter()
        .map(|row| row.payload()["cells"][0][0]["plain_text"].as_str().unwrap_or_default().to_owned())
        .collect();
    let expected: Vec<String> = std::iter::once("n".to_owned()).chain((0..150).map(|i| i.to_string())).collect();
    assert_eq!(first_cells, expected, "rows in order");
    let three = &tree[3].children[0].children[0];
    let under_three: Vec<&str> = three.children.iter().map(|block| block.kind.as_str()).collect();
    assert_eq!(under_three, ["table", "bulleted_list_item"], "the nested table and the fourth level, in order");
    assert_eq!(three.children[0].children.len(), 3);
    let text = render(&tree).text;
    assert!(text.ends_with("The end."), "{text}");
}

#[tokio::test]
async fn blocks_appended_after_a_block_stay_together_above_what_follows_it() {
    let sandbox = NotionSandbox::start(TOKEN).await.unwrap();
    let (_, source) = questions(&sandbox);
    let id = question(&sandbox, &source, "After", "Pending");
    let notion = client(&sandbox);
    let anchor = notion.append_children(&id, vec![paragraph("The question's details.")]).await.unwrap();
    // Meanwhile a person wrote below it.
    sandbox.type_paragraph(&id, "Typed meanwhile.");
    // 250 blocks: three requests, each after the last block the one before created.
    let answer: Vec<Value> = (0..250).map(|i| paragraph(&format!("line {i}"))).collect();
    notion.append_children_after(&id, Some(&anchor[0].id), answer, &notion::Unfenced).await.unwrap();
    let texts: Vec<String> = notion
        .children(&id)
        .await
        .unwrap()
        .iter()
        .map(|block| block.payload()["rich_text"][0]["plain_text"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(texts.len(), 252);
    assert_eq!(
        (texts[0].as_str(), texts[1].as_str(), texts[250].as_str()),
        ("The question's details.", "line 0", "line 249")
    );
    assert_eq!(texts[251], "Typed meanwhile.", "what the person wrote stays below");
    // An anchor that is not a child of the page is refused, and nothing is created.
    let error = notion.append_children_after(&id, Some("no-such-block"), vec![paragraph("x")], &notion::Unfenced).await;
    assert!(matches!(error, Err(ref error) if error.code() == Some("validation_error")), "{error:?}");
    assert_eq!(notion.children(&id).await.unwrap().len(), 252);
}
