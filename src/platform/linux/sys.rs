//! The system calls std lacks, each behind a safe signature: the one file
//! of the crate allowed `unsafe`, each block with why it is sound.
//!
//! Linux's ABI on 64-bit targets (the crate builds only there): `nfds_t`,
//! `size_t` and `rlim_t` are 64 bits, `timespec` two 64-bit fields, and the
//! constants are the generic ones (`x86_64`, `aarch64`, `riscv64` share them).

use std::ffi::{c_int, c_void};
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

pub const SIGHUP: c_int = 1;
pub const SIGINT: c_int = 2;
pub const SIGUSR1: c_int = 10;
pub const SIGUSR2: c_int = 12;
pub const SIGALRM: c_int = 14;
pub const SIGTERM: c_int = 15;
pub const SIGSTKFLT: c_int = 16;
pub const SIGXCPU: c_int = 24;
pub const SIGXFSZ: c_int = 25;
pub const SIGVTALRM: c_int = 26;
pub const SIGPROF: c_int = 27;
pub const SIGIO: c_int = 29;
pub const SIGPWR: c_int = 30;
/// The real-time signals glibc leaves to programs (32 and 33 are its own).
pub const REAL_TIME: std::ops::RangeInclusive<c_int> = 34..=64;
pub const SOL_SOCKET: c_int = 1;
pub const SO_TYPE: c_int = 3;
pub const SO_ACCEPTCONN: c_int = 30;
pub const SO_DOMAIN: c_int = 39;
/// `SO_TIMESTAMPNS`, which is also `SCM_TIMESTAMPNS`.
pub const SO_TIMESTAMPNS: c_int = 35;
pub const SOCK_STREAM: c_int = 1;
pub const AF_INET: c_int = 2;
pub const AF_INET6: c_int = 10;
pub const EBADF: i32 = 9;
/// The `open(2)` flag, for `OpenOptionsExt::custom_flags`.
pub const O_NONBLOCK: c_int = 0o4000;
pub const RLIMIT_NOFILE: c_int = 7;
pub const RLIMIT_AS: c_int = 9;
const MSG_DONTWAIT: c_int = 0x40;
const MSG_NOSIGNAL: c_int = 0x4000;
const SHUT_RD: c_int = 0;
const SIG_BLOCK: c_int = 0;
const CLOEXEC: c_int = 0o2_000_000;
const EPOLL_CTL_ADD: c_int = 1;
const EPOLL_CTL_DEL: c_int = 2;
const EPOLLIN: u32 = 0x001;
const EPOLLRDHUP: u32 = 0x2000;
const POLLIN: i16 = 0x001;
/// The size of a `c_int` option value, as `socklen_t`.
const C_INT_LEN: u32 = 4;

/// `sigset_t`, glibc's and musl's: 1024 bits.
#[repr(C)]
pub struct SigSet([u64; 16]);

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

/// `struct pollfd`.
#[repr(C)]
struct PollFd {
    fd: c_int,
    events: i16,
    revents: i16,
}

/// `struct rlimit`.
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
    fn getsockopt(fd: c_int, level: c_int, name: c_int, value: *mut c_void, len: *mut u32)
        -> c_int;
    fn setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void, len: u32) -> c_int;
    fn recvmsg(fd: c_int, message: *mut MsgHdr, flags: c_int) -> isize;
    fn send(fd: c_int, buf: *const c_void, len: usize, flags: c_int) -> isize;
    fn poll(fds: *mut PollFd, count: u64, timeout: c_int) -> c_int;
    fn sigemptyset(set: *mut SigSet) -> c_int;
    fn sigaddset(set: *mut SigSet, signal: c_int) -> c_int;
    fn pthread_sigmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
    fn sigwait(set: *const SigSet, signal: *mut c_int) -> c_int;
    fn getrlimit(resource: c_int, limit: *mut RLimit) -> c_int;
    fn setrlimit(resource: c_int, limit: *const RLimit) -> c_int;
    fn epoll_create1(flags: c_int) -> c_int;
    fn epoll_ctl(epoll: c_int, op: c_int, fd: c_int, event: *mut EpollEvent) -> c_int;
    fn epoll_wait(epoll: c_int, events: *mut EpollEvent, max: c_int, timeout: c_int) -> c_int;
    fn eventfd(initial: u32, flags: c_int) -> c_int;
    #[cfg(target_env = "gnu")]
    fn mallopt(parameter: c_int, value: c_int) -> c_int;
    #[cfg(target_env = "gnu")]
    fn malloc_trim(pad: usize) -> c_int;
}

