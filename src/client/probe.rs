//! cli6 as a time probe: repeated exchanges that report the round-trip time
//! and how far the server's clock is from ours, the way `ping` and NTP
//! clients do.
//!
//! The offset is the usual NTP estimate for a symmetric path:
//! `T_server - (t_send + t_receive) / 2`, with our wall-clock times taken
//! just before the message is written and when the reply arrives. Where the
//! path is slower one way than the other, the estimate is off by half the
//! difference; no single exchange can tell.

use super::exchange::{exchange, ClientError, Exchanged, Target};
use crate::escape::escape;
use crate::{diag, platform};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::options::Probes;

/// One successful probe.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub seq: u64,
    pub peer: String,
    pub reply: String,
    pub connect: Duration,
    pub rtt: Duration,
    /// Server clock minus ours, in nanoseconds.
    pub offset_ns: i64,
}

/// What the probes found so far: enough for the summary.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    pub sent: u64,
    pub rtts: Vec<Duration>,
    pub offsets_ns: Vec<i64>,
}

/// Runs the probes and returns the exit status: 0 if any reply arrived.
pub(crate) fn run(target: &Target, message: &[u8], probes: Probes) -> ExitCode {
    let tally = Arc::new(Mutex::new(Tally::default()));
    // Before the signal thread exists, so that no other thread takes SIGINT.
    if let Some(termination) = platform::block_termination() {
        let (tally, target, json) = (Arc::clone(&tally), target.to_string(), probes.json);
        thread::spawn(move || {
            termination.wait();
            let tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
            std::process::exit(finish(&target, &tally, json));
        });
    }
    let mut seq = 0;
    while probes.count == 0 || seq < probes.count {
        seq += 1;
        let started = Instant::now();
        let outcome = probe(target, message, seq);
        {
            let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
            tally.sent += 1;
            if let Ok(sample) = &outcome {
                tally.rtts.push(sample.rtt);
                tally.offsets_ns.push(sample.offset_ns);
            }
            // Printed under the lock, so that a summary on Ctrl-C comes after
            // the last probe line, never in the middle of one.
            print_probe(seq, &outcome, probes.json);
        }
        if probes.count != 0 && seq == probes.count {
            break;
        }
        thread::sleep(probes.interval.saturating_sub(started.elapsed()));
    }
    let tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
    ExitCode::from(finish(&target.to_string(), &tally, probes.json) as u8)
}

/// Prints the summary; returns the exit status it implies.
fn finish(target: &str, tally: &Tally, json: bool) -> i32 {
    let summary = if json {
        summary_json(tally)
    } else {
        summary_text(target, tally)
    };
    let mut out = io::stdout().lock();
    let _ = out.write_all(summary.as_bytes()).and_then(|()| out.flush());
    i32::from(tally.rtts.is_empty())
}

fn probe(target: &Target, message: &[u8], seq: u64) -> Result<Sample, ClientError> {
    let done = exchange(target, message)?;
    let server_time = done.verify(message.len())?;
    Ok(Sample {
        seq,
        peer: done.peer.to_string(),
        reply: escape(&done.reply),
        connect: done.connect,
        rtt: done.rtt,
        offset_ns: offset_ns(&done, server_time.to_system_time()),
    })
}

fn nanos_since_epoch(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

/// `T_server - (t_send + t_receive) / 2`, in nanoseconds.
fn offset_ns(done: &Exchanged, server: SystemTime) -> i64 {
    let midpoint = (nanos_since_epoch(done.sent_at) + nanos_since_epoch(done.received_at)) / 2;
    let offset = nanos_since_epoch(server) - midpoint;
    offset.clamp(i64::MIN.into(), i64::MAX.into()) as i64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn offset_ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

fn print_probe(seq: u64, outcome: &Result<Sample, ClientError>, json: bool) {
    let line = match (outcome, json) {
        (Ok(s), false) => format!(
            "{}: {}  connect={:.3} ms  rtt={:.3} ms  offset={:+.3} ms\n",
            s.peer,
            s.reply,
            ms(s.connect),
            ms(s.rtt),
            offset_ms(s.offset_ns)
        ),
        (Ok(s), true) => format!(
            "{{\"seq\":{},\"peer\":{},\"reply\":{},\"connect_ms\":{:.3},\"rtt_ms\":{:.3},\"offset_ms\":{:.3}}}\n",
            s.seq,
            json_string(&s.peer),
            json_string(&s.reply),
            ms(s.connect),
            ms(s.rtt),
            offset_ms(s.offset_ns)
        ),
        (Err(e), false) => {
            diag::error(format_args!("probe {seq}: {e}"));
            return;
        }
        (Err(e), true) => format!("{{\"seq\":{seq},\"error\":{}}}\n", json_string(&e.to_string())),
    };
    let mut out = io::stdout().lock();
    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
}

/// rtt min, avg, max and population standard deviation, in ms.
fn rtt_stats(rtts: &[Duration]) -> Option<(f64, f64, f64, f64)> {
    let values: Vec<f64> = rtts.iter().map(|&d| ms(d)).collect();
    let n = values.len() as f64;
    let min = values.iter().copied().reduce(f64::min)?;
    let max = values.iter().copied().reduce(f64::max)?;
    let avg = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - avg).powi(2)).sum::<f64>() / n;
    Some((min, avg, max, variance.sqrt()))
}

