//! A latency histogram that any thread can add to without a lock, in the
//! shape Prometheus reads: cumulative buckets by upper bound, a sum and a
//! count.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds in seconds, from 10 µs to 1 s: what a time service's
/// reply may take, from loopback to a loaded disk.
pub(crate) const BOUNDS: [f64; 16] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

/// [`BOUNDS`] in nanoseconds, for the search on every reply.
const BOUNDS_NANOS: [u64; BOUNDS.len()] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

/// Counts of durations, by the first bound each is within.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    /// Per bucket, not cumulative; the last counts those over every bound.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

/// What a histogram holds at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    /// Cumulative counts for each of [`BOUNDS`], then `+Inf`.
    pub cumulative: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl Histogram {
    /// Adds one duration.
    pub fn observe(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS.partition_point(|&bound| bound < nanos);
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// The counts now, cumulative as Prometheus wants them.
    pub fn snapshot(&self) -> Snapshot {
        let mut running = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|bucket| {
                running += bucket.load(Relaxed);
                running
            })
            .collect();
        Snapshot {
            cumulative,
            // Prometheus reads a float; past 2^52 ns (52 days) it rounds.
            #[allow(clippy::cast_precision_loss)]
            sum_seconds: self.sum_nanos.load(Relaxed) as f64 / 1e9,
            count: self.count.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_agree_in_both_units() {
        for (seconds, nanos) in BOUNDS.iter().zip(BOUNDS_NANOS) {
            assert_eq!((seconds * 1e9).round() as u64, nanos);
        }
    }

    #[test]
    fn durations_land_in_the_first_bucket_that_holds_them() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(10));
        histogram.observe(Duration::from_micros(11));
        histogram.observe(Duration::from_secs(3));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.cumulative[0], 1, "10 µs is within the first bound");
        assert_eq!(snapshot.cumulative[1], 2);
        assert_eq!(snapshot.cumulative[BOUNDS.len() - 1], 2, "3 s is past 1 s");
        assert_eq!(snapshot.cumulative[BOUNDS.len()], 3);
        assert_eq!(snapshot.count, 3);
        assert!((snapshot.sum_seconds - 3.000_021).abs() < 1e-9);
    }
}
