//! Stopping serv6 with a signal: new connections refused at once, queued
//! ones answered, clients that sent nothing told at once, exchanges in
//! progress given a grace period, a second signal obeyed at once, SIGHUP
//! like SIGTERM.

use crate::harness::*;
use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// Waits until serv6 has accepted every connection to `port`, so that
/// they are exchanges in progress rather than queued in the kernel.
fn wait_accepted(port: u16) {
    assert!(eventually(PATIENCE, || proc::accept_queue(port) == Some(0)), "never accepted");
}

/// `count` clients that send the start of a message and wait; each one's
/// whole reply arrives on the returned channel.
fn partial_clients(
    addr: std::net::SocketAddr,
    count: usize,
) -> (Vec<TcpStream>, std::sync::mpsc::Receiver<Vec<u8>>) {
    let (conns, replies) = silent_clients(addr, count);
    for mut conn in &conns {
        conn.write_all(b"ho").expect("sends");
    }
    (conns, replies)
}

fn signal_pid(pid: u32, name: &str) {
    let sent = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -{name}");
}

#[test]
fn a_signal_refuses_new_connections_at_once_and_cuts_after_the_grace() {
    if linux_only("taking signals") {
        return;
    }
    let args = ["--grace", "0.5", "--deadline", "86400", "--pause", "off"];
    let mut server = Server::start(&args);
    let (partial, replies) = partial_clients(server.v4(), 1);
    wait_accepted(server.v4().port());
    let started = Instant::now();
    server.signal("TERM");
    server.err_line_containing("refusing new connections");
    let refused = TcpStream::connect_timeout(&server.v4(), PATIENCE);
    assert!(matches!(&refused, Err(e) if e.kind() == ErrorKind::ConnectionRefused), "{refused:?}");
    assert_refused(&replies.recv_timeout(PATIENCE).expect("a reply"), Refusal::ShuttingDown);
    assert_eq!(server.wait_exit().code(), Some(0));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(3), "{took:?}");
    let rest = server.rest_of_stderr().join("\n");
    assert!(
        rest.contains(
            "0 exchanges served, 0 errors, 0 busy refusals, 1 connection cut at shutdown"
        ),
        "{rest}"
    );
    drop(partial);
}

#[test]
fn clients_that_sent_nothing_are_told_at_once_and_it_stops_within_a_second() {
    if linux_only("taking signals") {
        return;
    }
    let mut server = Server::start(&["--deadline", "86400"]);
    let (silent, replies) = silent_clients(server.v4(), 3);
    wait_accepted(server.v4().port());
    let started = Instant::now();
    server.signal("INT");
    for _ in 0..3 {
        assert_refused(&replies.recv_timeout(PATIENCE).expect("a reply"), Refusal::ShuttingDown);
    }
    assert_eq!(server.wait_exit().code(), Some(0));
    let took = started.elapsed();
    println!("3 idle clients at SIGINT: told and stopped in {took:?} (grace 5 s)");
    assert!(took < Duration::from_secs(1), "{took:?}");
    drop(silent);
}

#[test]
fn connections_queued_at_the_signal_are_answered_not_reset() {
    if linux_only("taking signals") {
        return;
    }
    let mut server = Server::start(&["--quiet"]);
    let addr = server.v4();
    // Stopped, serv6 accepts nothing: the kernel queues these connections.
    server.signal("STOP");
    let mut queued: Vec<TcpStream> = (0..64).map(|_| connect(addr)).collect();
    for conn in &mut queued {
        conn.write_all(b"hola\n").expect("sends");
    }
    server.signal("TERM");
    server.signal("CONT");
    let (mut served, mut told) = (0, 0);
    for conn in &mut queued {
        match reply_of(&read_to_end(conn)) {
            Reply::Received { len: 4, .. } => served += 1,
            Reply::Refused(Refusal::ShuttingDown) => told += 1,
            other => panic!("a queued client got {other:?}"),
        }
    }
    assert_eq!(server.wait_exit().code(), Some(0));
    let rest = server.rest_of_stderr().join("\n");
    println!("64 queued at SIGTERM: {served} served, {told} told shutting down");
    assert!(rest.contains(&format!("{served} exchange")), "{rest}");
    if told > 0 {
        assert!(rest.contains(&format!("{told} connection")), "{rest}");
    }
}

