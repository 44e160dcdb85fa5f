//! What clients can cause (a refused message, a reset, accepting that
//! fails), said on standard error a few lines a second at most: the first
//! [`SHOWN_PER_SECOND`] of each second in full, the rest counted by kind
//! and said in one line when the second ends, so that no crowd of clients
//! can flood the operator's terminal or journal.

use crate::output::say;
use crate::sync;
use crate::words::counted;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// Report lines shown in full in each second; the rest are counted.
const SHOWN_PER_SECOND: u32 = 5;

/// The report lines of the current second: shown, and counted unshown by
/// noun. A second starts with its first report; a helper thread ends it a
/// second later, saying the counts; while there are none it sleeps.
static SECOND: Second = Second {
    shown: AtomicU32::new(0),
    unshown: Mutex::new(Vec::new()),
    started: Mutex::new(false),
    wake: Condvar::new(),
};

struct Second {
    shown: AtomicU32,
    unshown: Mutex<Vec<((&'static str, &'static str), u64)>>,
    started: Mutex<bool>,
    wake: Condvar,
}

/// Says something clients can cause, counted under `what` (its noun, one
/// and many), in full or in the count said when the second ends.
pub(crate) fn report(what: (&'static str, &'static str), line: fmt::Arguments) {
    let shown = SECOND.shown.fetch_add(1, Relaxed);
    if shown == 0 {
        *sync::lock(&SECOND.started) = true;
        SECOND.wake.notify_one();
    }
    if shown < SHOWN_PER_SECOND {
        return say(line);
    }
    let mut unshown = sync::lock(&SECOND.unshown);
    match unshown.iter_mut().find(|(w, _)| *w == what) {
        Some((_, n)) => *n += 1,
        None => unshown.push((what, 1)),
    }
}

/// The server's own trouble that clients can cause (accepting fails, say).
pub(crate) fn trouble(line: fmt::Arguments) {
    report(("line of server trouble", "lines of server trouble"), line);
}

/// Starts the thread that ends each second in which reports came.
pub(crate) fn start() {
    let started = thread::Builder::new()
        .name("serv6-reports".into())
        .stack_size(sync::HELPER_STACK)
        .spawn(|| loop {
            let mut started = sync::lock(&SECOND.started);
            while !std::mem::take(&mut *started) {
                started = sync::wait(&SECOND.wake, started);
            }
            drop(started);
            thread::sleep(Duration::from_secs(1));
            end_second();
        });
    if let Err(e) = started {
        say(format_args!(
            "cannot start the report counter ({e}): past five lines, reports are only counted"
        ));
    }
}

/// Ends the current second: says what was counted rather than shown.
pub(crate) fn end_second() {
    SECOND.shown.store(0, Relaxed);
    let unshown = std::mem::take(&mut *sync::lock(&SECOND.unshown));
    let counts: Vec<String> =
        unshown.into_iter().map(|((one, many), n)| counted(n, one, many)).collect();
    if !counts.is_empty() {
        say(format_args!("and in the last second: {}", counts.join(", ")));
    }
}
