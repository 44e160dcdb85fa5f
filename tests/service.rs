//! serv6 as an installed service: its manual pages, and socket activation
//! as systemd does it, through `systemd-socket-activate`.

use crate::harness::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;

fn manual(program: &str) -> Vec<u8> {
    let out = Command::new(program).arg("--generate-man").output().expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    out.stdout
}

#[test]
fn the_manual_pages_render_without_warnings() {
    if !have("groff", &["--version"]) {
        return;
    }
    for program in [env!("CARGO_BIN_EXE_serv6"), env!("CARGO_BIN_EXE_cli6")] {
        let groff = run(Command::new("groff").args(["-mandoc", "-ww", "-z"]), &manual(program));
        assert!(groff.status.success(), "{program}: {}", text(&groff.stderr));
        assert_eq!(text(&groff.stderr), "", "{program}");
        if Command::new("mandoc").arg("-V").output().is_ok() {
            let lint =
                run(Command::new("mandoc").args(["-T", "lint", "-W", "warning"]), &manual(program));
            assert_eq!(text(&lint.stdout) + &text(&lint.stderr), "", "{program}");
        }
    }
}

#[test]
fn the_manual_pages_list_what_help_lists() {
    for program in [env!("CARGO_BIN_EXE_serv6"), env!("CARGO_BIN_EXE_cli6")] {
        let help = text(&Command::new(program).arg("--help").output().expect("runs").stdout);
        let page = text(&manual(program)).replace("\\-", "-");
        let options = help
            .lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with('-'))
            .filter_map(|l| l.split(' ').find(|w| w.starts_with("--")));
        for option in options {
            assert!(page.contains(&format!("\\fB{option}\\fR")), "{program}: {option} missing");
        }
        for section in ["NAME", "SYNOPSIS", "OPTIONS", "EXIT STATUS", "EXAMPLES", "SEE ALSO"] {
            assert!(page.contains(&format!(".SH {section}")), "{program}: {section}");
        }
    }
}

/// `systemd-socket-activate` listening on a free loopback port, to start
/// serv6 (with `args`) on the first connection. Returns it, its port, and
/// its standard error's lines (serv6's after the exec).
fn socket_activate(args: &[&str]) -> Option<(Child, u16, mpsc::Receiver<String>)> {
    if !have("systemd-socket-activate", &["--version"]) {
        return None;
    }
    let port = dead_port();
    let mut child = Command::new("systemd-socket-activate")
        .args(["-l", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate starts");
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().expect("piped");
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let listening = lines.recv_timeout(PATIENCE).expect("it says where it listens");
    assert!(listening.starts_with("Listening on"), "{listening}");
    Some((child, port, lines))
}

fn next_line_containing(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        let line = lines.recv_timeout(PATIENCE).expect("a line");
        if line.contains(needle) {
            return line;
        }
    }
}

#[test]
fn socket_activation_serves_the_passed_socket() {
    if linux_only("socket activation") {
        return;
    }
    let serv6 = env!("CARGO_BIN_EXE_serv6");
    let Some((mut activator, port, lines)) = socket_activate(&[serv6]) else {
        return;
    };
    let addr = format!("127.0.0.1:{port}").parse().expect("an address");
    assert_received(&exchange(addr, b"hola\n", false), 4);
    let listening = next_line_containing(&lines, "serv6: listening on");
    assert_eq!(listening, format!("serv6: listening on 127.0.0.1:{port}"));
    let mut log = String::new();
    let stdout = activator.stdout.take().expect("piped");
    BufReader::new(stdout).read_line(&mut log).expect("a log line");
    assert!(log.contains(" 4 bytes \"hola\""), "{log}");
    let kill = Command::new("kill").args(["-TERM", &activator.id().to_string()]).status();
    assert!(kill.is_ok_and(|s| s.success()));
    let status = activator.wait().expect("serv6 exits");
    assert_eq!(status.code(), Some(0), "{:?}", lines.try_iter().collect::<Vec<_>>());
}

#[test]
fn a_passed_socket_that_is_not_listening_is_refused_by_fd() {
    if linux_only("socket activation") {
        return;
    }
    let serv6 = env!("CARGO_BIN_EXE_serv6");
    let Some((mut activator, port, lines)) = socket_activate(&["-a", serv6]) else {
        return;
    };
    let addr = format!("127.0.0.1:{port}").parse().expect("an address");
    connect_and_wait(addr);
    let refusal = next_line_containing(&lines, "serv6:");
    assert_eq!(
        refusal,
        "serv6: passed file descriptor 3 cannot be served: it is not listening \
         (a connected socket, as inetd-style Accept=yes passes, or one bound but never listening)"
    );
    let _ = activator.kill();
    let _ = activator.wait();
}

#[test]
fn bind_and_port_do_not_go_with_passed_sockets() {
    if linux_only("socket activation") {
        return;
    }
    let serv6 = env!("CARGO_BIN_EXE_serv6");
    let Some((mut activator, port, lines)) = socket_activate(&[serv6, "--port", "7"]) else {
        return;
    };
    let addr = format!("127.0.0.1:{port}").parse().expect("an address");
    connect_and_wait(addr);
    let refusal = next_line_containing(&lines, "serv6:");
    assert!(refusal.contains("'--bind' and '--port' do not go with sockets passed"), "{refusal}");
    let status = activator.wait().expect("exits");
    assert_eq!(status.code(), Some(2), "{refusal}");
}

/// Connects and waits for whatever comes: the exec'd serv6 refuses to
/// start, so the connection is closed. It may be closed so soon that the
/// reset reaches `connect` itself, or the listener is gone and the connect
/// is refused: both are the outcome these tests expect, not a failure.
fn connect_and_wait(addr: std::net::SocketAddr) {
    match std::net::TcpStream::connect_timeout(&addr, PATIENCE) {
        Ok(mut conn) => {
            let _ = conn.set_read_timeout(Some(PATIENCE));
            let _ = std::io::Read::read_to_end(&mut conn, &mut Vec::new());
        }
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionRefused
            ),
            "connecting to the exec'd serv6 failed otherwise: {e}"
        ),
    }
}
