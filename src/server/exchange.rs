//! One exchange, top to bottom. A worker accepts a connection, reads what
//! has arrived (one `recvmsg`, which also brings the kernel's arrival
//! time), frames it, and when the message is whole it stamps it, logs it,
//! replies and hangs up: [`serve`]. A message that is not whole within 1 ms
//! goes to the waiting room ([`room`]), which finishes it with the same
//! [`read`] and [`finish`], so a slow client costs a descriptor, not a
//! worker. However it ends, a connection ends in [`finish`], and
//! [`hang_up`] decides how its socket closes: now, or lingering in the
//! room, which closes it later.

pub(crate) mod room;

use super::framing::{End, Ending, Framer, Rules};
use super::proxy::{self, Header, Parsed, MAX_HEADER};
use super::report;
use super::stats::{Counter, Held, STATS};
use crate::addr::Cidr;
use crate::escape::escape_into;
use crate::protocol::{self, push_decimal, Refusal, Service};
use crate::timestamp::{Arrival, Rfc3339, Timestamp};
use crate::{output, platform, sync};
use room::Room;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// How long a worker waits for a message before handing its connection
/// to the room. A client's message comes with its handshake's last ACK or
/// just after it, so nearly every one is whole at once; 1 ms is enough
/// for one that wrote just after its connect on a loaded machine, and
/// short enough that a flood of silent clients (2000 a second hold two
/// workers' worth) cannot keep the workers from the accept queue.
const SLOW_CLIENT: Duration = Duration::from_millis(1);
/// The read size: enough for any ordinary message in one read.
const CHUNK: usize = 4096;
/// Reads from one connection per turn at most, so that a client that
/// floods cannot starve the others (the next turn takes the rest).
const READS_PER_TURN: usize = 16;
/// A reader keeps at most this much buffer between exchanges.
const KEEP_CAPACITY: usize = 16 * 1024;
/// A worker's stack: only the pages an exchange touches count against
/// memory. glibc keeps up to 40 MiB of exited threads' stacks, so they are
/// not small either.
pub(crate) const WORKER_STACK: usize = 1024 * 1024;
/// How long a worker waits before accepting again after `accept` failed
/// and nothing could be done about it: long enough not to spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What every exchange shares.
pub(crate) struct Shared {
    pub rules: Rules,
    /// `--max-conns`: the most client connections held at once.
    pub max_conns: usize,
    /// With the PROXY protocol: who may send a header.
    pub proxy_from: Option<Vec<Cidr>>,
    pub room: Arc<Room>,
    stopping: AtomicBool,
    /// A descriptor kept open to be given up when there are none left, so
    /// that a connection can still be accepted and told why it is refused.
    spare: Mutex<Option<File>>,
}

impl Shared {
    pub fn new(limits: (Rules, usize), proxy_from: Option<Vec<Cidr>>, room: Arc<Room>) -> Shared {
        let (rules, max_conns) = limits;
        let spare = Mutex::new(File::open("/dev/null").ok());
        Shared { rules, max_conns, proxy_from, room, stopping: AtomicBool::new(false), spare }
    }
}

/// The buffers one reader (a worker, or the room) reuses from exchange to
/// exchange, so that the common exchange allocates nothing.
pub(crate) struct Scratch {
    chunk: Vec<u8>,
    /// The log line, then the reply.
    line: String,
    message: Vec<u8>,
    /// A worker's: it may block on writing its log line to a file, its
    /// reply handed to the output first. The room never blocks.
    worker: bool,
}

impl Scratch {
    pub fn new(worker: bool) -> Scratch {
        Scratch { chunk: vec![0; CHUNK], line: String::new(), message: Vec::new(), worker }
    }

    /// Takes a message buffer back (the next framer clears it), and lets a
    /// rare huge one go.
    fn keep(&mut self, message: Vec<u8>) {
        if message.capacity() <= KEEP_CAPACITY {
            self.message = message;
        }
        if self.line.capacity() > 4 * KEEP_CAPACITY {
            self.line = String::new();
        }
    }
}

/// The workers of every listener: a fixed set, each blocking in `accept`,
/// so the kernel hands each connection straight to an idle one.
pub(crate) struct Workers {
    listeners: Vec<(Arc<TcpListener>, Service)>,
    shared: Arc<Shared>,
    /// Disconnected once every worker has left.
    gone: mpsc::Receiver<()>,
}

