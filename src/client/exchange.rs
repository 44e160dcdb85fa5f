//! One exchange from the client's side: resolve, connect, send the message
//! and LF, shut down sending, read the reply to EOF, with timings. The
//! timeout bounds all of it from the connect on, not each step.

use crate::addr::{self, ResolveError};
use crate::escape::escape;
use crate::platform;
use crate::protocol::{parse_reply, Refusal, Reply, MAX_REPLY};
use crate::timestamp;
use crate::timestamp::Timestamp;
use std::fmt;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime};

/// Where to send messages and how long to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
    /// Bounds each whole exchange: connecting, sending, reading the reply.
    pub timeout: Duration,
    /// Only addresses of this family (`-4`, `-6`); `None`: any.
    pub family: Option<Family>,
}

/// An IP address family, as `-4` and `-6` choose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

impl Family {
    fn admits(self, addr: &SocketAddr) -> bool {
        match self {
            Family::V4 => addr.is_ipv4(),
            Family::V6 => addr.is_ipv6(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A completed exchange and what it took.
#[derive(Debug, Clone)]
pub(crate) struct Exchanged {
    pub peer: SocketAddr,
    /// Time to establish the connection.
    pub connect: Duration,
    /// From just before the message was written to the reply's LF.
    pub rtt: Duration,
    /// Wall-clock times at the same two moments, for the clock offset.
    pub sent_at: SystemTime,
    pub received_at: SystemTime,
    /// Whether `received_at` is the kernel's arrival time of the reply's
    /// LF; if not, it is when cli6 read it.
    pub received_by_kernel: bool,
    /// The reply line without its LF.
    pub reply: Vec<u8>,
}

impl Exchanged {
    /// Checks that the reply is serv6's answer to a message of `sent`
    /// bytes, and returns the server's time of receipt.
    pub fn verify(&self, sent: usize) -> Result<Timestamp, ClientError> {
        let problem = match parse_reply(&self.reply) {
            Reply::Received { len, at, .. } if len == sent as u64 => return Ok(at),
            Reply::Received { len, .. } => ReplyProblem::Miscounted { counted: len, sent },
            Reply::Refused(why) => ReplyProblem::Refused(why),
            Reply::OtherError(text) => ReplyProblem::OtherError(text),
            Reply::Unexpected => ReplyProblem::Unexpected(self.reply.clone()),
        };
        Err(ClientError::Reply {
            peer: self.peer,
            problem,
        })
    }
}

/// What is wrong with a reply; anything the server sent is shown escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReplyProblem {
    TooLong,
    MoreThanOneLine,
    Missing,
    NoNewline,
    /// A real reply, but for a message of another length.
    Miscounted {
        counted: u64,
        sent: usize,
    },
    Refused(Refusal),
    OtherError(Vec<u8>),
    Unexpected(Vec<u8>),
}

impl fmt::Display for ReplyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyProblem::TooLong => write!(f, "reply longer than {MAX_REPLY} bytes"),
            ReplyProblem::MoreThanOneLine => f.write_str("reply has more than one line"),
            ReplyProblem::Missing => f.write_str("connection closed without a reply"),
            ReplyProblem::NoNewline => f.write_str("reply does not end with a newline"),
            ReplyProblem::Miscounted { counted, sent } => {
                write!(
                    f,
                    "the server counted {counted} bytes, but {sent} were sent"
                )
            }
            ReplyProblem::Refused(why) => write!(f, "error: {why}"),
            ReplyProblem::OtherError(text) => write!(f, "error: {}", escape(text)),
            ReplyProblem::Unexpected(reply) => write!(f, "unexpected reply: {}", escape(reply)),
        }
    }
}

