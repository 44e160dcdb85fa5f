//! The third outside fault pass: an abort one client could cause, serving
//! without /proc, `--max-conns` bounding every connection, a bounded count
//! of listeners, a balancer's health checks of the time services, and the
//! latency histogram holding serv6's own delay. Each fails against the
//! build before it (`SERV6_UNDER_TEST` names one).

use crate::harness::*;
use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// `GET /metrics` from `addr`: the body.
fn scrape(addr: SocketAddr) -> String {
    let mut conn = connect(addr);
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: serv6\r\n\r\n").expect("sends");
    let text = text(&read_to_end(&mut conn));
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

/// The value of the sample `series` in a scrape.
fn sample(metrics: &str, series: &str) -> f64 {
    let value = metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' '));
    value.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {series} in {metrics}"))
}

#[test]
fn a_message_whose_line_escapes_four_times_longer_cannot_abort_it() {
    if linux_only("ulimit -v's address-space plan") {
        return;
    }
    let script = "ulimit -v 400000 && exec \"$0\" \"$@\"";
    let mut server =
        Server::start_with(Command::new("sh").args(["-c", script, &serv6_path()]).args([
            "--max-bytes",
            "80000000",
            "--log-bytes",
            "80000000",
        ]));
    // Each 0xff escapes to `\xff`: a line of 320 MB where 400 MB is all.
    let mut message = vec![0xffu8; 80_000_000];
    message.push(b'\n');
    assert_received(&exchange(server.v4(), &message, false), 80_000_000);
    assert!(server.is_running(), "serv6 died");
    assert_received(&exchange(server.v4(), b"hola\n", false), 4);
    server.signal("TERM");
    let summary = server.err_line_containing("stopped after");
    assert!(summary.contains("1 exchange line not written: no memory for the line"), "{summary}");
}

#[test]
fn without_proc_it_serves_and_says_what_it_does_without() {
    if linux_only("/proc") {
        return;
    }
    let script = "mount -t tmpfs none /proc && ulimit -n 1024 && exec \"$0\" \"$@\"";
    let mut hidden = Command::new("unshare");
    let hidden = hidden.args(["-m", "sh", "-c", "mount -t tmpfs none /proc"]);
    if !hidden.stderr(Stdio::null()).status().is_ok_and(|s| s.success()) {
        skipped("needs root and unshare to hide /proc from a process");
        return;
    }
    let server =
        Server::start_with(Command::new("unshare").args(["-m", "sh", "-c", script, &serv6_path()]));
    assert_received(&exchange(server.v4(), b"hola\n", false), 4);
    let told = server.startup.join("");
    assert!(server.startup.is_empty(), "said before listening: {told}");
}

/// The most that any gauge of connections held said, and the bound it
/// had (`serv6_connections_max`), scraping `metrics` until `done`.
fn peak_held(metrics: SocketAddr, done: &AtomicBool) -> (f64, f64) {
    let (mut peak, mut max) = (0f64, 0f64);
    while !done.load(Relaxed) {
        let scraped = scrape(metrics);
        let gauge = |name: &str| {
            scraped.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        };
        // The build before this one kept two, neither of them the bound's.
        let held = ["serv6_connections_held", "serv6_connections_in_progress"].map(gauge);
        peak = held.into_iter().flatten().fold(peak, f64::max);
        max = gauge("serv6_connections_max").unwrap_or(max);
    }
    (peak, max)
}