impl Workers {
    /// Starts `per_listener` workers on each listener, serving its service.
    pub fn start(
        listeners: Vec<(TcpListener, Service)>,
        per_listener: usize,
        shared: Arc<Shared>,
    ) -> io::Result<Workers> {
        let (alive, gone) = mpsc::channel::<()>();
        let listeners: Vec<_> = listeners.into_iter().map(|(l, s)| (Arc::new(l), s)).collect();
        for (listener, service) in &listeners {
            for _ in 0..per_listener {
                let (listener, service) = (Arc::clone(listener), *service);
                let (shared, alive) = (Arc::clone(&shared), alive.clone());
                sync::spawn("serv6-worker", WORKER_STACK, move || {
                    serve(&listener, service, &shared);
                    drop(alive);
                })?;
            }
        }
        Ok(Workers { listeners, shared, gone })
    }

    /// Stops accepting: what is queued is told the server is shutting
    /// down, then each listener stops listening, so later connections are
    /// refused and workers blocked in `accept` wake. (A connection queued
    /// between the two is reset; the window is one `accept` that finds
    /// nothing.)
    pub fn stop_accepting(&self) {
        self.shared.stopping.store(true, Relaxed);
        let (shared, mut s) = (&*self.shared, Scratch::new(false));
        for (listener, service) in &self.listeners {
            if listener.set_nonblocking(true).is_ok() {
                // Bounded by the most a listen queue holds (somaxconn's
                // ceiling), so that a flood cannot keep the stop from coming.
                for _ in 0..=u16::MAX {
                    if !turn_away((listener, *service), shared, Refusal::ShuttingDown, &mut s) {
                        break;
                    }
                }
            }
            let _ = platform::stop_listening(listener);
        }
    }

    /// Waits until `by` at most for the workers to leave: each finishes
    /// within the 1 ms verdict, handing what is incomplete to the room.
    pub fn wait_gone(&self, by: Instant) {
        let _ = self.gone.recv_timeout(by.saturating_duration_since(Instant::now()));
    }
}

/// A worker's life: accept, read, then stamp, log, reply and hang up, or
/// hand a slow client to the room; until serv6 stops.
fn serve(listener: &TcpListener, service: Service, shared: &Shared) {
    let mut scratch = Scratch::new(true);
    while !shared.stopping.load(Relaxed) {
        // accept: the next connection the kernel has queued.
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed((listener, service), shared, &e, &mut scratch);
                continue;
            }
        };
        STATS.worker_job(true);
        let (held, busy) = hold(stream, shared);
        let buffer = std::mem::take(&mut scratch.message);
        let (mut conn, end) = Connection::start(held, peer, service, shared, buffer);
        // recv: what has arrived, and what comes within SLOW_CLIENT.
        let verdict = conn.accepted + SLOW_CLIENT;
        match busy.or(end).or_else(|| read_until(&mut conn, verdict, &mut scratch.chunk)) {
            // stamp, log, reply, close.
            Some(end) => finish(conn, end, &mut scratch, &shared.room),
            None => shared.room.admit(conn),
        }
        STATS.worker_job(false);
    }
}

/// Holds a new connection within `--max-conns`. When that many are held,
/// the room lets one go (a lingering one, or the one that has waited
/// longest for its message, told `error: server busy`); if it holds none,
/// the newcomer is the one told: it comes back held `briefly`, with its end.
fn hold(mut stream: TcpStream, shared: &Shared) -> (Held, Option<End>) {
    loop {
        let freed = match Held::within(stream, shared.max_conns) {
            Ok(held) => return (held, None),
            Err(again) => (again, shared.room.free_one()),
        };
        // Meanwhile another worker may take the place, or end its own.
        match (Held::within(freed.0, shared.max_conns), freed.1) {
            (Ok(held), _) => return (held, None),
            (Err(again), true) => stream = again,
            (Err(full), false) => return (Held::briefly(full), Some(End::Refused(Refusal::Busy))),
        }
    }
}

/// Reads `conn` until its request ends or `verdict` comes, waiting with
/// `poll` between reads; `None`: not ended by then.
fn read_until(conn: &mut Connection, verdict: Instant, chunk: &mut [u8]) -> Option<End> {
    loop {
        let now = Instant::now();
        let end = read(conn, chunk, now);
        if end.is_some() || now >= verdict {
            return end;
        }
        let wait = conn.framer.next_wake().min(verdict).saturating_duration_since(now);
        if let Err(e) = platform::wait_readable(&conn.held.stream, wait) {
            return conn.checked(Some(End::Failed(e)));
        }
    }
}

