//! A small command-line parser in the style of `lexopt`.
//!
//! The caller loops over [`Parser::next_arg`], matches short and long options,
//! and asks for an option's value with [`Parser::value`]. Every error names
//! the argument that caused it, so the binaries can print it as it is and
//! exit with status 2.

use std::ffi::OsString;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// One command-line argument, as the parser sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// `-x`, also each letter of a cluster such as `-qx`.
    Short(char),
    /// `--name`, also the name of `--name=value`.
    Long(String),
    /// A positional argument, or anything after `--`.
    Value(OsString),
}

impl Arg {
    /// Builds the error for an option or argument the program does not know.
    pub fn unexpected(&self) -> UsageError {
        match self {
            Arg::Short(c) => UsageError::new(format!("unknown option '-{c}'")),
            Arg::Long(name) => UsageError::new(format!("unknown option '--{name}'")),
            Arg::Value(value) => {
                UsageError::new(format!("unexpected argument '{}'", value.to_string_lossy()))
            }
        }
    }
}

/// A mistake in the command line: the message names the offending argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(String);

impl UsageError {
    /// Wraps a message that already names the argument at fault.
    pub fn new(message: impl Into<String>) -> Self {
        UsageError(message.into())
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Splits a command line into [`Arg`]s.
pub struct Parser {
    args: std::vec::IntoIter<OsString>,
    /// Letters still to come from a cluster such as `-qp5006`.
    cluster: Option<(String, usize)>,
    /// The value given with `--name=value`, and the option it belongs to.
    attached: Option<(String, OsString)>,
    /// The option most recently returned, for error messages about its value.
    last_option: String,
    only_values: bool,
}

impl Parser {
    /// Parses `args`, which must not include the program name.
    pub fn new(args: impl IntoIterator<Item = OsString>) -> Self {
        Parser {
            args: args.into_iter().collect::<Vec<_>>().into_iter(),
            cluster: None,
            attached: None,
            last_option: String::new(),
            only_values: false,
        }
    }

    /// Returns the next argument, or `None` when there are no more.
    pub fn next_arg(&mut self) -> Result<Option<Arg>, UsageError> {
        if let Some((option, _)) = self.attached.take() {
            return Err(UsageError::new(format!(
                "option '{option}' does not take a value"
            )));
        }
        if let Some(letter) = self.next_in_cluster() {
            return Ok(Some(self.short(letter)));
        }
        let Some(arg) = self.args.next() else {
            return Ok(None);
        };
        if self.only_values {
            return Ok(Some(Arg::Value(arg)));
        }
        let Some(text) = arg.to_str() else {
            if arg.as_encoded_bytes().starts_with(b"-") {
                return Err(UsageError::new(format!(
                    "option '{}' is not valid UTF-8",
                    arg.to_string_lossy()
                )));
            }
            return Ok(Some(Arg::Value(arg)));
        };
        if text == "--" {
            self.only_values = true;
            return self.next_arg();
        }
        if let Some(long) = text.strip_prefix("--") {
            return Ok(Some(self.long(long)));
        }
        if text.len() > 1 && text.starts_with('-') {
            self.cluster = Some((text.to_owned(), 1));
            return self.next_arg();
        }
        Ok(Some(Arg::Value(arg)))
    }

    /// Returns the value of the option just returned by [`Parser::next_arg`]:
    /// the rest of its cluster (`-p5006`), its `=value`, or the next argument.
    pub fn value(&mut self) -> Result<OsString, UsageError> {
        if let Some((_, value)) = self.attached.take() {
            return Ok(value);
        }
        if let Some((text, at)) = self.cluster.take() {
            if at < text.len() {
                return Ok(OsString::from(&text[at..]));
            }
        }
        self.args
            .next()
            .ok_or_else(|| UsageError::new(format!("option '{}' needs a value", self.last_option)))
    }

    /// Returns the value of the option just returned, parsed as a `T`.
    pub fn parsed<T: FromStr>(&mut self) -> Result<T, UsageError> {
        let value = self.value()?;
        let option = self.last_option.clone();
        value
            .to_str()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| invalid(&option, &value, "it is not a valid number"))
    }

    /// Returns the value of the option just returned as a duration in
    /// seconds (decimals allowed), refusing zero unless `allow_zero`.
    pub fn seconds(&mut self, allow_zero: bool) -> Result<Duration, UsageError> {
        let value = self.value()?;
        let option = self.last_option.clone();
        parse_seconds(&value, allow_zero).map_err(|why| invalid(&option, &value, why))
    }

    /// The option most recently returned, as the user wrote it (`--port`).
    pub fn option_name(&self) -> &str {
        &self.last_option
    }

    fn next_in_cluster(&mut self) -> Option<char> {
        let (text, at) = self.cluster.as_mut()?;
        let letter = text[*at..].chars().next();
        match letter {
            Some(c) => *at += c.len_utf8(),
            None => self.cluster = None,
        }
        letter
    }

    fn short(&mut self, letter: char) -> Arg {
        self.last_option = format!("-{letter}");
        Arg::Short(letter)
    }

    fn long(&mut self, long: &str) -> Arg {
        let (name, value) = match long.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (long, None),
        };
        self.last_option = format!("--{name}");
        if let Some(value) = value {
            self.attached = Some((self.last_option.clone(), OsString::from(value)));
        }
        Arg::Long(name.to_owned())
    }
}

