//! What the probes found: round trips, and how far the server's clock is
//! from ours (server minus ours), from NTP's four timestamps (RFC 5905):
//! T1 when we wrote the message, T2 when the server had it, T3 when the
//! server wrote its reply, T4 when the reply arrived here.
//!
//! offset = ((T2 - T1) + (T3 - T4)) / 2, delay = (T4 - T1) - (T3 - T2).
//! A reply without T3 (serv6 without `--send-time`) gives three: T3 = T2,
//! so the offset is `T2 - (T1 + T4) / 2` and the delay the whole round
//! trip, the server's turnaround in both. Whatever the path's asymmetry,
//! the true offset is within half its delay of a probe's, so the probe
//! with the smallest delay gives the tightest bound: the estimate
//! `ntpdate`'s clock filter trusts most. The median offset, with half the
//! median delay, shows what a typical probe says.

use super::exchange::Exchanged;
use crate::timestamp::Timestamp;
use crate::words::counted;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// One reply: the server's times, and the figures in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// T2, when the server had the message.
    pub at: Timestamp,
    /// T3, when the server wrote its reply, if it says.
    pub sent: Option<Timestamp>,
    /// T3 was left out: outside the round trip, so the server's clock
    /// stepped between T2 and T3.
    pub stepped: bool,
    pub rtt: f64,
    /// Offset and delay; `None` when the server's times are too far from
    /// ours to count (centuries off).
    pub clock: Option<(f64, f64)>,
    /// T4 is the kernel's arrival stamp, not when cli6 read the reply.
    pub by_kernel: bool,
}

impl Sample {
    /// The figures of exchange `done`, whose message the server had at
    /// `at`, and whose reply it wrote at `sent` if it says.
    pub fn of(done: &Exchanged, at: Timestamp, sent: Option<Timestamp>) -> Sample {
        // The server's times are cut to the microsecond they fell in: its
        // middle is the unbiased guess.
        let server = |t: Timestamp| nanos(t.to_system_time()) + 500;
        let (t1, t4) = (nanos(done.sent), nanos(done.received));
        // A reply sent before its message came, or a turnaround longer than
        // the round trip (beyond the microsecond each time is cut to), says
        // the server's clock stepped between the two: T3 is not believed.
        let turnaround = |t3| server(t3) - server(at);
        let believed = sent.filter(|&t3| (0..=t4 - t1 + 1000).contains(&turnaround(t3)));
        let (t2, t3) = (server(at), server(believed.unwrap_or(at)));
        // Past 2^53 ns (104 days) a figure loses nanoseconds; past 2^63
        // (292 years), it is out of range. The delay is never below zero,
        // whatever our own clock did.
        #[allow(clippy::cast_precision_loss)]
        let ms = |ns: i128| i64::try_from(ns).ok().map(|ns| ns as f64 / 1e6);
        Sample {
            at,
            sent,
            stepped: sent.is_some() && believed.is_none(),
            rtt: done.received.duration_since(done.sent).unwrap_or_default().as_secs_f64() * 1e3,
            clock: ms((t2 - t1 + t3 - t4) / 2).zip(ms((t4 - t1 - (t3 - t2)).max(0))),
            by_kernel: done.by_kernel,
        }
    }
}

/// Nanoseconds since 1970, which 128 bits hold for any `SystemTime`.
fn nanos(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => -i128::try_from(before.duration().as_nanos()).unwrap_or(i128::MAX),
    }
}

/// How many of the latest offsets the median and the best estimate are
/// taken from. Every other figure covers the whole run in constant
/// memory, but a median needs its values: a window keeps `--count 0`
/// bounded (16 bytes an offset, 16 KB in all) and the summary's sort
/// quick, holds every probe of any run up to 1000 (about 17 minutes at
/// the default interval), and beyond that tells of the server's clock
/// as it is now, not as it was before it drifted.
const WINDOW: usize = 1000;

/// Min, mean, max and population standard deviation of every value
/// added, in constant memory (Welford's running variance).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Running {
    n: u64,
    mean: f64,
    /// The sum of squared differences from the mean.
    m2: f64,
    min: f64,
    max: f64,
}

impl Running {
    // A count of probes, far below 2^52: the cast is exact.
    #[allow(clippy::cast_precision_loss)]
    fn add(&mut self, value: f64) {
        let first = self.n == 0;
        self.n += 1;
        self.min = if first { value } else { self.min.min(value) };
        self.max = if first { value } else { self.max.max(value) };
        let delta = value - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (value - self.mean);
    }

