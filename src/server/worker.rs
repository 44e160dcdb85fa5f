//! What a worker does with a connection it accepted, top to bottom: start
//! reading it, and if the message is complete within the slow-client
//! verdict, answer it and close; if not, hand it to the waiting room and
//! go back to `accept`. A worker never waits on a client for longer.

use super::errors::Kind;
use super::exchange::{Closing, Scratch, Service};
use super::pool::{Job, Pace, TurnAway};
use super::reading::Reading;
use super::room::{Room, Waiting};
use crate::addr::Cidr;
use crate::framing::{drive, Arrival, Machine, Progress, Rules, Source};
use crate::platform;
use crate::protocol::Refusal;
use crate::sync::is_retry;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a message may take before its client counts as slow and waits
/// in the room. A client's message comes with its handshake's last ACK or
/// just after it, so nearly every one is complete at once; this is long
/// enough for one that wrote just after its connect on a loaded machine,
/// and short enough that a flood of silent clients (2000 a second hold
/// two workers' worth) cannot keep the workers from the accept queue.
/// The verdict is on the whole message, not the first bytes, which a
/// trickling client sends at once.
const SLOW_CLIENT: Duration = Duration::from_millis(1);
/// The read size: enough for any ordinary message in one read.
const CHUNK: usize = 4096;

/// The job of serv6's workers.
pub(crate) struct Front {
    pub service: Arc<Service>,
    /// `None` where there is no waiting room (no epoll): workers then read
    /// every message to its end themselves.
    pub room: Option<Arc<Room>>,
    pub rules: Rules,
    /// With the PROXY protocol: who may send a header.
    pub proxy_from: Option<Vec<Cidr>>,
}

/// A worker's buffers, on its own stack but for the message.
pub(crate) struct WorkerScratch {
    exchange: Scratch,
    chunk: [u8; CHUNK],
}

impl Job for Front {
    type Scratch = WorkerScratch;

    fn scratch(&self) -> WorkerScratch {
        WorkerScratch {
            exchange: Scratch::default(),
            chunk: [0; CHUNK],
        }
    }

    fn run(&self, stream: TcpStream, peer: SocketAddr, scratch: &mut WorkerScratch) -> Pace {
        let ticket = self.service.ticket();
        let started = Instant::now();
        let buffer = scratch.exchange.lend();
        let mut reading = match Reading::start(
            peer,
            started,
            &self.rules,
            self.proxy_from.as_deref(),
            buffer,
        ) {
            Ok(reading) => reading,
            Err(refused) => {
                self.answer(stream, refused, scratch);
                return Pace::Quick;
            }
        };
        let progress = match platform::receive_now(&stream, &mut scratch.chunk) {
            Ok(got) => reading.feed(&scratch.chunk[..got.len], Arrival::stamped(got.arrived)),
            Err(e) if is_retry(&e) => Progress::Pending,
            Err(e) => Progress::Done(reading.fail(e)),
        };
        let progress = match progress {
            Progress::Pending => {
                let verdict = self.room.as_ref().map(|_| started + SLOW_CLIENT);
                let mut source = SocketSource { stream: &stream };
                drive(&mut source, &mut reading, &mut scratch.chunk, verdict)
            }
            done @ Progress::Done(_) => done,
        };
        match progress {
            Progress::Done(finished) => {
                scratch.exchange.keep(reading.into_buffer());
                self.answer(stream, finished, scratch);
                Pace::Quick
            }
            Progress::Pending => {
                if let Some(room) = &self.room {
                    room.admit(Waiting {
                        stream,
                        reading,
                        _ticket: ticket,
                    });
                }
                Pace::Slow
            }
        }
    }

    fn turn_away(&self, stream: TcpStream, peer: SocketAddr, why: TurnAway) {
        let why = match why {
            TurnAway::Stopping => Refusal::ShuttingDown,
            TurnAway::NoDescriptors => Refusal::Busy,
        };
        let client = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        self.service.turn_away(stream, client, &why);
    }

    fn free_descriptor(&self) -> bool {
        self.room
            .as_ref()
            .is_some_and(|room| room.free_descriptor())
    }

    fn report(&self, line: std::fmt::Arguments) {
        self.service.errors().report(Kind::Trouble, line);
    }
}

impl Front {
    fn answer(
        &self,
        stream: TcpStream,
        finished: super::reading::Finished,
        scratch: &mut WorkerScratch,
    ) {
        match self.service.answer(stream, finished, &mut scratch.exchange) {
            Closing::Now(stream) => drop(stream),
            Closing::Linger(stream) => match &self.room {
                Some(room) => room.linger(stream),
                None => drop(stream),
            },
        }
    }
}

/// A socket as a framing [`Source`], once a first read found it short:
/// each read waits with `poll`, then takes what is there, with the
/// kernel's arrival time.
struct SocketSource<'a> {
    stream: &'a TcpStream,
}

impl Source for SocketSource<'_> {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn read_within(&mut self, buf: &mut [u8], wait: Duration) -> io::Result<(usize, Arrival)> {
        if wait.is_zero() || platform::wait_readable(self.stream, wait)? {
            let got = platform::receive_now(self.stream, buf)?;
            Ok((got.len, Arrival::stamped(got.arrived)))
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
}
