//! What serv6 and cli6 write for people: the exchange log on standard
//! output (one line per exchange, [`log_exchange`]) and everything else on
//! standard error ([`say`], and [`report`] for what clients can cause,
//! a few lines a second at most), as `program: message`.
//!
//! Both go through an [`Output`], whose writers never wait on its reader
//! for long: a pipe nobody drains, a terminal paused with Ctrl-S, a frozen
//! disk. Direct first: a writer puts its line straight into the kernel
//! with a write that cannot block. Only when that would block does the line
//! go to a bounded queue, which a helper thread writes out in order, and
//! the writer waits for its line (so that a reply follows its log line)
//! unless the helper has made no progress for [`STALLED_AFTER`]; then the
//! output is stalled, and lines wait up to [`QUEUE_CAP`] bytes, past which
//! they are dropped and counted. A pipe or terminal is reopened through
//! `/proc/self/fd` with `O_NONBLOCK`, so the flag is on a description of
//! our own; anything else (a regular file, where a write can block for as
//! long as its disk does, or a socket) has every line written by the helper.
//!
//! A write that fails (a full disk, a size limit, a reader gone) loses its
//! lines, counted as not written with the reason. A line is written whole
//! or not at all: after one cut short, the next write starts with an LF.

use crate::escape::escape_into;
use crate::sync;
use crate::timestamp::Rfc3339;
use crate::words::counted;
use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock};
use std::thread;
use std::time::{Duration, Instant};

/// After this long without progress, an output counts as stalled.
pub(crate) const STALLED_AFTER: Duration = Duration::from_millis(100);
/// The most bytes that wait for a stalled reader; past it, lines are dropped.
pub(crate) const QUEUE_CAP: usize = 1 << 20;
/// Longest write that pipes take whole or not at all (POSIX `PIPE_BUF`).
const PIPE_BUF: usize = 4096;
/// Report lines shown in full in each second; the rest are counted.
const SHOWN_PER_SECOND: u32 = 5;

static PROGRAM: OnceLock<&'static str> = OnceLock::new();
static STDERR: OnceLock<Output> = OnceLock::new();
/// The exchange log; `None` inside with `--quiet`.
static LOG: OnceLock<Log> = OnceLock::new();
static REPORTS: Reports = Reports::new();

struct Log {
    out: Option<Output>,
    /// The most message bytes a line shows (`--log-bytes`).
    max_shown: usize,
}

/// Names the program that standard error's lines start with.
pub(crate) fn set_program(name: &'static str) {
    let _ = PROGRAM.set(name);
}

/// From now on standard error never blocks serv6, and reports are kept to
/// a few lines a second.
pub(crate) fn start() {
    if let Ok(output) = Output::new(io::stderr(), Target::Stderr) {
        let _ = STDERR.set(output);
    }
    REPORTS.start();
}

/// From now on standard output carries the exchange log, unless `quiet`,
/// each line showing at most `max_shown` message bytes.
pub(crate) fn start_log(quiet: bool, max_shown: usize) {
    let out = if quiet {
        None
    } else {
        match Output::new(io::stdout(), Target::Log) {
            Ok(output) => Some(output),
            Err(e) => {
                say(format_args!(
                    "standard output is unusable ({e}): exchanges are not logged"
                ));
                None
            }
        }
    };
    let _ = LOG.set(Log { out, max_shown });
}

/// Writes `program: message` to standard error, never waiting on it.
pub(crate) fn say(message: fmt::Arguments) {
    let program = PROGRAM.get().copied().unwrap_or("serv6");
    let line = format!("{program}: {message}\n");
    match STDERR.get() {
        Some(output) => output.write_line(line.as_bytes(), false),
        None => {
            let _ = io::stderr().lock().write_all(line.as_bytes());
        }
    }
}

/// Says something clients can cause, counted under `what` (its noun, one
/// and many): the first [`SHOWN_PER_SECOND`] lines of each second in full,
/// the rest counted, and the counts said when the second ends.
pub(crate) fn report(what: (&'static str, &'static str), line: fmt::Arguments) {
    if REPORTS.shown_now() {
        say(line);
    } else {
        REPORTS.count(what);
    }
}

/// The server's own trouble that clients can cause (accepting fails, say).
pub(crate) fn trouble(line: fmt::Arguments) {
    report(("line of server trouble", "lines of server trouble"), line);
}

