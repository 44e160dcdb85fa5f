//! Command lines: each program's options defined once as [`Flag`]s, a small
//! parser in the style of `lexopt`, generic over what the values are
//! (each is read through its own `FromStr`, which says why it refuses one),
//! and typed usage errors. The help text is `help`'s, from the same flags.
//!
//! A program loops over [`Parser::next_flag`], matches each flag's `key`
//! (an enum of the program's own, so the compiler checks that every flag
//! is handled) and asks for its value with [`Parser::value`] and friends. `--help` is
//! rendered from the same [`Flag`] table, so an option and its description
//! cannot drift apart. Every error names the argument that caused it, so a
//! binary prints it as it is and exits with status 2.

use std::ffi::OsString;
use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

/// One option of one program; `key` says which, to the program's parser.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Flag<K: 'static> {
    pub key: K,
    pub short: Option<char>,
    pub long: &'static str,
    /// What the value is called in help (`PORT`); `None` for a switch.
    pub value: Option<&'static str>,
    pub help: &'static str,
    pub default: DefaultText,
}

/// How `--help` shows an option's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DefaultText {
    None,
    /// A value as the user would type it; a unit test of each program
    /// checks that it parses to the program's built-in default.
    Value(&'static str),
    /// A default that no single value expresses.
    Described(&'static str),
}

/// `-h, --help`, which every program has.
pub(crate) const fn help<K>(key: K) -> Flag<K> {
    Flag {
        key,
        short: Some('h'),
        long: "help",
        value: None,
        help: "print this help and exit",
        default: DefaultText::None,
    }
}

/// `-V, --version`, which every program has.
pub(crate) const fn version<K>(key: K) -> Flag<K> {
    Flag {
        key,
        short: Some('V'),
        long: "version",
        value: None,
        help: "print the version and exit",
        default: DefaultText::None,
    }
}

/// `--generate-man`, which every program has: `make install` uses it.
pub(crate) const fn generate_man<K>(key: K) -> Flag<K> {
    Flag {
        key,
        short: None,
        long: "generate-man",
        value: None,
        help: "print the manual page (roff) and exit",
        default: DefaultText::None,
    }
}

/// A mistake in the command line; its `Display` names the argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UsageError {
    UnknownOption(String),
    UnexpectedArgument(String),
    OptionNotUtf8(String),
    MissingValue {
        option: String,
    },
    UnwantedValue {
        option: String,
    },
    InvalidValue {
        option: String,
        value: String,
        why: Invalid,
    },
    /// The options `what` only make sense together with `needs`.
    Requires {
        what: &'static [&'static str],
        needs: &'static str,
    },
    /// The arguments together make no sense, for the program's own reason.
    Refused(String),
    /// One option's duration must be shorter than another's.
    NotShorter {
        option: &'static str,
        value: Duration,
        than: &'static str,
        limit: Duration,
    },
}

/// Why an option's value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalid {
    NotANumber,
    OutOfRange {
        min: u64,
        max: u64,
    },
    NotSeconds,
    Negative,
    NotPositive,
    OverMaxSeconds,
    UnderMinSeconds,
    NotUtf8,
    /// The value's own type refused it (through `FromStr`), saying why.
    Because(String),
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::NotANumber => f.write_str("it is not a valid number"),
            Invalid::OutOfRange { min, max } => write!(f, "it must be from {min} to {max}"),
            Invalid::NotSeconds => f.write_str("it is not a number of seconds"),
            Invalid::Negative => f.write_str("it must not be negative"),
            Invalid::NotPositive => f.write_str("it must be more than zero"),
            Invalid::OverMaxSeconds => write!(
                f,
                "it must be at most {} seconds (one day)",
                MAX_SECONDS.as_secs()
            ),
            Invalid::UnderMinSeconds => write!(
                f,
                "it must be at least {} seconds",
                MIN_SECONDS.as_secs_f64()
            ),
            Invalid::NotUtf8 => f.write_str("it is not valid UTF-8"),
            Invalid::Because(why) => f.write_str(why),
        }
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::UnknownOption(option) => write!(f, "unknown option '{option}'"),
            UsageError::UnexpectedArgument(arg) => write!(f, "unexpected argument '{arg}'"),
            UsageError::OptionNotUtf8(option) => write!(f, "option '{option}' is not valid UTF-8"),
            UsageError::MissingValue { option } => write!(f, "option '{option}' needs a value"),
            UsageError::UnwantedValue { option } => {
                write!(f, "option '{option}' does not take a value")
            }
            UsageError::InvalidValue { option, value, why } => {
                write!(f, "invalid value '{value}' for '{option}': {why}")
            }
            UsageError::Requires { what, needs } => {
                let verb = if what.len() > 1 { "go" } else { "goes" };
                let what: Vec<String> = what.iter().map(|option| format!("'{option}'")).collect();
                write!(f, "{} {verb} with {needs}", what.join(" and "))
            }
            UsageError::Refused(why) => f.write_str(why),
            UsageError::NotShorter {
                option,
                value,
                than,
                limit,
            } => write!(
                f,
                "'{option}' ({} s) must be shorter than '{than}' ({} s)",
                value.as_secs_f64(),
                limit.as_secs_f64()
            ),
        }
    }
}

