//! One exchange on one connection: read the message, stamp it, log it,
//! reply, close.

use super::log::{Burst, Log, Stats};
use crate::escape::escape_into;
use crate::framing::{read_message, Ending, Outcome, Rules, Source};
use crate::timestamp::Timestamp;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

/// How long a connection that is being closed after an error may keep
/// sending before it is cut off. Reading what it sends meanwhile keeps the
/// kernel from answering with a reset that could destroy our error line.
const LINGER: Duration = Duration::from_secs(1);

/// Above this share of `max_conns` in progress, new exchanges get a tenth of
/// the deadline, so that slow clients hogging the server are shed faster.
const CROWDED_NUMERATOR: usize = 3;
const CROWDED_DENOMINATOR: usize = 4;

/// Everything an exchange needs that is shared by all connections.
#[derive(Debug)]
pub struct Service {
    pub rules: Rules,
    pub max_conns: usize,
    pub log: Log,
    pub stats: Stats,
    in_progress: AtomicUsize,
    busy: Burst,
}

/// What a worker knows about a connection it hands to [`Service::serve`].
#[derive(Clone, Copy)]
pub struct Handover<'a> {
    /// The read timeout the socket starts with, if known.
    pub read_timeout: Option<Duration>,
    /// Called once if the message is not complete within [`SLOW_START`].
    /// The worker that takes the last idle place sets it: if its client
    /// turns out slow, no one is left to accept, and the pool must grow.
    pub if_slow: Option<&'a dyn Fn()>,
}

/// How long a message may take before its client counts as slow. Nearly
/// every client sends its whole message at once, so waiting this long for a
/// verdict, rather than adding a worker for every connection that finds
/// none idle, keeps the pool as small as the load allows; a slow client
/// still delays others by no more than this. The verdict is on the whole
/// message, not the first bytes, which a trickling client sends at once.
pub const SLOW_START: Duration = Duration::from_millis(5);

/// Buffers one worker reuses from exchange to exchange. It lives on the
/// worker's stack: the heap is touched only once a message arrives, so a
/// silent connection costs no allocation at all.
#[derive(Debug)]
pub struct Scratch {
    message: Vec<u8>,
    chunk: [u8; CHUNK],
    line: String,
}

/// The read size: enough for any ordinary message in one read.
const CHUNK: usize = 4096;
/// A worker keeps at most this much message buffer between exchanges.
const KEEP_CAPACITY: usize = 16 * 1024;

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            message: Vec::new(),
            chunk: [0; CHUNK],
            line: String::new(),
        }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Service {
    pub fn new(rules: Rules, max_conns: usize, quiet: bool) -> Self {
        Service {
            rules,
            max_conns,
            log: Log::new(quiet),
            stats: Stats::new(),
            in_progress: AtomicUsize::new(0),
            busy: Burst::default(),
        }
    }

    /// Runs the whole exchange on a freshly accepted connection.
    pub fn serve(
        &self,
        conn: TcpStream,
        peer: SocketAddr,
        handover: Handover<'_>,
        scratch: &mut Scratch,
    ) {
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let in_progress = self.in_progress.fetch_add(1, Relaxed) + 1;
        if in_progress > self.max_conns {
            self.refuse_busy(conn, peer, scratch);
        } else {
            self.note_not_busy();
            self.exchange(conn, peer, self.rules_when(in_progress), handover, scratch);
        }
        self.in_progress.fetch_sub(1, Relaxed);
        if scratch.message.capacity() > KEEP_CAPACITY {
            scratch.message = Vec::new();
        }
    }

    fn rules_when(&self, in_progress: usize) -> Rules {
        let crowded = in_progress * CROWDED_DENOMINATOR > self.max_conns * CROWDED_NUMERATOR;
        if crowded {
            Rules {
                deadline: self.rules.deadline / 10,
                ..self.rules
            }
        } else {
            self.rules
        }
    }

    fn exchange(
        &self,
        conn: TcpStream,
        peer: SocketAddr,
        rules: Rules,
        handover: Handover<'_>,
        scratch: &mut Scratch,
    ) {
        let mut source = SocketSource {
            conn: &conn,
            timeout: handover.read_timeout,
            slow_check: handover.if_slow.map(|f| (Instant::now() + SLOW_START, f)),
        };
        match read_message(
            &mut source,
            &rules,
            &mut scratch.message,
            &mut scratch.chunk,
        ) {
            Outcome::Message { ending, at } => self.answer(conn, peer, ending, at, scratch),
            Outcome::TooLong => {
                let why = format!("message longer than {} bytes", rules.max_len);
                self.refuse(conn, peer, &why, scratch);
            }
            Outcome::Deadline => {
                let why = format!("no message within {}", seconds(rules.deadline));
                self.refuse(conn, peer, &why, scratch);
            }
            Outcome::Failed(e) => self.fail(peer, "connection failed before the message ended", &e),
        }
    }

    fn answer(
        &self,
        conn: TcpStream,
        peer: SocketAddr,
        ending: Ending,
        at: Instant,
        scratch: &mut Scratch,
    ) {
        let arrived = SystemTime::now().checked_sub(at.elapsed());
        let Some(stamp) = arrived.and_then(Timestamp::from_system_time) else {
            return self.refuse(conn, peer, "server clock is outside 1970..9999", scratch);
        };
        let stamp = stamp.to_rfc3339();
        let stamp = std::str::from_utf8(&stamp).unwrap_or_default();
        let len = scratch.message.len();
        let line = &mut scratch.line;
        if self.log.logs_exchanges() {
            line.clear();
            line.push_str(stamp);
            let _ = write!(line, " {peer} {len} bytes \"");
            escape_into(line, &scratch.message);
            line.push_str("\"\n");
            self.log.exchange(line);
        }
        line.clear();
        let _ = write!(line, "received {len} bytes at ");
        line.push_str(stamp);
        line.push('\n');
        match (&conn).write_all(line.as_bytes()) {
            Ok(()) => {
                self.stats.served.fetch_add(1, Relaxed);
                if ending == (Ending::Newline { trailing: true }) {
                    linger(&conn, &mut scratch.chunk);
                }
            }
            Err(e) => self.fail(peer, "reply not delivered", &e),
        }
    }

    /// Sends `error: why`, then closes without letting a reset destroy it.
    fn refuse(&self, conn: TcpStream, peer: SocketAddr, why: &str, scratch: &mut Scratch) {
        self.stats.errors.fetch_add(1, Relaxed);
        self.log.error(format_args!("{peer}: {why}"));
        let line = &mut scratch.line;
        line.clear();
        let _ = writeln!(line, "error: {why}");
        if (&conn).write_all(line.as_bytes()).is_ok() {
            linger(&conn, &mut scratch.chunk);
        }
    }

    /// Busy refusals must not tie up a worker, so unlike [`Service::refuse`]
    /// this only takes what the client already sent, without waiting.
    fn refuse_busy(&self, conn: TcpStream, peer: SocketAddr, scratch: &mut Scratch) {
        self.stats.busy.fetch_add(1, Relaxed);
        if self.busy.fail() {
            self.log.error(format_args!(
                "busy: {} exchanges in progress, refusing new connections (first: {peer})",
                self.max_conns
            ));
        }
        if (&conn).write_all(b"error: server busy\n").is_ok() {
            let _ = conn.shutdown(Shutdown::Write);
            if conn.set_nonblocking(true).is_ok() {
                while matches!((&conn).read(&mut scratch.chunk), Ok(n) if n > 0) {}
            }
        }
    }

    fn note_not_busy(&self) {
        if let Some(refused) = self.busy.succeed() {
            self.log.error(format_args!(
                "no longer busy, after refusing {refused} connections"
            ));
        }
    }

    fn fail(&self, peer: SocketAddr, what: &str, error: &io::Error) {
        self.stats.errors.fetch_add(1, Relaxed);
        self.log.error(format_args!("{peer}: {what}: {error}"));
    }
}

