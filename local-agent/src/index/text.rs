//! The keyword side: a tantivy BM25 index over chunks, with one analyzer for mixed Chinese and
//! English text, and the chunk store (passage text and headings are stored fields, so the
//! passages live on disk, memory-mapped, rather than in the agent's heap).
//!
//! The analyzer: jieba (search mode: 工作效率 → 工作, 效率, 工作效率) splits Chinese into words
//! and English at spaces and punctuation; tokens without a letter or digit (spaces,
//! punctuation, which jieba keeps) are dropped; then lower-casing, English stop words and
//! English stemming. Queries go through the same analyzer and become a disjunction of term
//! queries — not the query parser, which would turn jieba's overlapping words into phrases.
//!
//! Each chunk's title line (the note's title and the chunk's heading path) is indexed twice:
//! in the body, and in a `title` field whose matches add a share of their BM25 score
//! (`[search] title_boost`, [`TITLE_BOOST`] by default).
//! A note's title says what it is about better than any sentence in it.

use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, Stemmer, StopWordFilter, TextAnalyzer, Token, TokenFilter, TokenStream,
    Tokenizer,
};
use tantivy::{DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::error::Result;

/// Name under which the analyzer is registered (tokenizers are not stored in the index).
const ANALYZER: &str = "mixed_zh_en";

/// Default weight of a match in the title line against one in the body (`[search] title_boost`;
/// see BENCHMARKS.md for how it was chosen).
pub const TITLE_BOOST: f32 = 0.25;

/// The analyzer used for indexing and for queries.
pub fn analyzer() -> TextAnalyzer {
    let mut builder = TextAnalyzer::builder(tantivy_jieba::JiebaTokenizer::new())
        .filter(WordsOnly)
        .filter(RemoveLongFilter::limit(48))
        .filter(LowerCaser)
        .dynamic();
    if let Some(stop_words) = StopWordFilter::new(Language::English) {
        builder = builder.filter_dynamic(stop_words);
    }
    let extra = ENGLISH_QUESTION_WORDS.iter().chain(CHINESE_STOP_WORDS);
    builder
        .filter_dynamic(StopWordFilter::remove(extra.map(|w| (*w).to_owned())))
        .filter_dynamic(Stemmer::new(Language::English))
        .build()
}

/// Words that make a sentence a question, added to tantivy's (Lucene's) short English list:
/// people ask the agent questions, and "how" or "should" say nothing about the topic.
const ENGLISH_QUESTION_WORDS: &[&str] = &[
    "how", "what", "when", "where", "why", "which", "who", "whom", "whose", "do", "does", "did", "can", "could",
    "should", "would", "i", "me", "my", "we", "our", "you", "your", "he", "she", "him", "her", "its", "them", "am",
    "been", "has", "have", "had", "so", "than", "too", "very", "just", "about", "from",
];

/// Chinese function words: particles, pronouns, question words, copulas, prepositions. They
/// carry no topic, and in a question ("Rust的所有权是什么") they would otherwise match every
/// Chinese note. Negations and modal verbs are kept: they change meaning.
const CHINESE_STOP_WORDS: &[&str] = &[
    "的",
    "地",
    "得",
    "了",
    "着",
    "过",
    "吗",
    "呢",
    "吧",
    "啊",
    "呀",
    "嘛",
    "么",
    "是",
    "在",
    "和",
    "与",
    "及",
    "或",
    "而",
    "也",
    "就",
    "都",
    "又",
    "还",
    "这",
    "那",
    "这个",
    "那个",
    "这些",
    "那些",
    "这样",
    "那样",
    "我",
    "你",
    "您",
    "他",
    "她",
    "它",
    "我们",
    "你们",
    "他们",
    "她们",
    "它们",
    "自己",
    "什么",
    "怎么",
    "怎么样",
    "怎样",
    "如何",
    "为什么",
    "为何",
    "哪",
    "哪些",
    "哪个",
    "哪里",
    "谁",
    "多少",
    "一个",
    "一些",
    "一下",
    "把",
    "被",
    "让",
    "给",
    "对",
    "从",
    "到",
    "向",
    "以",
    "之",
    "其",
    "于",
    "为",
    "请问",
    "请",
    "关于",
];

/// Words that are noise in a question but not in a note: wanting, being able to, colloquial
/// question words, and the small words of place and time that hang around a request ("想每天半夜
/// 自动跑一个备份脚本，定时任务怎么设置" is about 每天, 半夜, 自动, 跑, 备份, 脚本, 定时, 任务, 设置).
/// Notes keep them — "可以" or "之后" can be what a sentence says — so they are dropped from
/// queries only ([`query_terms`]). Measured on zh-dev: keyword nDCG@10 0.590 → 0.611 (BENCHMARKS.md).
const CHINESE_QUERY_STOP_WORDS: &[&str] = &[
    // Wanting, needing, knowing.
    "想",
    "想要",
    "要",
    "需要",
    "希望",
    "打算",
    "知道",
    "请教",
    // Being able to, having to.
    "能",
    "能不能",
    "可以",
    "可不可以",
    "会",
    "该",
    "应该",
    "应当",
    // Colloquial question words.
    "啥",
    "到底",
    "究竟",
    "怎么办",
    "怎么弄",
    "怎么做",
    "怎么搞",
    "咋",
    "咋办",
    "有没有",
    "是不是",
    "行不行",
    // Verbs that stand for any action.
    "用",
    "有",
    "看看",
    "弄",
    "搞",
    "做",
    // Measure words and indefinites.
    "个",
    "某个",
    "某些",
    "一点",
    "别的",
    "其他",
    // Place and time around the request.
    "里",
    "上",
    "下",
    "时",
    "时候",
    "后",
    "之后",
    "以后",
    "以前",
    "之前",
    "现在",
    "平时",
    "一般",
    "每次",
    "一直",
    "老是",
    "总是",
    "经常",
    "再",
    "直接",
    "比较",
    "最",
    "多",
    "好",
];

/// The terms a query is searched with: the analyzer's, without [`CHINESE_QUERY_STOP_WORDS`].
pub fn query_terms(analyzer: &mut TextAnalyzer, query: &str) -> Vec<String> {
    let mut terms = analyze(analyzer, query);
    terms.retain(|term| !CHINESE_QUERY_STOP_WORDS.contains(&term.as_str()));
    terms
}

/// Runs `text` through the analyzer; the terms BM25 sees.
pub fn analyze(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut stream = analyzer.token_stream(text);
    let mut terms = Vec::new();
    while stream.advance() {
        terms.push(stream.token().text.clone());
    }
    terms
}

/// Keeps tokens that contain a letter or digit in any script. (tantivy's `AlphaNumOnlyFilter`
/// is ASCII-only and would drop every Chinese word.)
#[derive(Clone)]
struct WordsOnly;

impl TokenFilter for WordsOnly {
    type Tokenizer<T: Tokenizer> = WordsOnlyTokenizer<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> WordsOnlyTokenizer<T> {
        WordsOnlyTokenizer(tokenizer)
    }
}

#[derive(Clone)]
struct WordsOnlyTokenizer<T>(T);

impl<T: Tokenizer> Tokenizer for WordsOnlyTokenizer<T> {
    type TokenStream<'a> = WordsOnlyStream<T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        WordsOnlyStream(self.0.token_stream(text))
    }
}