impl std::error::Error for UsageError {}

/// Longest duration any option accepts: a day is far beyond any sensible
/// timeout and keeps arithmetic on `Instant`s far from overflow.
pub(crate) const MAX_SECONDS: Duration = Duration::from_secs(86_400);

/// Shortest nonzero duration any option accepts: shorter is no time at all
/// on a network, and would read as "0 s" in messages.
pub(crate) const MIN_SECONDS: Duration = Duration::from_millis(1);

/// What the parser found next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg<K: 'static> {
    /// One of the program's options.
    Flag(&'static Flag<K>),
    /// A positional argument, or anything after `--`.
    Value(OsString),
}

/// Where the parser is within the arguments.
#[derive(Debug)]
enum State {
    /// Between arguments.
    Ready,
    /// Inside a cluster of short options such as `-qp5006`: the text, and
    /// where the next letter starts.
    Cluster { text: String, at: usize },
    /// `--name=value` was just returned; the value waits to be asked for.
    Attached(OsString),
    /// After `--`: every argument is a value.
    OnlyValues,
}

/// Splits a command line into the program's flags and values.
pub(crate) struct Parser<K: 'static> {
    args: std::vec::IntoIter<OsString>,
    flags: &'static [Flag<K>],
    state: State,
    /// The option most recently returned, as written (`--port`, `-p`), for
    /// error messages about its value.
    last_option: String,
}

impl<K> Parser<K> {
    /// Parses `args`, which must not include the program name.
    pub fn new(args: impl IntoIterator<Item = OsString>, flags: &'static [Flag<K>]) -> Self {
        Parser {
            args: args.into_iter().collect::<Vec<_>>().into_iter(),
            flags,
            state: State::Ready,
            last_option: String::new(),
        }
    }

    /// Returns the next flag or value, or `None` when there are no more.
    /// A switch given a value (`--quiet=1`) is refused here.
    pub fn next_flag(&mut self) -> Result<Option<Arg<K>>, UsageError> {
        let arg = self.next_arg()?;
        if let Some(Arg::Flag(flag)) = arg {
            if flag.value.is_none() && matches!(self.state, State::Attached(_)) {
                return Err(UsageError::UnwantedValue {
                    option: self.last_option.clone(),
                });
            }
        }
        Ok(arg)
    }

    fn next_arg(&mut self) -> Result<Option<Arg<K>>, UsageError> {
        match std::mem::replace(&mut self.state, State::Ready) {
            State::Attached(_) => {
                return Err(UsageError::UnwantedValue {
                    option: self.last_option.clone(),
                })
            }
            State::Cluster { text, at } => {
                if let Some(letter) = text[at..].chars().next() {
                    let at = at + letter.len_utf8();
                    self.state = State::Cluster { text, at };
                    return self.short(letter).map(Some);
                }
            }
            State::OnlyValues => {
                self.state = State::OnlyValues;
                return Ok(self.args.next().map(Arg::Value));
            }
            State::Ready => {}
        }
        let Some(arg) = self.args.next() else {
            return Ok(None);
        };
        let Some(text) = arg.to_str() else {
            if arg.as_encoded_bytes().starts_with(b"-") {
                return Err(UsageError::OptionNotUtf8(lossy(&arg)));
            }
            return Ok(Some(Arg::Value(arg)));
        };
        if text == "--" {
            self.state = State::OnlyValues;
            return self.next_arg();
        }
        if let Some(long) = text.strip_prefix("--") {
            return self.long(long).map(Some);
        }
        if text.len() > 1 && text.starts_with('-') {
            self.state = State::Cluster {
                text: text.to_owned(),
                at: 1,
            };
            return self.next_arg();
        }
        Ok(Some(Arg::Value(arg)))
    }

