//! The PROXY protocol (`HAProxy`'s `proxy-protocol.txt`, versions 1 and 2):
//! the header a load balancer sends before the client's bytes, naming the
//! client it relays.
//!
//! [`parse`] looks at the bytes received so far and says: a complete header
//! and how long it is, not enough yet, or not a valid header, as early as
//! the first wrong byte. It never looks past the header's end, so the bytes
//! after it stay the client's message.

use crate::protocol::ProxyFault;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest version 1 line, CRLF included (the specification's figure).
const V1_MAX: usize = 107;
const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V2_FIXED: usize = 16;
/// The most address and TLV bytes a version 2 header may carry: its
/// addresses need at most 36, and `HAProxy`'s TLVs (ALPN, authority, unique
/// ID, SSL details) fit easily. A longer header is refused.
pub(crate) const V2_MAX_BODY: usize = 1024;
/// Enough room for any header serv6 accepts.
pub(crate) const MAX_HEADER: usize = V2_FIXED + V2_MAX_BODY;

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    /// A relayed connection from `client`.
    Relayed { client: SocketAddr },
    /// A relayed connection whose client's address is not TCP's (a v2
    /// `PROXY` over AF_UNIX, say): the real peer stands for it.
    Unnamed,
    /// The balancer's own connection (a v2 `LOCAL`, a v1 `UNKNOWN`): its
    /// health check when nothing follows.
    Own,
}

/// What the bytes received so far are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A valid header of `len` bytes; what follows is the message.
    Complete { header: Header, len: usize },
    /// A valid beginning: more bytes are needed.
    Incomplete,
    /// Not a PROXY header, and no more bytes can make it one.
    Invalid(ProxyFault),
}

/// Reads a header from the start of `bytes`.
pub(crate) fn parse(bytes: &[u8]) -> Parsed {
    // As long as `bytes` agree with a version's signature, they may yet
    // become its header.
    let begins = |signature: &[u8]| bytes.iter().zip(signature).all(|(a, b)| a == b);
    if begins(V1_PREFIX) {
        parse_v1(bytes)
    } else if begins(V2_SIGNATURE) {
        parse_v2(bytes)
    } else {
        Parsed::Invalid(ProxyFault::Missing)
    }
}

fn parse_v1(bytes: &[u8]) -> Parsed {
    let window = &bytes[..bytes.len().min(V1_MAX)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        // Too long, or a CR anywhere but just before the LF yet to come.
        let early_cr = window.iter().rev().skip(1).any(|&b| b == b'\r');
        let invalid = window.len() == V1_MAX || early_cr;
        return if invalid { Parsed::Invalid(ProxyFault::V1) } else { Parsed::Incomplete };
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Parsed::Invalid(ProxyFault::V1);
    }
    complete(v1_fields(&window[V1_PREFIX.len()..lf - 1]), lf + 1, ProxyFault::V1)
}

/// A header of `len` bytes, if its fields are valid; else `fault`.
fn complete(header: Option<Header>, len: usize, fault: ProxyFault) -> Parsed {
    header.map_or(Parsed::Invalid(fault), |header| Parsed::Complete { header, len })
}

/// `TCP4 src dst sport dport`, `TCP6 ...`, or `UNKNOWN` and anything.
fn v1_fields(line: &[u8]) -> Option<Header> {
    let line = std::str::from_utf8(line).ok()?;
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        return Some(Header::Own);
    }
    let fields: Vec<&str> = line.split(' ').collect();
    let [family, source, dest, source_port, dest_port] = fields[..] else { return None };
    // The destination must be as valid as the source, though only the
    // source is used. std refuses an IPv4 number with a leading zero, as
    // the specification does.
    let source: IpAddr = match family {
        "TCP4" => dest.parse::<Ipv4Addr>().and(source.parse::<Ipv4Addr>()).ok()?.into(),
        "TCP6" => dest.parse::<Ipv6Addr>().and(source.parse::<Ipv6Addr>()).ok()?.into(),
        _ => return None,
    };
    v1_port(dest_port)?;
    Some(Header::Relayed { client: SocketAddr::new(source, v1_port(source_port)?) })
}

