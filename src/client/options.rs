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
    /// Probe the server `count` times (0: until interrupted), like ping.
    Probe {
        target: Target,
        message: Vec<u8>,
        probes: Probes,
    },
    Help,
    Version,
}

/// How to probe: `--count`, `--interval`, `--json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probes {
    /// How many probes; 0 means until interrupted.
    pub count: u64,
    /// From the start of one probe to the start of the next.
    pub interval: Duration,
    pub json: bool,
}

/// What a probe sends when no MESSAGE is given.
pub const PROBE_MESSAGE: &[u8] = b"hola";

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
  -c, --count N         probe like ping: N exchanges (0: until Ctrl-C), each
                        with its connect time, round-trip time and the offset
                        of the server's clock from ours, then a summary
  -i, --interval SECS   time between probes (default 1; 0 allowed)
      --json            with --count: one JSON object per probe and one for
                        the summary
  -h, --help            print this help and exit
  -V, --version         print the version and exit

Exit status: 0 if every exchange got its reply (with --count: if any did),
1 otherwise, 2 for bad usage.";

/// Parses cli6's arguments, without the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut target = Target {
        host: "localhost".into(),
        port: DEFAULT_PORT,
        timeout: Duration::from_secs(5),
    };
    let mut words: Vec<OsString> = Vec::new();
    let (mut count, mut interval, mut json) = (None, None, false);
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
            Arg::Short('c') => "count",
            Arg::Short('i') => "interval",
            Arg::Short('h') => "help",
            Arg::Short('V') => "version",
            Arg::Long(long) => long.as_str(),
            Arg::Short(_) => return Err(arg.unexpected()),
        };
        match name {
            "host" => target.host = host(&mut parser)?,
            "port" => target.port = parser.parsed()?,
            "timeout" => target.timeout = parser.seconds(false)?,
            "count" => count = Some(parser.parsed()?),
            "interval" => interval = Some(parser.seconds(true)?),
            "json" => json = true,
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
    let Some(count) = count else {
        if interval.is_some() || json {
            return Err(UsageError::new(
                "'--interval' and '--json' go with '--count' (probe mode)",
            ));
        }
        return Ok(Command::Send { target, message });
    };
    let probes = Probes {
        count,
        interval: interval.unwrap_or(Duration::from_secs(1)),
        json,
    };
    let message = message.unwrap_or_else(|| PROBE_MESSAGE.to_vec());
    Ok(Command::Probe {
        target,
        message,
        probes,
    })
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
    fn count_interval_and_json_make_a_probe() {
        let got = parse_words(&["-c", "3", "-i", "0", "--json", "-H", "::1"]).unwrap();
        let Command::Probe {
            target,
            message,
            probes,
        } = got
        else {
            panic!("{got:?}")
        };
        assert_eq!(target.host, "::1");
        assert_eq!(message, PROBE_MESSAGE);
        assert_eq!(
            probes,
            Probes {
                count: 3,
                interval: Duration::ZERO,
                json: true
            }
        );
        assert!(matches!(
            parse_words(&["--count=0", "ping"]).unwrap(),
            Command::Probe { probes: Probes { count: 0, .. }, message, .. } if message == b"ping"
        ));
    }

    #[test]
    fn probe_options_need_count() {
        let err = parse_words(&["--json"]).unwrap_err().to_string();
        assert!(err.contains("go with '--count'"), "{err}");
        assert!(parse_words(&["-c", "x"]).is_err());
        assert!(parse_words(&["-c", "1", "-i", "-1"]).is_err());
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
