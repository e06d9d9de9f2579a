//! `process_once` against the Notion sandbox, the LLM stand-in and both stores: every question
//! answered exactly once, through rate limits, failures, crashes and reopenings.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use cloud_fn::agent::OfflineLink;
use cloud_fn::context::ContextMode;
use cloud_fn::pipeline::{Outcome, Step};
use common::{UNKNOWN_TOPIC, World};
use notion::page::write;
use serde_json::{Value, json};
use testkit::{Fault, LlmFault};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_questions_are_answered_exactly_once() {
    let world = World::new().await;
    let pages: Vec<String> = (0..50).map(|i| world.ask(&format!("Question number {i}?"), &["health"])).collect();
    let report = world.default_pipeline().process_once().await.unwrap();
    assert_eq!((report.found, report.answered), (50, 50), "{report:?}");

    let again = world.default_pipeline().process_once().await.unwrap();
    assert_eq!(again.found, 0, "nothing is pending any more");
    for page in &pages {
        assert_eq!(world.status(page), "Answered");
        assert_eq!(world.answers(page), 1, "{page}");
        let footer = &world.footers(page)[0];
        assert!(
            footer.contains("mode: full")
                && footer.contains("model: primary/model")
                && footer.contains("sources: notes/sleep.md"),
            "{footer}"
        );
        let text = world.sandbox.page_text(page);
        assert!(text.contains("[1] Sleep notes (notes/sleep.md)"), "the agent's context reached the model: {text}");
        assert!(text.contains("You are a personal knowledge assistant."), "the default template was used");
    }
    assert_eq!(world.llm.requests().len(), 50);
    let stats = world.store.job_stats(cloud_fn::clock::Clock::now(world.clock.as_ref())).await.unwrap();
    assert_eq!(stats.by_status.get("answered"), Some(&50));
    assert_eq!(stats.today.answers, 50, "every answer called the LLM today: {stats:?}");
    assert!(stats.this_month.prompt_tokens >= stats.today.prompt_tokens && stats.today.cost > 0.0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_at_once_never_answer_a_question_twice() {
    let world = World::new().await;
    let pages: Vec<String> = (0..20).map(|i| world.ask(&format!("Q{i}"), &[])).collect();
    let (a, b) = (world.default_pipeline(), world.default_pipeline());
    let (first, second) = tokio::join!(a.process_once(), b.process_once());
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.answered + second.answered, 20, "{first:?} / {second:?}");
    for page in &pages {
        assert_eq!(world.answers(page), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notion_rate_limits_and_server_errors_are_weathered() {
    let world = World::new().await;
    let pages: Vec<String> = (0..10).map(|i| world.ask(&format!("Q{i}"), &[])).collect();
    world.sandbox.inject(None, "/query", Fault::RateLimited { retry_after_secs: 0 }, 2);
    world.sandbox.inject(Some("PATCH"), "/v1/pages/", Fault::Status(503), 3);
    world.sandbox.inject(Some("GET"), "/children", Fault::Overloaded { retry_after_secs: 0 }, 3);
    world.sandbox.inject(Some("PATCH"), "/children", Fault::RateLimited { retry_after_secs: 0 }, 3);
    let report = world.default_pipeline().process_once().await.unwrap();
    assert_eq!(report.answered, 10, "{report:?}");
    for page in &pages {
        assert_eq!((world.answers(page), world.status(page).as_str()), (1, "Answered"));
    }
    assert!(world.sandbox.requests().iter().any(|r| r.status == 429));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_failures_fall_back_to_the_next_model_or_fail_clearly() {
    let world = World::new().await;
    let fallback = world.ask("Use the fallback", &[]);
    world.llm.inject(Some("flaky/model"), LlmFault::Status(502), 3);
    world.llm.inject(Some("second/model"), LlmFault::ErrorIn200, 1);
    let pipeline = world.pipeline(Some(world.llm(&["flaky/model", "second/model"])), world.agent.clone());
    pipeline.process_once().await.unwrap();
    assert_eq!(world.status(&fallback), "Answered");
    assert!(world.footers(&fallback)[0].contains("model: second/model"), "{:?}", world.footers(&fallback));

    let broke = world.ask("No credits", &[]);
    world.llm.inject(None, LlmFault::Status(402), 1);
    let report = world.default_pipeline().process_once().await.unwrap();
    assert_eq!(report.failed, 1);
    assert_eq!(world.status(&broke), "Failed");
    assert!(world.sandbox.page_text(&broke).contains("insufficient credits"), "{}", world.sandbox.page_text(&broke));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_by_later_runs_then_given_up() {
    let world = World::new().await;
    let page = world.ask("Flaky", &[]);
    world.llm.inject(None, LlmFault::Status(500), 1000);
    for attempt in 1..=3 {
        let report = world.default_pipeline().process_once().await.unwrap();
        let expected = if attempt < 3 { "retrying" } else { "failed" };
        let counts = (report.retrying, report.failed);
        assert_eq!(counts, if expected == "retrying" { (1, 0) } else { (0, 1) }, "attempt {attempt}: {report:?}");
        // A retry waits for its delay: the next run leaves the page alone until then.
        if attempt < 3 {
            assert_eq!(world.default_pipeline().process_once().await.unwrap().skipped, 1);
            world.clock.advance(61);
        }
    }
    assert_eq!(world.status(&page), "Failed");
    let text = world.sandbox.page_text(&page);
    assert!(text.contains("could not answer this question"), "{text}");
    assert!(text.contains("3 attempts did not finish; the last: LLM"), "the reason says what kept failing: {text}");
    assert_eq!(world.answers(&page), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_step_still_ends_with_exactly_one_answer() {
    for step in Step::ALL {
        let world = World::new().await;
        let page = world.ask(&format!("Crash after {step:?}"), &[]);
        let crashing = world.default_pipeline();
        let crashing = Arc::new(Arc::try_unwrap(crashing).ok().unwrap().crash_after(step));
        assert!(crashing.process_once().await.is_err(), "{step:?}");
        if step <= Step::Recorded {
            // The lease holds until it expires; then the next run takes the job over (or, once
            // the job was recorded, only sets the final status the crashed run did not).
            let report = world.default_pipeline().process_once().await.unwrap();
            assert_eq!(report.skipped, 1, "{step:?}: {report:?}");
            world.clock.advance(301);
        }
        let report = world.default_pipeline().process_once().await.unwrap();
        if step < Step::StatusSet {
            assert_eq!(report.answered, 1, "{step:?}: {report:?}");
        }
        assert_eq!(world.answers(&page), 1, "{step:?}");
        assert_eq!(world.footers(&page).len(), 1, "{step:?}");
        assert_eq!(world.status(&page), "Answered", "{step:?}");
        let finished = world.default_pipeline().process_once().await.unwrap();
        assert_eq!(finished.found, 0, "{step:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_append_reply_does_not_duplicate_the_answer() {
    let world = World::new().await;
    let page = world.ask("Lost reply", &[]);
    world.sandbox.inject(Some("PATCH"), "/children", Fault::ApplyThenFail, 1);
    let report = world.default_pipeline().process_once().await.unwrap();
    assert_eq!(report.retrying, 1, "{report:?}");
    world.clock.advance(61);
    world.default_pipeline().process_once().await.unwrap();
    assert_eq!((world.answers(&page), world.footers(&page).len()), (1, 1));
    assert_eq!(world.status(&page), "Answered");
    assert_eq!(world.llm.requests().len(), 1, "the complete answer was found, the model was not asked again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_agent_means_cached_then_template_context() {
    let world = World::new().await;
    let first = world.ask("While online", &["AI效率"]);
    world.default_pipeline().process_once().await.unwrap();
    assert_eq!(world.status(&first), "Answered");

    world.agent.live.store(false, Ordering::SeqCst);
    let cached = world.ask("While offline", &["ai效率"]);
    let untagged = world.ask("Offline, no tag", &["new-topic"]);
    let report = world.default_pipeline().process_once().await.unwrap();
    assert_eq!(report.answered_offline, 2, "{report:?}");
    assert_eq!(world.status(&cached), "Answered (offline)");
    assert!(world.footers(&cached)[0].contains("mode: cached"));
    assert!(world.sandbox.page_text(&cached).contains("[1] Sleep notes"), "context cached from the first question");
    assert!(world.sandbox.page_text(&cached).contains("你是一位注重实效的效率教练"), "the tag's template");
    assert!(world.footers(&untagged)[0].contains("mode: template"));

    // Stale cache is not used.
    world.clock.advance(8 * 86400);
    let stale = world.ask("Much later", &["AI效率"]);
    world.default_pipeline().process_once().await.unwrap();
    assert!(world.footers(&stale)[0].contains("mode: template"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_no_note_matches_is_not_labelled_full_and_leaves_the_cache_alone() {
    let world = World::new().await;
    let first = world.ask("While online", &["AI效率"]);
    world.default_pipeline().process_once().await.unwrap();
    assert!(world.footers(&first)[0].contains("mode: full"));

    let unmatched = world.ask(&format!("What is {UNKNOWN_TOPIC}?"), &["AI效率"]);
    let report = world.default_pipeline().process_once().await.unwrap();
    assert_eq!((report.answered, report.answered_offline), (1, 0), "the agent answered: {report:?}");
    assert_eq!(world.status(&unmatched), "Answered");
    let footer = &world.footers(&unmatched)[0];
    assert!(
        footer.contains("mode: unmatched (no note matched this question)") && !footer.contains("sources:"),
        "{footer}"
    );
    let prompt = world.llm.requests().last().map(|request| Value::Array(request.messages.clone()).to_string()).unwrap();
    assert!(prompt.contains("nothing in the user's notes matched"), "the model is told: {prompt}");
    assert!(!prompt.contains("[1] Sleep notes"), "no stale passages from the cache: {prompt}");

    // The empty reply did not replace what the tag's cache holds.
    world.agent.live.store(false, Ordering::SeqCst);
    let offline = world.ask("While offline", &["AI效率"]);
    world.default_pipeline().process_once().await.unwrap();
    assert!(world.footers(&offline)[0].contains("mode: cached"));
    assert!(world.sandbox.page_text(&offline).contains("[1] Sleep notes"), "the cache still holds the passages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_llm_key_the_answer_quotes_the_notes_and_says_why() {
    let world = World::new().await;
    let page = world.ask("No key", &[]);
    world.pipeline(None, world.agent.clone()).process_once().await.unwrap();
    let text = world.sandbox.page_text(&page);
    assert!(text.contains("OPENROUTER_API_KEY is not set"), "{text}");
    assert!(text.contains("[1] Sleep notes (notes/sleep.md)"));
    assert_eq!(world.status(&page), "Answered");
    assert!(world.llm.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_question_is_answered_again_in_place_of_its_answer() {
    let world = World::new().await;
    let page = world.ask("Ask me twice", &[]);
    world.default_pipeline().process_once().await.unwrap();
    world.sandbox.set_property(&page, "Status", write::status("Pending"));
    world.default_pipeline().process_once().await.unwrap();
    assert_eq!((world.answers(&page), world.footers(&page).len()), (1, 1));
    assert_eq!(world.llm.requests().len(), 2);
    assert_eq!(world.status(&page), "Answered");
    let second_prompt = &world.llm.requests()[1].messages[1]["content"];
    assert!(!second_prompt.as_str().unwrap().contains("Stand-in answer"), "earlier answers are not sent as details");
    world.default_pipeline().process_once().await.unwrap();
    assert_eq!(world.answers(&page), 1, "an answered question stays answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_pages_get_a_clear_outcome() {
    let world = World::new().await;
    let untitled = world.ask("", &[]);
    let huge = world.ask("Huge body", &[]);
    let paragraphs: Vec<Value> = (0..100)
        .map(|i| json!({"type": "paragraph", "paragraph": {"rich_text": [{"text": {"content": format!("{i} {}", "detail ".repeat(250))}}]}}))
        .collect();
    for _ in 0..3 {
        world.notion().append_children(&huge, paragraphs.clone()).await.unwrap();
    }
    let odd = world.ask("Odd blocks", &[]);
    world.sandbox.add_raw_block(&odd, "unsupported", json!({}));
    world.sandbox.add_raw_block(&odd, "ai_block", json!({}));
    world.sandbox.add_raw_block(&odd, "paragraph", json!({"rich_text": [{"plain_text": "Real detail"}]}));

    let report = world.default_pipeline().process_once().await.unwrap();
    assert_eq!(report.answered, 3, "{report:?}");
    assert!(world.sandbox.page_text(&untitled).contains("(untitled question)"));
    let odd_prompt = world
        .llm
        .requests()
        .iter()
        .find(|r| r.messages[1]["content"].as_str().unwrap().contains("Odd blocks"))
        .cloned()
        .unwrap();
    assert!(odd_prompt.messages[1]["content"].as_str().unwrap().contains("Real detail"));
    assert_eq!(world.answers(&huge), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_link_answers_from_templates_with_the_offline_status() {
    let world = World::new().await;
    let page = world.ask("Nobody home", &[]);
    let report = world.pipeline(Some(world.llm(&["m"])), Arc::new(OfflineLink)).process_once().await.unwrap();
    assert!(matches!(&report.pages[0].1, Outcome::Answered { mode: ContextMode::Template, .. }));
    assert_eq!(world.status(&page), "Answered (offline)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_works_the_same_on_dynamodb() {
    let dynalite = testkit::Dynalite::start().expect("dynalite is installed by scripts/setup.sh");
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .endpoint_url(dynalite.url())
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "static"))
        .build();
    let store =
        cloud_fn::store::dynamo::DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), "questions-test");
    store.ensure_table().await.unwrap();
    let world = World::with_store(Arc::new(store), tempfile::tempdir().unwrap()).await;
    let pages: Vec<String> = (0..10).map(|i| world.ask(&format!("Q{i}"), &["t"])).collect();
    let crashing = Arc::new(Arc::try_unwrap(world.default_pipeline()).ok().unwrap().crash_after(Step::Appended));
    assert!(crashing.process_once().await.is_err());
    world.clock.advance(301);
    world.default_pipeline().process_once().await.unwrap();
    for page in &pages {
        assert_eq!((world.answers(page), world.status(page).as_str()), (1, "Answered"));
    }
    assert_eq!(world.store.job_stats(0).await.unwrap().by_status.get("answered"), Some(&10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_outlives_its_lease_steps_aside() {
    let world = World::new().await;
    let page = world.ask("Slow model", &[]);
    world.llm.inject(None, LlmFault::Delay(std::time::Duration::from_millis(1500)), 1);
    let slow = world.default_pipeline();
    let slow_run = tokio::spawn(async move { slow.process_once().await });
    // While the first run waits for the model, its lease runs out and another run takes over.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    world.clock.advance(301);
    let fast = world.default_pipeline().process_once().await.unwrap();
    assert_eq!(fast.answered, 1, "{fast:?}");
    let slow = slow_run.await.unwrap().unwrap();
    assert_eq!(slow.skipped, 1, "the first run learns it lost the job before appending: {slow:?}");
    assert_eq!((world.answers(&page), world.footers(&page).len()), (1, 1));
}

/// An answer as long and deep as models write them: a 150-row table and a nested list.
fn long_answer() -> String {
    let mut markdown = String::from("Here is the table.\n\n| n | square |\n|---|---|\n");
    for i in 0..150 {
        markdown.push_str(&format!("| {i} | {} |\n", i * i));
    }
    markdown.push_str("\n- first\n  - second\n    - third\n\nThat is all.\n");
    markdown
}

fn table_rows(world: &World, page: &str) -> Vec<usize> {
    world
        .sandbox
        .blocks(page)
        .iter()
        .filter(|block| block["type"] == "table")
        .map(|table| table["children"].as_array().map_or(0, Vec::len))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_with_long_tables_and_nested_lists_are_written_whole() {
    let world = World::new().await;
    world.llm.answer_with(Some(&long_answer()));
    let page = world.ask("Squares up to 150?", &[]);
    let report = world.default_pipeline().process_once().await.unwrap();
    assert_eq!(report.answered, 1, "{report:?}");
    assert_eq!(world.status(&page), "Answered");
    assert_eq!(table_rows(&world, &page), [151], "the header and 150 rows");
    assert_eq!(world.footers(&page).len(), 1);
    let text = world.sandbox.page_text(&page);
    assert!(text.contains("third") && text.contains("That is all."), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_lease_lapses_mid_append_stops_before_its_next_write() {
    let world = World::new().await;
    world.llm.answer_with(Some(&long_answer()));
    let page = world.ask("Slow Notion", &[]);
    // The answer takes two appends (the table's last 50 rows follow the first request). Notion
    // holds the second one with 429s for longer than the lease: the first run is then asleep
    // in its retry while another run takes the job over.
    world.sandbox.inject_after(Some("PATCH"), "/children", Fault::RateLimited { retry_after_secs: 2 }, 1, 1);
    let slow = world.default_pipeline();
    let slow_run = tokio::spawn(async move { slow.process_once().await });
    for _ in 0..200 {
        if world.sandbox.requests().iter().any(|request| request.status == 429) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    world.clock.advance(301);
    let takeover = world.default_pipeline().process_once().await.unwrap();
    assert_eq!(takeover.answered, 1, "{takeover:?}");
    let slow = slow_run.await.unwrap().unwrap();
    assert_eq!(slow.skipped, 1, "the first run learns it lost the job before writing again: {slow:?}");
    assert_eq!((world.answers(&page), world.footers(&page).len()), (1, 1), "one answer, never two");
    assert_eq!(table_rows(&world, &page), [151], "never garbled: one whole table");
    assert!(world.sandbox.page_text(&page).trim_end().ends_with(world.footers(&page)[0].trim()));
    assert_eq!(world.status(&page), "Answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_lost_the_job_never_marks_it_failed() {
    let world = World::new().await;
    let page = world.ask("Answered by the other run", &[]);
    // The first run's model call fails for good (401), but only after its lease ran out and
    // another run answered the question.
    world.llm.inject(None, LlmFault::SlowFailure(std::time::Duration::from_millis(1500), 401), 1);
    let doomed = world.default_pipeline();
    let doomed_run = tokio::spawn(async move { doomed.process_once().await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    world.clock.advance(301);
    let takeover = world.default_pipeline().process_once().await.unwrap();
    assert_eq!(takeover.answered, 1, "{takeover:?}");
    let doomed = doomed_run.await.unwrap().unwrap();
    assert_eq!(doomed.failed, 0, "{doomed:?}");
    assert_eq!(doomed.skipped, 1, "{doomed:?}");
    assert_eq!(world.status(&page), "Answered");
    assert!(!world.sandbox.page_text(&page).contains("could not answer"), "no failure callout");
    assert_eq!(world.store.get_job(&page).await.unwrap().unwrap().status, cloud_fn::store::JobStatus::Answered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_takes_at_most_its_page_cap_and_leaves_the_rest_for_the_next() {
    let world = World::new().await;
    let pages: Vec<String> = (0..5).map(|i| world.ask(&format!("Capped {i}"), &[])).collect();
    let mut capped = Arc::try_unwrap(world.default_pipeline()).ok().unwrap();
    capped.settings_mut().max_pages_per_run = 2;
    let capped = Arc::new(capped);
    let first = capped.process_once().await.unwrap();
    assert_eq!((first.found, first.answered, first.deferred), (5, 2, 3), "{first:?}");
    let answered = pages.iter().filter(|page| world.status(page) == "Answered").count();
    assert_eq!(answered, 2, "the others are left alone, still Pending");
    capped.process_once().await.unwrap();
    capped.process_once().await.unwrap();
    for page in &pages {
        assert_eq!((world.status(page).as_str(), world.answers(page)), ("Answered", 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rag_enabled_false_never_asks_the_agent() {
    let world = World::new().await;
    // The configured pipeline, as `serve`, `process-once` and the Lambda front build it, with a
    // live agent as its link.
    let run = |enabled: &str| {
        let pipeline = world.configured_pipeline(&world.database, &[("LOCAL_RAG_ENABLED", enabled)]);
        async move { pipeline.process_once().await.unwrap() }
    };
    let asked = world.ask("With the agent", &[]);
    run("true").await;
    assert_eq!(world.status(&asked), "Answered");
    assert!(world.footers(&asked)[0].contains("mode: full"), "{:?}", world.footers(&asked));

    // The ladder as if the agent were offline: the context the first answer cached.
    let not_asked = world.ask("Without the agent", &[]);
    let report = run("false").await;
    assert!(matches!(&report.pages[0].1, Outcome::Answered { mode: ContextMode::Cached, .. }), "{report:?}");
    assert_eq!(world.status(&not_asked), "Answered (offline)");
    assert!(world.footers(&not_asked)[0].contains("mode: cached"), "{:?}", world.footers(&not_asked));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_cost_fill_the_number_properties_a_database_has() {
    use testkit::{PropertyKind, PropertySchema};
    let world = World::new().await;
    let (database, source) = world.sandbox.create_database(
        "Questions with usage",
        vec![
            PropertySchema::new("Question", PropertyKind::Title),
            PropertySchema::new("Status", PropertyKind::Select),
            PropertySchema::new("Tokens", PropertyKind::Number),
            PropertySchema::new("Cost", PropertyKind::Number),
        ],
    );
    let page = world.sandbox.add_page(
        &source,
        json!({ "Question": write::title("How much did this cost?"), "Status": write::select("Pending") }),
        Value::Null,
    );
    let llm = world.llm.url();
    let settings =
        [("OPENROUTER_API_KEY", common::KEY), ("OPENROUTER_BASE_URL", llm.as_str()), ("LLM_MODELS", "usage/model")];
    let pipeline = world.configured_pipeline(&database, &settings);
    pipeline.process_once().await.unwrap();

    let properties = world.sandbox.page(&page).unwrap()["properties"].clone();
    assert_eq!(properties["Status"]["select"]["name"], "Answered");
    let tokens = properties["Tokens"]["number"].as_u64().expect("Tokens filled");
    let cost = properties["Cost"]["number"].as_f64().expect("Cost filled");
    // The stand-in bills a millionth of a credit per token, as OpenRouter reports `usage.cost`.
    assert!(tokens > 0 && (cost - tokens as f64 * 1e-6).abs() < 1e-9, "{properties}");
    let footer = &world.footers(&page)[0];
    assert!(
        footer.contains("model: usage/model · ") && footer.contains(" tokens (") && footer.contains('$'),
        "{footer}"
    );
}

/// The fake agent, noting when it was first asked.
struct TimedAgent {
    inner: Arc<common::FakeAgent>,
    asked: std::sync::Mutex<Option<std::time::Instant>>,
}

#[async_trait::async_trait]
impl cloud_fn::agent::AgentLink for TimedAgent {
    async fn is_live(&self) -> bool {
        self.inner.is_live().await
    }

    async fn search(
        &self,
        request: &protocol::SearchRequest,
        deadline: std::time::Duration,
    ) -> Result<protocol::SearchResponse, cloud_fn::agent::LinkError> {
        self.asked.lock().unwrap().get_or_insert_with(std::time::Instant::now);
        self.inner.search(request, deadline).await
    }

    async fn status(&self) -> cloud_fn::agent::LinkStatus {
        self.inner.status().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_searches_while_notion_is_being_written() {
    let world = World::new().await;
    let page = world.ask("Searched while Processing is being set?", &["health"]);
    // Setting Processing (the first page write) takes Notion a while.
    let slow = std::time::Duration::from_millis(800);
    world.sandbox.inject(Some("PATCH"), "/v1/pages/", Fault::Delay(slow), 1);
    let agent = Arc::new(TimedAgent { inner: world.agent.clone(), asked: Default::default() });
    let pipeline = world.pipeline(Some(world.llm(&["primary/model"])), agent.clone());
    let started = std::time::Instant::now();
    let report = pipeline.process_once().await.unwrap();
    assert_eq!(report.answered, 1, "{report:?}");
    assert_eq!(world.answers(&page), 1);
    let asked = agent.asked.lock().unwrap().expect("the agent was asked");
    // In sequence the search would start only after the slow write and the block read.
    assert!(asked.duration_since(started) < slow, "the search waited {:?} for Notion", asked.duration_since(started));
}
