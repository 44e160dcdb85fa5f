//! One accepted connection and what can be done with it: read the message,
//! write its log line, reply, refuse, close without losing the last line.

use super::closer::Closer;
use super::log::Log;
use super::pool::SlowWatch;
use super::proxy::{self, Header, Parsed, MAX_HEADER};
use crate::framing::{is_retry, read_message, Outcome, Rules, Source};
use crate::protocol::{self, Refusal};
use crate::timestamp::Rfc3339;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The read size: enough for any ordinary message in one read.
const CHUNK: usize = 4096;
/// A worker keeps at most this much message buffer between exchanges.
const KEEP_CAPACITY: usize = 16 * 1024;

/// Buffers one worker reuses from exchange to exchange. It lives on the
/// worker's stack: the heap is touched only once a message arrives, so a
/// silent connection costs no allocation at all.
#[derive(Debug)]
pub(crate) struct Scratch {
    message: Vec<u8>,
    chunk: [u8; CHUNK],
    line: String,
    /// A PROXY protocol header, and whatever came with it.
    header: [u8; MAX_HEADER],
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            message: Vec::new(),
            chunk: [0; CHUNK],
            line: String::new(),
            header: [0; MAX_HEADER],
        }
    }
}

/// Why no PROXY protocol header was read.
#[derive(Debug)]
pub(crate) enum HeaderFailure {
    Invalid(proxy::Invalid),
    Deadline,
    /// The connection ended or failed (EOF is `UnexpectedEof`).
    Closed(io::Error),
}

/// An accepted connection, its client's address and the worker's buffers.
pub(crate) struct Connection<'w> {
    stream: TcpStream,
    /// Who connected, with IPv4-mapped IPv6 addresses shown as IPv4.
    pub peer: SocketAddr,
    /// Who the exchange is for, as logged: the peer, or the client a PROXY
    /// protocol header named.
    pub client: SocketAddr,
    scratch: &'w mut Scratch,
    /// The socket's read timeout, `None` meaning "none, or unknown".
    read_timeout: Option<Duration>,
    /// Bytes of `scratch.header` that came after the header: the message's.
    pending: std::ops::Range<usize>,
}

impl<'w> Connection<'w> {
    /// Wraps an accepted stream; `read_timeout` is the timeout it started
    /// with, if known, so that reading need not set it again.
    pub fn new(
        stream: TcpStream,
        peer: SocketAddr,
        scratch: &'w mut Scratch,
        read_timeout: Option<Duration>,
    ) -> Self {
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        Connection {
            stream,
            peer,
            client: peer,
            scratch,
            read_timeout,
            pending: 0..0,
        }
    }

