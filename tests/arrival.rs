//! The reply's time is when the message reached the machine (the kernel's
//! receive timestamp), not when serv6 got round to reading it: tested by
//! stopping the real serv6 (SIGSTOP) while the client sends.

use crate::harness::*;
use std::io::Write;
use std::time::{Duration, SystemTime};

/// How far the reply's time may be from the client's send time.
const CLOSE: Duration = Duration::from_millis(2);

/// Stops `server` and waits until the kernel says it is stopped.
fn stop(server: &Server) {
    server.signal("STOP");
    assert!(eventually(PATIENCE, || proc::is_stopped(server.pid())), "serv6 did not stop");
}

/// How far apart two wall-clock times are, whichever comes first.
fn apart(a: SystemTime, b: SystemTime) -> Duration {
    a.duration_since(b).or_else(|_| b.duration_since(a)).unwrap_or_default()
}

#[test]
fn a_message_sent_while_serv6_is_stopped_is_stamped_when_it_arrived() {
    if linux_only("the kernel's arrival stamp") {
        return;
    }
    let server = Server::start(&[]);
    stop(&server);
    let mut conn = connect(server.v4());
    let sent = SystemTime::now();
    conn.write_all(b"hola\n").expect("sends");
    // The scenario itself: serv6 stays stopped for 300 ms.
    std::thread::sleep(Duration::from_millis(300));
    server.signal("CONT");
    let at = assert_received(&read_to_end(&mut conn), 4).to_system_time();
    let off = apart(at, sent);
    println!("stopped 300 ms: the reply's time is {off:?} from the send");
    assert!(off < CLOSE, "the reply says {off:?} after the send");
    // The log line carries the same time as the reply.
    let line = server.log_line();
    let logged = String::from_utf8_lossy(&line);
    let logged = logged.split(' ').next().expect("a time first");
    assert_eq!(Timestamp::parse(logged).map(Timestamp::to_system_time), Some(at));
}

#[test]
fn bytes_that_came_within_the_pause_while_serv6_was_stopped_are_not_cut_off() {
    if linux_only("the kernel's arrival stamp") {
        return;
    }
    let server = Server::start(&[]);
    let mut conn = connect(server.v4());
    conn.write_all(b"ho").expect("sends");
    stop(&server);
    // The scenario: `la` and the LF 100 ms later, inside the 200 ms
    // pause, with serv6 stopped for 350 ms in all.
    std::thread::sleep(Duration::from_millis(100));
    let sent = SystemTime::now();
    conn.write_all(b"la\n").expect("sends");
    std::thread::sleep(Duration::from_millis(250));
    server.signal("CONT");
    let at = assert_received(&read_to_end(&mut conn), 4).to_system_time();
    let off = apart(at, sent);
    println!("`la` sent while stopped: received 4 bytes, stamped {off:?} from its send");
    assert!(off < CLOSE, "the reply says {off:?} from the send of `la`");
}
