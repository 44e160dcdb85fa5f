//! The waiting room: one thread that holds every connection whose message
//! was not whole within a worker's 1 ms, so that a slow or silent client
//! costs a file descriptor and a few hundred bytes, not a worker.
//!
//! It waits on all of them at once with `epoll` (level-triggered: a socket
//! that still has bytes is reported again), and finishes each with the
//! exchange's own [`read`] and [`answer`]: after every read, the
//! connection's one timer is set to when its framing next needs the clock
//! (its pause or its deadline), and removed when the connection goes. It
//! is also the closer: a connection whose client may still be sending
//! after its last line lingers here, drained, until the client closes or
//! [`LINGER`] passes, so that a reset cannot destroy that line.
//!
//! When it is full, or descriptors run out, the connection that has waited
//! longest is told `error: server busy` and closed (or answered, if its
//! message has come meanwhile), so that a new client always gets a place.

use super::{answer, read, turn_away, Connection, Scratch};
use crate::platform::{self, Poller, Waker};
use crate::protocol::Service;
use crate::server::framing::{End, Rules};
use crate::server::stats::STATS;
use crate::sync;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

/// How long a closing connection may keep sending.
pub(crate) const LINGER: Duration = Duration::from_secs(1);
/// Sockets reported by one wait at most.
const BATCH: usize = 256;
/// The waker's token; connections count from 1.
const WAKER: u64 = 0;
/// The room's stack: it formats and writes log lines, as a worker does.
const STACK_SIZE: usize = 256 * 1024;
/// When the room empties after holding this many, the memory their
/// messages took is given back: a crowd's buffers are not kept for the
/// next, and a few are not worth the walk through the heap.
const GIVE_BACK_AFTER: usize = 64;
/// How long a worker out of descriptors waits for the room to free one.
const FREE_WAIT: Duration = Duration::from_millis(50);

/// How many connections the room may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Connections waiting for their message (`--max-conns`).
    pub waiting: usize,
    /// Everything held, lingering connections included: what the file
    /// descriptors allow.
    pub held: usize,
}

/// What workers and the main thread ask of the room, in the order asked.
// Asks are moved through at once: boxing the larger one would cost an
// allocation per slow client for nothing.
#[allow(clippy::large_enum_variant)]
enum Ask {
    /// Hold a connection whose message is still incomplete.
    Wait(Connection),
    /// Close a connection whose client may still be sending, once it has.
    Linger(TcpStream),
    /// Close one connection to free its descriptor, and say so.
    Free(mpsc::Sender<()>),
    /// Shut down by then; the sender goes when the room has left.
    Finish(Instant, mpsc::Sender<()>),
}

/// The room as the other threads see it.
pub(crate) struct Room {
    asks: mpsc::Sender<Ask>,
    waker: Waker,
    /// Turns of the room's loop, for a watchdog to see it move.
    turns: AtomicU64,
}

impl Room {
    /// Starts the room's thread.
    ///
    /// # Errors
    ///
    /// Why it cannot: no descriptors for epoll, no thread.
    pub fn start(limits: Limits, rules: Rules) -> io::Result<Arc<Room>> {
        let mut held = Held::open(limits, rules)?;
        let room = Arc::clone(&held.room);
        thread::Builder::new()
            .name("serv6-room".into())
            .stack_size(STACK_SIZE)
            .spawn(move || held.run())?;
        Ok(room)
    }

    /// Asks the room, and wakes it: it clears its waker before it takes
    /// the asks, so none is left behind. Once it has left, the ask is
    /// dropped, closing any connection in it: all that can be done then.
    fn ask(&self, ask: Ask) {
        if self.asks.send(ask).is_ok() {
            self.waker.wake();
        }
    }

    /// Takes over a connection whose message is still incomplete.
    pub fn admit(&self, conn: Connection) {
        self.ask(Ask::Wait(conn));
    }

    /// Takes over closing a connection whose client may still be sending.
    pub fn linger(&self, stream: TcpStream) {
        self.ask(Ask::Linger(stream));
    }

    /// How many turns the room's loop has made; [`Room::poke`] makes it
    /// turn, so a room that does not has stopped working.
    pub fn turns(&self) -> u64 {
        self.turns.load(Relaxed)
    }

    /// Wakes the room for one turn.
    pub fn poke(&self) {
        self.waker.wake();
    }

    /// Out of file descriptors: asks the room to close the connection that
    /// has waited longest, and waits a little for it. False if the room
    /// holds nothing it could close.
    pub fn free_descriptor(&self) -> bool {
        if STATS.held.load(Relaxed) == 0 {
            return false;
        }
        let (done, freed) = mpsc::channel();
        self.ask(Ask::Free(done));
        let _ = freed.recv_timeout(FREE_WAIT);
        true
    }

