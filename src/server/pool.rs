//! The workers: threads that block in `accept` on a listener and run a
//! job on each connection they accept. The pool knows nothing of the job
//! beyond handing it a stream ([`Job`]).
//!
//! There is no acceptor thread handing connections over: the kernel hands
//! each connection straight to one idle worker, as in the simplest std
//! server, so a fast exchange costs no thread switch. The pool grows when
//! the worker that took the last idle place had a slow job (connections
//! may have queued meanwhile), and shrinks when an idle worker's `accept`
//! times out while at least [`SPARE`] others are idle. It never has more
//! than the most it was started with, whatever clients do.

use super::log::Burst;
use crate::platform;
use crate::sync;
use crate::words::counted;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::AcqRel, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// What a worker does with each connection it accepts.
pub(crate) trait Job: Send + Sync + 'static {
    /// Buffers a worker keeps from one connection to the next.
    type Scratch;

    /// A worker's buffers, made when it starts.
    fn scratch(&self) -> Self::Scratch;

    /// Serves an accepted connection, and says whether its client held
    /// the worker up.
    fn run(&self, stream: TcpStream, peer: SocketAddr, scratch: &mut Self::Scratch) -> Pace;

    /// Answers a connection that will not be served, without reading it.
    fn turn_away(&self, stream: TcpStream, peer: SocketAddr, why: TurnAway);

    /// File descriptors ran out: closes a connection held elsewhere, if
    /// there is one, and says whether it did.
    fn free_descriptor(&self) -> bool;

    /// Tells the operator of trouble clients can cause (accepting fails,
    /// workers cannot start), at a rate the job keeps bounded.
    fn report(&self, line: std::fmt::Arguments);
}

/// How a job went, for the pool to size itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pace {
    /// Done as fast as the machine allowed.
    Quick,
    /// The job waited on its client (for as long as it allows itself).
    Slow,
}

/// Why a connection is turned away at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TurnAway {
    /// The pool is stopping.
    Stopping,
    /// No file descriptor could be freed to serve it.
    NoDescriptors,
}

/// Idle workers kept per listener; more are created as load needs them.
pub(crate) const SPARE: usize = 4;
/// An idle worker's accept timeout is the exchange deadline, kept between
/// these bounds (see [`Settings::new`]).
const ACCEPT_TIMEOUT_MIN: Duration = Duration::from_secs(1);
const ACCEPT_TIMEOUT_MAX: Duration = Duration::from_secs(30);
/// How long a worker waits before accepting again after `accept` failed
/// and nothing could be done about it: long enough not to spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// A worker's stack. Only the pages an exchange touches (a few KiB) count
/// against memory, whatever the size. The size matters after a burst:
/// glibc keeps up to 40 MiB of exited threads' stacks for reuse, touched
/// pages included, so 1 MiB stacks leave at most 40 behind, where 128 KiB
/// ones would leave 320.
pub(crate) const STACK_SIZE: usize = 1024 * 1024;

/// What the pool is told by the server that starts it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// How long an idle worker waits in `accept` before it considers leaving.
    accept_timeout: Duration,
    /// The most workers alive at once, over all listeners.
    pub max_workers: usize,
}

impl Settings {
    /// At most `max_workers`. The accept timeout follows the exchange
    /// `deadline` because accepted sockets inherit it as their read timeout
    /// on Linux, so a read that must wait needs a `setsockopt` only when
    /// it must wait less.
    pub fn new(deadline: Duration, max_workers: usize) -> Self {
        Settings {
            accept_timeout: deadline.clamp(ACCEPT_TIMEOUT_MIN, ACCEPT_TIMEOUT_MAX),
            max_workers,
        }
    }
}

/// The running workers of every listener.
pub(crate) struct Pool<J: Job> {
    shared: Arc<Shared<J>>,
    doors: Vec<Arc<Door>>,
}

struct Shared<J> {
    job: J,
    stopping: AtomicBool,
    /// Workers alive, against `max_workers`; guarded so that shutdown can
    /// wait for zero.
    live: Mutex<usize>,
    all_gone: Condvar,
    max_workers: usize,
    spawn_trouble: Burst,
    /// A descriptor kept open to be given up when there are none left, so
    /// that a connection can still be accepted and told why it is refused.
    spare: Mutex<Option<File>>,
    /// Jobs begun and ended, for a watchdog to see the pool move.
    jobs_begun: AtomicU64,
    jobs_ended: AtomicU64,
}

/// How far the pool has come, for a watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Progress {
    pub begun: u64,
    pub ended: u64,
}

