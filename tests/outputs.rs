//! Broken outputs and resource limits never kill serv6 nor stop it
//! answering, and every exchange line it cannot write is counted: a full
//! device, a file-size limit, a reader that went away, a frozen disk.
//! Also the signals that would otherwise end it without a word, and the
//! busy lines a crowd of clients can cause.

use crate::harness::*;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// serv6 with `args`, its standard output `stdout`, through `sh` so that
/// `limits` (shell `ulimit` words) apply to it alone.
fn serv6_writing(limits: &str, args: &[&str], stdout: Stdio) -> Server {
    let script = format!("{limits} exec \"$0\" \"$@\"");
    Server::start_writing(
        Command::new("sh").args(["-c", &script, &serv6_path()]).args(args),
        stdout,
    )
}

/// Runs `count` exchanges, each of which must be answered.
fn served(server: &Server, count: usize) {
    for _ in 0..count {
        assert_received(&exchange(server.v4(), b"hola\n", false), 4);
    }
}

/// Stops `server` and returns its summary line.
fn summary(mut server: Server) -> String {
    server.signal("TERM");
    assert_eq!(server.wait_exit().code(), Some(0));
    let rest = server.rest_of_stderr();
    rest.into_iter().find(|l| l.contains("stopped after")).expect("a summary")
}

#[test]
fn on_a_full_device_every_line_not_written_is_counted() {
    if linux_only("the summary on SIGTERM") {
        return;
    }
    let full = File::options().write(true).open("/dev/full").expect("/dev/full");
    let server = serv6_writing("", &[], Stdio::from(full));
    served(&server, 50);
    let line = server.err_line_containing("cannot write standard output");
    assert!(line.contains("No space left on device"), "{line}");
    let summary = summary(server);
    assert!(
        summary.contains("50 exchanges served")
            && summary.contains("50 exchange lines not written: No space left on device"),
        "{summary}"
    );
}

