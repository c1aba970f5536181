//! Where a webhook goes: the [`Destination`] a delivery is counted under (the delivery
//! worker caps what is in flight per organization and destination), and which
//! addresses a server that only calls public destinations may connect to
//! ([`is_public`], [`vet`]; SSRF protection).
//!
//! Address classification lives here, once, so that the execute-time check (which
//! answers Port's `private_destination`) and the delivery worker's connect-time check
//! (which vets the very addresses it connects to) can never disagree.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::Value;

use crate::error::{ErrorKind, PortError};

/// The `host:port` a webhook URL connects to: the host as the URL parser normalizes it
/// (lowercase, punycode, IPv6 in brackets) and the port, explicit or the scheme's
/// (`example.com:443`, `[::1]:8080`). Counting by name rather than by resolved address
/// lets the worker decide before any network round trip; a tenant that spreads one
/// receiver over many names only spreads its own organization's slots.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Destination(String);

impl Destination {
    /// The destination of an `http`/`https` URL; `None` for anything else.
    pub fn of_url(url: &str) -> Option<Self> {
        let parsed = url::Url::parse(url).ok()?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return None;
        }
        let host = parsed.host()?;
        let port = parsed.port_or_known_default()?;
        Some(Self(format!("{host}:{port}")))
    }

    /// The destination of an evaluated webhook method (`{"url": …, …}`).
    pub fn of_request(request: &Value) -> Option<Self> {
        request
            .get("url")
            .and_then(Value::as_str)
            .and_then(Self::of_url)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// 403 `not_resolvable_destination`: the host did not resolve.
pub fn not_resolvable(host: &str) -> PortError {
    PortError::new(
        ErrorKind::NotResolvableDestination,
        format!("the webhook host {host} could not be resolved"),
    )
}

/// 403 `private_destination`: the host is, or resolves to, an address portd does not call.
pub fn private(host: &str) -> PortError {
    PortError::new(
        ErrorKind::PrivateDestination,
        format!(
            "the webhook host {host} resolves to a private address, which this server does not call"
        ),
    )
}

/// Judges what `host` resolved to: refused when it resolved to nothing, or when any
/// address is not `allowed` (a resolver may hand out any of them, and a name that
/// mixes public and private addresses is a rebinding set-up, not a receiver).
pub fn vet(
    host: &str,
    addresses: &[IpAddr],
    allowed: impl Fn(IpAddr) -> bool,
) -> Result<(), PortError> {
    if addresses.is_empty() {
        return Err(not_resolvable(host));
    }
    if addresses.iter().any(|ip| !allowed(*ip)) {
        return Err(private(host));
    }
    Ok(())
}

/// Whether an address is publicly routable, so that a server in `public` mode may
/// connect to it.
///
/// IPv6 addresses that embed or translate an IPv4 address are judged by that address,
/// because a connection to them reaches it: IPv4-compatible `::a.b.c.d` (`::/96`, which
/// also holds `::` and `::1`), IPv4-mapped `::ffff:a.b.c.d` (`::ffff:0:0/96`),
/// IPv4-translated `::ffff:0:a.b.c.d` (`::ffff:0:0:0/96`), NAT64 `64:ff9b::/96` and
/// 6to4 `2002:aabb:ccdd::/48`. A Teredo address (`2001::/32`) carries its server's IPv4
/// in bits 32–63 and its client's, XORed with `0xffffffff`, in the last 32 bits; traffic
/// ends at the client through the server's relay, so both must be public. The local-use
/// NAT64 prefix `64:ff9b:1::/48` is refused whole: where its operator embeds the IPv4
/// address depends on a prefix length we cannot know, and it is not globally routable.
/// Network-specific NAT64 prefixes (any /96 an operator picks) cannot be recognized;
/// a server behind one should not rely on `public` mode alone.
///
/// Everything else must be global unicast (`2000::/3`) outside the IETF protocol
/// assignments (`2001::/23`) and the documentation ranges (`2001:db8::/32`,
/// `3fff::/20`); unique-local, link-local, multicast and the discard prefix fall
/// outside `2000::/3`.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let this_network = a == 0;
    let shared_cgnat = a == 100 && (64..128).contains(&b);
    let ietf_protocol = a == 192 && b == 0 && c == 0;
    let benchmarking = a == 198 && (b == 18 || b == 19);
    let reserved = a >= 240;
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || this_network
        || shared_cgnat
        || ietf_protocol
        || benchmarking
        || reserved)
}

/// The IPv4 address(es) a connection to an IPv6 address would reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Embedded {
    None,
    One(Ipv4Addr),
    Teredo { server: Ipv4Addr, client: Ipv4Addr },
}

fn ipv4_at(bits: u128, shift: u32) -> Ipv4Addr {
    // Truncation keeps exactly the 32 bits wanted.
    Ipv4Addr::from((bits >> shift) as u32)
}

