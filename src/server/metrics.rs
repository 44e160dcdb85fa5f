//! `--metrics ADDR:PORT`: what serv6 is doing, for Prometheus, in its text
//! exposition format (version 0.0.4). The counters are the ones the
//! summary prints.
//!
//! One thread holds every request at once with `epoll`, so that no client
//! can hold up another's scrape: each request must be whole within
//! [`REQUEST_LIMIT`] bytes and [`TIME_LIMIT`] of its connection, and at
//! most [`CONNECTIONS`] are held, the oldest closed to make room. `GET
//! /metrics` gets the figures, `HEAD` their headers, other methods a 405,
//! other paths a 404. The exchanges never wait on any of it.

use super::framing::End;
use super::stats::{BOUNDS, STATS};
use crate::output;
use crate::platform::Poller;
use crate::protocol::Service;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The longest request head read; past it the request is refused.
const REQUEST_LIMIT: usize = 8 * 1024;
/// How long a request may take from its connection to its blank line.
const TIME_LIMIT: Duration = Duration::from_secs(2);
/// Requests held at once, at most.
const CONNECTIONS: usize = 64;
/// Connections accepted between two looks at the requests held, so that a
/// request that has come is read before a crowd can push it out.
const ACCEPTS_PER_WAKE: usize = 16;
/// The listener's token; connections count from 1.
const LISTENER: u64 = 0;
/// The Prometheus text format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Starts the thread that serves `listener` (`listen::bind_metrics` binds
/// it); returns its address. `max_conns` is the most connections serv6
/// holds, a figure of its own.
pub(crate) fn start(listener: TcpListener, max_conns: usize) -> io::Result<SocketAddr> {
    let bound = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let mut poller = Poller::new(CONNECTIONS)?;
    poller.add(&listener, LISTENER)?;
    let started = SystemTime::now();
    thread::Builder::new()
        .name("serv6-metrics".into())
        .stack_size(256 * 1024)
        .spawn(move || serve(&listener, &mut poller, (max_conns, started)))?;
    Ok(bound)
}

/// A request being read.
struct Request {
    token: u64,
    stream: TcpStream,
    head: Vec<u8>,
    until: Instant,
}

fn serve(listener: &TcpListener, poller: &mut Poller, figures: (usize, SystemTime)) {
    let (mut held, mut ready, mut next) = (VecDeque::<Request>::new(), Vec::new(), LISTENER + 1);
    loop {
        let first = held.front().map(|r| r.until.saturating_duration_since(Instant::now()));
        if poller.wait(first, &mut ready).is_err() {
            thread::sleep(Duration::from_millis(100));
        }
        // Requests first: a crowd of new connections must not push out
        // one whose request has come.
        for &token in ready.iter().filter(|&&token| token != LISTENER) {
            if let Some(at) = held.iter().position(|r| r.token == token) {
                if respond(&mut held[at], figures) {
                    held.remove(at);
                }
            }
        }
        if ready.contains(&LISTENER) {
            for _ in 0..ACCEPTS_PER_WAKE {
                let Some(stream) = accept(listener, &mut held, figures) else { break };
                if stream.set_nonblocking(true).is_ok() && poller.add(&stream, next).is_ok() {
                    let until = Instant::now() + TIME_LIMIT;
                    held.push_back(Request { token: next, stream, head: Vec::new(), until });
                    next += 1;
                }
            }
        }
        // Those out of time are closed, with nothing said.
        while held.front().is_some_and(|r| r.until <= Instant::now()) {
            held.pop_front();
        }
    }
}

/// The next connection, room made for it: the oldest request makes way,
/// answered if it has come; `None` when none is waiting.
fn accept(
    listener: &TcpListener,
    held: &mut VecDeque<Request>,
    figures: (usize, SystemTime),
) -> Option<TcpStream> {
    let stream = match listener.accept() {
        Ok((stream, _)) => stream,
        // Out of descriptors: the oldest request gives one up.
        Err(e) if crate::platform::is_out_of_descriptors(&e) => {
            if held.pop_front().is_none() {
                thread::sleep(Duration::from_millis(100));
            }
            return None;
        }
        Err(_) => return None,
    };
    if held.len() == CONNECTIONS {
        if let Some(mut oldest) = held.pop_front() {
            respond(&mut oldest, figures);
        }
    }
    Some(stream)
}

/// Reads what `request` has sent and replies once its head is whole, or
/// wrong, or the connection is done with; true if it is done with.
fn respond(request: &mut Request, figures: (usize, SystemTime)) -> bool {
    let Some(reply) = read(request, figures) else { return false };
    let _ = (&request.stream).write_all(reply.as_bytes());
    true
}

/// Reads what `request` has sent; its reply once its head is whole, or
/// wrong, or the connection is done with.
fn read(request: &mut Request, figures: (usize, SystemTime)) -> Option<String> {
    let mut chunk = [0u8; 1024];
    loop {
        match (&request.stream).read(&mut chunk) {
            Ok(0) => return Some(String::new()),
            Ok(n) => request.head.extend_from_slice(&chunk[..n]),
            Err(e) if crate::sync::is_interrupted(&e) => continue,
            Err(e) if crate::sync::is_timeout(&e) => return None,
            Err(_) => return Some(String::new()),
        }
        let head = &request.head;
        if head.len() > REQUEST_LIMIT {
            return Some(response("400 Bad Request", "request too long\n", true));
        }
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Some(answer(head, figures));
        }
    }
}