/// A decimal number without a sign or leading zeros, as the specification
/// says: one that reads back as written.
fn v1_port(text: &str) -> Option<u16> {
    text.parse().ok().filter(|port: &u16| port.to_string() == text)
}

fn parse_v2(bytes: &[u8]) -> Parsed {
    // Each byte is checked as soon as it arrives.
    let Some(&version_command) = bytes.get(12) else { return Parsed::Incomplete };
    let command = version_command & 0x0f;
    if version_command >> 4 != 2 || command > 1 {
        return Parsed::Invalid(ProxyFault::V2);
    }
    let Some(&family) = bytes.get(13) else { return Parsed::Incomplete };
    if family >> 4 > 3 || family & 0x0f > 2 {
        return Parsed::Invalid(ProxyFault::V2);
    }
    let Some(length) = bytes.get(14..16) else { return Parsed::Incomplete };
    let body_len = usize::from(u16::from_be_bytes([length[0], length[1]]));
    if body_len > V2_MAX_BODY {
        return Parsed::Invalid(ProxyFault::TooLong);
    }
    let Some(body) = bytes.get(V2_FIXED..V2_FIXED + body_len) else { return Parsed::Incomplete };
    let header = if command == 0 { Some(Header::Own) } else { v2_addresses(family, body) };
    complete(header, V2_FIXED + body_len, ProxyFault::V2)
}

