//! The waiting room: one thread that holds every connection whose message
//! did not come at once, so that a slow or silent client costs a file
//! descriptor and a few hundred bytes, not a worker.
//!
//! A worker that has not read a whole message within the slow-client
//! verdict hands the connection over ([`Room::admit`]) with its
//! [`Reading`], and goes back to `accept`. The room waits on all of them at
//! once with `epoll` (level-triggered: a socket that still has bytes is
//! reported again), feeds what arrives to each reading, wakes each at its
//! own pause or deadline (a heap of timers), and answers a finished one
//! through the same [`Service::answer`] a worker uses. It is also the
//! closer: a connection whose client may still be sending after its last
//! line lingers here, drained, until the client closes or [`LINGER`]
//! passes, so that a reset cannot destroy that line.
//!
//! It owns what it holds. When it is full, or descriptors run out, the
//! connection that has waited longest is told `error: server busy` and
//! closed, so that a new client always gets a place and attackers churn
//! their own connections. At the end of shutdown's grace it tells each
//! waiting client `error: server shutting down` itself.

use super::exchange::{Closing, Scratch, Service, Ticket};
use super::reading::{Finished, Reading};
use crate::framing::{self, Machine, Progress};
use crate::platform::{self, Poller, Waker};
use crate::protocol::Refusal;
use crate::sync;
use crate::sync::is_retry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How long a closing connection may keep sending.
pub(crate) const LINGER: Duration = Duration::from_secs(1);
/// Sockets reported by one wait at most.
const BATCH: usize = 256;
/// Reads from one socket per wake at most, so that a client that floods
/// cannot starve the others (level triggering brings it back).
const READS_PER_WAKE: usize = 16;
/// The read size: enough for any ordinary message in one read.
const CHUNK: usize = 4096;
/// The waker's token; connections count from 1.
const WAKER: u64 = 0;
/// The room's stack: it formats and writes log lines, as a worker does.
const STACK_SIZE: usize = 256 * 1024;
/// How long a worker out of descriptors waits for the room to free one.
const FREE_WAIT: Duration = Duration::from_millis(50);

/// A connection handed over with what has been read of it.
#[derive(Debug)]
pub(crate) struct Waiting {
    pub stream: TcpStream,
    pub reading: Reading,
    /// Counts the connection as in progress while it is held: read by
    /// no one, it ends the count when the connection is dropped.
    pub _ticket: Ticket,
}

/// How many connections the room may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Connections waiting for their message (`--max-conns`).
    pub waiting: usize,
    /// Everything held, lingering connections included: what the file
    /// descriptors allow.
    pub held: usize,
}

/// What workers and the main thread ask of the room.
#[derive(Debug, Default)]
struct Inbox {
    arrivals: Vec<Handover>,
    /// Descriptors workers are waiting for.
    to_free: usize,
    /// Set by shutdown: when to tell those still waiting.
    finish_by: Option<Instant>,
    /// Set by the room when it has left.
    gone: bool,
}

// Hand-overs pass through the inbox and are moved out at once: boxing the
// larger one would cost an allocation per slow client for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Handover {
    Wait(Waiting),
    Linger(TcpStream),
}

/// The room as the other threads see it.
#[derive(Debug)]
pub(crate) struct Room {
    inbox: Mutex<Inbox>,
    changed: Condvar,
    waker: Waker,
    /// Connections held now, for workers out of descriptors.
    held: AtomicUsize,
    /// Turns of the room's loop, for a watchdog to see it move.
    turns: AtomicU64,
}

impl Room {
    /// Starts the room's thread.
    ///
    /// # Errors
    ///
    /// Why it cannot: no `epoll` here, no descriptors, no thread.
    pub fn start(service: Arc<Service>, limits: Limits) -> io::Result<Arc<Room>> {
        let mut hall = Hall::open(service, limits)?;
        let room = Arc::clone(&hall.room);
        thread::Builder::new()
            .name("serv6-room".into())
            .stack_size(STACK_SIZE)
            .spawn(move || hall.run())?;
        Ok(room)
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        sync::lock(&self.inbox)
    }

    fn send(&self, handover: Handover) {
        let mut inbox = self.inbox();
        if inbox.gone {
            drop(inbox);
            // Nobody is left to hold it: closing is all that can be done.
            return;
        }
        inbox.arrivals.push(handover);
        let first = inbox.arrivals.len() == 1;
        drop(inbox);
        if first {
            self.wake();
        }
    }