/// Logs an exchange: `<stamp> <client> <N> bytes "<message, escaped>"`,
/// and ` ... (M more bytes)` past `--log-bytes`, formatted in `line`,
/// which the caller lends so that logging does not allocate. The line is
/// in the kernel's hands when this returns, unless standard output is
/// stalled. With `--quiet`, not even formatted.
pub(crate) fn log_exchange(line: &mut String, stamp: &Rfc3339, client: SocketAddr, message: &[u8]) {
    let Some(Log {
        out: Some(out),
        max_shown,
    }) = LOG.get()
    else {
        return;
    };
    line.clear();
    line.push_str(stamp.as_str());
    let _ = write!(line, " {client} {} bytes \"", message.len());
    let shown = message.len().min(*max_shown);
    escape_into(line, &message[..shown]);
    line.push('"');
    if shown < message.len() {
        let _ = write!(line, " ... ({} more bytes)", message.len() - shown);
    }
    line.push('\n');
    out.write_line(line.as_bytes(), true);
}

/// What became of the exchange log's lines so far.
#[derive(Debug, Default, Clone)]
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
    match LOG.get().and_then(|log| log.out.as_ref()) {
        Some(out) => out.counts(),
        None => LogCounts::default(),
    }
}

/// Lines standard error dropped while stalled.
pub(crate) fn stderr_dropped() -> u64 {
    STDERR.get().map_or(0, |out| out.counts().dropped)
}

/// What the outputs lost, as the summary says it: `3 exchange lines
/// dropped`, `2 exchange lines not written: Broken pipe`, ...
pub(crate) fn losses() -> Vec<String> {
    let log = log_counts();
    let mut lines = Vec::new();
    for (n, one, many) in [
        (
            log.dropped,
            "exchange line dropped",
            "exchange lines dropped",
        ),
        (
            stderr_dropped(),
            "error line dropped",
            "error lines dropped",
        ),
    ] {
        if n > 0 {
            lines.push(counted(n, one, many));
        }
    }
    if log.not_written > 0 {
        let mut text = counted(log.not_written, "exchange line", "exchange lines");
        text.push_str(" not written");
        if let Some(reason) = log.reason {
            text.push_str(": ");
            text.push_str(&reason);
        }
        lines.push(text);
    }
    lines
}

/// Says the counts of this second's unshown reports, if any.
pub(crate) fn end_second() {
    REPORTS.end_second();
}

/// Waits, at most `limit` each, for queued lines to reach standard
/// output, then standard error.
pub(crate) fn flush(limit: Duration) {
    if let Some(out) = LOG.get().and_then(|log| log.out.as_ref()) {
        out.flush(limit);
    }
    if let Some(out) = STDERR.get() {
        out.flush(limit);
    }
}

/// Which output: its failures are told differently.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Log,
    Stderr,
}

/// How an output takes a line at once, if it can, without blocking.
enum Direct {
    /// A pipe or terminal, reopened non-blocking.
    Write(File),
    /// A stream socket (journald's, say): `send` with `MSG_DONTWAIT`.
    Send(File),
}

/// A line output that never blocks its writers for long.
pub(crate) struct Output {
    shared: Arc<Shared>,
}

struct Shared {
    target: Target,
    /// Where lines go at once, when they can; `None`: always queue.
    direct: Option<Direct>,
    /// Whether `direct` takes a short line whole or not at all, so that
    /// writers may share it; otherwise each writes alone.
    whole_writes: bool,
    /// Held to write directly or to queue: shared for whole writes,
    /// exclusive otherwise, so that no line is ever split by another.
    order: RwLock<()>,
    /// Bytes the helper has not yet written: direct writes wait behind them.
    behind: AtomicBool,
    queue: Mutex<Queue>,
    work: Condvar,
    done: Condvar,
    written_direct: AtomicU64,
    dropped: AtomicU64,
    failed: Mutex<Failures>,
}

#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    /// Lines ever queued, and how many of them the helper has written.
    queued: u64,
    written: u64,
    /// When the helper's current write began; `None` while it is idle.
    writing_since: Option<Instant>,
    /// Lines dropped since the output last drained.
    dropped_in_burst: u64,
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

impl Output {
    fn new(fd: impl AsFd, target: Target) -> io::Result<Output> {
        let raw = fd.as_fd().as_raw_fd();
        let blocking = File::from(fd.as_fd().try_clone_to_owned()?);
        let kind = blocking.metadata()?.file_type();
        let (direct, whole_writes) = if kind.is_fifo() || kind.is_char_device() {
            let reopened = OpenOptions::new()
                .write(true)
                .custom_flags(crate::platform::O_NONBLOCK)
                .open(format!("/proc/self/fd/{raw}"))
                .ok();
            (reopened.map(Direct::Write), kind.is_fifo())
        } else if kind.is_socket() {
            (blocking.try_clone().ok().map(Direct::Send), false)
        } else {
            (None, false)
        };
        let shared = Arc::new(Shared {
            target,
            direct,
            whole_writes,
            order: RwLock::new(()),
            behind: AtomicBool::new(false),
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            written_direct: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: Mutex::new(Failures::default()),
        });
        let helper = Arc::clone(&shared);
        thread::Builder::new()
            .name("serv6-output".into())
            .stack_size(sync::HELPER_STACK)
            .spawn(move || helper.drain(blocking))?;
        Ok(Output { shared })
    }

