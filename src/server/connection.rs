//! One accepted connection and what can be done with it: read the message,
//! write its log line, reply, refuse, close without losing the last line.

use super::log::Log;
use super::pool::SlowWatch;
use crate::framing::{read_message, Outcome, Rules, Source};
use crate::protocol::{self, Refusal};
use crate::timestamp::Rfc3339;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a connection that is being closed with bytes still coming may
/// keep sending before it is cut off. Reading what it sends meanwhile keeps
/// the kernel from answering with a reset that could destroy our last line.
const LINGER: Duration = Duration::from_secs(1);

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
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            message: Vec::new(),
            chunk: [0; CHUNK],
            line: String::new(),
        }
    }
}

/// An accepted connection, its client's address and the worker's buffers.
pub(crate) struct Connection<'w> {
    stream: TcpStream,
    /// The client, with IPv4-mapped IPv6 addresses shown as IPv4.
    pub peer: SocketAddr,
    scratch: &'w mut Scratch,
    /// The socket's read timeout, `None` meaning "none, or unknown".
    read_timeout: Option<Duration>,
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
        Connection {
            stream,
            peer: SocketAddr::new(peer.ip().to_canonical(), peer.port()),
            scratch,
            read_timeout,
        }
    }

    /// Reads the message under `rules`. `watch` is told if the client
    /// turns out slow (see [`SlowWatch`]).
    pub fn read(&mut self, rules: &Rules, watch: Option<SlowWatch<'_>>) -> Outcome {
        let mut source = SocketSource {
            stream: &self.stream,
            timeout: &mut self.read_timeout,
            watch,
        };
        let scratch = &mut *self.scratch;
        read_message(&mut source, rules, &mut scratch.message, &mut scratch.chunk)
    }

    /// Writes the exchange's log line: the message was received at `stamp`.
    pub fn log_exchange(&mut self, log: &Log, stamp: &Rfc3339) {
        let scratch = &mut *self.scratch;
        log.exchange(&mut scratch.line, stamp, self.peer, &scratch.message);
    }

    /// Sends `received N bytes at T`. With `more_coming` (bytes followed
    /// the LF), closes with a linger so that they cannot reset the reply.
    pub fn reply(&mut self, stamp: &Rfc3339, more_coming: bool) -> io::Result<()> {
        let line = &mut self.scratch.line;
        line.clear();
        protocol::write_received(line, self.scratch.message.len(), stamp);
        (&self.stream).write_all(line.as_bytes())?;
        if more_coming {
            self.linger();
        }
        Ok(())
    }

    /// Sends `error: why`, then closes without letting a reset destroy it.
    pub fn refuse(&mut self, why: &Refusal) {
        let line = &mut self.scratch.line;
        line.clear();
        protocol::write_refusal(line, why);
        if (&self.stream).write_all(line.as_bytes()).is_ok() {
            self.linger();
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

    /// Shuts down our sending side, then reads and discards what the
    /// client still sends until it closes or [`LINGER`] passes.
    fn linger(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let until = Instant::now() + LINGER;
        if self.stream.set_read_timeout(Some(LINGER)).is_err() {
            return;
        }
        while Instant::now() < until {
            match (&self.stream).read(&mut self.scratch.chunk) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
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
struct SocketSource<'a> {
    stream: &'a TcpStream,
    timeout: &'a mut Option<Duration>,
    watch: Option<SlowWatch<'a>>,
}

/// A read may wait this much longer than asked before it is worth a syscall.
const TIMEOUT_SLACK: Duration = Duration::from_millis(2);

impl Source for SocketSource<'_> {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn read_within(&mut self, buf: &mut [u8], wait: Duration) -> io::Result<usize> {
        let Some(watch) = &self.watch else {
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

impl SocketSource<'_> {
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
