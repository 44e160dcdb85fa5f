//! Command lines, for both programs: each program's options as a table of
//! [`Flag`]s; a small parser in the style of `lexopt`, which reads each value
//! through its own `FromStr` (which says why it refuses one) and fails with a
//! [`UsageError`] in words; and, from the same table, `--help`, the usage line
//! of an error, and the manual page. How a program ends ([`Status`]) is here
//! too.
//!
//! A program loops over [`Parser::next`], matches each flag's key (an enum of
//! its own, so the compiler checks that every flag is handled) and asks for
//! its value with [`Parser::parsed`] and friends. Every error names the
//! argument that caused it, so a program prints it as it is, in one line, and
//! exits with status 2.
//!
//! A manual page is written from the program's [`Program`] and the plain text
//! of its sections after OPTIONS, kept in a text file next to the program: a
//! line `# HEADING` starts a section, blank lines separate paragraphs, the
//! lines of a paragraph are joined, and a line indented by two spaces is shown
//! as it is (an example).

use crate::timestamp::Timestamp;
use std::ffi::{OsStr, OsString};
use std::fmt::{self, Write as _};
use std::ops::RangeInclusive;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

/// How a program ended, and the exit status that says so. What each means
/// for each program is its manual's EXIT STATUS section, and help's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// It did what was asked.
    Success = 0,
    /// It could not (the network, the system, a refused reply).
    Failure = 1,
    /// It was asked wrongly (a bad option or value).
    Usage = 2,
}

impl Status {
    /// The number the shell sees.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> ExitCode {
        ExitCode::from(status.code())
    }
}

/// One option of one program.
pub(crate) struct Flag<K: 'static> {
    /// Which option, to the program's parser.
    pub key: K,
    /// As help shows them: `-b, --bind ADDR`, `--quiet`. The parser reads
    /// from them the names and whether a value follows.
    pub names: &'static str,
    /// What it does.
    pub help: &'static str,
    /// Its default, as help shows it (`5006`), if it has one to show.
    pub default: Option<&'static str>,
}

impl<K: Copy> Flag<K> {
    /// The flag, with the default help shows.
    pub const fn defaults_to(self, default: &'static str) -> Flag<K> {
        Flag { default: Some(default), ..self }
    }

    /// What help calls its value, if it takes one: `ADDR`.
    pub fn value(&self) -> Option<&'static str> {
        self.names.rsplit(' ').next().filter(|word| !word.starts_with('-'))
    }
}

#[cfg(test)]
impl<K> Flag<K> {
    /// The long name, as `--name` and `--name=value` give it: `bind`.
    pub fn long(&self) -> &'static str {
        self.names.split(' ').find_map(|name| name.strip_prefix("--")).unwrap_or_default()
    }
}

/// A flag; `names` and `help` as [`Flag`] says.
pub(crate) const fn flag<K>(key: K, names: &'static str, help: &'static str) -> Flag<K> {
    Flag { key, names, help, default: None }
}

/// What every program can be asked for instead of its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Info {
    Help,
    Version,
    /// The manual page: `make install` installs what it prints.
    Manual,
}

/// The options every program has, after its own.
#[rustfmt::skip]
const INFO: &[Flag<Info>] = &[
    flag(Info::Help, "-h, --help", "print this help and exit"),
    flag(Info::Version, "-V, --version", "print the version and exit"),
    flag(Info::Manual, "--generate-man", "print the manual page (roff) and exit"),
];

/// A mistake in the command line, in words that name the argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UsageError {
    /// The first option only makes sense with what the second says.
    Requires(&'static str, &'static str),
    /// Anything else: why, as the user reads it.
    Refused(String),
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::Requires(what, needs) => write!(f, "'{what}' goes with {needs}"),
            UsageError::Refused(why) => f.write_str(why),
        }
    }
}

/// Longest duration any option accepts: a day is far beyond any sensible
/// timeout and keeps arithmetic on `Instant`s far from overflow.
pub(crate) const MAX_SECONDS: Duration = Duration::from_secs(86_400);