/// recv: feeds what has arrived on `conn` to its framing, then tells it
/// the time is `now`. Bytes are judged by when they arrived: what came
/// before a pause or the deadline ran out is read before the clock can
/// end the message, so a reader that was late cannot cut it short. After
/// it, `conn.framer.next_wake()` says when to look again.
pub(crate) fn read(conn: &mut Connection, chunk: &mut [u8], now: Instant) -> Option<End> {
    for _ in 0..READS_PER_TURN {
        let end = match platform::recv_now(&conn.held.stream, chunk) {
            Ok((n, stamp)) => conn.feed(&chunk[..n], Arrival::stamped(stamp)),
            Err(e) if sync::is_interrupted(&e) => None,
            Err(e) if sync::is_timeout(&e) => return conn.on_timer(now),
            Err(e) => return conn.checked(Some(End::Failed(e))),
        };
        if end.is_some() {
            return end;
        }
    }
    None
}

/// Ends `conn` as `end` says. A message is stamped, logged, answered with
/// its time, counted; anything else is counted, reported, and told why if
/// it can be told. Then [`hang_up`].
pub(crate) fn finish(conn: Connection, end: End, s: &mut Scratch, room: &Arc<Room>) {
    let Connection { held, client, service, framer, .. } = conn;
    let send_time = framer.rules().send_time;
    let message = framer.into_message();
    let stamped = match end {
        End::Message { ending, at, ended } => {
            let at = if service == Service::Receipt { at.wall } else { SystemTime::now() };
            let stamp =
                Timestamp::from_system_time(at).ok_or(End::Refused(Refusal::ClockOutOfRange));
            stamp.map(|stamp| (ending, at, stamp.to_rfc3339(), ended))
        }
        end => Err(end),
    };
    match stamped {
        Ok((ending, at, stamp, ended)) => {
            let ended = (service == Service::Receipt).then_some(ended);
            let sending = match ending {
                Ending::Newline { trailing: false } | Ending::Eof => Sending::Done,
                Ending::Newline { trailing: true } | Ending::Pause => Sending::MayGoOn,
                Ending::Unasked => Sending::Unknown,
            };
            let len = message.len();
            let answer =
                Answer { held, client, service, len, at, stamp, ended, sending, send_time };
            reply(answer, &message, s, room);
        }
        Err(end) => {
            tell_operator(client, &end, STATS.ended(end.counted()));
            match end {
                // A time client is told nothing: any bytes would read as a time.
                End::Refused(why) if service != Service::Time => {
                    s.line.clear();
                    protocol::write_refusal(&mut s.line, &why);
                    let told = (&held.stream).write_all(s.line.as_bytes()).is_ok();
                    // Turned away, it is not waited for; refused mid-message, it may go on.
                    let ignored = matches!(why, Refusal::Busy | Refusal::ShuttingDown);
                    let sending = if ignored { Sending::Ignored } else { Sending::MayGoOn };
                    hang_up(held, sending, told, room);
                }
                // A health check, a failure: told nothing, it closes now.
                _ => hang_up(held, Sending::Done, false, room),
            }
        }
    }
    s.keep(message);
}

/// An exchange's answer once its line is logged: all that sending it
/// takes, on whichever thread sends it.
struct Answer {
    held: Held,
    client: SocketAddr,
    service: Service,
    len: usize,
    /// The time it answers with, and as the log and the reply write it.
    at: SystemTime,
    stamp: Rfc3339,
    /// When the rules ended its message, for the latency (receipt only).
    ended: Option<Instant>,
    /// Whether its client may still be sending, once it has its reply.
    sending: Sending,
    /// `--send-time`: the reply also says when it was sent.
    send_time: bool,
}

/// log, then reply: a reply a client saw has its line, even after
/// `kill -9`. A worker writes even a log file itself, which can block on
/// a frozen disk: its reply is then handed to the output, whose helper
/// sends it if the write has not returned within the stall bound.
fn reply(answer: Answer, message: &[u8], s: &mut Scratch, room: &Arc<Room>) {
    if !log_line(&mut s.line, &answer, message) {
        return answer.send(&mut s.line, room);
    }
    if s.worker && output::log_may_block() {
        let room = Arc::clone(room);
        let send = move || answer.send(&mut String::with_capacity(128), &room);
        output::log(s.line.as_bytes(), Some(Box::new(send)));
    } else {
        output::log(s.line.as_bytes(), None);
        answer.send(&mut s.line, room);
    }
}

