//! serv6: the server. [`main`] is the whole program; `src/bin/serv6.rs`
//! only calls it. It reads the options, listens, starts the workers and
//! the waiting room ([`exchange`]), tells systemd it is ready, and waits for
//! a signal to stop.

mod capacity;
mod exchange;
mod framing;
mod listen;
mod metrics;
mod notify;
mod options;
mod proxy;
mod report;
mod stats;

use crate::cmdline::Status;
use crate::words::counted;
use crate::{output, platform, sync};
use exchange::room::Room;
use exchange::{Shared, Workers};
use options::{program, Command, Options};
use stats::STATS;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// glibc malloc arenas at most (see `platform::limit_malloc_arenas`).
const MALLOC_ARENAS: i32 = 1;
/// How long lines still queued for a stalled output may delay the exit.
const FLUSH_ON_EXIT: Duration = Duration::from_secs(1);
/// How soon the same stopping signal again is taken as a repeat delivery
/// rather than a second request: far quicker than a person presses Ctrl-C
/// twice, far slower than a group kill's two deliveries.
const SAME_REQUEST: Duration = Duration::from_millis(100);

/// Runs serv6 with `args` (without the program name) and returns its exit
/// status, as serv6's manual (`serv6.8.txt`) says what each means.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    output::set_program("serv6");
    let status = match run(args) {
        Ok(()) => Status::Success,
        Err(Stop { message, status }) => {
            output::say(format_args!("{message}"));
            status
        }
    };
    output::flush_stderr(FLUSH_ON_EXIT);
    status.into()
}

/// Why serv6 stops before serving: the line to print and the exit status.
struct Stop {
    message: String,
    status: Status,
}

impl Stop {
    /// The machine, not the command line, stops serv6: exit status 1.
    fn failure(message: impl std::fmt::Display) -> Stop {
        Stop { message: message.to_string(), status: Status::Failure }
    }

    fn usage(error: &dyn std::fmt::Display) -> Stop {
        Stop { message: program().usage_error(error), status: Status::Usage }
    }
}

fn run(args: impl IntoIterator<Item = OsString>) -> Result<(), Stop> {
    let options = match options::parse(args).map_err(|e| Stop::usage(&e))? {
        Command::Serve(options) => options,
        Command::Info(info) => return print(&program().info(info)),
    };
    // First, while few descriptors are open (off Linux it asks a shell).
    let files = platform::raise_open_file_limit();
    // Before any thread exists: it edits the environment.
    let passed = listen::passed_listeners().map_err(Stop::failure)?;
    // Before any thread exists, so that every thread inherits the mask,
    // and no thread has an arena of its own yet.
    let signals = platform::Signals::block()
        .ok_or_else(|| Stop::failure("cannot block the signals that stop serv6"))?;
    platform::limit_malloc_arenas(MALLOC_ARENAS);
    output::start();
    report::start();
    let first = wait_for_signals(signals, options.grace)
        .map_err(|e| Stop::failure(format!("cannot start the thread that takes signals: {e}")))?;
    STATS.start();
    let (workers, room) = start(&options, passed, files)?;
    notify::ready(&room);
    let signal = first.recv().map_err(|_| Stop::failure("no signal thread"))?;
    notify::stopping();
    workers.stop_accepting();
    say_stopping(signal, options.grace);
    // Workers finish within the slow-client verdict, handing what is
    // still incomplete to the room, which tells those left at `by`.
    let by = Instant::now() + options.grace;
    workers.wait_gone(by);
    room.finish(by);
    report::end_second();
    output::finish_log(FLUSH_ON_EXIT);
    output::say(format_args!("{}", STATS.summary("stopped after")));
    Ok(())
}

/// Says, once, that serv6 is stopping: after it stops accepting, or before
/// a second signal's line if that comes first.
fn say_stopping(signal: platform::Signal, grace: Duration) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        output::say(format_args!(
            "{signal} received: refusing new connections; exchanges in progress have {} s to finish",
            grace.as_secs_f64()
        ));
    });
}

/// Starts a thread that waits for signals: SIGUSR1 has it say how serv6 is
/// going; the first stopping signal is sent on the returned channel, and a
/// second one exits at once, saying how many connections that cuts. The
/// same signal again within [`SAME_REQUEST`] is the first one delivered
/// twice, as a kill of the process group does (`timeout serv6`, say).
fn wait_for_signals(
    signals: platform::Signals,
    grace: Duration,
) -> io::Result<mpsc::Receiver<platform::Signal>> {
    let (first, received) = mpsc::channel();
    sync::spawn("serv6-signals", sync::HELPER_STACK, move || {
        let mut stopping = None;
        loop {
            let signal = signals.wait();
            match stopping {
                _ if signal == platform::Signal::Report => {
                    output::say(format_args!("SIGUSR1: {}", STATS.summary("running for")));
                }
                None => {
                    stopping = Some((signal, Instant::now()));
                    let _ = first.send(signal);
                }
                // The first one, delivered twice.
                Some((s, at)) if s == signal && at.elapsed() < SAME_REQUEST => {}
                Some((s, _)) => {
                    let cut = counted(STATS.held() as u64, "connection", "connections");
                    say_stopping(s, grace);
                    let when = if s == signal { "again".into() } else { format!("after {s}") };
                    output::say(format_args!(
                        "{signal} received {when}: exiting now, cutting {cut} held"
                    ));
                    output::flush_stderr(FLUSH_ON_EXIT);
                    std::process::exit(Status::Failure.code().into());
                }
            }
        }
    })?;
    Ok(received)
}

