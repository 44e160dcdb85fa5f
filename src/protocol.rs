//! The wire contract between serv6 and its clients, written once.
//!
//! One exchange per TCP connection:
//!
//! 1. The client sends one message, ended by an LF (a CR before it is
//!    dropped), by shutting down its sending side, or by pausing.
//! 2. The server answers with one line, `received <N> bytes at <T>`, where
//!    N counts the message's bytes and T is when the server had all of it
//!    (RFC 3339, UTC, microseconds), or with `error: <why>`. With
//!    `--send-time` the line goes on `, sent at <T3>`: when the server
//!    wrote the reply, so that a client can take the server's own time
//!    out of its clock offset, as NTP does.
//! 3. The server closes the connection.
//!
//! The server writes replies with [`write_received`] and [`write_refusal`];
//! clients, tests and the benchmark read them with [`parse_reply`]. serv6
//! also speaks the two classic time protocols ([`Service`]), where the
//! server talks first: daytime ([`write_daytime`]) and time ([`time_bytes`]).

use crate::timestamp::{Rfc3339, Timestamp};
use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The port both programs use unless told otherwise.
pub const DEFAULT_PORT: u16 = 5006;

/// The longest reply a client must accept, LF included. Every reply serv6
/// can send is far shorter (a test checks the longest); anything longer is
/// not serv6, and a client stops reading it.
pub const MAX_REPLY: usize = 1024;

/// The reply's words around its numbers: `received <N> bytes at <T>`, and
/// with `--send-time` `, sent at <T3>` after it.
const RECEIVED: &str = "received ";
const BYTES_AT: &str = " bytes at ";
const SENT_AT: &str = ", sent at ";
/// The reply's form, as help and the manual pages show it, with or
/// without the time it was sent.
#[must_use]
pub fn reply_form(with_sent: bool) -> String {
    let sent = if with_sent { format!("{SENT_AT}<T3>") } else { String::new() };
    format!("{RECEIVED}<N>{BYTES_AT}<YYYY-MM-DDTHH:MM:SS.ffffffZ>{sent}")
}

/// Why the server refused a message: the text after `error: `.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many connections were held to keep another.
    Busy,
    /// The message had more than `max_bytes` bytes.
    TooLong {
        /// The server's limit.
        max_bytes: usize,
    },
    /// No complete message arrived within `limit`.
    Deadline {
        /// The time the client had.
        limit: Duration,
    },
    /// The server's clock cannot be written as RFC 3339.
    ClockOutOfRange,
    /// The server is stopping: its grace period ended first, or the
    /// connection was still waiting to be accepted.
    ShuttingDown,
    /// With the PROXY protocol: the peer may not send a header.
    UntrustedProxy,
    /// With the PROXY protocol: the connection did not start with a valid
    /// header, for this reason.
    BadProxyHeader(ProxyFault),
}

/// What is wrong with a connection's PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyFault {
    /// The first bytes are neither `PROXY ` nor the version 2 signature.
    Missing,
    /// A version 1 line that breaks the grammar.
    V1,
    /// A version 2 header with an unknown version, command or family.
    V2,
    /// A version 2 header longer than serv6 accepts.
    TooLong,
}

const TOO_LONG: (&str, &str) = ("message longer than ", " bytes");
const DEADLINE: (&str, &str) = ("no message within ", " s");

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Busy => f.write_str("server busy"),
            Refusal::TooLong { max_bytes } => write!(f, "{}{max_bytes}{}", TOO_LONG.0, TOO_LONG.1),
            Refusal::Deadline { limit } => {
                write!(f, "{}{}{}", DEADLINE.0, seconds(*limit), DEADLINE.1)
            }
            Refusal::ClockOutOfRange => f.write_str("server clock is outside 1970..9999"),
            Refusal::ShuttingDown => f.write_str("server shutting down"),
            Refusal::UntrustedProxy => f.write_str("connection not from a trusted proxy"),
            Refusal::BadProxyHeader(fault) => f.write_str(match fault {
                ProxyFault::Missing => "no PROXY protocol header",
                ProxyFault::V1 => "malformed PROXY protocol v1 header",
                ProxyFault::V2 => "malformed PROXY protocol v2 header",
                ProxyFault::TooLong => "PROXY protocol v2 header too long",
            }),
        }
    }
}