#[test]
fn past_a_file_size_limit_it_serves_on_and_counts_the_lines() {
    if linux_only("ignoring SIGXFSZ") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("serv6-fsize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let path = dir.join("log");
    let file = File::create(&path).expect("a log file");
    // 64 KiB: about 1100 lines of ~60 bytes.
    let server = serv6_writing("ulimit -f 64 &&", &[], Stdio::from(file));
    served(&server, 1500);
    let summary = summary(server);
    let log = std::fs::read_to_string(&path).expect("the log");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(summary.contains("1500 exchanges served"), "{summary}");
    assert!(summary.contains("not written: File too large"), "{summary}");
    let written = log.lines().count();
    assert!(log.ends_with('\n'), "the log ends inside a line");
    println!("ulimit -f 64: {written} lines written; {summary}");
}

#[test]
fn a_reader_that_goes_away_costs_lines_counted_not_the_service() {
    if linux_only("the summary on SIGTERM") {
        return;
    }
    let mut head = Command::new("head")
        .args(["-n", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("head runs");
    let pipe = head.stdin.take().expect("a pipe");
    let server = serv6_writing("", &[], Stdio::from(pipe));
    served(&server, 5);
    let _ = head.wait();
    served(&server, 45);
    let mut server = server;
    server.signal("TERM");
    assert_eq!(server.wait_exit().code(), Some(0));
    let said = server.rest_of_stderr().join("");
    assert!(said.contains("50 exchanges served"), "{said}");
    assert!(said.contains("not written: Broken pipe"), "{said}");
    // The reader is gone for good: nothing may say it reads again.
    assert!(!said.contains(" again"), "{said}");
}

#[test]
fn a_reader_that_stalled_then_left_is_not_said_to_read_again() {
    if linux_only("the summary on SIGTERM") {
        return;
    }
    let (reader, writer) = std::io::pipe().expect("a pipe");
    let mut server = Server::start_writing(&mut Command::new(serv6_path()), writer.into());
    // Lines of 4.2 KB that nobody reads: the pipe fills, then the 1 MiB
    // queue, then lines are dropped; then the reader leaves.
    let long = [[0xffu8; 1024].as_slice(), b"\n"].concat();
    for _ in 0..300 {
        assert_received(&exchange(server.v4(), &long, false), 1024);
    }
    drop(reader);
    served(&server, 5);
    server.signal("TERM");
    assert_eq!(server.wait_exit().code(), Some(0));
    let said = server.rest_of_stderr().join("");
    assert!(said.contains("exchange lines dropped"), "{said}");
    assert!(!said.contains(" again"), "{said}");
}

#[test]
fn a_stop_while_the_log_is_frozen_counts_every_reply_sent() {
    if linux_only("the summary on SIGTERM") {
        return;
    }
    let Some(disk) = Scratch::new("frozen-stop") else {
        return;
    };
    let path = disk.mount.join("log");
    let mut server = serv6_writing("", &[], Stdio::from(File::create(&path).expect("a log")));
    served(&server, 10);
    let frozen = Command::new("fsfreeze").arg("-f").arg(&disk.mount).status();
    if !frozen.is_ok_and(|s| s.success()) {
        skipped("fsfreeze cannot freeze the test's filesystem");
        return;
    }
    // One worker is stuck in the frozen write; the output's helper sends
    // its reply; the rest are counted as their lines wait.
    served(&server, 40);
    server.signal("TERM");
    let summary = server.err_line_containing("stopped after");
    let _ = Command::new("fsfreeze").arg("-u").arg(&disk.mount).status();
    let _ = server.wait_exit();
    println!("frozen, then SIGTERM: 50 replies sent; {summary}");
    assert!(summary.contains("50 exchanges served"), "{summary}");
}

#[test]
fn signals_that_would_end_it_silently_are_ignored_or_stop_it_gracefully() {
    if linux_only("taking signals") {
        return;
    }
    let server = Server::start(&[]);
    for name in ["USR2", "ALRM", "VTALRM", "PROF", "XFSZ", "IO", "16", "RTMIN+1", "RTMAX"] {
        server.signal(name);
        assert_received(&exchange(server.v4(), b"hola\n", false), 4);
    }
    server.signal("USR1");
    let report = server.err_line_containing("SIGUSR1: running for");
    assert!(report.contains("9 exchanges served"), "{report}");
    assert_received(&exchange(server.v4(), b"hola\n", false), 4);
    server.signal("PWR");
    let mut server = server;
    assert_eq!(server.wait_exit().code(), Some(0));
    let rest = server.rest_of_stderr().join("\n");
    assert!(rest.contains("SIGPWR received") && rest.contains("stopped after"), "{rest}");
}

#[test]
fn a_crowd_that_keeps_the_room_full_writes_a_few_lines_a_second() {
    let mut server = Server::start(&["--max-conns", "64", "--deadline", "1", "--quiet"]);
    let addr = server.v4();
    let until = Instant::now() + Duration::from_secs(3);
    let crowd: Vec<_> = (0..100)
        .map(|_| {
            thread::spawn(move || {
                while Instant::now() < until {
                    if let Ok(mut conn) = TcpStream::connect_timeout(&addr, PATIENCE) {
                        let _ = conn.write_all(b"no newline");
                        let _ = conn.set_read_timeout(Some(PATIENCE));
                        let _ = std::io::Read::read(&mut conn, &mut [0; 64]);
                    }
                }
            })
        })
        .collect();
    for client in crowd {
        let _ = client.join();
    }
    server.signal("TERM");
    server.wait_exit();
    let lines = server.rest_of_stderr();
    let busy = lines.iter().filter(|l| l.contains("busy")).count();
    println!(
        "100 looping clients, --max-conns 64, 3 s: {} stderr lines, {busy} naming busy",
        lines.len()
    );
    // Five in full a second, one count line a second, and the shutdown's.
    assert!(lines.len() <= 6 * 4 + 5, "{} lines: {lines:#?}", lines.len());
}

/// As root, with a loop device: an ext4 filesystem of `mib` MiB mounted on
/// a fresh directory, unmounted when dropped. `None`, after saying why, if
/// this machine cannot make one.
struct Scratch {
    mount: std::path::PathBuf,
    image: std::path::PathBuf,
}

impl Scratch {
    fn new(what: &str) -> Option<Scratch> {
        let base = std::env::temp_dir().join(format!("serv6-{what}-{}", std::process::id()));
        let (image, mount) = (base.with_extension("img"), base.with_extension("mnt"));
        let ok = |cmd: &mut Command| {
            cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
        };
        let made = std::fs::create_dir_all(&mount).is_ok()
            && ok(Command::new("truncate").args(["-s", "8M"]).arg(&image))
            && ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image))
            && ok(Command::new("mount").args(["-o", "loop"]).arg(&image).arg(&mount));
        if !made {
            skipped("needs root, mkfs.ext4 and a loop device to mount a filesystem of its own");
            let _ = std::fs::remove_file(&image);
            let _ = std::fs::remove_dir(&mount);
            return None;
        }
        Some(Scratch { mount, image })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let quiet = |cmd: &mut Command| {
            let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
        };
        quiet(Command::new("fsfreeze").arg("-u").arg(&self.mount));
        quiet(Command::new("umount").arg(&self.mount));
        let _ = std::fs::remove_file(&self.image);
        let _ = std::fs::remove_dir(&self.mount);
    }
}

#[test]
fn a_frozen_log_filesystem_delays_no_reply_beyond_the_stall_bound() {
    if linux_only("the summary on SIGTERM") {
        return;
    }
    let Some(disk) = Scratch::new("frozen") else {
        return;
    };
    let path = disk.mount.join("log");
    let server = serv6_writing("", &[], Stdio::from(File::create(&path).expect("a log")));
    served(&server, 10);
    let frozen = Command::new("fsfreeze").arg("-f").arg(&disk.mount).status();
    if !frozen.is_ok_and(|s| s.success()) {
        skipped("fsfreeze cannot freeze the test's filesystem");
        return;
    }
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let start = Instant::now();
        assert_received(&exchange(server.v4(), b"hola\n", false), 4);
        slowest = slowest.max(start.elapsed());
    }
    let _ = Command::new("fsfreeze").arg("-u").arg(&disk.mount).status();
    let summary = summary(server);
    let logged = std::fs::read_to_string(&path).expect("the log").lines().count();
    println!("log filesystem frozen: 20 exchanges, the slowest {slowest:?}; {logged} lines logged after the thaw; {summary}");
    assert!(slowest < Duration::from_millis(500), "a reply waited {slowest:?}");
    assert_eq!(logged, 30, "every line came out after the thaw");
}