    /// Writes `line` (ending in LF) whole, never split by another's. With
    /// `wait`, returns once it is in the kernel's hands, unless the output
    /// is stalled; then, or without `wait`, it may only be queued, or
    /// dropped if the queue is full.
    fn write_line(&self, line: &[u8], wait: bool) {
        let shared = &self.shared;
        let shared_turn = shared.whole_writes && line.len() <= PIPE_BUF;
        let (_read, _write) = if shared_turn {
            (Some(sync::read(&shared.order)), None)
        } else {
            (None, Some(sync::write(&shared.order)))
        };
        let written = if shared.behind.load(SeqCst) {
            0
        } else {
            shared.direct_write(line)
        };
        if written == line.len() {
            shared.written_direct.fetch_add(1, Relaxed);
            return;
        }
        let ticket = shared.enqueue(&line[written..], written > 0);
        drop((_read, _write));
        if let (Some(ticket), true) = (ticket, wait) {
            shared.wait_written(ticket);
        }
    }

    fn counts(&self) -> LogCounts {
        let shared = &self.shared;
        let queue = shared.lock();
        let failed = sync::lock(&shared.failed);
        LogCounts {
            written: shared.written_direct.load(Relaxed)
                + queue.written.saturating_sub(failed.lines),
            queued: queue.queued - queue.written,
            dropped: shared.dropped.load(Relaxed),
            not_written: failed.lines,
            reason: failed.reason.clone(),
        }
    }