/// What went wrong, written as one line by its `Display`.
#[derive(Debug)]
pub(crate) enum ClientError {
    Resolve {
        target: String,
        error: io::Error,
    },
    Connect {
        target: String,
        tried: Vec<(SocketAddr, io::Error)>,
    },
    Io {
        peer: SocketAddr,
        doing: &'static str,
        error: io::Error,
    },
    Reply {
        peer: SocketAddr,
        problem: ReplyProblem,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Resolve { target, error } => write!(f, "cannot resolve {target}: {error}"),
            ClientError::Connect { target, tried } => {
                write!(f, "cannot connect to {target}")?;
                for (i, (addr, error)) in tried.iter().enumerate() {
                    let sep = if i == 0 { ": " } else { "; " };
                    write!(f, "{sep}{addr}: {}", describe(error))?;
                }
                if tried
                    .iter()
                    .any(|(_, e)| e.kind() == io::ErrorKind::ConnectionRefused)
                {
                    f.write_str(" (is serv6 running there?)")?;
                }
                Ok(())
            }
            ClientError::Io { peer, doing, error } => {
                write!(f, "{peer}: {doing}: {}", describe(error))
            }
            ClientError::Reply { peer, problem } => write!(f, "{peer}: {problem}"),
        }
    }
}

impl std::error::Error for ClientError {}

fn describe(error: &io::Error) -> String {
    if crate::sync::is_timeout(error) {
        "timed out".into()
    } else {
        error.to_string()
    }
}

/// How much of the exchange's time is left.
#[derive(Debug, Clone, Copy)]
struct Budget {
    until: Instant,
}

impl Budget {
    /// Time left, or a timeout error once there is none.
    fn left(self) -> io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::ErrorKind::TimedOut.into())
        } else {
            Ok(left)
        }
    }
}

/// Runs one exchange, sending `line` (a message and its LF): every address
/// `target.host` resolves to is tried in turn until one accepts.
pub(crate) fn exchange(target: &Target, line: &[u8]) -> Result<Exchanged, ClientError> {
    let addrs = resolve(target)?;
    let started = Instant::now();
    let budget = Budget {
        until: started + target.timeout,
    };
    let (conn, peer) = connect_any(target, &addrs, budget)?;
    let connect = started.elapsed();
    // The kernel stamps the reply's arrival, so cli6's own scheduling does
    // not count in the round trip. Failing that, the read's time serves.
    let _ = platform::stamp_arrivals(&conn);
    // Set before the clock is read, so that the send time is the write's.
    let timeout = budget
        .left()
        .and_then(|left| conn.set_write_timeout(Some(left)));
    let sent_at = SystemTime::now();
    let send_started = Instant::now();
    // A server that refuses the message may close before taking all of it;
    // its reply may still be waiting, so a failed send is reported only if
    // no reply can be read.
    let sent = timeout
        .and_then(|()| write_within(&conn, line, budget))
        .and_then(|()| conn.shutdown(Shutdown::Write));
    let (reply, arrival) = match (read_reply(&conn, peer, budget), sent) {
        (Ok(read), _) => read,
        (Err(_), Err(error)) => {
            return Err(ClientError::Io {
                peer,
                doing: "sending the message",
                error,
            })
        }
        (Err(e), Ok(())) => return Err(e),
    };
    let rtt = arrival.at.saturating_duration_since(send_started);
    Ok(Exchanged {
        peer,
        connect,
        rtt,
        sent_at,
        received_at: arrival.wall,
        received_by_kernel: arrival.by_kernel,
        reply,
    })
}

