//! Writing to standard error without ever panicking.
//!
//! `eprintln!` panics if standard error is a closed pipe; a server must not
//! die because nobody reads its complaints, so every diagnostic goes here.

use std::fmt;
use std::io::Write;

/// Writes `program: message` and a newline to standard error, in one write
/// so that lines from different threads never interleave. Errors are ignored:
/// there is nowhere left to report them.
pub fn error(program: &str, message: fmt::Arguments) {
    let line = format!("{program}: {message}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}