    fn wake(&self) {
        self.waker.wake();
    }

    /// Connections held now: waiting for their message, or closing.
    pub fn held(&self) -> usize {
        self.held.load(Relaxed)
    }

    /// How many turns the room's loop has made; [`Room::poke`] makes it
    /// turn, so a room that does not has stopped working.
    pub fn turns(&self) -> u64 {
        self.turns.load(Relaxed)
    }

    /// Wakes the room for one turn.
    pub fn poke(&self) {
        self.wake();
    }

    /// Takes over a connection whose message is still incomplete.
    pub fn admit(&self, waiting: Waiting) {
        self.send(Handover::Wait(waiting));
    }

    /// Takes over closing a connection whose client may still be sending.
    pub fn linger(&self, stream: TcpStream) {
        self.send(Handover::Linger(stream));
    }

    /// Out of file descriptors: asks the room to close the connection that
    /// has waited longest, and waits a little for it. False if the room
    /// holds nothing it could close.
    pub fn free_descriptor(&self) -> bool {
        if self.held.load(Relaxed) == 0 {
            return false;
        }
        let mut inbox = self.inbox();
        inbox.to_free += 1;
        drop(inbox);
        self.wake();
        let waited = self
            .changed
            .wait_timeout_while(self.inbox(), FREE_WAIT, |inbox| {
                inbox.to_free > 0 && !inbox.gone
            });
        drop(waited);
        true
    }

    /// Shutdown: connections still waiting at `by` are told the server is
    /// shutting down. Returns once the room has left, or `by` and a last
    /// `LINGER` have passed.
    pub fn finish(&self, by: Instant) {
        self.inbox().finish_by = Some(by);
        self.wake();
        let limit = by.saturating_duration_since(Instant::now()) + LINGER;
        let waited = self
            .changed
            .wait_timeout_while(self.inbox(), limit, |inbox| !inbox.gone);
        drop(waited);
    }
}

/// The room's own state, on its thread.
struct Hall {
    room: Arc<Room>,
    service: Arc<Service>,
    limits: Limits,
    poller: Poller,
    /// By token, which grows with every arrival: the first is the oldest.
    waiting: BTreeMap<u64, Waiting>,
    /// Connections answered, closing once their client has.
    lingering: BTreeMap<u64, TcpStream>,
    /// When each connection must next be looked at: one entry per held
    /// connection, replaced when its time moves and removed when it goes,
    /// so that answered connections leave nothing behind.
    timers: BTreeSet<(Instant, u64)>,
    /// Each held connection's entry in `timers`.
    armed: HashMap<u64, Instant>,
    next_token: u64,
    scratch: Scratch,
    chunk: Vec<u8>,
    finish_by: Option<Instant>,
}

impl Hall {
    /// The room and its state, before its thread runs.
    fn open(service: Arc<Service>, limits: Limits) -> io::Result<Hall> {
        let poller = Poller::new(BATCH)?;
        let waker = Waker::new()?;
        poller.add(&waker, WAKER)?;
        let room = Arc::new(Room {
            inbox: Mutex::new(Inbox::default()),
            changed: Condvar::new(),
            waker,
            held: AtomicUsize::new(0),
            turns: AtomicU64::new(0),
        });
        Ok(Hall {
            room,
            service,
            limits,
            poller,
            waiting: BTreeMap::new(),
            lingering: BTreeMap::new(),
            timers: BTreeSet::new(),
            armed: HashMap::new(),
            next_token: WAKER + 1,
            scratch: Scratch::default(),
            chunk: vec![0; CHUNK],
            finish_by: None,
        })
    }

    fn run(&mut self) {
        let mut ready = Vec::with_capacity(BATCH);
        while !self.done() {
            self.room.turns.fetch_add(1, Relaxed);
            let timeout = self
                .next_timer()
                .map(|at| at.saturating_duration_since(Instant::now()));
            if self.poller.wait(timeout, &mut ready).is_err() {
                // Only a broken epoll fails here; waiting on the timers
                // alone keeps deadlines, and never spins.
                thread::sleep(Duration::from_millis(10));
            }
            for &token in &ready {
                if token == WAKER {
                    self.take_inbox();
                } else {
                    self.on_ready(token);
                }
            }
            self.on_timers(Instant::now());
        }
        self.leave();
    }

    /// Whether shutdown has come and nothing is left to wait for.
    fn done(&self) -> bool {
        self.finish_by.is_some() && self.waiting.is_empty() && self.lingering.is_empty()
    }