    /// Shutdown: connections that have sent nothing are told at once that
    /// the server is shutting down, the others when `by` comes if their
    /// message has not. Returns once the room has left, or `by` and a
    /// last [`LINGER`] have passed.
    pub fn finish(&self, by: Instant) {
        let (done, gone) = mpsc::channel();
        self.ask(Ask::Finish(by, done));
        let _ = gone.recv_timeout(by.saturating_duration_since(Instant::now()) + LINGER);
    }
}

/// The connections the room holds, on its own thread.
struct Held {
    room: Arc<Room>,
    inbox: mpsc::Receiver<Ask>,
    /// Shutdown's: dropped when the room has left.
    gone: Option<mpsc::Sender<()>>,
    limits: Limits,
    rules: Rules,
    poller: Poller,
    /// By token, which grows with every arrival: the first is the oldest.
    /// Each with the time its timer is set for.
    waiting: BTreeMap<u64, (Connection, Instant)>,
    lingering: BTreeMap<u64, (TcpStream, Instant)>,
    /// Every held connection's one timer: (when, token).
    timers: BTreeSet<(Instant, u64)>,
    next_token: u64,
    scratch: Scratch,
    finish_by: Option<Instant>,
    /// The most held since the room was last empty.
    peak: usize,
}

impl Held {
    /// The room's state and its shared face, before its thread runs.
    fn open(limits: Limits, rules: Rules) -> io::Result<Held> {
        let poller = Poller::new(BATCH)?;
        let waker = Waker::new()?;
        poller.add(&waker, WAKER)?;
        let (asks, inbox) = mpsc::channel();
        let room = Arc::new(Room { asks, waker, turns: AtomicU64::new(0) });
        Ok(Held {
            room,
            inbox,
            gone: None,
            limits,
            rules,
            poller,
            waiting: BTreeMap::new(),
            lingering: BTreeMap::new(),
            timers: BTreeSet::new(),
            next_token: WAKER + 1,
            scratch: Scratch::new(false),
            finish_by: None,
            peak: 0,
        })
    }

    fn run(&mut self) {
        let mut ready = Vec::with_capacity(BATCH);
        while !self.done() {
            self.room.turns.fetch_add(1, Relaxed);
            let timeout = self.next_timer().map(|at| at.saturating_duration_since(Instant::now()));
            if self.poller.wait(timeout, &mut ready).is_err() {
                // Only a broken epoll fails here; waiting on the timers
                // alone keeps deadlines, and never spins.
                thread::sleep(Duration::from_millis(10));
            }
            let now = Instant::now();
            for &token in &ready {
                if token == WAKER {
                    self.take_inbox(now);
                } else {
                    self.look_at(token, now);
                }
            }
            self.on_timers(now);
            let held = self.waiting.len() + self.lingering.len();
            STATS.held.store(held, Relaxed);
            self.peak = self.peak.max(held);
            if held == 0 && std::mem::take(&mut self.peak) >= GIVE_BACK_AFTER {
                platform::give_back_free_memory();
            }
        }
        self.cut();
        STATS.held.store(0, Relaxed);
    }

    /// Whether shutdown has come and nothing is left to wait for.
    fn done(&self) -> bool {
        self.finish_by.is_some() && self.waiting.is_empty() && self.lingering.is_empty()
    }

    /// The earliest timer, or the end of the grace period if sooner.
    fn next_timer(&self) -> Option<Instant> {
        let timer = self.timers.first().map(|&(at, _)| at);
        timer.into_iter().chain(self.finish_by).min()
    }

    fn is_full(&self) -> bool {
        self.waiting.len() + self.lingering.len() >= self.limits.held
    }

    fn take_inbox(&mut self, now: Instant) {
        self.room.waker.clear();
        while let Ok(ask) = self.inbox.try_recv() {
            match ask {
                Ask::Wait(conn) => self.admit(conn, now),
                Ask::Linger(stream) => self.linger(stream),
                Ask::Free(done) => {
                    self.make_room(now);
                    let _ = done.send(());
                }
                Ask::Finish(by, gone) => {
                    self.finish_by = Some(by);
                    self.gone = Some(gone);
                    let tokens: Vec<u64> = self.waiting.keys().copied().collect();
                    for token in tokens {
                        self.look_at(token, now);
                    }
                }
            }
        }
    }

