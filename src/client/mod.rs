//! cli6: the client. [`main`] is the whole program; `src/bin/cli6.rs` only calls it.

mod exchange;
mod options;
pub mod probe;

pub use exchange::{exchange, parse_reply, ClientError, Exchanged, Reply, Target, MAX_REPLY};
pub use options::{parse, Command, Probes, PROBE_MESSAGE, USAGE};

use crate::escape::escape;
use crate::report;
use std::ffi::OsString;
use std::io::{self, BufRead, IsTerminal, Write};
use std::process::ExitCode;

/// Runs cli6 with `args` (without the program name) and returns its exit
/// status: 0 if every exchange got its reply, 1 if one did not, 2 for bad usage.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let ok = match options::parse(args) {
        Ok(Command::Send {
            target,
            message: Some(message),
        }) => send(&target, &message),
        Ok(Command::Send {
            target,
            message: None,
        }) => send_lines(&target),
        Ok(Command::Probe {
            target,
            message,
            probes,
        }) => return probe::run(&target, &message, probes),
        Ok(Command::Help) => print(USAGE),
        Ok(Command::Version) => print(concat!("cli6 ", env!("CARGO_PKG_VERSION"))),
        Err(e) => {
            report::error(
                "cli6",
                format_args!("{e} (usage: cli6 [OPTIONS] [MESSAGE...]; see 'cli6 --help')"),
            );
            return ExitCode::from(2);
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// One exchange: the reply on standard output, any problem on standard error.
fn send(target: &Target, message: &[u8]) -> bool {
    match exchange(target, message) {
        Ok(done) => check_reply(&done, message.len()),
        Err(e) => {
            report::error("cli6", format_args!("{e}"));
            false
        }
    }
}

/// Prints a serv6 reply if it is one and it counted every byte sent.
fn check_reply(done: &Exchanged, sent: usize) -> bool {
    match done.verify(sent) {
        Ok(_) => print(&escape(&done.reply)),
        Err(problem) => {
            // A count that is off is still what the server said: show it.
            if let Reply::Received { .. } = parse_reply(&done.reply) {
                print(&escape(&done.reply));
            }
            report::error("cli6", format_args!("{problem}"));
            false
        }
    }
}

/// One exchange per line of standard input, with a prompt on a terminal.
fn send_lines(target: &Target) -> bool {
    let stdin = io::stdin();
    let interactive = stdin.is_terminal();
    let mut input = stdin.lock();
    let mut all_ok = true;
    let mut line = Vec::new();
    loop {
        if interactive {
            prompt(target);
        }
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                report::error("cli6", format_args!("cannot read standard input: {e}"));
                return false;
            }
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        all_ok &= send(target, &line);
    }
    if interactive {
        let _ = writeln!(io::stderr());
    }
    all_ok
}

fn prompt(target: &Target) {
    let mut err = io::stderr().lock();
    let _ = write!(err, "message for {target} (Ctrl-D to end)> ");
    let _ = err.flush();
}

/// Prints a line on standard output; false if it cannot (a closed pipe).
fn print(text: &str) -> bool {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
}
