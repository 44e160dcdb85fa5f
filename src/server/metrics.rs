//! `--metrics ADDR:PORT`: what serv6 is doing, for Prometheus, in its text
//! exposition format (version 0.0.4).
//!
//! One thread serves one request at a time: `GET /metrics` gets the
//! figures, anything else a 404. A request may take at most [`READ_LIMIT`]
//! and [`REQUEST_LIMIT`] bytes, so a client that never finishes, or sends
//! garbage, holds only this thread and only briefly: the exchanges never
//! wait on it. The counters are the ones the summary prints.

use super::errors::Kind;
use super::exchange::Service;
use super::histogram::{self, Snapshot};
use super::room::Room;
use crate::diag;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest request head read; past it the request is refused.
const REQUEST_LIMIT: usize = 8 * 1024;
/// How long a request may take to arrive, and its answer to be taken.
const READ_LIMIT: Duration = Duration::from_secs(2);
/// The Prometheus text format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the figures are read from.
pub(crate) struct Sources {
    pub service: Arc<Service>,
    pub room: Option<Arc<Room>>,
    /// The most connections held at once.
    pub max_conns: usize,
    pub started: SystemTime,
}

/// Binds `addr` and starts the thread that serves it; returns the address
/// bound (with the real port when `addr` gave 0).
///
/// # Errors
///
/// Binding, or starting the thread.
pub(crate) fn start(addr: SocketAddr, sources: Sources) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    thread::Builder::new()
        .name("serv6-metrics".into())
        .stack_size(256 * 1024)
        .spawn(move || serve(&listener, &sources))?;
    Ok(bound)
}

fn serve(listener: &TcpListener, sources: &Sources) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => answer(&stream, sources),
            Err(e) if crate::platform::is_out_of_descriptors(&e) => {
                thread::sleep(Duration::from_millis(100));
            }
            Err(_) => {}
        }
    }
}

/// Reads one request head and answers it, within the limits.
fn answer(stream: &TcpStream, sources: &Sources) {
    if stream.set_read_timeout(Some(READ_LIMIT)).is_err()
        || stream.set_write_timeout(Some(READ_LIMIT)).is_err()
    {
        return;
    }
    let reply = match read_head(stream) {
        Some(head) if is_metrics_get(&head) => response("200 OK", CONTENT_TYPE, &render(sources)),
        Some(_) => response("404 Not Found", "text/plain", "only GET /metrics is here\n"),
        None => response("400 Bad Request", "text/plain", "bad request\n"),
    };
    let _ = (&*stream).write_all(reply.as_bytes());
}

/// The request head up to its blank line, if it comes whole in time.
fn read_head(stream: &TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = (&*stream).read(&mut chunk).ok().filter(|&n| n > 0)?;
        head.extend_from_slice(&chunk[..n]);
        if head.len() > REQUEST_LIMIT {
            return None;
        }
    }
    Some(head)
}

fn is_metrics_get(head: &[u8]) -> bool {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (method, path) = (words.next(), words.next());
    method == Some(b"GET") && matches!(path, Some(b"/metrics" | b"/metrics?"))
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Appends one metric's `# HELP` and `# TYPE` lines.
fn describe(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    describe(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Every figure, in the exposition format.
pub(crate) fn render(sources: &Sources) -> String {
    let mut out = String::with_capacity(4096);
    let service = &sources.service;
    let stats = &service.stats;
    single(
        &mut out,
        "serv6_exchanges_total",
        "counter",
        "Exchanges answered with the time their message arrived.",
        stats.served.load(Relaxed),
    );
    render_refusals(&mut out, sources);
    single(
        &mut out,
        "serv6_health_checks_total",
        "counter",
        "A balancer's own connections (PROXY protocol), counted apart.",
        stats.checks.load(Relaxed),
    );
    render_connections(&mut out, sources);
    render_log(&mut out, service);
    render_latency(&mut out, &stats.reply_latency.snapshot());
    describe(
        &mut out,
        "serv6_build_info",
        "gauge",
        "The version that is running.",
    );
    let _ = writeln!(
        out,
        "serv6_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let started = sources
        .started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    single(
        &mut out,
        "process_start_time_seconds",
        "gauge",
        "When serv6 started, in seconds since the Unix epoch.",
        started.as_secs_f64(),
    );
    out
}

fn render_refusals(out: &mut String, sources: &Sources) {
    let service = &sources.service;
    describe(
        out,
        "serv6_refusals_total",
        "counter",
        "Connections told 'error: ...', by reason.",
    );
    let mut failed = 0;
    for (kind, count) in service.errors().totals() {
        match kind {
            Kind::Failed => {
                failed = count;
                continue;
            }
            // Not a refusal: the server's own trouble, shown on stderr.
            Kind::Trouble => continue,
            _ => {}
        }
        let _ = writeln!(
            out,
            "serv6_refusals_total{{reason=\"{}\"}} {count}",
            kind.label()
        );
    }
    let shutting_down = service.stats.told_shutting_down.load(Relaxed);
    let _ = writeln!(
        out,
        "serv6_refusals_total{{reason=\"shutting_down\"}} {shutting_down}"
    );
    single(
        out,
        "serv6_connections_failed_total",
        "counter",
        "Connections that failed (reset, say) before they could be answered.",
        failed,
    );
}

fn render_connections(out: &mut String, sources: &Sources) {
    single(
        out,
        "serv6_connections_in_progress",
        "gauge",
        "Connections accepted and not yet answered.",
        (sources.service.in_progress())(),
    );
    single(
        out,
        "serv6_connections_held",
        "gauge",
        "Connections the waiting room holds: waiting for their message, or closing.",
        sources.room.as_ref().map_or(0, |room| room.held()),
    );
    single(
        out,
        "serv6_connections_max",
        "gauge",
        "The most connections waiting at once (--max-conns, or what the limits allow).",
        sources.max_conns,
    );
}

fn render_log(out: &mut String, service: &Service) {
    let log = service.log();
    let (written, waiting) = log.written_and_waiting();
    single(
        out,
        "serv6_log_lines_written_total",
        "counter",
        "Exchange lines written to standard output.",
        written,
    );
    single(
        out,
        "serv6_log_lines_queued",
        "gauge",
        "Exchange lines waiting for a slow standard output.",
        waiting,
    );
    single(
        out,
        "serv6_log_lines_dropped_total",
        "counter",
        "Exchange lines dropped while standard output was stalled and its queue full.",
        log.dropped(),
    );
    single(
        out,
        "serv6_log_lines_not_written_total",
        "counter",
        "Exchange lines a write failed to take (a full disk, a size limit, a reader gone).",
        log.not_written().0,
    );
    single(
        out,
        "serv6_error_lines_dropped_total",
        "counter",
        "Lines dropped while standard error was stalled.",
        diag::dropped(),
    );
}

fn render_latency(out: &mut String, snapshot: &Snapshot) {
    let name = "serv6_reply_latency_seconds";
    describe(
        out,
        name,
        "histogram",
        "From the message's arrival (the kernel's stamp) to its reply written.",
    );
    for (bound, count) in histogram::BOUNDS.iter().zip(&snapshot.cumulative) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let total = snapshot.cumulative.last().copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum {}", snapshot.sum_seconds);
    let _ = writeln!(out, "{name}_count {}", snapshot.count);
}
