//! serv6's counters, each kept once and named once: the summary on exit,
//! the metrics endpoint and the status told to systemd all read them here.
//! They are process-wide atomics, as the process serves one server.

use crate::output::{self, LogCounts};
use crate::protocol::Service;
use crate::words::counted;
use std::fmt::Write as _;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;

/// The counters of this process.
pub(crate) static STATS: Stats = Stats::new();

/// Upper bounds in seconds of the reply-latency histogram, from 10 µs to
/// 1 s: what a time service's reply may take, from loopback to a loaded disk.
pub(crate) const BOUNDS: [f64; 16] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

/// How a connection ended, as it is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    Served,
    TooLong,
    Deadline,
    Busy,
    ShuttingDown,
    Clock,
    Proxy,
    HealthCheck,
    Failed,
}

/// What is said of one way of ending, wherever it is said.
pub(crate) struct Counter {
    /// Its metric label: `serv6_refusals_total{reason="busy"}`.
    pub label: &'static str,
    /// Its noun, one and many, in the summary and the per-second reports.
    pub one: &'static str,
    pub many: &'static str,
    /// Whether the summary counts it among errors.
    pub error: bool,
    /// Whether the client is told `error: ...`: a refusal.
    pub refusal: bool,
}

impl Ended {
    pub const ALL: [Ended; 9] = {
        use Ended::*;
        [Served, TooLong, Deadline, Busy, ShuttingDown, Clock, Proxy, HealthCheck, Failed]
    };

    /// The one table of the counters' words.
    #[rustfmt::skip]
    pub const fn counter(self) -> Counter {
        match self {
            Ended::Served => Counter { label: "served", one: "exchange", many: "exchanges", error: false, refusal: false },
            Ended::TooLong => Counter { label: "too_long", one: "message too long", many: "messages too long", error: true, refusal: true },
            Ended::Deadline => Counter { label: "deadline", one: "deadline", many: "deadlines", error: true, refusal: true },
            Ended::Busy => Counter { label: "busy", one: "busy refusal", many: "busy refusals", error: false, refusal: true },
            Ended::ShuttingDown => Counter { label: "shutting_down", one: "connection cut at shutdown", many: "connections cut at shutdown", error: false, refusal: true },
            Ended::Clock => Counter { label: "clock", one: "clock out of range", many: "clocks out of range", error: true, refusal: true },
            Ended::Proxy => Counter { label: "proxy", one: "refused PROXY connection", many: "refused PROXY connections", error: true, refusal: true },
            Ended::HealthCheck => Counter { label: "health_check", one: "health check", many: "health checks", error: false, refusal: false },
            Ended::Failed => Counter { label: "failed", one: "connection failed", many: "connections failed", error: true, refusal: false },
        }
    }
}

/// A client's connection, counted among those serv6 holds for as long as
/// it lives: whoever holds the socket holds this, so the count is every
/// connection from its `accept` to its close, wherever it is.
#[derive(Debug)]
pub(crate) struct Held {
    pub stream: TcpStream,
    counted: bool,
}

impl Held {
    /// `stream`, if fewer than `max` are held; else it is given back.
    pub fn within(stream: TcpStream, max: usize) -> Result<Held, TcpStream> {
        match STATS.held.fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1)) {
            Ok(_) => Ok(Held { stream, counted: true }),
            Err(_) => Err(stream),
        }
    }

    /// `stream`, held only long enough to be told why it is not kept:
    /// not counted, so that the count never passes `--max-conns`.
    pub fn briefly(stream: TcpStream) -> Held {
        Held { stream, counted: false }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.counted {
            STATS.held.fetch_sub(1, Relaxed);
        }
    }
}

/// What serv6 has done so far.
pub(crate) struct Stats {
    started: OnceLock<Instant>,
    /// Connections ended, by how; those served are counted by service.
    ended: [AtomicU64; Ended::ALL.len()],
    served: [AtomicU64; Service::ALL.len()],
    /// Exchanges served whose reply could not be sent.
    replies_lost: AtomicU64,
    /// Client connections held now ([`Held`]).
    held: AtomicUsize,
    /// Connections workers have begun and ended (answered or handed to
    /// the room), for the watchdog to see them move.
    jobs: [AtomicU64; 2],
    /// From the moment the rules ended a message to its reply written:
    /// per bucket of [`BOUNDS`] (the last for those past every bound),
    /// not cumulative.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    latency_sum_nanos: AtomicU64,
}

impl Stats {
    const fn new() -> Stats {
        Stats {
            started: OnceLock::new(),
            ended: [const { AtomicU64::new(0) }; Ended::ALL.len()],
            served: [const { AtomicU64::new(0) }; Service::ALL.len()],
            replies_lost: AtomicU64::new(0),
            held: AtomicUsize::new(0),
            jobs: [const { AtomicU64::new(0) }; 2],
            buckets: [const { AtomicU64::new(0) }; BOUNDS.len() + 1],
            latency_sum_nanos: AtomicU64::new(0),
        }
    }

    /// Marks the start, which the summary counts from.
    pub fn start(&self) {
        let _ = self.started.set(Instant::now());
    }

