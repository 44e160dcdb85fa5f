//! Answering a connection whose reading has finished: stamp the message,
//! write its log line, reply, and say how to close. Whoever read it (a
//! worker or the waiting room) hands the [`Finished`] here and the result
//! to the closer; nothing here waits on a client.

use super::errors::{ErrorLines, Kind};
use super::log::{Log, Stats};
use super::reading::{Finished, Message};
use crate::framing::Arrival;
use crate::protocol::{self, Refusal};
use crate::timestamp::{Rfc3339, Timestamp};
use crate::{diag, platform};
use std::fmt;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// A reader keeps at most this much message buffer between exchanges.
const KEEP_CAPACITY: usize = 16 * 1024;

/// What to do with a connection once its last line is sent.
#[derive(Debug)]
pub(crate) enum Closing {
    /// Close it now (dropping the stream does).
    Now(TcpStream),
    /// The client may still be sending: shut our side, drain what comes for
    /// a while, then close, so that a reset cannot destroy the last line.
    Linger(TcpStream),
}

/// One connection in progress, from accept to its last line: dropping it
/// ends the count.
#[derive(Debug)]
pub(crate) struct Ticket(Arc<AtomicUsize>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Buffers one reader reuses from exchange to exchange.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    pub message: Vec<u8>,
    line: String,
}

impl Scratch {
    /// The message buffer, to lend to the next reading.
    pub fn lend(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.message)
    }

    /// Takes a message buffer back; a rare huge one is let go.
    pub fn keep(&mut self, mut buffer: Vec<u8>) {
        if buffer.capacity() <= KEEP_CAPACITY {
            buffer.clear();
            self.message = buffer;
        }
    }
}

/// Everything an exchange needs that is shared by all connections.
#[derive(Debug)]
pub(crate) struct Service {
    log: Log,
    errors: Arc<ErrorLines>,
    pub stats: Stats,
    in_progress: Arc<AtomicUsize>,
}

impl Service {
    /// The service, with the helper thread that ends each second of errors.
    pub fn new(log: Log) -> Self {
        Service {
            log,
            errors: ErrorLines::start(),
            stats: Stats::new(),
            in_progress: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Counts a connection in progress until the ticket is dropped.
    pub fn ticket(&self) -> Ticket {
        self.in_progress.fetch_add(1, Relaxed);
        Ticket(Arc::clone(&self.in_progress))
    }

    /// Connections in progress now, from any thread.
    pub fn in_progress(&self) -> impl Fn() -> usize + Send + 'static {
        let count = Arc::clone(&self.in_progress);
        move || count.load(Relaxed)
    }

    /// The exchange log, for its dropped lines and the flush on exit.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The error counts by kind, for the metrics.
    pub fn errors(&self) -> &ErrorLines {
        &self.errors
    }

    /// Writes the counts of error lines not yet shown, before the summary.
    pub fn end_error_second(&self) {
        self.errors.end_second();
    }

    /// Answers what reading `stream` finished with.
    pub fn answer(&self, stream: TcpStream, finished: Finished, scratch: &mut Scratch) -> Closing {
        match finished {
            Finished::Message(message) => self.reply(stream, message, scratch),
            Finished::Refused { client, why, cause } => {
                let shown: &dyn fmt::Display = match &cause {
                    Some(cause) => cause,
                    None => &why,
                };
                self.count_error(kind_of(&why), client, shown);
                send(&stream, &mut scratch.line, &why);
                Closing::Linger(stream)
            }
            Finished::HealthCheck { peer } => {
                if self.stats.checks.fetch_add(1, Relaxed) == 0 {
                    diag::say(format_args!(
                        "{peer}: health checks, counted apart and not logged"
                    ));
                }
                Closing::Now(stream)
            }
            Finished::Failed {
                client,
                what,
                error,
            } => {
                self.fail(client, what, &error);
                Closing::Now(stream)
            }
        }
    }

    /// The log line goes out before the reply, so that every reply a
    /// client saw has its line, even after `kill -9`.
    fn reply(&self, stream: TcpStream, message: Message, scratch: &mut Scratch) -> Closing {
        let Some(stamp) = stamp(message.at) else {
            scratch.keep(message.bytes);
            let why = Refusal::ClockOutOfRange;
            self.count_error(Kind::Clock, message.client, &why);
            send(&stream, &mut scratch.line, &why);
            return Closing::Linger(stream);
        };
        let line = &mut scratch.line;
        self.log
            .exchange(line, &stamp, message.client, &message.bytes);
        line.clear();
        protocol::write_received(line, message.bytes.len(), &stamp);
        let written = (&stream).write_all(line.as_bytes());
        let closing = match written {
            Ok(()) => {
                self.stats.served.fetch_add(1, Relaxed);
                let took = message.at.mono.elapsed();
                self.stats.reply_latency.observe(took);
                if message.ending.more_may_come() {
                    Closing::Linger(stream)
                } else {
                    Closing::Now(stream)
                }
            }
            Err(e) => {
                self.fail(message.client, "reply not delivered", &e);
                Closing::Now(stream)
            }
        };
        scratch.keep(message.bytes);
        closing
    }

    /// Tells a connection that cannot be served why, without waiting for
    /// it: what it already sent is read, so that it is not reset, but it
    /// gets no linger. `Busy` and `ShuttingDown` only.
    // Owned: turning a connection away closes it when this returns.
    #[allow(clippy::needless_pass_by_value)]
    pub fn turn_away(&self, stream: TcpStream, client: SocketAddr, why: &Refusal) {
        match why {
            Refusal::Busy => self.count_error(Kind::Busy, client, why),
            _ => {
                self.stats.told_shutting_down.fetch_add(1, Relaxed);
            }
        }
        let mut line = String::new();
        if send(&stream, &mut line, why) {
            let _ = stream.shutdown(Shutdown::Write);
            let mut sink = [0u8; 1024];
            while matches!(platform::receive_now(&stream, &mut sink), Ok(got) if got.len > 0) {}
        }
    }

    /// Counts an error of `kind` (the summary and the metrics read the
    /// count from the error lines) and reports it.
    fn count_error(&self, kind: Kind, client: SocketAddr, cause: &dyn fmt::Display) {
        self.errors.report(kind, format_args!("{client}: {cause}"));
    }

    fn fail(&self, client: SocketAddr, what: &str, error: &io::Error) {
        self.count_error(Kind::Failed, client, &format_args!("{what}: {error}"));
    }
}

/// Writes `error: why`; true if it went out whole.
fn send(stream: &TcpStream, line: &mut String, why: &Refusal) -> bool {
    line.clear();
    protocol::write_refusal(line, why);
    let mut writer = stream;
    writer.write_all(line.as_bytes()).is_ok()
}

fn kind_of(why: &Refusal) -> Kind {
    match why {
        Refusal::Deadline { .. } => Kind::Deadline,
        Refusal::TooLong { .. } => Kind::TooLong,
        Refusal::ClockOutOfRange => Kind::Clock,
        Refusal::UntrustedProxy | Refusal::NoProxyHeader => Kind::Proxy,
        Refusal::Busy => Kind::Busy,
        Refusal::ShuttingDown => Kind::Failed,
    }
}

/// The message's arrival as RFC 3339 text, or `None` if the clock is
/// outside what it can write.
fn stamp(at: Arrival) -> Option<Rfc3339> {
    Some(Timestamp::from_system_time(at.wall)?.to_rfc3339())
}