/// Shortest nonzero duration any option accepts: shorter is no time at all
/// on a network, and would read as "0 s" in messages.
pub(crate) const MIN_SECONDS: Duration = Duration::from_millis(1);

/// What the parser found next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg<K> {
    /// One of the program's own options, by its key.
    Flag(K),
    /// One of the options every program has.
    Info(Info),
    /// A positional argument, or anything after `--`.
    Value(OsString),
}

/// Splits a command line into the program's flags and values.
pub(crate) struct Parser<K: 'static> {
    args: std::vec::IntoIter<OsString>,
    flags: &'static [Flag<K>],
    /// What is left of the argument being read: the value of a
    /// `--name=value`, or the letters of a cluster of short options, as
    /// `p5006` after the `q` of `-qp5006` (the value of `-p`, if it takes one).
    rest: Option<String>,
    /// After `--`, every argument is a value.
    only_values: bool,
    /// The option most recently returned, as written (`--port`, `-p`), for
    /// errors about its value.
    option: String,
}

impl<K: Copy> Parser<K> {
    /// Parses `args`, which must not include the program name.
    pub fn new(args: impl IntoIterator<Item = OsString>, flags: &'static [Flag<K>]) -> Self {
        let args = args.into_iter().collect::<Vec<_>>().into_iter();
        Parser { args, flags, rest: None, only_values: false, option: String::new() }
    }

    /// Returns the next flag or value, or `None` when there are no more.
    /// A flag that takes a value has it read (by [`Parser::value`] or a
    /// reader built on it) before the next call.
    pub fn next(&mut self) -> Result<Option<Arg<K>>, UsageError> {
        if let Some(mut letters) = self.rest.take().filter(|letters| !letters.is_empty()) {
            let letter = letters.remove(0);
            self.rest = (!letters.is_empty()).then_some(letters);
            return Ok(Some(self.find(format!("-{letter}"))?.0));
        }
        let Some(arg) = self.args.next() else { return Ok(None) };
        let text = match arg.to_str() {
            _ if self.only_values => return Ok(Some(Arg::Value(arg))),
            None if arg.as_encoded_bytes().starts_with(b"-") => {
                let arg = arg.to_string_lossy();
                return Err(UsageError::Refused(format!("option '{arg}' is not valid UTF-8")));
            }
            Some(text) if text.starts_with('-') && text.len() > 1 => text,
            _ => return Ok(Some(Arg::Value(arg))),
        };
        if text == "--" {
            self.only_values = true;
            return self.next();
        }
        let Some(long) = text.strip_prefix("--") else {
            self.rest = Some(text[1..].to_owned());
            return self.next();
        };
        let (name, value) = long.split_once('=').map_or((long, None), |(name, v)| (name, Some(v)));
        let (arg, takes_value) = self.find(format!("--{name}"))?;
        if value.is_some() && !takes_value {
            let option = &self.option;
            return Err(UsageError::Refused(format!("option '{option}' does not take a value")));
        }
        self.rest = value.map(str::to_owned);
        Ok(Some(arg))
    }

    /// The option written `option`, the program's own or a common one, and
    /// whether it takes a value.
    fn find(&mut self, option: String) -> Result<(Arg<K>, bool), UsageError> {
        // Its names, as help shows them, hold it as written: `-b` or `--bind`.
        let named = |names: &str| names.split([',', ' ']).any(|name| name == option);
        let own = self.flags.iter().find(|f| named(f.names)).map(|f| (Arg::Flag(f.key), f.value()));
        let info = INFO.iter().find(|f| named(f.names)).map(|f| (Arg::Info(f.key), f.value()));
        let Some((arg, value)) = own.or(info) else {
            return Err(UsageError::Refused(format!("unknown option '{option}'")));
        };
        self.option = option;
        Ok((arg, value.is_some()))
    }