/// The client's address from a `PROXY` command's address block, if it is
/// TCP's over IPv4 or IPv6.
fn v2_addresses(family: u8, body: &[u8]) -> Option<Header> {
    // The source address, the destination's, then their ports: 12 bytes
    // for IPv4, 36 for IPv6.
    let (ip, ports): (IpAddr, usize) = match family {
        0x11 => (<[u8; 4]>::try_from(body.get(..4)?).ok()?.into(), 8),
        0x21 => (<[u8; 16]>::try_from(body.get(..16)?).ok()?.into(), 32),
        _ => return Some(Header::Unnamed),
    };
    let port = body.get(ports..ports + 4)?;
    Some(Header::Relayed { client: SocketAddr::new(ip, u16::from_be_bytes([port[0], port[1]])) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::XorShift;

    fn relayed(addr: &str) -> Header {
        Header::Relayed { client: addr.parse().expect("an address") }
    }

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend_from_slice(&[0x20 | command, family]);
        header.extend_from_slice(&(body.len() as u16).to_be_bytes());
        header.extend_from_slice(body);
        header
    }

    fn v2_tcp4() -> Vec<u8> {
        let body = [192, 0, 2, 1, 198, 51, 100, 7, 0xd4, 0x31, 0x13, 0x8e];
        v2(1, 0x11, &body)
    }

    #[test]
    fn version_1_lines() {
        let line = b"PROXY TCP4 192.0.2.1 198.51.100.7 54321 5006\r\nhola\n";
        let complete = Parsed::Complete { header: relayed("192.0.2.1:54321"), len: 46 };
        assert_eq!(parse(line), complete);
        let v6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 5006\r\n";
        assert_eq!(
            parse(v6),
            Parsed::Complete { header: relayed("[2001:db8::1]:1"), len: v6.len() }
        );
        let unknown = b"PROXY UNKNOWN\r\n";
        assert_eq!(parse(unknown), Parsed::Complete { header: Header::Own, len: 15 });
    }

    #[test]
    fn version_1_grammar_is_enforced() {
        for bad in [
            &b"PROXY TCP4 192.0.2.01 198.51.100.7 1 2\r\n"[..],
            b"PROXY TCP4 192.0.2.1 198.51.100.7 01 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.7 1 65536\r\n",
            b"PROXY TCP4 2001:db8::1 198.51.100.7 1 2\r\n",
            b"PROXY TCP5 192.0.2.1 198.51.100.7 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.7 1 2\n",
            b"PROXY TCP4 192.0.2.1  198.51.100.7 1 2\r\n",
            b"PROXY TCP4 192.0.2.1\r198.51.100.7 1 2\r\n",
        ] {
            assert_eq!(
                parse(bad),
                Parsed::Invalid(ProxyFault::V1),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse(&[b'P'; 200]), Parsed::Invalid(ProxyFault::Missing));
        let mut endless = b"PROXY UNKNOWN ".to_vec();
        endless.resize(V1_MAX, b'x');
        assert_eq!(parse(&endless), Parsed::Invalid(ProxyFault::V1));
    }

    #[test]
    fn version_2_headers() {
        let mut bytes = v2_tcp4();
        bytes.extend_from_slice(b"hola\n");
        assert_eq!(parse(&bytes), Parsed::Complete { header: relayed("192.0.2.1:54321"), len: 28 });
        let local = v2(0, 0x00, &[]);
        assert_eq!(parse(&local), Parsed::Complete { header: Header::Own, len: 16 });
        let mut v6 = [0u8; 36];
        v6[15] = 1;
        v6[32..34].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            parse(&v2(1, 0x21, &v6)),
            Parsed::Complete { header: relayed("[::1]:7"), len: 52 }
        );
        let with_tlvs = v2(1, 0x11, &[&v2_tcp4()[16..], &[0x01, 0, 2, b'h', b'2']].concat());
        assert!(matches!(parse(&with_tlvs), Parsed::Complete { len: 33, .. }));
        assert_eq!(
            parse(&v2(1, 0x31, &[0; 216])),
            Parsed::Complete { header: Header::Unnamed, len: 232 }
        );
    }

    #[test]
    fn version_2_is_refused_at_the_first_wrong_byte() {
        assert_eq!(parse(b"\r\n\r\n\0\r\nQUIX"), Parsed::Invalid(ProxyFault::Missing));
        assert_eq!(parse(&v2(2, 0x11, &[0; 12])[..13]), Parsed::Invalid(ProxyFault::V2));
        assert_eq!(parse(&v2(1, 0x41, &[0; 12])[..14]), Parsed::Invalid(ProxyFault::V2));
        assert_eq!(parse(&v2(1, 0x11, &[0; 4])), Parsed::Invalid(ProxyFault::V2));
        let long = v2(1, 0x11, &[0; V2_MAX_BODY + 1]);
        assert_eq!(parse(&long[..16]), Parsed::Invalid(ProxyFault::TooLong));
        assert_eq!(parse(b"hola\n"), Parsed::Invalid(ProxyFault::Missing));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Parsed::Invalid(ProxyFault::Missing));
    }

    /// Every prefix of a valid header is incomplete, never invalid.
    #[test]
    fn every_prefix_of_a_valid_header_waits_for_more() {
        let headers = [
            b"PROXY TCP4 192.0.2.1 198.51.100.7 54321 5006\r\n".to_vec(),
            b"PROXY UNKNOWN ffff::1 ffff::2 65535 65535\r\n".to_vec(),
            v2_tcp4(),
            v2(0, 0, &[]),
        ];
        for header in headers {
            for end in 0..header.len() {
                assert_eq!(parse(&header[..end]), Parsed::Incomplete, "{:?}", &header[..end]);
            }
        }
    }

    /// Random and truncated headers in random splits: never a panic, never
    /// a length past the header, and what follows the header is untouched.
    #[test]
    fn seeded_fuzz_never_consumes_past_the_header() {
        let valid = [
            b"PROXY TCP4 192.0.2.1 198.51.100.7 54321 5006\r\n".to_vec(),
            b"PROXY TCP6 ::1 ::2 1 2\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            v2_tcp4(),
            v2(0, 0, &[]),
        ];
        for seed in 1..=20_000u64 {
            let mut rng = XorShift::new(seed);
            let base = &valid[rng.below(valid.len() as u64) as usize];
            let mut bytes = base.clone();
            for _ in 0..rng.below(3) {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] = rng.next() as u8;
            }
            bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize);
            let tail = b"hola\nmore";
            bytes.extend_from_slice(&tail[..rng.below(tail.len() as u64 + 1) as usize]);
            let split = rng.below(bytes.len() as u64 + 1) as usize;
            if let Parsed::Complete { len, .. } = parse(&bytes[..split]) {
                assert!(len <= split, "seed {seed}: {len} > {split}");
                let whole = parse(&bytes);
                assert!(
                    matches!(whole, Parsed::Complete { len: l, .. } if l == len),
                    "seed {seed}"
                );
                if bytes[..len] == base[..] {
                    assert_eq!(len, base.len(), "seed {seed}");
                }
            }
        }
    }
}
