//! One exchange on one connection, top to bottom: read the message, stamp
//! it, log it, reply, close.

use super::closer::Closer;
use super::connection::{Connection, HeaderFailure};
use super::errors::{ErrorLines, Kind};
use super::log::{Burst, Log, Stats};
use super::pool::SlowWatch;
use super::proxy::Header;
use crate::addr::Cidr;
use crate::diag;
use crate::framing::{Ending, Outcome, Rules};
use crate::protocol;
use crate::protocol::Refusal;
use crate::timestamp::{Rfc3339, Timestamp};
use crate::words::counted;
use std::fmt;
use std::io;
use std::io::Write as _;
use std::net::SocketAddr;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// While more than this share of `max_conns` is in progress, and at least
/// [`CROWD`] exchanges, new exchanges get a tenth of the deadline, so that
/// slow clients hogging the server are shed faster.
const CROWDED_NUMERATOR: usize = 3;
const CROWDED_DENOMINATOR: usize = 4;
/// The fewest exchanges in progress that count as a crowd: with a small
/// `--max-conns`, three quarters of it is no crowd at all.
const CROWD: usize = 8;

/// Everything an exchange needs that is shared by all connections.
#[derive(Debug)]
pub(crate) struct Service {
    rules: Rules,
    max_conns: usize,
    /// With the PROXY protocol: who may send a header.
    proxy_from: Option<Vec<Cidr>>,
    log: Log,
    errors: Arc<ErrorLines>,
    closer: Arc<Closer>,
    pub stats: Stats,
    in_progress: AtomicUsize,
    busy: Burst,
    /// Set when shutdown's grace period is over: exchanges still reading
    /// are told the server is shutting down.
    cut: AtomicBool,
}

impl Service {
    /// The service, with its two helper threads (error counts, closer).
    pub fn new(
        rules: Rules,
        max_conns: usize,
        proxy_from: Option<Vec<Cidr>>,
        log: Log,
    ) -> io::Result<Self> {
        Ok(Service {
            rules,
            max_conns,
            proxy_from,
            log,
            errors: ErrorLines::start(),
            closer: Closer::start()?,
            stats: Stats::new(),
            in_progress: AtomicUsize::new(0),
            busy: Burst::default(),
            cut: AtomicBool::new(false),
        })
    }

    /// Runs the whole exchange on a freshly accepted connection.
    pub fn serve(&self, mut conn: Connection<'_>, watch: Option<SlowWatch<'_>>) {
        let in_progress = self.in_progress.fetch_add(1, Relaxed) + 1;
        if in_progress > self.max_conns {
            self.refuse_busy(&mut conn);
        } else {
            self.note_not_busy();
            self.exchange(&mut conn, &self.rules_when(in_progress), watch);
        }
        self.in_progress.fetch_sub(1, Relaxed);
    }

    /// Exchanges in progress now.
    pub fn in_progress(&self) -> usize {
        self.in_progress.load(Relaxed)
    }

    /// Ends the grace period: exchanges still reading will be cut short.
    pub fn cut_short(&self) {
        self.cut.store(true, Relaxed);
    }

    /// Answers a connection accepted while stopping, without reading it.
    pub fn tell_shutting_down(&self, stream: TcpStream) {
        self.stats.told_shutting_down.fetch_add(1, Relaxed);
        let mut line = String::new();
        protocol::write_refusal(&mut line, &Refusal::ShuttingDown);
        if (&stream).write_all(line.as_bytes()).is_ok() {
            self.closer.close(stream);
        }
    }

    /// Writes the counts of error lines not yet shown, before the summary.
    pub fn end_error_second(&self) {
        self.errors.end_second();
    }

    /// The exchange log, for its dropped lines and the flush on exit.
    pub fn log(&self) -> &Log {
        &self.log
    }

    fn rules_when(&self, in_progress: usize) -> Rules {
        let crowded = in_progress >= CROWD
            && in_progress * CROWDED_DENOMINATOR > self.max_conns * CROWDED_NUMERATOR;
        if crowded {
            Rules {
                deadline: self.rules.deadline / 10,
                ..self.rules
            }
        } else {
            self.rules
        }
    }

    fn exchange(&self, conn: &mut Connection<'_>, rules: &Rules, mut watch: Option<SlowWatch<'_>>) {
        let mut read_rules = *rules;
        let mut own = false;
        if let Some(trusted) = &self.proxy_from {
            let until = Instant::now() + rules.deadline;
            let Some(header) = self.proxy_header(conn, trusted, until, &mut watch, rules) else {
                return;
            };
            own = header == Header::Own;
            read_rules.deadline = until.saturating_duration_since(Instant::now());
        }
        let outcome = conn.read(&read_rules, &mut watch);
        if self.cut.load(Relaxed) {
            self.stats.told_shutting_down.fetch_add(1, Relaxed);
            conn.refuse(&Refusal::ShuttingDown, &self.closer);
            return;
        }
        if own && is_health_check(&outcome, conn) {
            if self.stats.checks.fetch_add(1, Relaxed) == 0 {
                diag::info(format_args!(
                    "{}: health checks, counted apart and not logged",
                    conn.peer
                ));
            }
            return;
        }
        match outcome {
            Outcome::Message { ending, at } => match stamp(at) {
                Some(stamp) => self.answer(conn, &stamp, ending),
                None => self.refuse(conn, &Refusal::ClockOutOfRange),
            },
            Outcome::TooLong => self.refuse(
                conn,
                &Refusal::TooLong {
                    max_bytes: rules.max_len,
                },
            ),
            Outcome::Deadline => self.refuse(
                conn,
                &Refusal::Deadline {
                    limit: rules.deadline,
                },
            ),
            Outcome::Failed(e) => {
                self.fail(
                    conn.client,
                    "connection failed before the message ended",
                    &e,
                );
            }
        }
    }

