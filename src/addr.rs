//! IP addresses as people type them on a command line: `::1`, `[::1]`,
//! `fe80::1%eth0` (a link-local address and its interface), `127.0.0.1`.
//!
//! std parses plain addresses but not an IPv6 scope (`%eth0`), without which
//! a link-local address cannot be used, so both programs read literals here.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// What is wrong with an address literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AddrError {
    /// `name:port` or `[v6]:port`: the port goes in its own option.
    HasPort,
    /// `%scope` on something that is not an IPv6 address.
    ScopeWithoutIpv6,
    /// `%name` where this machine has no interface of that name.
    NoSuchInterface(String),
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrError::HasPort => f.write_str("give the port with '--port', not in the address"),
            AddrError::ScopeWithoutIpv6 => f.write_str("only an IPv6 address can have a %scope"),
            AddrError::NoSuchInterface(name) => write!(f, "no network interface is named '{name}'"),
        }
    }
}

/// A host as an option names it (`--bind`, `--host`): checked as
/// [`host`] does, brackets off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostArg(pub String);

// The errors of these `FromStr`s say why an option's value was refused,
// and the parser only shows them: text is all they need to be.
impl std::str::FromStr for HostArg {
    type Err = String;

    fn from_str(text: &str) -> Result<HostArg, String> {
        match host(text) {
            Ok(bare) => Ok(HostArg(bare.to_owned())),
            Err(None) => Err("it is not a host name or address".into()),
            Err(Some(why)) => Err(why.to_string()),
        }
    }
}

/// An IP address and a port, as `--metrics` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Endpoint(pub SocketAddr);

impl std::str::FromStr for Endpoint {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<Endpoint, &'static str> {
        let why = "it is not an IP address and a port, as 127.0.0.1:9806 or [::1]:9806";
        text.parse().map(Endpoint).map_err(|_| why)
    }
}

impl std::str::FromStr for Cidr {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<Cidr, &'static str> {
        Cidr::parse(text).ok_or("it is not an address or ADDR/PREFIX range")
    }
}

/// Why a host (a literal or a name) gives no address.
#[derive(Debug)]
pub(crate) enum ResolveError {
    /// A literal that cannot be used as it is.
    Address(AddrError),
    /// A name the resolver could not look up.
    Lookup(std::io::Error),
}

/// The addresses `host` stands for at `port`: itself if it is an IP
/// literal, else what the system's resolver says; what serv6 binds and
/// cli6 connects to, the same way.
pub(crate) fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
    match parse_literal(host, port).map_err(ResolveError::Address)? {
        Some(addr) => Ok(vec![addr]),
        None => Ok(std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
            .map_err(ResolveError::Lookup)?
            .collect()),
    }
}

/// Checks `text` as a host an option may name: not empty, and if an IP
/// literal, one that can be used (no port, a scope that exists). Returns
/// it without brackets.
pub(crate) fn host(text: &str) -> Result<&str, Option<AddrError>> {
    let bare = text.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(text);
    if bare.is_empty() {
        return Err(None);
    }
    parse_literal(text, 0).map_err(Some)?;
    Ok(bare)
}

/// Reads `text` as an IP literal, with optional brackets and IPv6 scope.
/// `Ok(None)`: not a literal (a host name, to be resolved); `Err`: a
/// literal, or `host:port`, that cannot be used as it is.
pub(crate) fn parse_literal(text: &str, port: u16) -> Result<Option<SocketAddr>, AddrError> {
    if text.parse::<SocketAddr>().is_ok() || is_name_with_port(text) {
        return Err(AddrError::HasPort);
    }
    let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
    let Some((ip, scope)) = bare.split_once('%') else {
        return Ok(bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, port)));
    };
    let Ok(ip) = ip.parse::<Ipv6Addr>() else {
        return match ip.parse::<IpAddr>() {
            Ok(_) => Err(AddrError::ScopeWithoutIpv6),
            Err(_) => Ok(None),
        };
    };
    let scope_id = match scope.parse::<u32>() {
        Ok(index) => index,
        Err(_) => interface_index(scope).ok_or_else(|| AddrError::NoSuchInterface(scope.into()))?,
    };
    Ok(Some(SocketAddrV6::new(ip, port, 0, scope_id).into()))
}

