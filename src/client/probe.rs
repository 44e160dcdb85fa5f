//! cli6 as a time probe: repeated exchanges that report the round-trip time
//! and how far the server's clock is from ours, the way `ping` and NTP
//! clients do. The estimates are in [`super::estimate`].

use super::estimate::{self, Reply, Tally};
use super::estimate::{ms, offset_ms};
use super::exchange::{exchange, Exchanged, Target};
use super::options::Probes;
use crate::escape::escape;
use crate::exit::Status;
use crate::sync;
use crate::{output, platform};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// After a failed probe, the next waits at least this, doubled for each
/// failure in a row up to [`MAX_BACKOFF`], so that a dead server is not
/// flooded and its failures do not flood the terminal.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// One successful probe.
#[derive(Debug, Clone)]
struct Sample {
    seq: u64,
    peer: String,
    reply: String,
    connect: Duration,
    rtt: Duration,
    offset_ns: Option<i64>,
    /// Whether the reply's receive time is the kernel's arrival stamp.
    received_by_kernel: bool,
}

/// Runs the probes, each sending `line` (a message and its LF), and
/// returns the exit status: 0 if any reply arrived. Stops early when
/// standard output is closed (`cli6 -c 5 | head -1`).
pub(crate) fn run(target: &Target, line: &[u8], probes: Probes) -> ExitCode {
    let tally = Arc::new(Mutex::new(Tally::default()));
    // Before the signal thread exists, so that no other thread takes SIGINT.
    if let Some(termination) = platform::Signals::block() {
        let (tally, target, json) = (Arc::clone(&tally), target.to_string(), probes.json);
        thread::spawn(move || {
            termination.wait();
            let tally = sync::lock(&tally);
            std::process::exit(finish(&target, &tally, json).code().into());
        });
    }
    let mut failures_in_a_row = 0;
    for seq in 1.. {
        let started = Instant::now();
        let outcome = probe(target, line, seq);
        failures_in_a_row = if outcome.is_ok() {
            0
        } else {
            failures_in_a_row + 1
        };
        if !record(&tally, seq, &outcome, probes.json) || seq == probes.count {
            break;
        }
        let wait = wait_before_next(probes.interval, failures_in_a_row);
        thread::sleep(wait.saturating_sub(started.elapsed()));
    }
    let tally = sync::lock(&tally);
    finish(&target.to_string(), &tally, probes.json).into()
}

/// Counts and prints one probe; false once standard output is gone. The
/// line is printed under the lock, so that a summary on Ctrl-C comes after
/// the last probe line, never in the middle of one.
fn record(tally: &Mutex<Tally>, seq: u64, outcome: &Result<Sample, String>, json: bool) -> bool {
    let mut tally = sync::lock(tally);
    tally.sent += 1;
    if let Ok(sample) = outcome {
        tally.replies.push(Reply {
            rtt: sample.rtt,
            offset_ns: sample.offset_ns,
        });
    }
    print_probe(seq, outcome, json)
}

/// From the start of one probe to the start of the next.
fn wait_before_next(interval: Duration, failures_in_a_row: u32) -> Duration {
    if failures_in_a_row == 0 {
        return interval;
    }
    let doublings = (failures_in_a_row - 1).min(16);
    interval.max((FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF))
}

/// Prints the summary; returns the exit status it implies.
fn finish(target: &str, tally: &Tally, json: bool) -> Status {
    let summary = if json {
        estimate::summary_json(tally)
    } else {
        estimate::summary_text(target, tally)
    };
    let mut out = io::stdout().lock();
    let _ = out.write_all(summary.as_bytes()).and_then(|()| out.flush());
    if tally.replies.is_empty() {
        Status::Failure
    } else {
        Status::Success
    }
}

fn probe(target: &Target, line: &[u8], seq: u64) -> Result<Sample, String> {
    let done = exchange(target, line)?;
    let server_time = done.verify(crate::protocol::message_of(line).len())?;
    Ok(Sample {
        seq,
        peer: done.peer.to_string(),
        reply: escape(&done.reply),
        connect: done.connect,
        rtt: done.received.duration_since(done.sent).unwrap_or_default(),
        offset_ns: offset_ns(&done, server_time.to_system_time()),
        received_by_kernel: done.by_kernel,
    })
}

