//! `make bench`: serv6's throughput, latency, CPU per exchange and memory,
//! against a floor measured in the same run.
//!
//! The floor is the barest std server: a few threads blocking in `accept`
//! on one listener, each reading to LF, writing a fixed reply and closing.
//! It runs as a child process (this binary with `--floor`) so that its CPU
//! time can be read from /proc like serv6's. The load is closed-loop
//! clients in this process: connect, send `hola` + LF, read to EOF, close.
//!
//! `QUICK=1` shortens every run for a quick check; `CLIENTS=16` (or a
//! comma-separated list) runs only the load table, at those client counts.
//! Results go to standard output and to a new dated file under
//! `target/bench-results/`, never to a tracked file.

// The bench starts and watches servers as the integration tests do, with
// the same harness; it uses only part of it.
#[allow(dead_code)]
#[path = "../tests/harness/mod.rs"]
mod harness;

mod cluster;

use harness::{proc, reply_line, reply_of, Reply, Server, Timestamp, SOME_TIME};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// The serv6 measured: this build's, or the one `SERV6_UNDER_TEST` names,
/// so that an older build can be measured in the same run for a
/// before-and-after figure.
fn serv6() -> String {
    harness::serv6_path()
}
const FLOOR_THREADS: usize = 4;
const CONCURRENCY: [usize; 3] = [1, 16, 256];
const SILENT: usize = 1000;
/// Linux reports CPU time in clock ticks of 1/100 s.
const TICK: Duration = Duration::from_millis(10);

struct Settings {
    run: Duration,
    repeats: usize,
    starts: usize,
    /// Runs too short for the verdicts to be more than indicative.
    indicative: bool,
}

fn main() {
    if std::env::args().any(|a| a == "--floor") {
        floor();
    }
    let quick = std::env::var("QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let settings = if quick {
        Settings { run: Duration::from_millis(500), repeats: 1, starts: 5, indicative: true }
    } else {
        Settings { run: Duration::from_secs(3), repeats: 5, starts: 20, indicative: false }
    };
    let mut report = String::new();
    let _ = writeln!(report, "{}", machine());
    let _ = writeln!(
        report,
        "Closed-loop clients on the same machine, {:?} per run, median of {} runs interleaved with the other servers'.\n",
        settings.run, settings.repeats
    );
    report.push_str(&load_table(&settings));
    if std::env::var("CLIENTS").unwrap_or_default().is_empty() {
        report.push_str(&silent_section(&settings));
        report.push_str(&startup_section(&settings));
        report.push_str(&cluster::section(settings.run, settings.repeats));
    }
    print!("{report}");
    save(&report);
}

/// Writes the report to `target/bench-results/<UTC time>.md`.
fn save(report: &str) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-results");
    let now = Timestamp::from_system_time(SystemTime::now()).map_or_else(
        || "unknown-time".to_owned(),
        |t| t.to_rfc3339().as_str()[..19].replace(':', "-"),
    );
    let path = format!("{dir}/{now}.md");
    let saved = fs::create_dir_all(dir)
        .and_then(|()| fs::write(&path, format!("# serv6 benchmark results, {now}\n\n{report}")));
    match saved {
        Ok(()) => println!("\nSaved to {path}"),
        Err(e) => eprintln!("bench: cannot write {path}: {e}"),
    }
}

/// The floor server, as a child process: never returns.
fn floor() -> ! {
    let listener = TcpListener::bind("127.0.0.1:0").expect("floor binds");
    // The same backlog as serv6's default, so that the comparison is fair.
    let _ = serv6::set_backlog(&listener, 4096);
    eprintln!("floor: listening on {}", listener.local_addr().expect("address"));
    let listener = Arc::new(listener);
    for _ in 0..FLOOR_THREADS {
        let listener = Arc::clone(&listener);
        thread::spawn(move || loop {
            let Ok((mut conn, _)) = listener.accept() else {
                continue;
            };
            let mut buf = [0u8; 4096];
            let mut seen = 0;
            while let Ok(n) = conn.read(&mut buf[seen..]) {
                if n == 0 || buf[seen..seen + n].contains(&b'\n') || seen + n == buf.len() {
                    break;
                }
                seen += n;
            }
            let _ = conn.write_all(&reply_line(4, SOME_TIME, None));
        });
    }
    loop {
        thread::park();
    }
}

