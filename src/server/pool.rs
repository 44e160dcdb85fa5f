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
use crate::words::counted;
use std::cell::OnceCell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::AcqRel, Ordering::Relaxed};
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

    /// Stops accepting, lets exchanges in progress finish, and returns once
    /// every worker has left.
    pub fn stop(&self) {
        self.shared.stopping.store(true, Relaxed);
        for door in &self.doors {
            wake_idle_workers(door.addr, door.idle.load(Relaxed));
        }
        let mut live = self.shared.live();
        while *live > 0 {
            live = self
                .shared
                .all_gone
                .wait(live)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Connects to a listener as many times as it may have idle workers, so each
/// returns from `accept`, sees the pool stopping, and leaves. Those it misses
/// leave at their next accept timeout.
fn wake_idle_workers(addr: SocketAddr, count: usize) {
    let target = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    };
    for _ in 0..count {
        if TcpStream::connect_timeout(&target, Duration::from_millis(100)).is_err() {
            break;
        }
    }
}

impl Door {
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
        let mut scratch = Scratch::new();
        // The read timeout accepted sockets start with, asked of the first
        // one rather than assumed: inheriting it is Linux behaviour.
        let inherited_timeout = OnceCell::new();
        let grow = || self.grow(door);
        loop {
            if self.stopping.load(Relaxed) {
                door.idle.fetch_sub(1, AcqRel);
                break;
            }
            match door.listener.accept() {
                Ok((stream, peer)) => {
                    if self.stopping.load(Relaxed) {
                        continue;
                    }
                    let timeout =
                        *inherited_timeout.get_or_init(|| stream.read_timeout().ok().flatten());
                    let watch = self.accepted(door).then(|| SlowWatch {
                        verdict_at: Instant::now() + SLOW_START,
                        grow: &grow,
                    });
                    let conn = Connection::new(stream, peer, &mut scratch, timeout);
                    self.service.serve(conn, watch);
                    door.idle.fetch_add(1, AcqRel);
                }
                Err(e) if is_timeout(&e) => {
                    if door.try_retire() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.accept_failed(door, &e),
            }
        }
        self.leave();
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
