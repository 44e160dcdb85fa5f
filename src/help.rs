//! `--help`, and usage errors as they are printed: written from the same
//! [`Flag`] table the parser reads, so an option and its description
//! cannot drift apart.

use crate::args::{DefaultText, Flag};
use std::fmt;

/// A program's command line: enough to parse it and to write its help.
#[derive(Debug)]
pub(crate) struct Program<K: 'static> {
    pub name: &'static str,
    /// `serv6 [OPTIONS]`.
    pub synopsis: &'static str,
    /// What it does, before the options.
    pub about: String,
    pub flags: &'static [Flag<K>],
    /// Exit status and the like, after the options.
    pub after: String,
}

/// Where the help text starts after the option names.
const HELP_COLUMN: usize = 24;
const HELP_WIDTH: usize = 80;

impl<K> Program<K> {
    /// The text of `--help`.
    pub fn help(&self) -> String {
        let mut out = format!("Usage: {}\n\n{}\n\nOptions:\n", self.synopsis, self.about);
        for flag in self.flags {
            let mut names = match flag.short {
                Some(c) => format!("  -{c}, --{}", flag.long),
                None => format!("      --{}", flag.long),
            };
            if let Some(value) = flag.value {
                names = format!("{names} {value}");
            }
            let help = match flag.default {
                DefaultText::None => flag.help.to_owned(),
                DefaultText::Value(text) | DefaultText::Described(text) => {
                    format!("{} (default {text})", flag.help)
                }
            };
            push_wrapped(&mut out, &names, &help);
        }
        out.push('\n');
        out.push_str(&self.after);
        out
    }

    /// The line printed for a usage error.
    pub fn usage_error(&self, error: &dyn fmt::Display) -> String {
        format!(
            "{error} (usage: {}; see '{} --help')",
            self.synopsis, self.name
        )
    }
}

/// Appends `names`, then `text` wrapped into the help column.
fn push_wrapped(out: &mut String, names: &str, text: &str) {
    let mut line = names.to_owned();
    if line.len() + 2 > HELP_COLUMN {
        out.push_str(&line);
        out.push('\n');
        line.clear();
    }
    let mut empty = true;
    for word in text.split(' ') {
        if !empty && line.len() + 1 + word.len() > HELP_WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line.clear();
            empty = true;
        }
        if empty {
            line = format!("{line:HELP_COLUMN$}{word}");
            empty = false;
        } else {
            line.push(' ');
            line.push_str(word);
        }
    }
    out.push_str(&line);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::tests::FLAGS;

    #[test]
    fn help_lists_every_flag_with_its_default_wrapped() {
        let program = Program {
            name: "x",
            synopsis: "x [OPTIONS]",
            about: "Does x.".into(),
            flags: FLAGS,
            after: "Bye.".into(),
        };
        let help = program.help();
        assert!(
            help.starts_with("Usage: x [OPTIONS]\n\nDoes x.\n\nOptions:\n"),
            "{help}"
        );
        assert!(
            help.contains("\n  -p, --port PORT       a port (default 5006)\n"),
            "{help}"
        );
        assert!(
            help.contains("\n      --t SECS          a time (default none)\n"),
            "{help}"
        );
        assert!(help.lines().all(|l| l.len() <= HELP_WIDTH), "{help}");
        assert!(
            help.contains("\n                        wrapped onto a second line\n"),
            "{help}"
        );
        assert!(help.ends_with("\nBye."), "{help}");
    }
}
