//! A question page as a conversation, against the Notion sandbox and the LLM stand-in: a
//! follow-up written below an answer is answered below it with the conversation so far; asking
//! again with nothing new replaces the last answer; each turn exactly once through crashes at
//! every step, two runs at once, rate limits, and a follow-up typed while an answer is written.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cloud_fn::pipeline::{Pipeline, Step};
use common::World;
use notion::page::write;
use serde_json::json;
use testkit::{Fault, LlmFault};

/// The page's top-level blocks as a person scans them: "Answer" for an answer's heading,
/// "notion-llm" for its footer (what is between them left out), "failed" for a failure callout,
/// and the text of anything a person wrote.
fn outline(world: &World, page: &str) -> Vec<String> {
    let mut outline = Vec::new();
    let mut inside_answer = false;
    for block in world.sandbox.blocks(page) {
        let kind = block["type"].as_str().unwrap_or_default();
        let first = block[kind]["rich_text"][0]["plain_text"].as_str().unwrap_or_default().to_owned();
        let marked = block[kind]["rich_text"].to_string().contains("#answer-");
        match (kind, marked) {
            ("heading_2", true) => {
                inside_answer = true;
                outline.push("Answer".to_owned());
            }
            ("paragraph", true) => {
                inside_answer = false;
                outline.push(first);
            }
            ("callout", true) => outline.push("failed".to_owned()),
            _ if !inside_answer => outline.push(first),
            _ => {}
        }
    }
    outline
}

/// A question with details in its body.
fn ask_with_details(world: &World, title: &str, details: &str) -> String {
    world.sandbox.add_page(
        &world.source,
        json!({ "Question": write::title(title), "Status": write::status("Pending"), "Tags": write::multi_select(&[]) }),
        json!([{ "type": "paragraph", "paragraph": { "rich_text": [{ "text": { "content": details } }] } }]),
    )
}

/// What a person does to follow up: writes below the answer and sets Status to Pending.
fn follow_up(world: &World, page: &str, text: &str) {
    world.sandbox.type_paragraph(page, text);
    world.sandbox.set_property(page, "Status", write::status("Pending"));
}

fn user_prompt(world: &World, index: usize) -> String {
    world.llm.requests()[index].messages[1]["content"].as_str().unwrap_or_default().to_owned()
}

