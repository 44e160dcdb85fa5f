//! serv6's command line.

use crate::args::{Arg, Parser, UsageError};
use std::ffi::OsString;
use std::time::Duration;

/// The port both programs use unless told otherwise.
pub const DEFAULT_PORT: u16 = 5006;

/// What serv6 was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Serve(Options),
    Help,
    Version,
}

/// How serv6 serves; every field has a command-line option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Addresses or host names to listen on; empty means 127.0.0.1 and ::1.
    pub binds: Vec<String>,
    pub port: u16,
    pub max_bytes: usize,
    pub pause: Duration,
    pub deadline: Duration,
    pub max_conns: usize,
    pub quiet: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            binds: Vec::new(),
            port: DEFAULT_PORT,
            max_bytes: 65_536,
            pause: Duration::from_millis(200),
            deadline: Duration::from_secs(10),
            max_conns: 1024,
            quiet: false,
        }
    }
}

/// The text of `serv6 --help`.
pub const USAGE: &str = "\
Usage: serv6 [OPTIONS]

Answers each TCP client's message with the time the server received it:
  received <N> bytes at <YYYY-MM-DDTHH:MM:SS.ffffffZ>

A message ends at the first LF (a CR before it is dropped), when the client
shuts down its sending side, or when the client pauses after sending bytes.

Options:
  -b, --bind ADDR       listen on ADDR, an IP address or host name; repeat for
                        more (default: 127.0.0.1 and ::1; '::' serves the network)
  -p, --port PORT       TCP port (default 5006; 0 picks a free one)
      --max-bytes N     longest message accepted, in bytes (default 65536)
      --pause SECS      silence that ends a message once bytes have arrived
                        (default 0.2)
      --deadline SECS   time a client has to complete its message (default 10)
      --max-conns N     exchanges in progress at once; beyond, new connections
                        get 'error: server busy' (default 1024)
  -q, --quiet           do not log exchanges on standard output
  -h, --help            print this help and exit
  -V, --version         print the version and exit

Standard error gets the listening addresses, errors and a summary on exit;
standard output gets one line per exchange. SIGINT or SIGTERM stops it
gracefully.";

/// Parses serv6's arguments, without the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut options = Options::default();
    let mut parser = Parser::new(args);
    while let Some(arg) = parser.next_arg()? {
        let name = match &arg {
            Arg::Short('b') => "bind",
            Arg::Short('p') => "port",
            Arg::Short('q') => "quiet",
            Arg::Short('h') => "help",
            Arg::Short('V') => "version",
            Arg::Long(long) => long.as_str(),
            _ => return Err(arg.unexpected()),
        };
        match name {
            "bind" => options.binds.push(text(&mut parser)?),
            "port" => options.port = parser.parsed()?,
            "max-bytes" => options.max_bytes = positive(&mut parser)?,
            "pause" => options.pause = parser.seconds(false)?,
            "deadline" => options.deadline = parser.seconds(false)?,
            "max-conns" => options.max_conns = positive(&mut parser)?,
            "quiet" => options.quiet = true,
            "help" => return Ok(Command::Help),
            "version" => return Ok(Command::Version),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Command::Serve(options))
}

fn text(parser: &mut Parser) -> Result<String, UsageError> {
    parser.value()?.into_string().map_err(|bad| {
        UsageError::new(format!(
            "invalid value '{}' for '{}': it is not valid UTF-8",
            bad.to_string_lossy(),
            parser.option_name()
        ))
    })
}

/// Most limits can be large but not zero, and must fit in memory arithmetic.
const MAX_LIMIT: usize = 1 << 30;

fn positive(parser: &mut Parser) -> Result<usize, UsageError> {
    let value: usize = parser.parsed()?;
    if value == 0 || value > MAX_LIMIT {
        return Err(UsageError::new(format!(
            "invalid value '{value}' for '{}': it must be from 1 to {MAX_LIMIT}",
            parser.option_name()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &str) -> Result<Command, UsageError> {
        parse(words.split_whitespace().map(OsString::from))
    }

    #[test]
    fn defaults() {
        assert_eq!(parse_words("").unwrap(), Command::Serve(Options::default()));
    }

    #[test]
    fn every_option() {
        let got = parse_words(
            "--bind :: -b 127.0.0.1 --port 0 --max-bytes 10 --pause 0.05 \
             --deadline 2.5 --max-conns 3 -q",
        )
        .unwrap();
        let want = Options {
            binds: vec!["::".into(), "127.0.0.1".into()],
            port: 0,
            max_bytes: 10,
            pause: Duration::from_millis(50),
            deadline: Duration::from_millis(2500),
            max_conns: 3,
            quiet: true,
        };
        assert_eq!(got, Command::Serve(want));
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse_words("-h").unwrap(), Command::Help);
        assert_eq!(parse_words("--port 1 --help").unwrap(), Command::Help);
        assert_eq!(parse_words("-V").unwrap(), Command::Version);
    }

    #[test]
    fn errors_name_the_argument() {
        let err = |words| parse_words(words).unwrap_err().to_string();
        assert_eq!(err("--prot 5"), "unknown option '--prot'");
        assert_eq!(err("extra"), "unexpected argument 'extra'");
        assert_eq!(err("--port"), "option '--port' needs a value");
        assert_eq!(
            err("--port 70000"),
            "invalid value '70000' for '--port': it is not a valid number"
        );
        assert_eq!(
            err("--max-conns 0"),
            "invalid value '0' for '--max-conns': it must be from 1 to 1073741824"
        );
        assert_eq!(
            err("--deadline 0"),
            "invalid value '0' for '--deadline': it must be more than zero"
        );
    }
}