    fn next_timer(&self) -> Option<Instant> {
        let timer = self.timers.first().map(|&(at, _)| at);
        match (timer, self.finish_by) {
            (Some(at), Some(by)) => Some(at.min(by)),
            (at, by) => at.or(by),
        }
    }

    fn is_full(&self) -> bool {
        self.waiting.len() + self.lingering.len() >= self.limits.held
    }

    fn publish_held(&self) {
        let held = self.waiting.len() + self.lingering.len();
        self.room.held.store(held, Relaxed);
    }

    fn take_inbox(&mut self) {
        self.room.waker.clear();
        let (arrivals, to_free, finish_by) = {
            let mut inbox = self.room.inbox();
            let taken = (
                std::mem::take(&mut inbox.arrivals),
                std::mem::take(&mut inbox.to_free),
                inbox.finish_by,
            );
            self.room.changed.notify_all();
            taken
        };
        self.finish_by = finish_by;
        for _ in 0..to_free {
            self.make_room();
        }
        for handover in arrivals {
            match handover {
                Handover::Wait(waiting) => self.admit(waiting),
                Handover::Linger(stream) => self.linger(stream),
            }
        }
        self.publish_held();
    }

    fn token(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    fn admit(&mut self, waiting: Waiting) {
        if self.finish_by.is_some_and(|by| Instant::now() >= by) {
            let client = waiting.reading.client();
            self.service
                .turn_away(waiting.stream, client, &Refusal::ShuttingDown);
            return;
        }
        while self.waiting.len() >= self.limits.waiting && self.evict_oldest_waiting() {}
        while self.is_full() && self.make_room() {}
        let token = self.token();
        if self.is_full() || self.poller.add(&waiting.stream, token).is_err() {
            let client = waiting.reading.client();
            self.service
                .turn_away(waiting.stream, client, &Refusal::Busy);
            return;
        }
        let wake = waiting.reading.next_wake();
        self.waiting.insert(token, waiting);
        self.arm(token, wake);
    }

    /// Sets when `token` must next be looked at, replacing its last time.
    fn arm(&mut self, token: u64, at: Instant) {
        if let Some(old) = self.armed.insert(token, at) {
            self.timers.remove(&(old, token));
        }
        self.timers.insert((at, token));
    }

    /// Forgets `token`'s timer: its connection is gone.
    fn disarm(&mut self, token: u64) {
        if let Some(old) = self.armed.remove(&token) {
            self.timers.remove(&(old, token));
        }
    }

    /// Takes over closing a connection handed over by a worker.
    fn linger(&mut self, stream: TcpStream) {
        let token = self.token();
        if self.poller.add(&stream, token).is_ok() {
            self.keep_lingering(token, stream);
        }
    }

    /// Lingers `stream`, already polled as `token`.
    fn keep_lingering(&mut self, token: u64, stream: TcpStream) {
        let _ = stream.shutdown(Shutdown::Write);
        // Full, an answered connection gives way to a waiting one: the
        // oldest lingering is closed, or this one, at the risk of a reset.
        if self.is_full() && self.close_oldest_lingering().is_none() {
            self.disarm(token);
            return;
        }
        let until = Instant::now() + LINGER;
        self.lingering.insert(token, stream);
        self.arm(token, until);
    }

    /// Closes the connection that has lingered longest, if any.
    fn close_oldest_lingering(&mut self) -> Option<()> {
        let (token, _) = self.lingering.pop_first()?;
        self.disarm(token);
        Some(())
    }

    /// Closes a connection to free its descriptor: a lingering one first
    /// (it has had its answer), else the one that has waited longest.
    /// False if there is none.
    fn make_room(&mut self) -> bool {
        if self.close_oldest_lingering().is_some() {
            return true;
        }
        self.evict_oldest_waiting()
    }

    /// Tells the connection that has waited longest that the server is
    /// busy, and closes it; but first it takes what has already arrived,
    /// which may complete its message: then it is answered instead.
    fn evict_oldest_waiting(&mut self) -> bool {
        let Some((token, mut waiting)) = self.waiting.pop_first() else {
            return false;
        };
        self.disarm(token);
        match advance(&mut waiting, &mut self.chunk, Instant::now()) {
            Progress::Done(finished) => self.conclude(token, waiting.stream, finished),
            Progress::Pending => {
                let client = waiting.reading.client();
                self.service
                    .turn_away(waiting.stream, client, &Refusal::Busy);
            }
        }
        true
    }

    fn on_ready(&mut self, token: u64) {
        if let Some(lingering) = self.lingering.get(&token) {
            if !still_sending(lingering, &mut self.chunk) {
                self.lingering.remove(&token);
                self.disarm(token);
                self.publish_held();
            }
            return;
        }
        self.look_at(token, Instant::now());
    }

    /// Reads what has arrived on waiting connection `token` and applies the
    /// clock: answers it if that ends its message, else sets its timer to
    /// when its reading next needs the clock. The one place the room
    /// decides what happens next to a waiting connection.
    fn look_at(&mut self, token: u64, now: Instant) {
        let Some(waiting) = self.waiting.get_mut(&token) else {
            return;
        };
        match advance(waiting, &mut self.chunk, now) {
            Progress::Pending => {
                let wake = waiting.reading.next_wake();
                self.arm(token, wake);
            }
            Progress::Done(finished) => {
                if let Some(waiting) = self.waiting.remove(&token) {
                    self.disarm(token);
                    self.conclude(token, waiting.stream, finished);
                }
            }
        }
    }

    fn on_timers(&mut self, now: Instant) {
        if self.finish_by.is_some_and(|by| now >= by) {
            self.cut();
        }
        while let Some(&(at, token)) = self.timers.first() {
            if at > now {
                break;
            }
            if self.lingering.contains_key(&token) {
                self.lingering.remove(&token);
                self.disarm(token);
                continue;
            }
            if self.waiting.contains_key(&token) {
                self.look_at(token, now);
            } else {
                self.disarm(token);
            }
        }
        self.publish_held();
    }

    /// The grace period is over: everyone still waiting is told so.
    fn cut(&mut self) {
        while let Some((token, waiting)) = self.waiting.pop_first() {
            self.disarm(token);
            let client = waiting.reading.client();
            self.service
                .turn_away(waiting.stream, client, &Refusal::ShuttingDown);
        }
        self.lingering.clear();
        self.timers.clear();
        self.armed.clear();
    }

    /// Answers the connection polled as `token`.
    fn conclude(&mut self, token: u64, stream: TcpStream, finished: Finished) {
        match self.service.answer(stream, finished, &mut self.scratch) {
            Closing::Now(stream) => drop(stream),
            Closing::Linger(stream) => self.keep_lingering(token, stream),
        }
    }

    fn leave(&mut self) {
        self.cut();
        self.publish_held();
        let mut inbox = self.room.inbox();
        inbox.gone = true;
        inbox.arrivals.clear();
        self.room.changed.notify_all();
    }
}

/// Feeds what has arrived on a waiting connection to its reading, a
/// bounded number of reads at most (level triggering brings the rest),
/// then tells it the time is `now`: bytes are judged by when they
/// arrived, so what has come is read before the clock can end the message.
fn advance(waiting: &mut Waiting, chunk: &mut [u8], now: Instant) -> Progress<Finished> {
    for _ in 0..READS_PER_WAKE {
        let progress = match platform::receive_now(&waiting.stream, chunk) {
            Ok(got) => waiting
                .reading
                .feed(&chunk[..got.len], framing::Arrival::stamped(got.arrived)),
            Err(e) if sync::is_interrupted(&e) => continue,
            Err(e) if is_retry(&e) => return waiting.reading.on_timer(now),
            Err(e) => Progress::Done(waiting.reading.fail(e)),
        };
        if let Progress::Done(finished) = progress {
            return Progress::Done(finished);
        }
    }
    Progress::Pending
}

/// Reads and discards what `stream` has; false once it is closed or fails.
fn still_sending(stream: &TcpStream, scratch: &mut [u8]) -> bool {
    for _ in 0..READS_PER_WAKE {
        match platform::receive_now(stream, scratch).map(|got| got.len) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if sync::is_interrupted(&e) => {}
            Err(e) if is_retry(&e) => return true,
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::Rules;
    use crate::server::errors::Kind;
    use crate::server::log::Log;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    const RULES: Rules = Rules {
        max_len: 64,
        pause: None,
        deadline: Duration::from_secs(60),
    };

    /// A client's end and the server's, accepted.
    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client =
            TcpStream::connect(listener.local_addr().expect("an address")).expect("connects");
        let (server, _) = listener.accept().expect("accepts");
        (client, server)
    }

    fn hall(waiting: usize, held: usize) -> Hall {
        let service = Arc::new(Service::new(Log::new(true, 64)));
        Hall::open(service, Limits { waiting, held }).expect("a room")
    }

    fn waiting(hall: &Hall, server: TcpStream) -> Waiting {
        waiting_since(hall, server, Instant::now())
    }

    fn waiting_since(hall: &Hall, server: TcpStream, started: Instant) -> Waiting {
        let peer = server.peer_addr().expect("a peer");
        let reading =
            Reading::start(peer, started, &RULES, None, Vec::new()).expect("no PROXY protocol");
        Waiting {
            stream: server,
            reading,
            _ticket: hall.service.ticket(),
        }
    }

    fn reply(client: &mut TcpStream) -> String {
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a timeout");
        let mut reply = String::new();
        let _ = client.read_to_string(&mut reply);
        reply
    }

    #[test]
    fn when_full_the_longest_waiting_is_told_busy() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let mut hall = hall(2, 100);
        let mut clients = Vec::new();
        for _ in 0..3 {
            let (client, server) = pair(&listener);
            let waiting = waiting(&hall, server);
            hall.admit(waiting);
            clients.push(client);
        }
        assert_eq!(hall.waiting.len(), 2);
        assert_eq!(reply(&mut clients[0]), "error: server busy\n");
        assert_eq!(hall.service.errors().total(Kind::Busy), 1);
    }