struct WordsOnlyStream<S>(S);

impl<S: TokenStream> TokenStream for WordsOnlyStream<S> {
    fn advance(&mut self) -> bool {
        while self.0.advance() {
            if self.0.token().text.chars().any(char::is_alphanumeric) {
                return true;
            }
        }
        false
    }

    fn token(&self) -> &Token {
        self.0.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.0.token_mut()
    }
}

/// The fields of a chunk document.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    /// Chunk id (the same key as in the vector index).
    pub chunk_id: Field,
    /// Title, headings and passage: what BM25 scores.
    pub body: Field,
    /// The title line alone (title › heading path), boosted; absent in indexes written before
    /// recipe 4, which are searched without it until they are rebuilt.
    pub title: Option<Field>,
    /// The passage as shown to users (stored only).
    pub text: Field,
    /// The heading path (stored only).
    pub heading: Field,
    /// Byte length of the passage's overlap with the previous chunk (stored only).
    pub overlap: Field,
    /// Lower-cased tags, for filtering.
    pub tags: Field,
}

fn schema() -> Schema {
    let mut builder = Schema::builder();
    let body_options = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default().set_tokenizer(ANALYZER).set_index_option(IndexRecordOption::WithFreqs),
    );
    builder.add_u64_field("chunk_id", INDEXED | FAST | STORED);
    builder.add_text_field("body", body_options.clone());
    builder.add_text_field("title", body_options);
    builder.add_text_field("text", STORED);
    builder.add_text_field("heading", STORED);
    builder.add_u64_field("overlap", STORED);
    builder.add_text_field("tags", STRING);
    builder.build()
}

