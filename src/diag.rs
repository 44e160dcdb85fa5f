//! The one place that writes to standard error.
//!
//! Every line is `program: message`, with the program name set once by each
//! `main`. `eprintln!` would panic if standard error were a closed pipe; a
//! server must not die because nobody reads its complaints, so write errors
//! are ignored here: there is nowhere left to report them.

use std::fmt;
use std::io::Write;
use std::sync::OnceLock;

static PROGRAM: OnceLock<&'static str> = OnceLock::new();

/// Names the program for every later line; the first call wins.
pub(crate) fn set_program(name: &'static str) {
    let _ = PROGRAM.set(name);
}

/// Something went wrong: the exchange, the program or the command line.
pub(crate) fn error(message: fmt::Arguments) {
    write_line(message);
}

/// Something the operator should know that is not a failure: where the
/// server listens, a summary, a signal received.
pub(crate) fn info(message: fmt::Arguments) {
    write_line(message);
}

/// One `write` per line, so that lines from different threads never interleave.
fn write_line(message: fmt::Arguments) {
    let program = PROGRAM.get().copied().unwrap_or("serv6");
    let line = format!("{program}: {message}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}
