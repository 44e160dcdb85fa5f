//! What serv6 and cli6 write for people: the exchange log on standard
//! output, one line per exchange ([`log`]), and everything else on
//! standard error as `program: message` ([`say`]; `report` keeps what
//! clients can cause to a few lines a second).
//!
//! Both are an [`Output`], whose writers never wait on its reader for long
//! (a pipe nobody drains, a terminal paused with Ctrl-S, a frozen disk).
//! One write is under way at a time. A line costs one `write` in the
//! common case: a writer that finds the output idle puts its line straight
//! into the kernel, with a write that cannot block where the platform has
//! one (a pipe, terminal or socket on Linux). A log file has no such write,
//! so a worker writes it with the rest of its exchange handed over
//! ([`log_then`]): if the write has not returned within [`STALLED_AFTER`],
//! the output's helper thread runs that rest (the reply), so no client
//! waits on the disk. Lines that find a write under way queue, and the
//! helper writes them; their writers wait for them (a reply follows its
//! log line) unless the output is stalled. Past [`QUEUE_CAP`] queued
//! bytes, lines are dropped and counted.
//!
//! A line is written whole or not at all: one cut short by a failing write
//! is taken back where the file allows, or else the next write starts with
//! an LF. Every line that does not reach the output is counted with its
//! reason: lines written plus lines counted is every line.

use crate::platform::{self, NonBlocking};
use crate::sync;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// After this long without progress, an output counts as stalled.
pub(crate) const STALLED_AFTER: Duration = Duration::from_millis(100);
/// A pipe takes a write of at most this many bytes whole or not at all.
const PIPE_BUF: usize = 4096;
/// The most bytes that wait for a stalled reader; past it, lines are dropped.
pub(crate) const QUEUE_CAP: usize = 1 << 20;
const STDOUT: &str = "standard output";

static PROGRAM: OnceLock<&'static str> = OnceLock::new();
static STDERR: OnceLock<Output> = OnceLock::new();
static LOG: OnceLock<Output> = OnceLock::new();
/// The most message bytes an exchange line shows (`--log-bytes`).
static SHOWN_BYTES: OnceLock<usize> = OnceLock::new();

/// How a write went: the bytes that went, and the error that stopped it,
/// if one did (a slow reader stops a write that cannot block without one).
type Went = (usize, Option<io::Error>);

/// What runs after a log line is written: the rest of its exchange.
pub(crate) type Then = Box<dyn FnOnce() + Send>;

/// Names the program that standard error's lines start with.
pub(crate) fn set_program(name: &'static str) {
    let _ = PROGRAM.set(name);
}

/// From now on standard error never blocks serv6.
pub(crate) fn start() {
    let _ = Output::start(&STDERR, io::stderr(), "standard error");
}

/// From now on standard output carries the exchange log, unless `quiet`,
/// each line showing at most `max_shown` message bytes. Returns what to
/// tell the operator (said after the listening line).
pub(crate) fn start_log(quiet: bool, max_shown: usize) -> Option<String> {
    let _ = SHOWN_BYTES.set(max_shown);
    if quiet {
        return None;
    }
    let why = match Output::start(&LOG, io::stdout(), STDOUT) {
        Err(e) => format!("standard output is unusable ({e})"),
        Ok((_, note)) => return note,
    };
    Some(format!("exchange log: {why}; lines are not written"))
}

/// Writes `program: message` to standard error, never waiting on it.
pub(crate) fn say(message: fmt::Arguments) {
    let program = PROGRAM.get().copied().unwrap_or("serv6");
    let line = format!("{program}: {message}\n");
    match STDERR.get() {
        Some(out) => out.write(line.as_bytes(), false, None),
        // Unit tests: through libtest's capture, not past it to the terminal.
        None if cfg!(test) => eprint!("{line}"),
        None => drop(io::stderr().lock().write_all(line.as_bytes())),
    }
}

