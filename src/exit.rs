//! How serv6 and cli6 end, and the exit status that says so, written once:
//! the programs return a [`Status`], and each program's table of what its
//! statuses mean ([`Meanings`]) is its manual page's EXIT STATUS section
//! and the end of its `--help`.

use std::fmt::Write as _;
use std::process::ExitCode;

/// How a program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// It did what was asked: exit status 0.
    Success,
    /// It could not (the network, the system, a refused reply): 1.
    Failure,
    /// It was asked wrongly (a bad option or value): 2.
    Usage,
}

impl Status {
    /// The number the shell sees.
    pub fn code(self) -> u8 {
        match self {
            Status::Success => 0,
            Status::Failure => 1,
            Status::Usage => 2,
        }
    }
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> ExitCode {
        ExitCode::from(status.code())
    }
}

/// What each status means for one program, in the order of their codes.
pub(crate) type Meanings = [(Status, &'static str); 3];

/// `0 if ...; 1 if ...; 2 for ...`, one sentence for the manual and help.
pub(crate) fn describe(meanings: &Meanings) -> String {
    let mut text = String::new();
    for (i, (status, meaning)) in meanings.iter().enumerate() {
        let _ = write!(
            text,
            "{}{} {meaning}",
            if i == 0 { "" } else { "; " },
            status.code()
        );
    }
    text.push('.');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meanings_read_as_one_sentence() {
        let meanings: Meanings = [
            (Status::Success, "when done"),
            (Status::Failure, "when not"),
            (Status::Usage, "for bad usage"),
        ];
        assert_eq!(
            describe(&meanings),
            "0 when done; 1 when not; 2 for bad usage."
        );
    }
}