impl Refusal {
    /// Every refusal that carries no number, to read them back by text.
    const FIXED: [Refusal; 8] = [
        Refusal::Busy,
        Refusal::ClockOutOfRange,
        Refusal::ShuttingDown,
        Refusal::UntrustedProxy,
        Refusal::BadProxyHeader(ProxyFault::Missing),
        Refusal::BadProxyHeader(ProxyFault::V1),
        Refusal::BadProxyHeader(ProxyFault::V2),
        Refusal::BadProxyHeader(ProxyFault::TooLong),
    ];

    /// The refusal an error text names, if it is one serv6 sends.
    fn from_text(text: &str) -> Option<Refusal> {
        let between =
            |(before, after): (&str, &str)| text.strip_prefix(before)?.strip_suffix(after);
        if let Some(fixed) = Refusal::FIXED.into_iter().find(|r| text == r.to_string()) {
            return Some(fixed);
        }
        if let Some(max_bytes) = between(TOO_LONG).and_then(decimal) {
            return Some(Refusal::TooLong { max_bytes });
        }
        // Written to the microsecond, so read back to the microsecond.
        let micros = (between(DEADLINE)?.parse::<f64>().ok()? * 1e6).round();
        #[allow(clippy::cast_precision_loss)] // a bound; its last digits do not matter
        let in_range = (0.0..u64::MAX as f64).contains(&micros);
        in_range.then(|| Refusal::Deadline {
            // In range and rounded, just above: the cast is exact.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            limit: Duration::from_micros(micros as u64),
        })
    }
}

/// `10`, `0.5`, `0.0001`: seconds to the microsecond, without trailing zeros.
fn seconds(d: Duration) -> String {
    let text = format!("{:.6}", d.as_secs_f64());
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Digits only: no sign, no spaces, at least one.
fn decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| text.parse().ok()).flatten()
}

/// The message a client's line carries: the line without its LF.
#[must_use]
pub fn message_of(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// Appends `received <len> bytes at <at>` (and `, sent at <sent>`) and
/// its LF to `line`.
pub fn write_received(line: &mut String, len: usize, at: &Rfc3339, sent: Option<&Rfc3339>) {
    line.push_str(RECEIVED);
    push_decimal(line, len as u64);
    line.extend([BYTES_AT, at.as_str()]);
    if let Some(sent) = sent {
        line.extend([SENT_AT, sent.as_str()]);
    }
    line.push('\n');
}

/// Appends `n` in decimal: the digits before its last, then its last.
/// `write!` would go through the formatter's padding machinery, a cost on
/// every exchange.
pub(crate) fn push_decimal(out: &mut String, n: u64) {
    if n >= 10 {
        push_decimal(out, n / 10);
    }
    out.push(char::from(b'0' + (n % 10) as u8));
}

/// What a serv6 listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// serv6's own: the client's message, then when it arrived.
    Receipt,
    /// RFC 867: on connect, one line with the time, then close.
    Daytime,
    /// RFC 868: on connect, 32-bit seconds since 1900, then close.
    Time,
}

impl Service {
    /// Every service, by its name.
    pub const ALL: [(Service, &'static str); 3] =
        [(Service::Receipt, "receipt"), (Service::Daytime, "daytime"), (Service::Time, "time")];

    /// Its name, as `--service` and socket units name it.
    #[must_use]
    pub fn name(self) -> &'static str {
        Service::ALL[self as usize].1
    }
}

impl std::str::FromStr for Service {
    type Err = String;

