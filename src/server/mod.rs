//! serv6: the server. [`main`] is the whole program; `src/bin/serv6.rs` only calls it.

mod activation;
mod closer;
mod connection;
mod errors;
mod exchange;
mod listen;
mod log;
mod options;
mod pool;
mod proxy;

use crate::framing::Rules;
use crate::protocol::DEFAULT_PORT;
use crate::{diag, manpage, platform};
use exchange::Service;
use listen::Bound;
use log::Log;
pub(crate) use options::{program, MANUAL};
use options::{Command, Options};
use pool::Pool;
use std::ffi::OsString;
use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;
use std::time::Duration;

/// How long lines still queued for a stalled output may delay the exit.
const FLUSH_ON_EXIT: Duration = Duration::from_secs(1);

/// Runs serv6 with `args` (without the program name) and returns its exit
/// status: 0 after a clean shutdown, 1 if it cannot serve, 2 for bad usage.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    diag::set_program("serv6");
    let options = match options::parse(args) {
        Ok(Command::Serve(options)) => options,
        Ok(Command::Help) => return print_stdout(&options::program().help()),
        Ok(Command::Manual) => return print_stdout(&manpage::render(&program(), &MANUAL)),
        Ok(Command::Version) => return print_stdout(concat!("serv6 ", env!("CARGO_PKG_VERSION"))),
        Err(e) => {
            diag::error(format_args!("{}", options::program().usage_error(&e)));
            return ExitCode::from(2);
        }
    };
    // Before any thread exists: it edits the environment.
    let passed = match activation::passed_listeners() {
        Ok(passed) => passed,
        Err(e) => {
            diag::error(format_args!("{e}"));
            return ExitCode::from(1);
        }
    };
    // Before any thread exists, so that every thread inherits the mask.
    let termination = platform::block_termination();
    diag::never_block();
    let pool = match start(&options, passed) {
        Ok(pool) => pool,
        Err(StartError { message, status: 2 }) => {
            diag::error(format_args!("{}", options::program().usage_error(&message)));
            return ExitCode::from(2);
        }
        Err(StartError { message, status }) => {
            diag::error(format_args!("{message}"));
            return ExitCode::from(status);
        }
    };
    let Some(termination) = termination else {
        // No signal handling here: SIGTERM ends the process the default way.
        loop {
            std::thread::park();
        }
    };
    let signal = wait_for_signals(termination, pool.in_progress());
    shut_down(&pool, signal, options.grace);
    ExitCode::SUCCESS
}

/// Refuses new connections, gives those in progress `grace`, then says
/// what was done and lets queued output out, briefly.
fn shut_down(pool: &Pool, signal: platform::Signal, grace: Duration) {
    pool.stop_accepting();
    diag::info(format_args!(
        "{signal} received: refusing new connections; exchanges in progress have {} s to finish",
        grace.as_secs_f64()
    ));
    pool.finish(grace);
    let service = pool.service();
    service.end_error_second();
    let summary = service
        .stats
        .summary(service.log().dropped(), diag::dropped());
    diag::info(format_args!("{summary}"));
    service.log().flush(FLUSH_ON_EXIT);
    diag::flush(FLUSH_ON_EXIT);
}

/// Waits for the first signal, and returns it. A thread of its own,
/// started now while there is surely room for it, waits for them: after
/// the first, it waits for a second, and then exits at once, saying how
/// many exchanges that cuts.
fn wait_for_signals(
    termination: platform::Termination,
    in_progress: impl Fn() -> usize + Send + 'static,
) -> platform::Signal {
    let (first, received) = std::sync::mpsc::channel();
    let waiter = termination.clone();
    let started = std::thread::Builder::new()
        .name("serv6-signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let _ = first.send(waiter.wait());
            let signal = waiter.wait();
            diag::error(format_args!(
                "{signal} received again: exiting now, cutting {} in progress",
                crate::words::counted(in_progress() as u64, "exchange", "exchanges")
            ));
            diag::flush(FLUSH_ON_EXIT);
            std::process::exit(1);
        });
    match started.map(|_| received.recv()) {
        Ok(Ok(signal)) => signal,
        _ => {
            diag::error(format_args!("a second signal will not stop serv6 at once"));
            termination.wait()
        }
    }
}

/// Why serv6 could not start: the line to print and the exit status.
struct StartError {
    message: String,
    status: u8,
}

/// Binds (or takes the sockets passed to it), starts the workers, then says
/// where it listens: once that line is out, clients are served.
fn start(options: &Options, passed: Option<Vec<TcpListener>>) -> Result<Pool, StartError> {
    let mut bound = listeners(options, passed)?;
    let line = listen::listening_line(&bound.listeners);
    let rules = Rules {
        max_len: options.max_bytes,
        pause: options.pause,
        deadline: options.deadline,
    };
    let listeners = bound.listeners.len();
    let (max_conns, limited) =
        pool::fit_address_space(options.max_conns, options.max_bytes, listeners);
    bound.notes.extend(limited);
    let proxy_from = options.proxy_from.clone();
    let log = Log::new(options.quiet, options.log_bytes);
    let service = Service::new(rules, max_conns, proxy_from, log).map_err(|e| StartError {
        message: format!("cannot start the closer: {e}"),
        status: 1,
    })?;
    let settings = pool::Settings::new(options.deadline, max_conns, listeners);
    let notes = std::mem::take(&mut bound.notes);
    let pool = Pool::start(bound.listeners, settings, service).map_err(|e| StartError {
        message: format!("cannot start workers: {e}"),
        status: 1,
    })?;
    // First, so that a script may read where serv6 listens from line 1.
    diag::info(format_args!("{line}"));
    for note in notes {
        diag::info(format_args!("{note}"));
    }
    Ok(pool)
}

fn listeners(options: &Options, passed: Option<Vec<TcpListener>>) -> Result<Bound, StartError> {
    if let Some(listeners) = passed {
        if !options.binds.is_empty() || options.port.is_some() {
            return Err(StartError {
                message: "'--bind' and '--port' do not go with sockets passed by a service \
                          manager (LISTEN_FDS): it chose the addresses"
                    .into(),
                status: 2,
            });
        }
        return Ok(Bound {
            listeners,
            notes: Vec::new(),
        });
    }
    let port = options.port.unwrap_or(DEFAULT_PORT);
    let mut bound = listen::bind_all(&options.binds, port).map_err(|e| StartError {
        status: if e.is_usage() { 2 } else { 1 },
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
        Err(_) => ExitCode::from(1),
    }
}
