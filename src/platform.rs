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
//! - Readiness of many sockets at once, for the waiting room: `epoll`
//!   ([`Poller`]). Elsewhere there is none, and workers read every
//!   connection to its end themselves.
//! - The open-file limit ([`raise_open_file_limit`]), which std cannot read.

use std::fmt;
use std::net::TcpListener;

/// A signal that was received and that serv6 acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// SIGINT, usually Ctrl-C.
    Interrupt,
    /// SIGTERM, as sent by `kill` and service managers.
    Terminate,
    /// SIGHUP: the terminal closed.
    Hangup,
    /// SIGPWR: the power is failing, says init.
    PowerFailure,
    /// SIGUSR1: say how it is going, and go on (as `dd` does).
    Report,
}

impl Signal {
    /// Whether it asks serv6 to stop.
    pub fn stops(self) -> bool {
        self != Signal::Report
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
            Signal::PowerFailure => "SIGPWR",
            Signal::Report => "SIGUSR1",
        })
    }
}

/// The termination signals, blocked for delivery; wait with [`Termination::wait`].
#[derive(Debug, Clone)]
pub(crate) struct Termination {
    #[cfg(target_os = "linux")]
    set: linux::SigSet,
}

/// Blocks, in the calling thread and every thread it spawns afterwards,
/// every signal whose default would end serv6 without a word, except
/// those that report a fault (SIGSEGV, SIGBUS, ...) or ask for a core
/// (SIGQUIT): [`Termination::wait`] then takes them. SIGXFSZ, SIGUSR2,
/// SIGALRM, SIGVTALRM, SIGPROF and the real-time signals are taken and
/// ignored (a write past a file-size limit then fails with `EFBIG`, which
/// the log counts). Returns `None` where this is not supported, in which
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
    /// Waits until a signal serv6 acts on arrives (see [`block_termination`]).
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

/// Shuts down the receiving side of `listener`: it stops listening (new
/// connections are refused), and threads blocked in `accept` on it wake.
/// std cannot shut down a listener; borrowing it guarantees that the
/// descriptor is still this socket.
pub(crate) fn stop_listening(listener: &TcpListener) {
    #[cfg(target_os = "linux")]
    linux::shut_reading(listener);
    #[cfg(not(target_os = "linux"))]
    let _ = listener;
}

/// What one read took: how many bytes, and when the last of them reached
/// the machine, as the kernel stamped it, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    pub len: usize,
    pub arrived: Option<std::time::SystemTime>,
}

/// Reads what `stream` has received into `buf` without waiting, whether
/// the socket blocks or not: `WouldBlock` if nothing has come. One system
/// call (`recvmsg`), where std would need two to switch the socket to
/// non-blocking; with [`stamp_arrivals`] on its listener it also returns
/// the kernel's arrival time of the last segment read.
pub(crate) fn receive_now(
    stream: &std::net::TcpStream,
    buf: &mut [u8],
) -> std::io::Result<Received> {
    #[cfg(target_os = "linux")]
    {
        linux::receive_now(stream, buf)
    }
    #[cfg(not(target_os = "linux"))]
    {
        stream.set_nonblocking(true)?;
        let read = std::io::Read::read(&mut &*stream, buf);
        stream.set_nonblocking(false)?;
        read.map(|len| Received { len, arrived: None })
    }
}

/// Asks the kernel to stamp each segment `socket` receives with its
/// arrival time (`SO_TIMESTAMPNS`, software receive timestamps), which
/// [`receive_now`] returns; a listener's accepted sockets inherit it.
///
/// # Errors
///
/// What `setsockopt` reports; elsewhere than Linux, `Unsupported`.
pub(crate) fn stamp_arrivals(socket: &impl std::os::fd::AsFd) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        linux::stamp_arrivals(socket.as_fd())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

/// A descriptor that other threads make readable to wake a thread waiting
/// on a [`Poller`]: Linux's `eventfd`, one descriptor and no socket (the
/// service's sandbox allows no socket of any family to be made).
#[derive(Debug)]
pub(crate) struct Waker {
    #[cfg(target_os = "linux")]
    event: std::fs::File,
}