/// Shuts down our sending side, then reads and discards what the client
/// still sends until it closes or [`LINGER`] passes.
fn linger(conn: &TcpStream, sink: &mut [u8]) {
    let _ = conn.shutdown(Shutdown::Write);
    let until = Instant::now() + LINGER;
    if conn.set_read_timeout(Some(LINGER)).is_err() {
        return;
    }
    let mut reader = conn;
    while Instant::now() < until {
        match reader.read(sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// `10 s`, `0.5 s`: a duration as the error line shows it.
fn seconds(d: Duration) -> String {
    let text = format!("{:.6}", d.as_secs_f64());
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} s")
}

/// A socket as a framing [`Source`]: each wait becomes `SO_RCVTIMEO`, set
/// only when the current one would wait much too long or wake much too
/// early, so a fast exchange usually needs no `setsockopt` at all.
struct SocketSource<'a> {
    conn: &'a TcpStream,
    /// The socket's current read timeout, `None` meaning "none, or unknown".
    timeout: Option<Duration>,
    /// When the client counts as slow if its message is still incomplete,
    /// and what to call then (see [`Handover::if_slow`]).
    slow_check: Option<(Instant, &'a dyn Fn())>,
}

/// A read may wait this much longer than asked before it is worth a syscall.
const TIMEOUT_SLACK: Duration = Duration::from_millis(2);

impl Source for SocketSource<'_> {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn read_within(&mut self, buf: &mut [u8], wait: Duration) -> io::Result<usize> {
        let Some((verdict_at, if_slow)) = self.slow_check else {
            return self.read_with_timeout(buf, wait);
        };
        // Reading on past the verdict means the message was not complete.
        let until_verdict = verdict_at.saturating_duration_since(Instant::now());
        if until_verdict.is_zero() {
            self.slow_check = None;
            if_slow();
            return self.read_with_timeout(buf, wait);
        }
        self.read_with_timeout(buf, wait.min(until_verdict))
    }
}

impl SocketSource<'_> {
    fn read_with_timeout(&mut self, buf: &mut [u8], wait: Duration) -> io::Result<usize> {
        let stale = match self.timeout {
            None => true,
            Some(current) => current > wait + TIMEOUT_SLACK || current < wait / 2,
        };
        if stale {
            self.conn.set_read_timeout(Some(wait))?;
            self.timeout = Some(wait);
        }
        let mut reader = self.conn;
        reader.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(seconds(Duration::from_secs(10)), "10 s");
        assert_eq!(seconds(Duration::from_millis(500)), "0.5 s");
        assert_eq!(seconds(Duration::from_millis(1250)), "1.25 s");
        assert_eq!(seconds(Duration::from_micros(100)), "0.0001 s");
    }
}
