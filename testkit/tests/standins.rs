//! The stand-ins behave like the services they replace.

use std::time::Duration;

use serde_json::{Value, json};
use testkit::{LlmFault, LlmStandIn, NotionSandbox, PropertyKind, PropertySchema};

const TOKEN: &str = "secret_t";

async fn query(sandbox: &NotionSandbox, source: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/data_sources/{source}/query", sandbox.url()))
        .bearer_auth(TOKEN)
        .header("Notion-Version", "2025-09-03")
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn titles(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|page| page["properties"]["Name"]["title"][0]["plain_text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn sandbox_filters_like_notion() {
    let sandbox = NotionSandbox::start(TOKEN).await.unwrap();
    let (_, source) = sandbox.create_database(
        "Tasks",
        vec![
            PropertySchema::new("Name", PropertyKind::Title),
            PropertySchema::new("Done", PropertyKind::Checkbox),
            PropertySchema::new("Kind", PropertyKind::Select),
        ],
    );
    let add = |name: &str, done: bool, kind: &str| {
        sandbox.add_page(
            &source,
            json!({ "Name": {"title": [{"text": {"content": name}}]}, "Done": {"checkbox": done}, "Kind": {"select": {"name": kind}} }),
            Value::Null,
        )
    };
    add("a", true, "x");
    sandbox.advance_clock(Duration::from_secs(120));
    add("b", false, "x");
    let c = add("c", false, "y");
    sandbox.trash_page(&c);

    let (status, body) =
        query(&sandbox, &source, json!({"filter": {"property": "Done", "checkbox": {"equals": false}}})).await;
    assert_eq!((status, titles(&body)), (200, vec!["b".to_owned()]), "trashed pages are not returned");

    let ascending = json!({"sorts": [{"timestamp": "created_time", "direction": "ascending"}]});
    assert_eq!(titles(&query(&sandbox, &source, ascending).await.1), ["a", "b"]);

    let a_time =
        query(&sandbox, &source, json!({"filter": {"property": "Name", "title": {"equals": "a"}}})).await.1["results"]
            [0]["created_time"]
            .clone();
    assert!(a_time.as_str().unwrap().ends_with(":00.000Z"), "page times are minute-truncated: {a_time}");
    let after = json!({"filter": {"timestamp": "created_time", "created_time": {"after": a_time}}});
    assert_eq!(titles(&query(&sandbox, &source, after).await.1), ["b"]);

    let compound = json!({"filter": {"or": [
        {"property": "Kind", "select": {"equals": "y"}},
        {"and": [{"property": "Done", "checkbox": {"equals": true}}, {"property": "Kind", "select": {"equals": "x"}}]}
    ]}});
    assert_eq!(titles(&query(&sandbox, &source, compound).await.1), ["a"]);

    let too_deep =
        json!({"filter": {"and": [{"or": [{"and": [{"property": "Done", "checkbox": {"equals": true}}]}]}]}});
    let unknown = json!({"filter": {"property": "Nope", "checkbox": {"equals": true}}});
    let big_page = json!({"page_size": 101});
    for body in [too_deep, unknown, big_page] {
        let (status, error) = query(&sandbox, &source, body).await;
        assert_eq!((status, error["code"].as_str()), (400, Some("validation_error")), "{error}");
    }
    let (status, error) = query(&sandbox, "no-such-source", json!({})).await;
    assert_eq!((status, error["code"].as_str()), (404, Some("object_not_found")));
}

#[tokio::test]
async fn llm_stand_in_answers_and_fails_on_demand() {
    let standin = LlmStandIn::start("sk-or-test").await.unwrap();
    let client = reqwest::Client::new();
    let ask = |key: &'static str, model: &'static str| {
        client
            .post(format!("{}/chat/completions", standin.url()))
            .bearer_auth(key)
            .json(&json!({"model": model, "messages": [
                {"role": "system", "content": "Answer from the notes."},
                {"role": "user", "content": "[1] Sleep (sleep.md)\n\nHow long should I sleep?"}
            ]}))
            .send()
    };
    let response = ask("sk-or-test", "m/a").await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.contains("**Model:** m/a") && content.contains("[1] Sleep (sleep.md)"), "{content}");
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert!(body["usage"]["cost"].as_f64().unwrap() > 0.0);

    assert_eq!(ask("wrong", "m/a").await.unwrap().status(), 401);
    standin.inject(Some("m/a"), LlmFault::RateLimited { retry_after_secs: 3 }, 1);
    standin.inject(None, LlmFault::ErrorIn200, 1);
    let limited = ask("sk-or-test", "m/a").await.unwrap();
    assert_eq!((limited.status().as_u16(), limited.headers()["retry-after"].to_str().unwrap()), (429, "3"));
    let hidden = ask("sk-or-test", "m/b").await.unwrap();
    assert_eq!(hidden.status(), 200);
    assert_eq!(hidden.json::<Value>().await.unwrap()["error"]["code"], 502);
    assert_eq!(standin.requests().len(), 4);
}

#[tokio::test]
async fn dynalite_starts_on_a_free_port_and_speaks_dynamodb() {
    let dynalite = testkit::Dynalite::start().expect("dynalite is installed by scripts/setup.sh");
    let response = reqwest::Client::new()
        .post(dynalite.url())
        .header("X-Amz-Target", "DynamoDB_20120810.ListTables")
        .header("Content-Type", "application/x-amz-json-1.0")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
        )
        .header("X-Amz-Date", "20260101T000000Z")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["TableNames"], json!([]));
}
