//! serv6 behind a real HAProxy with the PROXY protocol (v1 to one instance,
//! v2 to the other), with `contrib/haproxy/serv6.cfg` as shipped. Skipped,
//! with the reason printed, where HAProxy is not installed; CI installs it.

use crate::harness::*;
use serv6::protocol::ProxyFault;
use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

fn instance(extra: &[&str]) -> Server {
    let mut args = vec!["--bind", "127.0.0.1", "--proxy-protocol"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// The summary serv6 prints on SIGTERM.
fn summary(mut server: Server) -> String {
    server.signal("TERM");
    server.wait_exit();
    let stderr = server.rest_of_stderr();
    stderr.iter().find(|l| l.contains("stopped after")).cloned().unwrap_or_default()
}

#[test]
fn through_haproxy_every_log_line_names_the_real_client() {
    if linux_only("the summary on SIGTERM") {
        return;
    }
    let (a, b) = (instance(&[]), instance(&[]));
    let Some(haproxy) = Haproxy::start(a.v4(), b.v4()) else {
        return;
    };
    let mut ports = HashSet::new();
    for _ in 0..200 {
        let mut conn = connect(haproxy.front);
        ports.insert(conn.local_addr().expect("an address").port());
        conn.write_all(b"hola\n").expect("sends");
        assert_received(&read_to_end(&mut conn), 4);
    }
    let cpu_ticks = proc::cpu_ticks(haproxy.pid());
    println!("HAProxy used {} ms of CPU for 200 exchanges and the checks", cpu_ticks * 10);
    let mut logged = HashSet::new();
    for (name, server) in [("v1", &a), ("v2", &b)] {
        let lines: Vec<String> = (0..100).map(|_| text(&server.log_line())).collect();
        for line in &lines {
            let client: SocketAddr =
                line.split(' ').nth(1).and_then(|a| a.parse().ok()).expect(line);
            assert_eq!(client.ip().to_string(), "127.0.0.1", "{name}: {line}");
            assert!(ports.contains(&client.port()), "{name}: {line} is not a client's port");
            logged.insert(client.port());
        }
    }
    assert_eq!(logged, ports, "each client logged once, by one instance");
    let (a_summary, b_summary) = (summary(a), summary(b));
    for line in [a_summary, b_summary] {
        assert!(line.contains("100 exchanges served, 0 errors"), "{line}");
    }
}

#[test]
fn health_checks_are_neither_exchanges_nor_errors() {
    if linux_only("the summary on SIGTERM") {
        return;
    }
    let (a, b) = (instance(&[]), instance(&[]));
    let Some(_haproxy) = Haproxy::start(a.v4(), b.v4()) else {
        return;
    };
    // Checks come every 100 ms; each instance says when the first came.
    for server in [&a, &b] {
        server.err_line_containing("health checks, counted apart and not logged");
    }
    for server in [a, b] {
        assert!(server.pending_log_lines().is_empty(), "a check was logged as an exchange");
        let line = summary(server);
        assert!(line.contains("0 exchanges served, 0 errors"), "{line}");
        assert!(line.contains(" health check"), "{line}");
    }
}

#[test]
fn without_a_header_a_connection_is_refused_at_once() {
    let server = instance(&["--deadline", "30"]);
    let started = std::time::Instant::now();
    let reply = exchange(server.v4(), b"hola\n", false);
    assert_refused(&reply, Refusal::BadProxyHeader(ProxyFault::Missing));
    assert!(started.elapsed() < Duration::from_secs(5), "waited for the deadline");
    server.err_line_containing("no PROXY protocol header");
}

#[test]
fn a_forged_header_from_an_untrusted_source_is_refused() {
    // Only 192.0.2.0/24 may send headers: loopback may not.
    let server = instance(&["--proxy-from", "192.0.2.0/24"]);
    let forged = b"PROXY TCP4 203.0.113.9 127.0.0.1 4242 5006\r\nhola\n";
    let reply = exchange(server.v4(), forged, false);
    assert_refused(&reply, Refusal::UntrustedProxy);
    let line = server.err_line_containing("not from a trusted proxy");
    assert!(line.contains("127.0.0.1") && !line.contains("203.0.113.9"), "{line}");
    assert!(server.pending_log_lines().is_empty());
}

#[test]
fn the_header_and_the_message_may_arrive_together() {
    let server = instance(&[]);
    let v1 = exchange(server.v4(), b"PROXY TCP4 203.0.113.9 127.0.0.1 4242 5006\r\nhola\n", false);
    assert_received(&v1, 4);
    let line = text(&server.log_line());
    assert!(line.contains(" 203.0.113.9:4242 4 bytes \"hola\""), "{line}");
    let usage =
        Command::new(env!("CARGO_BIN_EXE_serv6")).args(["--proxy-from", "10.0.0.0/8"]).output();
    let err = text(&usage.expect("runs").stderr);
    assert!(err.contains("'--proxy-from' goes with '--proxy-protocol'"), "{err}");
}