/// The reply to a whole request head.
fn answer(head: &[u8], figures: (usize, SystemTime)) -> String {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (method, path) = (words.next().unwrap_or_default(), words.next());
    // A query string changes nothing: Prometheus may send one.
    let path = path.and_then(|p| p.split(|&b| b == b'?').next());
    let known = path == Some(b"/metrics");
    let head_only = method == b"HEAD";
    match method {
        b"GET" | b"HEAD" if known => {
            response_of("200 OK", CONTENT_TYPE, &render(figures), head_only)
        }
        b"GET" | b"HEAD" => response("404 Not Found", "only /metrics is here\n", head_only),
        _ if path.is_some() => response("405 Method Not Allowed", "GET or HEAD only\n", false)
            .replacen("\r\n\r\n", "\r\nAllow: GET, HEAD\r\n\r\n", 1),
        _ => response("400 Bad Request", "bad request\n", false),
    }
}

fn response(status: &str, body: &str, head_only: bool) -> String {
    response_of(status, "text/plain", body, head_only)
}

fn response_of(status: &str, content_type: &str, body: &str, head_only: bool) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{}",
        body.len(),
        if head_only { "" } else { body }
    )
}

/// Each single figure's name, type and help, in the order [`render`]
/// gives their values.
const FIGURES: [&str; 12] = [
    "serv6_connections_failed_total counter Connections that failed (reset, say) before they could be answered.",
    "serv6_replies_lost_total counter Replies that could not be sent (the client reset, say); their exchanges are logged and counted.",
    "serv6_health_checks_total counter A balancer's own connections (PROXY protocol), counted apart.",
    "serv6_connections_in_progress gauge Connections accepted and not yet answered.",
    "serv6_connections_held gauge Connections the waiting room holds: waiting for their message, or closing.",
    "serv6_connections_max gauge The most connections waiting at once (--max-conns, or what the limits allow).",
    "serv6_log_lines_written_total counter Exchange lines written to standard output.",
    "serv6_log_lines_queued gauge Exchange lines waiting for a slow standard output.",
    "serv6_log_lines_dropped_total counter Exchange lines dropped while standard output was stalled and its queue full.",
    "serv6_log_lines_not_written_total counter Exchange lines not written (a full disk, a size limit, a reader gone, the exit).",
    "serv6_error_lines_dropped_total counter Lines dropped while standard error was stalled.",
    "process_start_time_seconds gauge When serv6 started, in seconds since the Unix epoch.",
];

/// Appends a figure's `# HELP` and `# TYPE` lines, from its description.
fn describe(out: &mut String, figure: &str) -> String {
    let (name, rest) = figure.split_once(' ').unwrap_or_default();
    let (kind, help) = rest.split_once(' ').unwrap_or_default();
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    name.to_owned()
}

/// Every figure, in the exposition format.
fn render((max_conns, started): (usize, SystemTime)) -> String {
    let mut out = String::with_capacity(4096);
    describe(&mut out, "serv6_exchanges_total counter Exchanges answered, by service.");
    for (service, name) in Service::ALL {
        let n = STATS.served_as(service);
        let _ = writeln!(out, "serv6_exchanges_total{{service=\"{name}\"}} {n}");
    }
    describe(&mut out, "serv6_refusals_total counter Connections told 'error: ...', by reason.");
    for (slot, (reason, ..)) in End::COUNTERS.iter().enumerate().filter(|(_, c)| c.4) {
        let n = STATS.count(slot);
        let _ = writeln!(out, "serv6_refusals_total{{reason=\"{reason}\"}} {n}");
    }
    let (written, queued, dropped, not_written, _) = output::log_counts();
    let start = started.duration_since(UNIX_EPOCH).unwrap_or_default();
    let values: [String; FIGURES.len()] = [
        STATS.count(End::slot_of("failed")).to_string(),
        STATS.replies_lost().to_string(),
        STATS.count(End::slot_of("health_check")).to_string(),
        STATS.in_progress().to_string(),
        STATS.held.load(Relaxed).to_string(),
        max_conns.to_string(),
        written.to_string(),
        queued.to_string(),
        dropped.to_string(),
        not_written.to_string(),
        output::stderr_dropped().to_string(),
        start.as_secs_f64().to_string(),
    ];
    for (figure, value) in FIGURES.iter().zip(values) {
        let name = describe(&mut out, figure);
        let _ = writeln!(out, "{name} {value}");
    }
    let name = describe(&mut out, "serv6_reply_latency_seconds histogram From the message's arrival (the kernel's stamp) to its reply written.");
    let (cumulative, sum) = STATS.latency();
    let total = cumulative.last().copied().unwrap_or(0);
    let bounds = BOUNDS.iter().map(ToString::to_string).chain(["+Inf".into()]);
    for (bound, count) in bounds.zip(&cumulative) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    describe(&mut out, "serv6_build_info gauge The version that is running.");
    let _ = writeln!(out, "serv6_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    out
}
