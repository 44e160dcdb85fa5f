//! The workers: threads that block in `accept` on a listener and run each
//! exchange they accept to its end.
//!
//! There is no acceptor thread handing connections over: the kernel hands
//! each connection straight to one idle worker, as in the simplest std
//! server, so a fast exchange costs no thread switch and no allocation. The
//! pool grows when the worker that took the last idle place finds its
//! client slow (message incomplete after [`SLOW_START`]), so a slow client
//! delays others by at most that, and the pool stays as small as the load
//! allows. It shrinks when an idle worker's `accept` times out while at
//! least [`SPARE`] others are idle.

use super::connection::{Connection, Scratch};
use super::exchange::Service;
use super::log::Burst;
use crate::diag;
use crate::platform;
use crate::words::counted;
use std::cell::OnceCell;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering::AcqRel, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// Idle workers kept per listener; more are created as load needs them.
const SPARE: usize = 4;
/// An idle worker's accept timeout is the exchange deadline, kept between
/// these bounds (see [`Settings::new`]).
const ACCEPT_TIMEOUT_MIN: Duration = Duration::from_secs(1);
const ACCEPT_TIMEOUT_MAX: Duration = Duration::from_secs(30);
/// How long a message may take before its client counts as slow. Nearly
/// every client sends its whole message at once, so waiting this long for a
/// verdict, rather than adding a worker for every connection that finds
/// none idle, keeps the pool as small as the load allows; a slow client
/// still delays others by no more than this. The verdict is on the whole
/// message, not the first bytes, which a trickling client sends at once.
const SLOW_START: Duration = Duration::from_millis(5);
/// How long a worker waits before accepting again after `accept` failed,
/// for example for want of file descriptors: long enough not to spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// A worker's stack. Only the pages an exchange touches (a few KiB) count
/// against memory, whatever the size. The size matters after a burst:
/// glibc keeps up to 40 MiB of exited threads' stacks for reuse, touched
/// pages included, so 1 MiB stacks leave at most 40 behind, where 128 KiB
/// ones would leave 320.
const STACK_SIZE: usize = 1024 * 1024;

/// What the pool is told by the server that starts it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// How long an idle worker waits in `accept` before it considers leaving.
    accept_timeout: Duration,
    /// The most workers alive at once, over all listeners.
    max_workers: usize,
}

impl Settings {
    /// Enough workers for `max_conns` exchanges plus the idle ones of
    /// `listeners`. The accept timeout follows the exchange `deadline`
    /// because accepted sockets inherit it as their read timeout on Linux,
    /// so an exchange under the usual deadline needs no `setsockopt` at all.
    pub fn new(deadline: Duration, max_conns: usize, listeners: usize) -> Self {
        Settings {
            accept_timeout: deadline.clamp(ACCEPT_TIMEOUT_MIN, ACCEPT_TIMEOUT_MAX),
            max_workers: max_conns + SPARE * listeners,
        }
    }
}

/// Room kept free under an address-space limit for all but the workers:
/// the heap, the output queues, the helper threads.
const ADDRESS_SPACE_RESERVE: u64 = 16 << 20;

/// `max_conns`, lowered if an address-space limit (`ulimit -v`) leaves no
/// room for that many workers, stacks and message buffers included; with
/// the reason, to tell the operator. Past it, connections are told busy
/// rather than a worker failing to start, or an allocation aborting.
pub(crate) fn fit_address_space(
    max_conns: usize,
    max_bytes: usize,
    listeners: usize,
) -> (usize, Option<String>) {
    let Some(room) = address_space_room() else {
        return (max_conns, None);
    };
    let per_worker = STACK_SIZE as u64 + 2 * max_bytes as u64 + (64 << 10);
    let workers = room.saturating_sub(ADDRESS_SPACE_RESERVE) / per_worker;
    let fits = usize::try_from(workers)
        .unwrap_or(usize::MAX)
        .saturating_sub(SPARE * listeners)
        .max(1);
    if fits >= max_conns {
        return (max_conns, None);
    }
    let note = format!(
        "the address space is limited ({} MiB free): at most {} at once, not {max_conns}",
        room >> 20,
        crate::words::counted(fits as u64, "exchange", "exchanges")
    );
    (fits, Some(note))
}

