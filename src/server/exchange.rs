//! One exchange, top to bottom. A worker accepts a connection, reads what
//! has arrived (one `recvmsg`, which also brings the kernel's arrival
//! time), frames it, and when the message is whole it stamps it, logs it,
//! replies and closes: [`serve`]. A message that is not whole within 1 ms
//! goes to the waiting room ([`room`]), which finishes it with the same
//! [`read`] and [`answer`], so a slow client costs a descriptor, not a
//! worker.

pub(crate) mod room;

use super::framing::{End, Ending, Framer, Rules};
use super::proxy::{self, Header, Parsed, MAX_HEADER};
use super::stats::{InProgress, STATS};
use crate::addr::Cidr;
use crate::output::{self, Pending};
use crate::platform;
use crate::protocol::{self, Service};
use crate::sync;
use crate::timestamp::{Arrival, Rfc3339, Timestamp};
use room::Room;
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
/// A reader keeps at most this much message buffer between exchanges.
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
    /// With the PROXY protocol: who may send a header.
    pub proxy_from: Option<Vec<Cidr>>,
    pub room: Arc<Room>,
    stopping: AtomicBool,
    /// A descriptor kept open to be given up when there are none left, so
    /// that a connection can still be accepted and told why it is refused.
    spare: Mutex<Option<File>>,
}

impl Shared {
    pub fn new(rules: Rules, proxy_from: Option<Vec<Cidr>>, room: Arc<Room>) -> Shared {
        Shared {
            rules,
            proxy_from,
            room,
            stopping: AtomicBool::new(false),
            spare: Mutex::new(File::open("/dev/null").ok()),
        }
    }
}

/// The buffers one reader (a worker, or the room) reuses from exchange to
/// exchange, so that the common exchange allocates nothing.
pub(crate) struct Scratch {
    chunk: Vec<u8>,
    line: String,
    reply: String,
    message: Vec<u8>,
    /// A worker's: it may block on writing its log line to a file, its
    /// reply handed to the output first. The room never blocks.
    worker: bool,
}

impl Scratch {
    pub fn new(worker: bool) -> Scratch {
        Scratch {
            chunk: vec![0; CHUNK],
            line: String::new(),
            reply: String::new(),
            message: Vec::new(),
            worker,
        }
    }

