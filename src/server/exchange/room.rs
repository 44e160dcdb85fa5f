//! The waiting room: one thread that holds every connection whose message
//! was not whole within a worker's 1 ms, so that a slow or silent client
//! costs a file descriptor and a few hundred bytes, not a worker.
//!
//! It waits on all of them at once (`platform::Poller`: epoll on Linux,
//! level-triggered, so a socket that still has bytes is reported again),
//! and finishes each with the exchange's own [`read`] and [`finish`]: after
//! every read, the connection's one timer is set to when its framing next
//! needs the clock (its pause or its deadline), and removed when the
//! connection goes. It also holds connections that linger: one whose
//! client may still be sending after what it was told is shut down for
//! writing and drained here until the client closes or [`LINGER`] passes,
//! so that a reset cannot destroy what it was told.
//!
//! When serv6 holds `--max-conns` connections, or descriptors run out, a
//! worker asks the room to let one go: a lingering one first, else the
//! one that has waited longest, told `error: server busy` (or answered, if
//! its message has come meanwhile), so that a new client always gets a place.

use super::{drain, finish, read, Connection, Scratch};
use crate::platform::{self, Poller, Waker};
use crate::protocol::Refusal;
use crate::server::framing::End;
use crate::server::stats::Held;
use crate::sync;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::Shutdown;
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
/// How long a worker waits for the room to let a connection go.
const FREE_WAIT: Duration = Duration::from_millis(50);

