//! Hybrid retrieval, filters and context building over the sample notes, in English and Chinese.

use std::sync::OnceLock;

use local_agent::search::Engine;
use protocol::{ContextRequest, SearchMode, SearchRequest, SourceType};

use crate::{Workspace, query, sources};

/// One indexed copy of the sample notes shared by the read-only tests of this module.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<(Workspace, Engine)> = OnceLock::new();
    &ENGINE
        .get_or_init(|| {
            let workspace = Workspace::with_sample_notes();
            workspace.index();
            let engine = workspace.engine();
            (workspace, engine)
        })
        .1
}

#[test]
fn english_questions_find_the_right_note() {
    let cases = [
        ("How does Rust stop two threads from writing the same data?", "programming/rust-ownership.md"),
        ("what should I do before baking bread with a starter", "life/sourdough.md"),
        ("my home computer has no public IP address, how can the cloud reach it", "programming/websocket-tunnel.md"),
        ("things to pack for a trip abroad", "life/travel-checklist.txt"),
        ("run CPU heavy work without stalling the async runtime", "programming/async-rust.md"),
    ];
    for (question, expected) in cases {
        assert_eq!(sources(engine(), &query(question))[0], expected, "{question}");
    }
}

#[test]
fn chinese_questions_find_the_right_chinese_note() {
    let cases = [
        ("番茄工作法每个时段多长时间？", "productivity/pomodoro.md"),
        ("晚上睡不着怎么办", "life/sleep.md"),
        ("用大语言模型写文章要注意什么", "productivity/ai-writing.md"),
        ("如何提高工作效率", "productivity/pomodoro.md"),
        ("卧室温度多少度适合睡觉", "life/sleep.md"),
    ];
    for (question, expected) in cases {
        assert_eq!(sources(engine(), &query(question))[0], expected, "{question}");
    }
}

#[test]
fn fusion_is_never_worse_than_keywords_for_text_the_model_cannot_read() {
    // The English model sees mostly [UNK] in Chinese; its list must not push noise up.
    for question in ["番茄钟之后休息几分钟", "咖啡因的作用持续多久", "提示词技巧"] {
        let keyword = sources(engine(), &SearchRequest { mode: SearchMode::Keyword, ..query(question) });
        let hybrid = sources(engine(), &query(question));
        assert_eq!(hybrid.first(), keyword.first(), "{question}");
        // The reply says how little the dense list counted.
        let fusion = engine().search(&query(question)).unwrap().fusion.expect("the agent reports its fusion");
        assert!(
            fusion.visibility < 0.7 && fusion.semantic_weight < 0.5 * fusion.keyword_weight,
            "{question}: {fusion:?}"
        );
        if fusion.semantic_weight == 0.0 {
            assert_eq!(fusion.lists, [SourceType::Keyword], "{question}");
        }
    }
}

#[test]
fn results_hold_one_passage_per_document_and_respect_max_results() {
    let response =
        engine().search(&SearchRequest { max_results: 8, ..query("Rust async ownership borrowing tokio") }).unwrap();
    assert!(response.results.len() <= 8);
    let mut seen = std::collections::HashSet::new();
    for hit in &response.results {
        assert!(seen.insert(hit.source.clone()), "{} appears twice", hit.source);
        assert!((0.0..=1.0).contains(&hit.similarity_score));
    }
    let scores: Vec<f32> = response.results.iter().map(|h| h.similarity_score).collect();
    assert!(scores[0] >= 0.3, "the best match is a strong match: {scores:?}");
}

#[test]
fn tags_rank_tagged_notes_first_and_fill_the_rest_from_the_others() {
    let tagged = |tags: &[&str], question: &str| {
        let request =
            SearchRequest { tags: tags.iter().map(|t| t.to_string()).collect(), max_results: 6, ..query(question) };
        sources(engine(), &request)
    };
    let productivity = ["productivity/pomodoro.md", "productivity/weekly-review.md", "productivity/ai-writing.md"];
    let results = tagged(&["AI效率"], "efficiency");
    let carries_tag = |source: &String| productivity.contains(&source.as_str());
    let first_other = results.iter().position(|source| !carries_tag(source)).unwrap_or(results.len());
    assert!(first_other > 0, "a tagged note leads: {results:?}");
    assert!(results[first_other..].iter().all(|source| !carries_tag(source)), "tagged notes come first: {results:?}");
    assert_eq!(results.len(), 6, "the places the tagged notes leave are filled: {results:?}");

    assert_eq!(tagged(&["健康"], "sleep better")[0], "life/sleep.md");
    assert_eq!(
        tagged(&["rust", "no-such-tag"], "ownership")[0],
        "programming/rust-ownership.md",
        "tags match case-insensitively, any of them"
    );
    let untagged = sources(engine(), &SearchRequest { max_results: 6, ..query("ownership") });
    assert_eq!(tagged(&["no-such-tag"], "ownership"), untagged, "a tag no note carries narrows nothing");
    for mode in [SearchMode::Keyword, SearchMode::Semantic] {
        let request = SearchRequest { tags: vec!["cooking".into()], mode, ..query("bread") };
        assert_eq!(sources(engine(), &request)[0], "life/sourdough.md", "{mode:?}");
    }
}

