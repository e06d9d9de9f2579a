//! Questions asked in comments: a comment starting with `?` on a question page is answered in
//! its thread, grounded in the notes and the page, exactly once — through repeated and racing
//! deliveries, a lost reply, and a run stopped midway — and everything else is left alone.

mod common;

use std::time::Duration;

use cloud_fn::config::Secret;
use cloud_fn::pipeline::comments::CommentOutcome;
use cloud_fn::server::{self, ApiAccess, ServerSettings, ServerState};
use cloud_fn::webhook::CommentCreated;
use common::World;
use serde_json::Value;
use testkit::Fault;

const WEBHOOK_TOKEN: &str = "secret_webhook_for_comments";

fn created(comment: &str, page: &str, parent: &str) -> CommentCreated {
    CommentCreated { comment_id: comment.into(), page_id: page.into(), parent_id: parent.into() }
}

/// The replies in a discussion after its first comment.
fn replies(world: &World, discussion: &str) -> Vec<String> {
    world
        .sandbox
        .discussion(discussion)
        .iter()
        .skip(1)
        .map(|comment| {
            comment["rich_text"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| item["plain_text"].as_str())
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_in_a_comment_is_answered_in_its_thread_from_the_notes_and_the_page() {
    let world = World::new().await;
    let page = world.ask("How should I sleep?", &["health"]);
    world.default_pipeline().process_once().await.unwrap();
    let (comment, discussion) = world.sandbox.add_comment(&page, "? And how long should a nap be?");

    let outcome = world.default_pipeline().answer_comment(&created(&comment, &page, &page)).await.unwrap();
    let CommentOutcome::Answered { mode, .. } = outcome else { panic!("answered: {outcome:?}") };
    assert_eq!(mode.as_str(), "full");
    let replies = replies(&world, &discussion);
    assert_eq!(replies.len(), 1, "one reply, in the same thread: {replies:?}");
    assert!(replies[0].starts_with("notion-llm: "), "{}", replies[0]);
    assert!(replies[0].contains("sources: notes/sleep.md"), "{}", replies[0]);
    let prompt = world.llm.requests().last().unwrap().clone();
    let user = prompt.messages[1]["content"].as_str().unwrap_or_default();
    assert!(user.ends_with("Follow-up question: And how long should a nap be?"), "{user}");
    assert!(
        user.contains("Page: How should I sleep?") && user.contains("Stand-in answer"),
        "the page is context: {user}"
    );
    assert!(user.contains("About: And how long should a nap be?\nHow should I sleep?"), "retrieval: {user}");
    let system = prompt.messages[0]["content"].as_str().unwrap_or_default();
    assert!(system.contains("a reply in a comment thread"), "{system}");
    // The question page itself is not touched.
    assert_eq!(world.answers(&page), 1);
    assert_eq!(world.status(&page), "Answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_that_do_not_ask_or_are_not_on_a_question_are_left_alone() {
    let world = World::new().await;
    let page = world.ask("A question", &[]);
    let pipeline = world.default_pipeline();
    let (plain, discussion) = world.sandbox.add_comment(&page, "Nice answer, thanks!");
    let ignored = |outcome: CommentOutcome| matches!(outcome, CommentOutcome::Ignored { .. });
    assert!(ignored(pipeline.answer_comment(&created(&plain, &page, &page)).await.unwrap()));
    let (empty, _) = world.sandbox.add_comment(&page, "?   ");
    assert!(ignored(pipeline.answer_comment(&created(&empty, &page, &page)).await.unwrap()));
    // A page of another database.
    let (_, other_source) = world.sandbox.create_questions_database();
    let elsewhere = world.sandbox.add_page(
        &other_source,
        serde_json::json!({ "Question": notion::page::write::title("Not ours") }),
        Value::Null,
    );
    let (foreign, _) = world.sandbox.add_comment(&elsewhere, "? Answer me anyway");
    assert!(ignored(pipeline.answer_comment(&created(&foreign, &elsewhere, &elsewhere)).await.unwrap()));
    // A comment that is not there (deleted, or forged).
    assert!(ignored(pipeline.answer_comment(&created("no-such-comment", &page, &page)).await.unwrap()));
    assert!(replies(&world, &discussion).is_empty());
    assert!(world.llm.requests().is_empty(), "the model was never asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_is_answered_once_through_repeats_races_and_a_lost_reply() {
    let world = World::new().await;
    let page = world.ask("Comment on me", &[]);
    let (comment, discussion) = world.sandbox.add_comment(&page, "?Why?");
    let event = created(&comment, &page, &page);
    // Two deliveries at once: one answers, the other finds it busy (Notion delivers it again).
    let (a, b) = (world.default_pipeline(), world.default_pipeline());
    let (first, second) = tokio::join!(a.answer_comment(&event), b.answer_comment(&event));
    let outcomes = [first.unwrap(), second.unwrap()];
    assert_eq!(outcomes.iter().filter(|o| matches!(o, CommentOutcome::Answered { .. })).count(), 1, "{outcomes:?}");
    // A repeat later: answered already.
    assert_eq!(world.default_pipeline().answer_comment(&event).await.unwrap(), CommentOutcome::AlreadyAnswered);
    assert_eq!(replies(&world, &discussion).len(), 1);

    // The reply is written but its response is lost: the next delivery (after the lease) finds
    // the reply by its marker instead of writing a second one.
    let (lost, thread) = world.sandbox.add_comment(&page, "? Another one");
    world.sandbox.inject(Some("POST"), "/v1/comments", Fault::ApplyThenFail, 1);
    assert!(world.default_pipeline().answer_comment(&created(&lost, &page, &page)).await.is_err());
    assert_eq!(replies(&world, &thread).len(), 1, "the reply exists");
    let again = world.default_pipeline().answer_comment(&created(&lost, &page, &page)).await.unwrap();
    assert_eq!(again, CommentOutcome::Busy, "the lease of the stopped attempt holds");
    world.clock.advance(301);
    let again = world.default_pipeline().answer_comment(&created(&lost, &page, &page)).await.unwrap();
    assert_eq!(again, CommentOutcome::AlreadyAnswered);
    assert_eq!(replies(&world, &thread).len(), 1, "still one reply");
    // notion-llm's own reply, delivered as a new comment, is not a question.
    let reply = world.sandbox.discussion(&thread)[1]["id"].as_str().unwrap().to_owned();
    let own = world.default_pipeline().answer_comment(&created(&reply, &page, &page)).await.unwrap();
    assert!(matches!(own, CommentOutcome::Ignored { .. }), "{own:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comment_events_reach_the_pipeline_through_the_signed_webhook() {
    let world = World::new().await;
    let page = world.ask("Webhook comments", &[]);
    let (comment, discussion) = world.sandbox.add_comment(&page, "? What does the webhook do?");
    let settings = ServerSettings {
        access: ApiAccess::Key(Secret::new("cloud-key")),
        webhook_token: Some(Secret::new(WEBHOOK_TOKEN)),
        ..ServerSettings::default()
    };
    let state = ServerState::new(world.default_pipeline(), settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/notion", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task =
        tokio::spawn(server::serve(listener, server::router(state.clone()), state, Duration::from_secs(3600), async {
            let _ = stopped.await;
        }));
    let client = reqwest::Client::new();
    let deliver = |event_id: &str| {
        let body = testkit::notion_webhook::comment_event(event_id, &comment, &page, &page);
        client
            .post(&url)
            .header("content-type", "application/json")
            .header(cloud_fn::webhook::SIGNATURE_HEADER, testkit::notion_webhook::signature(WEBHOOK_TOKEN, &body))
            .body(body)
            .send()
    };
    let reply: Value = deliver("evt-comment-1").await.unwrap().json().await.unwrap();
    assert_eq!(reply["comment"]["outcome"], "answered", "{reply}");
    let repeat: Value = deliver("evt-comment-1").await.unwrap().json().await.unwrap();
    assert_eq!(repeat["duplicate"], "evt-comment-1", "the same event");
    let other: Value = deliver("evt-comment-2").await.unwrap().json().await.unwrap();
    assert_eq!(other["comment"]["outcome"], "already_answered", "another event, the same comment: {other}");
    assert_eq!(replies(&world, &discussion).len(), 1);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
