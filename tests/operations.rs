//! What an operator sees while serv6 runs: Prometheus metrics on
//! `--metrics`, and readiness, status and a watchdog for systemd
//! (`NOTIFY_SOCKET`), against the real binary.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// serv6 with metrics on a free loopback port; returns it and that address.
fn with_metrics(args: &[&str]) -> (Server, SocketAddr) {
    let server = Server::start_with(
        Command::new(serv6_path()).args(["--metrics", "127.0.0.1:0"]).args(args),
    );
    let addr = server.metrics_addr();
    (server, addr)
}

/// `GET path` over HTTP/1.1: the status line and the body.
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut conn = connect(addr);
    let request = format!("GET {path} HTTP/1.1\r\nHost: serv6\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).expect("sends");
    let text = text(&read_to_end(&mut conn));
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

/// The value of the sample line `series` in `metrics`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn the_counters_say_what_was_served_and_refused() {
    let (_server, metrics) = with_metrics(&["--max-bytes", "8", "--quiet"]);
    for _ in 0..3 {
        assert_refused(
            &exchange(_server.v4(), b"far too long\n", false),
            Refusal::TooLong { max_bytes: 8 },
        );
    }
    for _ in 0..50 {
        assert_received(&exchange(_server.v4(), b"hola\n", false), 4);
    }
    let (status, body) = get(metrics, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let served = "serv6_exchanges_total{service=\"receipt\"}";
    assert_eq!(sample(&body, served), Some(50.0), "{body}");
    assert_eq!(sample(&body, "serv6_refusals_total{reason=\"too_long\"}"), Some(3.0), "{body}");
    assert_eq!(sample(&body, "serv6_reply_latency_seconds_count"), Some(50.0));
    assert!(body.contains("serv6_build_info{version=\""), "{body}");
    assert_eq!(get(metrics, "/other").0, "HTTP/1.1 404 Not Found");
    let Ok(mut promtool) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        skipped("promtool is not installed (apt-get install prometheus)");
        return;
    };
    let _ = promtool.stdin.take().map(|mut i| i.write_all(body.as_bytes()));
    let out = promtool.wait_with_output().expect("promtool runs");
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool: {said}");
}

#[test]
fn the_operations_guide_gives_each_metric_the_help_it_serves() {
    let (_server, metrics) = with_metrics(&["--quiet"]);
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/OPERATIONS.md"))
        .expect("docs/OPERATIONS.md");
    let body = get(metrics, "/metrics").1;
    let helps: Vec<(&str, &str)> =
        body.lines().filter_map(|l| l.strip_prefix("# HELP ")?.split_once(' ')).collect();
    assert!(helps.len() >= 10, "{body}");
    for (name, help) in helps {
        let row = guide.lines().find(|l| l.starts_with(&format!("| `{name}")));
        let row = row.map(|r| r.replace('`', "")).unwrap_or_default();
        let mut wanted = help.trim_end_matches('.').to_owned();
        wanted[..1].make_ascii_lowercase();
        assert!(row.contains(&wanted), "OPERATIONS.md's row for {name} lacks {wanted:?}: {row}");
    }
}

#[test]
fn a_request_that_never_ends_or_garbage_cannot_slow_the_exchanges() {
    let (server, metrics) = with_metrics(&["--quiet"]);
    let mut endless = connect(metrics);
    endless.write_all(b"GET /metr").expect("sends");
    let mut garbage = connect(metrics);
    let _ = garbage.write_all(&vec![b'\x07'; 10_000]);
    let started = Instant::now();
    for _ in 0..20 {
        assert_received(&exchange(server.v4(), b"hola\n", false), 4);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "20 exchanges took {took:?}");
    // Both are let go within the bound, and the endpoint answers again.
    let mut rest = Vec::new();
    let _ = garbage.read_to_end(&mut rest);
    assert!(text(&rest).starts_with("HTTP/1.1 400"), "{}", text(&rest));
    assert_eq!(get(metrics, "/metrics").0, "HTTP/1.1 200 OK");
    drop(endless);
}

#[test]
fn a_real_prometheus_scrapes_it() {
    if !have("prometheus", &["--version"]) {
        skipped("prometheus is not installed (apt-get install prometheus)");
        return;
    }
    let (server, metrics) = with_metrics(&["--quiet"]);
    for _ in 0..5 {
        assert_received(&exchange(server.v4(), b"hola\n", false), 4);
    }
    let dir = std::env::temp_dir().join(format!("serv6-prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let config = dir.join("prometheus.yml");
    let yaml = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: serv6\n    \
         static_configs:\n      - targets: ['{metrics}']\n"
    );
    std::fs::write(&config, yaml).expect("a config");
    let web: SocketAddr = format!("127.0.0.1:{}", dead_port()).parse().expect("an address");
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    let query = |q: &str| {
        TcpStream::connect_timeout(&web, PATIENCE)
            .ok()
            .map(|_| get(web, &format!("/api/v1/query?query={q}")).1)
            .unwrap_or_default()
    };
    let up = eventually(Duration::from_secs(30), || {
        query("up").contains("\"value\":[") && query("up").contains("\"1\"]")
    });
    let served = query("serv6_exchanges_total");
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(up, "prometheus never saw the target up");
    assert!(served.contains("\"5\"]"), "{served}");
}

#[test]
fn it_tells_systemd_ready_alive_and_stopping() {
    if linux_only("sd_notify") {
        return;
    }
    let path = std::env::temp_dir().join(format!("serv6-notify-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).expect("a notify socket");
    socket.set_read_timeout(Some(PATIENCE)).expect("a timeout");
    let mut server = Server::start_with(
        Command::new(serv6_path())
            .env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "400000")
            .env_remove("WATCHDOG_PID"),
    );
    let next = || {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1");
    let started = Instant::now();
    let mut pings = 0;
    while pings < 2 {
        let state = next();
        pings += usize::from(state == "WATCHDOG=1");
        assert!(state == "WATCHDOG=1" || state.starts_with("STATUS="), "{state}");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "two pings took {took:?}");
    server.signal("TERM");
    let stopping = (0..20).map(|_| next()).any(|state| state == "STOPPING=1");
    assert!(stopping, "no STOPPING=1");
    assert_eq!(server.wait_exit().code(), Some(0));
    let _ = std::fs::remove_file(&path);
}