#[test]
fn a_full_filesystem_never_glues_two_lines_together() {
    if linux_only("the summary on SIGTERM") {
        return;
    }
    let Some(disk) = Scratch::new("full") else {
        return;
    };
    let filler = disk.mount.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k", "status=none"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    let path = disk.mount.join("log");
    let server = serv6_writing("", &[], Stdio::from(File::create(&path).expect("a log")));
    served(&server, 200);
    std::fs::remove_file(&filler).expect("room again");
    let log_now = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    served(&server, 200);
    let summary = summary(server);
    let log = std::fs::read_to_string(&path).expect("the log");
    println!("full filesystem: {log_now} bytes logged while full; {summary}");
    for line in log.lines() {
        assert!(line.matches(" bytes \"").count() <= 1, "two lines glued: {line}");
    }
    assert!(log.lines().filter(|l| l.ends_with("\"hola\"")).count() >= 200);
}

/// The number just before `what` in `summary`, 0 if it says none.
fn number_before(summary: &str, what: &str) -> usize {
    let Some((before, _)) = summary.split_once(what) else {
        return 0;
    };
    let number = before.split_whitespace().next_back().and_then(|n| n.parse().ok());
    number.unwrap_or(0)
}

#[test]
fn lines_still_queued_at_exit_are_counted_in_the_summary() {
    if linux_only("the summary on SIGTERM") {
        return;
    }
    let (mut server, gates) = Server::start_unread(&[], true, false);
    let mut message = vec![b'x'; 300];
    message.push(b'\n');
    for _ in 0..3000 {
        assert_received(&exchange(server.v4(), &message, false), 300);
    }
    server.signal("TERM");
    assert_eq!(server.wait_exit().code(), Some(0));
    // Nobody read standard output until serv6 had exited.
    drop(gates);
    let logged = server.rest_of_stdout().len();
    let rest = server.rest_of_stderr();
    let summary = rest.iter().find(|l| l.contains("stopped after")).expect("a summary");
    let served = number_before(summary, " exchanges served");
    let not_written = number_before(summary, " exchange lines not written");
    let dropped = number_before(summary, " exchange lines dropped");
    println!("a pipe read only after exit: {logged} lines logged; {summary}");
    assert_eq!(served, 3000, "{summary}");
    assert!(summary.contains("still queued at exit"), "{summary}");
    assert_eq!(logged + not_written + dropped, served, "{summary}");
}

