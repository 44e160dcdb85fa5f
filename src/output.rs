//! What serv6 and cli6 write for people: the exchange log on standard
//! output, one line per exchange ([`log_exchange`]), and everything else
//! on standard error as `program: message` ([`say`]; [`report`] for what
//! clients can cause, a few lines a second at most).
//!
//! Both are an [`Output`], whose writers never wait on its reader for
//! long: a pipe nobody drains, a terminal paused with Ctrl-S, a frozen
//! disk. A line costs one `write` in the common case: its writer puts it
//! straight into the kernel, with a write that cannot block on a pipe or
//! terminal (reopened `O_NONBLOCK` through `/proc/self/fd`, a description
//! of our own) or a stream socket such as journald's (`MSG_DONTWAIT`). A
//! regular file has no write that cannot block, so a worker writes it
//! with its reply handed over first ([`Pending`]): if the write has not
//! returned within [`STALLED_AFTER`] (a frozen filesystem, a stuck NFS
//! server), the output's helper thread sends that reply, so no client
//! waits on the disk. A pipe takes a write of up to [`PIPE_BUF`] bytes
//! whole or not at all, and so does a Unix socket one of up to about half
//! its send buffer: there, while no line waits, writers write short lines
//! side by side. Otherwise writers take turns, one write at a time; lines
//! that come meanwhile queue, and the writer in turn writes them too, or
//! the helper does when the reader is slow. Past [`QUEUE_CAP`] queued bytes, lines are
//! dropped and counted. A writer waits for its queued line (so that a
//! reply follows its log line) unless the output is stalled.
//!
//! A line is written whole or not at all: one cut short by a failing write
//! is taken back, or else the next starts with an LF. Every line that does
//! not reach the output is counted with its reason, and the summary says
//! so: lines written plus lines counted is every line.

use crate::escape::escape_into;
use crate::platform;
use crate::protocol::push_decimal;
use crate::sync;
use crate::timestamp::Rfc3339;
use crate::words::counted;
use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant};

/// After this long without progress, an output counts as stalled.
pub(crate) const STALLED_AFTER: Duration = Duration::from_millis(100);
/// The most bytes that wait for a stalled reader; past it, lines are dropped.
pub(crate) const QUEUE_CAP: usize = 1 << 20;
/// A pipe takes a write of at most this many bytes whole or not at all.
const PIPE_BUF: usize = 4096;
/// Report lines shown in full in each second; the rest are counted.
const SHOWN_PER_SECOND: u32 = 5;

static PROGRAM: OnceLock<&'static str> = OnceLock::new();
static STDERR: OnceLock<Output> = OnceLock::new();
static LOG: OnceLock<Output> = OnceLock::new();
/// The most message bytes an exchange line shows (`--log-bytes`).
static SHOWN_BYTES: OnceLock<usize> = OnceLock::new();
static REPORTS: Reports = Reports {
    shown: AtomicU32::new(0),
    unshown: Mutex::new(Vec::new()),
    second_started: Mutex::new(false),
    wake: Condvar::new(),
};

/// Names the program that standard error's lines start with.
pub(crate) fn set_program(name: &'static str) {
    let _ = PROGRAM.set(name);
}

/// From now on standard error never blocks serv6, and reports are kept to
/// a few lines a second.
pub(crate) fn start() {
    let _ = Output::start(&STDERR, io::stderr(), "standard error");
    REPORTS.start();
}

/// From now on standard output carries the exchange log, unless `quiet`,
/// each line showing at most `max_shown` message bytes. Returns what to
/// tell the operator if it cannot (said after the listening line).
pub(crate) fn start_log(quiet: bool, max_shown: usize) -> Option<String> {
    let _ = SHOWN_BYTES.set(max_shown);
    if quiet {
        return None;
    }
    let why = match Output::start(&LOG, io::stdout(), "standard output") {
        Err(e) => format!("standard output is unusable ({e})"),
        Ok(out) if matches!(out.direct, Direct::Closed) => "standard output is closed".into(),
        Ok(_) => return None,
    };
    Some(format!("exchange log: {why}; lines are not written"))
}

