//! cli6's command line: its flags, their defaults and its help, defined once.

use super::exchange::{Family, Target};
use super::lines::MAX_LINE;
use crate::addr::HostArg;
use crate::args::{self, Arg, DefaultText, Flag, Parser, UsageError};
use crate::exit::{self, Meanings, Status};
use crate::help::Program;
use crate::manpage::Manual;
use crate::protocol::{check_message, Unsendable, DEFAULT_PORT, REPLY_FORM};
use std::ffi::OsString;
use std::time::Duration;

/// What cli6 was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
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
    /// Print the manual page.
    Manual,
}

/// How to probe: `--count`, `--interval`, `--json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Probes {
    /// How many probes; 0 means until interrupted.
    pub count: u64,
    /// From the start of one probe to the start of the next.
    pub interval: Duration,
    pub json: bool,
}

/// What a probe sends when no MESSAGE is given.
pub(crate) const PROBE_MESSAGE: &[u8] = b"hola";

/// The defaults; `FLAGS` shows each as text, and a test checks they agree.
fn default_target() -> Target {
    Target {
        host: "localhost".into(),
        port: DEFAULT_PORT,
        timeout: Duration::from_secs(5),
        family: None,
    }
}
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Which of cli6's flags a [`Flag`] is: the parser matches it whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Host,
    Port,
    Timeout,
    Ipv4,
    Ipv6,
    Count,
    Interval,
    Json,
    Help,
    Version,
    Manual,
}

pub(crate) const FLAGS: &[Flag<Key>] = &[
    Flag {
        key: Key::Host,
        short: Some('H'),
        long: "host",
        value: Some("HOST"),
        help: "server name or address; every address it resolves to is tried in turn",
        default: DefaultText::Value("localhost"),
    },
    Flag {
        key: Key::Port,
        short: Some('p'),
        long: "port",
        value: Some("PORT"),
        help: "server port",
        default: DefaultText::Value("5006"),
    },
    Flag {
        key: Key::Timeout,
        short: Some('t'),
        long: "timeout",
        value: Some("SECS"),
        help: "limit for each whole exchange: connecting, sending and reading the reply",
        default: DefaultText::Value("5"),
    },
    Flag {
        key: Key::Ipv4,
        short: Some('4'),
        long: "ipv4",
        value: None,
        help: "use IPv4 addresses only",
        default: DefaultText::None,
    },
    Flag {
        key: Key::Ipv6,
        short: Some('6'),
        long: "ipv6",
        value: None,
        help: "use IPv6 addresses only",
        default: DefaultText::None,
    },
    Flag {
        key: Key::Count,
        short: Some('c'),
        long: "count",
        value: Some("N"),
        help: "probe like ping: N exchanges (0: until Ctrl-C), each with its connect time, \
               round-trip time and the offset of the server's clock from ours (server minus \
               ours), then a summary with the median offset and the offset of the fastest \
               probe, each within ± half a round trip; failures slow the probes down, up to \
               one a second",
        default: DefaultText::None,
    },
    Flag {
        key: Key::Interval,
        short: Some('i'),
        long: "interval",
        value: Some("SECS"),
        help: "with --count: time between probes; 0 allowed",
        default: DefaultText::Value("1"),
    },
    Flag {
        key: Key::Json,
        short: None,
        long: "json",
        value: None,
        help: "JSON Lines: one object per probe, then one for the summary; without \
               --count, one probe (python3 -m json.tool --json-lines reads it)",
        default: DefaultText::None,
    },
    args::help(Key::Help),
    args::version(Key::Version),
    args::generate_man(Key::Manual),
];

/// The manual page's sections beyond the command line (`cli6(1)`).
/// What cli6's exit statuses mean.
pub(crate) const EXIT: Meanings = [
    (
        Status::Success,
        "if every exchange got its reply (with --count: if any did)",
    ),
    (Status::Failure, "otherwise"),
    (Status::Usage, "for bad usage"),
];

pub(crate) const MANUAL: Manual = Manual {
    exit: &EXIT,
    section: 1,
    summary: "ask serv6 when it received a message",
    sections: &[
        (
            "Output",
            "The reply goes to standard output, with control characters escaped; problems \
go to standard error. With --count, one line per probe, then a summary: round-trip times, \
and the offset of the server's clock from ours (server minus ours), as the median over the \
probes and as the offset of the probe with the smallest round trip. Each offset is within \
half its round trip of the truth, whatever the path.",
        ),
        (
            "Examples",
            "Send one message, or one per line:
  cli6 hola
  printf 'uno\\ndos\\n' | cli6 --host example.org

Probe the server's clock five times, as JSON:
  cli6 --count 5 --interval 0.2 --json",
        ),
        ("See also", "serv6(8), ping(8), nc(1)"),
    ],
};

