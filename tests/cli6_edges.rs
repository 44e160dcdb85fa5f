//! cli6 at the edges a user or a hostile server can reach: time bounds,
//! endless input, odd lines, abrupt closes, closed pipes, dead servers,
//! absurd clocks, address families.

use crate::harness::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

fn on(port: u16) -> Vec<String> {
    vec!["-H".into(), "127.0.0.1".into(), "-p".into(), port.to_string()]
}

fn cli6_on(port: u16, extra: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut args = on(port);
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cli6(&args, stdin)
}

/// Starts cli6 without waiting for it, for tests that act while it runs.
fn spawn_cli6(args: &[String], stdout: Stdio, stderr: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cli6"))
        .args(args)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("cli6 starts")
}

#[test]
fn the_timeout_bounds_the_whole_exchange() {
    // A server that drips its reply one byte every 100 ms: each read is
    // quick, but the exchange would take seconds.
    let addr = fake_server_with(|mut conn| {
        for byte in reply_line(4, SOME_TIME, None) {
            if conn.write_all(&[byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let started = Instant::now();
    let out = cli6_on(addr.port(), &["-t", "0.5", "hola"], b"");
    let took = started.elapsed();
    assert_one_error_line(&out, 1, "cli6: 127.0.0.1:");
    assert!(text(&out.stderr).contains("timed out"), "{}", text(&out.stderr));
    assert!(took < Duration::from_secs(2), "took {took:?} with -t 0.5");
}

#[test]
fn an_endless_stdin_line_is_refused_in_bounded_memory() {
    let server = Server::start(&[]);
    let port = server.v4().port().to_string();
    // Python measures the child's peak memory; std cannot.
    let script = "
import resource, subprocess, sys
feed = '(head -c 41943040 /dev/zero; printf \"\\\\nhola\\\\n\") | \"$0\" \"$@\"'
p = subprocess.run(['sh', '-c', feed] + sys.argv[1:], capture_output=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(p.returncode, peak)
sys.stdout.write(p.stdout.decode() + p.stderr.decode())
";
    let cli6 = env!("CARGO_BIN_EXE_cli6");
    let Ok(out) =
        Command::new("python3").args(["-c", script, cli6, "-H", "127.0.0.1", "-p", &port]).output()
    else {
        skipped("python3 is needed to measure cli6's peak memory");
        return;
    };
    let report = text(&out.stdout);
    let mut words = report.split_whitespace();
    let status = words.next().unwrap_or_default();
    let peak_kib: u64 = words.next().and_then(|p| p.parse().ok()).unwrap_or(u64::MAX);
    assert_eq!(status, "1", "{report}");
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB: {report}");
    assert!(report.contains("cli6: line 1 not sent: longer than 16777216 bytes"), "{report}");
    assert!(report.lines().any(|l| is_received(l, 4)), "line 2 still sent: {report}");
}

#[test]
fn a_line_ending_in_cr_is_refused_as_an_argument_would_be() {
    let server = Server::start(&[]);
    let out = cli6_on(server.v4().port(), &[], b"x\r\r\nhola\n");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim_end(),
        "cli6: line 1 not sent: a message cannot end with a carriage return: \
         the server drops a CR before the newline"
    );
    assert_received(&out.stdout, 4);
    let arg = cli6_on(server.v4().port(), &["x\r"], b"");
    assert!(text(&arg.stderr).contains("a message cannot end with a carriage return"));
}

#[test]
fn a_complete_reply_then_a_reset_is_a_reply() {
    // Closing with the client's message unread makes the kernel send a
    // reset instead of EOF, right after the reply.
    let addr = fake_server_with(|mut conn| {
        let mut first = [0u8; 1];
        let _ = conn.peek(&mut first);
        let _ = conn.write_all(&reply_line(4, SOME_TIME, None));
    });
    let out = cli6_on(addr.port(), &["hola"], b"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_received(&out.stdout, 4);
}

#[test]
fn a_reply_and_no_close_says_it_was_the_close_that_never_came() {
    let (done, held_until) = std::sync::mpsc::channel::<()>();
    let addr = fake_server_with(move |mut conn| {
        let mut line = Vec::new();
        let _ = BufReader::new(&conn).read_until(b'\n', &mut line);
        let _ = conn.write_all(&reply_line(4, SOME_TIME, None));
        let _ = held_until.recv(); // open until cli6 has given up
    });
    let out = cli6_on(addr.port(), &["-t", "0.3", "hola"], b"");
    drop(done);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(said.contains("waiting for the close after the reply: timed out"), "{said}");
}

#[test]
fn probing_stops_when_standard_output_closes() {
    let server = Server::start(&["--quiet"]);
    let mut args = on(server.v4().port());
    args.extend(["-c", "50", "-i", "0.1"].map(String::from));
    let mut child = spawn_cli6(&args, Stdio::piped(), Stdio::null());
    let mut first = String::new();
    let stdout = child.stdout.take().expect("piped");
    BufReader::new(stdout).read_line(&mut first).expect("a probe line");
    // The reader is gone, as after `| head -1`: 50 probes would take 5 s.
    let closed = Instant::now();
    let ended = eventually(PATIENCE, || child.try_wait().is_ok_and(|s| s.is_some()));
    assert!(ended && closed.elapsed() < Duration::from_secs(2), "still probing");
    assert!(is_received(probe_reply(&first), 4), "{first}");
}

#[test]
fn a_dead_server_is_probed_ever_more_slowly() {
    let port = dead_port();
    let mut args = on(port);
    args.extend(["-c", "0", "-i", "0"].map(String::from));
    let mut child = spawn_cli6(&args, Stdio::null(), Stdio::piped());
    // Probing as fast as it can for a second would print thousands of lines.
    thread::sleep(Duration::from_secs(1));
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    assert!(kill.is_ok_and(|s| s.success()));
    let mut err = String::new();
    let _ = child.stderr.take().expect("piped").read_to_string(&mut err);
    let _ = child.wait();
    let failures = err.lines().filter(|l| l.contains("cannot connect")).count();
    assert!((1..=12).contains(&failures), "{failures} failure lines in a second");
}

#[test]
fn a_server_time_out_of_range_is_said_so() {
    let reply = reply_line(4, "9999-12-31T23:59:59.999999Z", None);
    let addr = fake_server(reply.leak());
    let out = cli6_on(addr.port(), &["-c", "1"], b"");
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("offset=out of range"), "{stdout}");
    assert!(stdout.contains("1 reply with a server time out of range"), "{stdout}");
    assert!(!stdout.contains("9223372036854"), "{stdout}");
}

#[test]
fn dash_4_and_dash_6_choose_the_family() {
    let server = Server::start(&[]);
    let port = server.v4().port().to_string();
    let v4 = cli6(&["-4", "-H", "localhost", "-p", &port, "-c", "1"], b"");
    assert!(text(&v4.stdout).starts_with("127.0.0.1:"), "{}", text(&v4.stdout));
    let none = cli6(&["-4", "-H", "::1", "-p", &port, "hola"], b"");
    assert_one_error_line(&none, 1, "cli6: cannot resolve [::1]:");
    assert!(text(&none.stderr).contains("no IPv4 address"));
    let none = cli6(&["-6", "-H", "127.0.0.1", "-p", &port, "hola"], b"");
    assert!(text(&none.stderr).contains("no IPv6 address"));
    if server.v6().is_some() {
        let v6 = cli6(&["-6", "-H", "::1", "-p", &port, "-c", "1"], b"");
        assert!(text(&v6.stdout).starts_with("[::1]:"), "{}", text(&v6.stdout));
    }
}

#[test]
fn argument_edges_are_usage_errors() {
    for (args, says) in [
        (&["-p", "0", "x"][..], "invalid value '0' for '-p': it must be from 1 to 65535"),
        (&["-p", "-1", "x"], "it must be from 1 to 65535"),
        (&["-H", "127.0.0.1:5006"], "give the port with '--port', not in the address"),
        (&["-H", "[::1]:5006"], "give the port with '--port', not in the address"),
        (&["-H", ""], "it is not a host name or address"),
        (&["-H", "999.1.1.1", "x"], "it is not an IPv4 address: four numbers from 0 to 255"),
        (&["-H", "::g", "x"], "it is not an IPv6 address"),
        (&["-H", "fe80::1%a/b", "x"], "'a/b' cannot name a network interface"),
        (&["-t", "0.0000001"], "it must be at least 0.001 seconds"),
        (&["--json=1", "-c", "1"], "option '--json' does not take a value"),
        (&["-4", "-6", "hola"], "'-4' and '-6' do not go together"),
        (&["--ipv6", "--ipv4"], "'--ipv6' and '--ipv4' do not go together"),
    ] {
        let out = cli6(args, b"");
        let err = assert_one_error_line(&out, 2, "cli6: ");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn hosts_this_machine_refuses_exit_1_as_serv6_does() {
    let port = dead_port().to_string();
    let out = cli6(&["-H", "fe80::1%no-such-if0", "-p", &port, "hola"], b"");
    let err = assert_one_error_line(&out, 1, "cli6: cannot resolve [fe80::1%no-such-if0]:");
    assert!(err.contains("no network interface is named 'no-such-if0'"), "{err}");
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        skipped("no IPv6 here: a link-local address cannot be tried");
        return;
    }
    let out = cli6(&["-H", "fe80::1", "-p", &port, "hola"], b"");
    let err = assert_one_error_line(&out, 1, "cli6: cannot connect to [fe80::1]:");
    assert!(err.contains("(a link-local address needs its interface, as fe80::1%eth0)"), "{err}");
}
