//! serv6: the server. [`main`] is the whole program; `src/bin/serv6.rs` only calls it.

mod activation;
mod capacity;
mod errors;
mod exchange;
mod histogram;
mod listen;
mod log;
mod metrics;
mod notify;
mod options;
mod pool;
mod proxy;
mod reading;
mod room;
mod worker;

use crate::exit::Status;
use crate::framing::Rules;
use crate::protocol::DEFAULT_PORT;
use crate::{diag, manpage, platform};
use exchange::Service;
use listen::Bound;
use log::Log;
pub(crate) use options::{program, MANUAL};
use options::{Command, Options};
use pool::Pool;
use room::Room;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use worker::Front;

/// glibc malloc arenas at most (see `platform::limit_malloc_arenas`).
const MALLOC_ARENAS: i32 = 1;
/// How long lines still queued for a stalled output may delay the exit.
const FLUSH_ON_EXIT: Duration = Duration::from_secs(1);

/// Runs serv6 with `args` (without the program name) and returns its exit
/// status, as `options::EXIT` says what each means.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let status = run(args);
    // Standard error may be a file written by a helper thread: what it
    // still holds must reach it before the process ends.
    diag::flush(FLUSH_ON_EXIT);
    status
}

fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    diag::set_program("serv6");
    let options = match options::parse(args) {
        Ok(Command::Serve(options)) => options,
        Ok(Command::Help) => return print_stdout(&options::program().help()),
        Ok(Command::Manual) => return print_stdout(&manpage::render(&program(), &MANUAL)),
        Ok(Command::Version) => return print_stdout(concat!("serv6 ", env!("CARGO_PKG_VERSION"))),
        Err(e) => {
            diag::say(format_args!("{}", options::program().usage_error(&e)));
            return Status::Usage.into();
        }
    };
    // Before any thread exists: it edits the environment.
    let passed = match activation::passed_listeners() {
        Ok(passed) => passed,
        Err(e) => {
            diag::say(format_args!("{e}"));
            return Status::Failure.into();
        }
    };
    // Before any thread exists, so that every thread inherits the mask,
    // and no thread has an arena of its own yet.
    let termination = platform::block_termination();
    platform::limit_malloc_arenas(MALLOC_ARENAS);
    diag::never_block();
    let running = match start(&options, passed) {
        Ok(running) => running,
        Err(StartError {
            message,
            status: Status::Usage,
        }) => {
            diag::say(format_args!("{}", options::program().usage_error(&message)));
            return Status::Usage.into();
        }
        Err(StartError { message, status }) => {
            diag::say(format_args!("{message}"));
            return status.into();
        }
    };
    running.tell_ready();
    let Some(termination) = termination else {
        // No signal handling here: SIGTERM ends the process the default way.
        loop {
            std::thread::park();
        }
    };
    let service = Arc::clone(&running.service);
    let report = move || {
        let so_far = service.stats.summary(
            "running for",
            service.log(),
            service.errors(),
            diag::dropped(),
        );
        diag::say(format_args!("SIGUSR1: {so_far}"));
    };
    let signal = wait_for_signals(&termination, running.service.in_progress(), report);
    running.shut_down(signal, options.grace);
    ExitCode::SUCCESS
}

/// A serving serv6: its workers, its waiting room and what they share.
struct Running {
    pool: Pool<Front>,
    room: Option<Arc<Room>>,
    service: Arc<Service>,
    notifier: Option<Arc<notify::Notifier>>,
}

