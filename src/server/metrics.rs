//! `--metrics ADDR:PORT`: what serv6 is doing, for Prometheus, in its text
//! exposition format (version 0.0.4). Every figure is in [`FIGURES`], once:
//! its name, type, help, and where its value comes from; the manual's list
//! is made from it, and a test holds docs/OPERATIONS.md's table to it.
//!
//! A thread accepts, and each request is read by a thread of its own: it
//! must be whole within [`REQUEST_LIMIT`] bytes and [`TIME_LIMIT`] of its
//! connection, and at most [`CONNECTIONS`] are held, the oldest closed to
//! make room, so that no client can hold up another's scrape. `GET
//! /metrics` gets the figures, `HEAD` their headers, other methods a 405,
//! other paths a 404. The exchanges never wait on any of it.

use super::stats::{Ended, BOUNDS, STATS};
use crate::output::{self, LogCounts};
use crate::platform::is_out_of_descriptors;
use crate::protocol::Service;
use crate::sync;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The longest request head read; past it the request is refused.
const REQUEST_LIMIT: usize = 8 * 1024;
/// How long a request may take from its connection to its blank line.
const TIME_LIMIT: Duration = Duration::from_secs(2);
/// Requests held at once, at most.
pub(crate) const CONNECTIONS: usize = 64;
/// The Prometheus text format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the figures are read from besides the counters.
struct Context {
    max_conns: usize,
    started: SystemTime,
    log: LogCounts,
    stderr_dropped: u64,
}

/// One figure: its name, type and help, and the function that writes its
/// samples under `name`.
struct Figure {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: fn(&mut String, &str, &Context),
}

/// `name value`.
fn one(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{name} {value}");
}

/// Every figure, in the order a scrape gives them.
#[rustfmt::skip]
const FIGURES: [Figure; 15] = [
    Figure { name: "serv6_exchanges_total", kind: "counter", help: "Exchanges answered, by service.",
        samples: |out, name, _| for (service, label) in Service::ALL {
            let _ = writeln!(out, "{name}{{service=\"{label}\"}} {}", STATS.served_as(service));
        } },
    Figure { name: "serv6_refusals_total", kind: "counter", help: "Connections told 'error: ...', by reason.",
        samples: |out, name, _| for how in Ended::ALL.into_iter().filter(|e| e.counter().refusal) {
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {}", how.counter().label, STATS.count(how));
        } },
    Figure { name: "serv6_connections_failed_total", kind: "counter",
        help: "Connections that failed (reset, say) before they could be answered.",
        samples: |out, name, _| one(out, name, STATS.count(Ended::Failed)) },
    Figure { name: "serv6_replies_lost_total", kind: "counter",
        help: "Replies that could not be sent (the client reset, say); their exchanges are logged and counted.",
        samples: |out, name, _| one(out, name, STATS.replies_lost()) },
    Figure { name: "serv6_health_checks_total", kind: "counter",
        help: "A balancer's own connections (PROXY protocol), counted apart.",
        samples: |out, name, _| one(out, name, STATS.count(Ended::HealthCheck)) },
    Figure { name: "serv6_connections_held", kind: "gauge",
        help: "Client connections serv6 holds, from accept to close: being read, waiting for their message, or closing.",
        samples: |out, name, _| one(out, name, STATS.held()) },
    Figure { name: "serv6_connections_max", kind: "gauge",
        help: "The most client connections held at once (--max-conns, or what the limits allow).",
        samples: |out, name, c| one(out, name, c.max_conns) },
    Figure { name: "serv6_log_lines_written_total", kind: "counter", help: "Exchange lines written to standard output.",
        samples: |out, name, c| one(out, name, c.log.written) },
    Figure { name: "serv6_log_lines_queued", kind: "gauge", help: "Exchange lines waiting for a slow standard output.",
        samples: |out, name, c| one(out, name, c.log.queued) },
    Figure { name: "serv6_log_lines_dropped_total", kind: "counter",
        help: "Exchange lines dropped while standard output was stalled and its queue full.",
        samples: |out, name, c| one(out, name, c.log.dropped) },
    Figure { name: "serv6_log_lines_not_written_total", kind: "counter",
        help: "Exchange lines not written (a full disk, a size limit, a reader gone, no memory, still queued at exit).",
        samples: |out, name, c| one(out, name, c.log.not_written) },
    Figure { name: "serv6_error_lines_dropped_total", kind: "counter", help: "Lines dropped while standard error was stalled.",
        samples: |out, name, c| one(out, name, c.stderr_dropped) },
    Figure { name: "serv6_reply_latency_seconds", kind: "histogram",
        help: "serv6's own delay: from the moment the rules ended a message (its LF or EOF arrived, or its pause ran out) to its reply written.",
        samples: latency },
    Figure { name: "serv6_build_info", kind: "gauge", help: "The version that is running.",
        samples: |out, name, _| { let _ = writeln!(out, "{name}{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")); } },
    Figure { name: "process_start_time_seconds", kind: "gauge", help: "When serv6 started, in seconds since the Unix epoch.",
        samples: |out, name, c| one(out, name, c.started.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()) },
];

fn latency(out: &mut String, name: &str, _: &Context) {
    let (cumulative, sum) = STATS.latency();
    let bounds = BOUNDS.iter().map(ToString::to_string).chain(["+Inf".into()]);
    for (bound, count) in bounds.zip(&cumulative) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {}", cumulative.last().unwrap_or(&0));
}

