//! The protocol's rules (README.md, "The protocol in five rules") end to
//! end: seeded client scripts against the real serv6, each reply checked
//! against a model of the rules.
//!
//! A script waits before its first byte, on both sides of the 1 ms after
//! which a worker hands a connection to the waiting room; sends its message
//! in one to three chunks, with gaps well below the pause; and ends it with
//! an LF, by shutting down its sending side (EOF), or not at all (the pause
//! ends it). Behind `--proxy-protocol`, a PROXY header goes first, at once.
//! The model: the reply counts the message's bytes; it comes promptly after
//! an LF or EOF, and a pause after the last byte otherwise; its time lies
//! between the last byte's send and the reply's arrival.
//!
//! Seeds 1 to [`CASES`] run by default. A failure prints each failing
//! script and its seed: `RULES_SEED=n` replays that one script, and
//! `RULES_SEED=a..b` runs seeds a to b, for a longer search.

use crate::harness::rng::XorShift;
use crate::harness::*;
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// Scripts per test by default: about 15 s at [`CLIENTS`] at a time.
const CASES: u64 = 400;
/// Clients at a time, each on its own connection.
const CLIENTS: usize = 4;
/// The pause that ends a message, given to serv6 (its default).
const PAUSE: &str = "0.2";
/// How soon a reply to an LF or EOF comes after it was sent.
const PROMPT: Duration = Duration::from_millis(100);
/// When a reply to a pause comes after the last byte was sent: the pause
/// (200 ms), less a little for the clocks, plus a loaded machine's margin.
const PAUSED: (Duration, Duration) = (Duration::from_millis(190), Duration::from_millis(450));
/// How long a client waits for its reply after its last step, at most: a
/// reply that has not come by then fails, rather than being waited for
/// until the deadline (10 s), so that a broken server fails the test soon.
const GIVE_UP: Duration = Duration::from_secs(1);
/// How far before the last byte's send the reply's time may be: the
/// kernel's clock against ours.
const SKEW: Duration = Duration::from_millis(2);
/// How long after the send of the step that ended the message (the LF, the
/// shutdown, the last byte before a pause) the reply's time may be: the
/// kernel stamps bytes on arrival, on loopback at once, so a server that
/// stamped a pause when it ran out, 200 ms later, is told apart.
const STAMP_LATE: Duration = Duration::from_millis(50);
/// A gap between two steps longer than this (a loaded machine oversleeping
/// a script's 60 ms) may be taken for a pause: the case is void, not judged.
const VOID_GAP: Duration = Duration::from_millis(150);
/// Waits before the first byte, in µs: around the 1 ms hand-over to the
/// waiting room, and well past it.
const WAITS_US: [u64; 10] = [0, 500, 1000, 1500, 2000, 3000, 5000, 20_000, 100_000, 150_000];
/// Longest gap between two steps of a message, in µs.
const GAP_US: u64 = 60_000;
/// Longest message, in bytes.
const LONGEST: u64 = 20;
/// A PROXY protocol v1 header, as HAProxy sends it.
const PROXY_V1: &[u8] = b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 5006\r\n";

/// How a script ends its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Lf,
    CrLf,
    Eof,
    Pause,
}

/// What one step of a script does, after its wait.
enum Send {
    Bytes(Vec<u8>),
    Shutdown,
}

struct Step {
    after: Duration,
    send: Send,
}

/// One client: a PROXY header or none, then its steps.
struct Script {
    /// Which script: its seed, for a replay.
    name: String,
    header: Option<(&'static str, Vec<u8>)>,
    steps: Vec<Step>,
    end: End,
    /// The message's length: what the reply must count.
    len: usize,
}

/// A PROXY protocol v2 header for TCP over IPv4, 192.0.2.1:1234 to
/// 192.0.2.2:5006.
fn proxy_v2() -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 1, 192, 0, 2, 2]);
    header.extend_from_slice(&1234u16.to_be_bytes());
    header.extend_from_slice(&5006u16.to_be_bytes());
    header
}