/// Writes `program: message` to standard error, never waiting on it.
pub(crate) fn say(message: fmt::Arguments) {
    let program = PROGRAM.get().copied().unwrap_or("serv6");
    let line = format!("{program}: {message}\n");
    match STDERR.get() {
        Some(out) => drop(out.write(line.as_bytes(), Way::Queue, None)),
        // Unit tests: through libtest's capture, not past it to the terminal.
        None if cfg!(test) => eprint!("{line}"),
        None => drop(io::stderr().lock().write_all(line.as_bytes())),
    }
}

/// Says something clients can cause, counted under `what` (its noun, one
/// and many): the first [`SHOWN_PER_SECOND`] lines of each second in full,
/// the rest counted, and the counts said when the second ends.
pub(crate) fn report(what: (&'static str, &'static str), line: fmt::Arguments) {
    if REPORTS.shown_now() {
        say(line);
    } else {
        let mut unshown = sync::lock(&REPORTS.unshown);
        match unshown.iter_mut().find(|(w, _)| *w == what) {
            Some((_, n)) => *n += 1,
            None => unshown.push((what, 1)),
        }
    }
}

/// The server's own trouble that clients can cause (accepting fails, say).
pub(crate) fn trouble(line: fmt::Arguments) {
    report(("line of server trouble", "lines of server trouble"), line);
}

/// A reply waiting for its log line: if writing the line stalls, the
/// output sends the reply itself and closes the connection.
pub(crate) struct Pending {
    pub stream: TcpStream,
    pub reply: String,
}

/// Logs an exchange, `<stamp> <client> <N> bytes "<message, escaped>"`,
/// and ` ... (M more bytes)` past `--log-bytes`, formatted in `line`,
/// which the caller lends so that logging does not allocate. The line is
/// in the kernel's hands when this returns, unless the output is stalled.
/// A worker passes its reply along (`pending`), and gets it back unless
/// the output had to send it; the room passes none, and never writes a
/// file itself. With `--quiet`, the line is not even formatted.
pub(crate) fn log_exchange(
    line: &mut String,
    (stamp, client, message): (&Rfc3339, SocketAddr, &[u8]),
    pending: Option<Pending>,
) -> Option<Pending> {
    let Some(out) = LOG.get() else {
        return pending;
    };
    line.clear();
    line.push_str(stamp.as_str());
    line.push(' ');
    push_addr(line, client);
    line.push(' ');
    push_decimal(line, message.len() as u64);
    line.push_str(" bytes \"");
    let shown = message.len().min(SHOWN_BYTES.get().copied().unwrap_or(0));
    escape_into(line, &message[..shown]);
    line.push('"');
    if shown < message.len() {
        let _ = write!(line, " ... ({} more bytes)", message.len() - shown);
    }
    line.push('\n');
    let way = if pending.is_some() { Way::Direct } else { Way::Wait };
    out.write(line.as_bytes(), way, pending)
}

/// Logs the daytime or time service told a client: `<stamp> <client>
/// <service>`.
pub(crate) fn log_service(line: &mut String, stamp: &Rfc3339, client: SocketAddr, service: &str) {
    if let Some(out) = LOG.get() {
        line.clear();
        let _ = writeln!(line, "{} {client} {service}", stamp.as_str());
        out.write(line.as_bytes(), Way::Wait, None);
    }
}

/// Appends `addr` as `Display` writes it, without its formatting
/// machinery for the common IPv4 case: a cost on every exchange.
fn push_addr(line: &mut String, addr: SocketAddr) {
    let SocketAddr::V4(v4) = addr else {
        let _ = write!(line, "{addr}");
        return;
    };
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        if i > 0 {
            line.push('.');
        }
        push_decimal(line, u64::from(octet));
    }
    line.push(':');
    push_decimal(line, u64::from(v4.port()));
}

