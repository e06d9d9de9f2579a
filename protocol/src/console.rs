//! What the command lines print on stdout, a line at a time. Rust ignores `SIGPIPE`, so a
//! reader that goes away (`local-agent search … | head -1`) turns `println!` into a panic
//! (exit 101); through [`outln!`](crate::outln) the program ends quietly with success instead,
//! as Unix tools do, and any other write error is reported once with exit status 1.

use std::fmt;
use std::io::{self, Write};

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

/// Writes `text` to stdout and flushes it; see the module's documentation.
pub fn write_stdout(text: fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
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

#[cfg(test)]
mod tests {
    use super::error_chain;

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
