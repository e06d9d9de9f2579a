//! What a question's page chooses for itself: its `Model`, what retrieval searches (`Sources`,
//! `Search`), and the language of the answer — against the sandbox and the LLM stand-in.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use cloud_fn::pipeline::Pipeline;
use common::World;
use notion::page::write;
use serde_json::{Value, json};
use testkit::{LlmFault, PropertyKind, PropertySchema};

/// A questions database with every optional property, and the pipeline `cloud-fn` builds for it.
fn database(world: &World) -> (String, Arc<Pipeline>) {
    let (database, source) = world.sandbox.create_database(
        "Questions with choices",
        vec![
            PropertySchema::new("Question", PropertyKind::Title),
            PropertySchema::new("Status", PropertyKind::Select),
            PropertySchema::new("Tags", PropertyKind::MultiSelect),
            PropertySchema::new("Model", PropertyKind::Select),
            PropertySchema::new("Sources", PropertyKind::MultiSelect),
            PropertySchema::new("Search", PropertyKind::Select),
        ],
    );
    let llm = world.llm.url();
    let settings =
        [("OPENROUTER_API_KEY", common::KEY), ("OPENROUTER_BASE_URL", llm.as_str()), ("LLM_MODELS", "primary/model")];
    (source, world.configured_pipeline(&database, &settings))
}

fn ask(world: &World, source: &str, title: &str, tags: &[&str], choices: Value) -> String {
    let tags: Vec<String> = tags.iter().map(|tag| (*tag).to_owned()).collect();
    let mut properties = json!({ "Question": write::title(title), "Status": write::select("Pending"), "Tags": write::multi_select(&tags) });
    for (name, value) in choices.as_object().into_iter().flatten() {
        properties[name] = value.clone();
    }
    world.sandbox.add_page(source, properties, Value::Null)
}

fn status(world: &World, page: &str) -> String {
    world.sandbox.page(page).unwrap()["properties"]["Status"]["select"]["name"].as_str().unwrap_or_default().to_owned()
}