#[test]
fn max_conns_bounds_every_connection_held_fast_slow_or_silent() {
    let server = Server::start(&["--max-conns", "5", "--quiet", "--metrics", "127.0.0.1:0"]);
    let (metrics, addr) = (server.metrics_addr(), server.v4());
    let done = Arc::new(AtomicBool::new(false));
    let watch = {
        let done = Arc::clone(&done);
        thread::spawn(move || peak_held(metrics, &done))
    };
    let kinds: Vec<_> = (0..200)
        .map(|i| {
            thread::spawn(move || {
                let mut conn = connect(addr);
                match i % 3 {
                    0 => drop(conn.write_all(b"hola\n")),
                    1 => {
                        let _ = conn.write_all(b"ho");
                        thread::sleep(Duration::from_millis(20));
                        let _ = conn.write_all(b"la\n");
                    }
                    _ => thread::sleep(Duration::from_millis(50)),
                }
                let _ = conn.shutdown(Shutdown::Write);
                read_to_end(&mut conn)
            })
        })
        .collect();
    let replies: Vec<Vec<u8>> = kinds.into_iter().map(|k| k.join().expect("a client")).collect();
    done.store(true, Relaxed);
    let (peak, max) = watch.join().expect("the watcher");
    let answered = replies.iter().filter(|r| !r.is_empty()).count();
    println!("--max-conns 5, 200 fast, slow and silent clients: at most {peak} held; {answered} answered");
    assert_eq!(max, 5.0);
    assert!(peak <= max, "{peak} connections held at once with --max-conns {max}");
    assert_eq!(answered, 200, "every client got a reply or was told busy");
}

#[test]
fn more_listeners_than_it_has_workers_for_is_a_usage_error() {
    // The port taken on the first address: counted before binding, the
    // error is the usage, not the busy port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("its port").port().to_string();
    let mut command = Command::new(serv6_path());
    command.args(["--port", &port]);
    for i in 1..=33 {
        command.args(["--bind", &format!("127.0.0.{i}")]);
    }
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("starts");
    let until = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits") {
            break Some(status);
        }
        if Instant::now() > until {
            let _ = child.kill();
            break None;
        }
        thread::yield_now();
    };
    assert_eq!(status.and_then(|s| s.code()), Some(2), "33 listeners were served");
}

#[test]
fn a_balancers_own_connection_to_the_time_services_is_a_health_check() {
    let v2_local = [b"\r\n\r\n\0\r\nQUIT\n".as_slice(), &[0x20, 0x00, 0, 0]].concat();
    for (service, header) in [("time", v2_local), ("daytime", b"PROXY UNKNOWN\r\n".to_vec())] {
        let server = Server::start_with(Command::new(serv6_path()).args([
            "--service",
            service,
            "--proxy-protocol",
            "--metrics",
            "127.0.0.1:0",
        ]));
        let mut check = connect(server.v4());
        check.write_all(&header).expect("sends");
        let _ = check.shutdown(Shutdown::Write);
        let told = read_to_end(&mut check);
        assert!(told.is_empty(), "{service}: a check was told {told:?}");
        server.err_line_containing("health checks, counted apart and not logged");
        // A relayed client is served as ever, and logged under its address.
        let mut relayed = connect(server.v4());
        relayed.write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 4321 37\r\n").expect("sends");
        assert!(!read_to_end(&mut relayed).is_empty(), "{service}: no time for a client");
        let line = text(&server.log_line());
        assert!(line.contains(" 192.0.2.7:4321 "), "{service}: {line}");
        let metrics = scrape(server.metrics_addr());
        let series = format!("serv6_exchanges_total{{service=\"{service}\"}}");
        assert_eq!(sample(&metrics, &series), 1.0, "{service}: only the client's");
        assert_eq!(sample(&metrics, "serv6_health_checks_total"), 1.0, "{service}");
        assert_eq!(sample(&metrics, "serv6_replies_lost_total"), 0.0, "{service}");
    }
}

#[test]
fn the_latency_histogram_holds_serv6s_delay_not_the_pause() {
    let server = Server::start(&["--metrics", "127.0.0.1:0", "--quiet"]);
    // The original exercise's client: no LF; the 200 ms pause ends it.
    let mut conn = connect(server.v4());
    conn.write_all(b"hola").expect("sends");
    assert_received(&read_to_end(&mut conn), 4);
    let metrics = scrape(server.metrics_addr());
    assert_eq!(sample(&metrics, "serv6_reply_latency_seconds_count"), 1.0);
    let took = sample(&metrics, "serv6_reply_latency_seconds_sum");
    println!("a message the pause ended: {took} s of serv6's own delay");
    assert!(took < 0.1, "{took} s for a message the pause ended: the pause is counted");
}