impl Running {
    /// Tells the service manager, if any, that serv6 is ready, then keeps
    /// it told how serv6 is doing, and feeds its watchdog while the
    /// workers and the room are seen to move.
    fn tell_ready(&self) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        notifier.send("READY=1");
        let service = Arc::clone(&self.service);
        let room = self.room.clone();
        let status = {
            let room = room.clone();
            move || {
                let held = room.as_ref().map_or(0, |room| room.held());
                format!(
                    "{} served, {} in progress, {held} held",
                    service
                        .stats
                        .served
                        .load(std::sync::atomic::Ordering::Relaxed),
                    (service.in_progress())()
                )
            }
        };
        let pool = self.pool.progress_reader();
        let turns = move || room.as_ref().map(|room| (room.turns(), Arc::clone(room)));
        // The room turns once for each poke: one that has not since the
        // last tick is stuck, as is a pool with a job under way and none
        // ended since.
        let mut seen = (pool(), turns());
        let alive = move || {
            let now = (pool(), turns());
            let room_moved = match (&now.1, &seen.1) {
                (Some((after, _)), Some((before, _))) => after > before,
                _ => true,
            };
            let moving = now.0.moved_since(seen.0) && room_moved;
            if let Some((_, room)) = &now.1 {
                room.poke();
            }
            seen = now;
            moving
        };
        if let Some(room) = &self.room {
            room.poke();
        }
        let ping = notify::watchdog_interval();
        if let Err(e) = notify::keep_telling(Arc::clone(notifier), ping, status, alive) {
            diag::say(format_args!(
                "cannot keep the service manager told ({e}): no status, no watchdog"
            ));
        }
    }

    /// Refuses new connections, gives those in progress `grace`, then says
    /// what was done and lets queued output out, briefly.
    fn shut_down(&self, signal: platform::Signal, grace: Duration) {
        if let Some(notifier) = &self.notifier {
            notifier.send("STOPPING=1");
        }
        self.pool.stop_accepting();
        diag::say(format_args!(
            "{signal} received: refusing new connections; exchanges in progress have {} s to finish",
            grace.as_secs_f64()
        ));
        // Workers finish within the slow-client verdict, handing what is
        // still incomplete to the room, which tells those left at `by`.
        let by = Instant::now() + grace;
        match &self.room {
            Some(room) => {
                self.pool.wait_gone(by);
                room.finish(by);
            }
            None => {
                self.pool.wait_gone(by);
            }
        }
        let service = &self.service;
        service.end_error_second();
        let summary = service.stats.summary(
            "stopped after",
            service.log(),
            service.errors(),
            diag::dropped(),
        );
        diag::say(format_args!("{summary}"));
        service.log().flush(FLUSH_ON_EXIT);
        diag::flush(FLUSH_ON_EXIT);
    }
}

/// Waits for the first signal that stops serv6, and returns it. A thread
/// of its own, started now while there is surely room for it, waits for
/// them: SIGUSR1 has it `report` how it is going; after the first stopping
/// signal it waits for a second, and then exits at once, saying how many
/// exchanges that cuts.
fn wait_for_signals(
    termination: &platform::Termination,
    in_progress: impl Fn() -> usize + Send + 'static,
    report: impl Fn() + Send + 'static,
) -> platform::Signal {
    let (first, received) = std::sync::mpsc::channel();
    let waiter = termination.clone();
    let started = std::thread::Builder::new()
        .name("serv6-signals".into())
        .stack_size(crate::sync::HELPER_STACK)
        .spawn(move || {
            let mut stopping = false;
            loop {
                let signal = waiter.wait();
                if !signal.stops() {
                    report();
                } else if !std::mem::replace(&mut stopping, true) {
                    let _ = first.send(signal);
                } else {
                    diag::say(format_args!(
                        "{signal} received again: exiting now, cutting {} in progress",
                        crate::words::counted(in_progress() as u64, "exchange", "exchanges")
                    ));
                    diag::flush(FLUSH_ON_EXIT);
                    std::process::exit(Status::Failure.code().into());
                }
            }
        });
    if let Ok(Ok(signal)) = started.map(|_| received.recv()) {
        return signal;
    }
    diag::say(format_args!("a second signal will not stop serv6 at once"));
    loop {
        let signal = termination.wait();
        if signal.stops() {
            return signal;
        }
    }
}

/// Why serv6 could not start: the line to print and the exit status.
struct StartError {
    message: String,
    status: Status,
}

impl StartError {
    /// The machine, not the command line, stops serv6: exit status 1.
    fn failure(message: String) -> StartError {
        StartError {
            message,
            status: Status::Failure,
        }
    }
}

