//! `--metrics ADDR:PORT`: what serv6 is doing, for Prometheus, in its text
//! exposition format (version 0.0.4).
//!
//! One thread serves one request at a time: `GET /metrics` gets the
//! figures, anything else a 404. A request may take at most [`READ_LIMIT`]
//! and [`REQUEST_LIMIT`] bytes, so a client that never finishes, or sends
//! garbage, holds only this thread and only briefly: the exchanges never
//! wait on it. The counters are the ones the summary prints.

use super::framing::End;
use super::stats::{BOUNDS, STATS};
use crate::output;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest request head read; past it the request is refused.
const REQUEST_LIMIT: usize = 8 * 1024;
/// How long a request may take to arrive, and its answer to be taken.
const READ_LIMIT: Duration = Duration::from_secs(2);
/// The Prometheus text format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds `addr` and starts the thread that serves it; returns the address
/// bound (with the real port when `addr` gave 0).
///
/// # Errors
///
/// Binding, or starting the thread.
pub(crate) fn start(addr: SocketAddr, max_conns: usize) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let sources = Sources {
        max_conns,
        started: SystemTime::now(),
    };
    thread::Builder::new()
        .name("serv6-metrics".into())
        .stack_size(256 * 1024)
        .spawn(move || serve(&listener, &sources))?;
    Ok(bound)
}

/// What the figures are read from besides the counters.
struct Sources {
    /// The most connections waiting at once.
    max_conns: usize,
    started: SystemTime,
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
fn render(sources: &Sources) -> String {
    let mut out = String::with_capacity(4096);
    let count = |label: &str| {
        let slot = End::LABELS.iter().position(|l| *l == label).unwrap_or(0);
        STATS.count(slot)
    };
    single(
        &mut out,
        "serv6_exchanges_total",
        "counter",
        "Exchanges answered with the time their message arrived.",
        count("served"),
    );
    describe(
        &mut out,
        "serv6_refusals_total",
        "counter",
        "Connections told 'error: ...', by reason.",
    );
    for reason in [
        "too_long",
        "deadline",
        "proxy",
        "clock",
        "busy",
        "shutting_down",
    ] {
        let n = count(reason);
        let _ = writeln!(out, "serv6_refusals_total{{reason=\"{reason}\"}} {n}");
    }
    single(
        &mut out,
        "serv6_connections_failed_total",
        "counter",
        "Connections that failed (reset, say) before they could be answered.",
        count("failed"),
    );
    single(
        &mut out,
        "serv6_health_checks_total",
        "counter",
        "A balancer's own connections (PROXY protocol), counted apart.",
        count("health_check"),
    );
    render_connections(&mut out, sources);
    render_log(&mut out);
    render_latency(&mut out);
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

fn render_connections(out: &mut String, sources: &Sources) {
    single(
        out,
        "serv6_connections_in_progress",
        "gauge",
        "Connections accepted and not yet answered.",
        STATS.in_progress(),
    );
    single(
        out,
        "serv6_connections_held",
        "gauge",
        "Connections the waiting room holds: waiting for their message, or closing.",
        STATS.held.load(Relaxed),
    );
    single(
        out,
        "serv6_connections_max",
        "gauge",
        "The most connections waiting at once (--max-conns, or what the limits allow).",
        sources.max_conns,
    );
}

fn render_log(out: &mut String) {
    let log = output::log_counts();
    single(
        out,
        "serv6_log_lines_written_total",
        "counter",
        "Exchange lines written to standard output.",
        log.written,
    );
    single(
        out,
        "serv6_log_lines_queued",
        "gauge",
        "Exchange lines waiting for a slow standard output.",
        log.queued,
    );
    single(
        out,
        "serv6_log_lines_dropped_total",
        "counter",
        "Exchange lines dropped while standard output was stalled and its queue full.",
        log.dropped,
    );
    single(
        out,
        "serv6_log_lines_not_written_total",
        "counter",
        "Exchange lines a write failed to take (a full disk, a size limit, a reader gone).",
        log.not_written,
    );
    single(
        out,
        "serv6_error_lines_dropped_total",
        "counter",
        "Lines dropped while standard error was stalled.",
        output::stderr_dropped(),
    );
}

fn render_latency(out: &mut String) {
    let name = "serv6_reply_latency_seconds";
    describe(
        out,
        name,
        "histogram",
        "From the message's arrival (the kernel's stamp) to its reply written.",
    );
    let (cumulative, sum) = STATS.latency();
    for (bound, count) in BOUNDS.iter().zip(&cumulative) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let total = cumulative.last().copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {total}");
}
