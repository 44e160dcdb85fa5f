//! serv6's command line, startup line, bind failures and shutdown.

use crate::harness::*;
use std::net::TcpListener;
use std::process::Command;

fn serv6(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_serv6")).args(args).output().expect("serv6 runs")
}

#[test]
fn the_startup_line_lists_every_address_with_the_real_port() {
    let server = Server::start(&[]);
    assert!(server.startup.is_empty(), "not the first line: {:?}", server.startup);
    assert!(server.addrs.iter().any(|a| a.ip().is_loopback() && a.is_ipv4()));
    assert!(server.addrs.iter().all(|a| a.port() == server.addrs[0].port() && a.port() != 0));
    server.v6();
}

#[test]
fn bind_chooses_the_addresses() {
    let server = Server::start(&["--bind", "127.0.0.1"]);
    assert_eq!(server.addrs.len(), 1);
    assert_received(&exchange(server.v4(), b"x\n", false), 1);
}

#[test]
fn a_port_in_use_is_one_line_naming_the_address_and_exit_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = serv6(&["--bind", "127.0.0.1", "--port", &port]);
    let prefix = format!("serv6: cannot listen on 127.0.0.1:{port}: ");
    let err = assert_one_error_line(&out, 1, &prefix);
    assert!(err.to_lowercase().contains("in use"), "{err}");
    // What an administrator can do, not what make's users do.
    assert!(err.contains("another program, perhaps another serv6, holds that port"), "{err}");
    assert!(err.contains("stop it, or choose another port with --port"), "{err}");
    assert!(!err.contains("make") && !err.contains("PORT="), "{err}");
}

#[test]
fn addresses_this_machine_refuses_exit_1_with_one_line() {
    for (bind, says) in [
        (
            "fe80::1%no-such-if0",
            "cannot listen on 'fe80::1%no-such-if0': no network interface is named 'no-such-if0'",
        ),
        ("no-such-host.invalid", "cannot listen on 'no-such-host.invalid': "),
    ] {
        let out = serv6(&["--bind", bind, "--port", "0"]);
        let err = assert_one_error_line(&out, 1, "serv6: cannot listen on ");
        assert!(err.contains(says) && !err.contains("--help"), "{bind}: {err}");
    }
}

#[test]
fn a_link_local_address_without_its_interface_is_told_to_name_one() {
    if TcpListener::bind("[::1]:0").is_err() {
        skipped("no IPv6 here: a link-local address cannot be tried");
        return;
    }
    let out = serv6(&["--bind", "fe80::1", "--port", "0"]);
    let err = assert_one_error_line(&out, 1, "serv6: cannot listen on [fe80::1]:0: ");
    assert!(
        err.trim_end().ends_with("; a link-local address needs its interface, as fe80::1%eth0"),
        "{err}"
    );
}