    /// The value of the option just returned: its `=value`, the rest of its
    /// cluster (`-p5006`), or the next argument.
    pub fn value(&mut self) -> Result<OsString, UsageError> {
        let value = self.rest.take().map(OsString::from).or_else(|| self.args.next());
        value.ok_or_else(|| UsageError::Refused(format!("option '{}' needs a value", self.option)))
    }

    /// The value, read by `by`, or an error that says why `by` refused it.
    fn read<T>(&mut self, by: impl FnOnce(&OsStr) -> Result<T, String>) -> Result<T, UsageError> {
        let value = self.value()?;
        by(&value).map_err(|why| {
            let (value, option) = (value.to_string_lossy(), &self.option);
            UsageError::Refused(format!("invalid value '{value}' for '{option}': {why}"))
        })
    }

    /// The value as a `T`, through its `FromStr`; a refusal keeps the
    /// reason `T` gives.
    pub fn parsed<T: std::str::FromStr<Err: fmt::Display>>(&mut self) -> Result<T, UsageError> {
        self.read(|value| {
            let text = value.to_str().ok_or("it is not valid UTF-8")?;
            text.parse().map_err(|why: T::Err| why.to_string())
        })
    }

    /// The value as a whole number within `range`, as a `T` (which must
    /// hold every number in the range).
    pub fn number<T: TryFrom<u64>>(&mut self, range: RangeInclusive<u64>) -> Result<T, UsageError> {
        self.read(|value| {
            let text = value.to_str().filter(|t| !t.starts_with('+'));
            let number = text.and_then(|t| t.parse::<i128>().ok());
            let number = number.ok_or("it is not a valid number")?;
            let within = u64::try_from(number).ok().filter(|n| range.contains(n));
            let (min, max) = range.into_inner();
            within.and_then(|n| n.try_into().ok()).ok_or(format!("it must be from {min} to {max}"))
        })
    }

    /// The value as a duration in seconds (decimals allowed), refusing
    /// zero unless `zero` allows it.
    pub fn seconds(&mut self, zero: bool) -> Result<Duration, UsageError> {
        self.read(|value| seconds(value, zero))
    }

    /// The value as [`Parser::seconds`] reads it, or `None` for `off`.
    pub fn seconds_or_off(&mut self) -> Result<Option<Duration>, UsageError> {
        self.read(|value| (value != "off").then(|| seconds(value, false)).transpose())
    }

    /// For options of which at most one may be given, as `-4` and `-6`:
    /// `chosen`, with how its option was written, unless `earlier` chose
    /// otherwise.
    pub fn one_of<T: PartialEq>(
        &self,
        earlier: Option<(T, String)>,
        chosen: T,
    ) -> Result<Option<(T, String)>, UsageError> {
        let option = self.option.clone();
        match earlier {
            Some((other, first)) if other != chosen => {
                Err(UsageError::Refused(format!("'{first}' and '{option}' do not go together")))
            }
            _ => Ok(Some((chosen, option))),
        }
    }
}

/// A duration in seconds, decimals allowed: zero only if `zero` allows it,
/// else from [`MIN_SECONDS`]; at most [`MAX_SECONDS`].
fn seconds(value: &OsStr, zero: bool) -> Result<Duration, String> {
    let seconds = value.to_str().and_then(|text| text.parse::<f64>().ok());
    let seconds = seconds.filter(|s| s.is_finite()).ok_or("it is not a number of seconds")?;
    let (max, min) = (MAX_SECONDS.as_secs_f64(), MIN_SECONDS.as_secs_f64());
    match seconds {
        s if s < 0.0 && zero => Err("it must not be negative".into()),
        s if s < 0.0 || (s == 0.0 && !zero) => Err("it must be more than zero".into()),
        s if s > max => Err(format!("it must be at most {max} seconds (one day)")),
        s if s > 0.0 && s < min => Err(format!("it must be at least {min} seconds")),
        s => Ok(Duration::from_secs_f64(s)),
    }
}