/// A wait of at most `max_us`: two times in three one of [`WAITS_US`],
/// otherwise any.
fn wait(rng: &mut XorShift, max_us: u64) -> Duration {
    let listed: Vec<u64> = WAITS_US.into_iter().filter(|&w| w <= max_us).collect();
    let us = match rng.below(3) {
        0 => rng.below(max_us + 1),
        _ => listed[rng.below(listed.len() as u64) as usize],
    };
    Duration::from_micros(us)
}

fn gap(rng: &mut XorShift) -> Duration {
    Duration::from_micros(rng.below(GAP_US + 1))
}

/// `wire` in one to three chunks, none empty; the first after `first`.
fn chunks(rng: &mut XorShift, wire: &[u8], first: Duration) -> Vec<Step> {
    let pieces = (1 + rng.below(3) as usize).min(wire.len());
    let mut cuts = std::collections::BTreeSet::new();
    while cuts.len() + 1 < pieces {
        cuts.insert(1 + rng.below(wire.len() as u64 - 1) as usize);
    }
    let mut bounds = vec![0];
    bounds.extend(cuts);
    bounds.push(wire.len());
    let mut after = first;
    let mut steps = Vec::new();
    for span in bounds.windows(2).filter(|span| span[0] < span[1]) {
        let send = Send::Bytes(wire[span[0]..span[1]].to_vec());
        steps.push(Step { after, send });
        after = gap(rng);
    }
    steps
}

impl Script {
    /// A client that connects, waits up to 150 ms, then sends its message.
    fn plain(seed: u64) -> Script {
        let mut rng = XorShift::new(seed);
        let first = wait(&mut rng, 150_000);
        Script::with_message(seed, &mut rng, None, first)
    }

    /// A client behind a proxy: a v1 or v2 header at once, then a wait of
    /// up to 100 ms, then its message.
    fn proxied(seed: u64) -> Script {
        let mut rng = XorShift::new(seed);
        let header = match rng.below(2) {
            0 => ("PROXY v1", PROXY_V1.to_vec()),
            _ => ("PROXY v2", proxy_v2()),
        };
        let first = wait(&mut rng, 100_000);
        Script::with_message(seed, &mut rng, Some(header), first)
    }

    fn with_message(
        seed: u64,
        rng: &mut XorShift,
        header: Option<(&'static str, Vec<u8>)>,
        first: Duration,
    ) -> Script {
        let end = match rng.below(6) {
            0 => End::Lf,
            1 => End::CrLf,
            2 | 3 => End::Eof,
            _ => End::Pause,
        };
        // Only a message of at least one byte can end with a pause.
        let shortest = u64::from(end == End::Pause);
        let len = (shortest + rng.below(LONGEST + 1 - shortest)) as usize;
        let mut wire: Vec<u8> = (0..len).map(|_| b' ' + rng.below(95) as u8).collect();
        match end {
            End::Lf => wire.push(b'\n'),
            End::CrLf => wire.extend_from_slice(b"\r\n"),
            End::Eof | End::Pause => {}
        }
        let mut steps = chunks(rng, &wire, first);
        if end == End::Eof {
            let after = if steps.is_empty() { first } else { gap(rng) };
            let send = Send::Shutdown;
            steps.push(Step { after, send });
        }
        Script { name: format!("seed {seed}"), header, steps, end, len }
    }
}

impl fmt::Display for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.name)?;
        if let Some((name, _)) = &self.header {
            write!(f, " {name} header,")?;
        }
        for step in &self.steps {
            match &step.send {
                Send::Bytes(bytes) => write!(f, " {:?} \"{}\",", step.after, bytes.escape_ascii())?,
                Send::Shutdown => write!(f, " {:?} shutdown,", step.after)?,
            }
        }
        write!(f, " ended by {:?}: {} bytes", self.end, self.len)
    }
}

