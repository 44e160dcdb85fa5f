//! What a run of probes found: round trips, and two estimates of how far
//! the server's clock is from ours (server minus ours).
//!
//! Each probe's offset is the NTP estimate `T_server - (t_send +
//! t_receive) / 2`. Whatever the path's asymmetry, the true offset is within
//! half that probe's round trip of it, so the probe with the smallest round
//! trip gives the tightest bound: the estimate `ntpdate`'s clock filter
//! trusts most. The median offset, with half the median round trip, shows
//! what a typical probe says.

use crate::words::counted;
use std::fmt::Write as _;
use std::time::Duration;

/// One reply's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reply {
    pub rtt: Duration,
    /// Server clock minus ours, in nanoseconds; `None` when the server's
    /// time is too far from ours to count (centuries off).
    pub offset_ns: Option<i64>,
}

/// The probes so far.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    pub sent: u64,
    pub replies: Vec<Reply>,
}

/// Round trip min, avg, max and population standard deviation, in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RttStats {
    min: f64,
    avg: f64,
    max: f64,
    stddev: f64,
}

/// Offsets in ms, each estimate with the most it can be off.
#[derive(Debug, Clone, Copy, PartialEq)]
struct OffsetStats {
    median: f64,
    median_bound: f64,
    min: f64,
    max: f64,
    best: f64,
    best_bound: f64,
}

/// An offset in nanoseconds as milliseconds, as the probe prints them.
// Nanoseconds past 2^52 (52 days) lose precision below a nanosecond.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn offset_ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

