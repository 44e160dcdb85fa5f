//! Telling a service manager how serv6 is doing, as `sd_notify(3)` says,
//! without a library: datagrams to the socket `NOTIFY_SOCKET` names (a
//! path, or an abstract name after `@`). `READY=1` once every listener
//! serves, `STATUS=` every few seconds, `STOPPING=1` at the first stopping
//! signal, and with `WATCHDOG_USEC` a `WATCHDOG=1` at half that interval
//! (at most every [`WATCHDOG_FLOOR`]), sent only while the workers and the
//! waiting room are seen to move, so that a wedged serv6 is restarted.
//!
//! Nothing here ever waits on the manager: the socket is non-blocking, and
//! a state that cannot go now is dropped, or for `READY=1` and `STOPPING=1`
//! tried again a few times, then given up with a line on standard error.

use super::exchange::room::Room;
use super::stats::{Ended, STATS};
use crate::{output, platform, sync};
use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

/// How often the one-line status is sent.
const STATUS_EVERY: Duration = Duration::from_secs(2);
/// The shortest watchdog period: a manager asking for more than 10 pings
/// a second (systemd's own shortest sensible `WatchdogSec=` is a second)
/// would have serv6 busy pinging.
pub(crate) const WATCHDOG_FLOOR: Duration = Duration::from_millis(100);
/// How often, and how far apart, a state that matters is tried.
const TRIES: u32 = 10;
const TRY_AGAIN_AFTER: Duration = Duration::from_millis(20);

/// The service manager's socket, once serv6 is ready, if there is one.
static MANAGER: OnceLock<Notifier> = OnceLock::new();

struct Notifier {
    socket: UnixDatagram,
    target: String,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`; `None` when it is unset or unusable.
    fn from_env() -> Option<Notifier> {
        let target = std::env::var("NOTIFY_SOCKET").ok().filter(|t| !t.is_empty())?;
        let socket = UnixDatagram::unbound().ok()?;
        socket.set_nonblocking(true).ok()?;
        Some(Notifier { socket, target })
    }

    /// Sends one state line (`STATUS=...`) now, or not at all.
    fn send(&self, state: &str) -> io::Result<()> {
        let data = state.as_bytes();
        match self.target.strip_prefix('@') {
            Some(name) => platform::send_to_abstract(&self.socket, name, data),
            None => self.socket.send_to(data, &self.target).map(drop),
        }
    }

    /// Sends a state the manager must not miss (`READY=1`, `STOPPING=1`),
    /// trying again a few times if its socket is full, then giving up.
    fn insist(&self, state: &str) {
        for tries in 1..=TRIES {
            let Err(e) = self.send(state) else { return };
            if tries == TRIES || !crate::sync::is_timeout(&e) {
                output::say(format_args!(
                    "cannot tell the service manager {state} ({e}); going on without it"
                ));
                return;
            }
            thread::sleep(TRY_AGAIN_AFTER);
        }
    }
}

/// Half the watchdog interval systemd asks for, if it asks this process,
/// and never less than [`WATCHDOG_FLOOR`].
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    let for_us =
        std::env::var("WATCHDOG_PID").map_or(true, |pid| pid.parse() == Ok(std::process::id()));
    (for_us && usec > 0).then(|| (Duration::from_micros(usec) / 2).max(WATCHDOG_FLOOR))
}

/// Tells the service manager, if there is one, that serv6 is ready, then
/// keeps it told, on a thread of its own: the status every
/// [`STATUS_EVERY`], and the watchdog's ping while the workers and the room
/// move.
pub(crate) fn ready(room: &Arc<Room>) {
    let Some(notifier) = Notifier::from_env() else { return };
    let notifier = MANAGER.get_or_init(|| notifier);
    notifier.insist("READY=1");
    let ping = watchdog_interval();
    let tick = ping.map_or(STATUS_EVERY, |p| p.min(STATUS_EVERY));
    let room = Arc::clone(room);
    let started = sync::spawn("serv6-notify", sync::HELPER_STACK, move || {
        let mut since_status = STATUS_EVERY;
        let mut seen = progress(&room);
        room.poke();
        loop {
            if since_status >= STATUS_EVERY {
                let served = STATS.count(Ended::Served);
                let status = format!("STATUS={served} served, {} held", STATS.held());
                let _ = notifier.send(&status);
                since_status = Duration::ZERO;
            }
            if ping.is_some() {
                let now = progress(&room);
                if moved(seen, now) {
                    let _ = notifier.send("WATCHDOG=1");
                }
                seen = now;
                room.poke();
            }
            thread::sleep(tick);
            since_status += tick;
        }
    });
    if let Err(e) = started {
        output::say(format_args!(
            "cannot keep the service manager told ({e}): no status, no watchdog"
        ));
    }
}

/// Tells the service manager, if it was told serv6 is ready, that it stops.
pub(crate) fn stopping() {
    if let Some(notifier) = MANAGER.get() {
        notifier.insist("STOPPING=1");
    }
}

/// How far the room and the workers have come: the room's turns, and the
/// jobs workers have begun and ended.
type Progress = (u64, (u64, u64));

fn progress(room: &Room) -> Progress {
    (room.turns(), STATS.worker_jobs())
}

/// Whether both moved from `before` to `now`: the room turned (it is poked
/// after each look, so one that did not is stuck), and the workers had no
/// job under way then, or have ended one since.
fn moved((turns, (begun, ended)): Progress, (turns_now, (_, ended_now)): Progress) -> bool {
    turns_now > turns && (begun == ended || ended_now > ended)
}