/// Offset median, min and max, in ms.
fn offset_stats(offsets_ns: &[i64]) -> Option<(f64, f64, f64)> {
    let mut sorted = offsets_ns.to_vec();
    sorted.sort_unstable();
    let (first, last) = (*sorted.first()?, *sorted.last()?);
    let mid = sorted.len() / 2;
    let median = if sorted.len() % 2 == 0 {
        (sorted[mid - 1] as f64 + sorted[mid] as f64) / 2.0
    } else {
        sorted[mid] as f64
    };
    Some((median / 1e6, offset_ms(first), offset_ms(last)))
}

fn lost_percent(tally: &Tally) -> f64 {
    if tally.sent == 0 {
        return 0.0;
    }
    100.0 * (tally.sent - tally.rtts.len() as u64) as f64 / tally.sent as f64
}

/// The ping-like summary, several lines.
pub(crate) fn summary_text(target: &str, tally: &Tally) -> String {
    let mut out = format!(
        "--- {target} probe statistics ---\n{} probes sent, {} replies received, {:.1}% lost\n",
        tally.sent,
        tally.rtts.len(),
        lost_percent(tally)
    );
    if let Some((min, avg, max, stddev)) = rtt_stats(&tally.rtts) {
        let _ = writeln!(
            out,
            "rtt min/avg/max/stddev = {min:.3}/{avg:.3}/{max:.3}/{stddev:.3} ms"
        );
    }
    if let Some((median, min, max)) = offset_stats(&tally.offsets_ns) {
        let _ = writeln!(
            out,
            "offset median {median:+.3} ms, spread {min:+.3} .. {max:+.3} ms (server clock minus ours)"
        );
    }
    out
}

/// The summary as one JSON object; figures are null when no reply came.
pub(crate) fn summary_json(tally: &Tally) -> String {
    let rtt = rtt_stats(&tally.rtts).map_or("null".into(), |(min, avg, max, stddev)| {
        format!("{{\"min\":{min:.3},\"avg\":{avg:.3},\"max\":{max:.3},\"stddev\":{stddev:.3}}}")
    });
    let offset = offset_stats(&tally.offsets_ns).map_or("null".into(), |(median, min, max)| {
        format!("{{\"median\":{median:.3},\"min\":{min:.3},\"max\":{max:.3}}}")
    });
    format!(
        "{{\"summary\":{{\"sent\":{},\"received\":{},\"lost_percent\":{:.1},\"rtt_ms\":{rtt},\"offset_ms\":{offset}}}}}\n",
        tally.sent,
        tally.rtts.len(),
        lost_percent(tally)
    )
}

/// A JSON string literal: quotes, backslashes and control characters escaped.
pub(crate) fn json_string(text: &str) -> String {
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

    #[test]
    fn offset_is_server_time_minus_the_midpoint() {
        let at = |ns: u64| UNIX_EPOCH + Duration::from_nanos(ns);
        let done = Exchanged {
            peer: "127.0.0.1:1".parse().unwrap(),
            connect: Duration::ZERO,
            rtt: Duration::from_millis(10),
            sent_at: at(1_000_000_000),
            received_at: at(1_010_000_000),
            reply: Vec::new(),
        };
        assert_eq!(offset_ns(&done, at(1_005_000_000)), 0);
        assert_eq!(offset_ns(&done, at(1_007_000_000)), 2_000_000);
        assert_eq!(offset_ns(&done, at(1_001_000_000)), -4_000_000);
    }

    #[test]
    fn summaries_count_losses_and_describe_spread() {
        let tally = Tally {
            sent: 4,
            rtts: vec![
                Duration::from_millis(1),
                Duration::from_millis(3),
                Duration::from_millis(2),
            ],
            offsets_ns: vec![-1_000_000, 3_000_000, 500_000],
        };
        let text = summary_text("localhost:5006", &tally);
        assert!(
            text.contains("4 probes sent, 3 replies received, 25.0% lost"),
            "{text}"
        );
        assert!(
            text.contains("rtt min/avg/max/stddev = 1.000/2.000/3.000/0.816 ms"),
            "{text}"
        );
        assert!(
            text.contains("offset median +0.500 ms, spread -1.000 .. +3.000 ms"),
            "{text}"
        );
        let json = summary_json(&tally);
        assert!(
            json.contains("\"sent\":4,\"received\":3,\"lost_percent\":25.0"),
            "{json}"
        );
        let none = summary_json(&Tally {
            sent: 2,
            ..Tally::default()
        });
        assert!(
            none.contains("\"rtt_ms\":null,\"offset_ms\":null"),
            "{none}"
        );
    }
}
