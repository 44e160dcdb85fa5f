//! serv6's listening sockets: `--bind` and `--port` bound, or the sockets a
//! service manager passed (systemd, `systemd-socket-activate`), as
//! `sd_listen_fds(3)` describes: the manager sets `LISTEN_PID` to our pid
//! and `LISTEN_FDS` to N, and the sockets are file descriptors 3 to
//! 3+N-1. The variables are removed whatever they say, so that no child of
//! ours could take them as its own.

use crate::addr::{self, AddrError, Endpoint};
use crate::platform;
use crate::protocol::Service;
use crate::server::capacity;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

/// The listening sockets serv6 got, with what it could not get but may do without.
#[derive(Debug)]
pub(crate) struct Bound {
    pub listeners: Vec<TcpListener>,
    /// Lines for the operator, said after the listening line: default
    /// addresses skipped because their IP family
    /// is not available on this machine.
    pub notes: Vec<String>,
}

/// Why serv6 cannot listen, as one line; nothing but the exit status
/// tells the reasons apart.
#[derive(Debug)]
pub(crate) enum BindError {
    /// The addresses asked for make no sense: exit status 2.
    Usage(String),
    /// This machine refuses them: exit status 1.
    Failure(String),
}

impl BindError {
    /// Whether the command line is at fault rather than the machine.
    pub fn is_usage(&self) -> bool {
        matches!(self, BindError::Usage(_))
    }
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (BindError::Usage(message) | BindError::Failure(message)) = self;
        f.write_str(message)
    }
}

/// What a socket is bound for: the message and the option to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `--bind` and `--port`.
    Service,
    /// `--metrics`, while serv6 serves `service_port`.
    Metrics { service_port: u16 },
}

/// `error` binding `addr`, and what the operator can do about it.
fn cannot_bind(role: Role, addr: SocketAddr, error: &io::Error) -> BindError {
    let (what, option) = match role {
        Role::Service => ("listen", "--port"),
        Role::Metrics { .. } => ("serve metrics", "--metrics"),
    };
    let ours = role == Role::Metrics { service_port: addr.port() };
    let hint = match error.kind() {
        io::ErrorKind::AddrInUse if ours => {
            "serv6 itself serves that port: give --metrics another".into()
        }
        io::ErrorKind::AddrInUse => format!(
            "another program, perhaps another serv6, holds that port ('ss -ltnp' shows which): \
             stop it, or choose another port with {option}"
        ),
        io::ErrorKind::PermissionDenied => {
            format!("ports below 1024 need privileges: choose another with {option}")
        }
        io::ErrorKind::AddrNotAvailable => "that address does not belong to this machine".into(),
        io::ErrorKind::InvalidInput => addr::missing_scope(&addr).unwrap_or_default(),
        _ => String::new(),
    };
    let message = format!("cannot {what} on {addr}: {error}");
    BindError::Failure(if hint.is_empty() { message } else { format!("{message}; {hint}") })
}

/// A name that gives no address to listen on.
fn unresolved(name: &str, error: &dyn fmt::Display) -> BindError {
    BindError::Failure(format!(
        "cannot listen on '{name}': {error}; give an IP address or a host name of this machine"
    ))
}

/// How many times to look for a port free on every address with `--port 0`.
const PORT_ZERO_TRIES: usize = 16;

/// Listens on every address `binds` names (`127.0.0.1` and `::1` when empty) at
/// `port`. With port 0 every address gets the port the OS picked for the
/// first, looking again if another address has that port taken.
pub(crate) fn bind_all(binds: &[String], port: u16) -> Result<Bound, BindError> {
    let (addrs, optional) = if binds.is_empty() {
        (vec![(Ipv4Addr::LOCALHOST, 0).into(), (Ipv6Addr::LOCALHOST, 0).into()], true)
    } else {
        let addrs = resolve(binds)?;
        refuse_overlap(&addrs)?;
        if addrs.len() > MAX_LISTENERS {
            return Err(BindError::Usage(too_many(addrs.len(), "addresses to listen on")));
        }
        (addrs, false)
    };
    let mut retries = 0..PORT_ZERO_TRIES;
    loop {
        let bound = bind_each(&addrs, port, optional);
        let taken = matches!(&bound, Err((_, e)) if e.kind() == io::ErrorKind::AddrInUse);
        if !(port == 0 && taken && retries.next().is_some()) {
            return bound.map_err(|(addr, error)| cannot_bind(Role::Service, addr, &error));
        }
    }
}

