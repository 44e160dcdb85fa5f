//! What std lacks from the operating system, by what it is for: signals
//! and resource limits here, sockets in [`sockets`], readiness of many
//! sockets at once in [`epoll`]. Every system call behind them is in
//! `sys`, the one file of the crate allowed `unsafe`; those that need no
//! more than its safe signature are re-exported from it as they are.

mod epoll;
mod sockets;
#[allow(unsafe_code)]
mod sys;

pub(crate) use epoll::{Poller, Waker};
pub(crate) use sockets::{
    is_out_of_descriptors, local_send_whole_up_to, passed_listeners, recv_now, stamp_arrivals,
    wait_readable, NotAListener,
};
use std::ffi::c_int;
use std::fmt;
pub use sys::set_backlog;
pub(crate) use sys::{
    give_back_free_memory, limit_malloc_arenas, send_now, stop_listening, O_NONBLOCK,
};
#[cfg(test)]
pub(crate) use sys::{set_int_option, SO_SNDBUF};

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
    /// SIGUSR1: say how it is going, and go on (as `dd` does).
    Report,
}

impl Signal {
    /// Whether it asks the program to stop.
    pub fn stops(self) -> bool {
        self != Signal::Report
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

/// The signals taken by [`Signals::wait`] instead of their default action.
#[derive(Debug)]
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
        let set = sys::signal_set(acted_on.into_iter().chain(ignored).chain(sys::REAL_TIME));
        sys::block(&set).ok().map(|()| Signals(set))
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

/// What the soft limit on open files became: raised to the hard limit when
/// it could be (as systemd asks of services), or left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenFiles {
    pub limit: u64,
    /// The soft limit before, if raising it changed it.
    pub raised_from: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; `None` if the limit
/// cannot even be read (a sandbox may forbid it).
pub(crate) fn raise_open_file_limit() -> Option<OpenFiles> {
    let (soft, hard) = sys::open_file_limits().ok()?;
    let raised = soft < hard && sys::set_open_file_limits(hard, hard).is_ok();
    Some(if raised {
        OpenFiles { limit: hard, raised_from: Some(soft) }
    } else {
        OpenFiles { limit: soft, raised_from: None }
    })
}

/// A timeout in whole milliseconds for `poll` and `epoll_wait`, rounded up
/// so that a timer is never woken for just before its time; `None`: -1,
/// no limit.
fn timeout_ms(timeout: Option<std::time::Duration>) -> c_int {
    timeout.map_or(-1, |t| {
        let ms = t.as_nanos().div_ceil(1_000_000);
        c_int::try_from(ms).unwrap_or(c_int::MAX)
    })
}