/// Milliseconds, as the probe prints them.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(sorted: &[f64]) -> f64 {
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 0 {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

impl Tally {
    fn lost_percent(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        // Figures for people: precision lost past 2^52 cannot show.
        #[allow(clippy::cast_precision_loss)]
        let lost = 100.0 * (self.sent - self.replies.len() as u64) as f64 / self.sent as f64;
        lost
    }

    fn rtt_stats(&self) -> Option<RttStats> {
        let values: Vec<f64> = self.replies.iter().map(|r| ms(r.rtt)).collect();
        #[allow(clippy::cast_precision_loss)] // a count of probes, far below 2^52
        let n = values.len() as f64;
        let min = values.iter().copied().reduce(f64::min)?;
        let max = values.iter().copied().reduce(f64::max)?;
        let avg = values.iter().sum::<f64>() / n;
        let variance = values.iter().map(|v| (v - avg).powi(2)).sum::<f64>() / n;
        Some(RttStats {
            min,
            avg,
            max,
            stddev: variance.sqrt(),
        })
    }

    fn offset_stats(&self) -> Option<OffsetStats> {
        let timed: Vec<(f64, f64)> = self
            .replies
            .iter()
            .filter_map(|r| Some((offset_ms(r.offset_ns?), ms(r.rtt))))
            .collect();
        let (best, best_rtt) = timed
            .iter()
            .copied()
            .reduce(|a, b| if b.1 < a.1 { b } else { a })?;
        let mut offsets: Vec<f64> = timed.iter().map(|t| t.0).collect();
        let mut rtts: Vec<f64> = timed.iter().map(|t| t.1).collect();
        offsets.sort_by(f64::total_cmp);
        rtts.sort_by(f64::total_cmp);
        Some(OffsetStats {
            median: median(&offsets),
            median_bound: median(&rtts) / 2.0,
            min: offsets[0],
            max: offsets[offsets.len() - 1],
            best,
            best_bound: best_rtt / 2.0,
        })
    }

    /// Replies whose server time was too far off to give an offset.
    fn untimed(&self) -> usize {
        self.replies
            .iter()
            .filter(|r| r.offset_ns.is_none())
            .count()
    }
}

/// The ping-like summary, several lines.
pub(crate) fn summary_text(target: &str, tally: &Tally) -> String {
    let mut out = format!(
        "--- {target} probe statistics ---\n{} sent, {} received, {:.1}% lost\n",
        counted(tally.sent, "probe", "probes"),
        counted(tally.replies.len() as u64, "reply", "replies"),
        tally.lost_percent()
    );
    if let Some(r) = tally.rtt_stats() {
        let _ = writeln!(
            out,
            "rtt min/avg/max/stddev = {:.3}/{:.3}/{:.3}/{:.3} ms",
            r.min, r.avg, r.max, r.stddev
        );
    }
    if let Some(o) = tally.offset_stats() {
        let _ = writeln!(
            out,
            "offset (server clock minus ours) median {:+.3} ms ±{:.3}, spread {:+.3} .. {:+.3} ms\n\
             offset at the smallest rtt {:+.3} ms ±{:.3} (the best estimate; ± is half the rtt)",
            o.median, o.median_bound, o.min, o.max, o.best, o.best_bound
        );
    }
    let untimed = tally.untimed();
    if untimed > 0 {
        let _ = writeln!(
            out,
            "{} with a server time out of range, not counted in the offset",
            counted(untimed as u64, "reply", "replies")
        );
    }
    out
}

/// The summary as one JSON object; figures are null when no reply gave them.
pub(crate) fn summary_json(tally: &Tally) -> String {
    let rtt = tally.rtt_stats().map_or("null".into(), |r| {
        format!(
            "{{\"min\":{:.3},\"avg\":{:.3},\"max\":{:.3},\"stddev\":{:.3}}}",
            r.min, r.avg, r.max, r.stddev
        )
    });
    let offset = tally.offset_stats().map_or("null".into(), |o| {
        format!(
            "{{\"median\":{:.3},\"median_bound\":{:.3},\"min\":{:.3},\"max\":{:.3},\
             \"best\":{:.3},\"best_bound\":{:.3}}}",
            o.median, o.median_bound, o.min, o.max, o.best, o.best_bound
        )
    });
    format!(
        "{{\"summary\":{{\"sent\":{},\"received\":{},\"lost_percent\":{:.1},\"rtt_ms\":{rtt},\"offset_ms\":{offset}}}}}\n",
        tally.sent,
        tally.replies.len(),
        tally.lost_percent()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(rtt_ms: u64, offset_us: i64) -> Reply {
        Reply {
            rtt: Duration::from_millis(rtt_ms),
            offset_ns: Some(offset_us * 1000),
        }
    }

    #[test]
    fn summaries_count_losses_and_give_both_estimates() {
        let tally = Tally {
            sent: 4,
            replies: vec![reply(3, -1000), reply(1, 3000), reply(2, 500)],
        };
        let text = summary_text("localhost:5006", &tally);
        for want in [
            "4 probes sent, 3 replies received, 25.0% lost",
            "rtt min/avg/max/stddev = 1.000/2.000/3.000/0.816 ms",
            "median +0.500 ms ±1.000, spread -1.000 .. +3.000 ms",
            "offset at the smallest rtt +3.000 ms ±0.500",
        ] {
            assert!(text.contains(want), "{want:?} in {text}");
        }
        let json = summary_json(&tally);
        assert!(
            json.contains("\"sent\":4,\"received\":3,\"lost_percent\":25.0"),
            "{json}"
        );
        assert!(
            json.contains("\"best\":3.000,\"best_bound\":0.500"),
            "{json}"
        );
    }

    #[test]
    fn nothing_received_and_times_out_of_range() {
        let none = summary_json(&Tally {
            sent: 1,
            ..Tally::default()
        });
        assert!(
            none.contains("\"rtt_ms\":null,\"offset_ms\":null"),
            "{none}"
        );
        let untimed = Tally {
            sent: 1,
            replies: vec![Reply {
                rtt: Duration::from_millis(1),
                offset_ns: None,
            }],
        };
        let text = summary_text("x", &untimed);
        assert!(text.contains("1 probe sent, 1 reply received"), "{text}");
        assert!(
            text.contains("1 reply with a server time out of range"),
            "{text}"
        );
        assert!(!text.contains("offset (server"), "{text}");
    }
}