/// Bytes of address space this process may still map, if it is limited:
/// the soft `RLIMIT_AS` from /proc/self/limits, less what is mapped now.
fn address_space_room() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    let limit: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let mapped_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(limit.saturating_sub(mapped_kib * 1024))
}

/// Set by the worker that takes the last idle place on a listener: if its
/// client turns out slow, no one is left to accept, and the pool must grow.
/// The connection's reader asks it how long until the verdict, and calls
/// [`SlowWatch::judge_slow`] if the message is still incomplete by then.
pub(crate) struct SlowWatch<'a> {
    verdict_at: Instant,
    grow: &'a dyn Fn(),
}

impl SlowWatch<'_> {
    /// Time left before the client counts as slow; zero once it does.
    pub fn until_verdict(&self) -> Duration {
        self.verdict_at.saturating_duration_since(Instant::now())
    }

    /// The message is still incomplete at the verdict: grow the pool.
    pub fn judge_slow(self) {
        (self.grow)();
    }
}

/// The running workers of every listener.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    doors: Vec<Arc<Door>>,
}

struct Shared {
    service: Service,
    stopping: AtomicBool,
    /// Workers alive, against `max_workers`; guarded so that shutdown can
    /// wait for zero.
    live: Mutex<usize>,
    all_gone: Condvar,
    max_workers: usize,
    spawn_trouble: Burst,
    /// Each worker's connection in progress, as a descriptor (-1: none),
    /// so that shutdown can wake a worker blocked reading it.
    slots: Mutex<Vec<Arc<AtomicI32>>>,
}

/// One listener and its idle workers.
struct Door {
    listener: TcpListener,
    addr: SocketAddr,
    idle: AtomicUsize,
    accept_trouble: Burst,
}

