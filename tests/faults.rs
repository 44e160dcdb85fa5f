//! The second outside fault pass: a service manager that stops reading its
//! notify socket, a listening socket passed non-blocking, a slow or
//! crowded scraper, a watchdog of 1 µs, a Unicode 15 format character, a
//! closed standard output, a client that resets before its reply. Each
//! against the real binary.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A notify socket of the test's own, bound at a fresh path.
struct NotifySocket {
    path: PathBuf,
    socket: UnixDatagram,
}

impl NotifySocket {
    fn new(name: &str) -> NotifySocket {
        let path = std::env::temp_dir().join(format!("serv6-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("a notify socket");
        NotifySocket { path, socket }
    }

    /// Fills its queue, as a service manager that stopped reading would
    /// leave it: sends until the kernel refuses more.
    fn fill(&self) {
        let sender = UnixDatagram::unbound().expect("a socket");
        sender.set_nonblocking(true).expect("non-blocking");
        let mut sent = 0;
        while sender.send_to(b"X=1", &self.path).is_ok() {
            sent += 1;
            assert!(sent < 100_000, "the queue never filled");
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Stops `server` with SIGTERM; returns how long it took to exit 0.
fn stop_timed(server: &mut Server) -> Duration {
    let started = Instant::now();
    server.signal("TERM");
    assert_eq!(server.wait_exit().code(), Some(0), "a clean exit");
    started.elapsed()
}

#[test]
fn a_notify_socket_full_at_start_cannot_stop_sigterm() {
    if linux_only("sd_notify") {
        return;
    }
    let notify = NotifySocket::new("full-notify");
    notify.fill();
    let mut server =
        Server::start_with(Command::new(serv6_path()).env("NOTIFY_SOCKET", &notify.path));
    let gave_up = server.err_line_containing("cannot tell the service manager READY=1");
    assert_received(&exchange(server.v4(), b"hola\n", false), 4);
    let took = stop_timed(&mut server);
    println!("notify queue full at start: {gave_up}; SIGTERM to exit 0 in {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn a_notify_socket_that_fills_later_cannot_stop_sigterm() {
    if linux_only("sd_notify") {
        return;
    }
    let notify = NotifySocket::new("late-notify");
    let mut server = Server::start_with(
        Command::new(serv6_path())
            .env("NOTIFY_SOCKET", &notify.path)
            .env("WATCHDOG_USEC", "20000")
            .env_remove("WATCHDOG_PID"),
    );
    // Nobody reads: the pings fill the queue within a second or two.
    notify.fill();
    let took = stop_timed(&mut server);
    println!("notify queue filled while serving: SIGTERM to exit 0 in {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn a_watchdog_of_one_microsecond_is_pinged_at_most_ten_times_a_second() {
    if linux_only("sd_notify") {
        return;
    }
    let notify = NotifySocket::new("tiny-watchdog");
    notify.socket.set_read_timeout(Some(Duration::from_millis(100))).expect("a timeout");
    let mut server = Server::start_with(
        Command::new(serv6_path())
            .env("NOTIFY_SOCKET", &notify.path)
            .env("WATCHDOG_USEC", "1")
            .env_remove("WATCHDOG_PID"),
    );
    let ticks_before = proc::cpu_ticks(server.pid());
    let (started, mut pings, mut buf) = (Instant::now(), 0, [0u8; 256]);
    while started.elapsed() < Duration::from_secs(2) {
        if let Ok(n) = notify.socket.recv(&mut buf) {
            pings += usize::from(&buf[..n] == b"WATCHDOG=1");
        }
    }
    let cpu = proc::cpu_ticks(server.pid()) - ticks_before;
    stop_timed(&mut server);
    println!("WATCHDOG_USEC=1: {pings} pings in 2 s, {cpu} ticks of CPU (1/100 s)");
    assert!((2..=22).contains(&pings), "{pings} pings");
    assert!(cpu <= 10, "{cpu} ticks");
}

/// serv6 given one listening socket, non-blocking as systemd's
/// `NonBlocking=yes` passes it; `None` without python3.
fn serv6_with_a_non_blocking_socket() -> Option<(std::process::Child, SocketAddr)> {
    if !have("python3", &["--version"]) {
        return None;
    }
    let script = "
import os, socket, sys
s = socket.create_server(('127.0.0.1', 0))
s.setblocking(False)
print(s.getsockname()[1], flush=True)
os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
env = dict(os.environ, LISTEN_PID=str(os.getpid()), LISTEN_FDS='1')
os.execve(sys.argv[1], [sys.argv[1], '--quiet'], env)
";
    let mut child = Command::new("python3")
        .args(["-c", script, &serv6_path()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 starts");
    let mut port = String::new();
    let mut out = child.stdout.take().expect("piped");
    let mut byte = [0u8; 1];
    while out.read(&mut byte).is_ok_and(|n| n == 1) && byte[0] != b'\n' {
        port.push(char::from(byte[0]));
    }
    let addr = format!("127.0.0.1:{}", port.trim()).parse().expect("a port");
    Some((child, addr))
}

#[test]
fn a_non_blocking_passed_socket_is_served_without_spinning() {
    if linux_only("socket activation") {
        return;
    }
    let Some((mut child, addr)) = serv6_with_a_non_blocking_socket() else {
        return;
    };
    // The first exchange says it serves; then a second of idleness.
    assert!(eventually(PATIENCE, || TcpStream::connect(addr).is_ok()), "it never served");
    assert_received(&exchange(addr, b"hola\n", false), 4);
    let before = proc::cpu_ticks(child.id());
    thread::sleep(Duration::from_secs(1));
    let idle = proc::cpu_ticks(child.id()) - before;
    assert_received(&exchange(addr, b"hola\n", false), 4);
    let _ = child.kill();
    let _ = child.wait();
    println!("a non-blocking passed socket: {idle} ticks of CPU in an idle second");
    assert!(idle <= 5, "{idle} ticks of CPU while idle");
}

/// serv6 with metrics on a free loopback port; returns it and that address.
fn with_metrics(args: &[&str]) -> (Server, SocketAddr) {
    let server = Server::start(&[&["--metrics", "127.0.0.1:0", "--quiet"], args].concat());
    let addr = server.metrics_addr();
    (server, addr)
}

/// Sends `request` and returns the whole response, and how long it took.
fn scrape(addr: SocketAddr, request: &str) -> (String, Duration) {
    let started = Instant::now();
    let mut conn = connect(addr);
    conn.write_all(request.as_bytes()).expect("sends");
    (text(&read_to_end(&mut conn)), started.elapsed())
}

const GET: &str = "GET /metrics HTTP/1.1\r\nHost: serv6\r\n\r\n";

#[test]
fn a_slow_or_crowded_client_cannot_delay_a_scrape() {
    let (_server, metrics) = with_metrics(&[]);
    // A client that sends its request a byte every 1.5 s, for 4 s.
    let mut slow = connect(metrics);
    let dripping = thread::spawn(move || {
        for byte in b"GET /me" {
            if slow.write_all(&[*byte]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(1500));
        }
    });
    let (reply, took) = scrape(metrics, GET);
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    println!("a scrape beside a client dripping a byte every 1.5 s: {took:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    let idle: Vec<TcpStream> = (0..1000).filter_map(|_| TcpStream::connect(metrics).ok()).collect();
    let (reply, took) = scrape(metrics, GET);
    println!("a scrape after {} idle connections: {took:?}", idle.len());
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    drop(idle);
    let _ = dripping.join();
}

#[test]
fn head_gets_the_headers_and_other_methods_405() {
    let (_server, metrics) = with_metrics(&[]);
    let (head, _) = scrape(metrics, "HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "headers only: {head}");
    assert!(head.contains("Content-Length: "), "{head}");
    let (query, _) = scrape(metrics, "GET /metrics?format=text HTTP/1.1\r\n\r\n");
    assert!(query.starts_with("HTTP/1.1 200 OK\r\n"), "a query string is ignored: {query}");
    let (post, _) = scrape(metrics, "POST /metrics HTTP/1.1\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{post}");
    assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
}

#[test]
fn unicode_15_format_characters_are_escaped_in_the_log() {
    let server = Server::start(&[]);
    let message = "a\u{13439}b\u{1343f}c";
    assert_received(
        &exchange(server.v4(), format!("{message}\n").as_bytes(), false),
        message.len(),
    );
    let line = text(&server.log_line());
    println!("logged: {line}");
    assert!(line.ends_with(r#" "a\u{13439}b\u{1343f}c""#), "{line}");
}

#[test]
fn a_standard_output_of_dev_null_however_opened_is_a_discarded_log_not_a_loss() {
    if linux_only("the summary on SIGTERM") {
        return;
    }
    // Closed at start (Rust reopens /dev/null read-write in its place), and
    // /dev/null opened read-write, as Python's subprocess.DEVNULL and
    // daemon(3) open it: the two look alike, and neither is a failure.
    for redirect in [">&-", "1<>/dev/null"] {
        let script = format!("exec \"$0\" \"$@\" {redirect}");
        let mut server = Server::start_writing(
            Command::new("sh").args(["-c", &script, &serv6_path()]),
            Stdio::null(),
        );
        for _ in 0..2 {
            assert_received(&exchange(server.v4(), b"hola\n", false), 4);
        }
        server.signal("TERM");
        assert_eq!(server.wait_exit().code(), Some(0));
        let rest = server.startup.join("\n") + &server.rest_of_stderr().join("\n");
        assert!(rest.contains("2 exchanges served"), "{redirect}: {rest}");
        assert!(!rest.contains("not written") && !rest.contains("closed"), "{redirect}: {rest}");
    }
}

/// Connects `count` times and resets each connection (`SO_LINGER` 0), with
/// Python: std cannot set the linger time.
fn reset_connections(addr: SocketAddr, count: usize) -> bool {
    let script = "import socket, struct, sys\n\
                  for _ in range(int(sys.argv[3])):\n\
                  \x20   s = socket.create_connection((sys.argv[1], int(sys.argv[2])))\n\
                  \x20   s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))\n\
                  \x20   s.close()\n";
    let args = [addr.ip().to_string(), addr.port().to_string(), count.to_string()];
    Command::new("python3").arg("-c").arg(script).args(args).status().is_ok_and(|s| s.success())
}

#[test]
fn a_reply_lost_to_a_reset_is_counted_and_its_line_kept() {
    if linux_only("the summary on SIGTERM") {
        return;
    }
    if !have("python3", &["--version"]) {
        return;
    }
    let mut server = Server::start(&["--service", "daytime"]);
    // Stopped, the server accepts each connection only after its reset has
    // come, so that every reply is lost.
    server.signal("STOP");
    assert!(eventually(PATIENCE, || proc::is_stopped(server.pid())));
    assert!(reset_connections(server.v4(), 20), "python3 could not connect");
    server.signal("CONT");
    let logged: Vec<_> = (0..20).map(|_| server.log_line()).collect();
    assert!(logged.iter().all(|line| text(line).ends_with(" daytime")));
    server.signal("TERM");
    assert_eq!(server.wait_exit().code(), Some(0));
    let rest = server.rest_of_stderr().join("\n");
    println!("{rest}");
    assert!(rest.contains("reply lost: "), "{rest}");
    assert!(
        rest.contains("20 exchanges served, 20 errors") && rest.contains("20 replies lost"),
        "{rest}"
    );
}

#[test]
fn memory_a_crowd_of_big_slow_messages_took_is_given_back() {
    if linux_only("giving memory back (glibc's malloc_trim)") {
        return;
    }
    let (server, metrics) = with_metrics(&["--pause", "off", "--deadline", "86400"]);
    let idle = proc::rss_kib(server.pid());
    let message = vec![b'x'; 60_000];
    let crowd: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut conn = connect(server.v4());
            conn.write_all(&message).expect("sends");
            conn
        })
        .collect();
    let all_held =
        eventually(PATIENCE, || scrape(metrics, GET).0.contains("\nserv6_connections_held 300\n"));
    assert!(all_held, "the room never held the 300");
    let peak = proc::rss_kib(server.pid());
    assert!(peak > idle + 15_000, "300 messages of 60 kB held: RSS {peak} KiB");
    drop(crowd);
    let given_back = eventually(PATIENCE, || proc::rss_kib(server.pid()) < idle + 4096);
    let after = proc::rss_kib(server.pid());
    println!("RSS idle {idle} KiB, 300 held {peak} KiB, after they left {after} KiB");
    assert!(given_back, "RSS idle {idle} KiB, 300 held {peak} KiB, after {after} KiB");
}