#[test]
fn an_address_of_another_machine_is_refused_with_exit_1() {
    let out = serv6(&["--bind", "192.0.2.1", "--port", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("serv6: cannot listen on 192.0.2.1:0: "), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    for (args, says) in [
        (&["--bogus"][..], "unknown option '--bogus'"),
        (&["--port", "http"], "it is not a valid number"),
        (&["--port", "65536"], "it must be from 0 to 65535"),
        (&["--port", "-1"], "it must be from 0 to 65535"),
        (&["--max-conns", "0"], "it must be from 1 to"),
        (&["--deadline", "-1"], "it must be more than zero"),
        (&["--deadline", "0.0000001"], "it must be at least 0.001 seconds"),
        (
            &["--pause", "5", "--deadline", "2"],
            "'--pause' (5 s) must be shorter than '--deadline' (2 s)",
        ),
        (&["--bind"], "needs a value"),
        (&["--bind", ""], "it is not a host name or address"),
        (&["--bind", "127.0.0.1:80"], "give the port with '--port'"),
        (&["--bind", "[::1]:5006"], "give the port with '--port'"),
        (&["--bind", "999.1.1.1"], "it is not an IPv4 address: four numbers from 0 to 255"),
        (&["--bind", "10.1.2"], "it is not an IPv4 address"),
        (&["--bind", "::g"], "it is not an IPv6 address"),
        (&["--bind", "bad name"], "it is not a host name or address"),
        (&["--bind", "fe80::1%a/b"], "'a/b' cannot name a network interface"),
        (&["--bind", "127.0.0.1%lo"], "only an IPv6 address can have a %scope"),
        (&["--bind", "::", "--bind", "0.0.0.0"], "'--bind ::' already serves 0.0.0.0"),
        (&["--bind", "0.0.0.0", "--bind", "127.0.0.1"], "already serves 127.0.0.1"),
        (&["--quiet=1"], "option '--quiet' does not take a value"),
        (&["--help=1"], "option '--help' does not take a value"),
        (&["stray"], "unexpected argument 'stray'"),
    ] {
        let out = serv6(args);
        let err = assert_one_error_line(&out, 2, "serv6: ");
        assert!(err.contains(says) && err.contains("serv6 --help"), "{args:?}: {err}");
    }
}

#[test]
fn metrics_take_a_host_name_and_its_first_address() {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let server = Server::start(&["--metrics", "localhost:0", "--quiet"]);
    let addr = server.metrics_addr();
    let first = ("localhost", 0).to_socket_addrs().unwrap().next().unwrap();
    assert_eq!(addr.ip(), first.ip(), "the first address localhost resolves to");
    let mut conn = connect(addr);
    conn.write_all(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    // A name that does not resolve is this machine's answer, not a typo.
    let out = serv6(&["--port", "0", "--metrics", "no-such-host.invalid:9100"]);
    assert_one_error_line(&out, 1, "serv6: cannot listen on 'no-such-host.invalid': ");
    let out = serv6(&["--port", "0", "--metrics", "999.1.1.1:9100"]);
    let err =
        assert_one_error_line(&out, 2, "serv6: invalid value '999.1.1.1:9100' for '--metrics'");
    assert!(err.contains("it is not an IPv4 address"), "{err}");
}

#[test]
fn a_port_below_1024_tells_a_normal_user_which_option_to_change() {
    let unprivileged = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start");
    let start: u32 = start.ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1024);
    let as_nobody = || Command::new("setpriv").args(unprivileged).arg("true").status();
    if start <= 99 || !as_nobody().is_ok_and(|s| s.success()) {
        skipped(format_args!(
            "needs setpriv to run as nobody, and port 99 privileged (from {start})"
        ));
        return;
    }
    for (args, option, says) in [
        (&["--port", "99", "--bind", "127.0.0.1"][..], "--port", "cannot listen on 127.0.0.1:99: "),
        (&["--port", "0", "--metrics", "127.0.0.1:99"], "--metrics", "cannot serve metrics on "),
    ] {
        let out = Command::new("setpriv")
            .args(unprivileged)
            .arg(env!("CARGO_BIN_EXE_serv6"))
            .args(args)
            .output()
            .unwrap();
        let err = assert_one_error_line(&out, 1, &format!("serv6: {says}"));
        let hint = format!("; ports below 1024 need privileges: choose another with {option}");
        assert!(err.trim_end().ends_with(&hint), "{err}");
    }
}

/// Passes serv6 (exec'd in its place, so that LISTEN_PID is its pid) a
/// TCP socket that is bound but was never told to listen.
const BOUND_NOT_LISTENING: &str = r#"
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)  # dup2 onto itself keeps close-on-exec
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execv(sys.argv[1], sys.argv[1:])
"#;

#[test]
fn a_passed_socket_bound_but_not_listening_is_refused_saying_so() {
    if linux_only("socket activation") {
        return;
    }
    let serv6 = env!("CARGO_BIN_EXE_serv6");
    let Ok(out) = Command::new("python3").args(["-c", BOUND_NOT_LISTENING, serv6]).output() else {
        skipped("python3 is needed to pass serv6 a socket that is bound, not listening");
        return;
    };
    assert_one_error_line(
        &out,
        1,
        "serv6: passed file descriptor 3 cannot be served: it is not listening (a connected \
         socket, as inetd-style Accept=yes passes, or one bound but never listening)",
    );
}

/// Passes serv6 as many listening sockets as argv[1] says.
const PASSED_SOCKETS: &str = r#"
import os, socket, sys
for fd in range(3, 3 + int(sys.argv[1])):
    s = socket.create_server(("127.0.0.1", 0))
    os.dup2(s.fileno(), fd)
os.environ.update(LISTEN_FDS=sys.argv[1], LISTEN_PID=str(os.getpid()))
os.execv(sys.argv[2], sys.argv[2:])
"#;

#[test]
fn more_passed_sockets_than_it_has_workers_for_are_refused_saying_so() {
    if linux_only("socket activation") {
        return;
    }
    let serv6 = env!("CARGO_BIN_EXE_serv6");
    let Ok(out) = Command::new("python3").args(["-c", PASSED_SOCKETS, "33", serv6]).output() else {
        skipped("python3 is needed to pass serv6 sockets");
        return;
    };
    let most =
        "serv6: 33 sockets passed (LISTEN_FDS): serv6 takes 32 at most, one worker each at least";
    assert_one_error_line(&out, 1, most);
}

/// In a network namespace of its own, where loopback gets a link-local
/// address: serv6 listens on it by interface name, and cli6 reaches it.
const LINK_LOCAL_SCRIPT: &str = r#"
set -eu
ip link set lo up
ip -6 addr add fe80::1/64 dev lo nodad
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
mkfifo "$d/err"
"$SERV6" --bind 'fe80::1%lo' --port 0 2>"$d/err" >/dev/null &
exec 3<"$d/err"
IFS= read -r line <&3
echo "$line"
"$CLI6" -H 'fe80::1%lo' -p "${line##*:}" hola
kill $!
"#;

#[test]
fn a_link_local_address_keeps_its_scope() {
    let out = Command::new("unshare")
        .args(["-rn", "sh", "-c", LINK_LOCAL_SCRIPT])
        .env("SERV6", env!("CARGO_BIN_EXE_serv6"))
        .env("CLI6", env!("CARGO_BIN_EXE_cli6"))
        .output();
    let out = match out {
        Ok(out) if !text(&out.stdout).is_empty() => out,
        other => {
            skipped(format_args!("no network namespace of our own (unshare -rn): {other:?}"));
            return;
        }
    };
    let stdout = text(&out.stdout);
    assert!(stdout.contains("serv6: listening on [fe80::1%"), "{stdout}");
    let reply = stdout.lines().nth(1).unwrap_or_default().as_bytes();
    assert_received(&[reply, b"\n"].concat(), 4);
}

#[test]
fn help_documents_every_option() {
    let out = serv6(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for option in [
        "--bind",
        "--port",
        "--max-bytes",
        "--pause",
        "--deadline",
        "--max-conns",
        "--quiet",
        "--version",
    ] {
        assert!(help.contains(option), "--help lacks {option}");
    }
    assert!(text(&serv6(&["--version"]).stdout).starts_with("serv6 "));
}

#[test]
fn sigterm_stops_it_with_a_summary_and_exit_0() {
    if linux_only("taking signals") {
        return;
    }
    let mut server = Server::start(&[]);
    assert_received(&exchange(server.v4(), b"hola\n", false), 4);
    server.signal("TERM");
    assert!(server.wait_exit().success());
    let rest = server.rest_of_stderr().join("\n");
    assert!(rest.contains("stopped after"), "{rest}");
    assert!(rest.contains("1 exchange served, 0 errors, 0 busy refusals"), "{rest}");
}

#[test]
fn without_ipv6_it_serves_ipv4_and_says_so() {
    // A network namespace of its own, whose loopback has IPv6 disabled.
    let usable = |program: &str, args: &[&str]| {
        Command::new(program).args(args).output().is_ok_and(|o| o.status.success())
    };
    if !usable("unshare", &["-n", "true"]) || !usable("ip", &["-V"]) || !usable("nsenter", &["-V"])
    {
        skipped("needs root with unshare, nsenter and ip to make a host without IPv6");
        return;
    }
    let setup = "ip link set lo up && echo 1 > /proc/sys/net/ipv6/conf/lo/disable_ipv6 && exec \"$0\" \"$@\"";
    let server = Server::start_with(Command::new("unshare").args([
        "-n",
        "sh",
        "-c",
        setup,
        env!("CARGO_BIN_EXE_serv6"),
    ]));
    assert_eq!(server.addrs.len(), 1, "{:?}", server.addrs);
    assert!(server.addrs[0].is_ipv4());
    // The listening line comes first, so a script may read line 1.
    assert!(server.startup.is_empty(), "{:?}", server.startup);
    let skipped = server.err_line_containing("::1 is not available (");
    assert!(skipped.trim_end().ends_with("serving without it"), "{skipped}");
    // Ask it from inside its namespace, as a client on that host would.
    let namespace = format!("--net=/proc/{}/ns/net", server.pid());
    let port = server.addrs[0].port().to_string();
    let out = Command::new("nsenter")
        .args([
            namespace.as_str(),
            env!("CARGO_BIN_EXE_cli6"),
            "-H",
            "localhost",
            "-p",
            &port,
            "hola",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_received(&out.stdout, 4);
}

#[test]
fn the_manual_page_is_dated_by_its_release_or_source_date_epoch() {
    let th = |epoch: Option<&str>| {
        let mut command = std::process::Command::new(serv6_path());
        command.arg("--generate-man");
        match epoch {
            Some(epoch) => command.env("SOURCE_DATE_EPOCH", epoch),
            None => command.env_remove("SOURCE_DATE_EPOCH"),
        };
        let out = command.output().expect("serv6 runs");
        let page = text(&out.stdout);
        page.lines().find(|l| l.starts_with(".TH")).unwrap_or_default().to_owned()
    };
    assert!(th(Some("86400")).contains(" 1970-01-02 "), "{}", th(Some("86400")));
    // The release date, whatever day the page is made.
    assert!(th(None).contains(" 2026-12-01 "), "{}", th(None));
}