    fn token(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    fn admit(&mut self, conn: Connection, now: Instant) {
        while self.waiting.len() >= self.limits.waiting && self.evict_oldest(now) {}
        while self.is_full() && self.make_room(now) {}
        let token = self.token();
        if self.is_full() || self.poller.add(&conn.stream, token).is_err() {
            self.turn_away(conn, End::Busy);
            return;
        }
        self.waiting.insert(token, (conn, now));
        self.timers.insert((now, token));
        self.look_at(token, now);
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
        if self.is_full() && !self.close_oldest_lingering() {
            return;
        }
        let until = Instant::now() + LINGER;
        self.lingering.insert(token, (stream, until));
        self.timers.insert((until, token));
    }

    fn close_oldest_lingering(&mut self) -> bool {
        let Some((token, (_, at))) = self.lingering.pop_first() else {
            return false;
        };
        self.timers.remove(&(at, token));
        true
    }

    /// Closes a connection to free its descriptor: a lingering one first
    /// (it has had its answer), else the one that has waited longest.
    /// False if there is none.
    fn make_room(&mut self, now: Instant) -> bool {
        self.close_oldest_lingering() || self.evict_oldest(now)
    }

    /// Tells the connection that has waited longest that the server is
    /// busy, and closes it; but first it reads what has already arrived,
    /// which may end its message: then it is answered instead.
    fn evict_oldest(&mut self, now: Instant) -> bool {
        let Some((token, (mut conn, at))) = self.waiting.pop_first() else {
            return false;
        };
        self.timers.remove(&(at, token));
        match read(&mut conn, &mut self.scratch.chunk, now) {
            Some(end) => self.finish(token, conn, end),
            None => self.turn_away(conn, End::Busy),
        }
        true
    }

    /// Reads what has arrived on `token` and applies the clock: answers it
    /// if that ends its request, or else sets its timer anew. In shutdown,
    /// one that has sent nothing is told at once.
    fn look_at(&mut self, token: u64, now: Instant) {
        if let Some((stream, _)) = self.lingering.get(&token) {
            if !still_sending(stream, &mut self.scratch.chunk) {
                self.close_lingering(token);
            }
            return;
        }
        let Some((conn, at)) = self.waiting.get_mut(&token) else {
            return;
        };
        self.timers.remove(&(*at, token));
        let end = match read(conn, &mut self.scratch.chunk, now) {
            None if self.finish_by.is_some() && !conn.has_begun() => End::ShuttingDown,
            None => {
                *at = conn.next_wake();
                self.timers.insert((*at, token));
                return;
            }
            Some(end) => end,
        };
        if let Some((conn, _)) = self.waiting.remove(&token) {
            match end {
                End::ShuttingDown => self.turn_away(conn, end),
                end => self.finish(token, conn, end),
            }
        }
    }

    fn close_lingering(&mut self, token: u64) {
        if let Some((_, at)) = self.lingering.remove(&token) {
            self.timers.remove(&(at, token));
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
                self.close_lingering(token);
            } else {
                self.look_at(token, now);
            }
        }
    }

    /// The grace period is over: everyone still waiting is told so.
    /// Connections that linger keep their own timers: their replies are
    /// out, and closing them now could reset them.
    fn cut(&mut self) {
        while let Some((token, (conn, at))) = self.waiting.pop_first() {
            self.timers.remove(&(at, token));
            self.turn_away(conn, End::ShuttingDown);
        }
    }

    /// Answers the connection polled as `token`.
    fn finish(&mut self, token: u64, conn: Connection, end: End) {
        if let Some(stream) = answer(conn, end, &self.rules, &mut self.scratch) {
            self.keep_lingering(token, stream);
        }
    }

    /// Tells a waiting connection why it will not be served, and closes it.
    fn turn_away(&self, conn: Connection, end: End) {
        turn_away(conn.stream, conn.client, end, &self.rules, Service::Receipt);
    }
}

