//! What std lacks from the operating system, behind one interface: this
//! file is the one place that chooses the platform. 64-bit Linux gets
//! [`linux`]: the kernel's arrival stamps (`recvmsg`), epoll, signals,
//! resource limits, sockets passed by systemd, writes that cannot block;
//! its system calls are in `linux/sys.rs`, the one file of the crate
//! allowed `unsafe`. Every other system, and Linux built with
//! `--cfg serv6_portable` (how the tests try it here), gets [`portable`]:
//! the same interface from the standard library alone, giving up what
//! only Linux's calls can do (README.md's table says what).

#[cfg(all(
    target_os = "linux",
    target_pointer_width = "64",
    any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64"),
    not(serv6_portable)
))]
#[path = "linux/mod.rs"]
mod os;
#[cfg(not(all(
    target_os = "linux",
    target_pointer_width = "64",
    any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64"),
    not(serv6_portable)
)))]
#[path = "portable.rs"]
mod os;

/// The benchmark's bare server queues connections as serv6 does.
pub use os::set_backlog;
pub(crate) use os::*;
use std::fmt;

/// A signal that serv6 or cli6 acts on.
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
    /// SIGXCPU: past the soft CPU-time limit (`ulimit -t`); the hard one
    /// kills.
    CpuLimit,
    /// SIGUSR1: serv6 says how it is going, and goes on.
    Report,
}

impl Signal {
    /// The signals that stop serv6 (and end cli6's probe with its summary),
    /// in the order help and the manual list them.
    pub const STOPPING: [Signal; 5] = [
        Signal::Terminate,
        Signal::Interrupt,
        Signal::Hangup,
        Signal::PowerFailure,
        Signal::CpuLimit,
    ];

    /// `SIGTERM, SIGINT, SIGHUP, SIGPWR and SIGXCPU` (`or` for `and`).
    pub fn list_stopping(and: &str) -> String {
        let names: Vec<String> = Signal::STOPPING.iter().map(Signal::to_string).collect();
        let (last, rest) = names.split_last().map_or(("", &[][..]), |(l, r)| (l.as_str(), r));
        format!("{} {and} {last}", rest.join(", "))
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
            Signal::PowerFailure => "SIGPWR",
            Signal::CpuLimit => "SIGXCPU",
            Signal::Report => "SIGUSR1",
        })
    }
}

/// What one read brought: how many bytes, and when the kernel stamped
/// their arrival, where it does.
pub(crate) type Received = (usize, Option<std::time::SystemTime>);

/// What the soft limit on open files became: raised to the hard limit when
/// it could be (as systemd asks of services), or left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenFiles {
    pub limit: u64,
    /// The soft limit before, if raising it changed it.
    pub raised_from: Option<u64>,
}

/// Whether `e` says the process or the system has no file descriptor left
/// (`EMFILE`, `ENFILE`: 24 and 23 on Linux, the BSDs and macOS alike),
/// which std gives no kind of its own.
pub(crate) fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24))
}

/// Why a passed file descriptor is not a socket serv6 can serve.
// Linux names the first five, the portable path the last.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotAListener {
    Closed,
    NotASocket,
    NotStream,
    NotListening,
    NotInternet,
    /// Socket activation is Linux's alone here.
    Unsupported,
}

impl fmt::Display for NotAListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotAListener::Closed => "it is not open",
            NotAListener::NotASocket => "it is not a socket",
            NotAListener::NotStream => "it is not a stream (TCP) socket",
            NotAListener::NotListening => {
                "it is not listening (a connected socket, as inetd-style Accept=yes passes, \
                 or one bound but never listening)"
            }
            NotAListener::NotInternet => "it is not an IPv4 or IPv6 socket",
            NotAListener::Unsupported => "this build of serv6 takes no passed sockets (Linux only)",
        })
    }
}