/// What is measured: the floor, and serv6 with each kind of standard
/// output (the installed unit's is journald's, a Unix stream socket).
#[derive(Clone, Copy, PartialEq)]
enum Target {
    Floor,
    Quiet,
    LogPipe,
    LogFile,
    LogSocket,
}

const TARGETS: [Target; 5] =
    [Target::Floor, Target::Quiet, Target::LogPipe, Target::LogFile, Target::LogSocket];

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Floor => "floor (bare std loop)",
            Target::Quiet => "serv6 --quiet",
            Target::LogPipe => "serv6, log to a pipe",
            Target::LogFile => "serv6, log to a file",
            Target::LogSocket => "serv6, log to a socket",
        }
    }

    /// Starts the target on a free loopback port; `extra` goes to serv6.
    fn start(self, extra: &[&str]) -> Server {
        let mut command = match self {
            Target::Floor => Command::new(std::env::current_exe().expect("own path")),
            _ => Command::new(serv6()),
        };
        match self {
            Target::Floor => command.arg("--floor"),
            Target::Quiet => command.args(["--bind", "127.0.0.1", "--quiet"]).args(extra),
            _ => command.args(["--bind", "127.0.0.1"]).args(extra),
        };
        let stdout = match self {
            Target::LogFile => {
                let log = concat!(env!("CARGO_TARGET_TMPDIR"), "/bench-exchanges.log");
                Stdio::from(File::create(log).expect("log file"))
            }
            // Read by the harness, as `cat` would.
            Target::LogPipe => Stdio::piped(),
            Target::LogSocket => Stdio::from(drained_socket()),
            _ => Stdio::null(),
        };
        Server::start_writing(&mut command, stdout)
    }
}

/// One end of a Unix stream socket pair, whose other end a thread reads
/// and discards, as journald reads a service's standard output.
fn drained_socket() -> std::os::fd::OwnedFd {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
    thread::spawn(move || {
        let mut ours = ours;
        let mut sink = [0u8; 65536];
        while matches!(ours.read(&mut sink), Ok(n) if n > 0) {}
    });
    theirs.into()
}

/// CPU time a process has used so far.
fn cpu_time(pid: u32) -> Duration {
    TICK * proc::cpu_ticks(pid) as u32
}