/// `localhost:80`: a name can hold no colon, so one colon means a port.
fn is_name_with_port(text: &str) -> bool {
    text.matches(':').count() == 1 && !text.starts_with('[')
}

/// The index of the network interface `name`, which Linux shows in
/// `/sys/class/net/NAME/ifindex` (std has no `if_nametoindex`).
fn interface_index(name: &str) -> Option<u32> {
    let plain = !name.is_empty() && !name.contains(['/', '.']);
    let path = format!("/sys/class/net/{name}/ifindex");
    let text = plain.then(|| std::fs::read_to_string(path).ok()).flatten()?;
    text.trim().parse().ok()
}

/// A range of addresses, `ADDR/PREFIX`; a bare address is the range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Reads `192.0.2.0/24`, `2001:db8::/32`, `10.1.2.3`.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let net: IpAddr = addr.parse().ok()?;
        let bits = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
            Some(_) => return None,
            None => bits,
        };
        (prefix <= bits).then_some(Cidr { net, prefix })
    }

    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => same_prefix(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(ip)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(u128::from(net), u128::from(ip), self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` bits of `a` and `b` agree.
fn same_prefix(a: u128, b: u128, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    a & mask == b & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_contain_what_they_should() {
        let range = |t: &str| Cidr::parse(t).expect(t);
        let ip = |t: &str| t.parse::<IpAddr>().expect(t);
        assert!(range("127.0.0.0/8").contains(ip("127.1.2.3")));
        assert!(range("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
        assert!(!range("127.0.0.0/8").contains(ip("128.0.0.1")));
        assert!(range("10.1.2.3").contains(ip("10.1.2.3")));
        assert!(!range("10.1.2.3").contains(ip("10.1.2.4")));
        assert!(range("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!range("0.0.0.0/0").contains(ip("::1")));
        assert!(range("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(range("::/0").contains(ip("::1")));
        for bad in ["10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/+8", "host/8", ""] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }

    fn literal(text: &str) -> Result<Option<String>, AddrError> {
        parse_literal(text, 7).map(|a| a.map(|a| a.to_string()))
    }

    #[test]
    fn plain_and_bracketed_literals() {
        assert_eq!(literal("127.0.0.1"), Ok(Some("127.0.0.1:7".into())));
        assert_eq!(literal("::1"), Ok(Some("[::1]:7".into())));
        assert_eq!(literal("[::1]"), Ok(Some("[::1]:7".into())));
        assert_eq!(literal("localhost"), Ok(None));
    }

    #[test]
    fn scopes_by_number_and_by_interface_name() {
        assert_eq!(literal("fe80::1%3"), Ok(Some("[fe80::1%3]:7".into())));
        if let Some(lo) = interface_index("lo") {
            assert_eq!(literal("[fe80::1%lo]"), Ok(Some(format!("[fe80::1%{lo}]:7"))));
        }
        assert_eq!(
            literal("fe80::1%no-such-if0"),
            Err(AddrError::NoSuchInterface("no-such-if0".into()))
        );
        assert_eq!(literal("fe80::1%../x"), Err(AddrError::NoSuchInterface("../x".into())));
        assert_eq!(literal("127.0.0.1%lo"), Err(AddrError::ScopeWithoutIpv6));
    }

    #[test]
    fn a_port_in_the_address_is_refused() {
        for text in ["127.0.0.1:80", "[::1]:5006", "localhost:5006", "[fe80::1%2]:80"] {
            assert_eq!(literal(text), Err(AddrError::HasPort), "{text}");
        }
    }
}
