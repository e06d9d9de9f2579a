//! What the commands print: progress bars, reports, results, and where logs go.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use local_agent::index::{IndexReport, Phase, Progress};
use local_agent::ops::status;
use local_agent::sources::notion_sync::SyncReport;
use protocol::SearchResponse;
use protocol::console::{paint, style};
use tracing_appender::rolling::Rotation;
use tracing_subscriber::EnvFilter;

/// Logs kept by `serve --log-dir`: one file a day.
const LOG_FILES_KEPT: usize = 7;

/// Logs to stderr, or with `--log-dir` to daily-rotated files there: a service has no
/// terminal, and not every system has a journal.
pub fn init_logging(filter: EnvFilter, log_dir: Option<&std::path::Path>) {
    let appender = log_dir.map(|dir| {
        std::fs::create_dir_all(dir).map_err(|error| error.to_string()).and_then(|()| {
            tracing_appender::rolling::Builder::new()
                .rotation(Rotation::DAILY)
                .filename_prefix("local-agent")
                .filename_suffix("log")
                .max_log_files(LOG_FILES_KEPT)
                .build(dir)
                .map_err(|error| error.to_string())
        })
    });
    match appender {
        Some(Ok(appender)) => {
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(appender).with_ansi(false).init();
        }
        unusable => {
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(protocol::console::stderr_shows_colour())
                .init();
            if let Some(Err(error)) = unusable {
                tracing::warn!(%error, "cannot write logs to the log folder; logging to stderr");
            }
        }
    }
}

pub fn print_report(report: &IndexReport) {
    protocol::outln!(
        "{} added, {} changed, {} removed, {} unchanged — {}, {} in the index",
        report.added,
        report.changed,
        report.removed,
        report.unchanged,
        count(report.documents, "document"),
        count(report.chunks, "chunk")
    );
    if report.published {
        protocol::outln!(
            "wrote {} ({} embedded, {} from cache) as generation {} in {:.1} s",
            count(report.chunks_written, "chunk"),
            report.embedded,
            report.from_cache,
            report.generation,
            report.elapsed.as_secs_f64()
        );
    } else {
        protocol::outln!("nothing changed; the index is up to date (generation {})", report.generation);
    }
    /// Unreadable documents listed one by one; more than this are counted.
    const LISTED: usize = 10;
    if !report.not_text.is_empty() {
        let count = report.not_text.len();
        let files = if count == 1 { "1 file" } else { &format!("{count} files") };
        let shown: Vec<&str> = report.not_text.iter().take(LISTED).map(String::as_str).collect();
        let more = if count > LISTED { format!(" and {} more", count - LISTED) } else { String::new() };
        protocol::outln!("{files} skipped as not text (binary, or not UTF-8): {}{more}", shown.join(", "));
    }
    if !report.unreadable.is_empty() {
        protocol::outln!(
            "{} could not be read (the index keeps what it had of them):",
            count(report.unreadable.len(), "document")
        );
        for failed in report.unreadable.iter().take(LISTED) {
            let at = if failed.id.is_empty() { failed.source.to_string() } else { failed.id.clone() };
            protocol::outln!("  {at}: {}", failed.reason);
        }
        if report.unreadable.len() > LISTED {
            protocol::outln!("  … and {} more (see the log)", report.unreadable.len() - LISTED);
        }
    }
}

/// One line: what a Notion sync listed and did.
pub fn print_sync_report(report: &SyncReport) {
    protocol::outln!(
        "{} listed{}: {} added, {} updated, {} removed, {} unchanged, {} unreadable; \
         {} skipped; {} in {:.1} s",
        count(report.listed, "page"),
        if report.full { " (full)" } else { "" },
        report.added,
        report.updated,
        report.removed,
        report.unchanged,
        report.unreadable,
        count(report.skipped_blocks, "block"),
        protocol::console::count(report.requests, "Notion request"),
        report.elapsed_ms as f64 / 1000.0
    );
}

/// "1 note", "3 notes".
pub fn count(number: usize, noun: &str) -> String {
    protocol::console::count(number as u64, noun)
}

/// Says which asked-for tags no note carries, and which tags there are.
pub fn unknown_tags_hint(unknown: &[&str], known: &[status::TagCount]) -> String {
    let names = unknown.iter().map(|tag| format!("{tag:?}")).collect::<Vec<_>>().join(", ");
    let noun = if unknown.len() == 1 { "is tagged" } else { "carries any of" };
    if known.is_empty() {
        return format!("Note: no note {noun} {names}, and no note has tags; these are the best of all notes.\n");
    }
    let shown: Vec<&str> = known.iter().take(10).map(|tag| tag.tag.as_str()).collect();
    let more = if known.len() > shown.len() {
        format!(" and {} more (`local-agent tags`)", known.len() - shown.len())
    } else {
        String::new()
    };
    format!("Note: no note {noun} {names}; these are the best of all notes. Known tags: {}{more}.\n", shown.join(", "))
}

pub fn print_results(response: &SearchResponse, with_context: bool, indexed: usize) {
    if response.results.is_empty() {
        match indexed {
            0 => protocol::outln!("No results: nothing is indexed yet; run `local-agent index <FOLDER>`."),
            1 => {
                protocol::outln!("No results: the one indexed note does not match (try other words, or --threshold 0).")
            }
            count => protocol::outln!(
                "No results: none of the {count} indexed notes matches (try other words, or --threshold 0)."
            ),
        }
        return;
    }
    for (rank, hit) in response.results.iter().enumerate() {
        let kind =
            serde_json::to_value(hit.source_type).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let title = paint(style::STRONG, format_args!("{}. {}", rank + 1, hit.title));
        let details = paint(style::QUIET, format_args!("({})  score {:.3}, {kind}", hit.source, hit.similarity_score));
        protocol::outln!("{title} {details}");
        let snippet: String = hit.content_snippet.split_whitespace().collect::<Vec<_>>().join(" ");
        protocol::outln!("   {snippet}\n");
    }
    if with_context {
        protocol::outln!("--- context ---\n{}", response.context);
    }
    protocol::outln!("{}", paint(style::QUIET, format_args!("--- {:.1} ms ---", response.processing_time * 1e3)));
}

/// Progress bars on stderr (hidden when stderr is not a terminal).
pub struct Bars {
    bar: std::sync::Mutex<Option<ProgressBar>>,
}

impl Bars {
    pub fn new() -> Self {
        Self { bar: std::sync::Mutex::new(None) }
    }
}

impl Progress for Bars {
    fn start(&self, phase: Phase, total: u64) {
        let label = match phase {
            Phase::Reading => "reading ",
            Phase::Embedding => "embedding",
            Phase::Writing => "writing ",
        };
        let bar =
            if std::io::stderr().is_terminal() && total > 0 { ProgressBar::new(total) } else { ProgressBar::hidden() };
        let style = ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(label);
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn advance(&self, steps: u64) {
        if let Ok(slot) = self.bar.lock()
            && let Some(bar) = slot.as_ref()
        {
            bar.inc(steps);
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish_and_clear();
        }
    }
}