fn crashing(world: &World, step: Step) -> Arc<Pipeline> {
    Arc::new(Arc::try_unwrap(world.default_pipeline()).ok().unwrap().crash_after(step))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_is_answered_below_it_with_the_conversation_so_far() {
    let world = World::new().await;
    let page = ask_with_details(&world, "How often should I water a fig tree?", "It stands on a sunny balcony.");
    world.default_pipeline().process_once().await.unwrap();
    follow_up(&world, &page, "And in winter?");
    world.sandbox.clear_requests();
    let report = world.default_pipeline().process_once().await.unwrap();
    assert_eq!(report.answered, 1, "{report:?}");
    // What a follow-up costs in Notion requests, besides the run's query: the claim's read of
    // the page (was it reopened?), Processing, the page's blocks (one read, plus one per block
    // with children: the first answer's nested list here), the append, the read that checks
    // nobody set Pending meanwhile, and the final status.
    let requests: Vec<String> = world.sandbox.requests().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    let count =
        |method: &str, part: &str| requests.iter().filter(|r| r.starts_with(method) && r.contains(part)).count();
    assert_eq!(
        (
            count("GET", "/v1/pages/"),
            count("PATCH", "/v1/pages/"),
            count("PATCH", "/children"),
            count("GET", "/children")
        ),
        (2, 2, 1, 2),
        "{requests:#?}"
    );

    assert_eq!(
        outline(&world, &page),
        ["It stands on a sunny balcony.", "Answer", "notion-llm", "And in winter?", "Answer", "notion-llm"],
        "the new answer below the follow-up, the first one as it was"
    );
    assert_eq!(world.status(&page), "Answered");
    let prompt = user_prompt(&world, 1);
    assert!(prompt.ends_with("Follow-up question: And in winter?"), "{prompt}");
    let conversation = &prompt[prompt.find("<<<CONVERSATION").unwrap()..prompt.find("CONVERSATION>>>").unwrap()];
    assert!(
        conversation.contains("Question: How often should I water a fig tree?\nIt stands on a sunny balcony."),
        "{conversation}"
    );
    assert!(
        conversation.contains("Answer: ## Stand-in answer"),
        "the first answer, without heading or footer: {conversation}"
    );
    assert!(!conversation.contains("notion-llm ·"), "{conversation}");
    // Retrieval used the follow-up together with the page's topic (the fake agent quotes it).
    assert!(prompt.contains("About: And in winter?\nHow often should I water a fig tree?"), "{prompt}");
    // The footer tells how to go on.
    let footers = world.footers(&page);
    assert_eq!(footers.len(), 2);
    assert!(footers[1].contains("To follow up, write below this answer and set Status to Pending"), "{}", footers[1]);

    // And a third turn: the history grows, oldest first.
    follow_up(&world, &page, "What about pots?");
    world.default_pipeline().process_once().await.unwrap();
    let prompt = user_prompt(&world, 2);
    let (first, second) =
        (prompt.find("How often should I water").unwrap(), prompt.find("Follow-up: And in winter?").unwrap());
    assert!(first < second && prompt.ends_with("Follow-up question: What about pots?"), "{prompt}");
    assert_eq!(world.answers(&page), 3);
    assert_eq!(world.default_pipeline().process_once().await.unwrap().found, 0, "each turn answered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_again_with_nothing_new_replaces_the_last_answer() {
    let world = World::new().await;
    let page = ask_with_details(&world, "Ask me twice", "Some details.");
    world.default_pipeline().process_once().await.unwrap();
    follow_up(&world, &page, "A follow-up.");
    world.default_pipeline().process_once().await.unwrap();
    // Pending again, nothing written: the follow-up's answer is written again, in its place.
    world.sandbox.set_property(&page, "Status", write::status("Pending"));
    world.default_pipeline().process_once().await.unwrap();
    assert_eq!(
        outline(&world, &page),
        ["Some details.", "Answer", "notion-llm", "A follow-up.", "Answer", "notion-llm"]
    );
    assert_eq!(world.llm.requests().len(), 3);
    let prompt = user_prompt(&world, 2);
    assert!(prompt.ends_with("Follow-up question: A follow-up."), "the same question again: {prompt}");
    assert_eq!(prompt.matches("Answer: ").count(), 1, "the answer it replaces is not history: {prompt}");
    assert_eq!(world.status(&page), "Answered");

    // A question that failed is answered again in place of its failure callout.
    let failing = world.ask("Fails first", &[]);
    world.llm.inject(None, LlmFault::Status(401), 10);
    world.default_pipeline().process_once().await.unwrap();
    assert_eq!(world.status(&failing), "Failed");
    world.llm.clear_faults();
    world.sandbox.set_property(&failing, "Status", write::status("Pending"));
    world.default_pipeline().process_once().await.unwrap();
    assert_eq!(outline(&world, &failing), ["Answer", "notion-llm"], "the callout is gone");
    assert_eq!(world.status(&failing), "Answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_survives_a_crash_after_every_step() {
    for step in Step::ALL {
        let world = World::new().await;
        let page = ask_with_details(&world, "Crash in a follow-up", "Details.");
        world.default_pipeline().process_once().await.unwrap();
        follow_up(&world, &page, &format!("Then what, after {step:?}?"));
        assert!(crashing(&world, step).process_once().await.is_err(), "{step:?}");
        // The lease holds, then the next run takes the turn over (or only finishes it).
        world.clock.advance(301);
        world.default_pipeline().process_once().await.unwrap();
        assert_eq!(
            outline(&world, &page),
            ["Details.", "Answer", "notion-llm", &format!("Then what, after {step:?}?"), "Answer", "notion-llm"],
            "{step:?}"
        );
        assert_eq!(world.status(&page), "Answered", "{step:?}");
        assert_eq!(world.default_pipeline().process_once().await.unwrap().found, 0, "{step:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answering_again_survives_a_crash_after_every_step() {
    for step in Step::ALL {
        let world = World::new().await;
        let page = ask_with_details(&world, "Crash while answering again", "Details.");
        world.default_pipeline().process_once().await.unwrap();
        world.sandbox.set_property(&page, "Status", write::status("Pending"));
        assert!(crashing(&world, step).process_once().await.is_err(), "{step:?}");
        world.clock.advance(301);
        world.default_pipeline().process_once().await.unwrap();
        assert_eq!(
            outline(&world, &page),
            ["Details.", "Answer", "notion-llm"],
            "one answer, never two or none: {step:?}"
        );
        assert_eq!(world.status(&page), "Answered", "{step:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_at_once_answer_each_follow_up_once_through_rate_limits() {
    let world = World::new().await;
    let pages: Vec<String> = (0..8).map(|i| ask_with_details(&world, &format!("Topic {i}"), "Details.")).collect();
    world.default_pipeline().process_once().await.unwrap();
    for page in &pages {
        follow_up(&world, page, "More, please.");
    }
    world.sandbox.inject(Some("PATCH"), "/children", Fault::RateLimited { retry_after_secs: 0 }, 3);
    world.sandbox.inject(Some("GET"), "/children", Fault::Overloaded { retry_after_secs: 0 }, 3);
    let (a, b) = (world.default_pipeline(), world.default_pipeline());
    let (first, second) = tokio::join!(a.process_once(), b.process_once());
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.answered + second.answered, 8, "{first:?} / {second:?}");
    for page in &pages {
        assert_eq!(
            outline(&world, page),
            ["Details.", "Answer", "notion-llm", "More, please.", "Answer", "notion-llm"],
            "{page}"
        );
    }
    assert_eq!(world.llm.requests().len(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_typed_while_the_answer_is_written_is_answered_next() {
    let world = World::new().await;
    let page = ask_with_details(&world, "Slow to answer", "Details.");
    // The model takes a while; meanwhile the person writes a follow-up and sets Pending.
    world.llm.inject(None, LlmFault::Delay(Duration::from_millis(600)), 1);
    let run = tokio::spawn({
        let pipeline = world.default_pipeline();
        async move { pipeline.process_once().await }
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(world.status(&page), "Processing");
    follow_up(&world, &page, "Typed while it was answering.");
    run.await.unwrap().unwrap();
    // The answer went under the question it answers, above what was typed meanwhile, and the
    // person's Pending was left alone.
    assert_eq!(outline(&world, &page), ["Details.", "Answer", "notion-llm", "Typed while it was answering."]);
    assert_eq!(world.status(&page), "Pending");
    world.default_pipeline().process_once().await.unwrap();
    assert_eq!(
        outline(&world, &page),
        ["Details.", "Answer", "notion-llm", "Typed while it was answering.", "Answer", "notion-llm"]
    );
    assert_eq!(world.status(&page), "Answered");
    assert!(user_prompt(&world, 1).ends_with("Follow-up question: Typed while it was answering."));

    // The same after a run stopped between writing the answer and recording it: the next run
    // finishes the first turn without taking the person's Pending, the one after answers.
    let page = ask_with_details(&world, "Stopped after writing", "Details.");
    assert!(crashing(&world, Step::Appended).process_once().await.is_err());
    follow_up(&world, &page, "Typed after the answer appeared.");
    world.clock.advance(301);
    world.default_pipeline().process_once().await.unwrap();
    assert_eq!(world.status(&page), "Pending", "the person's Pending is kept");
    world.default_pipeline().process_once().await.unwrap();
    assert_eq!(
        outline(&world, &page),
        ["Details.", "Answer", "notion-llm", "Typed after the answer appeared.", "Answer", "notion-llm"]
    );
    assert_eq!(world.status(&page), "Answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_conversation_is_sent_within_its_budget() {
    let world = World::new().await;
    let page = ask_with_details(&world, "A long talk", "Details.");
    world.default_pipeline().process_once().await.unwrap();
    for turn in 0..12 {
        follow_up(&world, &page, &format!("Follow-up number {turn}: {}", "more words ".repeat(300)));
        world.default_pipeline().process_once().await.unwrap();
    }
    assert_eq!(world.answers(&page), 13);
    let prompt = user_prompt(&world, 12);
    let conversation = &prompt[prompt.find("<<<CONVERSATION").unwrap()..prompt.find("CONVERSATION>>>").unwrap()];
    assert!(conversation.len() < 16_000, "about 3,000 tokens: {} bytes", conversation.len());
    assert!(conversation.contains("Question: A long talk") && conversation.contains("Follow-up number 10"));
    assert!(conversation.contains("earlier exchanges left out") && !conversation.contains("Follow-up number 0:"));
}
