//! Socket activation: listening sockets passed by a service manager
//! (systemd, `systemd-socket-activate`), as `sd_listen_fds(3)` describes.
//!
//! The manager sets `LISTEN_PID` to our pid and `LISTEN_FDS` to N, and the
//! sockets are file descriptors 3 to 3+N-1. The variables are removed
//! whatever they say, so that no child of ours could take them as its own.

use crate::platform::{self, NotAListener};
use std::fmt;
use std::net::TcpListener;

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const FIRST_FD: i32 = 3;
/// More passed sockets than this is a misconfiguration, not a server.
const MAX_FDS: i32 = 64;

/// Why the passed sockets cannot be served; serv6 exits with status 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ActivationError {
    /// `LISTEN_FDS` is not a count serv6 accepts.
    BadCount(String),
    /// One of the descriptors is not a listening TCP socket.
    NotAListener { fd: i32, why: NotAListener },
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivationError::BadCount(text) => write!(
                f,
                "LISTEN_FDS={text:?}: expected a number of sockets from 1 to {MAX_FDS}"
            ),
            ActivationError::NotAListener { fd, why } => {
                write!(f, "passed file descriptor {fd} cannot be served: {why}")
            }
        }
    }
}

/// The sockets passed to this process, or `None` if it was started without
/// socket activation. Must run before any thread exists: it edits the
/// environment.
pub(crate) fn passed_listeners() -> Result<Option<Vec<TcpListener>>, ActivationError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    let ours = pid.is_some_and(|pid| pid.trim() == std::process::id().to_string());
    let (true, Some(fds)) = (ours, fds) else {
        return Ok(None);
    };
    let count = fds
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|n| (1..=MAX_FDS).contains(n))
        .ok_or_else(|| ActivationError::BadCount(fds.clone()))?;
    let listeners = (FIRST_FD..FIRST_FD + count)
        .map(|fd| {
            platform::adopt_listener(fd).map_err(|why| ActivationError::NotAListener { fd, why })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(listeners))
}
