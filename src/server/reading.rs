//! Reading one connection's request: with the PROXY protocol, its header
//! first, then the message under the framing rules. [`Reading`] is a
//! [`Machine`], so a worker blocking on the socket and the waiting room
//! polling it drive the same code, and it finishes with a [`Finished`]:
//! a message to answer, or why there is none. Nothing here touches the
//! socket; the address the exchange is for is decided here, once.

use super::proxy::{self, Header, Parsed, MAX_HEADER};
use crate::addr::Cidr;
use crate::framing::{Arrival, Ending, Framer, Machine, Outcome, Progress, Rules};
use crate::protocol::Refusal;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

/// A complete message, ready to be stamped and answered.
#[derive(Debug)]
pub(crate) struct Message {
    pub bytes: Vec<u8>,
    pub ending: Ending,
    /// When its last byte arrived.
    pub at: Arrival,
    /// Who the exchange is for: the peer, or the client its PROXY header named.
    pub client: SocketAddr,
}

/// How reading a connection ended.
#[derive(Debug)]
pub(crate) enum Finished {
    Message(Message),
    /// The client is told `error: ...`; `cause` is the more precise reason
    /// for the operator, when there is one.
    Refused {
        client: SocketAddr,
        why: Refusal,
        cause: Option<proxy::Invalid>,
    },
    /// A balancer's own connection (a v2 LOCAL header, say) that closed or
    /// failed before any message byte: counted apart, not logged.
    HealthCheck {
        peer: SocketAddr,
    },
    /// The connection failed; nothing can be sent.
    Failed {
        client: SocketAddr,
        what: &'static str,
        error: io::Error,
    },
}

/// Where the reading of a connection is.
#[derive(Debug)]
enum Stage {
    /// Waiting for the PROXY header; `bytes` is what came so far.
    Header {
        bytes: Vec<u8>,
    },
    Message(Framer),
}

/// The request of one connection, being read.
#[derive(Debug)]
pub(crate) struct Reading {
    stage: Stage,
    rules: Rules,
    started: Instant,
    peer: SocketAddr,
    client: SocketAddr,
    /// The header said the balancer connects for itself.
    own: bool,
    /// Lent by a worker to hold the message, until the header is read.
    buffer: Vec<u8>,
}

impl Reading {
    /// Starts reading a connection from `peer` accepted at `started`.
    /// With `proxy_from`, a header must come first, and only from those
    /// addresses: anyone else is refused at once.
    pub fn start(
        peer: SocketAddr,
        started: Instant,
        rules: &Rules,
        proxy_from: Option<&[Cidr]>,
        buffer: Vec<u8>,
    ) -> Result<Reading, Finished> {
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let trusted = proxy_from.map(|ranges| ranges.iter().any(|r| r.contains(peer.ip())));
        let (stage, buffer) = match trusted {
            None => (
                Stage::Message(Framer::new(rules, started, buffer)),
                Vec::new(),
            ),
            Some(true) => (Stage::Header { bytes: Vec::new() }, buffer),
            Some(false) => {
                return Err(Finished::Refused {
                    client: peer,
                    why: Refusal::UntrustedProxy,
                    cause: None,
                })
            }
        };
        Ok(Reading {
            stage,
            rules: *rules,
            started,
            peer,
            client: peer,
            own: false,
            buffer,
        })
    }

    /// Who the exchange is for, as far as is known yet.
    pub fn client(&self) -> SocketAddr {
        self.client
    }

    /// The message buffer back, for the worker to reuse, if it has one.
    pub fn into_buffer(self) -> Vec<u8> {
        match self.stage {
            Stage::Message(framer) => framer.into_message(),
            Stage::Header { .. } => self.buffer,
        }
    }

    fn refused(&self, why: Refusal, cause: Option<proxy::Invalid>) -> Finished {
        Finished::Refused {
            client: self.client,
            why,
            cause,
        }
    }