impl Answer {
    /// send: the reply (`buf` lent to write it in), counted; then the
    /// goodbye.
    fn send(self, buf: &mut String, room: &Arc<Room>) {
        buf.clear();
        match self.service {
            Service::Receipt => {
                let now = self.send_time.then(SystemTime::now);
                let sent = now.and_then(Timestamp::from_system_time).map(Timestamp::to_rfc3339);
                protocol::write_received(buf, self.len, &self.stamp, sent.as_ref());
            }
            Service::Daytime => protocol::write_daytime(buf, &self.stamp),
            Service::Time => {}
        }
        // The time service's reply is its four bytes; the others', the line.
        let time = (self.service == Service::Time).then(|| protocol::time_bytes(self.at));
        let sent = (&self.held.stream).write_all(time.as_ref().map_or(buf.as_bytes(), |t| &t[..]));
        STATS.served(self.service, self.ended);
        if let Err(e) = &sent {
            STATS.reply_lost();
            let what = ("reply lost", "replies lost");
            report::report(what, format_args!("{}: reply lost: {e}", self.client));
        }
        hang_up(self.held, self.sending, sent.is_ok(), room);
    }
}

/// What the server knows, at the end, of whether the client still sends.
enum Sending {
    /// It has finished, or failed.
    Done,
    /// It may go on: bytes followed its message, or it went quiet without
    /// an end, or it was refused mid-message.
    MayGoOn,
    /// Nothing was read from it (daytime, time): look.
    Unknown,
    /// Turned away without a wait (busy, shutting down).
    Ignored,
}

/// The one place a client's connection ends. Told nothing, or done
/// sending, it closes now: nothing unread is left to reset it. Otherwise
/// closing at once could reset the connection and destroy what it was
/// told, so a client that may go on lingers in the room (shut down for
/// writing, read until it closes or a second passes), and one turned away
/// has what it already sent read, a bounded amount, before it closes.
fn hang_up(held: Held, sending: Sending, told: bool, room: &Arc<Room>) {
    match sending {
        _ if !told => {}
        Sending::MayGoOn => return room.linger(held),
        Sending::Unknown if has_sent(&held.stream) => return room.linger(held),
        Sending::Ignored => {
            let _ = held.stream.shutdown(Shutdown::Write);
            drain(&held.stream);
        }
        Sending::Done | Sending::Unknown => {}
    }
    // close: dropping the stream closes it.
    platform::release(&held.stream);
}

/// Whether `stream` has bytes waiting, read (and dropped) without a wait.
fn has_sent(stream: &TcpStream) -> bool {
    matches!(platform::recv_now(stream, &mut [0u8; 1024]), Ok((n, _)) if n > 0)
}

/// Reads and drops what a client has sent, without a wait; false once it
/// has closed or failed. A bounded amount per turn: the next turn, if the
/// connection lingers, takes the rest.
fn drain(stream: &TcpStream) -> bool {
    for _ in 0..READS_PER_TURN {
        match platform::recv_now(stream, &mut [0u8; 1024]).map(|(n, _)| n) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if sync::is_interrupted(&e) => {}
            Err(e) => return sync::is_timeout(&e),
        }
    }
    true
}

/// Formats `answer`'s log line in `line`: `<stamp> <client> <N> bytes
/// "<message, escaped>"`, and ` ... (M more bytes)` past `--log-bytes`, or
/// `<stamp> <client> <service>` for daytime and time. False when it is not
/// to be written: the log is off, or no memory could be had for the line
/// (counted as not written), a line being up to four times the message.
fn log_line(line: &mut String, answer: &Answer, message: &[u8]) -> bool {
    let Some(max_shown) = output::log_bytes() else { return false };
    let shown = message.len().min(max_shown);
    line.clear();
    if line.try_reserve(4 * shown + 128).is_err() {
        output::not_logged("no memory for the line");
        return false;
    }
    line.extend([answer.stamp.as_str(), " "]);
    push_addr(line, answer.client);
    if answer.service != Service::Receipt {
        let _ = writeln!(line, " {}", answer.service.name());
        return true;
    }
    line.push(' ');
    push_decimal(line, message.len() as u64);
    line.push_str(" bytes \"");
    escape_into(line, &message[..shown]);
    line.push('"');
    if shown < message.len() {
        let _ = write!(line, " ... ({} more bytes)", message.len() - shown);
    }
    line.push('\n');
    true
}

