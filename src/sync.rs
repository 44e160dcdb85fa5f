//! The small rules every thread of serv6 and cli6 shares, written once:
//! which I/O errors only mean "try again", how a lock is taken, and how
//! big a helper thread's stack is.
//!
//! A poisoned lock (a thread panicked holding it) is taken all the same:
//! every value guarded here stays valid whatever a panicking thread left
//! half done (counters, queues of whole lines), and a server that stopped
//! serving over a poisoned lock would break its first promise.

use std::io;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The stack of a helper thread (signals, error counts, output, notify):
/// they format a line at most, so 64 KiB is ample.
pub(crate) const HELPER_STACK: usize = 64 * 1024;

/// Starts a thread named `name` (as `ps -L` and debuggers show it) with a
/// stack of `stack` bytes, running `run`.
pub(crate) fn spawn(
    name: &str,
    stack: usize,
    run: impl FnOnce() + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    thread::Builder::new().name(name.into()).stack_size(stack).spawn(run)
}

/// Whether a signal interrupted the call (`EINTR`): try again at once.
pub(crate) fn is_interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// Whether a wait ran out, or a non-blocking call found nothing to do.
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// Takes `mutex`, poisoned or not (see the module's note).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `condvar` with `guard` until notified.
pub(crate) fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(guard).unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `condvar` with `guard`, at most `limit`.
pub(crate) fn wait_timeout<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    limit: Duration,
) -> MutexGuard<'a, T> {
    condvar.wait_timeout(guard, limit).unwrap_or_else(PoisonError::into_inner).0
}
