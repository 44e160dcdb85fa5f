//! Promises that hold under faults and take little time to prove: garbage,
//! kill -9, clean shutdown. The slow attacks are in `stress.rs`.

use crate::harness::rng::XorShift;
use crate::harness::*;
use std::collections::HashSet;
use std::io::Write;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Bytes chosen to upset parsers and terminals.
const NASTY: &[&[u8]] = &[
    b"\0",
    b"\r",
    b"\x1b",
    b"\x1b[2J",
    b"\x7f",
    b"\xff",
    b"\xc3",
    b"\xc2\x9b",
    b"\xc2\x85",
    b"a",
    b" ",
    b"\t",
    b"\xe2\x80\xae",
    b"\"",
    b"\\",
];

fn garbage(rng: &mut XorShift) -> Vec<u8> {
    let pieces = rng.below(40);
    (0..pieces)
        .flat_map(|_| NASTY[rng.below(NASTY.len() as u64) as usize].iter().copied())
        .collect()
}

#[test]
fn garbage_gets_one_reply_each_and_one_clean_log_line_each() {
    const CLIENTS: u64 = 4;
    const EACH: u64 = 500;
    let server = Server::start(&["--max-bytes", "64"]);
    let addr = server.v4();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|seed| {
            thread::spawn(move || {
                let mut rng = XorShift::new(seed);
                let mut logged = 0;
                for _ in 0..EACH {
                    let message = garbage(&mut rng);
                    let by_eof = rng.below(2) == 0;
                    let mut wire = message.clone();
                    if !by_eof {
                        wire.push(b'\n');
                    }
                    let reply = exchange(addr, &wire, by_eof);
                    assert_eq!(
                        reply.iter().filter(|&&b| b == b'\n').count(),
                        1,
                        "{:?}",
                        text(&reply)
                    );
                    assert_eq!(reply.last(), Some(&b'\n'));
                    // With an LF ending, a CR just before it is not counted.
                    let counted = if !by_eof && message.ends_with(b"\r") {
                        message.len() - 1
                    } else {
                        message.len()
                    };
                    if counted > 64 {
                        assert_refused(&reply, Refusal::TooLong { max_bytes: 64 });
                    } else {
                        assert_received(&reply, counted);
                        logged += 1;
                    }
                }
                logged
            })
        })
        .collect();
    let logged: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let lines: Vec<Vec<u8>> = (0..logged).map(|_| server.log_line()).collect();
    assert!(server.pending_log_lines().is_empty(), "more log lines than exchanges");
    for line in lines {
        let raw_control = line.iter().any(|&b| b < 0x20 || b == 0x7f);
        let c1 = line.windows(2).any(|w| w[0] == 0xc2 && (0x80..0xa0).contains(&w[1]));
        assert!(!raw_control && !c1, "raw control in {:?}", text(&line));
    }
}

#[test]
fn after_kill_9_every_reply_received_has_its_log_line() {
    let mut server = Server::start(&[]);
    let addr = server.v4();
    let replies = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (replies, stop) = (Arc::clone(&replies), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut conn) = std::net::TcpStream::connect(addr) else {
                        break;
                    };
                    let me = conn.local_addr().unwrap();
                    let _ = conn.set_read_timeout(Some(PATIENCE));
                    if conn.write_all(b"hola\n").is_err() {
                        break;
                    }
                    let mut reply = Vec::new();
                    let _ = std::io::Read::read_to_end(&mut conn, &mut reply);
                    if reply.ends_with(b"\n") {
                        replies.lock().unwrap().push((me, text(&reply)));
                    }
                }
            })
        })
        .collect();
    assert!(eventually(PATIENCE, || replies.lock().unwrap().len() >= 300));
    server.signal("KILL");
    server.wait_exit();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let log: HashSet<String> = server.rest_of_stdout().iter().map(|l| text(l)).collect();
    let replies = replies.lock().unwrap();
    for (peer, reply) in replies.iter() {
        let stamp = assert_received(reply.as_bytes(), 4);
        let line = format!("{stamp} {peer} 4 bytes \"hola\"\n");
        assert!(log.contains(&line), "reply {reply:?} to {peer} has no log line");
    }
    println!("{} replies received before kill -9, each one logged", replies.len());
}

#[test]
fn sigterm_lets_an_exchange_in_progress_finish() {
    if linux_only("taking signals") {
        return;
    }
    let mut server = Server::start(&["--pause", "5"]);
    let mut conn = connect(server.v4());
    conn.write_all(b"ho").unwrap();
    // The kernel hands connections out in order: once a later connection has
    // been answered, the first one is in a worker's hands.
    assert_received(&exchange(server.v4(), b"later\n", false), 5);
    server.signal("TERM");
    server.err_line_containing("SIGTERM received");
    conn.write_all(b"la\n").unwrap();
    conn.shutdown(Shutdown::Write).unwrap();
    assert_received(&read_to_end(&mut conn), 4);
    assert_eq!(server.wait_exit().code(), Some(0));
    let summary = server.err_line_containing("stopped after");
    assert!(summary.contains("2 exchanges served, 0 errors, 0 busy refusals"), "{summary}");
}

#[test]
fn sigint_on_an_idle_server_exits_at_once() {
    if linux_only("taking signals") {
        return;
    }
    let mut server = Server::start(&[]);
    let start = Instant::now();
    server.signal("INT");
    assert_eq!(server.wait_exit().code(), Some(0));
    // Idle workers block in accept for up to 5 s; they must be woken.
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    let rest = server.rest_of_stderr().join("\n");
    assert!(rest.contains("stopped after") && !rest.contains("panicked"), "{rest}");
}

#[test]
fn a_flood_of_errors_writes_a_few_lines_a_second() {
    if linux_only("the summary on SIGTERM") {
        return;
    }
    let mut server = Server::start(&["--max-bytes", "4", "--quiet"]);
    let started = Instant::now();
    for _ in 0..500 {
        assert_refused(
            &exchange(server.v4(), b"too long\n", false),
            Refusal::TooLong { max_bytes: 4 },
        );
    }
    let took = started.elapsed();
    // The counts of the last second come out at the latest on shutdown.
    server.signal("TERM");
    server.wait_exit();
    let lines = server.rest_of_stderr();
    let errors = lines.iter().filter(|l| l.contains("message longer than")).count();
    let counts = lines.iter().filter(|l| l.contains("and in the last second: ")).count();
    // At most 5 in full per second, whatever part of a second it took.
    let seconds = took.as_secs() + 2;
    assert!(errors as u64 <= 5 * seconds, "{errors} error lines in {took:?}");
    assert!((1..=seconds as usize).contains(&counts), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("500 errors")), "{lines:?}");
}