    /// Bytes while the header is awaited: on a complete header, what came
    /// after it is the message's first bytes.
    fn feed_header(&mut self, bytes: &[u8], at: Arrival) -> Progress<Finished> {
        let Stage::Header { bytes: so_far } = &mut self.stage else {
            return Progress::Pending;
        };
        if bytes.is_empty() {
            let error = io::ErrorKind::UnexpectedEof.into();
            return Progress::Done(self.header_failed(error));
        }
        let room = MAX_HEADER.saturating_sub(so_far.len());
        so_far.extend_from_slice(&bytes[..bytes.len().min(room)]);
        let (header, len) = match proxy::parse(so_far) {
            Parsed::Complete { header, len } => (header, len),
            Parsed::Invalid(why) => {
                return Progress::Done(self.refused(Refusal::NoProxyHeader, Some(why)))
            }
            Parsed::Incomplete if so_far.len() >= MAX_HEADER => {
                let why = proxy::Invalid::TooLong;
                return Progress::Done(self.refused(Refusal::NoProxyHeader, Some(why)));
            }
            Parsed::Incomplete => return Progress::Pending,
        };
        // The message's first bytes: after the header, and past what the
        // header's buffer took of this same read.
        let mut rest = so_far.split_off(len);
        rest.extend_from_slice(&bytes[bytes.len().min(room)..]);
        match header {
            Header::Relayed { client } if client != self.peer => {
                self.client = SocketAddr::new(client.ip().to_canonical(), client.port());
            }
            Header::Relayed { .. } | Header::Own => self.own = true,
        }
        let buffer = std::mem::take(&mut self.buffer);
        self.stage = Stage::Message(Framer::new(&self.rules, self.started, buffer));
        if rest.is_empty() {
            return Progress::Pending;
        }
        self.feed_message(&rest, at)
    }

    fn deadline_refusal(&self) -> Refusal {
        Refusal::Deadline {
            limit: self.rules.deadline,
        }
    }

    fn header_failed(&self, error: io::Error) -> Finished {
        Finished::Failed {
            client: self.peer,
            what: "connection failed before its PROXY header",
            error,
        }
    }

    fn feed_message(&mut self, bytes: &[u8], at: Arrival) -> Progress<Finished> {
        let Stage::Message(framer) = &mut self.stage else {
            return Progress::Pending;
        };
        match framer.feed(bytes, at) {
            Progress::Pending => Progress::Pending,
            Progress::Done(outcome) => Progress::Done(self.conclude(outcome)),
        }
    }

    /// What a finished framing means for this connection.
    fn conclude(&mut self, outcome: Outcome) -> Finished {
        let Stage::Message(framer) = &mut self.stage else {
            return self.refused(self.deadline_refusal(), None);
        };
        let health_check = self.own
            && match &outcome {
                Outcome::Failed(_) => true,
                Outcome::Message {
                    ending: Ending::Eof,
                    ..
                } => framer.message().is_empty(),
                _ => false,
            };
        if health_check {
            return Finished::HealthCheck { peer: self.peer };
        }
        match outcome {
            Outcome::Message { ending, at } => Finished::Message(Message {
                bytes: framer.take_message(),
                ending,
                at,
                client: self.client,
            }),
            Outcome::TooLong => self.refused(
                Refusal::TooLong {
                    max_bytes: self.rules.max_len,
                },
                None,
            ),
            Outcome::Deadline => self.refused(self.deadline_refusal(), None),
            Outcome::NoMemory => self.refused(Refusal::Busy, None),
            Outcome::Failed(error) => Finished::Failed {
                client: self.client,
                what: "connection failed before the message ended",
                error,
            },
        }
    }
}

impl Machine for Reading {
    type Done = Finished;

    fn feed(&mut self, bytes: &[u8], at: Arrival) -> Progress<Finished> {
        if let Progress::Done(done) = self.on_timer(at.mono) {
            return Progress::Done(done);
        }
        match self.stage {
            Stage::Header { .. } => self.feed_header(bytes, at),
            Stage::Message(_) => self.feed_message(bytes, at),
        }
    }

    fn next_wake(&self) -> Instant {
        match &self.stage {
            Stage::Header { .. } => self.started + self.rules.deadline,
            Stage::Message(framer) => framer.next_wake(),
        }
    }

    fn on_timer(&mut self, now: Instant) -> Progress<Finished> {
        match &mut self.stage {
            Stage::Header { .. } if now >= self.started + self.rules.deadline => {
                Progress::Done(self.refused(self.deadline_refusal(), None))
            }
            Stage::Header { .. } => Progress::Pending,
            Stage::Message(framer) => match framer.on_timer(now) {
                Progress::Pending => Progress::Pending,
                Progress::Done(outcome) => Progress::Done(self.conclude(outcome)),
            },
        }
    }

    fn fail(&mut self, error: io::Error) -> Finished {
        match self.stage {
            Stage::Header { .. } => self.header_failed(error),
            Stage::Message(_) => self.conclude(Outcome::Failed(error)),
        }
    }
}
