//! cli6 --count: the ping-like probe, against a real serv6 on --port 0.

use crate::harness::*;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;

fn probe_lines(stdout: &[u8]) -> Vec<String> {
    text(stdout).lines().filter(|l| l.contains(" connect=")).map(str::to_owned).collect()
}

/// Runs cli6 against 127.0.0.1:`port` with `--interval 0` and `extra`.
fn probe_v4(port: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["-H", "127.0.0.1", "-p", port, "-i", "0"];
    args.extend_from_slice(extra);
    cli6(&args, b"")
}

/// The number after `name=` in a probe line, in ms.
fn field(line: &str, name: &str) -> f64 {
    let after = line.split(&format!("{name}=")).nth(1).expect("the field");
    after.split(' ').next().unwrap().parse().expect("a number")
}

#[test]
fn probes_report_positive_rtts_and_a_near_zero_offset_on_loopback() {
    let server = Server::start(&[]);
    for addr in server.both() {
        let (host, port) = (addr.ip().to_string(), addr.port().to_string());
        let out = cli6(&["-H", &host, "-p", &port, "-c", "5", "-i", "0"], b"");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let lines = probe_lines(&out.stdout);
        assert_eq!(lines.len(), 5, "{}", text(&out.stdout));
        for line in &lines {
            assert!(line.starts_with(&format!("{addr}: ")), "{line}");
            assert!(is_received(probe_reply(line), 4), "{line}");
            assert!(field(line, "rtt") > 0.0 && field(line, "connect") > 0.0, "{line}");
            // Same clock on both ends: only the asymmetry of one loopback
            // exchange separates the estimate from zero.
            assert!(field(line, "offset").abs() < 5.0, "{line}");
        }
        let summary = text(&out.stdout);
        assert!(summary.contains("5 probes sent, 5 replies received, 0.0% lost"), "{summary}");
        assert!(summary.contains("rtt min/avg/max/stddev = "), "{summary}");
        assert!(summary.contains("offset (server clock minus ours) median "), "{summary}");
        // One clock on both ends: the true offset, zero, must lie within the
        // best estimate's bound (plus the microsecond the stamp truncates).
        let best = summary.split("offset at the smallest rtt ").nth(1).expect("a best estimate");
        let (offset, bound) = best.split_once(" ms ±").expect("offset ms ±bound");
        let offset: f64 = offset.parse().expect("an offset");
        let bound: f64 = bound.split(' ').next().and_then(|b| b.parse().ok()).expect("a bound");
        assert!(offset.abs() <= bound + 0.001, "{summary}");
    }
}

