//! Two serv6 instances behind HAProxy (PROXY protocol v1 to one, v2 to the
//! other) against one instance reached directly, in the same run, and
//! where the CPU goes: HAProxy, the instances, the clients (this process).

use super::harness::{proc, Haproxy, Server};
use super::{drive, Load, TICK};
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The load: as many clients as the main table's middle row.
const CLIENTS: usize = 16;

#[derive(Clone, Copy, Default)]
struct Round {
    per_second: f64,
    p99: Duration,
    /// CPU per exchange, in µs: HAProxy, the serv6 instances, the clients.
    haproxy_us: f64,
    serv6_us: f64,
    clients_us: f64,
}

fn cpu_us(ticks: u64, load: &Load) -> f64 {
    (TICK * ticks as u32).as_secs_f64() * 1e6 / load.latencies.len().max(1) as f64
}

fn serv6(extra: &[&str]) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_serv6"));
    command.args(["--bind", "127.0.0.1", "--quiet"]).args(extra);
    Server::start_writing(&mut command, Stdio::null())
}

fn direct(run: Duration) -> Round {
    let server = serv6(&[]);
    let (before, own_before) = (proc::cpu_ticks(server.pid()), proc::cpu_ticks(std::process::id()));
    let load = drive(server.v4(), CLIENTS, run);
    Round {
        per_second: load.per_second(),
        p99: load.p99(),
        haproxy_us: 0.0,
        serv6_us: cpu_us(proc::cpu_ticks(server.pid()) - before, &load),
        clients_us: cpu_us(proc::cpu_ticks(std::process::id()) - own_before, &load),
    }
}

fn through_haproxy(run: Duration) -> Option<Round> {
    let (a, b) = (serv6(&["--proxy-protocol"]), serv6(&["--proxy-protocol"]));
    let haproxy = Haproxy::start(a.v4(), b.v4())?;
    let pids = [haproxy.pid(), a.pid(), b.pid(), std::process::id()];
    let before = pids.map(proc::cpu_ticks);
    let load = drive(haproxy.front, CLIENTS, run);
    let used: Vec<u64> = pids.iter().zip(before).map(|(&p, b)| proc::cpu_ticks(p) - b).collect();
    Some(Round {
        per_second: load.per_second(),
        p99: load.p99(),
        haproxy_us: cpu_us(used[0], &load),
        serv6_us: cpu_us(used[1] + used[2], &load),
        clients_us: cpu_us(used[3], &load),
    })
}

fn median(rounds: &[Round], key: impl Fn(&Round) -> f64) -> f64 {
    let mut values: Vec<f64> = rounds.iter().map(key).collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The section of the report; says why it is missing without HAProxy.
pub(crate) fn section(run: Duration, repeats: usize) -> String {
    if Command::new("haproxy").arg("-v").output().is_err() {
        return "\nHAProxy is not installed (apt-get install haproxy): the cluster was not measured.\n".into();
    }
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        one.push(direct(run));
        two.extend(through_haproxy(run));
    }
    let mut out = format!(
        "\n{CLIENTS} closed-loop clients: one serv6 directly, and two behind HAProxy (PROXY v1 and v2); \
         medians of {repeats} interleaved runs. CPU is per exchange, in µs.\n\n\
         | setup | exchanges/s | p99 µs | CPU HAProxy | CPU serv6 (all) | CPU clients |\n\
         |---|---:|---:|---:|---:|---:|\n"
    );
    for (name, rounds) in [("one serv6, direct", &one), ("two serv6 behind HAProxy", &two)] {
        let _ = writeln!(
            out,
            "| {name} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} |",
            median(rounds, |r| r.per_second),
            median(rounds, |r| r.p99.as_secs_f64() * 1e6),
            median(rounds, |r| r.haproxy_us),
            median(rounds, |r| r.serv6_us),
            median(rounds, |r| r.clients_us),
        );
    }
    out
}