/// What became of the exchange log's lines so far: written, queued,
/// dropped, not written (and why), for the metrics and the summary.
pub(crate) fn log_counts() -> (u64, u64, u64, u64, Option<String>) {
    let Some(out) = LOG.get() else {
        return (0, 0, 0, 0, None);
    };
    let state = out.lock();
    let failed = &state.failed;
    let written = state.written.saturating_sub(failed.lines) + out.written_beside.load(Relaxed);
    let queued = state.queued - state.written;
    let dropped = out.dropped.load(Relaxed);
    (written, queued, dropped, failed.lines, failed.reason.clone())
}

/// Lines standard error dropped while stalled.
pub(crate) fn stderr_dropped() -> u64 {
    STDERR.get().map_or(0, |out| out.dropped.load(Relaxed))
}

/// What the outputs lost, as the summary says it: `3 exchange lines
/// dropped`, `2 exchange lines not written: Broken pipe`, ...
pub(crate) fn losses() -> Vec<String> {
    let (_, _, dropped, not_written, reason) = log_counts();
    let why_not_written = reason.map(|reason| format!(": {reason}"));
    let counts = [
        (dropped, "exchange line dropped", "exchange lines dropped", None),
        (stderr_dropped(), "error line dropped", "error lines dropped", None),
        (not_written, "exchange line not written", "exchange lines not written", why_not_written),
    ];
    let lost = counts.into_iter().filter(|&(n, ..)| n > 0);
    lost.map(|(n, one, many, why)| counted(n, one, many) + &why.unwrap_or_default()).collect()
}

/// At exit: says this second's unshown reports, waits at most `limit` for
/// the exchange log's queue to be written, and counts what is left as not
/// written, so that the summary, said next, accounts for every line.
pub(crate) fn finish_log(limit: Duration) {
    REPORTS.end_second();
    if let Some(out) = LOG.get() {
        let mut state = out.flush(limit);
        let left = state.queued - state.written;
        if left > 0 {
            state.failed.lines += left;
            state.failed.reason = Some("still queued at exit".into());
            state.written = state.queued;
        }
    }
}

/// Waits, at most `limit`, for standard error's queue to be written.
pub(crate) fn flush_stderr(limit: Duration) {
    if let Some(out) = STDERR.get() {
        drop(out.flush(limit));
    }
}

/// How a writer goes about its line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    /// A worker: writes it itself, even to a file (its reply handed over),
    /// and waits for it, unless the output is stalled.
    Direct,
    /// Writes it itself only where a write cannot block, and waits for it.
    Wait,
    /// As `Wait`, but never waits.
    Queue,
}

/// How an output takes a line at once.
enum Direct {
    /// A pipe or terminal, reopened non-blocking.
    Write(File),
    /// A stream socket: `send` with `MSG_DONTWAIT`.
    Send,
    /// A regular file (or anything else): a blocking write.
    Blocking,
    /// Standard output was closed when serv6 started.
    Closed,
}

/// A line output that never blocks its writers for long.
pub(crate) struct Output {
    /// `standard output` or `standard error`, for what it tells.
    name: &'static str,
    direct: Direct,
    /// The longest line writers may write side by side (0: none may).
    beside_up_to: usize,
    /// Held shared by writers side by side, and alone by a write in turn,
    /// which might not go whole (a long chunk, a blocking write).
    turns: RwLock<()>,
    /// Lines written side by side, outside the queue's count.
    written_beside: AtomicU64,
    /// No line waits and none was left cut short, so a line written
    /// beside the others cannot overtake one or land inside one.
    none_waiting: AtomicBool,
    /// The blocking descriptor: the helper's, and a file's direct one.
    out: File,
    state: Mutex<State>,
    /// The helper has lines to write or a write to watch.
    work: Condvar,
    /// Lines were written.
    done: Condvar,
    dropped: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Lines that wait, in order, and how many lines ever went in and out.
    bytes: Vec<u8>,
    queued: u64,
    written: u64,
    /// The one write under way, if any: (since, the writer's reply until
    /// its line is written or the helper sends it).
    writing: Option<(Instant, Option<Pending>)>,
    /// Lines written directly, for the helper to see writers at work.
    direct_writes: u64,
    /// The helper waits with no timeout: a writer must wake it to watch.
    helper_asleep: bool,
    /// Threads waiting for lines to be written: waking none costs nothing,
    /// where a notify costs a system call even with no one to wake.
    awaiting: u32,
    /// Lines dropped since the queue last drained.
    dropped_in_burst: u64,
    failed: Failures,
}

