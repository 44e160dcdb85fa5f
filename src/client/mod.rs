//! cli6: the client. [`main`] is the whole program; `src/bin/cli6.rs` only calls it.

mod estimate;
mod exchange;
mod lines;
mod options;
mod probe;

use crate::cmdline::Status;
use crate::escape::escape;
use crate::output;
use crate::protocol::{check_message, message_of, parse_reply, Reply};
use exchange::{exchange, Target};
use lines::{Line, MAX_LINE};
use options::Command;
use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

/// Runs cli6 with `args` (without the program name) and returns its exit
/// status, as cli6's manual (`cli6.1.txt`) says what each means.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    output::set_program("cli6");
    let ok = match options::parse(args) {
        Ok(Command::Send { target, message: Some(message) }) => send(&target, &message),
        Ok(Command::Send { target, message: None }) => send_lines(&target),
        Ok(Command::Probe { target, message, probes }) => probe::run(&target, &message, probes),
        Ok(Command::Info(info)) => print(&options::program().info(info)),
        Err(e) => {
            output::say(format_args!("{}", options::program().usage_error(&e)));
            return Status::Usage.into();
        }
    };
    if ok { Status::Success } else { Status::Failure }.into()
}

/// One exchange sending `message`: the reply on standard output, any
/// problem on standard error.
fn send(target: &Target, message: &[u8]) -> bool {
    let checked = exchange(target, message).and_then(|done| {
        // A count that is off is still what the server said: show it.
        let shown = matches!(parse_reply(&done.reply), Reply::Received { .. })
            && print(&escape(&done.reply));
        done.verify(message.len()).map(|_| shown)
    });
    checked.unwrap_or_else(|e| {
        output::say(format_args!("{e}"));
        false
    })
}

/// One exchange per line of standard input, with a prompt on a terminal.
/// A line that cannot be sent as it is is reported and skipped.
fn send_lines(target: &Target) -> bool {
    let interactive = io::stdin().is_terminal();
    let (mut input, mut line, mut all_ok) = (io::stdin().lock(), Vec::new(), true);
    for number in 1.. {
        if interactive {
            // Standard error is unbuffered: the prompt shows at once.
            let _ = write!(io::stderr(), "message for {target} (Ctrl-D to end)> ");
        }
        let sendable = match lines::read_line(&mut input, &mut line) {
            Ok(Line::End) => break,
            Ok(Line::TooLong) => Err(format!("longer than {MAX_LINE} bytes")),
            Ok(Line::Message) => check_message(message_of(&line)).map_err(|why| why.to_string()),
            Err(e) => {
                output::say(format_args!("cannot read standard input: {e}"));
                return false;
            }
        };
        all_ok &= match sendable {
            Ok(()) => send(target, message_of(&line)),
            Err(why) => {
                output::say(format_args!("line {number} not sent: {why}"));
                false
            }
        };
    }
    if interactive {
        let _ = writeln!(io::stderr());
    }
    all_ok
}

/// Prints a line on standard output; false if it cannot (a closed pipe).
pub(super) fn print(text: &str) -> bool {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
}