impl Fields {
    /// The fields of `schema`, by name: an index keeps the schema it was written with.
    fn of(schema: &Schema) -> Result<Self> {
        Ok(Self {
            chunk_id: schema.get_field("chunk_id")?,
            body: schema.get_field("body")?,
            title: schema.get_field("title").ok(),
            text: schema.get_field("text")?,
            heading: schema.get_field("heading")?,
            overlap: schema.get_field("overlap")?,
            tags: schema.get_field("tags")?,
        })
    }
}

/// A chunk as stored in the keyword index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChunk {
    /// The passage.
    pub text: String,
    /// Its heading path.
    pub heading: String,
    /// Bytes at the start of `text` repeated from the previous chunk.
    pub overlap: usize,
}

/// A chunk to add.
pub struct NewChunk<'a> {
    /// Its id.
    pub id: u64,
    /// What BM25 scores (title, headings, passage).
    pub body: &'a str,
    /// The title line (title › heading path), scored again with [`TITLE_BOOST`].
    pub title: &'a str,
    /// What is stored for display.
    pub stored: &'a StoredChunk,
    /// The document's tags.
    pub tags: &'a [String],
}

/// An open keyword index, for searching.
pub struct TextIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
}

impl TextIndex {
    /// Opens the index in `dir`, creating an empty one if there is none.
    /// An existing index keeps its own schema (an older recipe's is searched as it is).
    pub fn open_or_create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(crate::error::Error::io(dir))?;
        let directory = tantivy::directory::MmapDirectory::open(dir).map_err(tantivy::TantivyError::from)?;
        let index = if Index::exists(&directory).map_err(tantivy::TantivyError::from)? {
            Index::open(directory)?
        } else {
            Index::create(directory, schema(), tantivy::IndexSettings::default())?
        };
        Self::from_index(index)
    }

    /// An index in memory, for tests.
    pub fn in_memory() -> Result<Self> {
        Self::from_index(Index::create_in_ram(schema()))
    }

    fn from_index(index: Index) -> Result<Self> {
        let fields = Fields::of(&index.schema())?;
        index.tokenizers().register(ANALYZER, analyzer());
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(Self { index, reader, fields })
    }

    /// A writer; one at a time per index.
    pub fn writer(&self) -> Result<TextWriter> {
        let writer = self.index.writer_with_num_threads(1, 64 * 1024 * 1024)?;
        Ok(TextWriter { writer, fields: self.fields })
    }

    /// Makes committed changes visible to searches.
    pub fn reload(&self) -> Result<()> {
        Ok(self.reader.reload()?)
    }

    /// Number of chunks.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Whether the index has no chunks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// BM25 search for already-analyzed `terms`, matches in the title line adding `title_boost`
    /// of their score; with `tags`, only chunks carrying one of them (lower-cased). Returns
    /// chunk ids with scores, best first.
    pub fn search(&self, terms: &[String], tags: &[String], title_boost: f32, limit: usize) -> Result<Vec<(u64, f32)>> {
        let mut unique: Vec<&String> = terms.iter().collect();
        unique.sort();
        unique.dedup();
        if unique.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let term_query = |field: Field, term: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(Term::from_field_text(field, term), IndexRecordOption::WithFreqs))
        };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> =
            unique.iter().map(|term| (Occur::Should, term_query(self.fields.body, term))).collect();
        if let Some(title) = self.fields.title.filter(|_| title_boost > 0.0) {
            clauses.extend(unique.iter().map(|term| {
                (Occur::Should, Box::new(BoostQuery::new(term_query(title, term), title_boost)) as Box<dyn Query>)
            }));
        }
        let text_query: Box<dyn Query> = Box::new(BooleanQuery::new(clauses));
        let query: Box<dyn Query> = if tags.is_empty() {
            text_query
        } else {
            let tag_query = BooleanQuery::new(
                tags.iter()
                    .map(|tag| {
                        let term = Term::from_field_text(self.fields.tags, &tag.to_lowercase());
                        (Occur::Should, Box::new(TermQuery::new(term, IndexRecordOption::Basic)) as Box<dyn Query>)
                    })
                    .collect(),
            );
            Box::new(BooleanQuery::new(vec![(Occur::Must, text_query), (Occur::Must, Box::new(tag_query))]))
        };
        let searcher = self.reader.searcher();
        let hits = searcher.search(&query, &TopDocs::with_limit(limit).order_by_score())?;
        let mut columns = std::collections::HashMap::new();
        let mut results = Vec::with_capacity(hits.len());
        for (score, address) in hits {
            let column = match columns.entry(address.segment_ord) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    entry.insert(searcher.segment_reader(address.segment_ord).fast_fields().u64("chunk_id")?)
                }
            };
            if let Some(chunk_id) = column.first(address.doc_id) {
                results.push((chunk_id, score));
            }
        }
        Ok(results)
    }

    /// Inverse document frequency of each analyzed term (BM25's idf, ≥ 0).
    pub fn idf(&self, terms: &[String]) -> Result<Vec<f32>> {
        let searcher = self.reader.searcher();
        let total = searcher.num_docs() as f32;
        terms
            .iter()
            .map(|term| {
                let frequency = searcher.doc_freq(&Term::from_field_text(self.fields.body, term))? as f32;
                Ok((1.0 + (total - frequency + 0.5) / (frequency + 0.5)).ln())
            })
            .collect()
    }

    /// Which of the analyzed `terms` a chunk's indexed text (title, headings, passage) holds,
    /// read from the postings: analyzing the passage again costs ~0.1 ms a hit.
    pub fn holds_terms(&self, chunk_id: u64, terms: &[String]) -> Result<Vec<bool>> {
        let searcher = self.reader.searcher();
        let query = TermQuery::new(Term::from_field_u64(self.fields.chunk_id, chunk_id), IndexRecordOption::Basic);
        let Some((_, address)) = searcher.search(&query, &TopDocs::with_limit(1).order_by_score())?.into_iter().next()
        else {
            return Ok(vec![false; terms.len()]);
        };
        let postings = searcher.segment_reader(address.segment_ord).inverted_index(self.fields.body)?;
        terms
            .iter()
            .map(|term| {
                let term = Term::from_field_text(self.fields.body, term);
                // A postings list that cannot be read is a damaged index, as tantivy reports it.
                let read =
                    postings.read_postings(&term, IndexRecordOption::Basic).map_err(tantivy::TantivyError::from)?;
                Ok(match read {
                    // `seek` only moves forward: a list may already start past the chunk.
                    Some(mut documents) if documents.doc() < address.doc_id => {
                        documents.seek(address.doc_id) == address.doc_id
                    }
                    Some(documents) => documents.doc() == address.doc_id,
                    None => false,
                })
            })
            .collect()
    }

    /// The stored passage of a chunk.
    pub fn stored(&self, chunk_id: u64) -> Result<Option<StoredChunk>> {
        let searcher = self.reader.searcher();
        let query = TermQuery::new(Term::from_field_u64(self.fields.chunk_id, chunk_id), IndexRecordOption::Basic);
        let Some((_, address)) = searcher.search(&query, &TopDocs::with_limit(1).order_by_score())?.into_iter().next()
        else {
            return Ok(None);
        };
        let document: TantivyDocument = searcher.doc(address)?;
        let text_of = |field| document.get_first(field).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        Ok(Some(StoredChunk {
            text: text_of(self.fields.text),
            heading: text_of(self.fields.heading),
            overlap: document.get_first(self.fields.overlap).and_then(|v| v.as_u64()).unwrap_or(0) as usize,
        }))
    }
}