    /// Takes a message buffer back; a rare huge one is let go.
    fn keep(&mut self, mut message: Vec<u8>) {
        if message.capacity() <= KEEP_CAPACITY {
            message.clear();
            self.message = message;
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
        listeners: super::listen::Serving,
        per_listener: usize,
        shared: Arc<Shared>,
    ) -> io::Result<Workers> {
        let (alive, gone) = mpsc::channel::<()>();
        let listeners: Vec<_> = listeners.into_iter().map(|(l, s)| (Arc::new(l), s)).collect();
        for (listener, service) in &listeners {
            for _ in 0..per_listener {
                let (listener, service) = (Arc::clone(listener), *service);
                let (shared, alive) = (Arc::clone(&shared), alive.clone());
                thread::Builder::new().name("serv6-worker".into()).stack_size(WORKER_STACK).spawn(
                    move || {
                        serve(&listener, service, &shared);
                        drop(alive);
                    },
                )?;
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
        for (listener, service) in &self.listeners {
            if listener.set_nonblocking(true).is_ok() {
                while let Ok((stream, peer)) = listener.accept() {
                    let rules = &self.shared.rules;
                    turn_away(stream, canonical(peer), End::ShuttingDown, rules, *service);
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

/// A worker's life: accept, read, then answer, or hand a slow client to
/// the room; until serv6 stops. For the daytime and time services, the
/// server talks first: accept, then answer at once.
fn serve(listener: &TcpListener, service: Service, shared: &Shared) {
    let mut scratch = Scratch::new(true);
    while !shared.stopping.load(Relaxed) {
        // accept: the next connection the kernel has queued.
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed(listener, service, shared, &e);
                continue;
            }
        };
        STATS.worker_job(true);
        if service != Service::Receipt {
            let client = canonical(peer);
            if let Some(stream) = tell_time(stream, client, service, &shared.rules, &mut scratch) {
                shared.room.linger(stream);
            }
            STATS.worker_job(false);
            continue;
        }
        let accepted = Instant::now();
        let buffer = std::mem::take(&mut scratch.message);
        let mut conn = match Connection::new(stream, peer, accepted, shared, buffer) {
            Ok(conn) => conn,
            Err((stream, client, end)) => {
                turn_away(stream, client, end, &shared.rules, service);
                STATS.worker_job(false);
                continue;
            }
        };
        // recv: what has arrived, and what comes within SLOW_CLIENT.
        match read_until(&mut conn, accepted + SLOW_CLIENT, &mut scratch.chunk) {
            // stamp, log, reply, close.
            Some(end) => {
                if let Some(stream) = answer(conn, end, &shared.rules, &mut scratch) {
                    shared.room.linger(stream);
                }
            }
            None => shared.room.admit(conn),
        }
        STATS.worker_job(false);
    }
}

/// Reads `conn` until its request ends or `verdict` comes, waiting with
/// `poll` between reads; `None`: not ended by then.
fn read_until(conn: &mut Connection, verdict: Instant, chunk: &mut [u8]) -> Option<End> {
    loop {
        let now = Instant::now();
        if let Some(end) = read(conn, chunk, now) {
            return Some(end);
        }
        if now >= verdict {
            return None;
        }
        let wait = conn.next_wake().min(verdict).saturating_duration_since(now);
        if let Err(e) = platform::wait_readable(&conn.stream, wait) {
            return conn.fail(e);
        }
    }
}

/// recv: feeds what has arrived on `conn` to its framing, then tells it
/// the time is `now`. Bytes are judged by when they arrived: what came
/// before a pause or the deadline ran out is read before the clock can
/// end the message, so a reader that was late cannot cut it short. The
/// one place that decides what happens next to a connection, for workers
/// and the room alike: after it, `conn.next_wake()` says when to look again.
pub(crate) fn read(conn: &mut Connection, chunk: &mut [u8], now: Instant) -> Option<End> {
    for _ in 0..READS_PER_TURN {
        match platform::recv_now(&conn.stream, chunk) {
            Ok((n, stamp)) => {
                if let Some(end) = conn.feed(&chunk[..n], Arrival::stamped(stamp)) {
                    return Some(end);
                }
            }
            Err(e) if sync::is_interrupted(&e) => {}
            Err(e) if sync::is_timeout(&e) => return conn.on_timer(now),
            Err(e) => return conn.fail(e),
        }
    }
    None
}

/// Answers a connection whose request ended as `end`: for a message,
/// stamp it, log it, reply; otherwise say why, if it can be told. Returns
/// the stream if it must linger (its client may still be sending, and a
/// close now could reset the connection and destroy the reply); else it
/// is closed here.
pub(crate) fn answer(
    conn: Connection,
    end: End,
    rules: &Rules,
    scratch: &mut Scratch,
) -> Option<TcpStream> {
    let Connection { stream, client, framer, .. } = conn;
    let message = framer.into_message();
    let linger = match end {
        End::Message { ending, at } => {
            reply(stream, (client, &message, ending, at), rules, scratch)
        }
        end => refuse(&stream, client, &end, rules, scratch).then_some(stream),
    };
    scratch.keep(message);
    // close: dropping the stream closes it.
    linger
}

/// Stamps a message, logs it, and sends the reply; returns the stream if
/// it must linger.
fn reply(
    stream: TcpStream,
    (client, message, ending, at): (SocketAddr, &[u8], Ending, Arrival),
    rules: &Rules,
    scratch: &mut Scratch,
) -> Option<TcpStream> {
    let Some(stamp) = Timestamp::from_system_time(at.wall) else {
        return refuse(&stream, client, &End::ClockOutOfRange, rules, scratch).then_some(stream);
    };
    let stamp = stamp.to_rfc3339();
    let mut reply = std::mem::take(&mut scratch.reply);
    write_reply(&mut reply, message.len(), &stamp, rules.send_time);
    // log, before the reply: a reply a client saw has its line. A worker
    // hands its reply over, in case writing the line stalls.
    let logged = (&stamp, client, message);
    let pending = if scratch.worker {
        output::log_exchange(&mut scratch.line, logged, Some(Pending { stream, reply }))
    } else {
        output::log_exchange(&mut scratch.line, logged, None);
        Some(Pending { stream, reply })
    };
    let Some(Pending { stream, mut reply }) = pending else {
        STATS.served_one(Service::Receipt, None); // The output sent the reply.
        return None;
    };
    if rules.send_time {
        write_reply(&mut reply, message.len(), &stamp, true);
    }
    // send
    let sent = (&stream).write_all(reply.as_bytes());
    scratch.reply = reply;
    let sent = count_served(sent, client, Service::Receipt, Some(at));
    (sent && ending.more_may_come()).then_some(stream)
}

/// Counts an exchange whose line is logged as served, and its reply, if it
/// could not be sent, as lost; true if it was sent.
fn count_served(
    sent: io::Result<()>,
    client: SocketAddr,
    service: Service,
    at: Option<Arrival>,
) -> bool {
    let Err(e) = sent else {
        STATS.served_one(service, at.map(|at| at.mono.elapsed()));
        return true;
    };
    STATS.served_one(service, None);
    STATS.reply_lost();
    output::report(("reply lost", "replies lost"), format_args!("{client}: reply lost: {e}"));
    false
}

/// The reply to a message of `len` bytes that arrived `at`, and when it
/// is sent, taken now, if the rules say so.
fn write_reply(reply: &mut String, len: usize, at: &Rfc3339, send_time: bool) {
    reply.clear();
    let sent = send_time.then(SystemTime::now);
    let sent = sent.and_then(Timestamp::from_system_time).map(Timestamp::to_rfc3339);
    protocol::write_received(reply, len, at, sent.as_ref());
}

/// Tells a daytime or time client the time: stamp it now, log it, send
/// it; returns the stream if the client sent something meanwhile (closing
/// at once could then reset the connection and destroy the time).
fn tell_time(
    stream: TcpStream,
    client: SocketAddr,
    service: Service,
    rules: &Rules,
    scratch: &mut Scratch,
) -> Option<TcpStream> {
    let now = SystemTime::now();
    let Some(stamp) = Timestamp::from_system_time(now).map(Timestamp::to_rfc3339) else {
        turn_away(stream, client, End::ClockOutOfRange, rules, service);
        return None;
    };
    output::log_service(&mut scratch.line, &stamp, client, service.name());
    let time = protocol::time_bytes(now);
    scratch.reply.clear();
    protocol::write_daytime(&mut scratch.reply, &stamp);
    let bytes = if service == Service::Time { &time[..] } else { scratch.reply.as_bytes() };
    if !count_served((&stream).write_all(bytes), client, service, None) {
        return None;
    }
    let sent_something = platform::recv_now(&stream, &mut scratch.chunk).is_ok_and(|(n, _)| n > 0);
    sent_something.then_some(stream)
}

/// Counts and reports a request that got no time, and tells the client
/// why if it can be told; true if it was (it lingers then).
fn refuse(
    mut stream: &TcpStream,
    client: SocketAddr,
    end: &End,
    rules: &Rules,
    s: &mut Scratch,
) -> bool {
    let so_far = STATS.ended(end);
    report(client, end, rules, so_far);
    let Some(why) = end.refusal(rules) else {
        return false;
    };
    s.line.clear();
    protocol::write_refusal(&mut s.line, &why);
    stream.write_all(s.line.as_bytes()).is_ok()
}

/// Says on standard error how a connection that got no time ended: a few
/// lines a second at most (see `output::report`).
fn report(client: SocketAddr, end: &End, rules: &Rules, so_far: u64) {
    match end {
        End::HealthCheck if so_far == 1 => {
            output::say(format_args!("{client}: health checks, counted apart and not logged"));
        }
        End::BadHeader(why) => output::report(end.nouns(), format_args!("{client}: {why}")),
        End::Failed(e) => {
            output::report(end.nouns(), format_args!("{client}: connection failed: {e}"));
        }
        End::HealthCheck | End::ShuttingDown => {}
        end => {
            if let Some(why) = end.refusal(rules) {
                output::report(end.nouns(), format_args!("{client}: {why}"));
            }
        }
    }
}

/// Tells a connection that will not be served why (`Busy` or
/// `ShuttingDown`), without waiting for it: what it already sent is read,
/// so that closing does not reset it, but it gets no linger. A time
/// client is told nothing: any bytes would read as a time.
#[allow(clippy::needless_pass_by_value)] // owned: dropping `stream` closes it
pub(crate) fn turn_away(
    stream: TcpStream,
    client: SocketAddr,
    end: End,
    rules: &Rules,
    service: Service,
) {
    if service == Service::Time {
        STATS.ended(&end);
        return;
    }
    let mut scratch = Scratch::new(false);
    if refuse(&stream, client, &end, rules, &mut scratch) {
        let _ = stream.shutdown(Shutdown::Write);
        while matches!(platform::recv_now(&stream, &mut scratch.chunk), Ok((n, _)) if n > 0) {}
    }
}

/// `accept` failed. Out of descriptors, the room closes the connection
/// that has waited longest, or else the spare is given up to accept the
/// connection and tell it the server is busy. Otherwise, or if neither
/// works, the failure is reported and the worker waits a little.
fn accept_failed(listener: &TcpListener, service: Service, shared: &Shared, e: &io::Error) {
    if shared.stopping.load(Relaxed) || sync::is_interrupted(e) {
        return;
    }
    if platform::is_out_of_descriptors(e) {
        if shared.room.free_descriptor() {
            return;
        }
        let mut spare = sync::lock(&shared.spare);
        if spare.take().is_some() {
            if let Ok((stream, peer)) = listener.accept() {
                turn_away(stream, canonical(peer), End::Busy, &shared.rules, service);
            }
            *spare = File::open("/dev/null").ok();
            if spare.is_some() {
                return;
            }
        }
    }
    let at = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    output::trouble(format_args!("cannot accept on {at}: {e}"));
    if e.kind() != io::ErrorKind::ConnectionAborted {
        thread::sleep(ACCEPT_BACKOFF);
    }
}

/// An address as the log shows it: an IPv4 client of an IPv6 socket as
/// itself.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// One connection's request being read: with the PROXY protocol its
/// header first, then the message under the framing rules.
#[derive(Debug)]
pub(crate) struct Connection {
    pub stream: TcpStream,
    peer: SocketAddr,
    /// Who the exchange is for: the peer, or the client its PROXY header named.
    pub client: SocketAddr,
    /// With the PROXY protocol, the header's bytes until it is whole.
    header: Option<Vec<u8>>,
    /// The header said the balancer connects for itself.
    own: bool,
    framer: Framer,
    _in_progress: InProgress,
}

impl Connection {
    /// A connection from `peer` accepted at `started`, its message to go in
    /// `buffer`. With the PROXY protocol only the addresses allowed to may
    /// send a header: anyone else gets the stream back, to be refused.
    fn new(
        stream: TcpStream,
        peer: SocketAddr,
        started: Instant,
        shared: &Shared,
        buffer: Vec<u8>,
    ) -> Result<Connection, (TcpStream, SocketAddr, End)> {
        let peer = canonical(peer);
        let header = match &shared.proxy_from {
            None => None,
            Some(ranges) if ranges.iter().any(|r| r.contains(peer.ip())) => Some(Vec::new()),
            Some(_) => return Err((stream, peer, End::UntrustedProxy)),
        };
        Ok(Connection {
            stream,
            peer,
            client: peer,
            header,
            own: false,
            framer: Framer::new(&shared.rules, started, buffer),
            _in_progress: InProgress::new(),
        })
    }

    /// Whether any byte of its request has arrived.
    pub fn has_begun(&self) -> bool {
        self.header.as_ref().map_or(!self.framer.message().is_empty(), |h| !h.is_empty())
    }

    /// When it must next be told the time.
    pub fn next_wake(&self) -> Instant {
        self.framer.next_wake()
    }

    /// Tells it the time is `now`, once what arrived before is fed.
    pub fn on_timer(&mut self, now: Instant) -> Option<End> {
        let end = self.framer.on_timer(now);
        self.checked(end)
    }

    /// The connection failed: how that ends it.
    fn fail(&self, error: io::Error) -> Option<End> {
        self.checked(Some(End::Failed(error)))
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
            Parsed::Invalid(why) => return Some(End::BadHeader(why)),
            Parsed::Incomplete if header.len() >= MAX_HEADER => {
                return Some(End::BadHeader(proxy::Invalid::TooLong))
            }
            Parsed::Incomplete => return None,
        };
        // The message's first bytes: after the header, and past what the
        // header's buffer took of this same read.
        let mut rest = header.split_off(len);
        rest.extend_from_slice(&bytes[taken..]);
        match relayed {
            Header::Relayed { client } if client != self.peer => self.client = canonical(client),
            Header::Relayed { .. } | Header::Own => self.own = true,
        }
        self.header = None;
        if rest.is_empty() {
            return None;
        }
        self.feed(&rest, at)
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