/// cli6's command line, for help and usage errors.
pub(crate) fn program() -> Program<Key> {
    Program {
        name: "cli6",
        synopsis: "cli6 [OPTIONS] [MESSAGE...]",
        about: format!(
            "Sends a message to serv6 and prints its reply, the time the server received it:\n  \
             {REPLY_FORM}\n\n\
             With MESSAGE words, sends them joined by spaces, once. Without, sends each line\n\
             of standard input as its own exchange, until end of input. CRLF line endings\n\
             are fine; a line longer than {MAX_LINE} bytes, or one whose message would\n\
             still end in a CR once its line ending is off (the server drops a CR before\n\
             the LF, so the count would be wrong), is reported and not sent."
        ),
        flags: FLAGS,
        after: format!("Exit status: {}", exit::describe(&EXIT)),
    }
}

/// What the flags said, before it is checked as a whole.
#[derive(Debug)]
struct Given {
    target: Target,
    words: Vec<OsString>,
    count: Option<u64>,
    interval: Option<Duration>,
    json: bool,
}

/// Parses cli6's arguments, without the program name.
pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut given = Given {
        target: default_target(),
        words: Vec::new(),
        count: None,
        interval: None,
        json: false,
    };
    let mut parser = Parser::new(args, FLAGS);
    while let Some(arg) = parser.next_flag()? {
        let flag = match arg {
            Arg::Value(word) => {
                given.words.push(word);
                continue;
            }
            Arg::Flag(flag) => flag,
        };
        match flag.key {
            Key::Host => given.target.host = parser.parsed::<HostArg>()?.0,
            Key::Port => given.target.port = parser.number(1..=u64::from(u16::MAX))?,
            Key::Timeout => given.target.timeout = parser.seconds(false)?,
            Key::Ipv4 => given.target.family = Some(Family::V4),
            Key::Ipv6 => given.target.family = Some(Family::V6),
            Key::Count => given.count = Some(parser.number(0..=u64::MAX)?),
            Key::Interval => given.interval = Some(parser.seconds(true)?),
            Key::Json => given.json = true,
            Key::Help => return Ok(Command::Help),
            Key::Version => return Ok(Command::Version),
            Key::Manual => return Ok(Command::Manual),
        }
    }
    command(given)
}

/// The command the flags add up to, once they are all read.
fn command(given: Given) -> Result<Command, UsageError> {
    let Given {
        target,
        words,
        count,
        interval,
        json,
    } = given;
    let message = if words.is_empty() {
        None
    } else {
        Some(join(&words)?)
    };
    // `--json` alone is one probe: the one exchange, as JSON.
    let count = count.or(json.then_some(1));
    let Some(count) = count else {
        if interval.is_some() {
            return Err(UsageError::Requires {
                what: &["--interval"],
                needs: "'--count' (probe mode)",
            });
        }
        return Ok(Command::Send { target, message });
    };
    let probes = Probes {
        count,
        interval: interval.unwrap_or(DEFAULT_INTERVAL),
        json,
    };
    Ok(Command::Probe {
        target,
        message: message.unwrap_or_else(|| PROBE_MESSAGE.to_vec()),
        probes,
    })
}

/// Joins the message words with spaces, refusing what cannot be one message.
fn join(words: &[OsString]) -> Result<Vec<u8>, UsageError> {
    let message = words
        .iter()
        .map(|w| w.as_encoded_bytes())
        .collect::<Vec<_>>()
        .join(&b' ');
    check_message(&message).map_err(|why| {
        UsageError::Refused(match why {
            Unsendable::Newline => format!("{why} (send lines on standard input instead)"),
            Unsendable::FinalCr => why.to_string(),
        })
    })?;
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
    fn the_help_shows_the_real_defaults() {
        for flag in FLAGS {
            if let DefaultText::Value(text) = flag.default {
                let words = ["-c", "1", &format!("--{}", flag.long), text];
                let Ok(Command::Probe { target, probes, .. }) = parse_words(&words) else {
                    panic!("{words:?}");
                };
                assert_eq!(target, default_target(), "{words:?}");
                assert_eq!(probes.interval, DEFAULT_INTERVAL, "{words:?}");
            }
        }
    }

    #[test]
    fn every_flag_is_handled() {
        for flag in FLAGS {
            let words = match flag.value {
                Some(_) => vec![format!("--{}", flag.long), "1".into(), "-c1".into()],
                None => vec![format!("--{}", flag.long), "-c1".into()],
            };
            let parsed = parse(words.iter().map(OsString::from));
            assert!(parsed.is_ok(), "{words:?}: {parsed:?}");
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
        let err = parse_words(&["-i", "2"]).unwrap_err().to_string();
        assert_eq!(err, "'--interval' goes with '--count' (probe mode)");
        assert!(matches!(
            parse_words(&["--json"]),
            Ok(Command::Probe {
                probes: Probes {
                    count: 1,
                    json: true,
                    ..
                },
                ..
            })
        ));
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