    /// Reads a PROXY protocol header, which must be complete by `until`.
    /// `watch` is told if the peer turns out slow (see [`SlowWatch`]).
    pub fn read_header(
        &mut self,
        until: Instant,
        watch: &mut Option<SlowWatch<'_>>,
    ) -> Result<Header, HeaderFailure> {
        let mut source = SocketSource {
            stream: &self.stream,
            timeout: &mut self.read_timeout,
            watch,
        };
        let buf = &mut self.scratch.header;
        let mut filled = 0;
        loop {
            let wait = until.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return Err(HeaderFailure::Deadline);
            }
            match source.read_within(&mut buf[filled..], wait) {
                Ok(0) => return Err(HeaderFailure::Closed(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => filled += n,
                Err(e) if is_retry(&e) => continue,
                Err(e) => return Err(HeaderFailure::Closed(e)),
            }
            match proxy::parse(&buf[..filled]) {
                Parsed::Complete { header, len } => {
                    self.pending = len..filled;
                    return Ok(header);
                }
                Parsed::Invalid(why) => return Err(HeaderFailure::Invalid(why)),
                Parsed::Incomplete if filled == buf.len() => {
                    return Err(HeaderFailure::Invalid(proxy::Invalid::TooLong))
                }
                Parsed::Incomplete => {}
            }
        }
    }

    /// Reads the message under `rules`, starting with any bytes that came
    /// with a PROXY header. `watch` is told if the client turns out slow.
    pub fn read(&mut self, rules: &Rules, watch: &mut Option<SlowWatch<'_>>) -> Outcome {
        let socket = SocketSource {
            stream: &self.stream,
            timeout: &mut self.read_timeout,
            watch,
        };
        let scratch = &mut *self.scratch;
        let mut source = Prefixed {
            first: &scratch.header[self.pending.clone()],
            then: socket,
        };
        read_message(&mut source, rules, &mut scratch.message, &mut scratch.chunk)
    }

    /// Whether the message read was empty.
    pub fn message_is_empty(&self) -> bool {
        self.scratch.message.is_empty()
    }

    /// Writes the exchange's log line: the message was received at `stamp`.
    pub fn log_exchange(&mut self, log: &Log, stamp: &Rfc3339) {
        let scratch = &mut *self.scratch;
        log.exchange(&mut scratch.line, stamp, self.client, &scratch.message);
    }

    /// Sends `received N bytes at T`. With `more_coming` (bytes followed
    /// the LF), the closer drains them, so that they cannot reset the reply.
    pub fn reply(&mut self, stamp: &Rfc3339, more_coming: bool, closer: &Closer) -> io::Result<()> {
        let line = &mut self.scratch.line;
        line.clear();
        protocol::write_received(line, self.scratch.message.len(), stamp);
        (&self.stream).write_all(line.as_bytes())?;
        if more_coming {
            self.hand_to(closer);
        }
        Ok(())
    }

    /// Sends `error: why`; the closer then drains what the client still
    /// sends, so that a reset cannot destroy the line.
    pub fn refuse(&mut self, why: &Refusal, closer: &Closer) {
        let line = &mut self.scratch.line;
        line.clear();
        protocol::write_refusal(line, why);
        if (&self.stream).write_all(line.as_bytes()).is_ok() {
            self.hand_to(closer);
        }
    }

    /// Gives the closer its own descriptor of the socket: the socket stays
    /// open after this connection's is closed, until the closer is done.
    fn hand_to(&self, closer: &Closer) {
        if let Ok(stream) = self.stream.try_clone() {
            closer.close(stream);
        }
    }

    /// Refuses for want of room. Busy refusals must not tie up a worker, so
    /// unlike [`Connection::refuse`] this only takes what the client
    /// already sent, without waiting.
    pub fn refuse_busy(&mut self) {
        let line = &mut self.scratch.line;
        line.clear();
        protocol::write_refusal(line, &Refusal::Busy);
        if (&self.stream).write_all(line.as_bytes()).is_ok() {
            let _ = self.stream.shutdown(Shutdown::Write);
            if self.stream.set_nonblocking(true).is_ok() {
                while matches!((&self.stream).read(&mut self.scratch.chunk), Ok(n) if n > 0) {}
            }
        }
    }
}

impl Drop for Connection<'_> {
    /// A rare huge message must not leave its buffer behind for good.
    fn drop(&mut self) {
        if self.scratch.message.capacity() > KEEP_CAPACITY {
            self.scratch.message = Vec::new();
        }
    }
}

/// A socket as a framing [`Source`]: each wait becomes `SO_RCVTIMEO`, set
/// only when the current one would wait much too long or wake much too
/// early, so a fast exchange usually needs no `setsockopt` at all.
struct SocketSource<'a, 'w> {
    stream: &'a TcpStream,
    timeout: &'a mut Option<Duration>,
    watch: &'a mut Option<SlowWatch<'w>>,
}

/// A source that gives `first` before reading `then`.
struct Prefixed<'a, S> {
    first: &'a [u8],
    then: S,
}

impl<S: Source> Source for Prefixed<'_, S> {
    fn now(&self) -> Instant {
        self.then.now()
    }

    fn read_within(&mut self, buf: &mut [u8], wait: Duration) -> io::Result<usize> {
        if self.first.is_empty() {
            return self.then.read_within(buf, wait);
        }
        let n = self.first.len().min(buf.len());
        buf[..n].copy_from_slice(&self.first[..n]);
        self.first = &self.first[n..];
        Ok(n)
    }
}

/// A read may wait this much longer than asked before it is worth a syscall.
const TIMEOUT_SLACK: Duration = Duration::from_millis(2);

impl Source for SocketSource<'_, '_> {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn read_within(&mut self, buf: &mut [u8], wait: Duration) -> io::Result<usize> {
        let Some(watch) = self.watch.as_ref() else {
            return self.read_with_timeout(buf, wait);
        };
        // Reading on past the verdict means the message was not complete.
        let until_verdict = watch.until_verdict();
        if until_verdict.is_zero() {
            if let Some(watch) = self.watch.take() {
                watch.judge_slow();
            }
            return self.read_with_timeout(buf, wait);
        }
        self.read_with_timeout(buf, wait.min(until_verdict))
    }
}

impl SocketSource<'_, '_> {
    fn read_with_timeout(&mut self, buf: &mut [u8], wait: Duration) -> io::Result<usize> {
        let stale = match *self.timeout {
            None => true,
            Some(current) => current > wait + TIMEOUT_SLACK || current < wait / 2,
        };
        if stale {
            self.stream.set_read_timeout(Some(wait))?;
            *self.timeout = Some(wait);
        }
        let mut reader = self.stream;
        reader.read(buf)
    }
}