    /// Waits, at most `limit`, for every queued line to be written.
    fn flush(&self, limit: Duration) {
        let until = Instant::now() + limit;
        let mut queue = self.shared.lock();
        while queue.written < queue.queued {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            queue = sync::wait_timeout(&self.shared.done, queue, left);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        sync::lock(&self.queue)
    }

    /// As much of `line` as goes in without blocking.
    fn direct_write(&self, line: &[u8]) -> usize {
        loop {
            let written = match &self.direct {
                Some(Direct::Write(out)) => (&*out).write(line),
                Some(Direct::Send(socket)) => crate::platform::send_now(socket, line),
                None => return 0,
            };
            match written {
                Ok(n) => return n,
                Err(e) if sync::is_interrupted(&e) => {}
                // Full, or failing: the helper tries, and reports.
                Err(_) => return 0,
            }
        }
    }

    /// Queues `bytes`, and returns the ticket to wait for. The rest of a
    /// line already partly written is never dropped: the output would
    /// show half a line.
    fn enqueue(&self, bytes: &[u8], rest_of_line: bool) -> Option<u64> {
        let mut queue = self.lock();
        if !rest_of_line && queue.bytes.len() + bytes.len() > QUEUE_CAP {
            self.dropped.fetch_add(1, Relaxed);
            queue.dropped_in_burst += 1;
            if queue.dropped_in_burst == 1 {
                drop(queue);
                self.tell(Event::Dropping);
            }
            return None;
        }
        queue.bytes.extend_from_slice(bytes);
        queue.queued += 1;
        self.behind.store(true, SeqCst);
        self.work.notify_one();
        Some(queue.queued)
    }

    /// Waits until line `ticket` is written, unless the output is stalled.
    fn wait_written(&self, ticket: u64) {
        let mut queue = self.lock();
        while queue.written < ticket {
            let stalled_at = queue.writing_since.map(|since| since + STALLED_AFTER);
            let wait = match stalled_at {
                Some(at) if at <= Instant::now() => return,
                Some(at) => at - Instant::now(),
                None => STALLED_AFTER,
            };
            queue = sync::wait_timeout(&self.done, queue, wait);
        }
    }

    /// The helper: writes out the queue, in order, blocking as it must.
    fn drain(&self, mut out: File) {
        loop {
            let (chunk, upto) = {
                let mut queue = self.lock();
                while queue.bytes.is_empty() {
                    queue = sync::wait(&self.work, queue);
                }
                queue.writing_since = Some(Instant::now());
                (std::mem::take(&mut queue.bytes), queue.queued)
            };
            self.write_out(&mut out, &chunk);
            let mut queue = self.lock();
            queue.written = upto;
            queue.writing_since = None;
            let drained = queue.bytes.is_empty();
            if drained {
                self.behind.store(false, SeqCst);
            }
            let dropped = std::mem::take(&mut queue.dropped_in_burst);
            self.done.notify_all();
            drop(queue);
            if drained && dropped > 0 {
                self.tell(Event::Resumed { dropped });
            } else if dropped > 0 {
                self.lock().dropped_in_burst += dropped;
            }
        }
    }

    /// Writes `chunk` (whole lines) to `out`, counting the lines a failure
    /// loses, and marking a line cut short so that the next starts afresh.
    fn write_out(&self, out: &mut File, chunk: &[u8]) {
        let broken = sync::lock(&self.failed).broken;
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
        let mut failed = sync::lock(&self.failed);
        match result {
            Ok(()) => {
                failed.broken = false;
                let lost = std::mem::take(&mut failed.in_burst);
                drop(failed);
                if lost > 0 {
                    self.tell(Event::Recovered { lost });
                }
            }
            Err(error) => {
                let lost = chunk[done..].iter().filter(|&&b| b == b'\n').count() as u64;
                let cut = chunk[..done]
                    .iter()
                    .rev()
                    .take_while(|&&b| b != b'\n')
                    .count();
                failed.broken = (broken && done == 0) || (cut > 0 && !take_back(out, cut));
                let first = failed.in_burst == 0;
                failed.lines += lost;
                failed.in_burst += lost;
                failed.reason = Some(error.to_string());
                drop(failed);
                if first {
                    self.tell(Event::Failing(&error));
                }
            }
        }
    }

    /// Says what happened to this output's lines, on standard error.
    fn tell(&self, event: Event) {
        let (what, many) = match self.target {
            Target::Log => ("standard output", "exchange lines"),
            Target::Stderr => ("standard error", "lines"),
        };
        match event {
            Event::Dropping => say(format_args!(
                "{what} is not being read: {} of {many} wait, the rest are dropped",
                counted((QUEUE_CAP >> 10) as u64, "KiB", "KiB")
            )),
            Event::Resumed { dropped } => say(format_args!(
                "{what} is read again, after {dropped} {many} dropped"
            )),
            Event::Failing(error) if self.target == Target::Log => say(format_args!(
                "cannot write the exchange log to standard output: {error}; serving goes \
                 on, and the lines not written are counted"
            )),
            Event::Failing(error) => say(format_args!("cannot write {what}: {error}")),
            Event::Recovered { lost } => say(format_args!(
                "{what} is written again, after {lost} {many} not written"
            )),
        }
    }
}

/// What happened to an output's lines, to be told.
enum Event<'a> {
    Dropping,
    Resumed { dropped: u64 },
    Failing(&'a io::Error),
    Recovered { lost: u64 },
}

/// Removes the last `cut` bytes written to `out`, a line cut short, if it
/// is a file that allows it; true if it did. A file at its size limit can
/// never take the LF that would end the line, but it can be shortened.
fn take_back(out: &mut File, cut: usize) -> bool {
    use std::io::{Seek, SeekFrom};
    let Ok(end) = out.stream_position() else {
        return false;
    };
    let Some(start) = end.checked_sub(cut as u64) else {
        return false;
    };
    out.set_len(start).is_ok() && out.seek(SeekFrom::Start(start)).is_ok()
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
    const fn new() -> Reports {
        Reports {
            shown: AtomicU32::new(0),
            unshown: Mutex::new(Vec::new()),
            second_started: Mutex::new(false),
            wake: Condvar::new(),
        }
    }

    /// Starts the thread that ends each second in which reports came.
    fn start(&'static self) {
        let started = thread::Builder::new()
            .name("serv6-reports".into())
            .stack_size(sync::HELPER_STACK)
            .spawn(move || loop {
                let mut started = sync::lock(&self.second_started);
                while !*started {
                    started = sync::wait(&self.wake, started);
                }
                *started = false;
                drop(started);
                thread::sleep(Duration::from_secs(1));
                self.end_second();
            });
        if let Err(e) = started {
            say(format_args!(
                "cannot start the report counter ({e}): every report line is shown"
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

    fn count(&self, what: (&'static str, &'static str)) {
        let mut unshown = sync::lock(&self.unshown);
        match unshown.iter_mut().find(|(w, _)| *w == what) {
            Some((_, n)) => *n += 1,
            None => unshown.push((what, 1)),
        }
    }

    fn end_second(&self) {
        self.shown.store(0, Relaxed);
        let unshown = std::mem::take(&mut *sync::lock(&self.unshown));
        let counts: Vec<String> = unshown
            .into_iter()
            .map(|((one, many), n)| counted(n, one, many))
            .collect();
        if !counts.is_empty() {
            say(format_args!(
                "and in the last second: {}",
                counts.join(", ")
            ));
        }
    }
}