/// Binds (or takes the sockets passed to it), starts the waiting room and
/// the workers, then says where it listens: once that line is out,
/// clients are served.
fn start(
    options: &Options,
    passed: Option<Vec<listen::Passed>>,
    files: Option<platform::OpenFiles>,
) -> Result<(Workers, Arc<Room>), Stop> {
    let (listeners, mut notes) = listeners(options, passed)?;
    let mut line = listen::listening_line(&listeners);
    let stamps = listeners.iter().find_map(|(l, _)| platform::stamp_arrivals(l).err());
    if let Some(e) = stamps.filter(supported) {
        notes.push(format!(
            "the kernel gives no arrival times here ({e}): replies are stamped when serv6 reads the message"
        ));
    }
    let machine = capacity::Machine::measure(files);
    let sizes = (options.rules.max_bytes, options.log_bytes);
    let capacity = capacity::plan(&machine, options.max_conns, sizes, listeners.len())
        .map_err(|e| Stop::failure(format!("cannot serve: {e}")))?;
    notes.extend(output::start_log(options.quiet, options.log_bytes));
    let room =
        Room::start().map_err(|e| Stop::failure(format!("cannot start the waiting room: {e}")))?;
    let limits = (options.rules, capacity.max_conns);
    let shared = Arc::new(Shared::new(limits, options.proxy_from.clone(), Arc::clone(&room)));
    let workers = Workers::start(listeners, capacity.workers_per_listener, shared)
        .map_err(|e| Stop::failure(format!("cannot start workers: {e}")))?;
    if let Some(endpoint) = &options.metrics {
        let service_port = options.port.unwrap_or(crate::protocol::DEFAULT_PORT);
        let listener = listen::bind_metrics(endpoint, service_port).map_err(Stop::failure)?;
        let at = metrics::start(listener, capacity.max_conns)
            .map_err(|e| Stop::failure(format!("cannot serve metrics: {e}")))?;
        let _ = write!(line, " (metrics: http://{at}/metrics)");
    }
    // First, so that a script may read where serv6 listens from line 1.
    output::say(format_args!("{line}"));
    for note in notes.iter().chain(&capacity.notes) {
        output::say(format_args!("{note}"));
    }
    Ok((workers, room))
}

/// The sockets to serve, each with its service, and notes for the
/// operator: bound as the options say, or passed by a service manager.
fn listeners(
    options: &Options,
    passed: Option<Vec<listen::Passed>>,
) -> Result<(listen::Serving, Vec<String>), Stop> {
    if let Some(passed) = passed {
        if !options.binds.is_empty() || options.port.is_some() {
            return Err(Stop::usage(
                &"'--bind' and '--port' do not go with sockets passed by a service \
                  manager (LISTEN_FDS): it chose the addresses",
            ));
        }
        let serving = passed.into_iter();
        return Ok((serving.map(|(l, s)| (l, s.unwrap_or(options.service))).collect(), Vec::new()));
    }
    let port = options.port.unwrap_or(crate::protocol::DEFAULT_PORT);
    let mut bound = match listen::bind_all(&options.binds, port) {
        Ok(bound) => bound,
        Err(e) if e.is_usage() => return Err(Stop::usage(&e)),
        Err(e) => return Err(Stop::failure(e)),
    };
    let backlog =
        bound.listeners.iter().find_map(|l| platform::set_backlog(l, options.backlog).err());
    if let Some(e) = backlog.filter(supported) {
        bound.notes.push(format!("the listen backlog stays at std's 128: {e}"));
    }
    let serving = bound.listeners.into_iter();
    Ok((serving.map(|l| (l, options.service)).collect(), bound.notes))
}

/// Whether `e` is a refusal rather than the platform's lack of the feature:
/// off Linux (Unsupported) the manual says so once and for all.
fn supported(e: &io::Error) -> bool {
    e.kind() != io::ErrorKind::Unsupported
}

fn print(text: &str) -> Result<(), Stop> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|e| Stop::failure(format!("cannot write standard output: {e}")))
}