/// `Ok(())` for a call that returned 0, else the error it left in `errno`.
fn status(returned: c_int) -> io::Result<()> {
    match returned {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// A count a call returned, or the error it left in `errno`.
fn count(returned: isize) -> io::Result<usize> {
    usize::try_from(returned).map_err(|_| io::Error::last_os_error())
}

/// A new descriptor a call returned, now owned, or its error.
fn owned(fd: c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned `fd` as a new descriptor, so nothing
    // else owns it; the `OwnedFd` will close it once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets how many connections the kernel queues on `listener` before it
/// refuses more, with a second `listen()` (which Linux allows on a
/// listening socket; it caps the value at `net.core.somaxconn`). Public
/// because the benchmark gives its bare server the same backlog.
///
/// # Errors
///
/// What `listen` reports.
pub fn set_backlog(listener: &TcpListener, backlog: u32) -> io::Result<()> {
    let backlog = c_int::try_from(backlog).unwrap_or(c_int::MAX);
    // SAFETY: the descriptor belongs to `listener`, borrowed and so open for
    // the call; listen only changes its queue.
    status(unsafe { listen(listener.as_raw_fd(), backlog) })
}

/// Shuts down the receiving side of `listener`: it stops listening (new
/// connections are refused), and threads blocked in `accept` on it wake.
pub fn stop_listening(listener: &TcpListener) -> io::Result<()> {
    // SAFETY: as for `set_backlog`; shutdown touches no memory of ours.
    status(unsafe { shutdown(listener.as_raw_fd(), SHUT_RD) })
}

/// An integer socket option of `fd`, which may be any number: an invalid
/// one is reported by the call, never touched.
pub fn int_option(fd: c_int, name: c_int) -> io::Result<c_int> {
    let mut value: c_int = 0;
    let mut len = C_INT_LEN;
    // SAFETY: `value` and `len` are live, writable locals, and `len` says
    // how many bytes `value` holds; getsockopt writes at most that many.
    status(unsafe {
        getsockopt(fd, SOL_SOCKET, name, std::ptr::addr_of_mut!(value).cast(), &mut len)
    })?;
    Ok(value)
}

pub fn set_int_option(fd: BorrowedFd<'_>, name: c_int, value: c_int) -> io::Result<()> {
    // SAFETY: the descriptor is borrowed, so open for the call; `value` is
    // a live int and the length says so; setsockopt only reads it.
    status(unsafe {
        setsockopt(fd.as_raw_fd(), SOL_SOCKET, name, std::ptr::addr_of!(value).cast(), C_INT_LEN)
    })
}

/// Whether the descriptors a service manager passed have been taken.
static PASSED_TAKEN: AtomicBool = AtomicBool::new(false);

/// The `count` descriptors a service manager passed, from 3 on
/// (`SD_LISTEN_FDS_START`), each owned, or why not (not open). Taken once
/// per process, first thing, so that each has one owner: a later call
/// gets none.
pub fn take_passed(count: c_int) -> Vec<(c_int, io::Result<OwnedFd>)> {
    if PASSED_TAKEN.swap(true, SeqCst) {
        return Vec::new();
    }
    let take = |fd: c_int| match int_option(fd, SO_TYPE) {
        Err(e) if e.raw_os_error() == Some(EBADF) => Err(e),
        // SAFETY: `fd` is open (it is no EBADF), and it was passed to this
        // process, which takes the passed descriptors once, before opening
        // any of its own: the new `OwnedFd` is its only owner.
        _ => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
    };
    (3..3 + count).map(|fd| (fd, take(fd))).collect()
}

/// Reads what `fd` has received into `buf` without waiting
/// (`MSG_DONTWAIT`), and its control messages into `control`; returns the
/// bytes read and the control bytes filled.
pub fn receive(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    control: &mut [u64],
) -> io::Result<(usize, usize)> {
    let mut iov = IoVec { base: buf.as_mut_ptr().cast(), len: buf.len() };
    let control_len = std::mem::size_of_val(control);
    let mut header = MsgHdr {
        name: std::ptr::null_mut(),
        name_len: 0,
        iov: &mut iov,
        iov_len: 1,
        control: control.as_mut_ptr().cast(),
        control_len,
        flags: 0,
    };
    // SAFETY: the descriptor is borrowed, so open for the call. `header`
    // points at one iovec covering exactly `buf` (live and writable) and at
    // `control`, live, writable and 8-byte aligned as `cmsghdr` must be,
    // of `control_len` bytes; the kernel writes at most those lengths and
    // updates `header`'s, all of which outlive the call.
    let n = count(unsafe { recvmsg(fd.as_raw_fd(), &mut header, MSG_DONTWAIT) })?;
    Ok((n, header.control_len.min(control_len)))
}

/// Sends what of `data` the stream socket `fd` takes now, never waiting
/// and without touching its flags (a stalled reader gets `WouldBlock`),
/// and without a SIGPIPE.
pub fn send_now(fd: &impl AsFd, data: &[u8]) -> io::Result<usize> {
    let fd = fd.as_fd().as_raw_fd();
    // SAFETY: the descriptor is borrowed, so open for the call; `data` is a
    // live slice of the length given, which send only reads.
    count(unsafe { send(fd, data.as_ptr().cast(), data.len(), MSG_DONTWAIT | MSG_NOSIGNAL) })
}

/// Waits until `stream` has something to read (bytes, EOF or an error),
/// or `timeout` passes: true if it has. `poll(2)`, which times to the
/// microsecond where `SO_RCVTIMEO` rounds up to the kernel's tick, and
/// needs no `setsockopt` first. An interrupted wait says false.
pub fn wait_readable(stream: &TcpStream, timeout: Duration) -> io::Result<bool> {
    let mut watched = PollFd { fd: stream.as_raw_fd(), events: POLLIN, revents: 0 };
    // SAFETY: `watched` is one live, writable pollfd, and the count says
    // one; its descriptor is borrowed, so open for the call.
    match unsafe { poll(&mut watched, 1, timeout_ms(Some(timeout))) } {
        0 => Ok(false),
        n if n > 0 => Ok(true),
        _ => interrupted_is(false),
    }
}

/// A timeout in whole milliseconds for `poll` and `epoll_wait`, rounded up
/// so that a timer is never woken for just before its time; `None`: -1,
/// no limit.
pub fn timeout_ms(timeout: Option<Duration>) -> c_int {
    timeout.map_or(-1, |t| {
        let ms = t.as_nanos().div_ceil(1_000_000);
        c_int::try_from(ms).unwrap_or(c_int::MAX)
    })
}

/// The error in `errno`, unless a signal interrupted the call: then `value`.
fn interrupted_is<T>(value: T) -> io::Result<T> {
    let error = io::Error::last_os_error();
    match error.kind() {
        io::ErrorKind::Interrupted => Ok(value),
        _ => Err(error),
    }
}

/// Blocks the given signals in the calling thread, and the threads it
/// starts later; their set.
pub fn block(signals: impl IntoIterator<Item = c_int>) -> io::Result<SigSet> {
    let mut set = SigSet([0; 16]);
    // SAFETY: `set` is a live, writable sigset_t-sized value owned by this
    // frame; sigemptyset writes only inside it.
    unsafe { sigemptyset(&mut set) };
    for signal in signals {
        // SAFETY: as above; a number this libc does not know is refused by
        // return value, and that signal is simply not in the set.
        unsafe { sigaddset(&mut set, signal) };
    }
    // SAFETY: `set` is initialised; a null `old` is allowed and means the
    // previous mask is not wanted. pthread_sigmask returns its error.
    match unsafe { pthread_sigmask(SIG_BLOCK, &set, std::ptr::null_mut()) } {
        0 => Ok(set),
        error => Err(io::Error::from_raw_os_error(error)),
    }
}

/// Waits until one of the (blocked) signals in `set` is pending, and takes it.
pub fn wait_signal(set: &SigSet) -> io::Result<c_int> {
    let mut received: c_int = 0;
    // SAFETY: `set` is initialised and `received` a live, writable int;
    // sigwait reads the one and writes the other.
    match unsafe { sigwait(set, &mut received) } {
        0 => Ok(received),
        error => Err(io::Error::from_raw_os_error(error)),
    }
}

/// The soft and hard limits on `resource` (`RLIMIT_*`); unlimited is
/// `u64::MAX`.
pub fn limits(resource: c_int) -> io::Result<(u64, u64)> {
    let mut limit = RLimit { current: 0, max: 0 };
    // SAFETY: `limit` is a live, writable struct of the kernel's layout;
    // getrlimit writes only inside it.
    status(unsafe { getrlimit(resource, &mut limit) })?;
    Ok((limit.current, limit.max))
}

pub fn set_open_file_limits(soft: u64, hard: u64) -> io::Result<()> {
    let limit = RLimit { current: soft, max: hard };
    // SAFETY: `limit` is a live, initialised struct that setrlimit only reads.
    status(unsafe { setrlimit(RLIMIT_NOFILE, &limit) })
}

/// Keeps glibc's `malloc` to `arenas` arenas; elsewhere than glibc,
/// nothing. Each thread that allocates would otherwise get an arena of its
/// own, up to eight per core, each reserving 64 MiB of address space:
/// under `ulimit -v` that, not what is used, is what runs out. serv6's
/// threads allocate little.
pub fn limit_malloc_arenas(arenas: c_int) {
    #[cfg(target_env = "gnu")]
    {
        const M_ARENA_MAX: c_int = -8;
        // SAFETY: mallopt takes two integers and changes only malloc's own
        // settings; a value it refuses is reported by return value.
        let _ = unsafe { mallopt(M_ARENA_MAX, arenas) };
    }
    #[cfg(not(target_env = "gnu"))]
    let _ = arenas;
}

/// Gives the pages glibc's `malloc` holds free back to the system;
/// elsewhere than glibc, nothing. Freed memory below the top of the heap
/// is otherwise kept for reuse: a crowd of big slow messages, once gone,
/// would leave the process at its peak size.
pub fn give_back_free_memory() {
    // SAFETY: malloc_trim takes a size and only walks malloc's own lists.
    #[cfg(target_env = "gnu")]
    let _ = unsafe { malloc_trim(0) };
}

pub fn epoll_new() -> io::Result<OwnedFd> {
    // SAFETY: epoll_create1 takes only flags and touches no memory of ours.
    owned(unsafe { epoll_create1(CLOEXEC) })
}

/// Adds `fd` to `epoll`, reported as `token` when it has something to read.
pub fn epoll_add(epoll: BorrowedFd<'_>, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
    let mut event = EpollEvent { events: EPOLLIN | EPOLLRDHUP, data: token };
    // SAFETY: both descriptors are borrowed, so open for the call; `event`
    // is a live value of the kernel's layout, read during the call only.
    status(unsafe { epoll_ctl(epoll.as_raw_fd(), EPOLL_CTL_ADD, fd.as_raw_fd(), &mut event) })
}

/// Takes `fd` out of `epoll`; it may not be in it any more (closed).
pub fn epoll_remove(epoll: BorrowedFd<'_>, fd: BorrowedFd<'_>) {
    let mut unused = EpollEvent::default();
    // SAFETY: as for `epoll_add`; the kernel ignores the event for a removal
    // (Linux before 2.6.9 wanted it non-null).
    let _ = unsafe { epoll_ctl(epoll.as_raw_fd(), EPOLL_CTL_DEL, fd.as_raw_fd(), &mut unused) };
}

/// Waits for ready descriptors, `timeout_ms` at most (-1: no limit); an
/// interrupted wait finds none.
pub fn epoll_ready(
    epoll: BorrowedFd<'_>,
    events: &mut [EpollEvent],
    timeout_ms: c_int,
) -> io::Result<usize> {
    let max = c_int::try_from(events.len()).unwrap_or(c_int::MAX);
    // SAFETY: `events` is a live, writable buffer of at least `max`
    // elements of the kernel's layout, and the kernel writes at most `max`.
    let n = unsafe { epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), max, timeout_ms) };
    usize::try_from(n).or_else(|_| interrupted_is(0))
}

/// A new non-blocking eventfd.
pub fn eventfd_new() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes only a value and flags, touching no memory of ours.
    owned(unsafe { eventfd(0, CLOEXEC | O_NONBLOCK) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::os::fd::AsFd;
    use std::time::{Duration, SystemTime};

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        set_int_option(listener.as_fd(), SO_TIMESTAMPNS, 1).expect("timestamps");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connects");
        let (server, _) = listener.accept().expect("accepts");
        (client, server)
    }

    #[test]
    fn recvmsg_brings_the_bytes_and_an_arrival_stamp() {
        let (mut client, server) = pair();
        let mut buf = [0u8; 16];
        let mut control = [0u64; 8];
        let nothing = receive(server.as_fd(), &mut buf, &mut control).expect_err("nothing yet");
        assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);
        // The kernel turns timestamps on for the system a while after the
        // first socket asks (from a work queue): until then segments come
        // unstamped.
        let give_up = std::time::Instant::now() + Duration::from_secs(5);
        let (before, filled) = std::iter::from_fn(|| {
            let before = SystemTime::now();
            client.write_all(b"hola").expect("sends");
            assert!(wait_readable(&server, Duration::from_secs(10)).expect("polls"));
            let (n, filled) = receive(server.as_fd(), &mut buf, &mut control).expect("reads");
            assert_eq!(&buf[..n], b"hola");
            (std::time::Instant::now() < give_up).then_some((before, filled))
        })
        .find(|&(_, filled)| filled > 0)
        .expect("a stamped segment within 5 s");
        assert!(filled >= 32, "a cmsghdr and a timespec: {filled} bytes");
        let level_and_type = control[1].to_ne_bytes();
        assert_eq!(level_and_type[..4], SOL_SOCKET.to_ne_bytes());
        assert_eq!(level_and_type[4..], SO_TIMESTAMPNS.to_ne_bytes());
        let stamped = SystemTime::UNIX_EPOCH + Duration::new(control[2], control[3] as u32);
        let after = SystemTime::now();
        assert!(stamped >= before - Duration::from_millis(1) && stamped <= after);
    }

    #[test]
    fn send_now_never_waits_on_a_full_socket() {
        let (client, _server) = pair();
        let chunk = [0u8; 65536];
        let mut total = 0;
        let full = loop {
            match send_now(&client, &chunk) {
                Ok(n) => total += n,
                Err(e) => break e,
            }
            assert!(total < 1 << 30, "a socket buffer never fills");
        };
        assert_eq!(full.kind(), io::ErrorKind::WouldBlock, "after {total} bytes");
    }

    #[test]
    fn a_second_listen_sets_the_backlog_and_shutdown_stops_it() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let addr = listener.local_addr().expect("addr");
        set_backlog(&listener, 4096).expect("listens again");
        assert_eq!(int_option(listener.as_raw_fd(), SO_ACCEPTCONN).expect("option"), 1);
        stop_listening(&listener).expect("shuts down");
        assert!(TcpStream::connect(addr).is_err(), "no longer listening");
    }

    #[test]
    fn a_socket_is_known_by_its_number() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let fd = listener.as_raw_fd();
        assert_eq!(int_option(fd, SO_TYPE).expect("a socket"), SOCK_STREAM);
        assert_eq!(int_option(fd, SO_DOMAIN).expect("a socket"), AF_INET);
        assert_eq!(int_option(fd, SO_ACCEPTCONN).expect("a socket"), 1);
        let closed = int_option(-1, SO_TYPE).expect_err("no such descriptor");
        assert_eq!(closed.raw_os_error(), Some(EBADF));
    }

    #[test]
    fn epoll_reports_an_eventfd_by_its_token() {
        let epoll = epoll_new().expect("an epoll");
        let event = std::fs::File::from(eventfd_new().expect("an eventfd"));
        epoll_add(epoll.as_fd(), event.as_fd(), 7).expect("adds");
        let mut events = [EpollEvent::default(); 4];
        assert_eq!(epoll_ready(epoll.as_fd(), &mut events, 0).expect("waits"), 0);
        (&event).write_all(&1u64.to_ne_bytes()).expect("wakes");
        assert_eq!(epoll_ready(epoll.as_fd(), &mut events, 10_000).expect("waits"), 1);
        assert_eq!(events[0].token(), 7);
        let mut count = [0u8; 8];
        (&event).read_exact(&mut count).expect("clears");
        assert_eq!(u64::from_ne_bytes(count), 1);
        assert_eq!(epoll_ready(epoll.as_fd(), &mut events, 0).expect("waits"), 0);
    }

    #[test]
    fn the_open_file_limits_can_be_read_and_set_again() {
        let (soft, hard) = limits(RLIMIT_NOFILE).expect("readable");
        assert!(soft <= hard);
        set_open_file_limits(soft, hard).expect("the same limits again");
        limit_malloc_arenas(8);
    }

    #[test]
    fn a_blocked_signal_is_taken_by_sigwait() {
        extern "C" {
            fn pthread_self() -> u64;
            fn pthread_kill(thread: u64, signal: c_int) -> c_int;
        }
        // In a thread of its own, so that only its mask changes.
        let waited = std::thread::spawn(|| {
            let set = block([SIGUSR2]).expect("blocks");
            // SAFETY: the calling thread's own id, and a signal it blocks:
            // it stays pending until sigwait takes it.
            let sent = unsafe { pthread_kill(pthread_self(), SIGUSR2) };
            assert_eq!(sent, 0);
            wait_signal(&set)
        });
        assert_eq!(waited.join().expect("no panic").expect("waits"), SIGUSR2);
    }
}