fn nanos_since_epoch(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => -i128::try_from(before.duration().as_nanos()).unwrap_or(i128::MAX),
    }
}

/// `T_server - (t_send + t_receive) / 2` in nanoseconds, or `None` beyond
/// what 64 bits of nanoseconds hold (about 292 years either way).
fn offset_ns(done: &Exchanged, server: SystemTime) -> Option<i64> {
    let midpoint = (nanos_since_epoch(done.sent) + nanos_since_epoch(done.received)) / 2;
    i64::try_from(nanos_since_epoch(server) - midpoint).ok()
}

/// `+0.005 ms` or `out of range`; JSON: a number or `null`.
fn offset_text(offset_ns: Option<i64>, json: bool) -> String {
    match (offset_ns, json) {
        (Some(ns), false) => format!("{:+.3} ms", offset_ms(ns)),
        (Some(ns), true) => format!("{:.3}", offset_ms(ns)),
        (None, false) => "out of range".into(),
        (None, true) => "null".into(),
    }
}

/// Prints a probe's line; false if standard output is gone.
fn print_probe(seq: u64, outcome: &Result<Sample, String>, json: bool) -> bool {
    let line = match (outcome, json) {
        (Ok(s), false) => format!(
            "{}: {}  connect={:.3} ms  rtt={:.3} ms  offset={}\n",
            s.peer,
            s.reply,
            ms(s.connect),
            ms(s.rtt),
            offset_text(s.offset_ns, false)
        ),
        (Ok(s), true) => format!(
            "{{\"seq\":{},\"peer\":{},\"reply\":{},\"connect_ms\":{:.3},\"rtt_ms\":{:.3},\"offset_ms\":{},\
             \"send_clock\":\"before write\",\"receive_clock\":\"{}\"}}\n",
            s.seq,
            json_string(&s.peer),
            json_string(&s.reply),
            ms(s.connect),
            ms(s.rtt),
            offset_text(s.offset_ns, true),
            if s.received_by_kernel { "kernel arrival" } else { "after read" }
        ),
        (Err(e), false) => {
            output::say(format_args!("probe {seq}: {e}"));
            return true;
        }
        (Err(e), true) => format!(
            "{{\"seq\":{seq},\"error\":{}}}\n",
            json_string(e)
        ),
    };
    let mut out = io::stdout().lock();
    out.write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .is_ok()
}

/// A JSON string literal: quotes, backslashes and control characters escaped.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(json_string("\n\u{1}\u{7f}é"), r#""\n\u0001\u007fé""#);
    }

    fn exchanged(sent_ns: u64, received_ns: u64) -> Exchanged {
        let at = |ns: u64| UNIX_EPOCH + Duration::from_nanos(ns);
        Exchanged {
            peer: "127.0.0.1:1".parse().expect("an address"),
            connect: Duration::ZERO,
            sent: at(sent_ns),
            received: at(received_ns),
            by_kernel: true,
            reply: Vec::new(),
        }
    }

    #[test]
    fn offset_is_server_time_minus_the_midpoint() {
        let done = exchanged(1_000_000_000, 1_010_000_000);
        let at = |ns: u64| UNIX_EPOCH + Duration::from_nanos(ns);
        assert_eq!(offset_ns(&done, at(1_005_000_000)), Some(0));
        assert_eq!(offset_ns(&done, at(1_007_000_000)), Some(2_000_000));
        assert_eq!(offset_ns(&done, at(1_001_000_000)), Some(-4_000_000));
    }

    #[test]
    fn a_server_centuries_away_has_no_offset() {
        let done = exchanged(1_000_000_000, 1_010_000_000);
        let year_9999 = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
        assert_eq!(offset_ns(&done, year_9999), None);
        assert_eq!(offset_text(None, false), "out of range");
    }

    #[test]
    fn failures_back_off_to_a_second() {
        let zero = Duration::ZERO;
        assert_eq!(wait_before_next(zero, 0), zero);
        assert_eq!(wait_before_next(zero, 1), Duration::from_millis(10));
        assert_eq!(wait_before_next(zero, 3), Duration::from_millis(40));
        assert_eq!(wait_before_next(zero, 30), MAX_BACKOFF);
        let slow = Duration::from_secs(5);
        assert_eq!(wait_before_next(slow, 30), slow);
    }
}