/// Reads and discards what `stream` has; false once it is closed or fails.
fn still_sending(stream: &TcpStream, scratch: &mut [u8]) -> bool {
    for _ in 0..super::READS_PER_TURN {
        match crate::platform::recv_now(stream, scratch).map(|(n, _)| n) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if sync::is_interrupted(&e) => {}
            Err(e) if sync::is_timeout(&e) => return true,
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::super::Shared;
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    const RULES: Rules =
        Rules { max_len: 64, pause: None, deadline: Duration::from_secs(60), send_time: false };

    /// A client's end and the server's, accepted.
    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client =
            TcpStream::connect(listener.local_addr().expect("an address")).expect("connects");
        let (server, _) = listener.accept().expect("accepts");
        (client, server)
    }

    fn held(waiting: usize, held: usize) -> Held {
        Held::open(Limits { waiting, held }, RULES).expect("a room")
    }

    fn waiting(held: &Held, server: TcpStream) -> Connection {
        waiting_since(held, server, Instant::now())
    }

    fn waiting_since(held: &Held, server: TcpStream, started: Instant) -> Connection {
        let peer = server.peer_addr().expect("a peer");
        let shared = Shared::new(RULES, None, Arc::clone(&held.room));
        Connection::new(server, peer, started, &shared, Vec::new()).expect("no PROXY protocol")
    }

    fn reply(client: &mut TcpStream) -> String {
        client.set_read_timeout(Some(Duration::from_secs(10))).expect("a timeout");
        let mut reply = String::new();
        let _ = client.read_to_string(&mut reply);
        reply
    }

    #[test]
    fn when_full_the_longest_waiting_is_told_busy() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let mut held = held(2, 100);
        let mut clients = Vec::new();
        for _ in 0..3 {
            let (client, server) = pair(&listener);
            let conn = waiting(&held, server);
            held.admit(conn, Instant::now());
            clients.push(client);
        }
        assert_eq!(held.waiting.len(), 2);
        assert_eq!(reply(&mut clients[0]), "error: server busy\n");
    }

    #[test]
    fn the_oldest_is_answered_instead_if_its_message_has_come() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let mut held = held(1, 100);
        let (mut oldest, server) = pair(&listener);
        let first = waiting(&held, server);
        held.admit(first, Instant::now());
        oldest.write_all(b"hola\n").expect("sends");
        oldest.shutdown(Shutdown::Write).expect("shuts down");
        let (_newest, server) = pair(&listener);
        // Not read yet by the room: the eviction finds it waiting.
        let newest = waiting(&held, server);
        held.admit(newest, Instant::now());
        let reply = reply(&mut oldest);
        assert!(reply.starts_with("received 4 bytes at "), "{reply}");
    }

    #[test]
    fn descriptors_short_a_lingering_connection_goes_first() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let mut held = held(100, 2);
        let (_answered, lingering) = pair(&listener);
        held.linger(lingering);
        let (mut oldest, server) = pair(&listener);
        let first = waiting(&held, server);
        held.admit(first, Instant::now());
        let (_newest, server) = pair(&listener);
        let newest = waiting(&held, server);
        held.admit(newest, Instant::now());
        assert_eq!((held.lingering.len(), held.waiting.len()), (0, 2));
        assert!(held.make_room(Instant::now()), "a waiting one can go");
        assert_eq!(reply(&mut oldest), "error: server busy\n");
    }

    #[test]
    fn at_the_end_of_the_grace_those_waiting_are_told() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let mut held = held(10, 10);
        let (mut client, server) = pair(&listener);
        client.write_all(b"ho").expect("sends");
        let conn = waiting(&held, server);
        held.admit(conn, Instant::now());
        held.finish_by = Some(Instant::now());
        held.on_timers(Instant::now());
        assert!(held.done());
        assert_eq!(reply(&mut client), "error: server shutting down\n");
    }

    #[test]
    fn a_deadline_in_the_room_is_told_and_then_lingers() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let mut held = held(10, 10);
        let (mut client, server) = pair(&listener);
        let Some(long_ago) = Instant::now().checked_sub(RULES.deadline) else {
            return; // The clock began too recently to have a past this far.
        };
        let conn = waiting_since(&held, server, long_ago);
        held.admit(conn, Instant::now());
        assert_eq!((held.waiting.len(), held.lingering.len()), (0, 1));
        assert_eq!(held.timers.len(), 1, "one timer: the linger's");
        let mut line = [0u8; 64];
        let n = client.read(&mut line).expect("the error line");
        assert_eq!(&line[..n], b"error: no message within 60 s\n");
    }

    #[test]
    fn a_message_that_arrives_in_the_room_is_answered_there_and_leaves_no_timer() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let mut held = held(10, 10);
        let (mut client, server) = pair(&listener);
        let conn = waiting(&held, server);
        held.admit(conn, Instant::now());
        assert_eq!(held.timers.len(), 1, "the deadline");
        client.write_all(b"hola\n").expect("sends");
        let mut ready = Vec::new();
        while held.waiting.len() == 1 {
            held.poller.wait(Some(Duration::from_secs(10)), &mut ready).expect("waits");
            for &token in &ready {
                held.look_at(token, Instant::now());
            }
        }
        let reply = reply(&mut client);
        assert!(reply.starts_with("received 4 bytes at "), "{reply}");
        assert!(held.timers.is_empty(), "{:?}", held.timers);
    }
}