/// A moment on both clocks: the monotonic one for delays, the wall clock
/// to compare with the reply's time.
#[derive(Clone, Copy)]
struct Moment {
    mono: Instant,
    wall: SystemTime,
}

impl Moment {
    fn now() -> Moment {
        Moment { mono: Instant::now(), wall: SystemTime::now() }
    }
}

/// What a client saw.
struct Seen {
    /// When each step began, just before its write or shutdown.
    steps: Vec<Moment>,
    /// Why the script could not be played to its end.
    trouble: Option<String>,
    reply: Vec<u8>,
    /// When the reply's first bytes came; `None` if none came in time.
    replied: Option<Moment>,
    /// Whether the server closed the connection after its reply.
    closed: bool,
    /// The connection, still open on the client's side.
    conn: Option<TcpStream>,
}

/// Plays `script` on a new connection to `addr`, then reads the reply
/// for at most [`GIVE_UP`] after the last step.
fn play(addr: SocketAddr, script: &Script) -> Seen {
    let mut seen = Seen {
        steps: Vec::new(),
        trouble: None,
        reply: Vec::new(),
        replied: None,
        closed: false,
        conn: None,
    };
    let mut conn = match TcpStream::connect_timeout(&addr, PATIENCE) {
        Ok(conn) => conn,
        Err(e) => {
            seen.trouble = Some(format!("connect: {e}"));
            return seen;
        }
    };
    // Each chunk leaves at once, not when the previous one is acknowledged.
    let _ = conn.set_nodelay(true);
    if let Some((_, header)) = &script.header {
        seen.trouble = conn.write_all(header).err().map(|e| format!("header: {e}"));
    }
    for step in &script.steps {
        if seen.trouble.is_some() {
            break;
        }
        thread::sleep(step.after);
        seen.steps.push(Moment::now());
        let sent = match &step.send {
            Send::Bytes(bytes) => conn.write_all(bytes),
            Send::Shutdown => conn.shutdown(Shutdown::Write),
        };
        seen.trouble = sent.err().map(|e| format!("step {}: {e}", seen.steps.len()));
    }
    let since = seen.steps.last().map_or(Instant::now(), |m| m.mono);
    read_reply(&mut conn, since + GIVE_UP, &mut seen);
    seen.conn = Some(conn);
    seen
}

/// Reads the reply until EOF, noting when its first bytes came, or until
/// `until`.
fn read_reply(conn: &mut TcpStream, until: Instant, seen: &mut Seen) {
    let mut buf = [0; 256];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || conn.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match conn.read(&mut buf) {
            Ok(0) => {
                seen.closed = true;
                return;
            }
            Ok(n) => {
                seen.replied.get_or_insert_with(Moment::now);
                seen.reply.extend_from_slice(&buf[..n]);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                let said = seen.trouble.take().map_or(String::new(), |t| t + "; ");
                seen.trouble = Some(format!("{said}reading the reply: {e}"));
                return;
            }
        }
    }
}

/// What the model says of one case.
enum Verdict {
    /// As the rules say, with the reply's delay after the last step.
    Pass(Duration),
    /// Not judged: the machine changed the script.
    Void(String),
    Fail(String),
}

fn judge(script: &Script, seen: &Seen) -> Verdict {
    let longest = seen.steps.windows(2).map(|pair| pair[1].mono - pair[0].mono).max();
    if let Some(gap) = longest.filter(|&gap| gap > VOID_GAP) {
        return Verdict::Void(format!("a gap of {gap:?} between two steps"));
    }
    match check(script, seen) {
        Ok(delay) => Verdict::Pass(delay),
        Err(why) => Verdict::Fail(why),
    }
}

