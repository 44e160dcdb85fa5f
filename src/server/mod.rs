//! serv6: the server. [`main`] is the whole program; `src/bin/serv6.rs` only calls it.

mod connection;
mod exchange;
mod listen;
mod log;
mod options;
mod pool;

use crate::framing::Rules;
use crate::{diag, platform};
use exchange::Service;
use log::Log;
use options::{Command, Options};
use pool::Pool;
use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

/// Runs serv6 with `args` (without the program name) and returns its exit
/// status: 0 after a clean shutdown, 1 if it cannot serve, 2 for bad usage.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    diag::set_program("serv6");
    let options = match options::parse(args) {
        Ok(Command::Serve(options)) => options,
        Ok(Command::Help) => return print_stdout(&options::program().help()),
        Ok(Command::Version) => return print_stdout(concat!("serv6 ", env!("CARGO_PKG_VERSION"))),
        Err(e) => {
            diag::error(format_args!("{}", options::program().usage_error(&e)));
            return ExitCode::from(2);
        }
    };
    // Before any thread exists, so that every thread inherits the mask.
    let termination = platform::block_termination();
    let pool = match start(&options) {
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
    let signal = termination.wait();
    diag::info(format_args!(
        "{signal} received: finishing exchanges in progress"
    ));
    pool.stop();
    diag::info(format_args!("{}", pool.service().stats.summary()));
    ExitCode::SUCCESS
}

/// Why serv6 could not start: the line to print and the exit status.
struct StartError {
    message: String,
    status: u8,
}

/// Binds, starts the workers, then says where it listens: once that line
/// is out, clients are served.
fn start(options: &Options) -> Result<Pool, StartError> {
    let bound = listen::bind_all(&options.binds, options.port).map_err(|e| StartError {
        status: if e.is_usage() { 2 } else { 1 },
        message: e.to_string(),
    })?;
    for skipped in &bound.skipped {
        diag::info(format_args!("{skipped}"));
    }
    let line = listen::listening_line(&bound.listeners);
    let rules = Rules {
        max_len: options.max_bytes,
        pause: options.pause,
        deadline: options.deadline,
    };
    let service = Service::new(rules, options.max_conns, Log::new(options.quiet));
    let settings = pool::Settings::new(options.deadline, options.max_conns, bound.listeners.len());
    let pool = Pool::start(bound.listeners, settings, service).map_err(|e| StartError {
        message: format!("cannot start workers: {e}"),
        status: 1,
    })?;
    diag::info(format_args!("{line}"));
    Ok(pool)
}

fn print_stdout(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}