    #[allow(clippy::cast_precision_loss)]
    fn stddev(&self) -> f64 {
        (self.m2 / self.n.max(1) as f64).sqrt()
    }

    fn seen(self) -> Option<Running> {
        (self.n > 0).then_some(self)
    }
}

/// The probes so far: counts and running figures over all of them, and
/// the latest [`WINDOW`] offsets with their delays.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    pub sent: u64,
    by_kernel: u64,
    /// Offsets from four timestamps, and from three because the server
    /// sent no T3 (the others with three had theirs left out).
    four: u64,
    without_t3: u64,
    stepped: u64,
    /// Every reply gives a round trip.
    rtt: Running,
    /// Replies whose server time is out of range give none.
    offset: Running,
    /// Offset and delay, oldest first.
    recent: VecDeque<(f64, f64)>,
}

/// The median of `values`; `None` if there are none.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some((values.get(n.checked_sub(1)? / 2)? + values.get(n / 2)?) / 2.0)
}

/// Offsets, those of the window each with its bound: half the delay.
struct Offsets {
    /// The median offset, and half the median delay.
    median: (f64, f64),
    /// The offset of the recent probe with the smallest delay, and half that.
    best: (f64, f64),
    /// The least and the greatest, over every reply, not only the window.
    spread: (f64, f64),
    /// How many offsets came from four timestamps, and how many from three.
    timestamps: (u64, u64),
}

impl Tally {
    pub fn add(&mut self, sample: &Sample) {
        self.by_kernel += u64::from(sample.by_kernel);
        self.stepped += u64::from(sample.stepped);
        self.rtt.add(sample.rtt);
        let Some((offset, delay)) = sample.clock else { return };
        self.four += u64::from(sample.sent.is_some() && !sample.stepped);
        self.without_t3 += u64::from(sample.sent.is_none());
        self.offset.add(offset);
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back((offset, delay));
    }

    pub fn received(&self) -> u64 {
        self.rtt.n
    }

    // Figures for people: precision lost past 2^52 cannot show.
    #[allow(clippy::cast_precision_loss)]
    fn lost_percent(&self) -> f64 {
        100.0 * (self.sent - self.received()) as f64 / self.sent.max(1) as f64
    }

    fn offsets(&self) -> Option<Offsets> {
        let all = self.offset.seen()?;
        let column = |pick: fn(&(f64, f64)) -> f64| median(self.recent.iter().map(pick).collect());
        let (best, delay) = self.recent.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1))?;
        Some(Offsets {
            median: (column(|c| c.0)?, column(|c| c.1)? / 2.0),
            best: (best, delay / 2.0),
            spread: (all.min, all.max),
            timestamps: (self.four, all.n - self.four),
        })
    }
}

/// The ping-like summary, several lines.
pub(crate) fn summary_text(target: &str, tally: &Tally) -> String {
    let mut out = format!(
        "--- {target} probe statistics ---\n{} sent, {} received, {:.1}% lost",
        counted(tally.sent, "probe", "probes"),
        counted(tally.received(), "reply", "replies"),
        tally.lost_percent()
    );
    if let Some(r) = tally.rtt.seen() {
        let (min, avg, max, sd) = (r.min, r.mean, r.max, r.stddev());
        let _ = write!(out, "\nrtt min/avg/max/stddev = {min:.3}/{avg:.3}/{max:.3}/{sd:.3} ms");
    }
    if let Some(o) = tally.offsets() {
        let ((median, bound), (best, best_bound), (min, max)) = (o.median, o.best, o.spread);
        let (four, three) = o.timestamps;
        // With three timestamps, the delay is the round trip.
        let by = if four == 0 { "rtt" } else { "delay" };
        let how = match (four, three) {
            (_, 0) => "4 timestamps (the server sent its send time)",
            (0, _) if tally.without_t3 == 0 => {
                "3 timestamps: the server's clock stepped, so its send time (T3) was left out"
            }
            (0, _) => "3 timestamps: the server's turnaround is in it; run serv6 with --send-time",
            _ => "4 timestamps where the server sent its send time, else 3",
        };
        let _ = write!(
            out,
            "\noffset (server clock minus ours) median {median:+.3} ms ±{bound:.3}, spread {min:+.3} .. {max:+.3} ms\n\
             offset at the smallest {by} {best:+.3} ms ±{best_bound:.3} (the best estimate; ± is half the {by})\n\
             offset from {how}"
        );
        if four + three > WINDOW as u64 {
            let _ = write!(out, "\nmedian and best estimate from the last {WINDOW} offsets");
        }
    }
    if tally.stepped > 0 {
        let n = counted(tally.stepped, "send time", "send times");
        let _ = write!(out, "\n{n} left out: outside the round trip (the server's clock stepped)");
    }
    let out_of_range = tally.received() - tally.offset.n;
    if out_of_range > 0 {
        let n = counted(out_of_range, "reply", "replies");
        let _ = write!(out, "\n{n} with a server time out of range, not counted in the offset");
    }
    out
}

