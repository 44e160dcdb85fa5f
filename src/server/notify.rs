//! Telling a service manager how serv6 is doing, as `sd_notify(3)` says,
//! without a library: datagrams to the socket `NOTIFY_SOCKET` names (a
//! path, or an abstract name after `@`). `READY=1` once every listener
//! serves, `STATUS=` every few seconds, `STOPPING=1` at the first stopping
//! signal, and with `WATCHDOG_USEC` a `WATCHDOG=1` at half that interval,
//! sent only while the workers and the waiting room are seen to move, so
//! that a wedged serv6 is restarted.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::thread;
use std::time::{Duration, Instant};

/// How often the one-line status is sent.
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// The service manager's socket, if there is one.
pub(crate) struct Notifier {
    socket: UnixDatagram,
    target: String,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`; `None` when it is unset or unusable.
    pub fn from_env() -> Option<Notifier> {
        let target = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|t| !t.is_empty())?;
        let socket = UnixDatagram::unbound().ok()?;
        Some(Notifier { socket, target })
    }

    /// Sends one state line (`READY=1`, `STATUS=...`); failures are
    /// ignored, as `sd_notify` callers do: serving does not depend on it.
    pub fn send(&self, state: &str) {
        let _ = self.send_to(state.as_bytes());
    }

    fn send_to(&self, data: &[u8]) -> io::Result<usize> {
        match self.target.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                self.socket.send_to_addr(data, &addr)
            }
            None => self.socket.send_to(data, &self.target),
        }
    }
}

/// Half the watchdog interval systemd asks for, if it asks this process.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    let for_us =
        std::env::var("WATCHDOG_PID").map_or(true, |pid| pid.parse() == Ok(std::process::id()));
    (for_us && usec > 0).then(|| Duration::from_micros(usec) / 2)
}

/// Sends the status every [`STATUS_EVERY`], and `WATCHDOG=1` every `ping`
/// (if any) while `alive` says serv6 is making progress, on a thread of
/// its own.
pub(crate) fn keep_telling(
    notifier: std::sync::Arc<Notifier>,
    ping: Option<Duration>,
    status: impl Fn() -> String + Send + 'static,
    mut alive: impl FnMut() -> bool + Send + 'static,
) -> io::Result<()> {
    let tick = ping.map_or(STATUS_EVERY, |p| p.min(STATUS_EVERY));
    thread::Builder::new()
        .name("serv6-notify".into())
        .stack_size(crate::sync::HELPER_STACK)
        .spawn(move || {
            let mut last_status: Option<Instant> = None;
            loop {
                if last_status.map_or(true, |at| at.elapsed() >= STATUS_EVERY) {
                    notifier.send(&format!("STATUS={}", status()));
                    last_status = Some(Instant::now());
                }
                if ping.is_some() && alive() {
                    notifier.send("WATCHDOG=1");
                }
                thread::sleep(tick);
            }
        })?;
    Ok(())
}
