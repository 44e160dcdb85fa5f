//! What serv6 tells its operator: one line per exchange on standard output,
//! and the counters for the summary printed on exit. Everything else goes
//! to standard error through [`crate::diag`].

use super::errors::{ErrorLines, Kind};
use super::histogram::Histogram;
use crate::diag;
use crate::escape::escape_into;
use crate::sink::{self, Sink};
use crate::timestamp::Rfc3339;
use crate::words::counted;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use std::time::Instant;

/// The exchange log.
pub(crate) struct Log {
    /// Standard output, never blocking for long; `None` with `--quiet`.
    out: Option<Sink>,
    /// The most message bytes a line shows (`--log-bytes`).
    max_shown: usize,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("quiet", &self.out.is_none())
            .field("max_shown", &self.max_shown)
            .finish()
    }
}

impl Log {
    /// A log that writes exchanges unless `quiet`, each showing at most
    /// `max_shown` bytes of its message.
    pub fn new(quiet: bool, max_shown: usize) -> Self {
        let out = if quiet {
            None
        } else {
            match Sink::new(std::io::stdout(), report) {
                Ok(sink) => Some(sink),
                Err(e) => {
                    diag::say(format_args!(
                        "standard output is unusable ({e}): exchanges are not logged"
                    ));
                    None
                }
            }
        };
        Log { out, max_shown }
    }

    /// Logs an exchange: `<stamp> <peer> <N> bytes "<message, escaped>"`,
    /// and ` ... (M more bytes)` past `--log-bytes`, so that a long
    /// message cannot make a long line; formatted in `line`, which the
    /// caller lends so that logging does not allocate. With `--quiet`, does
    /// not even format it.
    ///
    /// The line is in the kernel's hands, and survives `kill -9`, before
    /// the reply is sent, unless standard output is stalled (see
    /// [`crate::sink`]): serving goes on, and lines wait, in order, or are
    /// dropped and counted.
    pub fn exchange(&self, line: &mut String, stamp: &Rfc3339, peer: SocketAddr, message: &[u8]) {
        let Some(out) = &self.out else {
            return;
        };
        line.clear();
        line.push_str(stamp.as_str());
        let _ = write!(line, " {peer} {} bytes \"", message.len());
        let shown = message.len().min(self.max_shown);
        escape_into(line, &message[..shown]);
        line.push('"');
        if shown < message.len() {
            let _ = write!(line, " ... ({} more bytes)", message.len() - shown);
        }
        line.push('\n');
        out.write_line(line.as_bytes(), true, report);
    }

    /// Exchange lines dropped while standard output was stalled.
    pub fn dropped(&self) -> u64 {
        self.out.as_ref().map_or(0, Sink::dropped)
    }

    /// Exchange lines written, and those waiting to be.
    pub fn written_and_waiting(&self) -> (u64, u64) {
        self.out.as_ref().map_or((0, 0), Sink::written_and_waiting)
    }

    /// Exchange lines a write failed to take, and the last reason.
    pub fn not_written(&self) -> (u64, Option<String>) {
        self.out.as_ref().map_or((0, None), |out| {
            let failures = out.failures();
            (failures.lines, failures.reason)
        })
    }

    /// Waits a little for queued lines to reach standard output.
    pub fn flush(&self, limit: Duration) {
        if let Some(out) = &self.out {
            out.flush(limit);
        }
    }
}

fn report(event: &sink::Event) {
    match event {
        sink::Event::StartedDropping => diag::say(format_args!(
            "standard output is not being read: {} of exchange lines wait, the rest are dropped",
            crate::words::counted((sink::QUEUE_CAP >> 10) as u64, "KiB", "KiB")
        )),
        sink::Event::Resumed { dropped } => diag::say(format_args!(
            "standard output is read again, after {} dropped",
            counted(*dropped, "exchange line", "exchange lines")
        )),
        sink::Event::StartedFailing { error } => diag::say(format_args!(
            "cannot write the exchange log to standard output: {error}; serving goes on, \
             and the lines not written are counted"
        )),
        sink::Event::Recovered { lost } => diag::say(format_args!(
            "standard output is written again, after {} not written",
            counted(*lost, "exchange line", "exchange lines")
        )),
    }
}

/// Counts that end up in the summary line on exit.
#[derive(Debug)]
pub(crate) struct Stats {
    pub started: Instant,
    pub served: AtomicU64,
    /// A balancer's health checks (PROXY protocol): neither exchanges nor errors.
    pub checks: AtomicU64,
    /// Connections told `error: server shutting down`.
    pub told_shutting_down: AtomicU64,
    /// From a message's arrival to its reply written.
    pub reply_latency: Histogram,
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            started: Instant::now(),
            served: AtomicU64::new(0),
            checks: AtomicU64::new(0),
            told_shutting_down: AtomicU64::new(0),
            reply_latency: Histogram::default(),
        }
    }

    /// The summary: `stopped after 12.3 s: 40 exchanges served, 2 errors,
    /// 0 busy refusals`, then health checks, dropped lines and lines not
    /// written if any. `verb` says what the time is since start, as in
    /// `stopped after`. The errors are `errors`' counts, which the metrics
    /// show too.
    pub fn summary(&self, verb: &str, log: &Log, errors: &ErrorLines, dropped_err: u64) -> String {
        let dropped_out = log.dropped();
        let checks = self.checks.load(Relaxed);
        let mut extra = String::new();
        for (n, one, many) in [
            (checks, "health check", "health checks"),
            (
                self.told_shutting_down.load(Relaxed),
                "connection cut at shutdown",
                "connections cut at shutdown",
            ),
            (
                dropped_out,
                "exchange line dropped",
                "exchange lines dropped",
            ),
            (dropped_err, "error line dropped", "error lines dropped"),
        ] {
            if n > 0 {
                extra.push_str(", ");
                extra.push_str(&counted(n, one, many));
            }
        }
        if let (n @ 1.., reason) = log.not_written() {
            extra.push_str(", ");
            extra.push_str(&counted(n, "exchange line", "exchange lines"));
            extra.push_str(" not written");
            if let Some(reason) = reason {
                extra.push_str(": ");
                extra.push_str(&reason);
            }
        }
        format!(
            "{verb} {:.1} s: {} served, {}, {}{}",
            self.started.elapsed().as_secs_f64(),
            counted(self.served.load(Relaxed), "exchange", "exchanges"),
            counted(errors.errors(), "error", "errors"),
            counted(errors.total(Kind::Busy), "busy refusal", "busy refusals"),
            extra
        )
    }
}

/// A run of failures of one kind, reported at its start and at its end
/// rather than once per failure, so a flood cannot flood the log.
#[derive(Debug, Default)]
pub(crate) struct Burst {
    failures: AtomicU64,
}

impl Burst {
    /// Counts a failure; true when it starts a burst and should be reported.
    pub fn fail(&self) -> bool {
        self.failures.fetch_add(1, Relaxed) == 0
    }

    /// Marks a success; returns how many failures the burst it ends had.
    pub fn succeed(&self) -> Option<u64> {
        if self.failures.load(Relaxed) == 0 {
            return None;
        }
        Some(self.failures.swap(0, Relaxed)).filter(|&n| n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_reported_once_and_closed_with_its_count() {
        let burst = Burst::default();
        assert_eq!(burst.succeed(), None);
        assert!(burst.fail());
        assert!(!burst.fail());
        assert!(!burst.fail());
        assert_eq!(burst.succeed(), Some(3));
        assert_eq!(burst.succeed(), None);
        assert!(burst.fail());
    }
}