/// One exchange as the benchmark's clients do it; returns its latency.
fn one_exchange(addr: SocketAddr) -> Option<Duration> {
    let start = Instant::now();
    let mut conn = TcpStream::connect(addr).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    conn.write_all(b"hola\n").ok()?;
    let mut reply = [0u8; 128];
    let mut got = 0;
    loop {
        match conn.read(&mut reply[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => return None,
        }
        if got == reply.len() {
            return None;
        }
    }
    matches!(reply_of(&reply[..got]), Reply::Received { len: 4, .. }).then(|| start.elapsed())
}

#[derive(Default, Clone)]
struct Measured {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    cpu_per_exchange: Duration,
    peak_rss_kib: u64,
    peak_threads: u64,
    failures: u64,
}

/// Drives `clients` closed-loop clients for `run` against a fresh server.
fn measure(target: Target, clients: usize, run: Duration) -> Measured {
    let server = target.start(&[]);
    let (pid, addr) = (server.pid(), server.v4());
    let stop = Arc::new(AtomicBool::new(false));
    let peaks = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let sampler = {
        let (stop, peaks) = (Arc::clone(&stop), Arc::clone(&peaks));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peaks.0.fetch_max(proc::rss_kib(pid), Ordering::Relaxed);
                peaks.1.fetch_max(proc::threads(pid), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let cpu_before = cpu_time(pid);
    let load = drive(addr, clients, run);
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let latencies = &load.latencies;
    let n = latencies.len().max(1);
    Measured {
        per_second: load.per_second(),
        p50: latencies.get(n / 2).copied().unwrap_or_default(),
        p99: load.p99(),
        max: latencies.last().copied().unwrap_or_default(),
        cpu_per_exchange: cpu / n as u32,
        peak_rss_kib: peaks.0.load(Ordering::Relaxed),
        peak_threads: peaks.1.load(Ordering::Relaxed),
        failures: load.failures,
    }
}

/// What a run of closed-loop clients saw.
struct Load {
    /// Sorted.
    latencies: Vec<Duration>,
    failures: u64,
    elapsed: Duration,
}

impl Load {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn p99(&self) -> Duration {
        let n = self.latencies.len().max(1);
        self.latencies.get(n * 99 / 100).copied().unwrap_or_default()
    }
}

/// Drives `clients` closed-loop clients against `addr` for `run`.
fn drive(addr: SocketAddr, clients: usize, run: Duration) -> Load {
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            thread::spawn(move || {
                let (mut latencies, mut failures) = (Vec::new(), 0u64);
                while started.elapsed() < run {
                    match one_exchange(addr) {
                        Some(latency) => latencies.push(latency),
                        None => failures += 1,
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    let mut load = Load { latencies: Vec::new(), failures: 0, elapsed: Duration::ZERO };
    for worker in workers {
        let (latencies, failures) = worker.join().expect("client thread");
        load.latencies.extend(latencies);
        load.failures += failures;
    }
    load.elapsed = started.elapsed();
    load.latencies.sort();
    load
}

fn median<T: Clone, K: PartialOrd>(runs: &[T], key: impl Fn(&T) -> K) -> T {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| key(a).partial_cmp(&key(b)).unwrap_or(std::cmp::Ordering::Equal));
    sorted[sorted.len() / 2].clone()
}

/// Each figure is the median over the repeats, taken separately.
fn median_of(runs: &[Measured]) -> Measured {
    Measured {
        per_second: median(runs, |m| m.per_second).per_second,
        p50: median(runs, |m| m.p50).p50,
        p99: median(runs, |m| m.p99).p99,
        max: median(runs, |m| m.max).max,
        cpu_per_exchange: median(runs, |m| m.cpu_per_exchange).cpu_per_exchange,
        peak_rss_kib: median(runs, |m| m.peak_rss_kib).peak_rss_kib,
        peak_threads: median(runs, |m| m.peak_threads).peak_threads,
        failures: runs.iter().map(|m| m.failures).sum(),
    }
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn load_table(settings: &Settings) -> String {
    let mut out = String::from(
        "| clients | server | exchanges/s | p50 µs | p99 µs | max µs | CPU µs/exchange | peak RSS KiB | peak threads | failures |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut checks = String::new();
    for clients in concurrency() {
        // Rounds interleave the targets, so that drift in the machine's
        // speed during the run weighs on all of them alike.
        let mut runs: Vec<Vec<Measured>> = vec![Vec::new(); TARGETS.len()];
        for _ in 0..settings.repeats {
            for (target, runs) in TARGETS.iter().zip(runs.iter_mut()) {
                runs.push(measure(*target, clients, settings.run));
            }
        }
        let mut results = Vec::new();
        for (target, runs) in TARGETS.iter().zip(&runs) {
            let m = median_of(runs);
            let _ = writeln!(
                out,
                "| {clients} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
                target.name(),
                m.per_second,
                us(m.p50),
                us(m.p99),
                us(m.max),
                us(m.cpu_per_exchange),
                m.peak_rss_kib,
                m.peak_threads,
                m.failures
            );
            results.push(m);
        }
        if clients == 16 {
            checks = targets_at_16(&runs, &results[1], settings.indicative);
        }
    }
    out.push('\n');
    out.push_str(&checks);
    out
}

/// The client counts to run: `CLIENTS=16` or `CLIENTS=1,256` narrows them.
fn concurrency() -> Vec<usize> {
    let chosen: Vec<usize> = std::env::var("CLIENTS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .filter(|&n| n > 0)
        .collect();
    if chosen.is_empty() {
        CONCURRENCY.to_vec()
    } else {
        chosen
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// The median over rounds of a figure computed within each round, from
/// the runs of every target, in the order of [`TARGETS`].
fn per_round(runs: &[Vec<Measured>], figure: impl Fn(&[&Measured]) -> f64) -> f64 {
    let mut values: Vec<f64> = (0..runs[0].len())
        .map(|i| figure(&runs.iter().map(|r| &r[i]).collect::<Vec<_>>()))
        .collect();
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values[values.len() / 2]
}

fn targets_at_16(runs: &[Vec<Measured>], quiet: &Measured, indicative: bool) -> String {
    let cpu = |m: &Measured| m.cpu_per_exchange.as_secs_f64();
    let index = |t: Target| TARGETS.iter().position(|&x| x == t).unwrap_or(0);
    let (floor, quiet_at) = (index(Target::Floor), index(Target::Quiet));
    let cpu_ratio = per_round(runs, |r| cpu(r[quiet_at]) / cpu(r[floor]).max(1e-9));
    let rate_ratio = per_round(runs, |r| r[quiet_at].per_second / r[floor].per_second.max(1e-9));
    let mut out = format!(
        "Targets at 16 clients (each the median over rounds of serv6 against the floor in the same round){}:\n\n",
        if indicative {
            "; QUICK=1 runs are short, so these verdicts are only indicative on a shared machine"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "- CPU per exchange, `--quiet`: {cpu_ratio:.2} x the floor (target at most 1.10): {}",
        verdict(cpu_ratio <= 1.10)
    );
    // Each line is one write, even to a file or a socket (see
    // docs/PERFORMANCE.md): logging costs a system call, not a hand-over.
    for (target, limit) in
        [(Target::LogPipe, 3.0), (Target::LogFile, 3.0), (Target::LogSocket, 3.0)]
    {
        let at = index(target);
        let cost = per_round(runs, |r| cpu(r[at]) - cpu(r[quiet_at])) * 1e6;
        let _ = writeln!(
            out,
            "- {} adds {cost:.1} µs per exchange over `--quiet` (target at most {limit}): {}",
            target.name(),
            verdict(cost <= limit)
        );
    }
    let _ = writeln!(
        out,
        "- exchanges per second: {rate_ratio:.2} x the floor (target at least 0.95): {}",
        verdict(rate_ratio >= 0.95)
    );
    let _ = writeln!(
        out,
        "- p99 latency {} µs (target under 5000): {}\n",
        us(quiet.p99),
        verdict(quiet.p99 < Duration::from_millis(5))
    );
    out
}

fn silent_section(settings: &Settings) -> String {
    // --max-conns above 4/3 of the silent clients, so that none of them is
    // shed early by the crowded deadline: all are held for the whole run.
    let server = Target::Quiet.start(&["--max-conns", "2000"]);
    let (pid, addr) = (server.pid(), server.v4());
    let silent: Vec<TcpStream> =
        (0..SILENT).filter_map(|_| TcpStream::connect(addr).ok()).collect();
    let until = Instant::now() + Duration::from_secs(10);
    while proc::threads(pid) < SILENT as u64 && Instant::now() < until {
        thread::sleep(Duration::from_millis(20));
    }
    let rss = proc::rss_kib(pid);
    let threads = proc::threads(pid);
    let count = if settings.repeats > 1 { 2000 } else { 500 };
    let mut latencies: Vec<Duration> = Vec::new();
    let mut failures = 0;
    for _ in 0..count {
        match one_exchange(addr) {
            Some(l) => latencies.push(l),
            None => failures += 1,
        }
    }
    latencies.sort();
    let p99 = latencies.get(latencies.len() * 99 / 100).copied().unwrap_or_default();
    drop(silent);
    format!(
        "{} silent connections held ({threads} server threads): RSS {rss} KiB ({:.1} MiB, target at most 32): {}; \
         a normal client's p99 over {count} exchanges {} µs (target under 20000): {}; failures {failures}: {}\n\n",
        SILENT,
        rss as f64 / 1024.0,
        verdict(rss <= 32 * 1024),
        us(p99),
        verdict(p99 < Duration::from_millis(20)),
        verdict(failures == 0)
    )
}

fn startup_section(settings: &Settings) -> String {
    let mut to_listening = Vec::new();
    let mut idle_rss = Vec::new();
    for _ in 0..settings.starts {
        let started = Instant::now();
        let server = Server::start_writing(Command::new(serv6()).arg("--quiet"), Stdio::null());
        to_listening.push(started.elapsed());
        idle_rss.push(proc::rss_kib(server.pid()));
    }
    to_listening.sort();
    idle_rss.sort();
    let start = to_listening[to_listening.len() / 2];
    let rss = idle_rss[idle_rss.len() / 2];
    format!(
        "Idle (default binds 127.0.0.1 and ::1), median of {} starts: RSS {rss} KiB (target at most 3072): {}; \
         start to listening {} µs (target under 5000): {}\n",
        settings.starts,
        verdict(rss <= 3072),
        us(start),
        verdict(start < Duration::from_millis(5))
    )
}

fn machine() -> String {
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let model = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1).map(|m| m.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("Machine: {cpus} cores, {model}, Linux {}.", kernel.trim())
}
