//! The one place that writes to standard error.
//!
//! Every line is `program: message`, with the program name set once by each
//! `main`. `eprintln!` would panic if standard error were a closed pipe; a
//! server must not die because nobody reads its complaints, so write errors
//! are ignored here: there is nowhere left to report them.

use crate::sink::{self, Sink};
use std::fmt;
use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

static PROGRAM: OnceLock<&'static str> = OnceLock::new();
/// Standard error, once the server has made it non-blocking for itself.
static STDERR: OnceLock<Sink> = OnceLock::new();

/// From now on, writes to standard error never wait for its reader (see
/// [`crate::sink`]): a server must go on serving when nobody reads them.
/// If that cannot be set up, lines go out as before.
pub(crate) fn never_block() {
    if let Ok(sink) = Sink::new(std::io::stderr(), report) {
        let _ = STDERR.set(sink);
    }
}

/// Lines standard error has dropped while stalled.
pub(crate) fn dropped() -> u64 {
    STDERR.get().map_or(0, Sink::dropped)
}

/// Waits a little for queued lines to reach standard error, before exit.
pub(crate) fn flush(limit: Duration) {
    if let Some(sink) = STDERR.get() {
        sink.flush(limit);
    }
}

fn report(event: &sink::Event) {
    match event {
        sink::Event::StartedDropping => {
            say(format_args!(
                "standard error is not being read: dropping lines"
            ));
        }
        sink::Event::Resumed { dropped } => say(format_args!(
            "standard error is read again, after {} dropped",
            crate::words::counted(*dropped, "line", "lines")
        )),
        // Failing to write standard error can only be told on standard
        // error: these lines go out if it works again.
        sink::Event::StartedFailing { error: e } => {
            say(format_args!("cannot write standard error: {e}"));
        }
        sink::Event::Recovered { lost } => say(format_args!(
            "standard error is written again, after {} not written",
            crate::words::counted(*lost, "line", "lines")
        )),
    }
}

/// Names the program for every later line; the first call wins.
pub(crate) fn set_program(name: &'static str) {
    let _ = PROGRAM.set(name);
}

/// Says `message` on standard error, as `program: message`: an error, or
/// something else the operator should know (where the server listens, a
/// summary, a signal received). One `write` per line, so that lines from
/// different threads never interleave.
pub(crate) fn say(message: fmt::Arguments) {
    let program = PROGRAM.get().copied().unwrap_or("serv6");
    let line = format!("{program}: {message}\n");
    match STDERR.get() {
        Some(sink) => sink.write_line(line.as_bytes(), false, report),
        None => {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
}