#[test]
fn lines_written_at_once_into_a_slowly_read_pipe_are_whole_and_in_order() {
    if linux_only("the summary on SIGTERM") {
        return;
    }
    let (mut reader, writer) = std::io::pipe().expect("a pipe");
    let mut server = Server::start_writing(&mut Command::new(serv6_path()), writer.into());
    // A reader slower than the writers: the pipe fills and drains at
    // once, so lines go side by side, in turn, cut by a non-blocking write
    // and finished by the helper, all mixed.
    let read = thread::spawn(move || {
        let (mut all, mut chunk) = (Vec::new(), [0u8; 512]);
        while let Ok(n @ 1..) = reader.read(&mut chunk) {
            all.extend_from_slice(&chunk[..n]);
            thread::sleep(Duration::from_millis(1));
        }
        all
    });
    let addr = server.v4();
    // Each client's messages: its letter, a number, its letter again.
    eight_numbering_clients(addr, 200);
    server.signal("TERM");
    assert_eq!(server.wait_exit().code(), Some(0));
    let all = read.join().expect("the reader");
    let text = String::from_utf8_lossy(&all);
    let (next, cut, late) = lines_by_client(&text, 200);
    assert!(cut.is_empty(), "{} lines not whole: {:?}", cut.len(), cut.first());
    assert!(
        late.is_empty(),
        "{} lines out of their client's order: {:?}",
        late.len(),
        late.first()
    );
    assert_eq!(next, [150; 8]);
}

/// Client `i`'s message `n` of `len` bytes: its letter, the number, its
/// letter again, and an LF.
fn numbered(i: u8, n: usize, len: usize) -> Vec<u8> {
    let mut message = format!("{}{n:03}", char::from(b'a' + i)).into_bytes();
    message.resize(len, b'a' + i);
    message.push(b'\n');
    message
}

