//! serv6's counters, each kept once: the summary on exit, the metrics
//! endpoint and the status told to systemd all read them here. They are
//! process-wide atomics, as the process serves one server.

use super::framing::End;
use crate::protocol::Service;
use crate::words::counted;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The counters of this process.
pub(crate) static STATS: Stats = Stats::new();

/// Upper bounds in seconds of the reply-latency histogram, from 10 µs to
/// 1 s: what a time service's reply may take, from loopback to a loaded disk.
pub(crate) const BOUNDS: [f64; 16] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

/// What serv6 has done so far.
pub(crate) struct Stats {
    started: OnceLock<Instant>,
    /// Connections ended, by how ([`End::slot`]).
    ended: [AtomicU64; End::COUNTERS.len()],
    /// Exchanges served, by service ([`Service::ALL`]'s order).
    served: [AtomicU64; Service::ALL.len()],
    /// Exchanges served whose reply could not be sent.
    replies_lost: AtomicU64,
    /// Connections accepted and not yet ended.
    in_progress: AtomicUsize,
    /// Connections workers have begun and ended (answered or handed to
    /// the room), for the watchdog to see them move.
    jobs_begun: AtomicU64,
    jobs_ended: AtomicU64,
    /// Connections the waiting room holds, waiting or closing.
    pub held: AtomicUsize,
    /// From a message's arrival to its reply written: per bucket of
    /// [`BOUNDS`] (the last for those past every bound), not cumulative.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    latency_sum_nanos: AtomicU64,
}

/// A connection counted as in progress until this is dropped.
#[derive(Debug)]
pub(crate) struct InProgress(());

impl InProgress {
    pub fn new() -> InProgress {
        STATS.in_progress.fetch_add(1, Relaxed);
        InProgress(())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        STATS.in_progress.fetch_sub(1, Relaxed);
    }
}

impl Stats {
    const fn new() -> Stats {
        Stats {
            started: OnceLock::new(),
            ended: [const { AtomicU64::new(0) }; End::COUNTERS.len()],
            served: [const { AtomicU64::new(0) }; Service::ALL.len()],
            replies_lost: AtomicU64::new(0),
            in_progress: AtomicUsize::new(0),
            jobs_begun: AtomicU64::new(0),
            jobs_ended: AtomicU64::new(0),
            held: AtomicUsize::new(0),
            buckets: [const { AtomicU64::new(0) }; BOUNDS.len() + 1],
            latency_sum_nanos: AtomicU64::new(0),
        }
    }

    /// Marks the start, which the summary counts from.
    pub fn start(&self) {
        let _ = self.started.set(Instant::now());
    }

    /// Counts a connection that ended as `end` says; returns how many have
    /// ended so, this one included.
    pub fn ended(&self, end: &End) -> u64 {
        self.ended[end.slot()].fetch_add(1, Relaxed) + 1
    }

    /// Counts an exchange served by `service`, and its reply's latency
    /// from its message's arrival, if it had a message.
    pub fn served_one(&self, service: Service, latency: Option<Duration>) {
        self.ended[0].fetch_add(1, Relaxed);
        self.served[service as usize].fetch_add(1, Relaxed);
        if let Some(took) = latency {
            let seconds = took.as_secs_f64();
            let bucket = BOUNDS.partition_point(|&bound| bound < seconds);
            let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            self.buckets[bucket].fetch_add(1, Relaxed);
            self.latency_sum_nanos.fetch_add(nanos, Relaxed);
        }
    }

    /// Counts a reply that could not be sent (the client reset, say) after
    /// its exchange was logged: the exchange is served, as its line says,
    /// and the lost reply is an error.
    pub fn reply_lost(&self) {
        self.replies_lost.fetch_add(1, Relaxed);
    }

    /// Replies lost so far.
    pub fn replies_lost(&self) -> u64 {
        self.replies_lost.load(Relaxed)
    }

    /// Exchanges served by `service` so far.
    pub fn served_as(&self, service: Service) -> u64 {
        self.served[service as usize].load(Relaxed)
    }

    /// Connections that ended at `slot` ([`End::slot`]) so far.
    pub fn count(&self, slot: usize) -> u64 {
        self.ended[slot].load(Relaxed)
    }

    /// Exchanges answered with their time so far.
    pub fn served(&self) -> u64 {
        self.count(0)
    }

    /// Connections accepted and not yet ended, now.
    pub fn in_progress(&self) -> usize {
        self.in_progress.load(Relaxed)
    }

    /// A worker begins with a connection (`true`), or is done with it.
    pub fn worker_job(&self, begins: bool) {
        let counter = if begins { &self.jobs_begun } else { &self.jobs_ended };
        counter.fetch_add(1, Relaxed);
    }

    /// Worker jobs begun and ended so far.
    pub fn worker_jobs(&self) -> (u64, u64) {
        (self.jobs_begun.load(Relaxed), self.jobs_ended.load(Relaxed))
    }

    /// The latency counts so far, cumulative by bound as Prometheus reads
    /// them (the last is every reply), and their sum in seconds.
    pub fn latency(&self) -> (Vec<u64>, f64) {
        let mut running = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|bucket| {
                running += bucket.load(Relaxed);
                running
            })
            .collect();
        // Prometheus reads a float; past 2^52 ns (52 days) it rounds.
        #[allow(clippy::cast_precision_loss)]
        let sum = self.latency_sum_nanos.load(Relaxed) as f64 / 1e9;
        (cumulative, sum)
    }

    /// The summary: `stopped after 12.3 s: 40 exchanges served, 2 errors,
    /// 0 busy refusals`, then whatever else happened (health checks,
    /// connections cut at shutdown, then `lines`: what the outputs lost).
    /// `verb` says what the time is since start, as in `stopped after`.
    pub fn summary(&self, verb: &str, lines: &[String]) -> String {
        let counters = End::COUNTERS.iter().enumerate();
        let lost = self.replies_lost();
        let errors: u64 =
            counters.clone().filter(|(_, c)| c.3).map(|(slot, _)| self.count(slot)).sum::<u64>()
                + lost;
        let mut text = format!(
            "{verb} {:.1} s: {} served, {}, {}",
            self.started.get().map_or(0.0, |t| t.elapsed().as_secs_f64()),
            counted(self.served(), "exchange", "exchanges"),
            counted(errors, "error", "errors"),
            counted(self.count(End::slot_of("busy")), "busy refusal", "busy refusals"),
        );
        // What is neither an exchange, an error nor busy, when it happened.
        for (slot, (label, one, many, error, _)) in counters {
            let n = self.count(slot);
            if n > 0 && !error && !matches!(*label, "served" | "busy") {
                let _ = write!(text, ", {}", counted(n, one, many));
            }
        }
        if lost > 0 {
            let _ = write!(text, ", {}", counted(lost, "reply lost", "replies lost"));
        }
        for line in lines {
            let _ = write!(text, ", {line}");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_first_bucket_that_holds_them() {
        let stats = Stats::new();
        for micros in [10, 11, 3_000_000] {
            stats.served_one(Service::Receipt, Some(Duration::from_micros(micros)));
        }
        assert_eq!(stats.served_as(Service::Receipt), 3);
        let (cumulative, sum) = stats.latency();
        assert_eq!(cumulative[0], 1, "10 µs is within the first bound");
        assert_eq!(cumulative[1], 2);
        assert_eq!(cumulative[BOUNDS.len() - 1], 2, "3 s is past 1 s");
        assert_eq!(cumulative[BOUNDS.len()], 3);
        assert!((sum - 3.000_021).abs() < 1e-9);
    }
}
