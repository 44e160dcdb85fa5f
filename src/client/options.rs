//! cli6's command line: its flags, their defaults, its help and its manual
//! page (the manual's prose is `cli6.1.txt`, next to this file).

use super::exchange::{Family, Target};
use super::lines::MAX_LINE;
use crate::addr::HostArg;
use crate::cmdline::{flag, Arg, Flag, Info, Parser, Program, UsageError};
use crate::protocol::{check_message, reply_form, Unsendable, DEFAULT_PORT};
use std::ffi::OsString;
use std::time::Duration;

/// What cli6 was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// Send `message` once, or each line of standard input when `None`.
    Send { target: Target, message: Option<Vec<u8>> },
    /// Probe the server `count` times (0: until interrupted), like ping.
    Probe { target: Target, message: Vec<u8>, probes: Probes },
    /// Print the help, the version or the manual page.
    Info(Info),
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

/// The defaults; `FLAGS` shows each in its help, and a test checks they agree.
fn default_target() -> Target {
    let (host, port, timeout) = ("localhost".into(), DEFAULT_PORT, Duration::from_secs(5));
    Target { host, port, timeout, family: None }
}
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// Which of cli6's flags a [`Flag`] is: the parser matches it whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Host,
    Port,
    Timeout,
    /// `-4` and `-6`: one of them at most.
    Family(Family),
    Count,
    Interval,
    Json,
}

/// cli6's own options, as `--help` lists them (`cmdline` adds `--help`,
/// `--version` and `--generate-man`). A table, an entry a flag: rustfmt
/// would spread each over five lines.
#[rustfmt::skip]
pub(crate) const FLAGS: &[Flag<Key>] = &[
    flag(Key::Host, "-H, --host HOST", "server name or address; every address it resolves to is \
        tried in turn").defaults_to("localhost"),
    flag(Key::Port, "-p, --port PORT", "server port").defaults_to("5006"),
    flag(Key::Timeout, "-t, --timeout SECS", "limit for each whole exchange: connecting, sending \
        and reading the reply").defaults_to("5"),
    flag(Key::Family(Family::V4), "-4, --ipv4", "use IPv4 addresses only"),
    flag(Key::Family(Family::V6), "-6, --ipv6", "use IPv6 addresses only"),
    flag(Key::Count, "-c, --count N", "probe like ping: N exchanges (0: until Ctrl-C), each with \
        its connect time, round-trip time and the offset of the server's clock from ours (server \
        minus ours; from four timestamps when serv6 runs with --send-time), then a summary with \
        the median offset and the offset of the probe with the smallest delay (both of the last \
        1000), each within ± half a delay; failures slow the probes down, up to one a second"),
    flag(Key::Interval, "-i, --interval SECS", "with --count: time between probes; \
        0 allowed").defaults_to("1"),
    flag(Key::Json, "--json", "write JSON Lines: one object per probe, then one for the summary; \
        without --count, one probe (python3 -m json.tool --json-lines reads it)"),
];

/// cli6's command line, its help and its manual page.
pub(crate) fn program() -> Program<Key> {
    Program {
        name: "cli6",
        synopsis: "[OPTIONS] [MESSAGE...]",
        about: format!(
            "Sends a message to serv6 and prints its reply, the time the server received it:\n  \
             {}\n\n\
             With MESSAGE words, sends them joined by spaces, once. Without, sends each line\n\
             of standard input as its own exchange, until end of input. CRLF line endings\n\
             are fine; a line longer than {MAX_LINE} bytes, or one whose message would\n\
             still end in a CR once its line ending is off (the server drops a CR before\n\
             the LF, so the count would be wrong), is reported and not sent.",
            reply_form(false)
        ),
        flags: FLAGS,
        after: "",
        facts: Vec::new(),
        section: 1,
        summary: "ask serv6 when it received a message",
        manual: include_str!("cli6.1.txt"),
    }
}