impl Progress {
    /// Whether the pool moved since `before`: no job was under way then,
    /// or one has ended since.
    pub fn moved_since(self, before: Progress) -> bool {
        before.begun == before.ended || self.ended > before.ended
    }
}

/// One listener and its idle workers.
struct Door {
    listener: TcpListener,
    addr: SocketAddr,
    idle: AtomicUsize,
    accept_trouble: Burst,
}

impl<J: Job> Pool<J> {
    /// Starts [`SPARE`] workers on each listener.
    pub fn start(listeners: Vec<TcpListener>, settings: Settings, job: J) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            job,
            stopping: AtomicBool::new(false),
            live: Mutex::new(0),
            all_gone: Condvar::new(),
            max_workers: settings.max_workers,
            spawn_trouble: Burst::default(),
            spare: Mutex::new(File::open("/dev/null").ok()),
            jobs_begun: AtomicU64::new(0),
            jobs_ended: AtomicU64::new(0),
        });
        let mut doors = Vec::new();
        for listener in listeners {
            let door = Arc::new(Door::new(listener, settings.accept_timeout)?);
            for _ in 0..SPARE {
                shared.spawn(&door)?;
            }
            doors.push(door);
        }
        Ok(Pool { shared, doors })
    }

    /// Stops: new connections are refused at once, and those already
    /// queued are turned away.
    pub fn stop_accepting(&self) {
        self.shared.stopping.store(true, Relaxed);
        for door in &self.doors {
            door.close(&self.shared.job);
        }
    }

    /// How many jobs have begun and ended so far, from any thread.
    pub fn progress_reader(&self) -> impl Fn() -> Progress + Send + 'static {
        let shared = Arc::clone(&self.shared);
        move || Progress {
            begun: shared.jobs_begun.load(Relaxed),
            ended: shared.jobs_ended.load(Relaxed),
        }
    }

    /// Waits until `until` at most for every worker to leave; true if they did.
    pub fn wait_gone(&self, until: Instant) -> bool {
        self.shared.wait_all_gone(until)
    }
}

impl Door {
    /// Turns away what is queued on the listener, then stops it listening:
    /// later connections are refused, and workers blocked in `accept` wake.
    /// (A connection queued between the two is reset; the window is the
    /// time of one `accept` that finds nothing.)
    fn close(&self, job: &impl Job) {
        if self.listener.set_nonblocking(true).is_ok() {
            while let Ok((stream, peer)) = self.listener.accept() {
                job.turn_away(stream, peer, TurnAway::Stopping);
            }
        }
        platform::stop_listening(&self.listener);
    }

    fn new(listener: TcpListener, accept_timeout: Duration) -> io::Result<Door> {
        let addr = listener.local_addr()?;
        Ok(Door {
            listener: with_accept_timeout(listener, accept_timeout)?,
            addr,
            idle: AtomicUsize::new(0),
            accept_trouble: Burst::default(),
        })
    }

    /// Leaves the idle count if at least [`SPARE`] others remain; true if
    /// this worker may go.
    fn try_retire(&self) -> bool {
        self.idle
            .fetch_update(AcqRel, Relaxed, |idle| (idle > SPARE).then(|| idle - 1))
            .is_ok()
    }
}

/// std has no accept timeout, but Linux bounds `accept` by `SO_RCVTIMEO`,
/// which std sets only through `TcpStream`. Moving the descriptor through
/// that type and back is safe: ownership moves, nothing is duplicated.
fn with_accept_timeout(listener: TcpListener, timeout: Duration) -> io::Result<TcpListener> {
    let socket = TcpStream::from(OwnedFd::from(listener));
    socket.set_read_timeout(Some(timeout))?;
    Ok(TcpListener::from(OwnedFd::from(socket)))
}