/// Lines that a write failed to take, and why.
#[derive(Default)]
struct Failures {
    lines: u64,
    reason: Option<String>,
    /// Lines lost since writing last worked.
    in_burst: u64,
    /// The last write stopped inside a line: the next starts a new one.
    broken: bool,
}

/// How a write went.
enum Outcome {
    Written,
    /// The first bytes went (a non-blocking write), the rest must wait.
    Partial(usize),
    /// `lost` lines not written; `broken`: a line was left cut short.
    Failed {
        lost: u64,
        broken: bool,
        error: io::Error,
    },
}

impl Output {
    /// Makes `fd` the output `cell` holds, with its helper thread.
    fn start(
        cell: &'static OnceLock<Output>,
        fd: impl AsFd,
        name: &'static str,
    ) -> io::Result<&'static Output> {
        let raw = fd.as_fd().as_raw_fd();
        let out = File::from(fd.as_fd().try_clone_to_owned()?);
        let meta = out.metadata()?;
        let kind = meta.file_type();
        let direct = if name == "standard output" && is_closed(raw, &meta) {
            Direct::Closed
        } else if kind.is_fifo() || kind.is_char_device() {
            OpenOptions::new()
                .write(true)
                .custom_flags(platform::O_NONBLOCK)
                .open(format!("/proc/self/fd/{raw}"))
                .map_or(Direct::Blocking, Direct::Write)
        } else if kind.is_socket() {
            Direct::Send
        } else {
            Direct::Blocking
        };
        let beside_up_to = match direct {
            Direct::Write(_) if kind.is_fifo() => PIPE_BUF,
            Direct::Send => platform::local_send_whole_up_to(&out).min(PIPE_BUF),
            _ => 0,
        };
        let output = cell.get_or_init(|| Output {
            name,
            direct,
            beside_up_to,
            turns: RwLock::new(()),
            written_beside: AtomicU64::new(0),
            none_waiting: AtomicBool::new(true),
            out,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            dropped: AtomicU64::new(0),
        });
        thread::Builder::new()
            .name("serv6-output".into())
            .stack_size(sync::HELPER_STACK)
            .spawn(move || output.help())?;
        Ok(output)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        sync::lock(&self.state)
    }

    /// Writes `line` (ending in LF) whole, never split by another's, the
    /// `way` it says; hands `pending` back unless the output sent it.
    /// Whoever finds no write under way becomes the writer.
    fn write(&self, line: &[u8], way: Way, pending: Option<Pending>) -> Option<Pending> {
        let taken = self.write_beside(line);
        if taken == line.len() {
            return pending;
        }
        let line = &line[taken..];
        let mut state = self.lock();
        if let Direct::Closed = self.direct {
            state.failed.lines += 1;
            state.failed.reason = Some(format!("{} is closed", self.name));
            return pending;
        }
        let may_write = way == Way::Direct || !matches!(self.direct, Direct::Blocking);
        state.queued += 1;
        self.note_waiting(&state);
        let ticket = state.queued;
        let (state, pending) = if may_write && state.writing.is_none() && state.bytes.is_empty() {
            state.direct_writes += 1;
            if std::mem::take(&mut state.helper_asleep) {
                self.work.notify_one();
            }
            let (pending, went) = self.write_as_writer(state, Some(line), pending);
            if went || way == Way::Queue {
                return pending;
            }
            (self.lock(), pending)
        } else if state.bytes.len() + line.len() > QUEUE_CAP {
            self.dropped.fetch_add(1, Relaxed);
            state.queued -= 1;
            self.note_waiting(&state);
            state.dropped_in_burst += 1;
            if state.dropped_in_burst == 1 {
                drop(state);
                let what = if self.name == "standard output" { "exchange lines" } else { "lines" };
                say(format_args!(
                    "{} is not being read: {} of {what} wait, the rest are dropped",
                    self.name,
                    counted((QUEUE_CAP >> 10) as u64, "KiB", "KiB")
                ));
            }
            return pending;
        } else {
            state.bytes.extend_from_slice(line);
            if state.writing.is_none() {
                self.work.notify_one();
            }
            (state, pending)
        };
        if way != Way::Queue {
            drop(self.wait_written(state, ticket));
        }
        pending
    }

    /// Writes `line` beside other writers, where the output takes it whole
    /// or not at all, no line waits and no write in turn is under way.
    /// Returns how many bytes went: 0 when it must take its turn (as when
    /// the reader is slow or gone: the turn counts what fails); a part,
    /// which those outputs never take, has its rest follow in turn.
    fn write_beside(&self, line: &[u8]) -> usize {
        // Held, shared, through the write.
        let turns = (line.len() <= self.beside_up_to).then(|| self.turns.try_read().ok()).flatten();
        if turns.is_none() || !self.none_waiting.load(Relaxed) {
            return 0;
        }
        let taken = match &self.direct {
            Direct::Write(out) => (&*out).write(line),
            _ => platform::send_now(&self.out, line),
        }
        .unwrap_or(0);
        if taken == line.len() {
            self.written_beside.fetch_add(1, Relaxed);
        }
        taken
    }

    /// As the one write under way (with the writer's reply, `pending`,
    /// handed over in case it stalls), writes `first`, then what queued
    /// meanwhile, once: more is left to the helper, so that no worker holds
    /// its own reply for others' lines. The helper (no `first`) writes,
    /// blocking, until the queue is empty. A slow reader's rest is left to
    /// the helper too. Returns the reply unless the helper sent it, and
    /// whether `first` went whole.
    fn write_as_writer<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        mut first: Option<&[u8]>,
        pending: Option<Pending>,
    ) -> (Option<Pending>, bool) {
        let (direct, mut rounds, mut went) = (first.is_some(), 2, false);
        state.writing = Some((Instant::now(), pending));
        let (mut chunk, mut told) = (Vec::new(), Vec::new());
        loop {
            let upto = state.queued;
            if first.is_none() {
                chunk = std::mem::take(&mut state.bytes);
            }
            let own = first.take();
            let bytes = own.unwrap_or(&chunk[..]);
            let broken = state.failed.broken;
            drop(state);
            let outcome = self.write_in_turn(bytes, direct, broken);
            state = self.lock();
            if let Outcome::Partial(n) = outcome {
                self.keep_rest(&mut state, bytes, n);
                break;
            }
            went |= own.is_some();
            state.written = upto;
            self.tell_awaiting(&state);
            told.extend(self.count(&mut state, outcome));
            rounds -= usize::from(direct);
            if state.bytes.is_empty() {
                let dropped = std::mem::take(&mut state.dropped_in_burst);
                told.extend(
                    (dropped > 0)
                        .then(|| format!("{} is read again, after {dropped} dropped", self.name)),
                );
                break;
            }
            if rounds == 0 {
                break;
            }
            if let Some((since, _)) = &mut state.writing {
                *since = Instant::now();
            }
        }
        let pending = state.writing.take().and_then(|(_, pending)| pending);
        self.note_waiting(&state);
        if !state.bytes.is_empty() {
            self.work.notify_one();
        }
        drop(state);
        for line in told {
            say(format_args!("{line}"));
        }
        (pending, went)
    }

    /// The reader is slow: the rest of `bytes` after `n` waits, first in
    /// line, for the helper, never dropped, or the output would show half
    /// a line.
    fn keep_rest(&self, state: &mut State, bytes: &[u8], n: usize) {
        state.written += lines(&bytes[..n]);
        self.tell_awaiting(state);
        state.bytes.splice(0..0, bytes[n..].iter().copied());
    }

    /// One write, with none beside it: `bytes` from the writer's own line
    /// (`direct`: a write that cannot block, where the output has one) or
    /// the queue (a blocking write, starting with an LF if the last was
    /// `broken` inside a line).
    fn write_in_turn(&self, bytes: &[u8], direct: bool, broken: bool) -> Outcome {
        let in_turn = self.turns.write().unwrap_or_else(PoisonError::into_inner);
        let outcome = match (&self.direct, direct) {
            (Direct::Write(out), true) => now_or_partial((&*out).write(bytes), bytes),
            (Direct::Send, true) => now_or_partial(platform::send_now(&self.out, bytes), bytes),
            _ => write_out(&self.out, bytes, broken),
        };
        drop(in_turn);
        outcome
    }

    /// Notes, for writers that would write beside the others, whether a
    /// line waits or was left cut short: theirs must not overtake it nor
    /// land inside it.
    fn note_waiting(&self, state: &State) {
        let none = state.written == state.queued && !state.failed.broken;
        self.none_waiting.store(none, Relaxed);
    }

    /// Counts what a write of whole lines lost, if anything; returns what
    /// to tell of it (once the lock is let go: telling writes a line).
    fn count(&self, state: &mut State, outcome: Outcome) -> Option<String> {
        let failed = &mut state.failed;
        let Outcome::Failed { lost, broken, error } = outcome else {
            failed.broken = false;
            let lost = std::mem::take(&mut failed.in_burst);
            return (lost > 0).then(|| {
                format!("{} is written again, after {lost} lines not written", self.name)
            });
        };
        let first = failed.in_burst == 0;
        failed.lines += lost;
        failed.in_burst += lost;
        failed.reason = Some(error.to_string());
        failed.broken = broken;
        first.then(|| {
            if self.name == "standard output" {
                format!("cannot write the exchange log to standard output: {error}; serving goes on, and the lines not written are counted")
            } else {
                format!("cannot write {}: {error}", self.name)
            }
        })
    }

    /// Waits until line `ticket` is written, unless the output is stalled:
    /// a write under way for [`STALLED_AFTER`], or none begun within it.
    fn wait_written<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        ticket: u64,
    ) -> MutexGuard<'a, State> {
        let started = Instant::now();
        while state.written < ticket {
            let since = state.writing.as_ref().map_or(started, |(since, _)| *since);
            let left = (since + STALLED_AFTER).saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self.await_written(state, left);
        }
        state
    }

    /// Waits, at most `limit`, for every queued line to be written.
    fn flush(&self, limit: Duration) -> MutexGuard<'_, State> {
        let until = Instant::now() + limit;
        let mut state = self.lock();
        while state.written < state.queued && Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            state = self.await_written(state, left);
        }
        state
    }

    fn tell_awaiting(&self, state: &State) {
        if state.awaiting > 0 {
            self.done.notify_all();
        }
    }

    /// Waits at most `left` for lines to be written.
    fn await_written<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        left: Duration,
    ) -> MutexGuard<'a, State> {
        state.awaiting += 1;
        let mut state = sync::wait_timeout(&self.done, state, left);
        state.awaiting -= 1;
        state
    }

    /// The helper: writes out what queues when no writer does, in order,
    /// blocking as it must; and while workers write a file, sends the
    /// reply of one whose write has not returned within [`STALLED_AFTER`].
    fn help(&self) {
        let (mut state, mut seen) = (self.lock(), 0);
        let file = matches!(self.direct, Direct::Blocking);
        loop {
            let stalled = match &mut state.writing {
                Some((since, pending)) if since.elapsed() >= STALLED_AFTER => pending.take(),
                _ => None,
            };
            if let Some(Pending { stream, reply }) = stalled {
                drop(state);
                let _ = platform::send_now(&stream, reply.as_bytes());
                let _ = stream.shutdown(Shutdown::Write);
                // What the client sent meanwhile is read, so that closing
                // does not reset the connection and destroy the reply.
                let mut sink = [0u8; 512];
                while matches!(platform::recv_now(&stream, &mut sink), Ok((n, _)) if n > 0) {}
                state = self.lock();
                continue;
            }
            if state.writing.is_none() && !state.bytes.is_empty() {
                self.write_as_writer(state, None, None);
                state = self.lock();
                continue;
            }
            let watching = state.direct_writes != seen || state.writing.is_some();
            seen = state.direct_writes;
            // Only a file's writes need watching; a writer wakes the
            // helper for that, once, when it first writes after a lull.
            state.helper_asleep = file && !watching;
            state = if file && watching {
                sync::wait_timeout(&self.work, state, STALLED_AFTER / 2)
            } else {
                sync::wait(&self.work, state)
            };
        }
    }
}