/// A program's command line and manual: enough to parse its arguments and
/// to write its help and its manual page.
pub(crate) struct Program<K: 'static> {
    pub name: &'static str,
    /// What follows the name in a usage line: `[OPTIONS]`.
    pub synopsis: &'static str,
    /// What it does: before the options in help, the manual's DESCRIPTION.
    pub about: String,
    pub flags: &'static [Flag<K>],
    /// What help says after the options, before the exit statuses.
    pub after: &'static str,
    /// Facts that help and the manual take from the code that keeps them:
    /// each `{name}` in their texts becomes its text.
    pub facts: Vec<(&'static str, String)>,
    /// The manual's section: 1 for user commands, 8 for daemons.
    pub section: u8,
    /// The manual's NAME line says `serv6 \- <this>`.
    pub summary: &'static str,
    /// The manual's sections after OPTIONS, ending in EXIT STATUS: the
    /// plain text of a file (see the module's documentation).
    pub manual: &'static str,
}

/// Where the help text starts after the option names.
const HELP_COLUMN: usize = 24;
const HELP_WIDTH: usize = 80;

impl<K> Program<K> {
    /// What `info` asks for: the help, the version or the manual page.
    pub fn info(&self, info: Info) -> String {
        match info {
            Info::Help => self.help(),
            Info::Version => format!("{} {}", self.name, env!("CARGO_PKG_VERSION")),
            Info::Manual => self.manual(),
        }
    }

    /// `text` with its facts filled in.
    fn fill(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (name, fact) in &self.facts {
            text = text.replace(&format!("{{{name}}}"), fact);
        }
        text
    }

    /// Every option's names, help and default: the program's own, then the
    /// common ones.
    fn options(&self) -> impl Iterator<Item = (&'static str, String, Option<&'static str>)> + '_ {
        let own = self.flags.iter().map(|f| (f.names, self.fill(f.help), f.default));
        own.chain(INFO.iter().map(|f| (f.names, f.help.to_owned(), None)))
    }

    /// The text of `--help`.
    pub fn help(&self) -> String {
        let (name, synopsis, about) = (self.name, self.synopsis, self.fill(&self.about));
        let mut out = format!("Usage: {name} {synopsis}\n\n{about}\n\nOptions:\n");
        for (names, help, default) in self.options() {
            let indent = if names.starts_with("--") { 6 } else { 2 };
            let help = default.map_or(help.clone(), |d| format!("{help} (default {d})"));
            push_wrapped(&mut out, &format!("{:indent$}{names}", ""), &help, HELP_COLUMN);
        }
        let sections = self.sections();
        let exit = sections.iter().find(|s| s.0 == "EXIT STATUS");
        let exit = exit.map_or("", |(_, text)| text.trim_end());
        out.push('\n');
        let after = self.fill(self.after) + "\n\nExit status: " + exit;
        for paragraph in after.split("\n\n").filter(|p| !p.trim().is_empty()) {
            push_wrapped(&mut out, "", paragraph, 0);
        }
        out.pop();
        out
    }

    /// The line printed for a usage error.
    pub fn usage_error(&self, error: &dyn fmt::Display) -> String {
        let (name, synopsis) = (self.name, self.synopsis);
        format!("{error} (usage: {name} {synopsis}; see '{name} --help')")
    }

    /// The sections of the manual's text, as headings and paragraphs whose
    /// lines are joined.
    fn sections(&self) -> Vec<(String, String)> {
        let prose = |line: &str| !line.is_empty() && !line.starts_with("  ");
        let mut sections: Vec<(String, String)> = Vec::new();
        for line in self.fill(self.manual).lines() {
            if let Some(heading) = line.strip_prefix("# ") {
                sections.push((heading.to_owned(), String::new()));
            } else if let Some((_, text)) = sections.last_mut() {
                // Prose after prose: the paragraph goes on, on the same line.
                if prose(line) && text.lines().last().is_some_and(prose) {
                    text.replace_range(text.len() - 1.., " ");
                }
                text.push_str(line);
                text.push('\n');
            }
        }
        sections
    }

    /// The manual page, in roff with the `man` macros.
    pub fn manual(&self) -> String {
        let (name, version) = (self.name, env!("CARGO_PKG_VERSION"));
        let kind = if self.section == 8 { "System Manager's Manual" } else { "User Commands" };
        let (title, section, date) = (name.to_uppercase(), self.section, date());
        let (summary, synopsis) = (escape(self.summary), escape(self.synopsis));
        let mut out = format!(
            ".TH {title} {section} {date} \"{name} {version}\" \"{kind}\"\n.nh\n.SH NAME\n\
             {name} \\- {summary}\n.SH SYNOPSIS\n.B {name}\n{synopsis}\n.SH DESCRIPTION\n"
        );
        push_text(&mut out, &self.fill(&self.about));
        out.push_str(".SH OPTIONS\n");
        for (names, help, default) in self.options() {
            // `-b, --bind ADDR`: the names in bold, the value in italics.
            let names = names.split(' ').map(|word| match word.strip_suffix(',') {
                Some(name) => format!("\\fB{}\\fR,", escape(name)),
                None if word.starts_with('-') => format!("\\fB{}\\fR", escape(word)),
                None => format!("\\fI{}\\fR", escape(word)),
            });
            let names = names.collect::<Vec<_>>().join(" ");
            let default = default.map_or(String::new(), |text| format!(" Default: {text}."));
            let _ = writeln!(out, ".TP\n{names}\n{}", escape(&(sentence(&help) + &default)));
        }
        for (heading, text) in self.sections() {
            let _ = writeln!(out, ".SH {heading}");
            push_text(&mut out, text.trim_end());
        }
        out
    }
}

