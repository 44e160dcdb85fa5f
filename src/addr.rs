//! IP addresses as people type them on a command line: `::1`, `[::1]`,
//! `fe80::1%eth0` (a link-local address and its interface), `127.0.0.1`,
//! or a host name.
//!
//! std parses plain addresses but not an IPv6 scope (`%eth0`), without which
//! a link-local address cannot be used, so both programs read them here.
//! Text that cannot be an address or a name is refused as it is read (a
//! usage error); whether the system has that interface, or that name, is
//! asked only when it is used (a runtime error).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// Why a host gives no address: what is wrong with it as written, or, for
/// [`AddrError::NoSuchInterface`] and [`AddrError::Lookup`], what this
/// machine said when it was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AddrError {
    /// Neither an address nor a host name: empty, or with characters or
    /// labels no host name has.
    NotAHost,
    /// Only digits and dots, yet not four numbers from 0 to 255: no host
    /// name looks like that (RFC 1123, 2.1).
    NotIpv4,
    /// Colons, yet no IPv6 address: a name has none.
    NotIpv6,
    /// `name:port` or `[v6]:port`: the port goes in its own option.
    HasPort,
    /// `%scope` on something that is not an IPv6 address.
    ScopeWithoutIpv6,
    /// `%name` that no interface can have (Linux's own rule).
    BadScope(String),
    /// `%name` where this machine has no interface of that name.
    NoSuchInterface(String),
    /// A name the resolver could not look up, and its words for why.
    Lookup(String),
}

impl AddrError {
    /// Whether the text is at fault (else this machine is).
    pub fn is_usage(&self) -> bool {
        !matches!(self, AddrError::NoSuchInterface(_) | AddrError::Lookup(_))
    }
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrError::NotAHost => f.write_str("it is not a host name or address"),
            AddrError::NotIpv4 => {
                f.write_str("it is not an IPv4 address: four numbers from 0 to 255, as 192.0.2.1")
            }
            AddrError::NotIpv6 => f.write_str("it is not an IPv6 address, as ::1 or fe80::1%eth0"),
            AddrError::HasPort => f.write_str("give the port with '--port', not in the address"),
            AddrError::ScopeWithoutIpv6 => f.write_str("only an IPv6 address can have a %scope"),
            AddrError::BadScope(name) => write!(f, "'{name}' cannot name a network interface"),
            AddrError::NoSuchInterface(name) => write!(f, "no network interface is named '{name}'"),
            AddrError::Lookup(why) => f.write_str(why),
        }
    }
}

/// A host as an option names it (`--bind`, `--host`): checked as
/// [`host`] does, brackets off.
pub(crate) struct HostArg(pub String);

// The errors of these `FromStr`s say why an option's value was refused,
// and the parser only shows them: text is all they need to be.
impl std::str::FromStr for HostArg {
    type Err = String;

    fn from_str(text: &str) -> Result<HostArg, String> {
        host(text).map(|bare| HostArg(bare.to_owned())).map_err(|why| why.to_string())
    }
}

/// A host and a port, as `--metrics` takes them: `localhost:9806`,
/// `127.0.0.1:9806`, `[::1]:9806`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// Checked as [`host`] does, brackets off.
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Endpoint, String> {
        let form = "give HOST:PORT, as localhost:9806, 127.0.0.1:9806 or [::1]:9806";
        let (host, port) = split_port(text).ok_or(form)?;
        let port = port.parse().ok().filter(|_| !port.starts_with('+')).ok_or(form)?;
        Ok(Endpoint { host: HostArg::from_str(host)?.0, port })
    }
}

impl std::str::FromStr for Cidr {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<Cidr, &'static str> {
        Cidr::parse(text).ok_or("it is not an address or ADDR/PREFIX range")
    }
}

/// The addresses `host` stands for at `port`: itself if it is an IP
/// literal, else what the system's resolver says; what serv6 binds and
/// cli6 connects to, the same way.
pub(crate) fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, AddrError> {
    match read(host)? {
        Host::Ip(ip) => Ok(vec![SocketAddr::new(ip, port)]),
        Host::Scoped(ip, scope) => {
            let id = scope_id(scope).ok_or_else(|| AddrError::NoSuchInterface(scope.into()))?;
            Ok(vec![SocketAddrV6::new(ip, port, 0, id).into()])
        }
        Host::Name(name) => std::net::ToSocketAddrs::to_socket_addrs(&(name, port))
            .map(Iterator::collect)
            .map_err(|e| AddrError::Lookup(e.to_string())),
    }
}