    fn from_str(text: &str) -> Result<Service, String> {
        let found = Service::ALL.into_iter().find(|&(_, name)| name == text);
        found.map(|(service, _)| service).ok_or_else(|| "it is not receipt, daytime or time".into())
    }
}

/// Appends the daytime line: the time as a reply states it, RFC 3339 in
/// UTC (people read it, `date -d` and every language parse it), and CRLF
/// as RFC 867's examples end it.
pub fn write_daytime(line: &mut String, now: &Rfc3339) {
    line.extend([now.as_str(), "\r\n"]);
}

/// Seconds from 1900-01-01 to 1970-01-01, the time protocol's epoch.
const SECONDS_1900_TO_1970: u64 = 2_208_988_800;

/// The time protocol's 4 bytes for `now`: seconds since 1900, big-endian,
/// modulo 2^32, which wraps on 2036-02-07 as clients that handle the era
/// (RFC 868 predates it; rdate, NTP) expect.
#[must_use]
pub fn time_bytes(now: SystemTime) -> [u8; 4] {
    let unix = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let seconds = (unix + SECONDS_1900_TO_1970) % (1 << 32);
    u32::try_from(seconds).unwrap_or_default().to_be_bytes()
}

/// The Unix time, in seconds, of the time protocol's 4 `bytes`, read in
/// the era that starts in 1970 (1970 to 2106).
#[must_use]
pub fn parse_time(bytes: [u8; 4]) -> u64 {
    let seconds = u64::from(u32::from_be_bytes(bytes));
    (seconds + (1 << 32) - SECONDS_1900_TO_1970) % (1 << 32)
}

/// Appends `error: <why>` and its LF to `line`.
pub fn write_refusal(line: &mut String, why: &Refusal) {
    let _ = writeln!(line, "error: {why}");
}

/// What a reply line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `received <len> bytes at <at>`, and `, sent at <sent>`.
    Received {
        /// How many bytes the server counted.
        len: u64,
        /// When the server had the whole message.
        at: Timestamp,
        /// When the server wrote the reply, if it says.
        sent: Option<Timestamp>,
    },
    /// `error: <why>` with a reason serv6 sends.
    Refused(Refusal),
    /// `error: <text>` with a reason this version does not know.
    OtherError(Vec<u8>),
    /// Anything else: not serv6, or a broken one.
    Unexpected,
}

/// Reads a reply line, without its LF.
pub fn parse_reply(line: &[u8]) -> Reply {
    if let Some(text) = line.strip_prefix(b"error: ") {
        let known = std::str::from_utf8(text).ok().and_then(Refusal::from_text);
        return known.map_or_else(|| Reply::OtherError(text.to_vec()), Reply::Refused);
    }
    let received = std::str::from_utf8(line).ok().and_then(|text| {
        let (len, at) = text.strip_prefix(RECEIVED)?.split_once(BYTES_AT)?;
        let (at, sent) = match at.split_once(SENT_AT) {
            Some((at, sent)) => (at, Some(Timestamp::parse(sent)?)),
            None => (at, None),
        };
        Some(Reply::Received { len: decimal(len)?, at: Timestamp::parse(at)?, sent })
    });
    received.unwrap_or(Reply::Unexpected)
}

/// Why a client must not send a message as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsendable {
    /// An LF would end the message early.
    Newline,
    /// The server drops a CR just before the terminating LF, so the count
    /// would not match.
    FinalCr,
}

impl fmt::Display for Unsendable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unsendable::Newline => "a message cannot contain a newline: a newline ends the message",
            Unsendable::FinalCr => {
                "a message cannot end with a carriage return: the server drops a CR before the newline"
            }
        })
    }
}