    fn short(&mut self, letter: char) -> Result<Arg<K>, UsageError> {
        self.last_option = format!("-{letter}");
        let flag = self.flags.iter().find(|f| f.short == Some(letter));
        flag.map(Arg::Flag)
            .ok_or_else(|| UsageError::UnknownOption(self.last_option.clone()))
    }

    fn long(&mut self, long: &str) -> Result<Arg<K>, UsageError> {
        let (name, value) = match long.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (long, None),
        };
        self.last_option = format!("--{name}");
        let flag = self.flags.iter().find(|f| f.long == name);
        let flag = flag.ok_or_else(|| UsageError::UnknownOption(self.last_option.clone()))?;
        if let Some(value) = value {
            self.state = State::Attached(OsString::from(value));
        }
        Ok(Arg::Flag(flag))
    }

    /// The value of the option just returned: the rest of its cluster
    /// (`-p5006`), its `=value`, or the next argument.
    pub fn value(&mut self) -> Result<OsString, UsageError> {
        match std::mem::replace(&mut self.state, State::Ready) {
            State::Attached(value) => return Ok(value),
            State::Cluster { text, at } if at < text.len() => {
                return Ok(OsString::from(&text[at..]))
            }
            _ => {}
        }
        self.args.next().ok_or_else(|| UsageError::MissingValue {
            option: self.last_option.clone(),
        })
    }

    /// The value as UTF-8 text.
    pub fn text(&mut self) -> Result<String, UsageError> {
        let value = self.value()?;
        value
            .into_string()
            .map_err(|bad| self.invalid(&bad, Invalid::NotUtf8))
    }

    /// The value as a whole number within `range`, as a `T` (which must
    /// hold every number in the range).
    pub fn number<T: TryFrom<u64>>(&mut self, range: RangeInclusive<u64>) -> Result<T, UsageError> {
        let value = self.value()?;
        let (min, max) = (*range.start(), *range.end());
        let number = value
            .to_str()
            .filter(|t| !t.starts_with('+'))
            .and_then(|t| t.parse::<i128>().ok())
            .ok_or_else(|| self.invalid(&value, Invalid::NotANumber))?;
        u64::try_from(number)
            .ok()
            .filter(|n| range.contains(n))
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| self.invalid(&value, Invalid::OutOfRange { min, max }))
    }

    /// The value as a duration in seconds (decimals allowed), refusing
    /// zero unless `allow_zero`.
    pub fn seconds(&mut self, allow_zero: bool) -> Result<Duration, UsageError> {
        let value = self.value()?;
        parse_seconds(&value, allow_zero).map_err(|why| self.invalid(&value, why))
    }

    /// The value as [`Parser::seconds`] reads it, or `None` for `off`.
    pub fn seconds_or_off(&mut self) -> Result<Option<Duration>, UsageError> {
        let value = self.value()?;
        if value == "off" {
            return Ok(None);
        }
        parse_seconds(&value, false)
            .map(Some)
            .map_err(|why| self.invalid(&value, why))
    }

    /// An error about the value of the option just returned.
    /// The value as a `T`, through its `FromStr`; a refusal keeps the
    /// reason `T` gives.
    pub fn parsed<T: std::str::FromStr>(&mut self) -> Result<T, UsageError>
    where
        T::Err: fmt::Display,
    {
        let text = self.text()?;
        text.parse()
            .map_err(|why: T::Err| self.invalid(&text.into(), Invalid::Because(why.to_string())))
    }

    pub fn invalid(&self, value: &OsString, why: Invalid) -> UsageError {
        UsageError::InvalidValue {
            option: self.last_option.clone(),
            value: lossy(value),
            why,
        }
    }
}

fn lossy(text: &OsString) -> String {
    text.to_string_lossy().into_owned()
}