/// The summary as one JSON object; figures are null when no reply gave them.
pub(crate) fn summary_json(tally: &Tally) -> String {
    let rtt = tally.rtt.seen().map_or("null".into(), |r| {
        let (min, avg, max, sd) = (r.min, r.mean, r.max, r.stddev());
        format!("{{\"min\":{min:.4},\"avg\":{avg:.4},\"max\":{max:.4},\"stddev\":{sd:.4}}}")
    });
    let offset = tally.offsets().map_or("null".into(), |o| {
        let ((median, bound), (best, best_bound), (min, max)) = (o.median, o.best, o.spread);
        let (four, three) = o.timestamps;
        format!(
            "{{\"median\":{median:.4},\"median_bound\":{bound:.4},\"min\":{min:.4},\"max\":{max:.4},\
             \"best\":{best:.4},\"best_bound\":{best_bound:.4},\"from_4_timestamps\":{four},\"from_3_timestamps\":{three}}}"
        )
    });
    let (sent, received, lost, stamped) =
        (tally.sent, tally.received(), tally.lost_percent(), tally.by_kernel);
    format!(
        "{{\"summary\":{{\"sent\":{sent},\"received\":{received},\"lost_percent\":{lost:.1},\
         \"kernel_stamped\":{stamped},\"rtt_ms\":{rtt},\"offset_ms\":{offset}}}}}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample(rtt_ms: u32, offset_us: i32) -> Sample {
        Sample {
            at: Timestamp::parse("2026-11-24T04:31:58.123456Z").expect("valid"),
            sent: None,
            stepped: false,
            rtt: f64::from(rtt_ms),
            clock: Some((f64::from(offset_us) / 1e3, f64::from(rtt_ms))),
            by_kernel: true,
        }
    }

    /// An exchange sent and received at these many ns past 1970.
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

    /// A server time, `ns` past 1970: to cli6, the microsecond from
    /// there, so half a microsecond later.
    fn stamp(ns: u64) -> Timestamp {
        let at = UNIX_EPOCH + Duration::from_nanos(ns);
        Timestamp::from_system_time(at).expect("in range")
    }

    #[test]
    fn three_timestamps_give_server_time_minus_the_midpoint() {
        let done = exchanged(1_000_000_000, 1_010_000_000);
        let clock = |t2| Sample::of(&done, stamp(t2), None).clock;
        assert_eq!(clock(1_005_000_000), Some((0.0005, 10.0)));
        assert_eq!(clock(1_007_000_000), Some((2.0005, 10.0)));
        assert_eq!(clock(1_001_000_000), Some((-3.9995, 10.0)));
        assert_eq!(Sample::of(&done, stamp(1_005_000_000), None).rtt, 10.0);
    }

    #[test]
    fn four_timestamps_take_the_servers_turnaround_out() {
        // 10 ms round trip, 6 of them in the server: 2 ms each way. The
        // server's clock is 3 ms ahead: T2 = 1.002 + 0.003, T3 = T2 + 0.006.
        let done = exchanged(1_000_000_000, 1_010_000_000);
        let t2 = stamp(1_005_000_000);
        let four = Sample::of(&done, t2, Some(stamp(1_011_000_000)));
        assert_eq!(four.clock, Some((3.0005, 4.0)));
        // A reply sent before its message came, or a turnaround longer than
        // the round trip: the server's clock stepped, and T3 is left out.
        let three = Sample::of(&done, t2, None);
        for t3 in [1_000_000_000, 1_015_002_000, 4_000_000_000_000_000_000] {
            let stepped = Sample::of(&done, t2, Some(stamp(t3)));
            assert!(stepped.stepped, "T3 = {t3}");
            assert_eq!(stepped.clock, three.clock, "T3 = {t3}");
        }
        let whole_trip = Sample::of(&done, t2, Some(stamp(1_015_000_000)));
        assert_eq!(whole_trip.clock.map(|c| c.1), Some(0.0));
    }

    #[test]
    fn a_server_centuries_away_has_no_offset() {
        let done = exchanged(1_000_000_000, 1_010_000_000);
        let year_9999 = Timestamp::parse("9999-12-31T23:59:59.999999Z").expect("valid");
        assert_eq!(Sample::of(&done, year_9999, None).clock, None);
        assert_eq!(Sample::of(&done, year_9999, Some(year_9999)).clock, None);
    }

    fn tally(sent: u64, replies: &[Sample]) -> Tally {
        let mut tally = Tally { sent, ..Tally::default() };
        replies.iter().for_each(|s| tally.add(s));
        tally
    }

    #[test]
    fn summaries_count_losses_and_give_both_estimates() {
        let tally = tally(4, &[sample(3, -1000), sample(1, 3000), sample(2, 500)]);
        let text = summary_text("localhost:5006", &tally);
        for want in [
            "4 probes sent, 3 replies received, 25.0% lost",
            "rtt min/avg/max/stddev = 1.000/2.000/3.000/0.816 ms",
            "median +0.500 ms ±1.000, spread -1.000 .. +3.000 ms",
            "offset at the smallest rtt +3.000 ms ±0.500",
            "offset from 3 timestamps: the server's turnaround is in it",
        ] {
            assert!(text.contains(want), "{want:?} in {text}");
        }
        let json = summary_json(&tally);
        for want in [
            "\"sent\":4,\"received\":3,\"lost_percent\":25.0,\"kernel_stamped\":3",
            "\"best\":3.0000,\"best_bound\":0.5000",
            "\"from_4_timestamps\":0,\"from_3_timestamps\":3",
        ] {
            assert!(json.contains(want), "{want:?} in {json}");
        }
    }

    #[test]
    fn the_best_estimate_is_the_smallest_delay_not_the_smallest_rtt() {
        let four = Sample { sent: Some(sample(0, 0).at), clock: Some((2.0, 0.4)), ..sample(3, 0) };
        let text = summary_text("x", &tally(2, &[four, sample(1, -1000)]));
        assert!(text.contains("offset at the smallest delay +2.000 ms ±0.200"), "{text}");
        assert!(text.contains("where the server sent its send time, else 3"), "{text}");
        let text = summary_text("x", &tally(1, &[four]));
        assert!(text.contains("offset from 4 timestamps (the server"), "{text}");
    }

    #[test]
    fn nothing_received_and_times_out_of_range() {
        let none = summary_json(&Tally { sent: 1, ..Tally::default() });
        assert!(none.contains("\"rtt_ms\":null,\"offset_ms\":null"), "{none}");
        let untimed = tally(1, &[Sample { clock: None, by_kernel: false, ..sample(1, 0) }]);
        let text = summary_text("x", &untimed);
        assert!(text.contains("1 probe sent, 1 reply received"), "{text}");
        assert!(text.contains("1 reply with a server time out of range"), "{text}");
        assert!(!text.contains("offset (server"), "{text}");
    }

    #[test]
    fn a_run_without_end_keeps_the_latest_offsets_and_running_figures() {
        // The first probe's offset is the run's extreme; later ones hold
        // the window past it.
        let mut tally = tally(1, &[sample(9, -50_000)]);
        for i in 0..3 * WINDOW {
            tally.sent += 1;
            tally.add(&sample(1 + (i % 2) as u32, 2000));
        }
        assert_eq!(tally.recent.len(), WINDOW);
        assert!(tally.recent.capacity() < 2 * WINDOW, "{}", tally.recent.capacity());
        let text = summary_text("x", &tally);
        for want in [
            "3001 probes sent, 3001 replies received",
            "rtt min/avg/max/stddev = 1.000/1.502/9.000/0.518 ms",
            "median +2.000 ms ±0.750, spread -50.000 .. +2.000 ms",
            "offset at the smallest rtt +2.000 ms ±0.500",
            "median and best estimate from the last 1000 offsets",
        ] {
            assert!(text.contains(want), "{want:?} in {text}");
        }
    }

    #[test]
    fn when_every_send_time_is_left_out_the_advice_says_why() {
        let t3 = sample(0, 0).at;
        let stepped = Sample { sent: Some(t3), stepped: true, ..sample(1, 0) };
        let text = summary_text("x", &tally(2, &[stepped, stepped]));
        assert!(text.contains("offset from 3 timestamps: the server's clock stepped, so its send time (T3) was left out"), "{text}");
        assert!(!text.contains("run serv6 with --send-time"), "{text}");
        assert!(text.contains("2 send times left out"), "{text}");
        let text = summary_text("x", &tally(2, &[stepped, sample(1, 0)]));
        assert!(text.contains("run serv6 with --send-time"), "one reply had no T3: {text}");
    }
}
