//! What std lacks from the operating system, and so the one module where
//! this crate allows `unsafe`: each block says why it is sound.
//!
//! Today: waiting for SIGINT and SIGTERM. std has no signal API. Instead of a handler (which may do almost nothing
//! safely), the signals are blocked in every thread and one thread waits for
//! them with `sigwait`, then acts in ordinary code. [`block_termination`]
//! must run before any thread is spawned so that all threads inherit the mask.

/// A termination signal that was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// SIGINT, usually Ctrl-C.
    Interrupt,
    /// SIGTERM, as sent by `kill` and service managers.
    Terminate,
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        })
    }
}

/// The termination signals, blocked for delivery; wait with [`Termination::wait`].
#[derive(Debug)]
pub(crate) struct Termination {
    #[cfg(target_os = "linux")]
    set: linux::SigSet,
}

/// Blocks SIGINT and SIGTERM in the calling thread and every thread it
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
    /// Waits until SIGINT or SIGTERM arrives.
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

#[cfg(target_os = "linux")]
mod linux {
    use super::Signal;
    use std::ffi::c_int;

    const SIGINT: c_int = 2;
    const SIGTERM: c_int = 15;
    const SIG_BLOCK: c_int = 0;

    /// glibc's and musl's `sigset_t`: 1024 bits.
    #[repr(C)]
    #[derive(Debug, Clone, Copy)]
    pub struct SigSet([u64; 16]);

    extern "C" {
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
                (0, _) => continue,
                // sigwait fails only for an invalid set, which `block` never
                // builds; retrying would spin, so this thread waits forever.
                _ => loop {
                    std::thread::park();
                },
            }
        }
    }
}