/// The model: the count, the delay after the step that ended the message,
/// and the reply's time ([`check_stamp`]).
fn check(script: &Script, seen: &Seen) -> Result<Duration, String> {
    let said = text(&seen.reply);
    if let Some(trouble) = &seen.trouble {
        return Err(format!("{trouble}; the reply: {said:?}"));
    }
    let (Some(ended), Some(replied)) = (seen.steps.last(), seen.replied) else {
        let closed = if seen.closed { "closed" } else { "open" };
        return Err(format!("no reply {GIVE_UP:?} after the last step ({closed})"));
    };
    let delay = replied.mono.saturating_duration_since(ended.mono);
    let at = match reply_of(&seen.reply) {
        Reply::Received { len, at, .. } if seen.closed && len == script.len as u64 => at,
        _ if !seen.closed => return Err(format!("{said:?} after {delay:?}, and no close")),
        _ => return Err(format!("{said:?} after {delay:?}")),
    };
    let (early, late) = match script.end {
        End::Pause => PAUSED,
        End::Lf | End::CrLf | End::Eof => (Duration::ZERO, PROMPT),
    };
    if delay < early || delay > late {
        return Err(format!("{said:?} after {delay:?}, not {early:?} to {late:?}"));
    }
    check_stamp(script, seen, at.to_system_time(), replied.wall)?;
    Ok(delay)
}

/// The reply's time `stamp`: from the last byte's send (the shutdown's,
/// if none) to just after the send of the step that ended the message, and
/// before the reply came.
fn check_stamp(
    script: &Script,
    seen: &Seen,
    stamp: SystemTime,
    replied: SystemTime,
) -> Result<(), String> {
    let ended = seen.steps.last().expect("a step ended the message").wall;
    let sent = script
        .steps
        .iter()
        .rposition(|step| matches!(step.send, Send::Bytes(_)))
        .map_or(ended, |i| seen.steps[i].wall);
    if stamp + SKEW < sent || stamp > replied || stamp > ended + STAMP_LATE {
        return Err(format!(
            "stamped {} from the last byte's send, {} from the end's, {} from the reply",
            apart(stamp, sent),
            apart(stamp, ended),
            apart(stamp, replied)
        ));
    }
    Ok(())
}

/// `a - b` with its sign, for messages.
fn apart(a: SystemTime, b: SystemTime) -> String {
    match a.duration_since(b) {
        Ok(after) => format!("+{after:?}"),
        Err(before) => format!("-{:?}", before.duration()),
    }
}

/// Plays every script, [`CLIENTS`] at a time, and judges each.
fn run(addr: SocketAddr, scripts: &[Script]) -> Vec<Verdict> {
    let next = AtomicUsize::new(0);
    let mut verdicts: Vec<(usize, Verdict)> = thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                scope.spawn(|| {
                    let mut judged = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(script) = scripts.get(i) else {
                            return judged;
                        };
                        judged.push((i, judge(script, &play(addr, script))));
                    }
                })
            })
            .collect();
        clients.into_iter().flat_map(|client| client.join().expect("a client thread")).collect()
    });
    verdicts.sort_by_key(|&(i, _)| i);
    verdicts.into_iter().map(|(_, verdict)| verdict).collect()
}

/// Seeds 1 to [`CASES`], or what `RULES_SEED` says: `n` or `a..b`.
fn seeds() -> RangeInclusive<u64> {
    let Ok(asked) = std::env::var("RULES_SEED") else {
        return 1..=CASES;
    };
    let seed = |s: &str| {
        s.trim().parse::<u64>().unwrap_or_else(|_| panic!("RULES_SEED={asked:?}: wanted n or a..b"))
    };
    match asked.split_once("..") {
        Some((first, last)) => seed(first)..=seed(last),
        None => seed(&asked)..=seed(&asked),
    }
}

/// The fastest and slowest of `delays`, for the summary.
fn span(delays: &[Duration]) -> String {
    match (delays.iter().min(), delays.iter().max()) {
        (Some(least), Some(most)) => format!("{least:.1?} to {most:.1?}"),
        _ => "none".into(),
    }
}