impl<J: Job> Shared<J> {
    fn live(&self) -> MutexGuard<'_, usize> {
        sync::lock(&self.live)
    }

    fn wait_all_gone(&self, until: Instant) -> bool {
        let limit = until.saturating_duration_since(Instant::now());
        let live = sync::wait_timeout_while(&self.all_gone, self.live(), limit, |live| *live > 0);
        *live == 0
    }

    /// Adds an idle worker to `door`, unless the pool is at its limit.
    fn spawn(self: &Arc<Self>, door: &Arc<Door>) -> io::Result<()> {
        {
            let mut live = self.live();
            if *live >= self.max_workers {
                return Ok(());
            }
            *live += 1;
        }
        door.idle.fetch_add(1, AcqRel);
        let (shared, worker_door) = (Arc::clone(self), Arc::clone(door));
        let spawned = thread::Builder::new()
            .name("serv6-worker".into())
            .stack_size(STACK_SIZE)
            .spawn(move || {
                shared.serve_accepted(&worker_door);
                shared.leave();
            });
        if let Err(e) = spawned {
            door.idle.fetch_sub(1, AcqRel);
            self.leave();
            return Err(e);
        }
        Ok(())
    }

    fn leave(&self) {
        let mut live = self.live();
        *live -= 1;
        if *live == 0 {
            self.all_gone.notify_all();
        }
    }

    /// Accepts and serves until the pool stops or this worker retires.
    fn serve_accepted(self: &Arc<Self>, door: &Arc<Door>) {
        let mut scratch = self.job.scratch();
        loop {
            if self.stopping.load(Relaxed) {
                door.idle.fetch_sub(1, AcqRel);
                return;
            }
            match door.listener.accept() {
                Ok((stream, peer)) if self.stopping.load(Relaxed) => {
                    self.job.turn_away(stream, peer, TurnAway::Stopping);
                }
                Ok((stream, peer)) => {
                    let took_last = self.accepted(door);
                    self.jobs_begun.fetch_add(1, Relaxed);
                    let pace = self.job.run(stream, peer, &mut scratch);
                    self.jobs_ended.fetch_add(1, Relaxed);
                    door.idle.fetch_add(1, AcqRel);
                    if took_last && pace == Pace::Slow {
                        self.grow(door);
                    }
                }
                Err(e) if sync::is_timeout(&e) => {
                    if door.try_retire() {
                        return;
                    }
                }
                Err(e) if sync::is_interrupted(&e) => {}
                // A stopped listener fails accept: the loop's check leaves.
                Err(_) if self.stopping.load(Relaxed) => {}
                Err(e) if platform::is_out_of_descriptors(&e) => self.out_of_descriptors(door, &e),
                Err(e) => self.accept_failed(door, &e),
            }
        }
    }

    /// Leaves the idle count; true if this worker took the last idle place.
    #[allow(clippy::unused_self)] // a step of this worker's loop, like its neighbours
    fn accepted(&self, door: &Door) -> bool {
        if let Some(failures) = door.accept_trouble.succeed() {
            self.job.report(format_args!(
                "accepting on {} again, after {}",
                door.addr,
                counted(failures, "failed attempt", "failed attempts")
            ));
        }
        door.idle.fetch_sub(1, AcqRel) == 1
    }

    /// Called when the last idle worker's job was slow: if still no worker
    /// is idle, adds a quarter of the pool (at least two), so that a flood
    /// of slow clients is matched in a few rounds, not one by one.
    fn grow(self: &Arc<Self>, door: &Arc<Door>) {
        if door.idle.load(Relaxed) > 1 {
            return;
        }
        let more = (*self.live() / 4).max(2);
        for _ in 0..more {
            if let Err(e) = self.spawn(door) {
                if self.spawn_trouble.fail() {
                    self.job.report(format_args!(
                        "cannot start another worker: {e}; connections wait for a free one"
                    ));
                }
                return;
            }
        }
        if let Some(failures) = self.spawn_trouble.succeed() {
            self.job.report(format_args!(
                "workers start again, after {}",
                counted(failures, "failure", "failures")
            ));
        }
    }

    /// No descriptor for a new connection: the job closes one it holds,
    /// or else the spare is given up to accept the connection and tell it
    /// why it is refused. Only when neither works does the worker wait.
    fn out_of_descriptors(&self, door: &Door, e: &io::Error) {
        if self.job.free_descriptor() {
            return;
        }
        let mut spare = sync::lock(&self.spare);
        if spare.take().is_some() {
            let accepted = door.listener.accept();
            if let Ok((stream, peer)) = accepted {
                self.job.turn_away(stream, peer, TurnAway::NoDescriptors);
            }
            *spare = File::open("/dev/null").ok();
            if spare.is_some() {
                return;
            }
        }
        drop(spare);
        self.accept_failed(door, e);
    }

    #[allow(clippy::unused_self)] // a step of this worker's loop, like its neighbours
    fn accept_failed(&self, door: &Door, e: &io::Error) {
        if door.accept_trouble.fail() {
            self.job.report(format_args!(
                "cannot accept on {}: {e}; retrying every {} ms",
                door.addr,
                ACCEPT_BACKOFF.as_millis()
            ));
        }
        if e.kind() != io::ErrorKind::ConnectionAborted {
            thread::sleep(ACCEPT_BACKOFF);
        }
    }
}