/// Checks that `message`, sent with an LF after it, arrives as itself.
///
/// # Errors
///
/// Says why it would not: it contains an LF, or ends with a CR.
pub fn check_message(message: &[u8]) -> Result<(), Unsendable> {
    match message {
        _ if message.contains(&b'\n') => Err(Unsendable::Newline),
        [.., b'\r'] => Err(Unsendable::FinalCr),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    fn line_of(write: impl FnOnce(&mut String)) -> String {
        let mut line = String::new();
        write(&mut line);
        line
    }

    fn parse_line(line: &str) -> Reply {
        let without_lf = line.strip_suffix('\n').expect("ends with LF");
        assert!(!without_lf.contains('\n'), "one line: {line:?}");
        parse_reply(without_lf.as_bytes())
    }

    /// The last microsecond of 9999: the longest-lived timestamp there is.
    fn last_moment() -> Timestamp {
        let at = Timestamp::parse("9999-12-31T23:59:59.999999Z").expect("valid");
        Timestamp::from_system_time(at.to_system_time()).expect("in range")
    }

    #[test]
    fn every_reply_kind_round_trips() {
        let now = Timestamp::from_system_time(SystemTime::now()).expect("clock in range");
        for (len, at, sent) in [(0, now, None), (usize::MAX, last_moment(), Some(now))] {
            let text = sent.map(Timestamp::to_rfc3339);
            let line = line_of(|l| write_received(l, len, &at.to_rfc3339(), text.as_ref()));
            assert_eq!(parse_line(&line), Reply::Received { len: len as u64, at, sent });
        }
        let numbered = [
            Refusal::TooLong { max_bytes: 65_536 },
            Refusal::Deadline { limit: Duration::from_secs(10) },
            Refusal::Deadline { limit: Duration::from_micros(1_250_001) },
        ];
        for why in Refusal::FIXED.into_iter().chain(numbered) {
            let line = line_of(|l| write_refusal(l, &why));
            assert_eq!(parse_line(&line), Reply::Refused(why));
        }
    }

    #[test]
    fn the_longest_replies_fit_the_clients_cap() {
        let longest = [
            line_of(|l| {
                let last = last_moment().to_rfc3339();
                write_received(l, usize::MAX, &last, Some(&last));
            }),
            line_of(|l| write_refusal(l, &Refusal::TooLong { max_bytes: usize::MAX })),
            line_of(|l| {
                let limit = Duration::from_secs(u64::MAX);
                write_refusal(l, &Refusal::Deadline { limit });
            }),
            line_of(|l| write_refusal(l, &Refusal::ClockOutOfRange)),
        ];
        for line in longest {
            assert!(line.len() <= MAX_REPLY, "{} bytes: {line}", line.len());
        }
    }

    #[test]
    fn replies_as_written_on_the_wire() {
        let at = Timestamp::from_system_time(UNIX_EPOCH + Duration::from_micros(1)).expect("1970");
        assert_eq!(
            line_of(|l| write_received(l, 4, &at.to_rfc3339(), None)),
            "received 4 bytes at 1970-01-01T00:00:00.000001Z\n"
        );
        assert_eq!(
            line_of(|l| write_received(l, 4, &at.to_rfc3339(), Some(&at.to_rfc3339()))),
            "received 4 bytes at 1970-01-01T00:00:00.000001Z, sent at 1970-01-01T00:00:00.000001Z\n"
        );
        let mut daytime = String::new();
        write_daytime(&mut daytime, &at.to_rfc3339());
        assert_eq!(daytime, "1970-01-01T00:00:00.000001Z\r\n");
        let half = Refusal::Deadline { limit: Duration::from_millis(500) };
        assert_eq!(line_of(|l| write_refusal(l, &half)), "error: no message within 0.5 s\n");
        assert_eq!(
            line_of(|l| write_refusal(l, &Refusal::TooLong { max_bytes: 8 })),
            "error: message longer than 8 bytes\n"
        );
    }

    #[test]
    fn the_time_protocol_counts_from_1900_and_wraps_in_2036() {
        assert_eq!(time_bytes(UNIX_EPOCH), 2_208_988_800u32.to_be_bytes());
        // 2036-02-07T06:28:16Z is 2^32 seconds after 1900: zero again.
        let wrap = UNIX_EPOCH + Duration::from_secs((1 << 32) - 2_208_988_800);
        assert_eq!(time_bytes(wrap), [0, 0, 0, 0]);
        for unix in [0, 1_764_900_000, (1 << 32) - 2_208_988_800, 3_000_000_000] {
            let at = UNIX_EPOCH + Duration::from_secs(unix);
            assert_eq!(parse_time(time_bytes(at)), unix, "{unix}");
        }
    }

    #[test]
    fn services_go_by_their_names() {
        for (service, name) in Service::ALL {
            assert_eq!(service.name(), name);
            assert_eq!(name.parse(), Ok(service));
        }
        assert!("echo".parse::<Service>().is_err());
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(seconds(Duration::from_secs(10)), "10");
        assert_eq!(seconds(Duration::from_millis(500)), "0.5");
        assert_eq!(seconds(Duration::from_millis(1250)), "1.25");
        assert_eq!(seconds(Duration::from_micros(100)), "0.0001");
    }

    #[test]
    fn unknown_and_malformed_replies() {
        assert_eq!(parse_reply(b"error: out of tea"), Reply::OtherError(b"out of tea".to_vec()));
        for odd in [
            &b"received +4 bytes at 2026-11-24T04:31:58.123456Z"[..],
            b"received 4 bytes at yesterday",
            b"received  bytes at 2026-11-24T04:31:58.123456Z",
            b"received 99999999999999999999999 bytes at 2026-11-24T04:31:58.123456Z",
            b"hello",
            b"",
        ] {
            assert_eq!(parse_reply(odd), Reply::Unexpected, "{}", String::from_utf8_lossy(odd));
        }
    }

    #[test]
    fn messages_a_client_must_not_send() {
        assert_eq!(check_message(b"hola"), Ok(()));
        assert_eq!(check_message(b""), Ok(()));
        assert_eq!(check_message(b"a\rb"), Ok(()));
        assert_eq!(check_message(b"a\nb"), Err(Unsendable::Newline));
        assert_eq!(check_message(b"ab\r"), Err(Unsendable::FinalCr));
    }
}
