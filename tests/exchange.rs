//! The exchange contract, rule by rule, against the real serv6 over IPv4 and
//! IPv6 loopback.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

#[test]
fn rule_1_newline_ends_the_message_and_a_cr_before_it_is_dropped() {
    let server = Server::start(&[]);
    for addr in server.both() {
        let reply = exchange(addr, b"hola\r\n", false);
        assert_received(&reply, 4);
        let reply = exchange(addr, b"uno\ndos\n", false);
        assert_received(&reply, 3);
    }
}

#[test]
fn rule_1_eof_ends_the_message() {
    let server = Server::start(&[]);
    for addr in server.both() {
        assert_received(&exchange(addr, b"hola", true), 4);
    }
}

#[test]
fn rule_1_a_pause_ends_the_message_of_a_plain_send_recv_client() {
    let server = Server::start(&["--pause", "0.1"]);
    for addr in server.both() {
        let mut conn = connect(addr);
        let sent = Instant::now();
        conn.write_all(b"hola").unwrap();
        let reply = read_to_end(&mut conn);
        assert_received(&reply, 4);
        assert!(sent.elapsed() >= Duration::from_millis(100), "answered before the pause");
    }
}

#[test]
fn rule_2_the_reply_is_one_line_with_the_time_of_receipt() {
    let server = Server::start(&[]);
    let before = SystemTime::now();
    let reply = exchange(server.v4(), b"que hora es\n", false);
    let after = SystemTime::now();
    let stamp = assert_received(&reply, 11);
    let at = stamp.to_system_time();
    // Truncation to microseconds may put the stamp just under `before`.
    assert!(at + Duration::from_micros(1) >= before && at <= after, "{stamp} outside the exchange");
}

#[test]
fn rule_3_an_oversize_message_gets_the_error_line() {
    let server = Server::start(&["--max-bytes", "16"]);
    for addr in server.both() {
        assert_received(&exchange(addr, &[b'a'; 17][..16], true), 16);
        assert_received(&exchange(addr, b"aaaaaaaaaaaaaaaa\r\n", false), 16);
        let reply = exchange(addr, b"aaaaaaaaaaaaaaaaa\n", false);
        assert_refused(&reply, Refusal::TooLong { max_bytes: 16 });
    }
}

#[test]
fn rule_3_a_client_that_keeps_sending_still_receives_the_error_line() {
    let server = Server::start(&[]);
    for addr in server.both() {
        let mut conn = connect(addr);
        let mut writer = conn.try_clone().unwrap();
        // Sends far more than the limit, without a newline, and never stops
        // of its own accord: the server must cut it off, not the test.
        let flood = thread::spawn(move || {
            let block = [b'x'; 64 * 1024];
            let mut sent = 0usize;
            while sent < 64 * 1024 * 1024 && writer.write_all(&block).is_ok() {
                sent += block.len();
            }
        });
        let mut reply = Vec::new();
        let _ = conn.read_to_end(&mut reply);
        assert_refused(&reply, Refusal::TooLong { max_bytes: 65536 });
        flood.join().unwrap();
    }
}

#[test]
fn rule_4_a_silent_client_gets_the_deadline_error() {
    let server = Server::start(&["--deadline", "0.3"]);
    for addr in server.both() {
        let mut conn = connect(addr);
        let start = Instant::now();
        let reply = read_to_end(&mut conn);
        assert_refused(&reply, Refusal::Deadline { limit: Duration::from_millis(300) });
        assert!(start.elapsed() >= Duration::from_millis(300));
        let line = server.err_line_containing("no message within");
        assert!(line.contains(&addr.ip().to_string()), "error line names the peer: {line}");
    }
}

#[test]
fn rule_4_an_empty_message_ended_by_eof_is_valid() {
    let server = Server::start(&[]);
    for addr in server.both() {
        assert_received(&exchange(addr, b"", true), 0);
    }
}

#[test]
fn rule_5_any_bytes_are_a_message_and_the_log_escapes_them() {
    let server = Server::start(&[]);
    let mut message: Vec<u8> = (0..=255u8).filter(|&b| b != b'\n').collect();
    message.extend_from_slice("\u{1b}]0;pwned\u{7}\u{202e}\u{9b}".as_bytes());
    let mut wire = message.clone();
    wire.push(b'\n');
    for addr in server.both() {
        let reply = exchange(addr, &wire, false);
        let stamp = assert_received(&reply, message.len());
        let line = server.log_line();
        assert!(
            line.iter().all(|&b| (0x20..0x7f).contains(&b) || b >= 0x80),
            "raw control byte in log line: {:?}",
            text(&line)
        );
        let line = String::from_utf8(line).expect("the log line is valid UTF-8");
        assert!(line.starts_with(&format!("{stamp} ")), "{line}");
        assert!(line.contains(&format!(" {} bytes \"\\x00\\x01", message.len())), "{line}");
        assert!(line.contains("\\x1b]0;pwned\\x07\\u{202e}\\u{009b}\""), "{line}");
        assert!(!line.contains('\u{202e}') && !line.contains('\u{9b}'));
    }
}

#[test]
fn the_log_line_names_time_peer_length_and_message() {
    let server = Server::start(&[]);
    let mut conn = connect(server.v4());
    let me = conn.local_addr().unwrap();
    conn.write_all(b"hola \"mundo\"\n").unwrap();
    let stamp = assert_received(&read_to_end(&mut conn), 12);
    let line = text(&server.log_line());
    assert_eq!(line, format!("{stamp} {me} 12 bytes \"hola \\\"mundo\\\"\""));
}