/// A non-blocking write's result as an [`Outcome`]: what it could not
/// take yet is left to the helper, which waits for the reader; a failure
/// (the reader gone) loses the lines, counted.
fn now_or_partial(result: io::Result<usize>, bytes: &[u8]) -> Outcome {
    match result {
        Ok(n) if n == bytes.len() => Outcome::Written,
        Ok(n) => Outcome::Partial(n),
        Err(e) if sync::is_interrupted(&e) || sync::is_timeout(&e) => Outcome::Partial(0),
        Err(error) => Outcome::Failed { lost: lines(bytes), broken: false, error },
    }
}

/// Writes `chunk` (whole lines) to `out`, starting with an LF if the last
/// write was `broken` inside a line; a line it cuts short is taken back
/// where the file allows, so that no two lines are ever glued together.
fn write_out(mut out: &File, chunk: &[u8], broken: bool) -> Outcome {
    let fresh = if broken { out.write_all(b"\n") } else { Ok(()) };
    let mut done = 0;
    let result = fresh.and_then(|()| {
        while done < chunk.len() {
            match out.write(&chunk[done..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if sync::is_interrupted(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    let Err(error) = result else {
        return Outcome::Written;
    };
    let cut = chunk[..done].iter().rev().take_while(|&&b| b != b'\n').count();
    Outcome::Failed {
        lost: lines(&chunk[done..]),
        broken: (broken && done == 0) || (cut > 0 && !take_back(out, cut)),
        error,
    }
}

/// How many lines `bytes` ends.
// Lines are counted only where writes fail: no need for a faster count.
#[allow(clippy::naive_bytecount)]
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

/// Whether `fd` is standard output or error that was closed when the
/// program started: Rust's runtime opens `/dev/null` read-write in its
/// place, where a shell's `>/dev/null` opens it write-only.
fn is_closed(fd: i32, meta: &std::fs::Metadata) -> bool {
    const DEV_NULL: u64 = (1 << 8) | 3;
    let flags = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
    let read_write = flags
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        .is_some_and(|f| f & 3 == 2);
    meta.file_type().is_char_device() && meta.rdev() == DEV_NULL && read_write
}

/// The report lines of the current second: shown, and counted unshown by
/// noun. A second starts with its first report; a helper thread ends it a
/// second later, saying the counts; while there are none it sleeps.
struct Reports {
    shown: AtomicU32,
    unshown: Mutex<Vec<((&'static str, &'static str), u64)>>,
    second_started: Mutex<bool>,
    wake: Condvar,
}

impl Reports {
    /// Starts the thread that ends each second in which reports came.
    fn start(&'static self) {
        let started = thread::Builder::new()
            .name("serv6-reports".into())
            .stack_size(sync::HELPER_STACK)
            .spawn(move || loop {
                let mut started = sync::lock(&self.second_started);
                while !std::mem::take(&mut *started) {
                    started = sync::wait(&self.wake, started);
                }
                drop(started);
                thread::sleep(Duration::from_secs(1));
                self.end_second();
            });
        if let Err(e) = started {
            say(format_args!(
                "cannot start the report counter ({e}): past five lines, reports are only counted"
            ));
        }
    }

    /// Whether a report now is shown in full.
    fn shown_now(&self) -> bool {
        let shown = self.shown.fetch_add(1, Relaxed);
        if shown == 0 {
            *sync::lock(&self.second_started) = true;
            self.wake.notify_one();
        }
        shown < SHOWN_PER_SECOND
    }

    fn end_second(&self) {
        self.shown.store(0, Relaxed);
        let unshown = std::mem::take(&mut *sync::lock(&self.unshown));
        let counts: Vec<String> =
            unshown.into_iter().map(|((one, many), n)| counted(n, one, many)).collect();
        if !counts.is_empty() {
            say(format_args!("and in the last second: {}", counts.join(", ")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_numbers_are_written_as_display_writes_them() {
        for addr in ["0.0.0.0:0", "127.0.0.1:5006", "255.255.255.255:65535", "[::1]:80"] {
            let addr: SocketAddr = addr.parse().expect("an address");
            let mut line = String::new();
            push_addr(&mut line, addr);
            assert_eq!(line, addr.to_string());
        }
        for n in [0, 9, 10, 65_536, u64::MAX] {
            let mut line = String::new();
            push_decimal(&mut line, n);
            assert_eq!(line, n.to_string());
        }
    }

    /// Writes `per` numbered lines of `width` bytes from each of four
    /// threads into `out`, read slowly from `from`, then a last line; says
    /// how many lines it read, how many were cut short, and how many came
    /// before a line their own thread had written earlier.
    fn write_at_once(
        out: &'static Output,
        mut from: impl io::Read + Send + 'static,
        (per, width, way): (u64, usize, Way),
    ) -> (usize, usize, usize) {
        let (tx, read_all) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let (mut all, mut chunk, mut reads) = (Vec::new(), [0u8; 8192], 0u32);
            while !all.ends_with(b"end\n") {
                let Ok(n @ 1..) = from.read(&mut chunk) else { break };
                all.extend_from_slice(&chunk[..n]);
                reads += 1;
                if reads % 50 == 0 {
                    thread::sleep(Duration::from_millis(2));
                }
            }
            drop(tx.send(all));
        });
        let writers: Vec<_> = (0..4)
            .map(|t| {
                thread::spawn(move || {
                    for n in 0..per {
                        let line = format!("{t} {n} {}\n", "x".repeat(width));
                        drop(out.write(line.as_bytes(), way, None));
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("a writer");
        }
        drop(out.flush(Duration::from_secs(20)));
        drop(out.write(b"end\n", Way::Queue, None));
        // The output is never closed: a last line lost would leave the
        // reader waiting, so this fails rather than hang.
        let all = read_all.recv_timeout(Duration::from_secs(60)).expect("the last line read");
        let (mut last, mut cut, mut late, mut read) = ([None; 4], 0, 0, 0);
        for line in String::from_utf8_lossy(&all).lines().filter(|l| *l != "end") {
            read += 1;
            let mut parts = line.splitn(3, ' ');
            let numbers = (parts.next(), parts.next(), parts.next());
            let (Some(t), Some(n), Some(pad)) = numbers else {
                cut += 1;
                continue;
            };
            match (t.parse::<usize>(), n.parse::<u64>()) {
                (Ok(t @ 0..4), Ok(n)) if pad.len() == width => {
                    late += usize::from(last[t].is_some_and(|l| n <= l));
                    last[t] = Some(n);
                }
                _ => cut += 1,
            }
        }
        (read, cut, late)
    }

    #[test]
    fn lines_into_a_slow_pipe_are_whole_and_each_writers_in_order() {
        static OUT: OnceLock<Output> = OnceLock::new();
        let (from, to) = io::pipe().expect("a pipe");
        let out = Output::start(&OUT, to, "a test pipe").expect("an output");
        let (read, cut, late) = write_at_once(out, from, (30_000, 200, Way::Queue));
        let dropped = out.dropped.load(Relaxed);
        assert_eq!((cut, late), (0, 0), "{read} lines read, {dropped} dropped");
        assert_eq!(read as u64 + dropped, 120_000);
    }

    #[test]
    fn lines_longer_than_a_socket_sends_whole_are_never_cut() {
        static OUT: OnceLock<Output> = OnceLock::new();
        let (to, from) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
        platform::set_int_option(to.as_fd(), platform::SO_SNDBUF, 2048).expect("a send buffer");
        let out = Output::start(&OUT, to, "a test socket").expect("an output");
        let (read, cut, late) = write_at_once(out, from, (2_000, 3000, Way::Wait));
        let dropped = out.dropped.load(Relaxed);
        assert_eq!((cut, late), (0, 0), "{read} lines read, {dropped} dropped");
        assert_eq!(read as u64 + dropped, 8_000);
    }
}