#[test]
fn a_dead_port_is_loss_and_exit_1() {
    let port = dead_port().to_string();
    let out = probe_v4(&port, &["-c", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("3 probes sent, 0 replies received, 100.0% lost"));
    assert_eq!(text(&out.stderr).lines().filter(|l| l.contains("Connection refused")).count(), 3);
}

#[test]
fn a_server_that_never_answers_is_loss_after_the_timeout() {
    // Connections complete in the kernel's backlog; nothing ever answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let out = probe_v4(&port, &["-c", "2", "-t", "0.2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("2 probes sent, 0 replies received, 100.0% lost"));
    assert!(text(&out.stderr).contains("waiting for the reply: timed out"));
    drop(listener);
}

/// Whether python3 runs; if not, says the test is skipped.
fn have_python() -> bool {
    let Ok(status) = Command::new("python3").arg("-c").arg("").status() else {
        skipped("python3 is needed to parse the JSON back");
        return false;
    };
    assert!(status.success());
    true
}

/// Runs `check`, a Python script, on `out`'s standard output: every line
/// through json.loads, `probes` and `summary` then checked as it says.
fn check_json(out: &std::process::Output, check: &str) {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let script = format!(
        "import json, sys\n\
         lines = [json.loads(l) for l in sys.stdin]\n\
         probes, summary = lines[:-1], lines[-1]['summary']\n\
         {check}\n\
         print('ok')\n"
    );
    let result = run(Command::new("python3").args(["-c", &script]), &out.stdout);
    assert!(
        result.status.success() && text(&result.stdout).starts_with("ok"),
        "{}\n{}",
        text(&out.stdout),
        text(&result.stderr)
    );
}

#[test]
fn json_output_parses_back() {
    if !have_python() {
        return;
    }
    let server = Server::start(&[]);
    let port = server.v4().port().to_string();
    let out = probe_v4(&port, &["-c", "3", "--json"]);
    // Python's json module checks every line and reports what the test needs.
    let check = "\
assert [p['seq'] for p in probes] == [1, 2, 3], probes
assert all(p['rtt_ms'] > 0 and abs(p['offset_ms']) < 5 for p in probes), probes
assert all(abs(p['delay_ms'] - p['rtt_ms']) <= 0.0001 for p in probes), probes
assert all(p['bytes'] == 4 and p['peer'].startswith('127.0.0.1:') for p in probes), probes
assert all(len(p['server_time']) == 27 and p['server_time'].endswith('Z') for p in probes), probes
assert all('send_time' not in p and 'reply' not in p and 'send_clock' not in p for p in probes), probes
assert (summary['sent'], summary['received'], summary['lost_percent']) == (3, 3, 0.0), summary
assert summary['rtt_ms']['min'] <= summary['rtt_ms']['avg'] <= summary['rtt_ms']['max'], summary
assert summary['offset_ms']['from_3_timestamps'] == 3, summary";
    check_json(&out, check);
}

#[test]
fn with_send_time_the_offset_is_from_four_timestamps() {
    let plain = Server::start(&[]);
    let timed = Server::start(&["--send-time"]);
    let said = |server: &Server| {
        let out = probe_v4(&server.v4().port().to_string(), &["-c", "3"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let four = said(&timed);
    assert!(four.contains("offset from 4 timestamps (the server sent its send time)"), "{four}");
    assert!(four.contains("offset at the smallest delay "), "{four}");
    assert_eq!(probe_lines(four.as_bytes()).iter().filter(|l| l.contains(" delay=")).count(), 3);
    let three = said(&plain);
    assert!(
        three.contains("offset from 3 timestamps: the server's turnaround is in it; run serv6 with --send-time"),
        "{three}"
    );
    assert!(!three.contains(" delay="), "{three}");
    if !have_python() {
        return;
    }
    let out = probe_v4(&timed.v4().port().to_string(), &["-c", "3", "--json"]);
    let check = "\
assert all(len(p['send_time']) == 27 and p['send_time'] >= p['server_time'] for p in probes), probes
assert all(0 <= p['delay_ms'] <= p['rtt_ms'] for p in probes), probes
assert summary['offset_ms']['from_4_timestamps'] == 3, summary
assert summary['offset_ms']['from_3_timestamps'] == 0, summary";
    check_json(&out, check);
    let out = probe_v4(&plain.v4().port().to_string(), &["-c", "2", "--json"]);
    let check = "\
assert all('send_time' not in p for p in probes), probes
assert summary['offset_ms']['from_4_timestamps'] == 0, summary
assert summary['offset_ms']['from_3_timestamps'] == 2, summary";
    check_json(&out, check);
}

#[test]
fn json_losses_are_objects_with_an_error() {
    let port = dead_port().to_string();
    let out = probe_v4(&port, &["-c", "1", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    assert!(lines.next().unwrap().starts_with("{\"seq\":1,\"error\":\"cannot connect to "));
    assert!(lines.next().unwrap().contains("\"rtt_ms\":null"));
}

#[test]
fn ctrl_c_prints_the_summary() {
    if linux_only("taking signals") {
        return;
    }
    let server = Server::start(&[]);
    let port = server.v4().port().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cli6"))
        .args(["-H", "127.0.0.1", "-p", &port, "-c", "0", "-i", "0.01"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Probing until interrupted: interrupt once two probes are in.
    for _ in 0..2 {
        let line = rx.recv_timeout(PATIENCE).expect("a probe line");
        assert!(line.contains(" rtt="), "{line}");
    }
    let kill = format!("kill -INT {}", child.id());
    assert!(Command::new("sh").args(["-c", &kill]).status().unwrap().success());
    let status = child.wait().unwrap();
    let rest: Vec<String> = rx.iter().collect();
    assert_eq!(status.code(), Some(0), "{rest:?}");
    let summary = rest.iter().find(|l| l.contains("probes sent")).expect("a summary");
    assert!(summary.contains("replies received, 0.0% lost"), "{summary}");
}

#[test]
fn json_alone_is_one_exchange_as_json_lines() {
    let server = Server::start(&[]);
    let port = server.v4().port().to_string();
    let out = cli6(&["-4", "-p", &port, "--json", "hola"], b"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one probe and its summary: {stdout}");
    assert!(
        lines[0].starts_with("{\"seq\":1,") && lines[0].contains("\"bytes\":4,\"server_time\":"),
        "{stdout}"
    );
    assert!(lines[1].starts_with("{\"summary\":"), "{stdout}");
}

#[test]
fn probe_usage_errors_exit_2() {
    for args in [&["-i", "1"][..], &["-c", "many"], &["-c", "1", "-i", "soon"]] {
        let out = cli6(args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(text(&out.stderr).lines().count(), 1);
    }
}

/// A fake server whose reply says it sent the reply `sent_after` its
/// message came: a server whose clock stepped between the two.
fn stepping_server(sent_after: std::time::Duration) -> std::net::SocketAddr {
    fake_server_with(move |conn| {
        let mut line = Vec::new();
        let _ = BufReader::new(&conn).read_until(b'\n', &mut line);
        let now = std::time::SystemTime::now();
        let stamp =
            |t| Timestamp::from_system_time(t).expect("in range").to_rfc3339().as_str().to_owned();
        let (at, sent) = (stamp(now), stamp(now + sent_after));
        let reply = reply_line(line.len() - 1, &at, Some(&sent));
        let _ = std::io::Write::write_all(&mut &conn, &reply);
    })
}

#[test]
fn a_send_time_the_round_trip_cannot_hold_is_left_out() {
    let addr = stepping_server(std::time::Duration::from_secs(10));
    let out = probe_v4(&addr.port().to_string(), &["-c", "1"]);
    let said = text(&out.stdout);
    println!("{said}");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // serv6 ran with --send-time: the advice is why T3 went, not to add it.
    assert!(
        said.contains("offset from 3 timestamps: the server's clock stepped, so its send time (T3) was left out"),
        "{said}"
    );
    assert!(!said.contains("run serv6 with --send-time"), "{said}");
    assert!(
        said.contains("1 send time left out: outside the round trip (the server's clock stepped)"),
        "{said}"
    );
    let line = &probe_lines(&out.stdout)[0];
    assert!(field(line, "offset").abs() < 1000.0, "the offset is not 5 s off: {line}");
}