/// Longest duration any option accepts: a day is far beyond any sensible
/// timeout and keeps arithmetic on `Instant`s far from overflow.
pub const MAX_SECONDS: f64 = 86_400.0;

fn parse_seconds(value: &OsString, allow_zero: bool) -> Result<Duration, &'static str> {
    let seconds: f64 = value
        .to_str()
        .and_then(|text| text.parse().ok())
        .filter(|s: &f64| s.is_finite())
        .ok_or("it is not a number of seconds")?;
    if seconds < 0.0 || (seconds == 0.0 && !allow_zero) {
        return Err(if allow_zero {
            "it must not be negative"
        } else {
            "it must be more than zero"
        });
    }
    if seconds > MAX_SECONDS {
        return Err("it must be at most 86400 seconds (one day)");
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn invalid(option: &str, value: &OsString, why: &str) -> UsageError {
    UsageError::new(format!(
        "invalid value '{}' for '{option}': {why}",
        value.to_string_lossy()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(args: &[&str]) -> Parser {
        Parser::new(args.iter().map(OsString::from))
    }

    fn all(args: &[&str]) -> Result<Vec<Arg>, UsageError> {
        let mut p = parser(args);
        let mut out = Vec::new();
        while let Some(arg) = p.next_arg()? {
            out.push(arg);
        }
        Ok(out)
    }

    #[test]
    fn splits_short_long_and_values() {
        let args = all(&["-q", "--help", "hola", "-", "--", "--port"]).unwrap();
        assert_eq!(
            args,
            vec![
                Arg::Short('q'),
                Arg::Long("help".into()),
                Arg::Value("hola".into()),
                Arg::Value("-".into()),
                Arg::Value("--port".into()),
            ]
        );
    }

    #[test]
    fn takes_values_in_every_spelling() {
        for spelling in [
            &["--port", "5006"][..],
            &["--port=5006"],
            &["-p", "5006"],
            &["-p5006"],
        ] {
            let mut p = parser(spelling);
            assert!(p.next_arg().unwrap().is_some());
            assert_eq!(p.parsed::<u16>().unwrap(), 5006, "{spelling:?}");
            assert_eq!(p.next_arg().unwrap(), None);
        }
    }

    #[test]
    fn clusters_short_flags() {
        assert_eq!(
            all(&["-qv"]).unwrap(),
            vec![Arg::Short('q'), Arg::Short('v')]
        );
    }

    #[test]
    fn missing_value_names_the_option() {
        let mut p = parser(&["--port"]);
        p.next_arg().unwrap();
        assert_eq!(
            p.value().unwrap_err().to_string(),
            "option '--port' needs a value"
        );
    }

    #[test]
    fn value_on_a_flag_is_refused() {
        let err = all(&["--quiet=yes"]).unwrap_err();
        assert_eq!(err.to_string(), "option '--quiet' does not take a value");
    }

    #[test]
    fn bad_numbers_name_option_and_value() {
        let mut p = parser(&["--port", "99999"]);
        p.next_arg().unwrap();
        assert_eq!(
            p.parsed::<u16>().unwrap_err().to_string(),
            "invalid value '99999' for '--port': it is not a valid number"
        );
    }

    #[test]
    fn seconds_accept_decimals_and_refuse_nonsense() {
        let secs = |text: &str, zero| {
            let mut p = parser(&["--t", text]);
            p.next_arg().unwrap();
            p.seconds(zero)
        };
        assert_eq!(secs("0.25", false).unwrap(), Duration::from_millis(250));
        assert_eq!(secs("0", true).unwrap(), Duration::ZERO);
        assert!(secs("0", false).is_err());
        assert!(secs("-1", true).is_err());
        assert!(secs("NaN", true).is_err());
        assert!(secs("inf", true).is_err());
        assert!(secs("1e9", true).is_err());
        assert!(secs("soon", true).is_err());
    }

    #[test]
    fn unknown_arguments_are_named() {
        assert_eq!(
            Arg::Long("frobnicate".into()).unexpected().to_string(),
            "unknown option '--frobnicate'"
        );
        assert_eq!(
            Arg::Short('z').unexpected().to_string(),
            "unknown option '-z'"
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_values_pass_through() {
        use std::os::unix::ffi::OsStringExt;
        let raw = OsString::from_vec(vec![0xff, b'a']);
        let mut p = Parser::new(vec![raw.clone()]);
        assert_eq!(p.next_arg().unwrap(), Some(Arg::Value(raw)));
    }
}
