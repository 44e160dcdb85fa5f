//! Per-exchange error lines, kept to a few a second whatever clients do:
//! every line a client can cause (errors, busy refusals) comes through here.
//!
//! In each second, the first [`SHOWN_PER_SECOND`] errors are written in
//! full, naming the client. The rest are only counted, by kind, and a
//! helper thread writes one line with the counts at the end of the second:
//! a flood of resets or oversize messages costs a line a second, not a
//! line each. A second starts with its first error; while there are none,
//! the helper sleeps.

use crate::diag;
use crate::sync;
use crate::words::counted;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// Errors written in full in each second.
pub(crate) const SHOWN_PER_SECOND: u32 = 5;

/// What kind of error an exchange ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Deadline,
    TooLong,
    Proxy,
    Clock,
    Failed,
    /// Told `error: server busy`, to make room for a newer connection.
    Busy,
    /// The server's own trouble a client can cause: accepting fails for
    /// want of descriptors, a worker cannot start.
    Trouble,
}

impl Kind {
    /// Every kind, in the order their counts are written.
    const ALL: [Kind; 7] = [
        Kind::Deadline,
        Kind::TooLong,
        Kind::Proxy,
        Kind::Clock,
        Kind::Failed,
        Kind::Busy,
        Kind::Trouble,
    ];

    /// Where this kind's count is kept: its place in [`Kind::ALL`].
    fn slot(self) -> usize {
        match self {
            Kind::Deadline => 0,
            Kind::TooLong => 1,
            Kind::Proxy => 2,
            Kind::Clock => 3,
            Kind::Failed => 4,
            Kind::Busy => 5,
            Kind::Trouble => 6,
        }
    }

    /// Its name as a metric's label: lower case, underscores.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Deadline => "deadline",
            Kind::TooLong => "too_long",
            Kind::Proxy => "proxy",
            Kind::Clock => "clock",
            Kind::Failed => "failed",
            Kind::Busy => "busy",
            Kind::Trouble => "trouble",
        }
    }

    /// One and many of it, as counted in words.
    fn nouns(self) -> (&'static str, &'static str) {
        match self {
            Kind::Deadline => ("deadline", "deadlines"),
            Kind::TooLong => ("message too long", "messages too long"),
            Kind::Proxy => ("refused PROXY connection", "refused PROXY connections"),
            Kind::Clock => ("clock out of range", "clocks out of range"),
            Kind::Failed => ("connection failed", "connections failed"),
            Kind::Busy => ("busy refusal", "busy refusals"),
            Kind::Trouble => ("line of server trouble", "lines of server trouble"),
        }
    }
}

/// The error lines of one server.
#[derive(Debug, Default)]
pub(crate) struct ErrorLines {
    shown: AtomicU32,
    unshown: [AtomicU64; Kind::ALL.len()],
    /// Every error ever reported, by kind.
    total: [AtomicU64; Kind::ALL.len()],
    /// Set by the first error of a second, for the helper to wake on.
    second_started: Mutex<bool>,
    wake: Condvar,
}

impl ErrorLines {
    /// Starts the helper that ends each second in which errors came.
    pub fn start() -> Arc<ErrorLines> {
        let lines = Arc::new(ErrorLines::default());
        let ticking = Arc::clone(&lines);
        let started = thread::Builder::new()
            .name("serv6-errors".into())
            .stack_size(sync::HELPER_STACK)
            .spawn(move || loop {
                ticking.wait_for_an_error();
                thread::sleep(Duration::from_secs(1));
                ticking.end_second();
            });
        if let Err(e) = started {
            diag::say(format_args!(
                "cannot start the error counter ({e}): every error line is shown"
            ));
        }
        lines
    }

    /// Reports an error of `kind`: in full if few came this second.
    pub fn report(&self, kind: Kind, line: fmt::Arguments) {
        self.total[kind.slot()].fetch_add(1, Relaxed);
        let shown = self.shown.fetch_add(1, Relaxed);
        if shown == 0 {
            *sync::lock(&self.second_started) = true;
            self.wake.notify_one();
        }
        if shown < SHOWN_PER_SECOND {
            diag::say(line);
        } else {
            self.unshown[kind.slot()].fetch_add(1, Relaxed);
        }
    }

    fn wait_for_an_error(&self) {
        let mut started = sync::lock(&self.second_started);
        while !*started {
            started = sync::wait(&self.wake, started);
        }
        *started = false;
    }

    /// The errors of `kind` so far.
    pub fn total(&self, kind: Kind) -> u64 {
        self.total[kind.slot()].load(Relaxed)
    }

    /// Errors proper so far: every kind but busy refusals and the server's
    /// own trouble, which the summary counts apart or not at all.
    pub fn errors(&self) -> u64 {
        self.totals()
            .filter(|(kind, _)| !matches!(kind, Kind::Busy | Kind::Trouble))
            .map(|(_, n)| n)
            .sum()
    }

    /// Every kind with the errors of it so far.
    pub fn totals(&self) -> impl Iterator<Item = (Kind, u64)> + '_ {
        Kind::ALL
            .iter()
            .map(|&kind| (kind, self.total[kind.slot()].load(Relaxed)))
    }

    /// Writes the counts of the errors not shown this second, if any.
    pub fn end_second(&self) {
        self.shown.store(0, Relaxed);
        let counts: Vec<String> = Kind::ALL
            .iter()
            .filter_map(|kind| {
                let n = self.unshown[kind.slot()].swap(0, Relaxed);
                let (one, many) = kind.nouns();
                (n > 0).then(|| counted(n, one, many))
            })
            .collect();
        if !counts.is_empty() {
            diag::say(format_args!(
                "and in the last second: {}",
                counts.join(", ")
            ));
        }
    }
}