/// Adds and deletes chunks; nothing is visible (or durable) before [`TextWriter::commit`].
pub struct TextWriter {
    writer: IndexWriter,
    fields: Fields,
}

impl TextWriter {
    /// Adds a chunk.
    pub fn add(&mut self, chunk: NewChunk<'_>) -> Result<()> {
        let mut document = TantivyDocument::default();
        document.add_u64(self.fields.chunk_id, chunk.id);
        document.add_text(self.fields.body, chunk.body);
        if let Some(title) = self.fields.title {
            document.add_text(title, chunk.title);
        }
        document.add_text(self.fields.text, &chunk.stored.text);
        document.add_text(self.fields.heading, &chunk.stored.heading);
        document.add_u64(self.fields.overlap, chunk.stored.overlap as u64);
        for tag in chunk.tags {
            document.add_text(self.fields.tags, tag.to_lowercase());
        }
        self.writer.add_document(document)?;
        Ok(())
    }

    /// Deletes a chunk.
    pub fn delete(&mut self, chunk_id: u64) {
        self.writer.delete_term(Term::from_field_u64(self.fields.chunk_id, chunk_id));
    }

    /// Makes the changes durable, and waits for merges so the directory is complete.
    pub fn commit(mut self) -> Result<()> {
        self.writer.commit()?;
        self.writer.wait_merging_threads()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(text: &str) -> Vec<String> {
        analyze(&mut analyzer(), text)
    }

    #[test]
    fn analyzer_segments_chinese_and_stems_english() {
        assert_eq!(terms("Running the Tests, quickly!"), ["run", "test", "quick"]);
        assert_eq!(terms("How should I sleep better?"), ["sleep", "better"], "question words are dropped");
        let chinese = terms("提高工作效率的方法");
        for word in ["工作", "效率", "方法"] {
            assert!(chinese.contains(&word.to_owned()), "{word} in {chinese:?}");
        }
        assert!(!chinese.iter().any(|t| t.trim().is_empty()));
        assert_eq!(terms("Rust的所有权是什么？"), ["rust", "所有", "有权", "所有权"], "question words are dropped");
        let mixed = terms("用Rust写WebSocket服务");
        assert!(mixed.contains(&"rust".to_owned()) && mixed.contains(&"websocket".to_owned()), "{mixed:?}");
    }

    #[test]
    fn a_question_loses_its_requests_and_fillers_but_a_note_keeps_them() {
        let question = "想每天半夜自动跑一个备份脚本，定时任务怎么设置？";
        let searched = query_terms(&mut analyzer(), question);
        assert_eq!(searched, ["每天", "半夜", "自动", "跑", "备份", "脚本", "定时", "任务", "设置"]);
        assert!(terms(question).contains(&"想".to_owned()), "a note is indexed with every word");
        assert_eq!(query_terms(&mut analyzer(), "How do I use Rust?"), ["use", "rust"], "English is as before");
    }

    #[test]
    fn search_ranks_by_bm25_and_filters_by_tag() {
        let index = TextIndex::in_memory().unwrap();
        let mut writer = index.writer().unwrap();
        let stored = |text: &str| StoredChunk { text: text.into(), heading: String::new(), overlap: 0 };
        let docs = [
            (1, "Rust ownership and borrowing rules", vec!["Rust".to_owned()]),
            (2, "Borrowing books from the library", vec!["life".to_owned()]),
            (3, "番茄工作法提高工作效率", vec!["AI效率".to_owned()]),
        ];
        for (id, text, tags) in &docs {
            writer.add(NewChunk { id: *id, body: text, title: "", stored: &stored(text), tags }).unwrap();
        }
        writer.commit().unwrap();
        index.reload().unwrap();

        let hits = index.search(&terms("rust borrowing"), &[], TITLE_BOOST, 10).unwrap();
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [1, 2]);
        let hits = index.search(&terms("borrowing"), &["LIFE".to_owned()], TITLE_BOOST, 10).unwrap();
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [2]);
        let hits = index.search(&terms("如何提高效率"), &["ai效率".to_owned()], TITLE_BOOST, 10).unwrap();
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [3]);
        assert!(index.search(&terms("..."), &[], TITLE_BOOST, 10).unwrap().is_empty());

        assert_eq!(index.stored(3).unwrap().unwrap().text, "番茄工作法提高工作效率");
        assert_eq!(index.stored(99).unwrap(), None);

        // The terms a chunk holds, from the postings, as analyzing its text would say.
        let asked = terms("rust books 工作效率 borrowing");
        for (id, text, _) in &docs {
            let analyzed = terms(text);
            let expected: Vec<bool> = asked.iter().map(|term| analyzed.contains(term)).collect();
            assert_eq!(index.holds_terms(*id, &asked).unwrap(), expected, "{text}");
        }
        assert_eq!(index.holds_terms(99, &asked).unwrap(), vec![false; asked.len()], "no such chunk");

        let mut writer = index.writer().unwrap();
        writer.delete(1);
        writer.commit().unwrap();
        index.reload().unwrap();
        assert_eq!(index.len(), 2);
        assert!(index.stored(1).unwrap().is_none());
    }

    #[test]
    fn a_match_in_the_title_line_counts_more_than_one_in_the_body() {
        let index = TextIndex::in_memory().unwrap();
        let mut writer = index.writer().unwrap();
        let stored = |text: &str| StoredChunk { text: text.into(), heading: String::new(), overlap: 0 };
        // Without the title field, the short chunk wins on length alone.
        let about = "Sourdough\n\nFeed the starter every day, keep it warm, and bake when it has doubled.";
        let mentions = "Bread\n\nA sourdough starter.";
        writer.add(NewChunk { id: 1, body: about, title: "Sourdough", stored: &stored(about), tags: &[] }).unwrap();
        writer.add(NewChunk { id: 2, body: mentions, title: "Bread", stored: &stored(mentions), tags: &[] }).unwrap();
        writer.commit().unwrap();
        index.reload().unwrap();
        let hits = index.search(&terms("sourdough starter"), &[], TITLE_BOOST, 10).unwrap();
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [1, 2], "{hits:?}");
    }
}