    /// Reads the PROXY header of a connection from a trusted source; the
    /// client it names is the one logged. `None`: refused, nothing to read.
    fn proxy_header(
        &self,
        conn: &mut Connection<'_>,
        trusted: &[Cidr],
        until: Instant,
        watch: &mut Option<SlowWatch<'_>>,
        rules: &Rules,
    ) -> Option<Header> {
        if !trusted.iter().any(|range| range.contains(conn.peer.ip())) {
            self.refuse(conn, &Refusal::UntrustedProxy);
            return None;
        }
        match conn.read_header(until, watch) {
            Ok(Header::Relayed { client }) if client == conn.peer => Some(Header::Own),
            Ok(Header::Relayed { client }) => {
                conn.client = SocketAddr::new(client.ip().to_canonical(), client.port());
                Some(Header::Relayed { client })
            }
            Ok(Header::Own) => Some(Header::Own),
            Err(HeaderFailure::Invalid(why)) => {
                self.refuse_because(conn, &Refusal::NoProxyHeader, &why);
                None
            }
            Err(HeaderFailure::Deadline) => {
                let limit = rules.deadline;
                self.refuse(conn, &Refusal::Deadline { limit });
                None
            }
            Err(HeaderFailure::Closed(e)) => {
                self.fail(conn.peer, "connection failed before its PROXY header", &e);
                None
            }
        }
    }

    /// The log line goes out before the reply, so that every reply a
    /// client saw has its line, even after `kill -9`.
    fn answer(&self, conn: &mut Connection<'_>, stamp: &Rfc3339, ending: Ending) {
        conn.log_exchange(&self.log, stamp);
        let more_coming = ending == Ending::Newline { trailing: true };
        match conn.reply(stamp, more_coming, &self.closer) {
            Ok(()) => {
                self.stats.served.fetch_add(1, Relaxed);
            }
            Err(e) => self.fail(conn.client, "reply not delivered", &e),
        }
    }

    fn refuse(&self, conn: &mut Connection<'_>, why: &Refusal) {
        self.refuse_because(conn, why, why);
    }

    /// Refuses with `why`, logging the more precise `cause`.
    fn refuse_because(&self, conn: &mut Connection<'_>, why: &Refusal, cause: &dyn fmt::Display) {
        self.stats.errors.fetch_add(1, Relaxed);
        let kind = match why {
            Refusal::Deadline { .. } => Kind::Deadline,
            Refusal::TooLong { .. } => Kind::TooLong,
            Refusal::ClockOutOfRange => Kind::Clock,
            Refusal::UntrustedProxy | Refusal::NoProxyHeader => Kind::Proxy,
            // Never here: busy refusals are reported once per burst, and
            // shutdown's are counted apart.
            Refusal::Busy | Refusal::ShuttingDown => Kind::Failed,
        };
        self.errors
            .report(kind, format_args!("{}: {cause}", conn.client));
        conn.refuse(why, &self.closer);
    }

    fn refuse_busy(&self, conn: &mut Connection<'_>) {
        self.stats.busy.fetch_add(1, Relaxed);
        if self.busy.fail() {
            diag::error(format_args!(
                "busy: {} in progress, refusing new connections (first: {})",
                counted(self.max_conns as u64, "exchange", "exchanges"),
                conn.peer
            ));
        }
        conn.refuse_busy();
    }

    fn note_not_busy(&self) {
        if let Some(refused) = self.busy.succeed() {
            diag::error(format_args!(
                "no longer busy, after refusing {}",
                counted(refused, "connection", "connections")
            ));
        }
    }

    fn fail(&self, peer: SocketAddr, what: &str, error: &io::Error) {
        self.stats.errors.fetch_add(1, Relaxed);
        self.errors
            .report(Kind::Failed, format_args!("{peer}: {what}: {error}"));
    }
}

/// A balancer's health check: its own connection (a v2 LOCAL header, say)
/// that closes or resets before sending any message byte.
fn is_health_check(outcome: &Outcome, conn: &Connection<'_>) -> bool {
    match outcome {
        Outcome::Failed(_) => true,
        Outcome::Message {
            ending: Ending::Eof,
            ..
        } => conn.message_is_empty(),
        _ => false,
    }
}

/// The wall-clock time at which `at` (a monotonic instant) happened, or
/// `None` if the clock is outside what RFC 3339 can write.
fn stamp(at: Instant) -> Option<Rfc3339> {
    let arrived = SystemTime::now().checked_sub(at.elapsed())?;
    Some(Timestamp::from_system_time(arrived)?.to_rfc3339())
}
