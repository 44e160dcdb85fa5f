//! 64-bit Linux: signals, resource limits and the output's writes here,
//! sockets in [`sockets`], readiness of many sockets at once in [`epoll`].
//! Every system call behind them is in `sys`, the one file of the crate
//! allowed `unsafe`; those that need no more than its safe signature are
//! re-exported from it as they are.

mod epoll;
mod sockets;
#[allow(unsafe_code)]
mod sys;

use super::{OpenFiles, Signal};
pub(crate) use epoll::{Poller, Waker};
pub(crate) use sockets::{passed_listeners, recv_now, stamp_arrivals};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::net::UnixDatagram;
pub use sys::set_backlog;
pub(crate) use sys::{give_back_free_memory, limit_malloc_arenas, stop_listening, wait_readable};

/// The signals taken by [`Signals::wait`] instead of their default action.
pub(crate) struct Signals(sys::SigSet);

impl Signals {
    /// Blocks, in the calling thread and every thread it starts afterwards,
    /// every signal whose default would end the program without a word,
    /// except those that report a fault (SIGSEGV, SIGBUS, ...) or ask for a
    /// core (SIGQUIT): [`Signals::wait`] takes them instead. A handler
    /// may do almost nothing safely; a thread that waits for them acts in
    /// ordinary code. Call it before starting any thread. SIGXFSZ, SIGUSR2,
    /// SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGSTKFLT and the real-time
    /// signals are taken and ignored (a write past a file-size limit then
    /// fails with `EFBIG`). `None` if they cannot be blocked: they keep
    /// their default then.
    pub fn block() -> Option<Signals> {
        use sys::{SIGALRM, SIGHUP, SIGINT, SIGIO, SIGPROF, SIGPWR, SIGTERM, SIGUSR1, SIGUSR2};
        let acted_on = [SIGINT, SIGTERM, SIGHUP, SIGPWR, sys::SIGXCPU, SIGUSR1];
        let ignored =
            [SIGUSR2, SIGALRM, sys::SIGXFSZ, sys::SIGVTALRM, SIGPROF, SIGIO, sys::SIGSTKFLT];
        sys::block(acted_on.into_iter().chain(ignored).chain(sys::REAL_TIME)).ok().map(Signals)
    }

    /// Waits until a signal the program acts on arrives.
    pub fn wait(&self) -> Signal {
        loop {
            match sys::wait_signal(&self.0) {
                Ok(sys::SIGINT) => return Signal::Interrupt,
                Ok(sys::SIGTERM) => return Signal::Terminate,
                Ok(sys::SIGHUP) => return Signal::Hangup,
                Ok(sys::SIGPWR) => return Signal::PowerFailure,
                Ok(sys::SIGXCPU) => return Signal::CpuLimit,
                Ok(sys::SIGUSR1) => return Signal::Report,
                Ok(_) => {}
                // sigwait fails only for an invalid set, which `block`
                // never builds; retrying would spin, so wait forever.
                Err(_) => loop {
                    std::thread::park();
                },
            }
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; `None` if the limit
/// cannot even be read (a sandbox may forbid it).
pub(crate) fn raise_open_file_limit() -> Option<OpenFiles> {
    let (soft, hard) = sys::limits(sys::RLIMIT_NOFILE).ok()?;
    let raised = soft < hard && sys::set_open_file_limits(hard, hard).is_ok();
    Some(OpenFiles { limit: if raised { hard } else { soft }, raised_from: raised.then_some(soft) })
}

/// How many descriptors this process has open: /proc's count, or, where
/// /proc is not mounted, the lowest free descriptor, which is the count
/// while no descriptor below it was closed (so at start).
pub(crate) fn descriptors_in_use() -> io::Result<u64> {
    match std::fs::read_dir("/proc/self/fd") {
        // The directory being read is itself one of them.
        Ok(entries) => Ok(entries.count().saturating_sub(1) as u64),
        Err(e) => File::open("/dev/null")
            .map(|probe| u64::try_from(probe.as_raw_fd()).unwrap_or(0))
            .map_err(|_| e),
    }
}

/// Bytes of address space this process may still map, if `ulimit -v`
/// limits it: the limit less what is mapped now (/proc's `VmSize`, or, with
/// no /proc, an assumed 64 MiB, said by the caller).
pub(crate) fn address_space_left() -> Option<(u64, bool)> {
    let (limit, _) = sys::limits(sys::RLIMIT_AS).ok().filter(|&(l, _)| l != u64::MAX)?;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status.lines().find_map(|l| l.strip_prefix("VmSize:"));
    let mapped =
        kib.and_then(|k| k.split_whitespace().next()?.parse::<u64>().ok()).map(|k| k * 1024);
    Some((limit.saturating_sub(mapped.unwrap_or(64 << 20)), mapped.is_some()))
}

/// Nothing to do before a close here: no one else holds the socket.
pub(crate) fn release(_stream: &std::net::TcpStream) {}

/// A write that cannot block, for an output: a pipe or terminal reopened
/// with `O_NONBLOCK` (a description of our own, through /proc, so that
/// whoever shares ours is not affected), or a stream socket's `send` with
/// `MSG_DONTWAIT` (journald's).
pub(crate) enum NonBlocking {
    Reopened(File),
    Socket(File),
}

impl NonBlocking {
    pub fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            NonBlocking::Reopened(file) => io::Write::write(&mut &*file, bytes),
            NonBlocking::Socket(socket) => sys::send_now(socket, bytes),
        }
    }
}

/// `out`'s write that cannot block, if it has one (a regular file has
/// none); an error if it should but cannot be had (no /proc).
pub(crate) fn non_blocking(out: &File) -> io::Result<Option<NonBlocking>> {
    let kind = out.metadata()?.file_type();
    if kind.is_socket() {
        return Ok(Some(NonBlocking::Socket(out.try_clone()?)));
    }
    if !kind.is_fifo() && !kind.is_char_device() {
        return Ok(None);
    }
    let path = format!("/proc/self/fd/{}", out.as_raw_fd());
    let reopened = OpenOptions::new().write(true).custom_flags(sys::O_NONBLOCK).open(path)?;
    Ok(Some(NonBlocking::Reopened(reopened)))
}

/// Sends `data` to the abstract Unix socket `name` (sd_notify's `@name`).
pub(crate) fn send_to_abstract(socket: &UnixDatagram, name: &str, data: &[u8]) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(data, &addr).map(drop)
}

/// What a connection that waits costs besides its own descriptor and
/// buffer: nothing, on epoll.
pub(crate) const PER_WAITING: (u64, u64) = (0, 0);