#[test]
fn a_second_signal_exits_at_once_saying_what_it_cut() {
    if linux_only("taking signals") {
        return;
    }
    let mut server = Server::start(&["--grace", "60", "--pause", "off"]);
    let (partial, _replies) = partial_clients(server.v4(), 1);
    wait_accepted(server.v4().port());
    server.signal("TERM");
    server.err_line_containing("refusing new connections");
    let started = Instant::now();
    server.signal("INT");
    let line = server.err_line_containing("SIGINT received after SIGTERM");
    let line = line.trim_end();
    assert!(line.ends_with("exiting now, cutting 1 connection held"), "{line}");
    assert_eq!(server.wait_exit().code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(partial);
}

#[test]
fn two_different_signals_at_once_say_both_in_order() {
    if linux_only("taking signals") {
        return;
    }
    let mut server = Server::start(&["--grace", "60", "--pause", "off"]);
    let (partial, _replies) = partial_clients(server.v4(), 1);
    wait_accepted(server.v4().port());
    server.signal("INT");
    server.signal("TERM");
    assert_eq!(server.wait_exit().code(), Some(1));
    let rest = server.rest_of_stderr().join("\n");
    let first = rest.find("SIGINT received: refusing new connections");
    let second = rest.find("SIGTERM received after SIGINT: exiting now, cutting 1 connection held");
    assert!(matches!((first, second), (Some(a), Some(b)) if a < b), "{rest}");
    drop(partial);
}

#[test]
fn sighup_and_sigxcpu_stop_it_like_sigterm() {
    if linux_only("taking signals") {
        return;
    }
    for name in ["HUP", "XCPU"] {
        let mut server = Server::start(&[]);
        assert_received(&exchange(server.v4(), b"hola\n", false), 4);
        signal_pid(server.pid(), name);
        assert_eq!(server.wait_exit().code(), Some(0));
        let rest = server.rest_of_stderr().join("\n");
        let said = format!("SIG{name} received");
        assert!(rest.contains(&said) && rest.contains("1 exchange served"), "{rest}");
    }
}

#[test]
fn the_same_signal_again_at_once_is_taken_as_one() {
    if linux_only("taking signals") {
        return;
    }
    // A kill of the process group (`timeout serv6`, say) delivers it twice;
    // the second after the first was taken, within 100 ms.
    let mut server = Server::start(&["--grace", "60", "--pause", "off"]);
    let (partial, _replies) = partial_clients(server.v4(), 1);
    wait_accepted(server.v4().port());
    let first = Instant::now();
    server.signal("TERM");
    server.err_line_containing("refusing new connections");
    server.signal("TERM");
    let apart = first.elapsed();
    for conn in &partial {
        let _ = conn.shutdown(std::net::Shutdown::Write); // its message ends: answered
    }
    let status = server.wait_exit();
    let rest = server.rest_of_stderr().join("\n");
    if apart >= Duration::from_millis(100) {
        skipped(format!("the machine took {apart:?} between the two signals"));
        return;
    }
    assert_eq!(status.code(), Some(0), "{rest}");
    assert!(!rest.contains("received again") && rest.contains("stopped after"), "{rest}");
}

/// In a network namespace of its own, loopback is taken down under a
/// running serv6: stopping must not depend on connecting to itself.
const LOOPBACK_DOWN: &str = r#"
set -eu
ip link set lo up
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
mkfifo "$d/err"
"$SERV6" --bind 127.0.0.1 --port 0 2>"$d/err" >/dev/null &
pid=$!
exec 3<"$d/err"
IFS= read -r line <&3
ip link set lo down
start=$(date +%s%N)
kill -TERM $pid
wait $pid
echo "stopped in $(( ($(date +%s%N) - start) / 1000000 )) ms"
"#;

#[test]
fn it_stops_at_once_with_loopback_down() {
    if linux_only("taking signals") {
        return;
    }
    let out = Command::new("unshare")
        .args(["-rn", "sh", "-c", LOOPBACK_DOWN])
        .env("SERV6", env!("CARGO_BIN_EXE_serv6"))
        .output();
    let stdout = out.as_ref().map(|o| text(&o.stdout)).unwrap_or_default();
    let Some(ms) =
        stdout.strip_prefix("stopped in ").and_then(|t| t.trim_end().strip_suffix(" ms"))
    else {
        skipped(format_args!("no network namespace of our own (unshare -rn): {out:?}"));
        return;
    };
    let ms: u64 = ms.parse().expect("a number");
    println!("SIGTERM with loopback down: stopped in {ms} ms");
    assert!(ms < 1000, "SIGTERM took {ms} ms with loopback down");
}