/// The LLM request whose prompt ends with `question`.
fn request_for(world: &World, question: &str) -> testkit::llm_standin::LlmRequest {
    let requests = world.llm.requests();
    let found = requests.iter().rev().find(|request| {
        request.messages[1]["content"].as_str().is_some_and(|user| user.trim_end().ends_with(question))
    });
    found.cloned().unwrap_or_else(|| panic!("no request for {question:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_picks_its_model_and_an_unknown_one_falls_back_with_a_note() {
    let world = World::new().await;
    let (source, pipeline) = database(&world);
    let chosen = ask(&world, &source, "Which model answers?", &[], json!({ "Model": write::select("premium/model") }));
    // OpenRouter answers 400 for a model id it does not know.
    world.llm.inject(Some("typo/modle"), LlmFault::Status(400), 10);
    let unknown = ask(&world, &source, "And a typo?", &[], json!({ "Model": write::select("typo/modle") }));
    let plain = ask(&world, &source, "No choice?", &[], json!({}));
    pipeline.process_once().await.unwrap();

    assert_eq!(request_for(&world, "Which model answers?").model, "premium/model");
    let footers = world.footers(&chosen);
    assert!(footers[0].contains("model: premium/model") && !footers[0].contains("not available"), "{footers:?}");
    assert_eq!(request_for(&world, "And a typo?").model, "primary/model", "LLM_MODELS after the unknown one");
    let footer = &world.footers(&unknown)[0];
    assert!(footer.contains("model: primary/model · "), "{footer}");
    assert!(footer.contains("Model “typo/modle” was not available; answered with the configured models"), "{footer}");
    assert_eq!(request_for(&world, "No choice?").model, "primary/model");
    for page in [&chosen, &unknown, &plain] {
        assert_eq!(status(&world, page), "Answered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_narrow_retrieval_and_none_asks_the_model_alone() {
    let world = World::new().await;
    let (source, pipeline) = database(&world);
    let notion_only = ask(
        &world,
        &source,
        "From Notion only?",
        &["sleep"],
        json!({ "Sources": write::multi_select(&["Notion".into()]) }),
    );
    let nothing = ask(&world, &source, "Without my notes?", &["sleep"], json!({ "Search": write::select("None") }));
    pipeline.process_once().await.unwrap();

    let prompt =
        request_for(&world, "From Notion only?").messages[1]["content"].as_str().unwrap_or_default().to_owned();
    assert!(prompt.contains("Searched only: [Notion]"), "the agent was asked for Notion knowledge only: {prompt}");
    let footer = &world.footers(&notion_only)[0];
    assert!(footer.contains("mode: full") && footer.contains("searched: Notion knowledge only"), "{footer}");

    let prompt =
        request_for(&world, "Without my notes?").messages[1]["content"].as_str().unwrap_or_default().to_owned();
    assert!(prompt.starts_with("The user asked for an answer without searching their notes."), "{prompt}");
    let footer = &world.footers(&nothing)[0];
    assert!(footer.contains("mode: none") && footer.contains("searched: nothing, as asked"), "{footer}");
    assert_eq!(status(&world, &nothing), "Answered", "not an offline answer: nothing was wanted");
    assert_eq!(world.agent.searches.load(Ordering::SeqCst), 1, "the agent was asked once, for the narrowed question");

    // A narrowed search is not what the tag's cache keeps: offline, a question on the tag gets
    // the template, not the Notion-only passages.
    world.agent.live.store(false, Ordering::SeqCst);
    let offline = ask(&world, &source, "Offline on the tag?", &["sleep"], json!({}));
    pipeline.process_once().await.unwrap();
    assert!(world.footers(&offline)[0].contains("mode: template"), "{:?}", world.footers(&offline));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_is_asked_for_in_the_language_of_the_question() {
    let world = World::new().await;
    let (source, pipeline) = database(&world);
    ask(&world, &source, "怎样才能睡得更好？", &[], json!({}));
    ask(&world, &source, "How do I sleep better?", &[], json!({}));
    pipeline.process_once().await.unwrap();
    let system =
        |question: &str| request_for(&world, question).messages[0]["content"].as_str().unwrap_or_default().to_owned();
    assert!(system("怎样才能睡得更好？").contains("The question is written in Chinese: answer in Chinese"));
    assert!(system("How do I sleep better?").contains("Answer in the language the question is written in"));
}

/// A database with a `Helpful` property of `kind` (select or checkbox).
fn rated_database(world: &World, kind: PropertyKind) -> (String, String) {
    world.sandbox.create_database(
        "Questions with feedback",
        vec![
            PropertySchema::new("Question", PropertyKind::Title),
            PropertySchema::new("Status", PropertyKind::Select),
            PropertySchema::new("Tags", PropertyKind::MultiSelect),
            PropertySchema::new("Helpful", kind),
        ],
    )
}

fn pipeline_for(world: &World, database: &str) -> Arc<Pipeline> {
    let llm = world.llm.url();
    let settings =
        [("OPENROUTER_API_KEY", common::KEY), ("OPENROUTER_BASE_URL", llm.as_str()), ("LLM_MODELS", "primary/model")];
    world.configured_pipeline(database, &settings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helpful_marks_are_recorded_by_mode_and_model_and_cleared_by_a_new_turn() {
    let world = World::new().await;
    let (database, source) = rated_database(&world, PropertyKind::Select);
    let good = ask(&world, &source, "A good answer?", &["sleep"], json!({}));
    pipeline_for(&world, &database).process_once().await.unwrap();
    world.agent.live.store(false, Ordering::SeqCst);
    let poor = ask(&world, &source, "A poor answer?", &["unknown tag"], json!({}));
    pipeline_for(&world, &database).process_once().await.unwrap();
    world.agent.live.store(true, Ordering::SeqCst);

    // Marked in Notion; the next scheduled run's sweep reads the marks.
    world.sandbox.set_property(&good, "Helpful", write::select("👍"));
    world.sandbox.set_property(&poor, "Helpful", write::select("No"));
    pipeline_for(&world, &database).process_once().await.unwrap();
    let now = cloud_fn::clock::Clock::now(world.clock.as_ref());
    let feedback = world.store.job_stats(now).await.unwrap().feedback;
    assert_eq!((feedback.by_mode["full"].helpful, feedback.by_mode["template"].unhelpful), (1, 1), "{feedback:?}");
    assert_eq!(feedback.by_model["primary/model"].ratio, 0.5);
    assert_eq!(feedback.unhelpful.len(), 1);
    assert_eq!(feedback.unhelpful[0].question.as_deref(), Some("A poor answer?"));

    // A webhook event about a marked page records its mark at once (no sweep needed).
    let pipeline = pipeline_for(&world, &database);
    world.sandbox.set_property(&poor, "Helpful", write::select("Yes"));
    pipeline.process_pages(std::slice::from_ref(&poor)).await.unwrap();
    let job = world.store.get_job(&poor).await.unwrap().unwrap();
    assert_eq!(job.helpful, Some(true));

    // A follow-up is a new answer: the mark of the old one is cleared on the page and not
    // carried over; the sources of the new answer are kept for when it is marked.
    world.sandbox.type_paragraph(&good, "And what else?");
    world.sandbox.set_property(&good, "Status", write::select("Pending"));
    pipeline.process_once().await.unwrap();
    let page = world.sandbox.page(&good).unwrap();
    assert!(page["properties"]["Helpful"]["select"].is_null(), "cleared: {}", page["properties"]["Helpful"]);
    let job = world.store.get_job(&good).await.unwrap().unwrap();
    assert_eq!((job.generation, job.helpful), (2, None));
    assert_eq!(job.sources, ["notes/sleep.md"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helpful_checkbox_counts_when_checked() {
    let world = World::new().await;
    let (database, source) = rated_database(&world, PropertyKind::Checkbox);
    let page = ask(&world, &source, "Tick me", &[], json!({}));
    let untouched = ask(&world, &source, "Leave me", &[], json!({}));
    pipeline_for(&world, &database).process_once().await.unwrap();
    world.sandbox.set_property(&page, "Helpful", json!({ "checkbox": true }));
    pipeline_for(&world, &database).process_once().await.unwrap();
    assert_eq!(world.store.get_job(&page).await.unwrap().unwrap().helpful, Some(true));
    assert_eq!(world.store.get_job(&untouched).await.unwrap().unwrap().helpful, None, "unchecked says nothing");
}