/// Eight clients at once, each sending 150 [`numbered`] messages of `len`
/// bytes and checking every reply; returns when all are done.
fn eight_numbering_clients(addr: std::net::SocketAddr, len: usize) {
    let clients: Vec<_> = (0..8u8)
        .map(|i| {
            thread::spawn(move || {
                for n in 0..150 {
                    assert_received(&exchange(addr, &numbered(i, n, len), false), len);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client thread");
    }
}

/// Reads exchange lines of `len`-byte messages ([`numbered`]): the next
/// number each of 8 clients would have, the lines not whole, and those
/// out of their client's order.
fn lines_by_client(text: &str, len: usize) -> ([usize; 8], Vec<&str>, Vec<&str>) {
    let (mut next, mut cut, mut late) = ([0usize; 8], Vec::new(), Vec::new());
    let counted = format!(" {len} bytes \"");
    for line in text.lines() {
        let quoted = line.split_once(&counted).and_then(|(_, q)| q.strip_suffix('"'));
        let Some((letter, rest)) = quoted.and_then(|q| q.split_at_checked(1)) else {
            cut.push(line);
            continue;
        };
        let number = rest.get(..3).and_then(|n| n.parse::<usize>().ok());
        let client = letter.bytes().next().map_or(8, |l| usize::from(l.wrapping_sub(b'a')));
        match number {
            Some(n)
                if client < 8
                    && rest.len() == len - 1
                    && rest[3..].bytes().all(|b| b == letter.as_bytes()[0]) =>
            {
                if n != next[client] {
                    late.push(line);
                }
                next[client] = n + 1;
            }
            _ => cut.push(line),
        }
    }
    (next, cut, late)
}

/// Whether any line of `text` has a second log line's time inside it.
fn glued(text: &str) -> Option<&str> {
    let stamp = |b: &[u8]| b.len() >= 11 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T';
    text.lines().find(|line| {
        let bytes = line.as_bytes();
        (1..bytes.len()).any(|i| bytes[i].is_ascii_digit() && stamp(&bytes[i..]))
    })
}

#[test]
fn a_long_line_cut_when_the_fifo_reader_left_is_not_glued_to_the_next_line() {
    let dir = std::env::temp_dir().join(format!("serv6-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let fifo = dir.join("log");
    if !Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success()) {
        skipped("mkfifo cannot make a FIFO here");
        return;
    }
    // Opening either end of a FIFO waits for the other.
    let path = fifo.clone();
    let first = thread::spawn(move || File::open(path).expect("the first reader"));
    let writer = File::options().write(true).open(&fifo).expect("serv6's end");
    let first = first.join().expect("the first reader opens");
    let server = Server::start_writing(&mut Command::new(serv6_path()), writer.into());
    // 0xff escapes to 4 characters: lines of 4.2 KB, past a pipe's atomic
    // 4 KiB. Nobody reads: the pipe fills, and a line is cut in it.
    let long = [[0xffu8; 1024].as_slice(), b"\n"].concat();
    for _ in 0..25 {
        assert_received(&exchange(server.v4(), &long, false), 1024);
    }
    // The reader leaves with a line half in the pipe; lines fail meanwhile.
    drop(first);
    for _ in 0..3 {
        assert_received(&exchange(server.v4(), &long, false), 1024);
    }
    let mut second = File::open(&fifo).expect("a new reader");
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut all = Vec::new();
        let mut chunk = [0u8; 65536];
        while let Ok(n @ 1..) = second.read(&mut chunk) {
            all.extend_from_slice(&chunk[..n]);
            if String::from_utf8_lossy(&all).matches(" 4 bytes \"hola\"").count() == 5 {
                break;
            }
        }
        let _ = tx.send(all);
    });
    served(&server, 5);
    let all = rx.recv_timeout(PATIENCE).expect("the new reader gets the five lines");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&all);
    assert_eq!(glued(&text), None, "two lines glued into one");
}

#[test]
fn lines_into_a_socket_whose_buffer_shrinks_later_are_never_cut() {
    if linux_only("the summary on SIGTERM") {
        return;
    }
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
    let shrink = "import socket; s = socket.socket(fileno=0); \
                  s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2048); s.detach()";
    let dup = ours.try_clone().expect("a second descriptor of serv6's end");
    let mut serv6 = Command::new(serv6_path());
    let mut server =
        Server::start_writing(serv6.args(["--log-bytes", "3000"]), OwnedFd::from(ours).into());
    // The command holds its copy of serv6's end: the reader's EOF waits on it.
    drop(serv6);
    // serv6 has looked at its output; now another holder of the same
    // socket shrinks its send buffer, as a shell or journald could.
    let shrunk = Command::new("python3").args(["-c", shrink]).stdin(OwnedFd::from(dup)).status();
    if !shrunk.is_ok_and(|s| s.success()) {
        skipped("python3 cannot shrink the socket's send buffer (python3 missing?)");
        return;
    }
    let reader = thread::spawn(move || {
        let mut all = Vec::new();
        let _ = theirs.read_to_end(&mut all);
        all
    });
    let addr = server.v4();
    eight_numbering_clients(addr, 3000);
    // The reader reads to the end once serv6 has flushed and gone.
    server.signal("TERM");
    assert_eq!(server.wait_exit().code(), Some(0));
    let summary = server.rest_of_stderr().join("");
    let all = reader.join().expect("the reader");
    let text = String::from_utf8_lossy(&all);
    let (_, cut, _) = lines_by_client(&text, 3000);
    assert!(cut.is_empty(), "{} lines not whole: {:?}", cut.len(), cut.first());
    println!("{} lines read; {summary}", text.lines().count());
}
