//! cli6's command line.

use super::exchange::Target;
use crate::args::{Arg, Parser, UsageError};
use crate::server::DEFAULT_PORT;
use std::ffi::OsString;
use std::time::Duration;

/// What cli6 was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send `message` once, or each line of standard input when `None`.
    Send {
        target: Target,
        message: Option<Vec<u8>>,
    },
    Help,
    Version,
}

/// The text of `cli6 --help`.
pub const USAGE: &str = "\
Usage: cli6 [OPTIONS] [MESSAGE...]

Sends a message to serv6 and prints its reply, the time the server received it:
  received <N> bytes at <YYYY-MM-DDTHH:MM:SS.ffffffZ>

With MESSAGE words, sends them joined by spaces, once. Without, sends each line
of standard input as its own exchange, until end of input.

Options:
  -H, --host HOST       server name or address; every address it resolves to
                        is tried in turn (default localhost)
  -p, --port PORT       server port (default 5006)
  -t, --timeout SECS    limit for connecting, and for each read and write
                        (default 5)
  -h, --help            print this help and exit
  -V, --version         print the version and exit

Exit status: 0 if every exchange got its reply, 1 otherwise, 2 for bad usage.";

/// Parses cli6's arguments, without the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut target = Target {
        host: "localhost".into(),
        port: DEFAULT_PORT,
        timeout: Duration::from_secs(5),
    };
    let mut words: Vec<OsString> = Vec::new();
    let mut parser = Parser::new(args);
    while let Some(arg) = parser.next_arg()? {
        let name = match &arg {
            Arg::Value(word) => {
                words.push(word.clone());
                continue;
            }
            Arg::Short('H') => "host",
            Arg::Short('p') => "port",
            Arg::Short('t') => "timeout",
            Arg::Short('h') => "help",
            Arg::Short('V') => "version",
            Arg::Long(long) => long.as_str(),
            Arg::Short(_) => return Err(arg.unexpected()),
        };
        match name {
            "host" => target.host = host(&mut parser)?,
            "port" => target.port = parser.parsed()?,
            "timeout" => target.timeout = parser.seconds(false)?,
            "help" => return Ok(Command::Help),
            "version" => return Ok(Command::Version),
            _ => return Err(arg.unexpected()),
        }
    }
    let message = if words.is_empty() {
        None
    } else {
        Some(join(&words)?)
    };
    Ok(Command::Send { target, message })
}

fn host(parser: &mut Parser) -> Result<String, UsageError> {
    let value = parser.value()?;
    let text = value.to_str().unwrap_or_default();
    let text = text
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(text);
    if text.is_empty() {
        return Err(UsageError::new(format!(
            "invalid value '{}' for '{}': it is not a host name or address",
            value.to_string_lossy(),
            parser.option_name()
        )));
    }
    Ok(text.to_owned())
}

/// Joins the message words with spaces, refusing what cannot be one message.
fn join(words: &[OsString]) -> Result<Vec<u8>, UsageError> {
    let message = words
        .iter()
        .map(|w| w.as_encoded_bytes())
        .collect::<Vec<_>>()
        .join(&b' ');
    if message.contains(&b'\n') {
        return Err(UsageError::new(
            "a message cannot contain a newline: a newline ends the message (send lines on standard input instead)",
        ));
    }
    if message.last() == Some(&b'\r') {
        return Err(UsageError::new(
            "a message cannot end with a carriage return: the server drops a CR before the newline",
        ));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &[&str]) -> Result<Command, UsageError> {
        parse(words.iter().map(OsString::from))
    }

    fn sent(words: &[&str]) -> (Target, Option<Vec<u8>>) {
        match parse_words(words).unwrap() {
            Command::Send { target, message } => (target, message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_read_standard_input() {
        let (target, message) = sent(&[]);
        assert_eq!((target.host.as_str(), target.port), ("localhost", 5006));
        assert_eq!(target.timeout, Duration::from_secs(5));
        assert_eq!(message, None);
    }

    #[test]
    fn words_are_joined_with_spaces() {
        let (target, message) = sent(&[
            "-H", "[::1]", "--port=7", "-t0.5", "que", "hora", "--", "-es",
        ]);
        assert_eq!((target.host.as_str(), target.port), ("::1", 7));
        assert_eq!(target.timeout, Duration::from_millis(500));
        assert_eq!(message.as_deref(), Some(&b"que hora -es"[..]));
    }

    #[test]
    fn newlines_and_final_cr_are_refused() {
        assert!(parse_words(&["a\nb"])
            .unwrap_err()
            .to_string()
            .contains("newline"));
        assert!(parse_words(&["ab\r"])
            .unwrap_err()
            .to_string()
            .contains("carriage return"));
    }

    #[test]
    fn errors_name_the_argument() {
        let err = |words: &[&str]| parse_words(words).unwrap_err().to_string();
        assert_eq!(err(&["--hots", "x"]), "unknown option '--hots'");
        assert_eq!(err(&["-x"]), "unknown option '-x'");
        assert_eq!(
            err(&["--host", ""]),
            "invalid value '' for '--host': it is not a host name or address"
        );
        assert_eq!(
            err(&["--timeout", "0"]),
            "invalid value '0' for '--timeout': it must be more than zero"
        );
    }
}