    /// Counts a connection that ended unserved; returns how many have
    /// ended so, this one included.
    pub fn ended(&self, how: Ended) -> u64 {
        self.ended[how as usize].fetch_add(1, Relaxed) + 1
    }

    /// Counts an exchange served by `service`, and its reply's latency
    /// since the rules `ended` its message, if it had one.
    pub fn served(&self, service: Service, ended: Option<Instant>) {
        self.served[service as usize].fetch_add(1, Relaxed);
        if let Some(took) = ended.map(|at| at.elapsed()) {
            let bucket = BOUNDS.partition_point(|&bound| bound < took.as_secs_f64());
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

    pub fn replies_lost(&self) -> u64 {
        self.replies_lost.load(Relaxed)
    }

    /// Exchanges served by `service` so far.
    pub fn served_as(&self, service: Service) -> u64 {
        self.served[service as usize].load(Relaxed)
    }

    /// Connections that ended `how` so far.
    pub fn count(&self, how: Ended) -> u64 {
        match how {
            Ended::Served => Service::ALL.iter().map(|&(s, _)| self.served_as(s)).sum(),
            how => self.ended[how as usize].load(Relaxed),
        }
    }

    /// Client connections held now.
    pub fn held(&self) -> usize {
        self.held.load(Relaxed)
    }

    /// A worker begins with a connection (`true`), or is done with it.
    pub fn worker_job(&self, begins: bool) {
        self.jobs[usize::from(!begins)].fetch_add(1, Relaxed);
    }

    /// Worker jobs begun and ended so far.
    pub fn worker_jobs(&self) -> (u64, u64) {
        (self.jobs[0].load(Relaxed), self.jobs[1].load(Relaxed))
    }

    /// The latency counts so far, cumulative by bound as Prometheus reads
    /// them (the last is every reply), and their sum in seconds.
    pub fn latency(&self) -> (Vec<u64>, f64) {
        let mut cumulative = Vec::with_capacity(self.buckets.len());
        for bucket in &self.buckets {
            cumulative.push(cumulative.last().unwrap_or(&0) + bucket.load(Relaxed));
        }
        // Prometheus reads a float; past 2^52 ns (52 days) it rounds.
        #[allow(clippy::cast_precision_loss)]
        let sum = self.latency_sum_nanos.load(Relaxed) as f64 / 1e9;
        (cumulative, sum)
    }

    /// The summary: `stopped after 12.3 s: 40 exchanges served, 2 errors,
    /// 0 busy refusals`, then whatever else happened (health checks,
    /// connections cut at shutdown, replies lost, what the outputs lost).
    /// `verb` says what the time is since start.
    pub fn summary(&self, verb: &str) -> String {
        let lost = self.replies_lost();
        let errors = Ended::ALL.iter().filter(|e| e.counter().error);
        let errors = errors.map(|&e| self.count(e)).sum::<u64>() + lost;
        let mut text = format!(
            "{verb} {:.1} s: {} served, {}",
            self.started.get().map_or(0.0, |t| t.elapsed().as_secs_f64()),
            counted(self.count(Ended::Served), "exchange", "exchanges"),
            counted(errors, "error", "errors"),
        );
        // Busy refusals always, and what else is neither an exchange nor an
        // error when it happened (busy comes first in `ALL`).
        for how in Ended::ALL.into_iter().filter(|&how| how != Ended::Served) {
            let (n, c) = (self.count(how), how.counter());
            if !c.error && (n > 0 || how == Ended::Busy) {
                let _ = write!(text, ", {}", counted(n, c.one, c.many));
            }
        }
        let LogCounts { dropped, not_written, reason, .. } = output::log_counts();
        let why = reason.map(|reason| format!(": {reason}")).unwrap_or_default();
        let lost = [
            (lost, "reply lost", "replies lost", ""),
            (dropped, "exchange line dropped", "exchange lines dropped", ""),
            (output::stderr_dropped(), "error line dropped", "error lines dropped", ""),
            (not_written, "exchange line not written", "exchange lines not written", &why),
        ];
        for (n, one, many, why) in lost.into_iter().filter(|&(n, ..)| n > 0) {
            let _ = write!(text, ", {}{why}", counted(n, one, many));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_land_in_the_first_bucket_that_holds_them() {
        let stats = Stats::new();
        for micros in [10, 11, 3_000_000] {
            let ended = Instant::now().checked_sub(Duration::from_micros(micros));
            stats.served(Service::Receipt, ended);
        }
        assert_eq!(stats.count(Ended::Served), 3);
        let (cumulative, sum) = stats.latency();
        assert_eq!(cumulative[BOUNDS.len() - 1], 2, "3 s is past 1 s");
        assert_eq!(cumulative[BOUNDS.len()], 3);
        assert!(sum >= 3.000_021, "{sum}");
    }

    #[test]
    fn every_way_of_ending_has_its_own_label() {
        let labels: Vec<&str> = Ended::ALL.iter().map(|e| e.counter().label).collect();
        for (i, label) in labels.iter().enumerate() {
            assert!(!labels[..i].contains(label), "{label} twice");
        }
        assert!(Ended::ALL.iter().enumerate().all(|(i, &e)| e as usize == i));
    }
}