/// The advice for an error on `addr` when it is a link-local address
/// without its interface, which the system refuses as an invalid argument.
pub(crate) fn missing_scope(addr: &SocketAddr) -> Option<String> {
    let SocketAddr::V6(v6) = addr else { return None };
    // fe80::/10 (`is_unicast_link_local` is newer than the MSRV).
    let link_local = v6.scope_id() == 0 && v6.ip().segments()[0] & 0xffc0 == 0xfe80;
    link_local.then(|| format!("a link-local address needs its interface, as {}%eth0", v6.ip()))
}

/// Checks `text` as a host an option may name: an IP literal (no port)
/// or a host name. Returns it without brackets.
pub(crate) fn host(text: &str) -> Result<&str, AddrError> {
    read(text).map(|_| unbracketed(text))
}

/// What a host is, read without asking the system.
enum Host<'a> {
    Ip(IpAddr),
    /// An IPv6 address and its interface, by name or number.
    Scoped(Ipv6Addr, &'a str),
    Name(&'a str),
}

/// Reads `text` as an IP literal, with optional brackets and IPv6 scope,
/// or a host name.
fn read(text: &str) -> Result<Host<'_>, AddrError> {
    let bare = unbracketed(text);
    // A port is refused whatever the rest is. A scope goes with an IPv6
    // address alone; digits and dots alone are no name, and neither is
    // anything with a colon.
    let (ip, scope) = bare.split_once('%').map_or((bare, None), |(ip, scope)| (ip, Some(scope)));
    let dotted = !ip.is_empty() && ip.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    match (ip.parse::<IpAddr>(), scope) {
        _ if split_port(text).is_some() => Err(AddrError::HasPort),
        (Ok(IpAddr::V6(ip)), Some(scope)) if could_name_interface(scope) => {
            Ok(Host::Scoped(ip, scope))
        }
        (Ok(IpAddr::V6(_)), Some(scope)) => Err(AddrError::BadScope(scope.into())),
        (Ok(IpAddr::V4(_)), Some(_)) => Err(AddrError::ScopeWithoutIpv6),
        (Ok(ip), None) => Ok(Host::Ip(ip)),
        (Err(_), _) if ip.contains(':') => Err(AddrError::NotIpv6),
        (Err(_), Some(_)) => Err(AddrError::NotAHost),
        (Err(_), None) if dotted => Err(AddrError::NotIpv4),
        (Err(_), None) if is_host_name(ip) => Ok(Host::Name(ip)),
        (Err(_), None) => Err(AddrError::NotAHost),
    }
}

fn unbracketed(text: &str) -> &str {
    text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text)
}

/// `localhost:80` (a name can hold no colon, so one colon means a port)
/// or `[::1]:80`, split at the port's colon; `None` without a port.
fn split_port(text: &str) -> Option<(&str, &str)> {
    match text.strip_prefix('[') {
        Some(rest) => rest.split_once("]:"),
        None => text.split_once(':').filter(|(_, port)| !port.contains(':')),
    }
}

/// Labels of letters, digits, `-` and `_` (which some private names use),
/// 1 to 63 bytes, none starting or ending with `-`; 253 bytes in all, and
/// a final dot, at most (RFC 1123, 2.1).
fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let edges = |l: &str| !l.starts_with('-') && !l.ends_with('-');
    let chars = |l: &str| l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let label = |l: &str| (1..=63).contains(&l.len()) && edges(l) && chars(l);
    name.len() <= 253 && name.split('.').all(label)
}

/// Linux's rule for an interface name (`dev_valid_name`): 1 to 15 bytes,
/// not `.` or `..`, no `/`, `:` or white space.
fn could_name_interface(name: &str) -> bool {
    let bad = |c: char| c == '/' || c == ':' || c.is_whitespace();
    (1..16).contains(&name.len()) && name != "." && name != ".." && !name.contains(bad)
}

