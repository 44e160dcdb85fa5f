//! serv6 as a classic time server: daytime (RFC 867) and time (RFC 868),
//! tried with the clients administrators already have (Debian's rdate,
//! busybox rdate, netcat), each skipping with its reason when missing.

use crate::harness::*;
use serv6::protocol::parse_time;
use std::io::Read;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}

/// The Unix time a date as `date` prints it stands for, read by `date`.
fn seconds_of(printed: &str) -> u64 {
    let out = Command::new("date").args(["-u", "-d", printed, "+%s"]).output().expect("date runs");
    text(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("not a date: {printed:?}"))
}

#[test]
fn the_time_service_sends_four_bytes_of_seconds_since_1900_and_closes() {
    let server = Server::start(&["--service", "time"]);
    let before = unix_now();
    let reply = read_to_end(&mut connect(server.v4()));
    let after = unix_now();
    let bytes: [u8; 4] = reply.as_slice().try_into().expect("exactly 4 bytes");
    let told = parse_time(bytes);
    assert!((before..=after).contains(&told), "{told} not in {before}..={after}");
    let line = text(&server.log_line());
    assert!(line.ends_with(" time"), "{line}");
}

#[test]
fn debian_rdate_reads_the_time_service() {
    if !have("rdate", &["-p", "-o", "1", "127.0.0.1"]) {
        return;
    }
    let server = Server::start(&["--service", "time"]);
    let port = server.v4().port().to_string();
    let out =
        Command::new("rdate").args(["-p", "-o", &port, "127.0.0.1"]).output().expect("rdate runs");
    let printed = text(&out.stdout);
    println!("rdate -p -o {port} 127.0.0.1: {}", printed.trim());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let date = printed.trim().rsplit('\t').next().unwrap_or_default();
    assert!(seconds_of(date).abs_diff(unix_now()) <= 2, "{printed}");
}

#[test]
fn busybox_rdate_reads_the_time_service_on_port_37() {
    if !have("busybox", &["--help"]) {
        return;
    }
    let mut command = Command::new(serv6_path());
    command.args(["--service", "time", "--bind", "127.0.0.1", "--port", "37"]);
    let Some(server) = start_on_fixed_port(&mut command) else {
        skipped("cannot listen on port 37 (root, and the port free, are needed)");
        return;
    };
    let out =
        Command::new("busybox").args(["rdate", "-p", "127.0.0.1"]).output().expect("busybox runs");
    let printed = text(&out.stdout);
    println!("busybox rdate -p 127.0.0.1: {}", printed.trim());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(seconds_of(printed.trim()).abs_diff(unix_now()) <= 2, "{printed}");
    drop(server);
}

/// A serv6 on a port of its own, killed when dropped, as the test ends or
/// fails: a `Child` alone would be left running, holding the port.
struct FixedPort(std::process::Child);

impl Drop for FixedPort {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// serv6 started with `command` as it is (a port of its own, not 0);
/// `None` if it could not listen.
fn start_on_fixed_port(command: &mut Command) -> Option<FixedPort> {
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serv6 starts");
    let mut first = [0u8; 256];
    let n = child.stderr.as_mut().map_or(0, |e| e.read(&mut first).unwrap_or(0));
    if text(&first[..n]).contains("listening on") {
        Some(FixedPort(child))
    } else {
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

#[test]
fn netcat_with_nothing_to_send_reads_one_daytime_line() {
    if !have("nc", &["-h"]) {
        return;
    }
    let server = Server::start(&["--service", "daytime"]);
    let port = server.v4().port().to_string();
    let out = run(Command::new("nc").args(["-N", "127.0.0.1", &port]), b"");
    let reply = text(&out.stdout);
    println!("nc -N 127.0.0.1 {port} </dev/null: {reply:?}");
    let line = reply.strip_suffix("\r\n").expect("one line, ended by CRLF");
    assert!(!line.contains('\n'), "{reply:?}");
    let told = Timestamp::parse(line).expect("an RFC 3339 time").to_system_time();
    let off = SystemTime::now().duration_since(told).unwrap_or_default();
    assert!(off < Duration::from_secs(2), "{reply:?}");
    assert!(text(&server.log_line()).ends_with(" daytime"));
}

#[test]
fn one_serv6_serves_every_socket_passed_by_the_name_it_gives() {
    if linux_only("socket activation") {
        return;
    }
    if !have("systemd-socket-activate", &["--version"]) {
        return;
    }
    let (receipt, daytime) = (dead_port(), dead_port());
    let mut activator = Command::new("systemd-socket-activate")
        .args(["-l", &format!("127.0.0.1:{receipt}")])
        .args(["-l", &format!("127.0.0.1:{daytime}")])
        .args(["--fdname=serv6:daytime", &serv6_path(), "--quiet"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("systemd-socket-activate starts");
    let listening = |port: u16| proc::listening_on(port);
    assert!(eventually(PATIENCE, || listening(receipt) && listening(daytime)));
    let at = |port: u16| format!("127.0.0.1:{port}").parse().expect("an address");
    let first = exchange(at(daytime), b"", false);
    assert!(text(&first).ends_with("Z\r\n"), "{}", text(&first));
    assert_received(&exchange(at(receipt), b"hola\n", false), 4);
    let _ = activator.kill();
    let _ = activator.wait();
}