#[test]
fn a_chinese_question_is_searched_by_its_topic_not_by_how_it_asks() {
    // A rambling note full of 想, 要, 能, 用 must not outrank the one note about the topic just
    // because the question asks with the same words.
    let workspace = Workspace::empty();
    workspace.write("备份.md", "# 定时备份\n\n每天半夜由 cron 运行备份脚本，把家目录同步到移动硬盘。\n");
    workspace.write("随想.md", "# 随想\n\n想要的太多。要能放下，能用就用，想到就做，想要就要，能不能成都要试。\n");
    workspace.index();
    let engine = workspace.engine();
    for mode in [SearchMode::Keyword, SearchMode::Hybrid] {
        let request = SearchRequest { mode, ..query("我想要一个能每天用的备份，要怎么弄？") };
        assert_eq!(sources(&engine, &request), ["备份.md"], "{mode:?}");
    }
    let request = SearchRequest { mode: SearchMode::Keyword, ..query("随想") };
    assert_eq!(sources(&engine, &request), ["随想.md"], "the note itself is indexed with every word");
}

#[test]
fn notes_without_front_matter_answer_tagged_questions() {
    // Most real notes carry no front matter, so no tags: a tagged question must still find them.
    let workspace = Workspace::empty();
    workspace.write("kitchen/bread.md", "# Bread\n\nFeed the sourdough starter twice a day and bake at 230 °C.\n");
    workspace.write("kitchen/tea.txt", "Green tea wants water at 80 degrees, never boiling.\n");
    workspace.write("工作/番茄.md", "番茄工作法：每工作二十五分钟休息五分钟。\n");
    workspace.index();
    let engine = workspace.engine();
    for tags in [vec![], vec!["cooking".to_owned()], vec!["Cooking".to_owned(), "效率".to_owned()]] {
        let request = SearchRequest { tags: tags.clone(), ..query("how hot should the oven be for sourdough bread") };
        assert_eq!(sources(&engine, &request).first().map(String::as_str), Some("kitchen/bread.md"), "{tags:?}");
        let request = SearchRequest { tags: tags.clone(), ..query("番茄工作法休息几分钟") };
        assert_eq!(sources(&engine, &request).first().map(String::as_str), Some("工作/番茄.md"), "{tags:?}");
        let context = engine
            .build_context(&ContextRequest {
                tags: tags.clone(),
                ..ContextRequest::new("water temperature for green tea")
            })
            .unwrap();
        assert!(context.context.contains("80 degrees"), "{tags:?}: {}", context.context);
    }
}

#[test]
fn the_similarity_threshold_drops_weak_matches() {
    let loose = sources(engine(), &query("quantum chromodynamics lattice"));
    let strict =
        sources(engine(), &SearchRequest { similarity_threshold: 0.5, ..query("quantum chromodynamics lattice") });
    assert!(!loose.is_empty() && strict.is_empty(), "{loose:?} / {strict:?}");
}

#[test]
fn modes_report_which_retriever_found_a_result() {
    let keyword = engine().search(&SearchRequest { mode: SearchMode::Keyword, ..query("borrow checker") }).unwrap();
    assert!(keyword.results.iter().all(|h| h.source_type == SourceType::Keyword));
    let semantic = engine().search(&SearchRequest { mode: SearchMode::Semantic, ..query("borrow checker") }).unwrap();
    assert!(semantic.results.iter().all(|h| h.source_type == SourceType::Semantic));
    let hybrid = engine().search(&query("borrow checker")).unwrap();
    assert_eq!(hybrid.results[0].source_type, SourceType::Hybrid);
    let lists = |response: &protocol::SearchResponse| response.fusion.as_ref().map(|fusion| fusion.lists.clone());
    assert_eq!(lists(&keyword), Some(vec![SourceType::Keyword]));
    assert_eq!(lists(&semantic), Some(vec![SourceType::Semantic]));
    assert_eq!(lists(&hybrid), Some(vec![SourceType::Keyword, SourceType::Semantic]));
}

#[test]
fn context_is_cited_and_fits_the_budget() {
    let request =
        ContextRequest { max_length: 600, ..ContextRequest::new("How do Rust references and lifetimes work?") };
    let response = engine().build_context(&request).unwrap();
    assert!(response.context.chars().count() <= 600);
    assert!(response.context.starts_with("[1] Rust ownership in five minutes"), "{}", response.context);
    assert_eq!(response.sources[0], "programming/rust-ownership.md");
    for (number, source) in response.sources.iter().enumerate() {
        assert!(response.context.contains(&format!("[{}] ", number + 1)) && response.context.contains(source.as_str()));
    }
    let chinese = engine().build_context(&ContextRequest::new("睡前应该避免什么")).unwrap();
    assert!(chinese.context.contains("蓝光"), "{}", chinese.context);
    assert!(chinese.context.chars().count() <= 2000);
}

#[test]
fn repeated_queries_are_served_from_the_cache_until_the_index_changes() {
    let workspace = Workspace::with_sample_notes();
    workspace.index();
    let engine = workspace.engine();
    let request = query("sourdough");
    let first = engine.search(&request).unwrap();
    let hits_before = engine.stats().cache_hits;
    let second = engine.search(&request).unwrap();
    assert_eq!(engine.stats().cache_hits, hits_before + 1);
    assert_eq!(first.results, second.results);

    workspace.write("life/rye.md", "# Rye sourdough\n\nRye sourdough needs a wetter dough.\n");
    workspace.index();
    // What the agent does when the indexer announces a generation (`Engine::follow`).
    assert!(engine.refresh().unwrap(), "the new generation is loaded");
    assert!(!engine.refresh().unwrap(), "and only once");
    let third = engine.search(&request).unwrap();
    assert!(third.results.iter().any(|h| h.source == "life/rye.md"), "{:?}", third.results);
    assert_eq!(engine.clear_cache(), 1);
}