fn parse_seconds(value: &OsString, allow_zero: bool) -> Result<Duration, Invalid> {
    let seconds: f64 = value
        .to_str()
        .and_then(|text| text.parse().ok())
        .filter(|s: &f64| s.is_finite())
        .ok_or(Invalid::NotSeconds)?;
    if seconds < 0.0 {
        return Err(if allow_zero {
            Invalid::Negative
        } else {
            Invalid::NotPositive
        });
    }
    if seconds == 0.0 && !allow_zero {
        return Err(Invalid::NotPositive);
    }
    if seconds > MAX_SECONDS.as_secs_f64() {
        return Err(Invalid::OverMaxSeconds);
    }
    if seconds > 0.0 && seconds < MIN_SECONDS.as_secs_f64() {
        return Err(Invalid::UnderMinSeconds);
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small table for the parser's tests and the help's.
    pub(crate) const FLAGS: &[Flag<()>] = &[
        Flag {
            key: (),
            short: Some('p'),
            long: "port",
            value: Some("PORT"),
            help: "a port",
            default: DefaultText::Value("5006"),
        },
        Flag {
            key: (),
            short: Some('q'),
            long: "quiet",
            value: None,
            help:
                "say less; this help text is long enough that it must be wrapped onto a second line",
            default: DefaultText::None,
        },
        Flag {
            key: (),
            short: None,
            long: "t",
            value: Some("SECS"),
            help: "a time",
            default: DefaultText::Described("none"),
        },
    ];

    fn parser(args: &[&str]) -> Parser<()> {
        Parser::new(args.iter().map(OsString::from), FLAGS)
    }

    /// Every argument, flags by their long name followed by their value.
    fn all(args: &[&str]) -> Result<Vec<String>, UsageError> {
        let mut p = parser(args);
        let mut out = Vec::new();
        while let Some(arg) = p.next_flag()? {
            match arg {
                Arg::Flag(flag) => {
                    out.push(format!("--{}", flag.long));
                    if flag.value.is_some() {
                        out.push(lossy(&p.value()?));
                    }
                }
                Arg::Value(value) => out.push(lossy(&value)),
            }
        }
        Ok(out)
    }

    fn err(args: &[&str]) -> String {
        all(args).unwrap_err().to_string()
    }

    #[test]
    fn splits_flags_and_values() {
        let args = all(&["-q", "--quiet", "hola", "-", "-p7", "--", "--port"]).unwrap();
        assert_eq!(
            args,
            ["--quiet", "--quiet", "hola", "-", "--port", "7", "--port"]
        );
        assert_eq!(all(&["-qq"]).unwrap(), ["--quiet", "--quiet"]);
    }

    #[test]
    fn takes_values_in_every_spelling() {
        for spelling in [
            &["--port", "5006"][..],
            &["--port=5006"],
            &["-p", "5006"],
            &["-p5006"],
            &["-qp5006"],
        ] {
            let mut p = parser(spelling);
            while let Some(Arg::Flag(flag)) = p.next_flag().unwrap() {
                if flag.long == "port" {
                    assert_eq!(p.number::<u16>(0..=65535).unwrap(), 5006, "{spelling:?}");
                }
            }
        }
    }

    #[test]
    fn errors_name_the_argument() {
        assert_eq!(err(&["--port"]), "option '--port' needs a value");
        assert_eq!(
            err(&["--quiet=yes"]),
            "option '--quiet' does not take a value"
        );
        assert_eq!(err(&["--frobnicate"]), "unknown option '--frobnicate'");
        assert_eq!(err(&["-qz"]), "unknown option '-z'");
    }

    #[test]
    fn numbers_say_their_range() {
        let number = |text: &str| {
            let mut p = parser(&["--port", text]);
            p.next_flag().unwrap();
            p.number::<u16>(1..=65535).map_err(|e| e.to_string())
        };
        assert_eq!(number("65535"), Ok(65535));
        let range = "invalid value '{}' for '--port': it must be from 1 to 65535";
        for out in ["0", "65536", "-1", "99999999999999999999"] {
            assert_eq!(number(out), Err(range.replace("{}", out)));
        }
        for junk in ["", "+5", "5x", "0x10"] {
            assert!(number(junk)
                .unwrap_err()
                .ends_with("it is not a valid number"));
        }
    }

    #[test]
    fn seconds_accept_decimals_and_refuse_nonsense() {
        let secs = |text: &str, zero| {
            let mut p = parser(&["--t", text]);
            p.next_flag().unwrap();
            p.seconds(zero)
        };
        assert_eq!(secs("0.25", false).unwrap(), Duration::from_millis(250));
        assert_eq!(secs("0", true).unwrap(), Duration::ZERO);
        assert!(secs("0", false).is_err());
        assert!(secs("-1", true).is_err());
        assert!(secs("NaN", true).is_err());
        assert!(secs("inf", true).is_err());
        assert!(secs("soon", true).is_err());
        assert_eq!(
            secs("1e9", true).unwrap_err().to_string(),
            "invalid value '1e9' for '--t': it must be at most 86400 seconds (one day)"
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_values_pass_through() {
        use std::os::unix::ffi::OsStringExt;
        let raw = OsString::from_vec(vec![0xff, b'a']);
        let mut p = Parser::new(vec![raw.clone()], FLAGS);
        assert_eq!(p.next_flag().unwrap(), Some(Arg::Value(raw)));
    }
}
