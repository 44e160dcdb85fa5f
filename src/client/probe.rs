//! cli6 as a time probe: repeated exchanges that report the round-trip time
//! and how far the server's clock is from ours, the way `ping` and NTP
//! clients do. The estimates are in [`super::estimate`].

use super::estimate::{self, Sample, Tally};
use super::exchange::{exchange, Exchanged, Target};
use super::options::Probes;
use super::print;
use crate::cmdline::Status;
use crate::escape::escape;
use crate::{output, platform, sync};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// After a failed probe, the next waits at least this, doubled for each
/// failure in a row up to [`MAX_BACKOFF`], so that a dead server is not
/// flooded and its failures do not flood the terminal.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Runs the probes, each sending `message`, and
/// returns whether any reply arrived. Stops early when standard output is
/// closed (`cli6 -c 5 | head -1`).
pub(crate) fn run(target: &Target, message: &[u8], probes: Probes) -> bool {
    let tally = Arc::new(Mutex::new(Tally::default()));
    // Before the signal thread exists, so that no other thread takes SIGINT.
    if let Some(termination) = platform::Signals::block() {
        let (tally, target, json) = (Arc::clone(&tally), target.to_string(), probes.json);
        thread::spawn(move || {
            termination.wait();
            // Held until the exit: no probe line can follow the summary.
            let tally = sync::lock(&tally);
            let any = finish(&target, &tally, json);
            let status = if any { Status::Success } else { Status::Failure };
            std::process::exit(status.code().into());
        });
    }
    let mut failures = 0;
    for seq in 1.. {
        let started = Instant::now();
        let outcome = exchange(target, message).and_then(|done| {
            let (at, sent) = done.verify(message.len())?;
            Ok((Sample::of(&done, at, sent), done))
        });
        failures = if outcome.is_ok() { 0 } else { failures + 1 };
        // Counted and printed under the lock, so that a summary on Ctrl-C
        // comes after the last probe line, never in the middle of one. A
        // failure in text goes to standard error.
        let mut counts = sync::lock(&tally);
        counts.sent += 1;
        let printed = match outcome {
            Ok((sample, done)) => {
                counts.add(&sample);
                print(&probe_line(seq, &sample, &done, message.len(), probes.json))
            }
            Err(e) if probes.json => {
                print(&format!("{{\"seq\":{seq},\"error\":{}}}", json_string(&e)))
            }
            Err(e) => {
                output::say(format_args!("probe {seq}: {e}"));
                true
            }
        };
        drop(counts);
        // Once standard output is gone, nobody reads on.
        if !printed || seq == probes.count {
            break;
        }
        let wait = wait_before_next(probes.interval, failures);
        thread::sleep(wait.saturating_sub(started.elapsed()));
    }
    let any = finish(&target.to_string(), &sync::lock(&tally), probes.json);
    any
}

/// From the start of one probe to the start of the next.
fn wait_before_next(interval: Duration, failures_in_a_row: u32) -> Duration {
    let Some(doublings) = failures_in_a_row.checked_sub(1) else { return interval };
    interval.max((FIRST_BACKOFF * 2u32.pow(doublings.min(16))).min(MAX_BACKOFF))
}

/// Prints the summary; returns whether any reply came.
fn finish(target: &str, tally: &Tally, json: bool) -> bool {
    let summary =
        if json { estimate::summary_json(tally) } else { estimate::summary_text(target, tally) };
    print(&summary);
    tally.received() > 0
}

/// A probe's line: the reply and the figures; as JSON, each on its own.
fn probe_line(seq: u64, s: &Sample, done: &Exchanged, bytes: usize, json: bool) -> String {
    let (peer, connect, rtt) = (done.peer, done.connect.as_secs_f64() * 1e3, s.rtt);
    let (offset, delay) = (s.clock.map(|c| c.0), s.clock.map(|c| c.1));
    if json {
        let number = |ms: Option<f64>| ms.map_or("null".into(), |ms| format!("{ms:.4}"));
        let sent = s.sent.map_or(String::new(), |t| format!(",\"send_time\":\"{t}\""));
        let (at, delay, offset) = (s.at, number(delay), number(offset));
        return format!(
            "{{\"seq\":{seq},\"peer\":\"{peer}\",\"bytes\":{bytes},\"server_time\":\"{at}\"{sent},\
             \"connect_ms\":{connect:.4},\"rtt_ms\":{rtt:.4},\"delay_ms\":{delay},\"offset_ms\":{offset}}}"
        );
    }
    let delay = delay.filter(|_| s.sent.is_some());
    let delay = delay.map_or(String::new(), |d| format!("delay={d:.3} ms  "));
    let offset = offset.map_or("out of range".into(), |o| format!("{o:+.3} ms"));
    let reply = escape(&done.reply);
    format!("{peer}: {reply}  connect={connect:.3} ms  rtt={rtt:.3} ms  {delay}offset={offset}")
}

/// A JSON string literal: quotes, backslashes and control characters escaped.
fn json_string(text: &str) -> String {
    let escape = |c: char| match c {
        '"' | '\\' => format!("\\{c}"),
        '\n' => "\\n".into(),
        c if c < ' ' || matches!(c, '\u{7f}' | '\u{2028}' | '\u{2029}') => {
            format!("\\u{:04x}", u32::from(c))
        }
        c => c.to_string(),
    };
    format!("\"{}\"", text.chars().map(escape).collect::<String>())
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