/// Parses cli6's arguments, without the program name.
pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut target = default_target();
    let (mut words, mut family) = (Vec::new(), None);
    let (mut count, mut interval, mut json) = (None, None, false);
    let mut parser = Parser::new(args, FLAGS);
    while let Some(arg) = parser.next()? {
        match arg {
            Arg::Value(word) => words.push(word),
            Arg::Info(info) => return Ok(Command::Info(info)),
            Arg::Flag(Key::Host) => target.host = parser.parsed::<HostArg>()?.0,
            Arg::Flag(Key::Port) => target.port = parser.number(1..=u64::from(u16::MAX))?,
            Arg::Flag(Key::Timeout) => target.timeout = parser.seconds(false)?,
            Arg::Flag(Key::Family(chosen)) => family = parser.one_of(family, chosen)?,
            Arg::Flag(Key::Count) => count = Some(parser.number(0..=u64::MAX)?),
            Arg::Flag(Key::Interval) => interval = Some(parser.seconds(true)?),
            Arg::Flag(Key::Json) => json = true,
        }
    }
    target.family = family.map(|(family, _)| family);
    let message = (!words.is_empty()).then(|| join(&words)).transpose()?;
    // `--json` alone is one probe: the one exchange, as JSON.
    let Some(count) = count.or(json.then_some(1)) else {
        if interval.is_some() {
            return Err(UsageError::Requires("--interval", "'--count' (probe mode)"));
        }
        return Ok(Command::Send { target, message });
    };
    let message = message.unwrap_or_else(|| PROBE_MESSAGE.to_vec());
    let probes = Probes { count, interval: interval.unwrap_or(DEFAULT_INTERVAL), json };
    Ok(Command::Probe { target, message, probes })
}

/// Joins the message words with spaces, refusing what cannot be one message.
fn join(words: &[OsString]) -> Result<Vec<u8>, UsageError> {
    let message = words.iter().map(|w| w.as_encoded_bytes()).collect::<Vec<_>>().join(&b' ');
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
            if let Some(text) = flag.default {
                let words = ["-c", "1", &format!("--{}", flag.long()), text];
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
            let long = format!("--{}", flag.long());
            let words = match flag.value() {
                Some("HOST") => vec![long, "localhost".into(), "-c1".into()],
                Some(_) => vec![long, "1".into(), "-c1".into()],
                None => vec![long, "-c1".into()],
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
        let (target, message) =
            sent(&["-H", "[::1]", "--port=7", "-t0.5", "que", "hora", "--", "-es"]);
        assert_eq!((target.host.as_str(), target.port), ("::1", 7));
        assert_eq!(target.timeout, Duration::from_millis(500));
        assert_eq!(message.as_deref(), Some(&b"que hora -es"[..]));
    }

    #[test]
    fn newlines_and_final_cr_are_refused() {
        assert!(parse_words(&["a\nb"]).unwrap_err().to_string().contains("newline"));
        assert!(parse_words(&["ab\r"]).unwrap_err().to_string().contains("carriage return"));
    }

    #[test]
    fn count_interval_and_json_make_a_probe() {
        let got = parse_words(&["-c", "3", "-i", "0", "--json", "-H", "::1"]).unwrap();
        let Command::Probe { target, message, probes } = got else { panic!("{got:?}") };
        assert_eq!(target.host, "::1");
        assert_eq!(message, PROBE_MESSAGE);
        assert_eq!(probes, Probes { count: 3, interval: Duration::ZERO, json: true });
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
            Ok(Command::Probe { probes: Probes { count: 1, json: true, .. }, .. })
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

    #[test]
    fn ipv4_and_ipv6_do_not_go_together() {
        let err = |words: &[&str]| parse_words(words).unwrap_err().to_string();
        assert_eq!(err(&["-4", "-6", "hola"]), "'-4' and '-6' do not go together");
        assert_eq!(err(&["-6", "-4"]), "'-6' and '-4' do not go together");
        assert_eq!(err(&["--ipv4", "-c1", "--ipv6"]), "'--ipv4' and '--ipv6' do not go together");
        let (target, _) = sent(&["-4", "--ipv4"]);
        assert_eq!(target.family, Some(Family::V4));
    }

    #[test]
    fn the_manual_has_every_flag_and_default() {
        crate::cmdline::tests::check_manual(&program());
    }
}
