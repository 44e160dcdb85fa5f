//! A program's manual page, in roff with the `man` macros, written from the
//! same [`Program`] and [`Flag`] definitions as `--help`, so the two cannot
//! drift apart. `serv6 --generate-man` and `cli6 --generate-man` print it;
//! `make install` installs what they print.

use crate::args::{DefaultText, Flag};
use crate::exit::{self, Meanings};
use crate::help::Program;
use crate::timestamp::Timestamp;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

/// What a manual page has beyond the command line.
#[derive(Debug)]
pub(crate) struct Manual {
    /// 1 for user commands, 8 for daemons.
    pub section: u8,
    /// The NAME line's description: `serv6 \- <this>`.
    pub summary: &'static str,
    /// Further sections as (heading, plain text). Paragraphs are separated
    /// by blank lines; lines starting with two spaces are shown as they are.
    pub sections: &'static [(&'static str, &'static str)],
    /// What the program's exit statuses mean: the EXIT STATUS section.
    pub exit: &'static Meanings,
}

/// The whole page.
pub(crate) fn render<K>(program: &Program<K>, manual: &Manual) -> String {
    let name = program.name;
    let mut out = format!(
        ".TH {} {} {} \"{name} {}\" \"{}\"\n.nh\n.SH NAME\n{name} \\- {}\n.SH SYNOPSIS\n",
        name.to_uppercase(),
        manual.section,
        date(),
        env!("CARGO_PKG_VERSION"),
        if manual.section == 8 {
            "System Manager's Manual"
        } else {
            "User Commands"
        },
        escape(manual.summary),
    );
    let args = program
        .synopsis
        .strip_prefix(name)
        .unwrap_or(program.synopsis);
    let _ = writeln!(out, ".B {name}\n{}", escape(args.trim()));
    out.push_str(".SH DESCRIPTION\n");
    push_text(&mut out, &program.about);
    out.push_str(".SH OPTIONS\n");
    for flag in program.flags {
        push_flag(&mut out, flag);
    }
    for (heading, text) in manual.sections {
        let _ = writeln!(out, ".SH {}", heading.to_uppercase());
        push_text(&mut out, text);
    }
    out.push_str(".SH EXIT STATUS\n");
    push_text(&mut out, &exit::describe(manual.exit));
    out
}

/// The day this version was released, as manual pages and the Debian
/// changelog date it (`contrib/debian/build.sh` reads it from the page).
/// Set it with the version in Cargo.toml.
const RELEASE_DATE: &str = "2026-12-01";

/// The page's date: the day of `SOURCE_DATE_EPOCH` when a build sets it,
/// else the version's release date; never the day of the build, so that
/// the same version always has the same page.
fn date() -> String {
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let stamp =
        epoch.and_then(|secs| Timestamp::from_system_time(UNIX_EPOCH + Duration::from_secs(secs)));
    stamp.map_or_else(
        || RELEASE_DATE.to_owned(),
        |stamp| stamp.to_rfc3339().as_str()[..10].to_owned(),
    )
}

fn push_flag<K>(out: &mut String, flag: &Flag<K>) {
    out.push_str(".TP\n");
    if let Some(short) = flag.short {
        let _ = write!(out, "\\fB\\-{}\\fR, ", escape(&short.to_string()));
    }
    let _ = write!(out, "\\fB\\-\\-{}\\fR", escape(flag.long));
    if let Some(value) = flag.value {
        let _ = write!(out, " \\fI{}\\fR", escape(value));
    }
    out.push('\n');
    let default = match flag.default {
        DefaultText::None => String::new(),
        DefaultText::Value(text) | DefaultText::Described(text) => format!(" Default: {text}."),
    };
    let _ = writeln!(out, "{}{}", escape(&sentence(flag.help)), escape(&default));
}

/// The help text as a sentence: capitalised, ending in a full stop.
fn sentence(help: &str) -> String {
    let mut chars = help.chars();
    let first = chars
        .next()
        .map(|c| c.to_uppercase().to_string())
        .unwrap_or_default();
    let text = format!("{first}{}", chars.as_str());
    if text.ends_with('.') {
        text
    } else {
        format!("{text}.")
    }
}

/// Plain text as paragraphs; indented lines kept as they are, unfilled.
fn push_text(out: &mut String, text: &str) {
    let mut first = true;
    for paragraph in text.split("\n\n") {
        if !first {
            out.push_str(".PP\n");
        }
        first = false;
        for line in paragraph.lines() {
            if let Some(literal) = line.strip_prefix("  ") {
                let _ = writeln!(
                    out,
                    ".nf\n.RS 4\n{}\n.RE\n.fi",
                    escape(literal.trim_start())
                );
            } else {
                let _ = writeln!(out, "{}", escape(line));
            }
        }
    }
}

/// Text that roff prints as it is: backslashes and minus signs escaped,
/// and a leading dot or quote kept from being read as a request.
fn escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roff_specials_are_escaped() {
        assert_eq!(escape(r"a\b-c"), r"a\eb\-c");
        assert_eq!(escape(".not a request"), r"\&.not a request");
        assert_eq!(sentence("print this"), "Print this.");
    }

    /// Every flag of `program`, and every default it names, is on its page.
    fn check_page<K>(program: &Program<K>, manual: &Manual) {
        let page = render(program, manual);
        for flag in program.flags {
            let long = format!("\\fB\\-\\-{}\\fR", escape(flag.long));
            assert!(page.contains(&long), "{long} in {}", program.name);
            if let DefaultText::Value(text) = flag.default {
                assert!(page.contains(&format!("Default: {}.", escape(text))));
            }
        }
    }

    #[test]
    fn every_flag_and_default_is_on_the_page() {
        check_page(&crate::server::program(), &crate::server::MANUAL);
        check_page(&crate::client::program(), &crate::client::MANUAL);
    }
}