/// The most message bytes a log line shows, if exchanges are logged.
pub(crate) fn log_bytes() -> Option<usize> {
    LOG.get().and(SHOWN_BYTES.get().copied())
}

/// Whether writing a log line can block: a log file (a frozen disk), or
/// any log where the platform has no write that cannot block.
pub(crate) fn log_may_block() -> bool {
    LOG.get().is_some_and(|out| out.now.is_none())
}

/// Logs an exchange's line (ending in LF): in the kernel's hands when this
/// returns, unless the output is stalled. With `then` (a worker's reply),
/// it writes the line even where that can block, and runs `then` after:
/// here, or on the output's helper if the write has not returned within
/// [`STALLED_AFTER`]. Without, it never blocks on a write.
pub(crate) fn log(line: &[u8], then: Option<Then>) {
    match LOG.get() {
        Some(out) => out.write(line, true, then),
        None => then.into_iter().for_each(|then| then()),
    }
}

/// Counts an exchange line that could not even be made, with why.
pub(crate) fn not_logged(why: &str) {
    if let Some(out) = LOG.get() {
        out.lock().lost(1, why.into());
    }
}

/// What became of the exchange log's lines so far.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct LogCounts {
    pub written: u64,
    pub queued: u64,
    pub dropped: u64,
    pub not_written: u64,
    /// Why the last lines not written were not.
    pub reason: Option<String>,
}

/// The exchange log's counts, for the metrics and the summary.
pub(crate) fn log_counts() -> LogCounts {
    LOG.get().map_or_else(LogCounts::default, |out| {
        let state = out.lock();
        LogCounts { queued: state.queued.saturating_sub(state.finished), ..state.counts.clone() }
    })
}

/// Lines standard error dropped while stalled.
pub(crate) fn stderr_dropped() -> u64 {
    STDERR.get().map_or(0, |out| out.lock().counts.dropped)
}

/// At exit: waits at most `limit` for the exchange log's queue to be
/// written, and counts what is left as not written, so that the summary,
/// said next, accounts for every line.
pub(crate) fn finish_log(limit: Duration) {
    if let Some(out) = LOG.get() {
        let mut state = out.flush(limit);
        state.closing = true;
        let left = state.queued - state.finished;
        if left > 0 {
            state.lost(left, "still queued at exit".into());
            state.finished = state.queued;
        }
    }
}

/// Waits, at most `limit`, for standard error's queue to be written.
pub(crate) fn flush_stderr(limit: Duration) {
    if let Some(out) = STDERR.get() {
        drop(out.flush(limit));
    }
}

/// A line output that never blocks its writers for long.
pub(crate) struct Output {
    /// `standard output` or `standard error`, for what it tells.
    name: &'static str,
    /// A write that cannot block, if the output and platform have one.
    now: Option<NonBlocking>,
    /// The blocking descriptor: the helper's, and a log file's.
    out: File,
    state: Mutex<State>,
    /// The helper has lines to write or a write to watch.
    work: Condvar,
    /// Lines were written.
    done: Condvar,
}

#[derive(Default)]
struct State {
    /// What waits, in order: the rest of a line a slow reader took only
    /// part of, then whole lines.
    queue: Vec<u8>,
    /// Lines handed over, and lines written or counted lost, in order.
    queued: u64,
    finished: u64,
    /// The one write under way, and the rest of its writer's exchange.
    writing: Option<(Instant, Option<Then>)>,
    /// Bytes of the line under way that the reader already has.
    partial: usize,
    /// A line was left cut short: the next write starts with an LF.
    broken: bool,
    /// The helper wakes on its own to watch writes that may stall; else a
    /// writer wakes it. Writes that may stall, so far.
    watching: bool,
    stallable: u64,
    /// Writers waiting for their line: waking none costs nothing, where a
    /// notify costs a system call even with no one to wake.
    awaiting: u32,
    counts: LogCounts,
    /// Lines lost, and dropped, since writing last worked.
    failing: u64,
    dropping: u64,
    /// At exit, what is left is counted: nothing more is written.
    closing: bool,
}

