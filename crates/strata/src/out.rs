//! What the commands print, written so that a reader that goes away (`strata ps --json |
//! head -1`) ends the command quietly and successfully, never with a panic: Rust ignores
//! SIGPIPE, so a write to a closed pipe fails with `BrokenPipe`, which `println!` turns
//! into a panic. Commands write through [`stdout`] and return the error; `main` knows it
//! by [`is_closed_pipe`] and exits 0 without a word.

use std::io::{self, IsTerminal, Write};

/// Runs `write` on a buffered, locked stdout and flushes it.
pub fn stdout(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let out = io::stdout();
    let mut out = io::BufWriter::new(out.lock());
    write(&mut out)?;
    out.flush()
}

/// Prints `text` and a line end.
pub fn line(text: impl std::fmt::Display) -> io::Result<()> {
    stdout(|out| writeln!(out, "{text}"))
}

/// Whether the error, or one it was caused by, is a write to a reader that went away.
pub fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Whether a person watches stdout (progress and colours for them; plain lines for
/// pipes, files and tests).
pub fn interactive() -> bool {
    io::stdout().is_terminal()
}

/// Whether a person watches stderr.
pub fn interactive_stderr() -> bool {
    io::stderr().is_terminal()
}