/// Appends `names`, then the words of `text` wrapped into the help column.
fn push_wrapped(out: &mut String, names: &str, text: &str, column: usize) {
    let mut line = names.to_owned();
    if column > 0 && line.len() + 2 > column {
        let _ = writeln!(out, "{line}");
        line.clear();
    }
    // Once a word is on it, the line is longer than the column.
    for word in text.split_whitespace() {
        if line.len() > column && line.len() + 1 + word.len() > HELP_WIDTH {
            let _ = writeln!(out, "{line}");
            line.clear();
        }
        if line.len() < column {
            line = format!("{line:column$}");
        } else if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    let _ = writeln!(out, "{line}");
}

/// The day this version was released, as manual pages and the Debian
/// changelog date it (`contrib/debian/build.sh` reads it from the page).
/// Set it with the version in Cargo.toml.
const RELEASE_DATE: &str = "2026-12-01";

/// The page's date: the day of `SOURCE_DATE_EPOCH` when a build sets it,
/// else the version's release date; never the day of the build, so that
/// the same version always has the same page.
fn date() -> String {
    let epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
    let secs = epoch.and_then(|text| text.trim().parse().ok());
    let stamp = secs.and_then(|s| Timestamp::from_system_time(UNIX_EPOCH + Duration::from_secs(s)));
    stamp.map_or(RELEASE_DATE.into(), |stamp| stamp.to_rfc3339().as_str()[..10].into())
}

/// The help text as a sentence: capitalised, ending in a full stop.
fn sentence(help: &str) -> String {
    let (first, rest) = help.split_at(help.chars().next().map_or(0, char::len_utf8));
    first.to_uppercase() + rest.trim_end_matches('.') + "."
}

/// Plain text as paragraphs; indented lines kept as they are, unfilled.
fn push_text(out: &mut String, text: &str) {
    for line in text.lines() {
        let _ = match line.strip_prefix("  ") {
            _ if line.is_empty() => writeln!(out, ".PP"),
            Some(text) => writeln!(out, ".nf\n.RS 4\n{}\n.RE\n.fi", escape(text.trim_start())),
            None => writeln!(out, "{}", escape(line)),
        };
    }
}

/// Text that roff prints as it is: backslashes and minus signs escaped,
/// and a leading dot or quote kept from being read as a request.
fn escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    let request = escaped.starts_with(['.', '\'']);
    (if request { "\\&" } else { "" }).to_owned() + &escaped
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small table for the parser's tests and the help's.
    const FLAGS: &[Flag<char>] = &[
        flag('p', "-p, --port PORT", "a port").defaults_to("5006"),
        flag(
            'q',
            "-q, --quiet",
            "say less; this help text is long enough that it must be wrapped onto a second line",
        ),
        flag('t', "--t SECS", "a time").defaults_to("none"),
    ];

    fn parser(args: &[&str]) -> Parser<char> {
        Parser::new(args.iter().map(OsString::from), FLAGS)
    }

    fn lossy(text: &OsStr) -> String {
        text.to_string_lossy().into_owned()
    }

    /// Every argument, flags by their long name followed by their value.
    fn all(args: &[&str]) -> Result<Vec<String>, UsageError> {
        let mut p = parser(args);
        let mut out = Vec::new();
        while let Some(arg) = p.next()? {
            match arg {
                Arg::Flag(key) => {
                    let flag = FLAGS.iter().find(|f| f.key == key).unwrap();
                    out.push(format!("--{}", flag.long()));
                    if flag.value().is_some() {
                        out.push(lossy(&p.value()?));
                    }
                }
                Arg::Info(info) => out.push(format!("{info:?}")),
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
        assert_eq!(args, ["--quiet", "--quiet", "hola", "-", "--port", "7", "--port"]);
        assert_eq!(all(&["-qq"]).unwrap(), ["--quiet", "--quiet"]);
        assert_eq!(all(&["-h", "--version"]).unwrap(), ["Help", "Version"]);
        assert_eq!(all(&["--generate-man"]).unwrap(), ["Manual"]);
    }

    #[test]
    fn takes_values_in_every_spelling() {
        for spelling in
            [&["--port", "5006"][..], &["--port=5006"], &["-p", "5006"], &["-p5006"], &["-qp5006"]]
        {
            let mut p = parser(spelling);
            while let Some(Arg::Flag(key)) = p.next().unwrap() {
                if key == 'p' {
                    assert_eq!(p.number::<u16>(0..=65535).unwrap(), 5006, "{spelling:?}");
                }
            }
        }
    }

    #[test]
    fn errors_name_the_argument() {
        assert_eq!(err(&["--port"]), "option '--port' needs a value");
        assert_eq!(err(&["--quiet=yes"]), "option '--quiet' does not take a value");
        assert_eq!(err(&["--help=1"]), "option '--help' does not take a value");
        assert_eq!(err(&["--frobnicate"]), "unknown option '--frobnicate'");
        assert_eq!(err(&["-qz"]), "unknown option '-z'");
    }

    #[test]
    fn numbers_say_their_range() {
        let number = |text: &str| {
            let mut p = parser(&["--port", text]);
            p.next().unwrap();
            p.number::<u16>(1..=65535).map_err(|e| e.to_string())
        };
        assert_eq!(number("65535"), Ok(65535));
        let range = "invalid value '{}' for '--port': it must be from 1 to 65535";
        for out in ["0", "65536", "-1", "99999999999999999999"] {
            assert_eq!(number(out), Err(range.replace("{}", out)));
        }
        for junk in ["", "+5", "5x", "0x10"] {
            assert!(number(junk).unwrap_err().ends_with("it is not a valid number"));
        }
    }

    #[test]
    fn seconds_accept_decimals_and_refuse_nonsense() {
        let secs = |text: &str, zero| {
            let mut p = parser(&["--t", text]);
            p.next().unwrap();
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

    #[test]
    fn one_of_refuses_a_contradiction_by_its_spellings() {
        let mut p = parser(&["-q", "--quiet", "--port", "1"]);
        p.next().unwrap();
        let first = p.one_of(None, 1).unwrap();
        p.next().unwrap();
        let again = p.one_of(first, 1).unwrap();
        assert_eq!(again, Some((1, "--quiet".into())));
        p.next().unwrap();
        assert_eq!(
            p.one_of(again, 2).unwrap_err().to_string(),
            "'--quiet' and '--port' do not go together"
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_values_pass_through() {
        use std::os::unix::ffi::OsStringExt;
        let raw = OsString::from_vec(vec![0xff, b'a']);
        let mut p = Parser::new(vec![raw.clone()], FLAGS);
        assert_eq!(p.next().unwrap(), Some(Arg::Value(raw)));
    }

    fn program() -> Program<char> {
        Program {
            name: "x",
            synopsis: "[OPTIONS]",
            about: "Does x.".into(),
            flags: FLAGS,
            after: "Bye.\n",
            facts: Vec::new(),
            section: 1,
            summary: "do x",
            manual: "# EXAMPLES\nRun it, with a line\nwrapped:\n  x -q\n\nOr not.\n\n\
                     # EXIT STATUS\n0 when done; 1 when not; 2 for bad usage.\n",
        }
    }

    #[test]
    fn help_lists_every_flag_with_its_default_wrapped() {
        let help = program().help();
        assert!(help.starts_with("Usage: x [OPTIONS]\n\nDoes x.\n\nOptions:\n"), "{help}");
        assert!(help.contains("\n  -p, --port PORT       a port (default 5006)\n"), "{help}");
        assert!(help.contains("\n      --t SECS          a time (default none)\n"), "{help}");
        assert!(help.lines().all(|l| l.len() <= HELP_WIDTH), "{help}");
        assert!(help.contains("\n                        wrapped onto a second line\n"), "{help}");
        assert!(help.contains("\n  -h, --help            print this help and exit\n"), "{help}");
        assert!(
            help.ends_with("\nBye.\nExit status: 0 when done; 1 when not; 2 for bad usage."),
            "{help}"
        );
    }

    #[test]
    fn roff_specials_are_escaped() {
        assert_eq!(escape(r"a\b-c"), r"a\eb\-c");
        assert_eq!(escape(".not a request"), r"\&.not a request");
        assert_eq!(sentence("print this"), "Print this.");
    }

    #[test]
    fn the_page_has_every_flag_its_default_and_the_text() {
        let page = program().manual();
        for flag in FLAGS.iter().map(Flag::long).chain(INFO.iter().map(Flag::long)) {
            let long = format!("\\fB\\-\\-{}\\fR", escape(flag));
            assert!(page.contains(&long), "{long}: {page}");
        }
        assert!(page
            .contains("\n\\fB\\-p\\fR, \\fB\\-\\-port\\fR \\fIPORT\\fR\nA port. Default: 5006.\n"));
        let text = ".SH EXAMPLES\nRun it, with a line wrapped:\n.nf\n.RS 4\nx \\-q\n.RE\n.fi\n\
                    .PP\nOr not.\n.SH EXIT STATUS\n0 when done; 1 when not; 2 for bad usage.\n";
        assert!(page.ends_with(text), "{page}");
    }

    #[test]
    fn statuses_are_the_shells_numbers() {
        let codes = [Status::Success, Status::Failure, Status::Usage].map(Status::code);
        assert_eq!(codes, [0, 1, 2]);
    }

    /// Every flag of `program`, and every default it names, is on its page,
    /// and its help names each exit status, in order.
    pub(crate) fn check_manual<K>(program: &Program<K>) {
        let page = program.manual();
        for flag in program.flags {
            let long = format!("\\fB\\-\\-{}\\fR", escape(flag.long()));
            assert!(page.contains(&long), "{long} in {}", program.name);
            if let Some(text) = flag.default {
                assert!(page.contains(&format!("Default: {}.", escape(text))));
            }
        }
        let help = program.help();
        let (_, exit) = help.rsplit_once("\nExit status: ").expect("an exit status");
        let exit = exit.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(help.lines().all(|l| l.len() <= HELP_WIDTH), "{help}");
        let said: Vec<&str> = exit.split("; ").filter_map(|m| m.split(' ').next()).collect();
        let codes = [Status::Success, Status::Failure, Status::Usage].map(|s| s.code().to_string());
        assert_eq!(said, codes, "{exit}");
    }
}
