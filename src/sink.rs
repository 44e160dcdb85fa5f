//! An output line stream whose writers never wait on its reader: serv6's
//! exchange log (standard output) and its diagnostics (standard error),
//! whoever reads them, a pipe nobody drains, a terminal paused with Ctrl-S.
//!
//! Direct first: a writer puts its line straight into the kernel with a
//! write that cannot block. Only when that would block does the line go to
//! a bounded queue, which a helper thread writes out with blocking writes,
//! in order. The writer then waits for its line to be written (so a reply
//! still follows its log line), unless the helper has made no progress for
//! [`STALLED_AFTER`]: then the output counts as stalled, writers stop
//! waiting, and lines queue up to [`QUEUE_CAP`] bytes; past that they are
//! dropped and counted. When the reader resumes, the queue comes out in
//! order.
//!
//! The direct descriptor is made non-blocking without touching anything
//! shared with other processes: a pipe, FIFO or terminal is reopened
//! through `/proc/self/fd`, so the flag is on a description of our own.
//! Anything else gets no direct path: every line goes through the helper,
//! and writers wait for it as above. That includes regular files, where
//! `O_NONBLOCK` does nothing and a write can block for as long as the disk
//! does (a frozen filesystem, a stuck NFS server), and sockets such as
//! journald's stream.
//!
//! A write that fails (a full disk, a file-size limit, a reader gone) loses
//! its lines, and they are counted as not written, with the reason, and
//! reported once per run of failures. A line is written whole or not at
//! all: after one cut short, the next write starts with an LF, so that no
//! two lines are ever glued together.

use crate::sync;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant};

/// After this long without progress, the output counts as stalled.
pub(crate) const STALLED_AFTER: Duration = Duration::from_millis(100);
/// The most bytes that wait for a stalled reader; past it, lines are dropped.
pub(crate) const QUEUE_CAP: usize = 1 << 20;
/// Longest write that pipes take whole or not at all (POSIX `PIPE_BUF`).
const PIPE_BUF: usize = 4096;

/// A line output that never blocks its writers for long.
pub(crate) struct Sink {
    shared: Arc<Shared>,
}

struct Shared {
    /// Where lines go at once, when they can; `None`: always queue.
    direct: Option<File>,
    /// Whether `direct` takes a short line whole or not at all, so that
    /// writers may share it; otherwise each writes alone.
    whole_writes: bool,
    /// Held to write directly or to queue: shared for whole writes,
    /// exclusive otherwise, so that no line is ever split by another.
    order: RwLock<()>,
    /// Bytes the helper has not yet written: direct writes wait behind them.
    behind: AtomicBool,
    state: Mutex<Queue>,
    work: Condvar,
    done: Condvar,
    dropped: AtomicU64,
    failed: Mutex<Failures>,
    /// Lines written at once, without the helper.
    written_direct: AtomicU64,
}

/// Lines that a write failed to take, and why.
#[derive(Debug, Default, Clone)]
pub(crate) struct Failures {
    pub lines: u64,
    /// The last error, as the system said it.
    pub reason: Option<String>,
    /// Lines lost since writing last worked, for the report.
    in_burst: u64,
    /// The last write stopped inside a line: the next starts a new one.
    broken: bool,
}

#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    /// Lines ever queued, and how many of them the helper has written.
    queued: u64,
    written: u64,
    /// When the helper's current write began; `None` while it is idle.
    writing_since: Option<Instant>,
    /// Lines dropped since the output last drained, for the report.
    dropped_in_burst: u64,
}