impl State {
    /// Counts `n` lines not written; true at the first of a run.
    fn lost(&mut self, n: u64, reason: String) -> bool {
        self.counts.not_written += n;
        self.failing += n;
        self.counts.reason = Some(reason);
        self.failing == n
    }

    /// Counts `n` lines written, and says so if writing works again.
    fn written(&mut self, n: u64, name: &str) -> Option<String> {
        self.counts.written += n;
        let failed = std::mem::take(&mut self.failing);
        let dropped = std::mem::take(&mut self.dropping);
        match (failed, dropped) {
            (0, 0) => None,
            (0, _) => Some(format!("{name} is read again, after {dropped} lines dropped")),
            (_, _) => Some(format!("{name} takes lines again, after {failed} not written")),
        }
    }
}

impl Output {
    /// Makes `fd` the output `cell` holds, with its helper thread; also
    /// what to tell the operator of it, if anything.
    fn start(
        cell: &'static OnceLock<Output>,
        fd: impl AsFd,
        name: &'static str,
    ) -> io::Result<(&'static Output, Option<String>)> {
        let out = File::from(fd.as_fd().try_clone_to_owned()?);
        let (now, note) = match platform::non_blocking(&out) {
            Ok(now) => (now, None),
            Err(e) => (None, Some(format!("{name} cannot be written without blocking ({e}): its lines wait for a helper thread"))),
        };
        let (state, work, done) = (Mutex::default(), Condvar::new(), Condvar::new());
        let output = cell.get_or_init(|| Output { name, now, out, state, work, done });
        sync::spawn("serv6-output", sync::HELPER_STACK, move || output.help())?;
        Ok((output, note))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        sync::lock(&self.state)
    }

    /// Writes `line` whole, never split by another's: itself if no write
    /// is under way and it can do so without blocking (or may block, with
    /// `then` handed over in case it stalls), else through the queue.
    /// Waits for it if `wait`; then runs `then`, unless the helper did.
    fn write(&self, line: &[u8], wait: bool, mut then: Option<Then>) {
        let mut state = self.lock();
        let mut told = None;
        state.queued += 1;
        let mut ticket = state.queued;
        let idle = state.writing.is_none() && state.queue.is_empty() && !state.broken;
        if idle && (self.now.is_some() || then.is_some()) {
            if then.is_some() {
                state.stallable += 1;
                if !std::mem::replace(&mut state.watching, true) {
                    self.work.notify_one();
                }
            }
            state.writing = Some((Instant::now(), then.take()));
            drop(state);
            let went = self.write_now(line);
            state = self.lock();
            then = state.writing.take().and_then(|(_, then)| then);
            told = if went.0 == line.len() {
                // The common case, one line whole, needs no counting of LFs.
                state.finished += 1;
                state.written(1, self.name)
            } else {
                self.settle(&mut state, line, went)
            };
        } else if state.queue.len() + line.len() > QUEUE_CAP {
            (state.queued, ticket) = (state.queued - 1, 0);
            state.counts.dropped += 1;
            state.dropping += 1;
            let (name, kib) = (self.name, QUEUE_CAP >> 10);
            told = (state.dropping == 1).then(|| {
                format!("{name} is not being read: {kib} KiB of lines wait, the rest are dropped")
            });
        } else {
            state.queue.extend_from_slice(line);
        }
        if !state.queue.is_empty() && state.writing.is_none() {
            self.work.notify_one();
        }
        if wait {
            state = self.wait_finished(state, ticket, None);
        }
        drop(state);
        if let Some(line) = told {
            say(format_args!("{line}"));
        }
        if let Some(then) = then {
            then();
        }
    }