/// What workers and the main thread ask of the room, in the order asked.
// Asks are moved through at once: boxing the larger one would cost an
// allocation per slow client for nothing.
#[allow(clippy::large_enum_variant)]
enum Ask {
    /// Hold a connection whose message is still incomplete.
    Wait(Connection),
    /// Hold a connection whose client may still be sending, until it has.
    Linger(Held),
    /// Let one connection go, and say so; if none is held yet, the next
    /// to come (a worker hands it over within its 1 ms). Asked at the
    /// instant given: past [`FREE_WAIT`] from it the asker has given up,
    /// however late the room reads the ask, and nobody is let go for it.
    Free(Instant, mpsc::Sender<()>),
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
    /// Why it cannot: no descriptors for its poller, no thread.
    pub fn start() -> io::Result<Arc<Room>> {
        let mut inside = Inside::open()?;
        let room = Arc::clone(&inside.room);
        sync::spawn("serv6-room", STACK_SIZE, move || inside.run())?;
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
    pub fn linger(&self, held: Held) {
        self.ask(Ask::Linger(held));
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

    /// Asks the room to let one connection go, and waits a little for it:
    /// false if none went meanwhile.
    pub fn free_one(&self) -> bool {
        let (done, freed) = mpsc::channel();
        self.ask(Ask::Free(Instant::now(), done));
        freed.recv_timeout(FREE_WAIT).is_ok()
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
struct Inside {
    room: Arc<Room>,
    inbox: mpsc::Receiver<Ask>,
    /// Shutdown's: dropped when the room has left.
    gone: Option<mpsc::Sender<()>>,
    /// Workers waiting for a connection to be let go, while none was
    /// held, and when each asked.
    owed: Vec<(Instant, mpsc::Sender<()>)>,
    poller: Poller,
    /// By token, which grows with every arrival: the first is the oldest.
    /// Each with the time its timer is set for.
    waiting: BTreeMap<u64, (Connection, Instant)>,
    lingering: BTreeMap<u64, (Held, Instant)>,
    /// Every held connection's one timer: (when, token).
    timers: BTreeSet<(Instant, u64)>,
    next_token: u64,
    scratch: Scratch,
    finish_by: Option<Instant>,
    /// The most held since the room was last empty.
    peak: usize,
}

impl Inside {
    /// The room's state and its shared face, before its thread runs.
    fn open() -> io::Result<Inside> {
        let mut poller = Poller::new(BATCH)?;
        let waker = poller.waker(WAKER)?;
        let (asks, inbox) = mpsc::channel();
        let room = Arc::new(Room { asks, waker, turns: AtomicU64::new(0) });
        Ok(Inside {
            room,
            inbox,
            gone: None,
            owed: Vec::new(),
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
        // Until shutdown has come and nothing is left to wait for.
        while self.finish_by.is_none() || !self.waiting.is_empty() || !self.lingering.is_empty() {
            self.room.turns.fetch_add(1, Relaxed);
            let timer = self.timers.first().map(|&(at, _)| at).into_iter().chain(self.finish_by);
            let timeout = timer.min().map(|at| at.saturating_duration_since(Instant::now()));
            if self.poller.wait(timeout, &mut ready).is_err() {
                // Only a broken poller fails here; waiting on the timers
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
            if self.finish_by.is_some() {
                // What the last turn asked of the room itself (a linger) is
                // taken before the room can find itself empty and leave.
                self.take_inbox(Instant::now());
            }
            self.pay_owed(Instant::now());
            let held = self.waiting.len() + self.lingering.len();
            self.peak = self.peak.max(held);
            if held == 0 && std::mem::take(&mut self.peak) >= GIVE_BACK_AFTER {
                platform::give_back_free_memory();
            }
        }
        self.cut();
    }

    fn take_inbox(&mut self, now: Instant) {
        self.room.waker.clear();
        while let Ok(ask) = self.inbox.try_recv() {
            match ask {
                Ask::Wait(conn) => self.admit(conn, now),
                Ask::Linger(held) => self.linger(held, now),
                Ask::Free(asked, done) => self.owed.push((asked, done)),
                Ask::Finish(by, gone) => {
                    self.finish_by = Some(by);
                    self.gone = Some(gone);
                    for token in self.waiting.keys().copied().collect::<Vec<_>>() {
                        self.look_at(token, now);
                    }
                }
            }
        }
    }

    /// Lets a connection go for each worker that asked, while any is held.
    /// Those whose worker has given up waiting are forgotten.
    fn pay_owed(&mut self, now: Instant) {
        self.owed.retain(|(asked, _)| now.saturating_duration_since(*asked) < FREE_WAIT);
        while !self.owed.is_empty() && self.let_one_go(now) {
            let _ = self.owed.remove(0).1.send(());
        }
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn admit(&mut self, conn: Connection, now: Instant) {
        let token = self.token();
        if self.poller.add(&conn.held.stream, token).is_err() {
            return finish(conn, End::Refused(Refusal::Busy), &mut self.scratch, &self.room);
        }
        self.waiting.insert(token, (conn, now));
        self.timers.insert((now, token));
        self.look_at(token, now);
    }

    /// Holds `held`, shut down for writing, until its client closes.
    fn linger(&mut self, held: Held, now: Instant) {
        let _ = held.stream.shutdown(Shutdown::Write);
        let token = self.token();
        if self.poller.add(&held.stream, token).is_ok() {
            let until = now + LINGER;
            self.lingering.insert(token, (held, until));
            self.timers.insert((until, token));
        }
    }

    /// Lets one connection go, to make room for a new one: a lingering one
    /// first (it has had its answer), else the one that has waited
    /// longest, which is read one last time: a message that has come is
    /// answered, anything else told the server is busy. False if the room
    /// holds none.
    fn let_one_go(&mut self, now: Instant) -> bool {
        if let Some(&token) = self.lingering.keys().next() {
            return self.close_lingering(token);
        }
        let Some((&token, _)) = self.waiting.first_key_value() else { return false };
        if let Some(mut conn) = self.leave(token) {
            let end = read(&mut conn, &mut self.scratch.chunk, now);
            finish(conn, end.unwrap_or(End::Refused(Refusal::Busy)), &mut self.scratch, &self.room);
        }
        true
    }

    /// Reads what has arrived on `token` and applies the clock: finishes
    /// it if that ends its request, or else sets its timer anew. In
    /// shutdown, one that has sent nothing is told at once.
    fn look_at(&mut self, token: u64, now: Instant) {
        if let Some((held, _)) = self.lingering.get(&token) {
            if !drain(&held.stream) {
                self.close_lingering(token);
            }
            return;
        }
        let shutting_down = self.finish_by.is_some();
        let Some((conn, at)) = self.waiting.get_mut(&token) else { return };
        self.timers.remove(&(*at, token));
        let end = match read(conn, &mut self.scratch.chunk, now) {
            None if shutting_down && !conn.has_begun() => End::Refused(Refusal::ShuttingDown),
            None => {
                *at = conn.framer.next_wake();
                self.timers.insert((*at, token));
                return;
            }
            Some(end) => end,
        };
        if let Some(conn) = self.leave(token) {
            finish(conn, end, &mut self.scratch, &self.room);
        }
    }

    /// Takes a waiting connection out of the room, to be finished.
    fn leave(&mut self, token: u64) -> Option<Connection> {
        let (conn, at) = self.waiting.remove(&token)?;
        self.timers.remove(&(at, token));
        self.poller.remove(&conn.held.stream, token);
        Some(conn)
    }

    /// Closes `token` if it is a lingering connection; false if it is not.
    /// What it sent last is read first, so that the close resets nothing
    /// unless more comes.
    fn close_lingering(&mut self, token: u64) -> bool {
        let Some((held, at)) = self.lingering.remove(&token) else { return false };
        self.timers.remove(&(at, token));
        self.poller.remove(&held.stream, token);
        drain(&held.stream);
        platform::release(&held.stream);
        true
    }

    fn on_timers(&mut self, now: Instant) {
        if self.finish_by.is_some_and(|by| now >= by) {
            self.cut();
        }
        // A lingering connection's time is up; a waiting one is read and
        // told the time.
        while let Some(&(_, token)) = self.timers.first().filter(|&&(at, _)| at <= now) {
            if !self.close_lingering(token) {
                self.look_at(token, now);
            }
        }
    }

    /// The grace period is over: everyone still waiting is told so.
    /// Connections that linger keep their own timers: their replies are
    /// out, and closing them now could reset them.
    fn cut(&mut self) {
        while let Some(&token) = self.waiting.keys().next() {
            if let Some(conn) = self.leave(token) {
                finish(conn, End::Refused(Refusal::ShuttingDown), &mut self.scratch, &self.room);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Shared;
    use super::*;
    use crate::protocol::{self, Reply, Service};
    use crate::server::framing::Rules;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    const RULES: Rules =
        Rules { max_bytes: 64, pause: None, deadline: Duration::from_secs(60), send_time: false };

    /// A client's end and the server's, accepted.
    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client =
            TcpStream::connect(listener.local_addr().expect("an address")).expect("connects");
        let (server, _) = listener.accept().expect("accepts");
        (client, server)
    }

    fn waiting(inside: &Inside, server: TcpStream) -> Connection {
        let peer = server.peer_addr().expect("a peer");
        let shared = Shared::new((RULES, 100), None, Arc::clone(&inside.room));
        let (conn, end) =
            Connection::start(Held::briefly(server), peer, Service::Receipt, &shared, Vec::new());
        assert!(end.is_none());
        conn
    }

    fn reply(client: &mut TcpStream) -> String {
        client.set_read_timeout(Some(Duration::from_secs(10))).expect("a timeout");
        let mut reply = String::new();
        let _ = client.read_to_string(&mut reply);
        reply
    }

    /// What the reply said, as the protocol reads it.
    fn said(reply: &str) -> Reply {
        protocol::parse_reply(reply.strip_suffix('\n').unwrap_or(reply).as_bytes())
    }

    fn refusal(client: &mut TcpStream) -> Refusal {
        match said(&reply(client)) {
            Reply::Refused(why) => why,
            other => panic!("not a refusal: {other:?}"),
        }
    }

    fn received(reply: &str, len: u64) -> bool {
        matches!(said(reply), Reply::Received { len: l, .. } if l == len)
    }

    #[test]
    fn the_longest_waiting_is_let_go_busy() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let mut inside = Inside::open().expect("a room");
        let mut clients = Vec::new();
        for _ in 0..3 {
            let (client, server) = pair(&listener);
            let conn = waiting(&inside, server);
            inside.admit(conn, Instant::now());
            clients.push(client);
        }
        assert!(inside.let_one_go(Instant::now()));
        assert_eq!(inside.waiting.len(), 2);
        assert_eq!(refusal(&mut clients[0]), Refusal::Busy);
    }

    #[test]
    fn the_oldest_is_answered_instead_if_its_message_has_come() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let mut inside = Inside::open().expect("a room");
        let (mut oldest, server) = pair(&listener);
        let first = waiting(&inside, server);
        inside.admit(first, Instant::now());
        oldest.write_all(b"hola\n").expect("sends");
        oldest.shutdown(Shutdown::Write).expect("shuts down");
        // Not read yet by the room: letting it go finds it waiting.
        assert!(inside.let_one_go(Instant::now()));
        let reply = reply(&mut oldest);
        assert!(received(&reply, 4), "{reply}");
    }

    #[test]
    fn nobody_is_let_go_for_a_worker_that_gave_up_however_late_the_room_reads() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let mut inside = Inside::open().expect("a room");
        let (_client, server) = pair(&listener);
        let conn = waiting(&inside, server);
        inside.admit(conn, Instant::now());
        let (given_up, _) = mpsc::channel();
        let long_ago = Instant::now().checked_sub(FREE_WAIT).expect("a past instant");
        inside.room.asks.send(Ask::Free(long_ago, given_up)).expect("the room's inbox");
        inside.take_inbox(Instant::now());
        inside.pay_owed(Instant::now());
        assert_eq!(inside.waiting.len(), 1, "let go for a worker that gave up");
        let (waits, freed) = mpsc::channel();
        inside.room.asks.send(Ask::Free(Instant::now(), waits)).expect("the room's inbox");
        inside.take_inbox(Instant::now());
        inside.pay_owed(Instant::now());
        assert!(freed.try_recv().is_ok() && inside.waiting.is_empty(), "one that waits is paid");
    }

    #[test]
    fn a_lingering_connection_goes_first() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let mut inside = Inside::open().expect("a room");
        let (_answered, lingering) = pair(&listener);
        inside.linger(Held::briefly(lingering), Instant::now());
        let (mut oldest, server) = pair(&listener);
        let first = waiting(&inside, server);
        inside.admit(first, Instant::now());
        assert!(inside.let_one_go(Instant::now()));
        assert_eq!((inside.lingering.len(), inside.waiting.len()), (0, 1));
        assert!(inside.let_one_go(Instant::now()), "a waiting one can go");
        assert_eq!(refusal(&mut oldest), Refusal::Busy);
        assert!(!inside.let_one_go(Instant::now()), "none left");
    }

    #[test]
    fn at_the_end_of_the_grace_those_waiting_are_told() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let mut inside = Inside::open().expect("a room");
        let (mut client, server) = pair(&listener);
        client.write_all(b"ho").expect("sends");
        let conn = waiting(&inside, server);
        inside.admit(conn, Instant::now());
        inside.finish_by = Some(Instant::now());
        inside.on_timers(Instant::now());
        assert_eq!(refusal(&mut client), Refusal::ShuttingDown);
    }

    #[test]
    fn a_message_that_arrives_in_the_room_is_answered_there_and_leaves_no_timer() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        let mut inside = Inside::open().expect("a room");
        let (mut client, server) = pair(&listener);
        let conn = waiting(&inside, server);
        inside.admit(conn, Instant::now());
        assert_eq!(inside.timers.len(), 1, "the deadline");
        client.write_all(b"hola\n").expect("sends");
        let mut ready = Vec::new();
        while inside.waiting.len() == 1 {
            inside.poller.wait(Some(Duration::from_secs(10)), &mut ready).expect("waits");
            for &token in &ready {
                inside.look_at(token, Instant::now());
            }
        }
        let reply = reply(&mut client);
        assert!(received(&reply, 4), "{reply}");
        assert!(inside.timers.is_empty(), "{:?}", inside.timers);
    }
}