/// Says what happened, and fails with every failing script.
fn report(scripts: &[Script], verdicts: &[Verdict], took: Duration) {
    let (mut failures, mut voids) = (Vec::new(), 0);
    let (mut prompt, mut paused) = (Vec::new(), Vec::new());
    for (script, verdict) in scripts.iter().zip(verdicts) {
        match verdict {
            Verdict::Pass(delay) if script.end == End::Pause => paused.push(*delay),
            Verdict::Pass(delay) => prompt.push(*delay),
            Verdict::Void(why) => {
                voids += 1;
                println!("void, not judged: {script}: {why}");
            }
            Verdict::Fail(why) => failures.push(format!("{script}: {why}")),
        }
    }
    println!(
        "{} scripts in {took:.1?}: {} failed, {voids} void; replies after an LF or EOF: {}, \
         after a pause: {}",
        scripts.len(),
        failures.len(),
        span(&prompt),
        span(&paused)
    );
    // libtest names the thread after the test.
    let test = thread::current().name().unwrap_or("rules").to_owned();
    assert!(
        failures.is_empty(),
        "{} of {} scripts broke the rules; replay one with \
         RULES_SEED=<seed> cargo test --test tests {test} -- --nocapture\n{}",
        failures.len(),
        scripts.len(),
        failures.join("\n")
    );
    assert!(
        voids * 10 <= scripts.len(),
        "{voids} of {} scripts void: the machine is too loaded to judge",
        scripts.len()
    );
}

/// Plays the scripts `make` builds from the seeds against `server`.
fn check_rules(server: &Server, make: fn(u64) -> Script) {
    let scripts: Vec<Script> = seeds().map(make).collect();
    let started = Instant::now();
    let verdicts = run(server.v4(), &scripts);
    report(&scripts, &verdicts, started.elapsed());
}

#[test]
fn generated_clients_get_the_replies_the_rules_say() {
    let server = Server::start(&["--pause", PAUSE]);
    check_rules(&server, Script::plain);
}

#[test]
fn generated_clients_behind_a_proxy_header_get_the_same_replies() {
    let server = Server::start(&["--proxy-protocol", "--pause", PAUSE]);
    check_rules(&server, Script::proxied);
}

/// Five clients at once: each waits 2 to 5 ms after its connect, sends
/// `hola` and lets the pause end it. Returns their connections, still
/// open, and what went wrong.
fn wave(addr: SocketAddr, rng: &mut XorShift, number: u64) -> (Vec<TcpStream>, Vec<String>) {
    let scripts: Vec<Script> = (1..=5)
        .map(|client| Script {
            name: format!("wave {number}, client {client}"),
            header: None,
            steps: vec![Step {
                after: Duration::from_micros(2000 + rng.below(3001)),
                send: Send::Bytes(b"hola".to_vec()),
            }],
            end: End::Pause,
            len: 4,
        })
        .collect();
    let seen: Vec<Seen> = thread::scope(|scope| {
        let clients: Vec<_> =
            scripts.iter().map(|script| scope.spawn(move || play(addr, script))).collect();
        clients.into_iter().map(|client| client.join().expect("a client thread")).collect()
    });
    let mut failures = Vec::new();
    for (script, seen) in scripts.iter().zip(&seen) {
        if let Err(why) = check(script, seen) {
            failures.push(format!("{script}: {why}"));
        }
    }
    (seen.into_iter().filter_map(|s| s.conn).collect(), failures)
}

#[test]
fn max_conns_5_serves_two_waves_of_five_pausing_clients() {
    let server = Server::start(&["--max-conns", "5", "--pause", PAUSE]);
    let mut rng = XorShift::new(5);
    // The first wave keeps its connections open after the replies: the
    // server lingers on them while the second wave comes, and must not
    // count them as waiting for a message.
    let (first, mut failures) = wave(server.v4(), &mut rng, 1);
    let (second, more) = wave(server.v4(), &mut rng, 2);
    failures.extend(more);
    drop((first, second));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
