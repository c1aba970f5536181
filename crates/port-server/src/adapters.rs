//! Real adapters of port-core's ports: the system clock, OS randomness, and the
//! webhook destination policy (SSRF protection).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use port_core::ports::{Clock, Entropy};
use port_core::service::DestinationPolicy;
use port_core::{ErrorKind, PortError, Timestamp};

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp::from_unix_millis(ms)
    }
}

/// Randomness from the operating system (through `rand`'s thread-local generator).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn random_bytes(&self) -> [u8; 8] {
        rand::random()
    }
}

/// Which webhook destinations runs may call (`PORTD_WEBHOOK_DESTINATIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DestinationMode {
    /// Anything: self-hosted backends often live on private networks.
    #[default]
    Any,
    /// Only hosts that resolve to public addresses.
    Public,
}

impl FromStr for DestinationMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "any" => Ok(Self::Any),
            "public" => Ok(Self::Public),
            other => Err(format!(
                "unknown webhook destination mode {other:?}: expected any or public"
            )),
        }
    }
}

/// Refuses webhook URLs whose host is not publicly routable: 403 `private_destination`
/// for loopback, private, link-local and similar addresses, 403
/// `not_resolvable_destination` when the host does not resolve.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicDestinations;

fn not_resolvable(host: &str) -> PortError {
    PortError::new(
        ErrorKind::NotResolvableDestination,
        format!("the webhook host {host} could not be resolved"),
    )
}

fn private(host: &str) -> PortError {
    PortError::new(
        ErrorKind::PrivateDestination,
        format!(
            "the webhook host {host} resolves to a private address, which this server does not call"
        ),
    )
}

#[async_trait]
impl DestinationPolicy for PublicDestinations {
    async fn check(&self, url: &str) -> Result<(), PortError> {
        let parsed = url::Url::parse(url).map_err(|_| not_resolvable(url))?;
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addresses: Vec<IpAddr> = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            Some(url::Host::Domain(domain)) => tokio::net::lookup_host((domain, port))
                .await
                .map_err(|_| not_resolvable(domain))?
                .map(|addr| addr.ip())
                .collect(),
            None => return Err(not_resolvable(url)),
        };
        let host = parsed.host_str().unwrap_or(url);
        if addresses.is_empty() {
            return Err(not_resolvable(host));
        }
        // Every address must be public: a resolver may hand out any of them.
        if addresses.iter().any(|ip| !is_public(*ip)) {
            return Err(private(host));
        }
        Ok(())
    }
}

/// Whether an address is publicly routable.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let shared_cgnat = a == 100 && (64..128).contains(&b);
    let benchmarking = a == 198 && (b == 18 || b == 19);
    let reserved = a >= 240;
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || shared_cgnat
        || benchmarking
        || reserved)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    let unique_local = (first & 0xfe00) == 0xfc00;
    let link_local = (first & 0xffc0) == 0xfe80;
    let documentation = first == 0x2001 && ip.segments()[1] == 0x0db8;
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || unique_local
        || link_local
        || documentation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn literal_private_hosts_are_refused() {
        let policy = PublicDestinations;
        let err = policy
            .check("http://127.0.0.1:8080/hook")
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::PrivateDestination);
        let err = policy.check("http://[::1]/hook").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::PrivateDestination);
        assert!(policy.check("https://8.8.8.8/hook").await.is_ok());
        let err = policy.check("not a url").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotResolvableDestination);
    }

    #[test]
    fn clock_and_entropy_work() {
        assert!(SystemClock.now().unix_millis() > 1_600_000_000_000);
        assert_ne!(OsEntropy.random_bytes(), OsEntropy.random_bytes());
    }
}
