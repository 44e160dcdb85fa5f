//! What std lacks from the operating system, and so the one module where
//! this crate allows `unsafe`: each block says why it is sound. Linux only;
//! elsewhere each function says what happens instead.
//!
//! - Signals. std has no signal API. Instead of a handler (which may do
//!   almost nothing safely), SIGINT, SIGTERM and SIGHUP are blocked in every thread
//!   and one thread waits for them with `sigwait`, then acts in ordinary
//!   code. [`block_termination`] must run before any thread is spawned so
//!   that all threads inherit the mask.
//! - Sockets passed by a service manager (`sd_listen_fds(3)`): checked with
//!   `getsockopt`, then adopted as a `TcpListener` ([`adopt_listener`]).
//! - The listen backlog, which std fixes at 128 ([`set_backlog`]).

use std::fmt;
use std::net::TcpListener;

/// A termination signal that was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// SIGINT, usually Ctrl-C.
    Interrupt,
    /// SIGTERM, as sent by `kill` and service managers.
    Terminate,
    /// SIGHUP: the terminal closed.
    Hangup,
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
        })
    }
}

/// The termination signals, blocked for delivery; wait with [`Termination::wait`].
#[derive(Debug, Clone)]
pub(crate) struct Termination {
    #[cfg(target_os = "linux")]
    set: linux::SigSet,
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread and every thread it
/// spawns afterwards. Returns `None` where this is not supported, in which
/// case the signals keep their default action (ending the process).
pub(crate) fn block_termination() -> Option<Termination> {
    #[cfg(target_os = "linux")]
    {
        linux::block().map(|set| Termination { set })
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

impl Termination {
    /// Waits until SIGINT, SIGTERM or SIGHUP arrives.
    pub fn wait(&self) -> Signal {
        #[cfg(target_os = "linux")]
        {
            linux::wait(&self.set)
        }
        #[cfg(not(target_os = "linux"))]
        {
            loop {
                std::thread::park();
            }
        }
    }
}

/// Sets how many connections the kernel queues on `listener` before it
/// refuses more, with a second `listen()` (which Linux allows on a
/// listening socket; it caps the value at `net.core.somaxconn`). Public
/// because the benchmark gives its bare server the same backlog.
///
/// # Errors
///
/// What `listen` reports; elsewhere than Linux, `Unsupported`, and the
/// backlog stays std's 128.
pub fn set_backlog(listener: &TcpListener, backlog: u32) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        linux::set_backlog(listener, backlog)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (listener, backlog);
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

/// Shuts down the receiving side of the socket whose descriptor is `fd`:
/// a listening socket stops listening (new connections are refused, and
/// threads blocked in `accept` wake), a connection's blocked reads return
/// EOF. std can do this only on a `TcpStream` it owns; here another thread
/// owns the socket and is blocked in it. The caller must know that `fd` is
/// still that socket: a closed and reused number would shut another.
pub(crate) fn shut_reading(fd: i32) {
    #[cfg(target_os = "linux")]
    linux::shut_reading(fd);
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

/// Why a passed file descriptor is not a socket serv6 can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotAListener {
    Closed,
    NotASocket,
    NotStream,
    NotListening,
    NotInternet,
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    Unsupported,
}

impl fmt::Display for NotAListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotAListener::Closed => "it is not open",
            NotAListener::NotASocket => "it is not a socket",
            NotAListener::NotStream => "it is not a stream (TCP) socket",
            NotAListener::NotListening => {
                "it is not listening (a connected socket, as inetd-style activation passes)"
            }
            NotAListener::NotInternet => "it is not an IPv4 or IPv6 socket",
            NotAListener::Unsupported => "socket activation is supported on Linux only",
        })
    }
}