    /// One write of `bytes`: without blocking where the output allows it,
    /// else whole, blocking. How many bytes went, and the error that
    /// stopped it, if one did (a slow reader stops a write without one).
    fn write_now(&self, bytes: &[u8]) -> Went {
        let Some(now) = &self.now else { return write_all(&self.out, bytes) };
        match now.write(bytes) {
            Ok(n) => (n, None),
            Err(e) if sync::is_interrupted(&e) || sync::is_timeout(&e) => (0, None),
            Err(e) => (0, Some(e)),
        }
    }

    /// Accounts for a write of `bytes`, the line under way (if the reader
    /// has part of it) and then what queued, of which `n` went before
    /// `error`, if any: what was written, what is lost, what must wait.
    fn settle(&self, state: &mut State, bytes: &[u8], (n, error): Went) -> Option<String> {
        if state.closing {
            return None; // Counted at exit already.
        }
        let (went, left) = (lines(&bytes[..n]), lines(&bytes[n..]));
        state.finished += went;
        let last_end = bytes[..n].iter().rposition(|&b| b == b'\n');
        let out_of_last = last_end.map_or(state.partial + n, |at| n - at - 1);
        let told = if went > 0 { state.written(went, self.name) } else { None };
        let told = match error {
            // A slow reader took only part: the rest goes first, in turn.
            None => {
                state.partial = out_of_last;
                state.queue.splice(0..0, bytes[n..].iter().copied());
                told
            }
            Some(error) => {
                state.partial = 0;
                state.broken |= out_of_last > 0 && !take_back(&self.out, out_of_last);
                state.finished += left;
                let (name, reason) = (self.name, error.to_string());
                let first = state.lost(left, reason.clone());
                (told.is_some() || first).then(|| {
                    format!("cannot write {name}: {reason}; serving goes on, and the lines not written are counted")
                })
            }
        };
        if state.awaiting > 0 {
            self.done.notify_all();
        }
        told
    }

    /// Waits until line `ticket` is finished: at most until `until`, or,
    /// without one, while the output is not stalled (a write under way for
    /// [`STALLED_AFTER`], or none begun within it).
    fn wait_finished<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        ticket: u64,
        until: Option<Instant>,
    ) -> MutexGuard<'a, State> {
        let mut started = None;
        while state.finished < ticket {
            let since = state.writing.as_ref().map(|(since, _)| *since);
            let since = since.unwrap_or_else(|| *started.get_or_insert_with(Instant::now));
            let until = until.unwrap_or(since + STALLED_AFTER);
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state.awaiting += 1;
            state = sync::wait_timeout(&self.done, state, left);
            state.awaiting -= 1;
        }
        state
    }

    /// Waits, at most `limit`, for every queued line to be finished.
    fn flush(&self, limit: Duration) -> MutexGuard<'_, State> {
        let state = self.lock();
        let ticket = state.queued;
        self.wait_finished(state, ticket, Some(Instant::now() + limit))
    }

    /// The helper: writes what queues, in order, blocking as it must; and
    /// runs the rest of the exchange of a writer whose write has not
    /// returned within [`STALLED_AFTER`].
    fn help(&self) {
        let mut state = self.lock();
        loop {
            let stalled = match &mut state.writing {
                Some((since, then)) if since.elapsed() >= STALLED_AFTER => then.take(),
                _ => None,
            };
            if let Some(then) = stalled {
                drop(state);
                then();
                state = self.lock();
            } else if state.writing.is_none() && !state.queue.is_empty() && !state.closing {
                // At most a pipe's atomic write, ending at a line's end: a
                // stop, even a kill, cuts no line shorter than that.
                let within = &state.queue[..state.queue.len().min(PIPE_BUF)];
                let end = within.iter().rposition(|&b| b == b'\n');
                let end = end.or_else(|| state.queue.iter().position(|&b| b == b'\n'));
                let end = end.map_or(state.queue.len(), |at| at + 1);
                let mut bytes: Vec<u8> = state.queue.drain(..end).collect();
                // A line left cut short is ended first, by an LF of its own.
                let lf = usize::from(std::mem::take(&mut state.broken));
                if lf == 1 {
                    bytes.insert(0, b'\n');
                }
                state.writing = Some((Instant::now(), None));
                drop(state);
                let (n, error) = write_all(&self.out, &bytes);
                state = self.lock();
                state.writing = None;
                state.broken |= n < lf;
                let told = self.settle(&mut state, &bytes[lf..], (n.saturating_sub(lf), error));
                if let Some(line) = told {
                    drop(state);
                    say(format_args!("{line}"));
                    state = self.lock();
                }
            } else {
                let seen = state.stallable;
                state = if state.watching {
                    sync::wait_timeout(&self.work, state, STALLED_AFTER / 2)
                } else {
                    sync::wait(&self.work, state)
                };
                // Quiet for a while: from now on a writer wakes it.
                state.watching &= state.stallable != seen || state.writing.is_some();
            }
        }
    }
}

