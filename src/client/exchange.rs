//! One exchange from the client's side: resolve, connect, send the message
//! and LF, shut down sending, read the reply to EOF, with timings. The
//! timeout bounds all of it from the connect on, not each step.
//!
//! A failure is a `String`, one line for people: every caller only shows
//! it. Anything the server sent is in it escaped.

use crate::addr;
use crate::escape::escape;
use crate::platform;
use crate::protocol::{parse_reply, Reply, MAX_REPLY};
use crate::sync::{is_interrupted, is_timeout};
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

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (open, close) = if self.host.contains(':') { ("[", "]") } else { ("", "") };
        write!(f, "{open}{}{close}:{}", self.host, self.port)
    }
}

/// A completed exchange: what it took, and the client's two timestamps,
/// on the wall clock, as the server's are: the kernel stamps arrivals on
/// it, and placing a stamp on the monotonic clock would take two clock
/// reads that a busy machine can pull apart.
pub(crate) struct Exchanged {
    pub peer: SocketAddr,
    /// Time to establish the connection.
    pub connect: Duration,
    /// T1: just before the message was written.
    pub sent: SystemTime,
    /// T4: when the reply's LF arrived, as the kernel stamped it, or else
    /// when cli6 read it (`by_kernel` says which).
    pub received: SystemTime,
    pub by_kernel: bool,
    /// The reply line without its LF.
    pub reply: Vec<u8>,
}

impl Exchanged {
    /// Checks that the reply is serv6's answer to a message of `sent`
    /// bytes; returns when the server had it (T2) and, if the reply says,
    /// when the server wrote the reply (T3).
    pub fn verify(&self, sent: usize) -> Result<(Timestamp, Option<Timestamp>), String> {
        let problem = match parse_reply(&self.reply) {
            Reply::Received { len, at, sent: t3 } if len == sent as u64 => return Ok((at, t3)),
            Reply::Received { len, .. } => {
                format!("the server counted {len} bytes, but {sent} were sent")
            }
            // `error: <why>`, as the server said it.
            Reply::Refused(_) | Reply::OtherError(_) => escape(&self.reply),
            Reply::Unexpected => format!("unexpected reply: {}", escape(&self.reply)),
        };
        Err(format!("{}: {problem}", self.peer))
    }
}

/// `what: why`, with a timeout said plainly.
fn failed(what: impl fmt::Display, error: &io::Error) -> String {
    let timed_out = is_timeout(error).then(|| "timed out".to_owned());
    format!("{what}: {}", timed_out.unwrap_or_else(|| error.to_string()))
}

/// Time left until `until`, or a timeout error once there is none.
fn left(until: Instant) -> io::Result<Duration> {
    let left = until.checked_duration_since(Instant::now()).filter(|left| !left.is_zero());
    left.ok_or_else(|| io::ErrorKind::TimedOut.into())
}

/// Runs one exchange, sending `message` and its LF: every address
/// `target.host` resolves to is tried in turn until one accepts.
pub(crate) fn exchange(target: &Target, message: &[u8]) -> Result<Exchanged, String> {
    // In one write: an LF of its own could wait for the message's ACK.
    let line = [message, b"\n"].concat();
    let addrs = resolve(target).map_err(|why| format!("cannot resolve {target}: {why}"))?;
    let started = Instant::now();
    let until = started + target.timeout;
    let connected = connect_any(&addrs, until);
    let (conn, peer) = connected.map_err(|why| format!("cannot connect to {target}: {why}"))?;
    let connect = started.elapsed();
    // The kernel stamps the reply's arrival, so cli6's own scheduling does
    // not count in the round trip. Failing that, the read's time serves.
    let _ = platform::stamp_arrivals(&conn);
    // Set before the clock is read, so that the send time is the write's.
    let timeout = left(until).and_then(|left| conn.set_write_timeout(Some(left)));
    let t1 = SystemTime::now();
    // A server that refuses the message may close before taking all of it;
    // its reply may still be waiting, so a failed send is reported only if
    // no reply can be read.
    let sent = timeout.and_then(|()| write_within(&conn, &line, until));
    let (reply, received, by_kernel) = match (read_reply(&conn, until), sent) {
        (Ok(read), _) => read,
        (Err(_), Err(e)) => return Err(failed(format_args!("{peer}: sending the message"), &e)),
        (Err(why), Ok(())) => return Err(format!("{peer}: {why}")),
    };
    Ok(Exchanged { peer, connect, sent: t1, received, by_kernel, reply })
}

