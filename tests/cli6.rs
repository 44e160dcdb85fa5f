//! cli6 as a user runs it, against a real serv6 and against fake servers
//! that misbehave on purpose.

use crate::harness::*;
use std::net::TcpListener;

fn port_of(server: &Server) -> String {
    server.v4().port().to_string()
}

fn stderr(output: &std::process::Output) -> String {
    text(&output.stderr)
}

#[test]
fn message_words_are_one_exchange() {
    let server = Server::start(&[]);
    let out = cli6(&["--host", "127.0.0.1", "-p", &port_of(&server), "hola", "mundo"], b"");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_received(&out.stdout, 10);
    assert!(text(&server.log_line()).ends_with(" 10 bytes \"hola mundo\""));
}

#[test]
fn both_families_by_address() {
    let server = Server::start(&[]);
    for addr in server.both() {
        let host = addr.ip().to_string();
        let out = cli6(&["-H", &host, "-p", &addr.port().to_string(), "hola"], b"");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_received(&out.stdout, 4);
    }
}

#[test]
fn each_line_of_standard_input_is_an_exchange() {
    let server = Server::start(&[]);
    let out = cli6(&["-H", "127.0.0.1", "-p", &port_of(&server)], b"uno\r\ndos\n\ntres");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let replies: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(replies.len(), 4, "{replies:?}");
    for (reply, n) in replies.iter().zip([3, 3, 0, 4]) {
        assert_received(format!("{reply}\n").as_bytes(), n);
    }
    assert!(stderr(&out).is_empty(), "no prompt without a terminal: {}", stderr(&out));
}

#[test]
fn a_refused_connection_names_the_address_and_suggests_starting_serv6() {
    let port = dead_port().to_string();
    let out = cli6(&["-H", "127.0.0.1", "-p", &port, "hola"], b"");
    let prefix = format!("cli6: cannot connect to 127.0.0.1:{port}: ");
    let err = assert_one_error_line(&out, 1, &prefix);
    assert!(err.contains("is serv6 running there?"), "{err}");
}

#[test]
fn an_error_reply_goes_to_standard_error_with_status_1() {
    let server = Server::start(&["--max-bytes", "4"]);
    let out = cli6(&["-H", "127.0.0.1", "-p", &port_of(&server), "hola mundo"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("error: message longer than 4 bytes"), "{}", stderr(&out));
}

fn run_against(reply: &'static [u8], extra: &[&str]) -> std::process::Output {
    let addr = fake_server(reply);
    let port = addr.port().to_string();
    let mut args = vec!["-H", "127.0.0.1", "-p", &port];
    args.extend_from_slice(extra);
    args.push("hola");
    cli6(&args, b"")
}

#[test]
fn a_wrong_byte_count_is_reported() {
    let out = run_against(reply_line(99, SOME_TIME, None).leak(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the server counted 99 bytes, but 4 were sent"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_hostile_reply_is_printed_escaped() {
    let out = run_against(b"\x1b[2J\x1b]0;owned\x07\n", &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("unexpected reply: \\x1b[2J\\x1b]0;owned\\x07"), "{err}");
    assert!(!out.stderr.contains(&0x1b));
}

#[test]
fn a_server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let out = cli6(&["-H", "127.0.0.1", "-p", &port, "-t", "0.3", "hola"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("waiting for the reply: timed out"), "{}", stderr(&out));
    drop(listener);
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    for args in [&["--bogus"][..], &["-p", "70000", "x"], &["--timeout"], &["a\nb"]] {
        let out = cli6(args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&out).lines().count(), 1, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).starts_with("cli6: "));
    }
}

#[test]
fn help_and_version_exit_0() {
    let help = cli6(&["--help"], b"");
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("--timeout SECS"));
    let version = cli6(&["-V"], b"");
    assert!(text(&version.stdout).starts_with("cli6 "));
}
