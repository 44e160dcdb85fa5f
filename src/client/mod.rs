//! cli6: the client. [`main`] is the whole program; `src/bin/cli6.rs` only calls it.

mod exchange;
mod options;
mod probe;

use crate::diag;
use crate::escape::escape;
use exchange::{exchange, ClientError, ReplyProblem, Target};
use options::Command;
use std::ffi::OsString;
use std::io::{self, BufRead, IsTerminal, Write};
use std::process::ExitCode;

/// Runs cli6 with `args` (without the program name) and returns its exit
/// status: 0 if every exchange got its reply, 1 if one did not, 2 for bad usage.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    diag::set_program("cli6");
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
        Ok(Command::Help) => print(&options::program().help()),
        Ok(Command::Version) => print(concat!("cli6 ", env!("CARGO_PKG_VERSION"))),
        Err(e) => {
            diag::error(format_args!("{}", options::program().usage_error(&e)));
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
    let checked = exchange(target, message).map(|done| {
        let verdict = done.verify(message.len());
        (done, verdict)
    });
    match checked {
        Ok((done, Ok(_))) => print(&escape(&done.reply)),
        Ok((done, Err(e))) => {
            // A count that is off is still what the server said: show it.
            if matches!(
                &e,
                ClientError::Reply {
                    problem: ReplyProblem::Miscounted { .. },
                    ..
                }
            ) {
                print(&escape(&done.reply));
            }
            diag::error(format_args!("{e}"));
            false
        }
        Err(e) => {
            diag::error(format_args!("{e}"));
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
                diag::error(format_args!("cannot read standard input: {e}"));
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