/// Writes all of `bytes` to `out`, blocking; how many went, and the error
/// that stopped it, if one did.
fn write_all(mut out: &File, bytes: &[u8]) -> Went {
    let mut done = 0;
    while done < bytes.len() {
        match out.write(&bytes[done..]) {
            Ok(0) => return (done, Some(io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if sync::is_interrupted(&e) => {}
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}

/// How many lines `bytes` ends. (Counted only where writes fail or wait:
/// no need for a faster count.)
fn lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Removes the last `cut` bytes written to `out`, a line cut short, if it
/// is a file that allows it; true if it did. A file at its size limit can
/// never take the LF that would end the line, but it can be shortened.
fn take_back(mut out: &File, cut: usize) -> bool {
    use std::io::{Seek, SeekFrom};
    let start = out.stream_position().ok().and_then(|end| end.checked_sub(cut as u64));
    start
        .is_some_and(|start| out.set_len(start).is_ok() && out.seek(SeekFrom::Start(start)).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn lines_into_a_slow_pipe_are_whole_and_each_writers_in_order() {
        static OUT: OnceLock<Output> = OnceLock::new();
        let (mut from, to) = io::pipe().expect("a pipe");
        let (out, _) = Output::start(&OUT, to, "a test pipe").expect("an output");
        let reader = thread::spawn(move || {
            let (mut all, mut chunk) = (Vec::new(), [0u8; 8192]);
            while !all.ends_with(b"end\n") {
                let Ok(n @ 1..) = io::Read::read(&mut from, &mut chunk) else { break };
                all.extend_from_slice(&chunk[..n]);
                // A slow reader: the pipe fills, lines queue, some drop.
                thread::sleep(Duration::from_micros(200));
            }
            all
        });
        let writers: Vec<_> = (0..4)
            .map(|t| {
                thread::spawn(move || {
                    for n in 0..20_000 {
                        out.write(format!("{t} {n} {}\n", "x".repeat(200)).as_bytes(), false, None);
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("a writer");
        }
        drop(out.flush(Duration::from_secs(20)));
        out.write(b"end\n", false, None);
        let all = reader.join().expect("the reader");
        let (mut last, mut read) = ([None; 4], 0u64);
        for line in String::from_utf8_lossy(&all).lines().filter(|l| *l != "end") {
            let mut parts = line.splitn(3, ' ');
            let (t, n, pad) = (parts.next(), parts.next(), parts.next());
            let t: usize = t.and_then(|t| t.parse().ok()).filter(|&t| t < 4).expect(line);
            let n: u64 = n.and_then(|n| n.parse().ok()).expect(line);
            assert_eq!(pad.map(str::len), Some(200), "cut: {line}");
            assert!(last[t].map_or(true, |l| n > l), "out of its writer's order: {line}");
            last[t] = Some(n);
            read += 1;
        }
        let dropped = out.lock().counts.dropped;
        assert_eq!(read + dropped, 80_000, "{read} read, {dropped} dropped");
    }
}