#[test]
fn quiet_drops_the_exchange_lines_only() {
    let server = Server::start(&["--quiet", "--max-bytes", "2"]);
    assert_received(&exchange(server.v4(), b"ok\n", false), 2);
    assert_refused(&exchange(server.v4(), b"long\n", false), Refusal::TooLong { max_bytes: 2 });
    server.err_line_containing("message longer than 2 bytes");
    assert!(server.pending_log_lines().is_empty());
}

#[test]
fn silent_connections_do_not_delay_other_clients() {
    let server = Server::start(&[]);
    for addr in server.both() {
        let silent: Vec<_> = (0..64).map(|_| connect(addr)).collect();
        let start = Instant::now();
        assert_received(&exchange(addr, b"hola\n", false), 4);
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "an exchange behind 64 silent clients took {took:?}"
        );
        drop(silent);
    }
}

#[test]
fn above_max_conns_the_longest_waiting_is_told_busy_and_new_clients_served() {
    let server = Server::start(&["--max-conns", "2"]);
    let (held, rx) = silent_clients(server.v4(), 2);
    // A normal client is served at once, whatever the room holds.
    assert_received(&exchange(server.v4(), b"hola\n", false), 4);
    // A third silent one makes room for itself: one of the first two goes.
    let (newest, newest_reply) = silent_clients(server.v4(), 1);
    let first = rx.recv_timeout(PATIENCE).expect("one of the first two is told at once");
    assert_refused(&first, Refusal::Busy);
    let line = server.err_line_containing("server busy");
    let ports: Vec<u16> = held.iter().map(|c| c.local_addr().unwrap().port()).collect();
    assert!(
        ports.iter().any(|p| line.contains(&format!(":{p}: server busy"))),
        "the busy line names one of {ports:?}: {line}"
    );
    for conn in held.iter().chain(&newest) {
        let _ = conn.shutdown(Shutdown::Write);
    }
    assert_received(&rx.recv_timeout(PATIENCE).unwrap(), 0);
    assert_received(&newest_reply.recv_timeout(PATIENCE).unwrap(), 0);
}

#[test]
fn clients_that_vanish_mid_message_do_not_disturb_the_server() {
    let server = Server::start(&["--pause", "5"]);
    for _ in 0..20 {
        let mut conn = connect(server.v4());
        conn.write_all(b"half a mess").unwrap();
        drop(conn);
    }
    assert_received(&exchange(server.v4(), b"still here\n", false), 10);
}

#[test]
fn clients_that_trickle_bytes_do_not_delay_others() {
    // Sending at once must not pass for a fast client: these send a byte
    // every 50 ms, never completing a message, and hold their workers.
    let server = Server::start(&[]);
    let addr = server.v4();
    let mut trickling: Vec<_> = (0..32).map(|_| connect(addr)).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickler = {
        let stop = std::sync::Arc::clone(&stop);
        let mut conns: Vec<_> = trickling.iter().map(|c| c.try_clone().unwrap()).collect();
        thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for conn in conns.iter_mut() {
                    let _ = conn.write_all(b"x");
                }
                thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let start = Instant::now();
    assert_received(&exchange(addr, b"hola\n", false), 4);
    let took = start.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    trickler.join().unwrap();
    trickling.clear();
    assert!(took < Duration::from_secs(1), "an exchange behind 32 trickling clients took {took:?}");
}

#[test]
fn with_the_pause_off_a_gap_mid_message_does_not_cut_it() {
    let server = Server::start(&["--pause", "off", "--deadline", "5"]);
    let mut conn = connect(server.v4());
    conn.write_all(b"ho").unwrap();
    // A stall in the network longer than the default pause.
    thread::sleep(Duration::from_millis(300));
    conn.write_all(b"la\n").unwrap();
    assert_received(&read_to_end(&mut conn), 4);
}

#[test]
fn the_log_shows_at_most_log_bytes_of_a_message() {
    let server = Server::start(&["--log-bytes", "8"]);
    assert_received(&exchange(server.v4(), b"0123456789abcdef\n", false), 16);
    let line = text(&server.log_line());
    assert!(line.ends_with(" 16 bytes \"01234567\" ... (8 more bytes)"), "{line}");
    // By default 1024 bytes: 64 KiB that would escape to 256 KiB stay small.
    let server = Server::start(&[]);
    let mut huge = vec![0xff; 65_536];
    huge.push(b'\n');
    assert_received(&exchange(server.v4(), &huge, false), 65_536);
    let line = server.log_line();
    assert!(line.len() < 4 * 1024 + 100, "{} bytes", line.len());
    assert!(text(&line).ends_with(" ... (64512 more bytes)"), "{}", text(&line[line.len() - 40..]));
}

#[test]
fn every_client_handed_to_the_waiting_room_is_answered_promptly() {
    // Clients that send 3 ms after connecting are handed to the room;
    // many at once, so that hand-overs race the room's own turns.
    let server = Server::start(&["--quiet"]);
    let addr = server.v4();
    let clients: Vec<_> = (0..16)
        .map(|_| {
            thread::spawn(move || {
                let mut slowest = Duration::ZERO;
                for _ in 0..200 {
                    let mut conn = connect(addr);
                    conn.set_read_timeout(Some(Duration::from_secs(2))).expect("a timeout");
                    thread::sleep(Duration::from_millis(3));
                    let sent = Instant::now();
                    conn.write_all(b"hola\n").expect("sends");
                    let mut reply = Vec::new();
                    let read = conn.read_to_end(&mut reply);
                    assert!(read.is_ok(), "no reply within 2 s: {read:?}");
                    assert_received(&reply, 4);
                    slowest = slowest.max(sent.elapsed());
                }
                slowest
            })
        })
        .collect();
    let slowest = clients.into_iter().map(|c| c.join().expect("a client")).max();
    println!("3200 clients sending 3 ms after connect: the slowest reply {slowest:?}");
}