/// The scope `%3`, or the index of the network interface `%name`, which
/// Linux shows in `/sys/class/net/NAME/ifindex` (std has no
/// `if_nametoindex`); `name` is one [`could_name_interface`] allows, so no
/// path of its own.
fn scope_id(name: &str) -> Option<u32> {
    let sysfs = || std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex")).ok();
    name.parse().ok().or_else(|| sysfs()?.trim().parse().ok())
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
        let (addr, prefix) = text.split_once('/').map_or((text, None), |(a, p)| (a, Some(p)));
        let net: IpAddr = addr.parse().ok()?;
        let bits = if net.is_ipv4() { 32 } else { 128 };
        let prefix =
            prefix.map_or(Some(bits), |p| p.parse().ok().filter(|_| !p.starts_with('+')))?;
        (prefix <= bits).then_some(Cidr { net, prefix })
    }

    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address): whether the first `prefix` bits agree, an IPv4
    /// address's 32 placed as the first of 128.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| match ip {
            IpAddr::V4(ip) => u128::from(ip.to_bits()) << 96,
            IpAddr::V6(ip) => ip.to_bits(),
        };
        let (net, ip) = (self.net, ip.to_canonical());
        let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
        net.is_ipv4() == ip.is_ipv4() && bits(net) & mask == bits(ip) & mask
    }
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

    /// A literal's address at port 7; `None` for a name.
    fn literal(text: &str) -> Result<Option<String>, AddrError> {
        if let Host::Name(_) = read(text)? {
            return Ok(None);
        }
        match resolve(text, 7) {
            Ok(addrs) => Ok(Some(addrs[0].to_string())),
            Err(AddrError::Lookup(e)) => panic!("{text}: looked up: {e}"),
            Err(e) => Err(e),
        }
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
        if let Some(lo) = scope_id("lo") {
            assert_eq!(literal("[fe80::1%lo]"), Ok(Some(format!("[fe80::1%{lo}]:7"))));
        }
        // A name an interface could have, but none here has: this
        // machine's answer, found only when the address is used.
        assert_eq!(host("fe80::1%no-such-if0"), Ok("fe80::1%no-such-if0"));
        let missing = AddrError::NoSuchInterface("no-such-if0".into());
        assert!(!missing.is_usage());
        assert_eq!(literal("fe80::1%no-such-if0"), Err(missing));
        for scope in ["../x", "", "a b", "sixteen-letters0"] {
            let text = format!("fe80::1%{scope}");
            assert_eq!(literal(&text), Err(AddrError::BadScope(scope.into())), "{text}");
        }
        assert_eq!(literal("127.0.0.1%lo"), Err(AddrError::ScopeWithoutIpv6));
    }

    #[test]
    fn a_port_in_the_address_is_refused() {
        for text in
            ["127.0.0.1:80", "[::1]:5006", "localhost:5006", "[fe80::1%2]:80", "[fe80::1%lo]:80"]
        {
            assert_eq!(literal(text), Err(AddrError::HasPort), "{text}");
        }
    }

    #[test]
    fn text_that_is_no_address_nor_name_is_refused_as_written() {
        for (text, why) in [
            ("999.1.1.1", AddrError::NotIpv4),
            ("1.2.3", AddrError::NotIpv4),
            ("127.1", AddrError::NotIpv4),
            ("::g", AddrError::NotIpv6),
            ("fe80:::1%lo", AddrError::NotIpv6),
            ("[::1", AddrError::NotIpv6),
            ("", AddrError::NotAHost),
            ("[]", AddrError::NotAHost),
            ("a b", AddrError::NotAHost),
            ("-x", AddrError::NotAHost),
            ("foo..bar", AddrError::NotAHost),
            ("host%lo", AddrError::NotAHost),
        ] {
            assert_eq!(host(text), Err(why.clone()), "{text}");
            assert!(why.is_usage(), "{text}");
        }
        for name in ["localhost", "example.org.", "db_1.internal", "xn--mnchen-3ya.de", "0x7f"] {
            assert_eq!(host(name), Ok(name));
        }
        let too_long = format!("{}a", "a.".repeat(127));
        assert_eq!(host(&too_long), Err(AddrError::NotAHost), "255 bytes");
    }

    #[test]
    fn endpoints_are_a_host_and_a_port() {
        let at = |text: &str| text.parse::<Endpoint>().map(|e| (e.host, e.port));
        assert_eq!(at("localhost:9100"), Ok(("localhost".into(), 9100)));
        assert_eq!(at("127.0.0.1:0"), Ok(("127.0.0.1".into(), 0)));
        assert_eq!(at("[::1]:9806"), Ok(("::1".into(), 9806)));
        assert_eq!(at("[fe80::1%lo]:9806"), Ok(("fe80::1%lo".into(), 9806)));
        let form = "give HOST:PORT, as localhost:9806, 127.0.0.1:9806 or [::1]:9806";
        for text in ["9806", "localhost", "::1:9806", "[::1]", "host:", "host:+80", "host:65536"] {
            assert_eq!(at(text), Err(form.into()), "{text}");
        }
        assert_eq!(at("999.1.1.1:80"), Err(AddrError::NotIpv4.to_string()));
        assert_eq!(at(":80"), Err(AddrError::NotAHost.to_string()));
    }
}
