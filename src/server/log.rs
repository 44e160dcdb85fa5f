//! What serv6 tells its operator: one line per exchange on standard output,
//! and the counters for the summary printed on exit. Everything else goes
//! to standard error through [`crate::diag`].

use crate::diag;
use crate::escape::escape_into;
use crate::timestamp::Rfc3339;
use crate::words::counted;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{PoisonError, RwLock};
use std::time::Instant;

/// Longest write that pipes deliver whole, never interleaved with another
/// writer's (POSIX `PIPE_BUF` on Linux). Files and terminals take any single
/// `write` whole.
const PIPE_BUF: usize = 4096;

/// The exchange log.
#[derive(Debug)]
pub(crate) struct Log {
    /// A duplicate of standard output, written with one `write` per line
    /// and no buffering; `None` with `--quiet`.
    out: Option<File>,
    /// The most message bytes a line shows (`--log-bytes`).
    max_shown: usize,
    /// Lines up to [`PIPE_BUF`] share it and write concurrently; a longer
    /// line, which a pipe could split, takes it alone.
    long_line: RwLock<()>,
    stdout_failed: AtomicBool,
}

impl Log {
    /// A log that writes exchanges unless `quiet`, each showing at most
    /// `max_shown` bytes of its message.
    pub fn new(quiet: bool, max_shown: usize) -> Self {
        let out = if quiet {
            None
        } else {
            match std::io::stdout().as_fd().try_clone_to_owned() {
                Ok(fd) => Some(File::from(fd)),
                Err(e) => {
                    diag::error(format_args!(
                        "standard output is unusable ({e}): exchanges are not logged"
                    ));
                    None
                }
            }
        };
        Log {
            out,
            max_shown,
            long_line: RwLock::new(()),
            stdout_failed: AtomicBool::new(false),
        }
    }

    /// Logs an exchange: `<stamp> <peer> <N> bytes "<message, escaped>"`,
    /// and ` ... (M more bytes)` past `--log-bytes`, so that a long
    /// message cannot make a long line; formatted in `line`, which the
    /// caller lends so that logging does not allocate. With `--quiet`, does
    /// not even format it.
    pub fn exchange(&self, line: &mut String, stamp: &Rfc3339, peer: SocketAddr, message: &[u8]) {
        if self.out.is_none() {
            return;
        }
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
        self.write(line);
    }

    /// Writes one exchange line (ending in LF) to standard output in a single
    /// `write`, so that it is in the kernel's hands, and survives `kill -9`,
    /// before the reply is sent. Workers do not queue behind one another's
    /// writes: std's stdout lock would make them. If standard output fails,
    /// says so once on standard error and goes on serving.
    fn write(&self, line: &str) {
        let Some(out) = &self.out else {
            return;
        };
        let mut out = out;
        let written = if line.len() <= PIPE_BUF {
            let _shared = self
                .long_line
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            out.write_all(line.as_bytes())
        } else {
            let _alone = self
                .long_line
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            out.write_all(line.as_bytes())
        };
        if let Err(e) = written {
            if !self.stdout_failed.swap(true, Relaxed) {
                diag::error(format_args!(
                    "cannot write the exchange log to standard output: {e}; serving on without it"
                ));
            }
        }
    }
}

/// Counts that end up in the summary line on exit.
#[derive(Debug)]
pub(crate) struct Stats {
    pub started: Instant,
    pub served: AtomicU64,
    pub errors: AtomicU64,
    pub busy: AtomicU64,
    /// A balancer's health checks (PROXY protocol): neither exchanges nor errors.
    pub checks: AtomicU64,
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            started: Instant::now(),
            served: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            checks: AtomicU64::new(0),
        }
    }

    /// The summary: `stopped after 12.3 s: 40 exchanges served, 2 errors, 0 busy refusals`.
    pub fn summary(&self) -> String {
        let checks = self.checks.load(Relaxed);
        format!(
            "stopped after {:.1} s: {} served, {}, {}{}",
            self.started.elapsed().as_secs_f64(),
            counted(self.served.load(Relaxed), "exchange", "exchanges"),
            counted(self.errors.load(Relaxed), "error", "errors"),
            counted(self.busy.load(Relaxed), "busy refusal", "busy refusals"),
            if checks > 0 {
                format!(", {}", counted(checks, "health check", "health checks"))
            } else {
                String::new()
            }
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
