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
use std::sync::{Mutex, OnceLock};
use std::thread::{self, Thread};
use std::time::Duration;

/// Report lines shown in full in each second; the rest are counted.
const SHOWN_PER_SECOND: u32 = 5;

/// The report lines of the current second. A second starts with its first
/// report, which wakes [`ENDER`]; it ends the second a second later, saying
/// what was counted, and while there are no reports it sleeps.
static SHOWN: AtomicU32 = AtomicU32::new(0);
/// Those not shown, counted by noun.
static UNSHOWN: Mutex<Vec<((&str, &str), u64)>> = Mutex::new(Vec::new());
/// The thread that ends each second in which reports came.
static ENDER: OnceLock<Thread> = OnceLock::new();

/// Says something clients can cause, counted under `what` (its noun, one
/// and many), in full or in the count said when the second ends.
pub(crate) fn report(what: (&'static str, &'static str), line: fmt::Arguments) {
    let shown = SHOWN.fetch_add(1, Relaxed);
    if let (0, Some(ender)) = (shown, ENDER.get()) {
        ender.unpark();
    }
    if shown < SHOWN_PER_SECOND {
        return say(line);
    }
    let mut unshown = sync::lock(&UNSHOWN);
    match unshown.iter_mut().find(|(w, _)| *w == what) {
        Some((_, n)) => *n += 1,
        None => unshown.push((what, 1)),
    }
}

/// Starts [`ENDER`]; before any worker exists, so that every report finds it.
pub(crate) fn start() {
    let started = sync::spawn("serv6-reports", sync::HELPER_STACK, || loop {
        // An unpark before the park makes it return at once.
        while SHOWN.load(Relaxed) == 0 {
            thread::park();
        }
        thread::sleep(Duration::from_secs(1));
        end_second();
    });
    match started {
        Ok(ender) => _ = ENDER.set(ender.thread().clone()),
        Err(e) => say(format_args!(
            "cannot start the report counter ({e}): past five lines, reports are only counted"
        )),
    }
}

/// Ends the current second: says what was counted rather than shown.
pub(crate) fn end_second() {
    SHOWN.store(0, Relaxed);
    let unshown = std::mem::take(&mut *sync::lock(&UNSHOWN));
    let counts: Vec<String> =
        unshown.into_iter().map(|((one, many), n)| counted(n, one, many)).collect();
    if !counts.is_empty() {
        say(format_args!("and in the last second: {}", counts.join(", ")));
    }
}