impl Waker {
    /// A new waker, not yet woken.
    ///
    /// # Errors
    ///
    /// What `eventfd` reports; elsewhere than Linux, `Unsupported`.
    pub fn new() -> std::io::Result<Waker> {
        #[cfg(target_os = "linux")]
        {
            Ok(Waker {
                event: std::fs::File::from(linux::new_eventfd()?),
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            Err(std::io::ErrorKind::Unsupported.into())
        }
    }

    /// Makes it readable, from any thread. It cannot block: the counter
    /// would have to reach 2^64 - 1 first.
    pub fn wake(&self) {
        #[cfg(target_os = "linux")]
        {
            let _ = std::io::Write::write(&mut &self.event, &1u64.to_ne_bytes());
        }
    }

    /// Takes the wake-ups so far: it is not readable until the next.
    pub fn clear(&self) {
        #[cfg(target_os = "linux")]
        {
            let mut count = [0u8; 8];
            let _ = std::io::Read::read(&mut &self.event, &mut count);
        }
    }
}

impl std::os::fd::AsFd for Waker {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        #[cfg(target_os = "linux")]
        {
            self.event.as_fd()
        }
        #[cfg(not(target_os = "linux"))]
        {
            unreachable!("a Waker is never made elsewhere than Linux")
        }
    }
}

/// Waits until `stream` has something to read (bytes, EOF or an error),
/// or `timeout` passes: true if it has. `poll(2)`, which times to the
/// microsecond where `SO_RCVTIMEO` rounds up to the kernel's tick (up to
/// 10 ms), and needs no `setsockopt` first.
pub(crate) fn wait_readable(
    stream: &std::net::TcpStream,
    timeout: std::time::Duration,
) -> std::io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        linux::wait_readable(stream, timeout)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let mut probe = [0u8; 1];
        stream.set_read_timeout(Some(timeout))?;
        match stream.peek(&mut probe) {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(_) => Ok(true),
        }
    }
}

/// Keeps glibc's `malloc` to `arenas` arenas. Each thread that allocates
/// would otherwise get an arena of its own, up to eight per core, and each
/// reserves 64 MiB of address space: under `ulimit -v` that, not what is
/// used, is what runs out. serv6's threads allocate little, so sharing
/// costs nothing. Elsewhere than glibc, nothing to do.
pub(crate) fn limit_malloc_arenas(arenas: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    linux::limit_malloc_arenas(arenas);
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = arenas;
}

/// The `open(2)` flag for non-blocking I/O (Linux's value), for
/// `OpenOptionsExt::custom_flags`.
pub(crate) const O_NONBLOCK: i32 = 0o4000;

/// Whether `e` says the process or the system has no file descriptor left
/// (`EMFILE`, `ENFILE`), which std gives no kind of its own.
pub(crate) fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(e.raw_os_error(), Some(ENFILE | EMFILE))
}

/// What the soft limit on open files became: raised to the hard limit when
/// it could be (as systemd asks of services), or left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenFiles {
    pub limit: u64,
    /// The soft limit before, if raising it changed it.
    pub raised_from: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. `None` where the