/// Binds (or takes the sockets passed to it), starts the waiting room and
/// the workers, then says where it listens: once that line is out,
/// clients are served.
fn start(options: &Options, passed: Option<Vec<TcpListener>>) -> Result<Running, StartError> {
    let mut bound = listeners(options, passed)?;
    let mut line = listen::listening_line(&bound.listeners);
    if let Some(e) = bound
        .listeners
        .iter()
        .find_map(|l| platform::stamp_arrivals(l).err())
    {
        bound.notes.push(format!(
            "the kernel gives no arrival times here ({e}): replies are stamped when serv6 reads the message"
        ));
    }
    let machine = capacity::Machine::measure();
    let listeners = bound.listeners.len();
    let capacity = capacity::plan(&machine, options.max_conns, options.max_bytes, listeners)
        .map_err(|e| StartError::failure(format!("cannot serve: {e}")))?;
    let service = Arc::new(Service::new(Log::new(options.quiet, options.log_bytes)));
    let room = start_room(&service, capacity.room, &mut bound.notes)?;
    let front = Front {
        service: Arc::clone(&service),
        room: room.clone(),
        rules: Rules {
            max_len: options.max_bytes,
            pause: options.pause,
            deadline: options.deadline,
        },
        proxy_from: options.proxy_from.clone(),
    };
    let settings = pool::Settings::new(options.deadline, capacity.max_workers);
    let pool = Pool::start(bound.listeners, settings, front)
        .map_err(|e| StartError::failure(format!("cannot start workers: {e}")))?;
    if let Some(addr) = options.metrics {
        let sources = metrics::Sources {
            service: Arc::clone(&service),
            room: room.clone(),
            max_conns: capacity.room.waiting,
            started: std::time::SystemTime::now(),
        };
        let at = metrics::start(addr, sources)
            .map_err(|e| StartError::failure(format!("cannot serve metrics on {addr}: {e}")))?;
        let _ = write!(line, " (metrics: http://{at}/metrics)");
    }
    // First, so that a script may read where serv6 listens from line 1.
    diag::say(format_args!("{line}"));
    for note in bound.notes.iter().chain(&capacity.notes) {
        diag::say(format_args!("{note}"));
    }
    Ok(Running {
        pool,
        room,
        service,
        notifier: notify::Notifier::from_env().map(Arc::new),
    })
}

/// The waiting room, or `None` where the system has no epoll (said in
/// `notes`: workers then hold slow clients themselves).
fn start_room(
    service: &Arc<Service>,
    limits: room::Limits,
    notes: &mut Vec<String>,
) -> Result<Option<Arc<Room>>, StartError> {
    match Room::start(Arc::clone(service), limits) {
        Ok(room) => Ok(Some(room)),
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
            notes.push(
                "no waiting room on this system: a slow client holds a worker until its deadline"
                    .into(),
            );
            Ok(None)
        }
        Err(e) => Err(StartError::failure(format!(
            "cannot start the waiting room: {e}"
        ))),
    }
}

fn listeners(options: &Options, passed: Option<Vec<TcpListener>>) -> Result<Bound, StartError> {
    if let Some(listeners) = passed {
        if !options.binds.is_empty() || options.port.is_some() {
            return Err(StartError {
                message: "'--bind' and '--port' do not go with sockets passed by a service \
                          manager (LISTEN_FDS): it chose the addresses"
                    .into(),
                status: Status::Usage,
            });
        }
        return Ok(Bound {
            listeners,
            notes: Vec::new(),
        });
    }
    let port = options.port.unwrap_or(DEFAULT_PORT);
    let mut bound = listen::bind_all(&options.binds, port).map_err(|e| StartError {
        status: if e.is_usage() {
            Status::Usage
        } else {
            Status::Failure
        },
        message: e.to_string(),
    })?;
    for listener in &bound.listeners {
        if let Err(e) = platform::set_backlog(listener, options.backlog) {
            bound
                .notes
                .push(format!("the listen backlog stays at std's 128: {e}"));
            break;
        }
    }
    Ok(bound)
}

fn print_stdout(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => Status::Failure.into(),
    }
}