/// Every figure's name, type and help, one per line: the manual's list.
pub(crate) fn listed() -> String {
    FIGURES.iter().map(|f| format!("{} ({}): {}\n\n", f.name, f.kind, f.help)).collect()
}

/// Every figure, in the exposition format.
fn render(max_conns: usize, started: SystemTime) -> String {
    let (log, stderr_dropped) = (output::log_counts(), output::stderr_dropped());
    let context = Context { max_conns, started, log, stderr_dropped };
    let mut out = String::with_capacity(4096);
    for &Figure { name, kind, help, samples } in &FIGURES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        samples(&mut out, name, &context);
    }
    out
}

/// Starts the thread that serves `listener` (`listen::bind_metrics` binds
/// it); returns its address. `max_conns` is the most connections serv6
/// holds, a figure of its own.
pub(crate) fn start(listener: TcpListener, max_conns: usize) -> io::Result<SocketAddr> {
    let bound = listener.local_addr()?;
    let started = SystemTime::now();
    let accepting = move || accept(&listener, max_conns, started);
    sync::spawn("serv6-metrics", sync::HELPER_STACK, accepting)?;
    Ok(bound)
}

/// Accepts each connection and gives it a thread, closing the oldest held
/// when [`CONNECTIONS`] are.
fn accept(listener: &TcpListener, max_conns: usize, started: SystemTime) {
    let held: Arc<Mutex<VecDeque<(u64, TcpStream)>>> = Arc::default();
    for token in 0.. {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            // Out of descriptors: the oldest request gives one up.
            Err(e) if is_out_of_descriptors(&e) && close_oldest(&mut sync::lock(&held)) => continue,
            Err(_) => {
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let Ok(handle) = stream.try_clone() else { continue };
        let mut list = sync::lock(&held);
        if list.len() == CONNECTIONS {
            close_oldest(&mut list);
        }
        list.push_back((token, handle));
        drop(list);
        let list = Arc::clone(&held);
        let spawned = thread::Builder::new().stack_size(sync::HELPER_STACK).spawn(move || {
            respond(&stream, max_conns, started);
            sync::lock(&list).retain(|(t, _)| *t != token);
        });
        if spawned.is_err() {
            sync::lock(&held).retain(|(t, _)| *t != token);
        }
    }
}

/// Closes the oldest request `held`; false if there is none.
fn close_oldest(held: &mut VecDeque<(u64, TcpStream)>) -> bool {
    let Some((_, oldest)) = held.pop_front() else { return false };
    let _ = oldest.shutdown(Shutdown::Both);
    true
}

/// Reads a request and replies once its head is whole, or wrong, or time
/// is up; then closes.
fn respond(mut stream: &TcpStream, max_conns: usize, started: SystemTime) {
    let until = Instant::now() + TIME_LIMIT;
    let (mut head, mut chunk) = (Vec::new(), [0u8; 1024]);
    let reply = loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if sync::is_interrupted(&e) => continue,
            Err(_) => return,
        }
        if head.len() > REQUEST_LIMIT {
            break response("400 Bad Request", "request too long\n", true);
        }
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break answer(&head, max_conns, started);
        }
    };
    let _ = stream.write_all(reply.as_bytes());
}

/// The reply to a whole request head.
fn answer(head: &[u8], max_conns: usize, started: SystemTime) -> String {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (method, path) = (words.next().unwrap_or_default(), words.next());
    // A query string changes nothing: Prometheus may send one.
    let path = path.and_then(|p| p.split(|&b| b == b'?').next());
    let known = path == Some(b"/metrics");
    let head_only = method == b"HEAD";
    match method {
        b"GET" | b"HEAD" if known => response("200 OK", &render(max_conns, started), head_only),
        b"GET" | b"HEAD" => response("404 Not Found", "only /metrics is here\n", head_only),
        _ if path.is_some() => response("405 Method Not Allowed", "GET or HEAD only\n", false),
        _ => response("400 Bad Request", "bad request\n", false),
    }
}

/// The whole response: a 200 carries the figures, any other a line of
/// text, a 405 what is allowed. `head_only` leaves out the body, not its
/// length.
fn response(status: &str, body: &str, head_only: bool) -> String {
    let content_type = if status == "200 OK" { CONTENT_TYPE } else { "text/plain" };
    let allow = if status.starts_with("405") { "Allow: GET, HEAD\r\n" } else { "" };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n{allow}\r\n{}",
        body.len(),
        if head_only { "" } else { body }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_md_lists_every_figure_with_its_help() {
        let doc = include_str!("../../docs/OPERATIONS.md");
        for figure in &FIGURES {
            let row = doc.lines().find(|l| l.starts_with(&format!("| `{}", figure.name)));
            let row = row.unwrap_or_else(|| panic!("OPERATIONS.md has no row for {}", figure.name));
            assert!(row.contains(&format!("| {} |", figure.kind)), "{row}");
        }
        let rows =
            doc.lines().filter(|l| l.starts_with("| `serv6_") || l.starts_with("| `process_"));
        assert_eq!(rows.count(), FIGURES.len(), "a row in OPERATIONS.md for a figure serv6 lacks");
    }

    #[test]
    fn a_scrape_has_every_figure_once() {
        let text = render(7, SystemTime::now());
        for figure in &FIGURES {
            let help = format!("# HELP {} {}\n", figure.name, figure.help);
            assert_eq!(text.matches(&help).count(), 1, "{}", figure.name);
        }
        assert!(text.contains("serv6_connections_max 7\n"), "{text}");
    }
}