    #[test]
    fn the_oldest_is_answered_instead_if_its_message_has_come() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let mut hall = hall(1, 100);
        let (mut oldest, server) = pair(&listener);
        let first = waiting(&hall, server);
        hall.admit(first);
        oldest.write_all(b"hola\n").expect("sends");
        oldest.shutdown(Shutdown::Write).expect("shuts down");
        let (_newest, server) = pair(&listener);
        // Not read yet by the room: the eviction finds it waiting.
        let newest = waiting(&hall, server);
        hall.admit(newest);
        let reply = reply(&mut oldest);
        assert!(reply.starts_with("received 4 bytes at "), "{reply}");
        assert_eq!(hall.service.errors().total(Kind::Busy), 0);
    }

    #[test]
    fn descriptors_short_a_lingering_connection_goes_first() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let mut hall = hall(100, 2);
        let (_answered, lingering) = pair(&listener);
        hall.linger(lingering);
        let (mut oldest, server) = pair(&listener);
        let first = waiting(&hall, server);
        hall.admit(first);
        let (_newest, server) = pair(&listener);
        let newest = waiting(&hall, server);
        hall.admit(newest);
        assert_eq!((hall.lingering.len(), hall.waiting.len()), (0, 2));
        assert!(hall.make_room(), "a waiting one can go");
        assert_eq!(reply(&mut oldest), "error: server busy\n");
    }

    #[test]
    fn at_the_end_of_the_grace_those_waiting_are_told() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let mut hall = hall(10, 10);
        let (mut client, server) = pair(&listener);
        let held = waiting(&hall, server);
        hall.admit(held);
        hall.finish_by = Some(Instant::now());
        hall.on_timers(Instant::now());
        assert!(hall.done());
        assert_eq!(reply(&mut client), "error: server shutting down\n");
        assert_eq!(hall.service.in_progress()(), 0, "the ticket went with it");
    }

    #[test]
    fn a_deadline_in_the_room_is_told_and_then_lingers() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let mut hall = hall(10, 10);
        let (mut client, server) = pair(&listener);
        let Some(long_ago) = Instant::now().checked_sub(RULES.deadline) else {
            return; // The clock began too recently to have a past this far.
        };
        let held = waiting_since(&hall, server, long_ago);
        hall.admit(held);
        hall.on_timers(Instant::now());
        assert_eq!((hall.waiting.len(), hall.lingering.len()), (0, 1));
        let mut line = [0u8; 64];
        let n = client.read(&mut line).expect("the error line");
        assert_eq!(&line[..n], b"error: no message within 60 s\n");
    }

    #[test]
    fn a_message_that_arrives_in_the_room_is_answered_there() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let mut hall = hall(10, 10);
        let (mut client, server) = pair(&listener);
        let held = waiting(&hall, server);
        hall.admit(held);
        client.write_all(b"hola\n").expect("sends");
        let mut ready = Vec::new();
        while hall.waiting.len() == 1 {
            hall.poller
                .wait(Some(Duration::from_secs(10)), &mut ready)
                .expect("waits");
            for &token in &ready {
                hall.on_ready(token);
            }
        }
        let reply = reply(&mut client);
        assert!(reply.starts_with("received 4 bytes at "), "{reply}");
    }
}
