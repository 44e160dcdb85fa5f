//! Readiness of many sockets at once, for the waiting room: Linux's
//! `epoll`, and an `eventfd` that other threads make readable to wake it.

use super::sys::{self, EpollEvent};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

/// A set of sockets to wait on for something to read (or a hang-up, or an
/// error, which a read then reports): level-triggered, so a socket that
/// still has bytes is reported again on the next wait.
pub(crate) struct Poller {
    epoll: OwnedFd,
    events: Vec<EpollEvent>,
}

impl Poller {
    /// A new, empty set that reports at most `batch` sockets per wait.
    pub fn new(batch: usize) -> io::Result<Poller> {
        Ok(Poller { epoll: sys::epoll_new()?, events: vec![EpollEvent::default(); batch.max(1)] })
    }

    /// Adds `socket`, reported as `token` when it has something to read.
    pub fn add(&mut self, socket: &TcpStream, token: u64) -> io::Result<()> {
        sys::epoll_add(self.epoll.as_fd(), socket.as_fd(), token)
    }

    /// A new [`Waker`] of this set, reported as `token` when woken.
    pub fn waker(&mut self, token: u64) -> io::Result<Waker> {
        let waker = Waker(File::from(sys::eventfd_new()?));
        sys::epoll_add(self.epoll.as_fd(), waker.0.as_fd(), token)?;
        Ok(waker)
    }

    /// Takes `socket`, added as `token`, out of the set, so that it can be
    /// added again, or closed.
    pub fn remove(&mut self, socket: &TcpStream, _token: u64) {
        sys::epoll_remove(self.epoll.as_fd(), socket.as_fd());
    }

    /// Waits until a socket is ready or `timeout` passes (`None`: no limit),
    /// and puts the tokens of the ready ones in `ready` (cleared first).
    pub fn wait(&mut self, timeout: Option<Duration>, ready: &mut Vec<u64>) -> io::Result<()> {
        ready.clear();
        let n = sys::epoll_ready(self.epoll.as_fd(), &mut self.events, sys::timeout_ms(timeout))?;
        ready.extend(self.events[..n].iter().map(EpollEvent::token));
        Ok(())
    }
}

/// A descriptor that other threads make readable to wake a thread waiting
/// on a [`Poller`]: one descriptor and no socket (the service's sandbox
/// allows no socket of any family to be made).
pub(crate) struct Waker(File);

impl Waker {
    /// Makes it readable, from any thread. It cannot block: the counter
    /// would have to reach 2^64 - 1 first.
    pub fn wake(&self) {
        let _ = (&self.0).write(&1u64.to_ne_bytes());
    }

    /// Takes the wake-ups so far: it is not readable until the next.
    pub fn clear(&self) {
        let _ = (&self.0).read(&mut [0u8; 8]);
    }
}