/// `write_all`, each write bounded by what is left of the time, then the
/// end of sending; the first write's timeout is already set, so nothing
/// stands between the send time and the write.
fn write_within(conn: &TcpStream, mut data: &[u8], until: Instant) -> io::Result<()> {
    let mut first = true;
    while !data.is_empty() {
        if !std::mem::take(&mut first) {
            conn.set_write_timeout(Some(left(until)?))?;
        }
        match (&*conn).write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if is_interrupted(&e) => {}
            Err(e) => return Err(e),
        }
    }
    conn.shutdown(Shutdown::Write)
}

/// The addresses of `target` of its family, or why there are none.
fn resolve(target: &Target) -> Result<Vec<SocketAddr>, String> {
    let (v4, v6, none) = match target.family {
        Some(Family::V4) => (true, false, "no IPv4 address"),
        Some(Family::V6) => (false, true, "no IPv6 address"),
        None => (true, true, "no addresses"),
    };
    let mut found = addr::resolve(&target.host, target.port).map_err(|e| e.to_string())?;
    found.retain(|a| a.is_ipv4() && v4 || a.is_ipv6() && v6);
    if found.is_empty() {
        return Err(none.into());
    }
    Ok(found)
}

/// Connects to the first of `addrs` that accepts; else says how each failed.
fn connect_any(addrs: &[SocketAddr], until: Instant) -> Result<(TcpStream, SocketAddr), String> {
    let (mut failures, mut refused) = (Vec::new(), false);
    for &addr in addrs {
        let error = match left(until).and_then(|left| TcpStream::connect_timeout(&addr, left)) {
            Ok(conn) => return Ok((conn, addr)),
            Err(error) => error,
        };
        refused |= error.kind() == io::ErrorKind::ConnectionRefused;
        let advice = addr::missing_scope(&addr).map_or(String::new(), |a| format!(" ({a})"));
        failures.push(format!("{}{advice}", failed(addr, &error)));
    }
    let running = if refused { " (is serv6 running there?)" } else { "" };
    Err(format!("{}{running}", failures.join("; ")))
}

/// Reads one line, noting when its LF arrived (the kernel's stamp, or the
/// read's time) and whether the kernel stamped it, then insists on EOF:
/// serv6 sends exactly one line. A complete line followed by a reset
/// instead of EOF is still the reply.
fn read_reply(conn: &TcpStream, until: Instant) -> Result<(Vec<u8>, SystemTime, bool), String> {
    let (mut reply, mut arrival, mut chunk) = (Vec::new(), None, [0u8; 512]);
    loop {
        let read = match left(until).and_then(|left| platform::wait_readable(conn, left)) {
            Ok(true) => platform::recv_now(conn, &mut chunk),
            Ok(false) => Err(io::ErrorKind::TimedOut.into()),
            Err(e) => Err(e),
        };
        let (n, stamp) = match read {
            Ok((0, _)) => break,
            Ok(read) => read,
            Err(e) if is_interrupted(&e) => continue,
            // The whole line came; only the close was abrupt.
            Err(e) if arrival.is_some() && e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => {
                // A whole line and no close: say which the wait was for.
                let waited =
                    if arrival.is_some() { "the close after the reply" } else { "the reply" };
                return Err(failed(format_args!("waiting for {waited}"), &e));
            }
        };
        if arrival.is_none() && chunk[..n].contains(&b'\n') {
            arrival = Some((stamp.unwrap_or_else(SystemTime::now), stamp.is_some()));
        }
        reply.extend_from_slice(&chunk[..n]);
        if reply.len() > MAX_REPLY {
            return Err(format!("reply longer than {MAX_REPLY} bytes"));
        }
    }
    match (reply.iter().position(|&b| b == b'\n'), arrival) {
        (Some(end), Some((at, by_kernel))) if end + 1 == reply.len() => {
            reply.pop();
            Ok((reply, at, by_kernel))
        }
        (Some(_), _) => Err("reply has more than one line".into()),
        _ if reply.is_empty() => Err("connection closed without a reply".into()),
        _ => Err("reply does not end with a newline".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_print_like_addresses() {
        let t = |host: &str| {
            Target { host: host.into(), port: 5006, timeout: Duration::from_secs(1), family: None }
                .to_string()
        };
        assert_eq!(t("localhost"), "localhost:5006");
        assert_eq!(t("::1"), "[::1]:5006");
    }
}