impl Pool {
    /// Starts [`SPARE`] workers on each listener.
    pub fn start(
        listeners: Vec<TcpListener>,
        settings: Settings,
        service: Service,
    ) -> io::Result<Pool> {
        let shared = Arc::new(Shared {
            service,
            stopping: AtomicBool::new(false),
            live: Mutex::new(0),
            all_gone: Condvar::new(),
            max_workers: settings.max_workers,
            spawn_trouble: Burst::default(),
            slots: Mutex::new(Vec::new()),
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

    /// The service the workers run, for its counters.
    pub fn service(&self) -> &Service {
        &self.shared.service
    }

    /// Stops: new connections are refused at once, and those already
    /// queued are told `error: server shutting down`.
    pub fn stop_accepting(&self) {
        self.shared.stopping.store(true, Relaxed);
        for door in &self.doors {
            door.close(&self.shared.service);
        }
    }

    /// Gives exchanges in progress `grace` to finish, then tells those
    /// left `error: server shutting down`. Returns once every worker has
    /// left, or a last second more has passed.
    pub fn finish(&self, grace: Duration) {
        if self.shared.wait_all_gone(grace) {
            return;
        }
        self.shared.service.cut_short();
        for slot in self.shared.slots().iter() {
            let fd = slot.load(Relaxed);
            if fd >= 0 {
                platform::shut_reading(fd);
            }
        }
        self.shared.wait_all_gone(CUT_WAIT);
    }

    /// How many exchanges are in progress, from any thread: for a second
    /// signal, which exits at once.
    pub fn in_progress(&self) -> impl Fn() -> usize + Send + 'static {
        let shared = Arc::clone(&self.shared);
        move || shared.service.in_progress()
    }
}

/// How long cut exchanges have to write their last line.
const CUT_WAIT: Duration = Duration::from_secs(1);

impl Door {
    /// Answers what is queued on the listener, then stops it listening:
    /// later connections are refused, and workers blocked in `accept` wake.
    /// (A connection queued between the two is reset; the window is the
    /// time of one `accept` that finds nothing.)
    fn close(&self, service: &Service) {
        if self.listener.set_nonblocking(true).is_ok() {
            while let Ok((stream, _)) = self.listener.accept() {
                service.tell_shutting_down(stream);
            }
        }
        platform::shut_reading(self.listener.as_raw_fd());
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

impl Shared {
    fn live(&self) -> MutexGuard<'_, usize> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slots(&self) -> MutexGuard<'_, Vec<Arc<AtomicI32>>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits at most `limit` for every worker to leave; true if they did.
    fn wait_all_gone(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        let mut live = self.live();
        while *live > 0 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            live = self
                .all_gone
                .wait_timeout(live, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
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
            .spawn(move || shared.work(&worker_door));
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

    fn work(self: &Arc<Self>, door: &Arc<Door>) {
        let slot = Arc::new(AtomicI32::new(-1));
        self.slots().push(Arc::clone(&slot));
        self.serve_accepted(door, &slot);
        self.slots().retain(|other| !Arc::ptr_eq(other, &slot));
        self.leave();
    }

    /// Accepts and serves until the pool stops or this worker retires.
    fn serve_accepted(self: &Arc<Self>, door: &Arc<Door>, slot: &AtomicI32) {
        let mut scratch = Scratch::new();
        // The read timeout accepted sockets start with, asked of the first
        // one rather than assumed: inheriting it is Linux behaviour.
        let inherited_timeout = OnceCell::new();
        let grow = || self.grow(door);
        loop {
            if self.stopping.load(Relaxed) {
                door.idle.fetch_sub(1, AcqRel);
                return;
            }
            match door.listener.accept() {
                Ok((stream, _)) if self.stopping.load(Relaxed) => {
                    self.service.tell_shutting_down(stream);
                }
                Ok((stream, peer)) => {
                    slot.store(stream.as_raw_fd(), Relaxed);
                    let timeout =
                        *inherited_timeout.get_or_init(|| stream.read_timeout().ok().flatten());
                    let watch = self.accepted(door).then(|| SlowWatch {
                        verdict_at: Instant::now() + SLOW_START,
                        grow: &grow,
                    });
                    let conn = Connection::new(stream, peer, &mut scratch, timeout);
                    self.service.serve(conn, watch);
                    slot.store(-1, Relaxed);
                    door.idle.fetch_add(1, AcqRel);
                }
                Err(e) if is_timeout(&e) => {
                    if door.try_retire() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A stopped listener fails accept: the loop's check leaves.
                Err(_) if self.stopping.load(Relaxed) => {}
                Err(e) => self.accept_failed(door, &e),
            }
        }
    }

    /// Leaves the idle count; true if this worker took the last idle place.
    fn accepted(&self, door: &Door) -> bool {
        if let Some(failures) = door.accept_trouble.succeed() {
            diag::error(format_args!(
                "accepting on {} again, after {}",
                door.addr,
                counted(failures, "failed attempt", "failed attempts")
            ));
        }
        door.idle.fetch_sub(1, AcqRel) == 1
    }

    /// Called when the last idle worker's client turned out slow: if still
    /// no worker is idle, adds a quarter of the pool (at least two), so that
    /// a flood of slow clients is matched in a few rounds, not one by one.
    fn grow(self: &Arc<Self>, door: &Arc<Door>) {
        if door.idle.load(Relaxed) > 0 {
            return;
        }
        let more = (*self.live() / 4).max(2);
        for _ in 0..more {
            if let Err(e) = self.spawn(door) {
                if self.spawn_trouble.fail() {
                    diag::error(format_args!(
                        "cannot start another worker: {e}; connections wait for a free one"
                    ));
                }
                return;
            }
        }
        if let Some(failures) = self.spawn_trouble.succeed() {
            diag::error(format_args!(
                "workers start again, after {}",
                counted(failures, "failure", "failures")
            ));
        }
    }

    fn accept_failed(&self, door: &Door, e: &io::Error) {
        if door.accept_trouble.fail() {
            diag::error(format_args!(
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

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