/// `write_all`, each write bounded by what is left of the budget; the
/// first write's timeout is already set, so nothing stands between the
/// send time and the write.
fn write_within(conn: &TcpStream, mut data: &[u8], budget: Budget) -> io::Result<()> {
    let mut first = true;
    while !data.is_empty() {
        if !std::mem::take(&mut first) {
            conn.set_write_timeout(Some(budget.left()?))?;
        }
        match (&*conn).write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if crate::sync::is_interrupted(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn resolve(target: &Target) -> Result<Vec<SocketAddr>, ClientError> {
    let resolve_error = |error| ClientError::Resolve {
        target: target.to_string(),
        error,
    };
    let found = addr::resolve(&target.host, target.port).map_err(|e| match e {
        ResolveError::Address(e) => {
            resolve_error(io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
        }
        ResolveError::Lookup(e) => resolve_error(e),
    })?;
    let addrs: Vec<SocketAddr> = found
        .into_iter()
        .filter(|addr| target.family.map_or(true, |family| family.admits(addr)))
        .collect();
    if addrs.is_empty() {
        let none = match target.family {
            Some(Family::V4) => "no IPv4 address",
            Some(Family::V6) => "no IPv6 address",
            None => "no addresses",
        };
        return Err(resolve_error(io::Error::new(io::ErrorKind::NotFound, none)));
    }
    Ok(addrs)
}

fn connect_any(
    target: &Target,
    addrs: &[SocketAddr],
    budget: Budget,
) -> Result<(TcpStream, SocketAddr), ClientError> {
    let mut tried = Vec::new();
    for &addr in addrs {
        let connected = budget
            .left()
            .and_then(|left| TcpStream::connect_timeout(&addr, left));
        match connected {
            Ok(conn) => return Ok((conn, addr)),
            Err(error) => tried.push((addr, error)),
        }
    }
    Err(ClientError::Connect {
        target: target.to_string(),
        tried,
    })
}

/// When the reply's LF arrived, on both clocks.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    at: Instant,
    wall: SystemTime,
    /// The kernel stamped it; otherwise it is the time of the read.
    by_kernel: bool,
}

/// Waits at most `left` for something to read, then reads it with the
/// kernel's arrival time.
fn receive_within(
    conn: &TcpStream,
    buf: &mut [u8],
    left: Duration,
) -> io::Result<(usize, Option<SystemTime>)> {
    if platform::wait_readable(conn, left)? {
        platform::recv_now(conn, buf)
    } else {
        Err(io::ErrorKind::TimedOut.into())
    }
}

/// Reads one line, noting when its LF arrived (the kernel's stamp, or the
/// read's time), then insists on EOF: serv6 sends exactly one line. A
/// complete line followed by a reset instead of EOF is still the reply.
fn read_reply(
    conn: &TcpStream,
    peer: SocketAddr,
    budget: Budget,
) -> Result<(Vec<u8>, Arrival), ClientError> {
    let mut reply = Vec::new();
    let mut arrival = None;
    let mut chunk = [0u8; 512];
    loop {
        let read = budget
            .left()
            .and_then(|left| receive_within(conn, &mut chunk, left));
        let (n, got) = match read {
            Ok((0, _)) => break,
            Ok((n, stamp)) => (n, stamp),
            Err(e) if crate::sync::is_interrupted(&e) => continue,
            // The whole line came; only the close was abrupt.
            Err(e) if arrival.is_some() && e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(error) => {
                return Err(ClientError::Io {
                    peer,
                    doing: "waiting for the reply",
                    error,
                })
            }
        };
        if arrival.is_none() && chunk[..n].contains(&b'\n') {
            let on_both = timestamp::Arrival::stamped(got);
            arrival = Some(Arrival {
                at: on_both.mono,
                wall: on_both.wall,
                by_kernel: got.is_some(),
            });
        }
        reply.extend_from_slice(&chunk[..n]);
        if reply.len() > MAX_REPLY {
            return Err(ClientError::Reply {
                peer,
                problem: ReplyProblem::TooLong,
            });
        }
    }
    let problem = match (reply.iter().position(|&b| b == b'\n'), arrival) {
        (Some(end), Some(at)) if end + 1 == reply.len() => {
            reply.pop();
            return Ok((reply, at));
        }
        (Some(_), _) => ReplyProblem::MoreThanOneLine,
        _ if reply.is_empty() => ReplyProblem::Missing,
        _ => ReplyProblem::NoNewline,
    };
    Err(ClientError::Reply { peer, problem })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_print_like_addresses() {
        let t = |host: &str| {
            Target {
                host: host.into(),
                port: 5006,
                timeout: Duration::from_secs(1),
                family: None,
            }
            .to_string()
        };
        assert_eq!(t("localhost"), "localhost:5006");
        assert_eq!(t("::1"), "[::1]:5006");
    }
}