/// Binds each of `addrs` at `port`, or says which one failed and why.
fn bind_each(
    addrs: &[SocketAddr],
    mut port: u16,
    optional: bool,
) -> Result<Bound, (SocketAddr, io::Error)> {
    let (mut bound, mut last_error) = (Bound { listeners: Vec::new(), notes: Vec::new() }, None);
    for mut addr in addrs.iter().copied() {
        // `set_port` keeps an IPv6 address's scope.
        addr.set_port(port);
        match TcpListener::bind(addr) {
            Ok(listener) => {
                // The port asked for, or the one the OS picked for port 0:
                // the next addresses get the same.
                port = listener.local_addr().map_err(|error| (addr, error))?.port();
                bound.listeners.push(listener);
            }
            Err(error) if optional && family_unavailable(&error) => {
                let ip = addr.ip();
                bound.notes.push(format!("{ip} is not available ({error}), serving without it"));
                last_error = Some((addr, error));
            }
            Err(error) => return Err((addr, error)),
        }
    }
    match last_error {
        Some(error) if bound.listeners.is_empty() => Err(error),
        _ => Ok(bound),
    }
}

/// Binds `--metrics`' socket: the first address its host resolves to
/// (a name may have several; getaddrinfo's order, `getent ahosts NAME`),
/// at its port. `service_port` is the port serv6 serves, so that a clash
/// with it is said to be serv6's own.
pub(crate) fn bind_metrics(at: &Endpoint, service_port: u16) -> Result<TcpListener, BindError> {
    let Some(mut addr) = resolve(std::slice::from_ref(&at.host))?.first().copied() else {
        return Err(unresolved(&at.host, &"it has no address"));
    };
    addr.set_port(at.port);
    TcpListener::bind(addr)
        .map_err(|error| cannot_bind(Role::Metrics { service_port }, addr, &error))
}

/// The errors that mean "this machine has no such IP family", not "busy".
fn family_unavailable(error: &io::Error) -> bool {
    const EAFNOSUPPORT: i32 = 97;
    matches!(error.kind(), io::ErrorKind::AddrNotAvailable | io::ErrorKind::Unsupported)
        || error.raw_os_error() == Some(EAFNOSUPPORT)
}

/// Every distinct address the names stand for, in order, with port 0.
fn resolve(names: &[String]) -> Result<Vec<SocketAddr>, BindError> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for name in names {
        let found = addr::resolve(name, 0).map_err(|error| match error {
            _ if error.is_usage() => {
                BindError::Usage(format!("invalid value '{name}' for '--bind': {error}"))
            }
            AddrError::Lookup(_) => unresolved(name, &error),
            _ => BindError::Failure(format!("cannot listen on '{name}': {error}")),
        })?;
        for addr in found {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    Ok(addrs)
}

/// Refuses a wildcard address with another that it already serves: the
/// second bind would fail with "address in use", which reads as if another
/// server held the port. On Linux `::` serves IPv4 as well.
fn refuse_overlap(addrs: &[SocketAddr]) -> Result<(), BindError> {
    for wide in addrs.iter().map(SocketAddr::ip).filter(IpAddr::is_unspecified) {
        let covered = |narrow: &IpAddr| *narrow != wide && (wide.is_ipv6() || narrow.is_ipv4());
        if let Some(narrow) = addrs.iter().map(SocketAddr::ip).find(covered) {
            let linux = wide.is_ipv6() && narrow.is_ipv4();
            let linux = if linux { " (on Linux, '::' serves IPv4 too)" } else { "" };
            return Err(BindError::Usage(format!(
                "'--bind {wide}' already serves {narrow}{linux}: give one or the other"
            )));
        }
    }
    Ok(())
}

/// The line serv6 prints once it listens: `listening on 127.0.0.1:5006,
/// [::1]:5006`, an address that serves another service than receipt
/// followed by its name: `127.0.0.1:13 (daytime)`.
pub(crate) fn listening_line(listeners: &Serving) -> String {
    let addrs: Vec<String> = listeners
        .iter()
        .filter_map(|(l, service)| match (l.local_addr().ok()?, service) {
            (addr, Service::Receipt) => Some(addr.to_string()),
            (addr, other) => Some(format!("{addr} ({})", other.name())),
        })
        .collect();
    format!("listening on {}", addrs.join(", "))
}

/// Each listener has a worker at least, and there are no more workers.
const MAX_LISTENERS: usize = capacity::MAX_WORKERS;

fn too_many(count: impl fmt::Display, what: &str) -> String {
    format!("{count} {what}: serv6 takes {MAX_LISTENERS} at most, one worker each at least")
}

/// The sockets passed to this process, or `None` if it was started without
/// socket activation. Must run before any thread exists: it edits the
/// environment. The error, one line, is why they cannot be served; serv6
/// exits with status 1.
pub(crate) fn passed_listeners() -> Result<Option<Vec<Passed>>, String> {
    let [pid, fds, names] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"].map(|name| {
        let value = std::env::var(name).ok();
        std::env::remove_var(name);
        value
    });
    let ours = pid.is_some_and(|pid| pid.trim() == std::process::id().to_string());
    let (true, Some(fds)) = (ours, fds) else { return Ok(None) };
    let count: u16 = fds.trim().parse().map_err(|_| format!("LISTEN_FDS={fds:?}: not a count"))?;
    match usize::from(count) {
        0 => return Ok(None), // sd_listen_fds(3): none passed
        n if n > MAX_LISTENERS => return Err(too_many(n, "sockets passed (LISTEN_FDS)")),
        _ => {}
    }
    let listeners = platform::passed_listeners(count.into())
        .map_err(|(fd, why)| format!("passed file descriptor {fd} cannot be served: {why}"))?;
    let names = names.unwrap_or_default();
    let services = names.split(':').map(|name| name.parse().ok()).chain(std::iter::repeat(None));
    Ok(Some(listeners.into_iter().zip(services).collect()))
}