/// Takes `fd`, passed to this process by a service manager, as a listening
/// TCP socket, after checking that it is one. The caller must own `fd`:
/// nothing else in the process may use or close it.
pub(crate) fn adopt_listener(fd: i32) -> Result<TcpListener, NotAListener> {
    #[cfg(target_os = "linux")]
    {
        linux::adopt_listener(fd)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        Err(NotAListener::Unsupported)
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::{NotAListener, Signal};
    use std::ffi::{c_int, c_void};
    use std::io;
    use std::net::TcpListener;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    const SIGHUP: c_int = 1;
    const SIGINT: c_int = 2;
    const SIGTERM: c_int = 15;
    const SHUT_RD: c_int = 0;
    const SIG_BLOCK: c_int = 0;

    /// glibc's and musl's `sigset_t`: 1024 bits.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct SigSet([u64; 16]);

    const SOL_SOCKET: c_int = 1;
    const SO_TYPE: c_int = 3;
    const SO_ACCEPTCONN: c_int = 30;
    const SO_DOMAIN: c_int = 39;
    const SOCK_STREAM: c_int = 1;
    const AF_INET: c_int = 2;
    const AF_INET6: c_int = 10;
    const EBADF: i32 = 9;
    const ENOTSOCK: i32 = 88;

    extern "C" {
        fn listen(fd: c_int, backlog: c_int) -> c_int;
        fn shutdown(fd: c_int, how: c_int) -> c_int;
        fn getsockopt(
            fd: c_int,
            level: c_int,
            name: c_int,
            value: *mut c_void,
            len: *mut u32,
        ) -> c_int;
        fn sigemptyset(set: *mut SigSet) -> c_int;
        fn sigaddset(set: *mut SigSet, signal: c_int) -> c_int;
        fn pthread_sigmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
        fn sigwait(set: *const SigSet, signal: *mut c_int) -> c_int;
    }

    pub fn block() -> Option<SigSet> {
        let mut set = SigSet([0; 16]);
        // SAFETY: `set` is a live, writable sigset_t-sized value owned by this
        // frame; these functions only write inside it and report errors by
        // return value.
        let built = unsafe {
            sigemptyset(&mut set) == 0
                && sigaddset(&mut set, SIGINT) == 0
                && sigaddset(&mut set, SIGTERM) == 0
                && sigaddset(&mut set, SIGHUP) == 0
        };
        // SAFETY: `set` is initialised above; a null `old` is allowed and
        // means the previous mask is not wanted.
        let blocked =
            built && unsafe { pthread_sigmask(SIG_BLOCK, &set, std::ptr::null_mut()) } == 0;
        blocked.then_some(set)
    }

    pub fn wait(set: &SigSet) -> Signal {
        loop {
            let mut received: c_int = 0;
            // SAFETY: `set` was initialised by `block`, `received` is a live
            // writable int; sigwait reads the one and writes the other.
            let status = unsafe { sigwait(set, &mut received) };
            match (status, received) {
                (0, SIGINT) => return Signal::Interrupt,
                (0, SIGTERM) => return Signal::Terminate,
                (0, SIGHUP) => return Signal::Hangup,
                (0, _) => continue,
                // sigwait fails only for an invalid set, which `block` never
                // builds; retrying would spin, so this thread waits forever.
                _ => loop {
                    std::thread::park();
                },
            }
        }
    }

    pub fn shut_reading(fd: c_int) {
        // SAFETY: shutdown takes any integer and reports a bad one by its
        // return value; it touches no memory of ours. The caller accepts
        // that `fd` may by now name another socket (see `shut_reading`).
        let _ = unsafe { shutdown(fd, SHUT_RD) };
    }

    pub fn set_backlog(listener: &TcpListener, backlog: u32) -> io::Result<()> {
        let backlog = c_int::try_from(backlog).unwrap_or(c_int::MAX);
        // SAFETY: the descriptor belongs to `listener`, which is borrowed
        // and so open for the whole call; listen only changes its queue.
        let status = unsafe { listen(listener.as_raw_fd(), backlog) };
        if status == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// An integer socket option of `fd`.
    fn int_option(fd: c_int, name: c_int) -> io::Result<c_int> {
        let mut value: c_int = 0;
        let mut len = std::mem::size_of::<c_int>() as u32;
        // SAFETY: `value` and `len` are live, writable locals; `len` says how
        // many bytes `value` holds, and getsockopt writes at most that many.
        // An invalid `fd` is reported by return value, never touched.
        let status = unsafe {
            getsockopt(
                fd,
                SOL_SOCKET,
                name,
                (&mut value as *mut c_int).cast(),
                &mut len,
            )
        };
        if status == 0 {
            Ok(value)
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub fn adopt_listener(fd: c_int) -> Result<TcpListener, NotAListener> {
        let kind = int_option(fd, SO_TYPE).map_err(|e| match e.raw_os_error() {
            Some(EBADF) => NotAListener::Closed,
            Some(ENOTSOCK) => NotAListener::NotASocket,
            _ => NotAListener::NotASocket,
        })?;
        if kind != SOCK_STREAM {
            return Err(NotAListener::NotStream);
        }
        if int_option(fd, SO_ACCEPTCONN).map_err(|_| NotAListener::NotListening)? == 0 {
            return Err(NotAListener::NotListening);
        }
        let domain = int_option(fd, SO_DOMAIN).map_err(|_| NotAListener::NotInternet)?;
        if domain != AF_INET && domain != AF_INET6 {
            return Err(NotAListener::NotInternet);
        }
        // SAFETY: `fd` is an open listening TCP socket (checked above), and
        // the caller guarantees that nothing else in the process owns it, so
        // the new `OwnedFd` is its only owner and will close it once.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(TcpListener::from(owned))
    }
}