fn embedded(ip: Ipv6Addr) -> Embedded {
    let bits = u128::from(ip);
    let prefix = |value: u128, len: u32| bits >> (128 - len) == value >> (128 - len);
    let last = ipv4_at(bits, 0);
    if prefix(0, 96)
        || prefix(0xffff << 32, 96)
        || prefix(0xffff << 48, 96)
        || prefix(0x0064_ff9b << 96, 96)
    {
        return Embedded::One(last);
    }
    if prefix(0x2001_0000 << 96, 32) {
        return Embedded::Teredo {
            server: ipv4_at(bits, 64),
            client: Ipv4Addr::from(!u32::from(last)),
        };
    }
    if prefix(0x2002 << 112, 16) {
        return Embedded::One(ipv4_at(bits, 80));
    }
    Embedded::None
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    match embedded(ip) {
        Embedded::One(v4) => return is_public_v4(v4),
        Embedded::Teredo { server, client } => return is_public_v4(server) && is_public_v4(client),
        Embedded::None => {}
    }
    let bits = u128::from(ip);
    let prefix = |value: u128, len: u32| bits >> (128 - len) == value >> (128 - len);
    let global_unicast = prefix(0x2000 << 112, 3);
    let ietf_protocol = prefix(0x2001 << 112, 23);
    let documentation = prefix(0x2001_0db8 << 96, 32) || prefix(0x3fff << 112, 20);
    global_unicast && !ietf_protocol && !documentation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> bool {
        is_public(
            text.parse()
                .unwrap_or_else(|_| panic!("{text} is an address")),
        )
    }

    #[test]
    fn private_and_special_ipv4_is_refused() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!public(ip), "{ip} must be refused");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "192.0.1.1",
            "198.20.0.1",
        ] {
            assert!(public(ip), "{ip} is public");
        }
    }

    #[test]
    fn ipv6_forms_embedding_ipv4_are_judged_by_it() {
        let refused = [
            // IPv4-compatible, including the unspecified and loopback addresses.
            "::",
            "::1",
            "::127.0.0.1",
            "::7f00:1",
            "::10.0.0.1",
            "::169.254.169.254",
            // IPv4-mapped.
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            // IPv4-translated (SIIT).
            "::ffff:0:7f00:1",
            "::ffff:0:10.0.0.1",
            // NAT64, well-known and local-use prefixes.
            "64:ff9b::7f00:1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::169.254.169.254",
            "64:ff9b:1::808:808",
            "64:ff9b:1:ffff::8.8.8.8",
            // 6to4 of private and loopback addresses.
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2002:c0a8:101::",
            // Teredo: client 127.0.0.1 (0x80ffffff after XOR), public server 8.8.8.8.
            "2001:0:808:808:0:0:80ff:fffe",
            // Teredo: public client 8.8.8.8, server 10.0.0.1.
            "2001:0:a00:1::f7f7:f7f7",
        ];
        for ip in refused {
            assert!(!public(ip), "{ip} must be refused");
        }
        let public_forms = [
            "::8.8.8.8",
            "::ffff:8.8.8.8",
            "::ffff:0:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
            // Teredo: server 8.8.8.8, client 1.1.1.1 (0xfefefefe after XOR).
            "2001:0:808:808::fefe:fefe",
        ];
        for ip in public_forms {
            assert!(public(ip), "{ip} is public");
        }
    }

    #[test]
    fn native_ipv6_ranges() {
        for ip in [
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "100::1",
            "2001:db8::1",
            "2001:2::1",
            "2001:10::1",
            "2001:1ff::1",
            "3fff::1",
            "4000::1",
            "fec0::1",
        ] {
            assert!(!public(ip), "{ip} must be refused");
        }
        for ip in [
            "2001:4860:4860::8888",
            "2001:4860::8888",
            "2001:200::1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "3ffe::1",
        ] {
            assert!(public(ip), "{ip} is public");
        }
    }

    #[test]
    fn vetting_needs_every_address_allowed() {
        let ips =
            |list: &[&str]| -> Vec<IpAddr> { list.iter().map(|s| s.parse().unwrap()).collect() };
        assert_eq!(
            vet("h", &[], is_public).unwrap_err().kind,
            ErrorKind::NotResolvableDestination
        );
        assert_eq!(
            vet("h", &ips(&["8.8.8.8", "127.0.0.1"]), is_public)
                .unwrap_err()
                .kind,
            ErrorKind::PrivateDestination
        );
        assert!(vet("h", &ips(&["8.8.8.8", "2001:4860::8888"]), is_public).is_ok());
        assert!(vet("h", &ips(&["127.0.0.1"]), |_| true).is_ok());
    }

    #[test]
    fn destinations_are_host_and_port() {
        let of = |url: &str| Destination::of_url(url).map(|d| d.to_string());
        assert_eq!(
            of("https://Example.COM/hook").as_deref(),
            Some("example.com:443")
        );
        assert_eq!(
            of("http://example.com/hook").as_deref(),
            Some("example.com:80")
        );
        assert_eq!(
            of("http://example.com:80/x").as_deref(),
            Some("example.com:80")
        );
        assert_eq!(
            of("http://127.0.0.1:8080").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(of("http://[::1]:9/x").as_deref(), Some("[::1]:9"));
        assert_eq!(
            of("http://user:pw@example.com/x").as_deref(),
            Some("example.com:80")
        );
        assert_eq!(of("ftp://example.com/x"), None);
        assert_eq!(of("not a url"), None);
        assert_eq!(
            Destination::of_request(&serde_json::json!({"url": "https://a.b/c"})),
            Destination::of_url("https://a.b:443")
        );
        assert_eq!(Destination::of_request(&serde_json::json!({})), None);
    }
}