/// Listening sockets, each with the service it serves.
pub(crate) type Serving = Vec<(TcpListener, Service)>;

/// A socket passed by a service manager, and the service its name
/// (`FileDescriptorName=`) asks for, if it names one.
pub(crate) type Passed = (TcpListener, Option<Service>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_gives_every_address_the_same_port() {
        let bound = bind_all(&[], 0).unwrap();
        let ports: Vec<u16> =
            bound.listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
        assert!(!ports.is_empty());
        assert!(ports.iter().all(|&p| p == ports[0] && p != 0), "{ports:?}");
    }

    #[test]
    fn a_port_in_use_is_an_error_naming_the_address() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = bind_all(&["127.0.0.1".into()], port).unwrap_err().to_string();
        assert!(err.starts_with(&format!("cannot listen on 127.0.0.1:{port}: ")), "{err}");
        assert!(err.contains("another program, perhaps another serv6, holds that port"), "{err}");
        assert!(err.ends_with("stop it, or choose another port with --port"), "{err}");
    }

    #[test]
    fn a_metrics_port_in_use_says_whose_it_may_be() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let at = Endpoint { host: "127.0.0.1".into(), port };
        let err = |service_port| bind_metrics(&at, service_port).unwrap_err().to_string();
        let prefix = format!("cannot serve metrics on 127.0.0.1:{port}: ");
        assert!(err(port).starts_with(&prefix), "{}", err(port));
        assert!(err(port).ends_with("; serv6 itself serves that port: give --metrics another"));
        assert!(err(port ^ 1).ends_with("choose another port with --metrics"), "{}", err(port ^ 1));
    }

    #[test]
    fn names_resolve_and_duplicates_are_dropped() {
        let addrs = resolve(&["127.0.0.1".into(), "[::1]".into(), "127.0.0.1".into()]).unwrap();
        let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
        assert_eq!(ips, [IpAddr::from(Ipv4Addr::LOCALHOST), Ipv6Addr::LOCALHOST.into()]);
    }

    #[test]
    fn overlapping_binds_are_a_usage_error_naming_both() {
        let overlap = |names: &[&str]| {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let err = bind_all(&names, 0).unwrap_err();
            assert!(err.is_usage(), "{err}");
            err.to_string()
        };
        assert_eq!(
            overlap(&["::", "0.0.0.0"]),
            "'--bind ::' already serves 0.0.0.0 (on Linux, '::' serves IPv4 too): give one or the other"
        );
        assert_eq!(
            overlap(&["0.0.0.0", "127.0.0.1"]),
            "'--bind 0.0.0.0' already serves 127.0.0.1: give one or the other"
        );
        assert!(
            overlap(&["127.0.0.1:80"]).ends_with("give the port with '--port', not in the address")
        );
    }

    #[test]
    fn an_unknown_name_is_an_error_naming_it() {
        let err = bind_all(&["no-such-host.invalid".into()], 0).unwrap_err().to_string();
        assert!(err.starts_with("cannot listen on 'no-such-host.invalid': "), "{err}");
    }
}