/// Which hold a writer has on the output's order.
enum Turn<'a> {
    Shared { _guard: RwLockReadGuard<'a, ()> },
    Alone { _guard: RwLockWriteGuard<'a, ()> },
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

/// What became of a line that could not be written at once.
enum Queued {
    /// Queued: written once the helper has written this many lines.
    Ticket(u64),
    /// Dropped; `first` of a burst.
    Dropped { first: bool },
}

/// What happened to lines, for whoever reports it.
pub(crate) enum Event<'a> {
    StartedDropping,
    Resumed {
        dropped: u64,
    },
    /// Writing failed, for the first time since it last worked.
    StartedFailing {
        error: &'a io::Error,
    },
    /// Writing works again, after `lost` lines not written.
    Recovered {
        lost: u64,
    },
}

impl Sink {
    /// A sink for descriptor `fd` (1 or 2), `report` called (from the helper
    /// thread or a writer) when lines start being dropped and when the
    /// output drains again.
    pub fn new(fd: impl AsFd, report: fn(&Event)) -> io::Result<Sink> {
        let raw = fd.as_fd().as_raw_fd();
        let blocking = File::from(fd.as_fd().try_clone_to_owned()?);
        let kind = blocking.metadata()?.file_type();
        let (direct, whole_writes) = if kind.is_fifo() || kind.is_char_device() {
            let reopened = OpenOptions::new()
                .write(true)
                .custom_flags(crate::platform::O_NONBLOCK)
                .open(format!("/proc/self/fd/{raw}"))
                .ok();
            (reopened, kind.is_fifo())
        } else {
            (None, false)
        };
        let shared = Arc::new(Shared {
            direct,
            whole_writes,
            order: RwLock::new(()),
            behind: AtomicBool::new(false),
            state: Mutex::new(Queue::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            dropped: AtomicU64::new(0),
            failed: Mutex::new(Failures::default()),
            written_direct: AtomicU64::new(0),
        });
        let helper = Arc::clone(&shared);
        thread::Builder::new()
            .name("serv6-output".into())
            .stack_size(sync::HELPER_STACK)
            .spawn(move || helper.drain(blocking, report))?;
        Ok(Sink { shared })
    }

    /// Writes `line` (ending in LF) whole, never split by another's. With
    /// `wait`, returns once it is in the kernel's hands, unless the output
    /// is stalled; then, or without `wait`, it may only be queued, or
    /// dropped if the queue is full.
    pub fn write_line(&self, line: &[u8], wait: bool, report: fn(&Event)) {
        let shared = &self.shared;
        let turn = if shared.whole_writes && line.len() <= PIPE_BUF {
            Turn::Shared {
                _guard: sync::read(&shared.order),
            }
        } else {
            Turn::Alone {
                _guard: sync::write(&shared.order),
            }
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
        let queued = shared.enqueue(&line[written..], written > 0);
        drop(turn);
        match queued {
            Queued::Ticket(ticket) if wait => shared.wait_written(ticket),
            Queued::Ticket(_) | Queued::Dropped { first: false } => {}
            Queued::Dropped { first: true } => report(&Event::StartedDropping),
        }
    }

    /// Lines dropped so far, for the summary.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Relaxed)
    }

    /// Lines written so far (by the helper, less those a failure lost),
    /// and lines queued and not yet written.
    pub fn written_and_waiting(&self) -> (u64, u64) {
        let state = self.shared.lock();
        let lost = self.shared.failures().lines;
        let helper = state.written.saturating_sub(lost);
        let direct = self.shared.written_direct.load(Relaxed);
        (direct + helper, state.queued - state.written)
    }

    /// Lines that failed to be written so far, and the last reason.
    pub fn failures(&self) -> Failures {
        self.shared.failures()
    }

    /// Waits, at most `limit`, for every queued line to be written.
    pub fn flush(&self, limit: Duration) {
        let until = Instant::now() + limit;
        let mut state = self.shared.lock();
        while state.written < state.queued {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            state = sync::wait_timeout(&self.shared.done, state, left);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        sync::lock(&self.state)
    }

    /// As much of `line` as goes in without blocking.
    fn direct_write(&self, line: &[u8]) -> usize {
        let Some(mut out) = self.direct.as_ref() else {
            return 0;
        };
        loop {
            match out.write(line) {
                Ok(n) => return n,
                Err(e) if sync::is_interrupted(&e) => {}
                // Full, or failing: the helper tries, and reports.
                Err(_) => return 0,
            }
        }
    }

    /// Queues `bytes`. The rest of a line already partly written is never
    /// dropped: the output would show half a line.
    fn enqueue(&self, bytes: &[u8], rest_of_line: bool) -> Queued {
        let mut state = self.lock();
        if !rest_of_line && state.bytes.len() + bytes.len() > QUEUE_CAP {
            self.dropped.fetch_add(1, Relaxed);
            state.dropped_in_burst += 1;
            return Queued::Dropped {
                first: state.dropped_in_burst == 1,
            };
        }
        state.bytes.extend_from_slice(bytes);
        state.queued += 1;
        self.behind.store(true, SeqCst);
        self.work.notify_one();
        Queued::Ticket(state.queued)
    }

    /// Waits until line `ticket` is written, unless the output is stalled.
    fn wait_written(&self, ticket: u64) {
        let mut state = self.lock();
        while state.written < ticket {
            let stalled_at = state.writing_since.map(|since| since + STALLED_AFTER);
            let wait = match stalled_at {
                Some(at) if at <= Instant::now() => return,
                Some(at) => at - Instant::now(),
                None => STALLED_AFTER,
            };
            state = sync::wait_timeout(&self.done, state, wait);
        }
    }

    /// Writes `chunk` (whole lines) to `out`, counting the lines a failure
    /// loses, and marking a line cut short so that the next starts afresh.
    fn write_out(&self, out: &mut File, chunk: &[u8], report: fn(&Event)) {
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
        match result {
            Ok(()) => {
                let lost = {
                    let mut failed = sync::lock(&self.failed);
                    failed.broken = false;
                    std::mem::take(&mut failed.in_burst)
                };
                if lost > 0 {
                    report(&Event::Recovered { lost });
                }
            }
            Err(error) => {
                // Lines are short and failures rare: no need for a faster count.
                #[allow(clippy::naive_bytecount)]
                let lost = chunk[done..].iter().filter(|&&b| b == b'\n').count() as u64;
                let cut = chunk[..done]
                    .iter()
                    .rev()
                    .take_while(|&&b| b != b'\n')
                    .count();
                let still_broken = (broken && done == 0) || (cut > 0 && !take_back(out, cut));
                let first = {
                    let mut failed = sync::lock(&self.failed);
                    let first = failed.in_burst == 0;
                    failed.lines += lost;
                    failed.in_burst += lost;
                    failed.reason = Some(error.to_string());
                    failed.broken = still_broken;
                    first
                };
                if first {
                    report(&Event::StartedFailing { error: &error });
                }
            }
        }
    }

    fn failures(&self) -> Failures {
        sync::lock(&self.failed).clone()
    }

    /// The helper: writes out the queue, in order, blocking as it must.
    fn drain(&self, mut out: File, report: fn(&Event)) {
        loop {
            let (chunk, upto) = {
                let mut state = self.lock();
                while state.bytes.is_empty() {
                    state = sync::wait(&self.work, state);
                }
                state.writing_since = Some(Instant::now());
                (std::mem::take(&mut state.bytes), state.queued)
            };
            self.write_out(&mut out, &chunk, report);
            let mut state = self.lock();
            state.written = upto;
            state.writing_since = None;
            let drained = state.bytes.is_empty();
            if drained {
                self.behind.store(false, SeqCst);
            }
            let dropped = std::mem::take(&mut state.dropped_in_burst);
            self.done.notify_all();
            drop(state);
            if drained && dropped > 0 {
                report(&Event::Resumed { dropped });
            } else if dropped > 0 {
                self.lock().dropped_in_burst += dropped;
            }
        }
    }
}