/// Appends `addr` as `Display` writes it, without its formatting
/// machinery for the common IPv4 case: a cost on every exchange.
fn push_addr(line: &mut String, addr: SocketAddr) {
    let SocketAddr::V4(v4) = addr else {
        let _ = write!(line, "{addr}");
        return;
    };
    let [a, b, c, d] = v4.ip().octets();
    for (octet, separator) in [(a, '.'), (b, '.'), (c, '.'), (d, ':')] {
        push_decimal(line, u64::from(octet));
        line.push(separator);
    }
    push_decimal(line, u64::from(v4.port()));
}

/// Says on standard error how a connection that got no time ended: a few
/// lines a second at most (see `report`).
fn tell_operator(client: SocketAddr, end: &End, so_far: u64) {
    let Counter { one, many, .. } = end.counted().counter();
    let nouns = (one, many);
    match end {
        End::HealthCheck if so_far == 1 => {
            output::say(format_args!("{client}: health checks, counted apart and not logged"));
        }
        End::Failed(e) => report::report(nouns, format_args!("{client}: connection failed: {e}")),
        End::Refused(Refusal::ShuttingDown) | End::HealthCheck | End::Message { .. } => {}
        End::Refused(why) => report::report(nouns, format_args!("{client}: {why}")),
    }
}

/// `accept` failed. Out of descriptors, the room lets one go, or else the
/// spare is given up to accept the connection and tell it the server is
/// busy. Otherwise, or if neither works, the failure is reported and the
/// worker waits a little.
fn accept_failed(at: (&TcpListener, Service), shared: &Shared, e: &io::Error, s: &mut Scratch) {
    if shared.stopping.load(Relaxed) || sync::is_interrupted(e) {
        return;
    }
    if platform::is_out_of_descriptors(e) {
        if shared.room.free_one() {
            return;
        }
        let mut spare = sync::lock(&shared.spare);
        if spare.take().is_some() {
            turn_away(at, shared, Refusal::Busy, s);
            *spare = File::open("/dev/null").ok();
            if spare.is_some() {
                return;
            }
        }
    }
    let addr = at.0.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let what = ("line of server trouble", "lines of server trouble");
    report::report(what, format_args!("cannot accept on {addr}: {e}"));
    if e.kind() != io::ErrorKind::ConnectionAborted {
        thread::sleep(ACCEPT_BACKOFF);
    }
}

/// Accepts one connection, if one is queued, only to tell it why it is
/// turned away (`finish`, as every connection ends, holding no place for
/// it); false if none was.
fn turn_away(at: (&TcpListener, Service), shared: &Shared, why: Refusal, s: &mut Scratch) -> bool {
    let (listener, service) = at;
    let Ok((stream, peer)) = listener.accept() else { return false };
    let (conn, _) = Connection::start(Held::briefly(stream), peer, service, shared, Vec::new());
    finish(conn, End::Refused(why), s, &shared.room);
    true
}

/// An address as the log shows it: an IPv4 client of an IPv6 socket as
/// itself; an IPv6 one with its zone, which tells two links apart.
fn canonical(addr: SocketAddr) -> SocketAddr {
    let SocketAddr::V6(v6) = addr else { return addr };
    v6.ip().to_ipv4_mapped().map_or(addr, |v4| SocketAddr::from((v4, v6.port())))
}

/// One connection's request being read: with the PROXY protocol its
/// header first, then the message under the framing rules (nothing, for
/// daytime and time).
pub(crate) struct Connection {
    pub held: Held,
    /// Who the exchange is for: the peer, or the client its PROXY header named.
    pub client: SocketAddr,
    service: Service,
    accepted: Instant,
    /// With the PROXY protocol, the header's bytes until it is whole.
    header: Option<Vec<u8>>,
    /// The header said the balancer connects for itself.
    own: bool,
    framer: Framer,
}

