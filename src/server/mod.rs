//! serv6: the server. [`main`] is the whole program; `src/bin/serv6.rs` only calls it.

mod exchange;
mod listen;
mod log;
mod options;
mod pool;

pub use exchange::{Scratch, Service};
pub use listen::{bind_all, BindError, Bound};
pub use options::{parse, Command, Options, DEFAULT_PORT, USAGE};

use crate::framing::Rules;
use crate::{report, signal};
use pool::Pool;
use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

/// Runs serv6 with `args` (without the program name) and returns its exit
/// status: 0 after a clean shutdown, 1 if it cannot serve, 2 for bad usage.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let options = match options::parse(args) {
        Ok(Command::Serve(options)) => options,
        Ok(Command::Help) => return print_stdout(USAGE),
        Ok(Command::Version) => return print_stdout(concat!("serv6 ", env!("CARGO_PKG_VERSION"))),
        Err(e) => {
            report::error(
                "serv6",
                format_args!("{e} (usage: serv6 [OPTIONS]; see 'serv6 --help')"),
            );
            return ExitCode::from(2);
        }
    };
    // Before any thread exists, so that every thread inherits the mask.
    let termination = signal::block_termination();
    let pool = match start(&options) {
        Ok(pool) => pool,
        Err(message) => {
            report::error("serv6", format_args!("{message}"));
            return ExitCode::from(1);
        }
    };
    if let Some(termination) = termination {
        let signal = termination.wait();
        report::error(
            "serv6",
            format_args!("{signal} received: finishing exchanges in progress"),
        );
        pool.stop();
        report::error("serv6", format_args!("{}", pool.service().stats.summary()));
    } else {
        loop {
            std::thread::park();
        }
    }
    ExitCode::SUCCESS
}

fn start(options: &Options) -> Result<Pool, String> {
    let bound = bind_all(&options.binds, options.port).map_err(|e| e.to_string())?;
    for skipped in &bound.skipped {
        report::error("serv6", format_args!("{skipped}"));
    }
    let line = listen::listening_line(&bound.listeners);
    let rules = Rules {
        max_len: options.max_bytes,
        pause: options.pause,
        deadline: options.deadline,
    };
    let service = Service::new(rules, options.max_conns, options.quiet);
    let pool =
        Pool::start(bound.listeners, service).map_err(|e| format!("cannot start workers: {e}"))?;
    report::error("serv6", format_args!("{line}"));
    Ok(pool)
}

fn print_stdout(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}
