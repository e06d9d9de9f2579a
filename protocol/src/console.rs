//! What the command lines print on stdout, a line at a time. Rust ignores `SIGPIPE`, so a
//! reader that goes away (`local-agent search … | head -1`) turns `println!` into a panic
//! (exit 101); through [`outln!`](crate::outln) the program ends quietly with success instead,
//! as Unix tools do, and any other write error is reported once with exit status 1.
//!
//! Colour: the commands paint their words with [`paint`] and [`style`] unconditionally, and
//! everything printed here goes through `anstream`, which removes the colour unless the stream
//! is a terminal, and honours `NO_COLOR`, `CLICOLOR_FORCE`, `TERM=dumb` and `--color` (through
//! [`use_colour`]). Piped output and logs therefore never carry escape codes.

use std::fmt;
use std::io::{self, Write};

pub use anstyle::Style;

/// Prints a line on stdout like `println!`, ending the program quietly if stdout was closed.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::console::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::console::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Prints on stdout like `print!`, ending the program quietly if stdout was closed.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::console::write_stdout(format_args!($($arg)*))
    };
}

/// Prints a line on stderr like `eprintln!`, without colour unless stderr shows it.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::console::write_stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// The few colours the commands use, by what they mean.
pub mod style {
    use anstyle::{AnsiColor, Style};

    /// Working, found, done.
    pub const GOOD: Style = AnsiColor::Green.on_default();
    /// Works, but should be looked at.
    pub const WARN: Style = AnsiColor::Yellow.on_default();
    /// Failed, refused.
    pub const BAD: Style = AnsiColor::Red.on_default().bold();
    /// What the eye should find first (a result's title).
    pub const STRONG: Style = Style::new().bold();
    /// Details (scores, timings, where a result came from).
    pub const QUIET: Style = Style::new().dimmed();
}

/// `text` in `style`: shown in colour on a terminal, plain anywhere else.
pub fn paint(style: Style, text: impl fmt::Display) -> String {
    format!("{style}{text}{style:#}")
}

/// `--color`: `Some(true)` always, `Some(false)` never, `None` on a terminal unless
/// `NO_COLOR` says otherwise. Call it before anything is printed.
pub fn use_colour(always: Option<bool>) {
    let choice = match always {
        Some(true) => anstream::ColorChoice::Always,
        Some(false) => anstream::ColorChoice::Never,
        None => anstream::ColorChoice::Auto,
    };
    choice.write_global();
}

/// Whether stderr shows colour (a terminal, and neither `NO_COLOR` nor `--color never`): for
/// the log lines, which `tracing` writes itself.
pub fn stderr_shows_colour() -> bool {
    anstream::AutoStream::choice(&io::stderr()) != anstream::ColorChoice::Never
}

/// `text` with any colour removed (for tests and files).
pub fn without_colour(text: &str) -> String {
    anstream::adapter::strip_str(text).to_string()
}

/// Writes `text` to stderr; a closed stderr is ignored (there is nowhere else to tell).
pub fn write_stderr(text: fmt::Arguments<'_>) {
    let mut stderr = anstream::stderr().lock();
    let _ = stderr.write_fmt(text).and_then(|()| stderr.flush());
}

/// Writes `text` to stdout and flushes it; see the module's documentation.
pub fn write_stdout(text: fmt::Arguments<'_>) {
    let mut stdout = anstream::stdout().lock();
    if let Err(error) = stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        if error.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        // stderr may be gone as well; there is nothing else to tell.
        let _ = writeln!(io::stderr(), "error: cannot write to stdout: {error}");
        std::process::exit(1);
    }
}

/// `error` and its causes, each told once: `cannot index /x: No such file or directory`, not
/// the same words again for every layer that both quotes its cause and names it as its source
/// (which `thiserror`'s `{source}` messages and `anyhow`'s `{:#}` would print).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut told = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !text.is_empty() && !told.contains(&text) {
            told.push_str(": ");
            told.push_str(&text);
        }
        cause = inner.source();
    }
    told
}

/// `number` `noun`s for a person: "1 note", "3 notes", "0 chunks" (nouns with a plain `s`).
pub fn count(number: impl Into<u64>, noun: &str) -> String {
    match number.into() {
        1 => format!("1 {noun}"),
        number => format!("{number} {noun}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::{count, error_chain, paint, style, without_colour};

    #[test]
    fn counts_read_as_a_person_writes_them() {
        assert_eq!(
            (count(1u32, "note"), count(0u32, "chunk"), count(12u64, "page")),
            ("1 note".into(), "0 chunks".into(), "12 pages".into())
        );
    }

    #[test]
    fn painted_words_come_back_plain_once_the_colour_is_removed() {
        let painted = format!("{} and {}", paint(style::BAD, "FAIL"), paint(style::QUIET, "3.1 ms"));
        assert!(painted.contains('\x1b'), "{painted:?}");
        assert_eq!(without_colour(&painted), "FAIL and 3.1 ms");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot index /notes: {source}")]
    struct Quoting {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("the run failed")]
    struct Naming(#[source] Quoting);

    #[test]
    fn each_cause_is_told_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let error = Naming(Quoting { source: io });
        assert_eq!(error_chain(&error), "the run failed: cannot index /notes: No such file or directory (os error 2)");
    }
}