impl Connection {
    /// A connection from `peer`, accepted now, and its end if it has one
    /// already: with the PROXY protocol only the addresses allowed to may
    /// send a header; daytime and time need nothing read.
    #[inline]
    fn start(
        held: Held,
        peer: SocketAddr,
        service: Service,
        shared: &Shared,
        buffer: Vec<u8>,
    ) -> (Connection, Option<End>) {
        let (peer, accepted) = (canonical(peer), Instant::now());
        let (header, end) = match &shared.proxy_from {
            None => (None, None),
            Some(ranges) if ranges.iter().any(|r| r.contains(peer.ip())) => {
                (Some(Vec::new()), None)
            }
            Some(_) => (None, Some(End::Refused(Refusal::UntrustedProxy))),
        };
        let framer = Framer::new(&shared.rules, accepted, buffer);
        let conn = Connection { held, client: peer, service, accepted, header, own: false, framer };
        let unasked = service != Service::Receipt;
        let end = end.or_else(|| unasked.then(|| conn.unasked(Arrival::now())).flatten());
        (conn, end)
    }

    /// A daytime or time request is whole once its header (if any) is.
    fn unasked(&self, at: Arrival) -> Option<End> {
        let whole = self.service != Service::Receipt && self.header.is_none();
        let asked = End::Message { ending: Ending::Unasked, at, ended: at.mono };
        whole.then_some(if self.own { End::HealthCheck } else { asked })
    }

    /// Whether any byte of its request has arrived.
    pub fn has_begun(&self) -> bool {
        self.header.as_ref().map_or(!self.framer.message().is_empty(), |h| !h.is_empty())
    }

    /// Tells it the time is `now`, once what arrived before is fed.
    pub fn on_timer(&mut self, now: Instant) -> Option<End> {
        let end = self.framer.on_timer(now);
        self.checked(end)
    }

    /// Takes `bytes` that arrived `at`; empty `bytes` is EOF.
    pub fn feed(&mut self, bytes: &[u8], at: Arrival) -> Option<End> {
        let Some(header) = &mut self.header else {
            let end = self.framer.feed(bytes, at);
            return self.checked(end);
        };
        if let Some(end) = self.framer.on_timer(at.mono) {
            return Some(end);
        }
        if bytes.is_empty() {
            return Some(End::Failed(io::ErrorKind::UnexpectedEof.into()));
        }
        let taken = bytes.len().min(MAX_HEADER - header.len());
        header.extend_from_slice(&bytes[..taken]);
        let (relayed, len) = match proxy::parse(header) {
            Parsed::Complete { header, len } => (header, len),
            Parsed::Invalid(fault) => return Some(End::Refused(Refusal::BadProxyHeader(fault))),
            Parsed::Incomplete if header.len() >= MAX_HEADER => {
                return Some(End::Refused(Refusal::BadProxyHeader(protocol::ProxyFault::TooLong)))
            }
            Parsed::Incomplete => return None,
        };
        // The message's first bytes: after the header, and past what the
        // header's buffer took of this same read.
        let mut rest = header.split_off(len);
        rest.extend_from_slice(&bytes[taken..]);
        match relayed {
            // Until now, `self.client` is the peer.
            Header::Relayed { client } if client != self.client => self.client = canonical(client),
            Header::Relayed { .. } | Header::Own => self.own = true,
            Header::Unnamed => {}
        }
        self.header = None;
        match self.unasked(at) {
            None if !rest.is_empty() => self.feed(&rest, at),
            end => end,
        }
    }

    /// A balancer's own connection that ends before any message byte, or
    /// fails, is a health check, not an exchange.
    fn checked(&self, end: Option<End>) -> Option<End> {
        let empty_eof = matches!(end, Some(End::Message { ending: Ending::Eof, .. }))
            && self.framer.message().is_empty();
        if self.own && (empty_eof || matches!(end, Some(End::Failed(_)))) {
            return Some(End::HealthCheck);
        }
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_logged_as_display_writes_them_zones_and_all() {
        for addr in ["0.0.0.0:0", "127.0.0.1:5006", "255.255.255.255:65535", "[::1]:80"] {
            let addr: SocketAddr = addr.parse().expect("an address");
            let mut line = String::new();
            push_addr(&mut line, canonical(addr));
            assert_eq!(line, addr.to_string());
        }
        // Two links may have the same link-local client: the zone tells them apart.
        let zoned: SocketAddr = "[fe80::2%3]:80".parse().expect("an address");
        assert_eq!(canonical(zoned).to_string(), "[fe80::2%3]:80");
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:80".parse().expect("an address");
        assert_eq!(canonical(mapped).to_string(), "192.0.2.1:80");
    }
}