/// limit cannot be read (not Linux).
pub(crate) fn raise_open_file_limit() -> Option<OpenFiles> {
    #[cfg(target_os = "linux")]
    {
        linux::raise_open_file_limit()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// A set of sockets to wait on for something to read (or a hang-up, or an
/// error, which a read then reports): Linux's `epoll`, level-triggered, so
/// a socket that still has bytes is reported again on the next wait.
#[derive(Debug)]
pub(crate) struct Poller {
    #[cfg(target_os = "linux")]
    epoll: std::os::fd::OwnedFd,
    #[cfg(target_os = "linux")]
    events: Vec<linux::EpollEvent>,
}

impl Poller {
    /// A new, empty set that reports at most `batch` sockets per wait.
    ///
    /// # Errors
    ///
    /// What `epoll_create1` reports (no descriptors left, say); elsewhere
    /// than Linux, `Unsupported`.
    pub fn new(batch: usize) -> std::io::Result<Poller> {
        #[cfg(target_os = "linux")]
        {
            Ok(Poller {
                epoll: linux::epoll_create()?,
                events: vec![linux::EpollEvent::default(); batch.max(1)],
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = batch;
            Err(std::io::ErrorKind::Unsupported.into())
        }
    }

    /// Adds `socket`, reported as `token` when it has something to read.
    /// The socket leaves the set by itself when it is closed.
    pub fn add(&self, socket: &impl std::os::fd::AsFd, token: u64) -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            linux::epoll_add(&self.epoll, socket.as_fd(), token)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (socket, token);
            Err(std::io::ErrorKind::Unsupported.into())
        }
    }

    /// Waits until a socket is ready or `timeout` passes (`None`: no limit),
    /// and puts the tokens of the ready ones in `ready` (cleared first). An
    /// interrupted wait finds none.
    pub fn wait(
        &mut self,
        timeout: Option<std::time::Duration>,
        ready: &mut Vec<u64>,
    ) -> std::io::Result<()> {
        ready.clear();
        #[cfg(target_os = "linux")]
        {
            let n = linux::epoll_wait(&self.epoll, &mut self.events, timeout)?;
            ready.extend(self.events[..n].iter().map(linux::EpollEvent::token));
            Ok(())
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = timeout;
            Err(std::io::ErrorKind::Unsupported.into())
        }
    }
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
    use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
    use std::time::Duration;

    const SIGHUP: c_int = 1;
    const SIGINT: c_int = 2;
    const SIGUSR1: c_int = 10;
    const SIGTERM: c_int = 15;
    const SIGPWR: c_int = 30;
    /// Taken and ignored: SIGUSR2, SIGALRM, SIGXFSZ, SIGVTALRM, SIGPROF.
    const IGNORED: [c_int; 5] = [12, 14, 25, 26, 27];
    /// The real-time signals glibc leaves to programs (32 and 33 are its own).
    const REAL_TIME: std::ops::RangeInclusive<c_int> = 34..=64;
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
    const EINTR: i32 = 4;
    const MSG_DONTWAIT: c_int = 0x40;
    const RLIMIT_NOFILE: c_int = 7;
    const EPOLL_CLOEXEC: c_int = 0o2_000_000;
    const EFD_CLOEXEC: c_int = 0o2_000_000;
    const EFD_NONBLOCK: c_int = 0o4_000;
    const EPOLL_CTL_ADD: c_int = 1;
    const EPOLLIN: u32 = 0x001;
    const EPOLLRDHUP: u32 = 0x2000;

    const POLLIN: i16 = 0x001;
    /// The size of a `c_int` option value, as `socklen_t`: 4, whatever the target.
    #[allow(clippy::cast_possible_truncation)]
    const C_INT_LEN: u32 = std::mem::size_of::<c_int>() as u32;
    /// `SO_TIMESTAMPNS`, which is also `SCM_TIMESTAMPNS`: the 64-bit
    /// `timespec` form on 64-bit targets.
    const SO_TIMESTAMPNS: c_int = 35;
    /// Room for the control messages a TCP read can bring: the timestamp.
    const CONTROL_LEN: usize = 64;

    /// `struct iovec`.
    #[repr(C)]
    struct IoVec {
        base: *mut c_void,
        len: usize,
    }

    /// `struct msghdr`.
    #[repr(C)]
    struct MsgHdr {
        name: *mut c_void,
        name_len: u32,
        iov: *mut IoVec,
        iov_len: usize,
        control: *mut c_void,
        control_len: usize,
        flags: c_int,
    }

    /// A control-message buffer, aligned as `struct cmsghdr` must be.
    #[repr(C, align(8))]
    struct Control([u8; CONTROL_LEN]);

    /// `struct pollfd`.
    #[repr(C)]
    struct PollFd {
        fd: c_int,
        events: i16,
        revents: i16,
    }

    /// `struct rlimit`: two `rlim_t`, 64 bits on every Linux target std has.
    #[repr(C)]
    struct RLimit {
        current: u64,
        max: u64,
    }

    /// `struct epoll_event`, which the kernel packs on `x86_64` only.
    #[cfg_attr(target_arch = "x86_64", repr(C, packed))]
    #[cfg_attr(not(target_arch = "x86_64"), repr(C))]
    #[derive(Debug, Clone, Copy, Default)]
    pub struct EpollEvent {
        events: u32,
        data: u64,
    }

    impl EpollEvent {
        pub fn token(&self) -> u64 {
            // By value: a reference into a packed struct may be unaligned.
            self.data
        }
    }

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
        fn recvmsg(fd: c_int, message: *mut MsgHdr, flags: c_int) -> isize;
        fn setsockopt(
            fd: c_int,
            level: c_int,
            name: c_int,
            value: *const c_void,
            len: u32,
        ) -> c_int;
        fn poll(fds: *mut PollFd, count: u64, timeout: c_int) -> c_int;
        fn getrlimit(resource: c_int, limit: *mut RLimit) -> c_int;
        fn setrlimit(resource: c_int, limit: *const RLimit) -> c_int;
        fn epoll_create1(flags: c_int) -> c_int;
        fn eventfd(initial: u32, flags: c_int) -> c_int;
        #[cfg(target_env = "gnu")]
        fn mallopt(parameter: c_int, value: c_int) -> c_int;
        fn epoll_ctl(epoll: c_int, op: c_int, fd: c_int, event: *mut EpollEvent) -> c_int;
        #[link_name = "epoll_wait"]
        fn epoll_wait_raw(
            epoll: c_int,
            events: *mut EpollEvent,
            max: c_int,
            timeout: c_int,
        ) -> c_int;
    }

    pub fn stamp_arrivals(socket: BorrowedFd<'_>) -> io::Result<()> {
        let on: c_int = 1;
        // SAFETY: the descriptor is borrowed, so open for the call; `on` is
        // a live int and the length says so; setsockopt only reads it.
        let status = unsafe {
            setsockopt(
                socket.as_raw_fd(),
                SOL_SOCKET,
                SO_TIMESTAMPNS,
                std::ptr::addr_of!(on).cast(),
                C_INT_LEN,
            )
        };
        if status == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub fn receive_now(
        stream: &std::net::TcpStream,
        buf: &mut [u8],
    ) -> io::Result<super::Received> {
        let mut iov = IoVec {
            base: buf.as_mut_ptr().cast(),
            len: buf.len(),
        };
        let mut control = Control([0; CONTROL_LEN]);
        let mut header = MsgHdr {
            name: std::ptr::null_mut(),
            name_len: 0,
            iov: &mut iov,
            iov_len: 1,
            control: control.0.as_mut_ptr().cast(),
            control_len: CONTROL_LEN,
            flags: 0,
        };
        // SAFETY: the descriptor belongs to `stream`, borrowed for the call.
        // `header` points at one iovec covering exactly `buf` (live and
        // writable) and at `control`, a live buffer of `control_len` bytes;
        // the kernel writes at most those lengths and updates `header`'s
        // lengths and flags, all of which outlive the call.
        let n = unsafe { recvmsg(stream.as_raw_fd(), &mut header, MSG_DONTWAIT) };
        let len = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        let filled = header.control_len.min(CONTROL_LEN);
        Ok(super::Received {
            len,
            arrived: arrival_stamp(&control.0[..filled]),
        })
    }

    /// The `SCM_TIMESTAMPNS` time among the control messages in `control`.
    fn arrival_stamp(control: &[u8]) -> Option<std::time::SystemTime> {
        let word = std::mem::size_of::<usize>();
        let header_len = word + 2 * std::mem::size_of::<c_int>();
        let mut at = 0;
        while at + header_len <= control.len() {
            let field = |from: usize, len: usize| control.get(at + from..at + from + len);
            let len = usize::from_ne_bytes(field(0, word)?.try_into().ok()?);
            let level = c_int::from_ne_bytes(field(word, 4)?.try_into().ok()?);
            let kind = c_int::from_ne_bytes(field(word + 4, 4)?.try_into().ok()?);
            if len < header_len {
                return None;
            }
            if level == SOL_SOCKET && kind == SO_TIMESTAMPNS {
                let data = header_len.next_multiple_of(word);
                let seconds = i64::from_ne_bytes(field(data, 8)?.try_into().ok()?);
                let nanos = i64::from_ne_bytes(field(data + 8, 8)?.try_into().ok()?);
                let since = Duration::new(u64::try_from(seconds).ok()?, u32::try_from(nanos).ok()?);
                return std::time::UNIX_EPOCH.checked_add(since);
            }
            at += len.next_multiple_of(word);
        }
        None
    }

    pub fn wait_readable(stream: &std::net::TcpStream, timeout: Duration) -> io::Result<bool> {
        let mut watched = PollFd {
            fd: stream.as_raw_fd(),
            events: POLLIN,
            revents: 0,
        };
        let timeout = timeout_ms(Some(timeout));
        // SAFETY: `watched` is one live, writable pollfd, and the count says
        // one; the descriptor belongs to `stream`, borrowed for the call.
        let n = unsafe { poll(&mut watched, 1, timeout) };
        match n {
            0 => Ok(false),
            n if n > 0 => Ok(true),
            _ => {
                let error = io::Error::last_os_error();
                if error.raw_os_error() == Some(EINTR) {
                    Ok(false)
                } else {
                    Err(error)
                }
            }
        }
    }

    /// A timeout in whole milliseconds, rounded up so that a timer is never
    /// woken for just before its time; `None`: wait forever (-1).
    fn timeout_ms(timeout: Option<Duration>) -> c_int {
        timeout.map_or(-1, |t| {
            let ms = t.as_nanos().div_ceil(1_000_000);
            c_int::try_from(ms).unwrap_or(c_int::MAX)
        })
    }

    pub fn raise_open_file_limit() -> Option<super::OpenFiles> {
        let mut limit = RLimit { current: 0, max: 0 };
        // SAFETY: `limit` is a live, writable struct of the layout the
        // kernel expects; getrlimit writes only inside it.
        if unsafe { getrlimit(RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        if limit.current >= limit.max {
            return Some(super::OpenFiles {
                limit: limit.current,
                raised_from: None,
            });
        }
        let raised = RLimit {
            current: limit.max,
            max: limit.max,
        };
        // SAFETY: `raised` is a live, initialised struct that setrlimit only
        // reads; asking for the hard limit needs no privilege.
        if unsafe { setrlimit(RLIMIT_NOFILE, &raised) } != 0 {
            return Some(super::OpenFiles {
                limit: limit.current,
                raised_from: None,
            });
        }
        Some(super::OpenFiles {
            limit: limit.max,
            raised_from: Some(limit.current),
        })
    }

    pub fn epoll_create() -> io::Result<OwnedFd> {
        // SAFETY: epoll_create1 takes only flags and touches no memory of ours.
        let fd = unsafe { epoll_create1(EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by the kernel as a new descriptor,
        // so nothing else owns it; the `OwnedFd` will close it once.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    #[cfg(target_env = "gnu")]
    pub fn limit_malloc_arenas(arenas: c_int) {
        const M_ARENA_MAX: c_int = -8;
        // SAFETY: mallopt takes two integers and changes only malloc's own
        // settings; a value it refuses is reported by return value.
        let _ = unsafe { mallopt(M_ARENA_MAX, arenas) };
    }

    pub fn new_eventfd() -> io::Result<OwnedFd> {
        // SAFETY: eventfd takes only a value and flags, touching no memory
        // of ours.
        let fd = unsafe { eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by the kernel as a new descriptor,
        // so nothing else owns it; the `OwnedFd` will close it once.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub fn epoll_add(epoll: &OwnedFd, socket: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let mut event = EpollEvent {
            events: EPOLLIN | EPOLLRDHUP,
            data: token,
        };
        // SAFETY: both descriptors are borrowed, so open for the call;
        // `event` is a live value of the kernel's layout, read during the
        // call only (the kernel keeps its own copy).
        let status = unsafe {
            epoll_ctl(
                epoll.as_raw_fd(),
                EPOLL_CTL_ADD,
                socket.as_raw_fd(),
                &mut event,
            )
        };
        if status == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub fn epoll_wait(
        epoll: &OwnedFd,
        events: &mut [EpollEvent],
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        let timeout = timeout_ms(timeout);
        let max = c_int::try_from(events.len()).unwrap_or(c_int::MAX);
        // SAFETY: `events` is a live, writable buffer of `max` elements of
        // the kernel's layout, and the kernel writes at most `max` of them.
        let n = unsafe { epoll_wait_raw(epoll.as_raw_fd(), events.as_mut_ptr(), max, timeout) };
        if let Ok(n) = usize::try_from(n) {
            return Ok(n);
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(EINTR) {
            Ok(0)
        } else {
            Err(error)
        }
    }

    pub fn block() -> Option<SigSet> {
        let mut set = SigSet([0; 16]);
        // SAFETY: `set` is a live, writable sigset_t-sized value owned by this
        // frame; these functions only write inside it and report errors by
        // return value.
        let built = unsafe {
            sigemptyset(&mut set) == 0
                && [SIGINT, SIGTERM, SIGHUP, SIGPWR, SIGUSR1]
                    .into_iter()
                    .chain(IGNORED)
                    .all(|signal| sigaddset(&mut set, signal) == 0)
        };
        for signal in REAL_TIME {
            // SAFETY: as above; a number this libc does not know is refused
            // by return value, and that signal keeps its default.
            let _ = unsafe { sigaddset(&mut set, signal) };
        }
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
                (0, SIGPWR) => return Signal::PowerFailure,
                (0, SIGUSR1) => return Signal::Report,
                (0, _) => {}
                // sigwait fails only for an invalid set, which `block` never
                // builds; retrying would spin, so this thread waits forever.
                _ => loop {
                    std::thread::park();
                },
            }
        }
    }

    pub fn shut_reading(listener: &TcpListener) {
        // SAFETY: the descriptor belongs to `listener`, which is borrowed and
        // so open for the whole call; shutdown touches no memory of ours.
        let _ = unsafe { shutdown(listener.as_raw_fd(), SHUT_RD) };
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
        let mut len = C_INT_LEN;
        // SAFETY: `value` and `len` are live, writable locals; `len` says how
        // many bytes `value` holds, and getsockopt writes at most that many.
        // An invalid `fd` is reported by return value, never touched.
        let status = unsafe {
            getsockopt(
                fd,
                SOL_SOCKET,
                name,
                std::ptr::addr_of_mut!(value).cast(),
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
            // ENOTSOCK, or anything else: not a socket serv6 can use.
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
