//! Real adapters of port-core's ports: the system clock, OS randomness, and the
//! webhook destination policy (SSRF protection).

use std::net::IpAddr;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use port_core::destination;
use port_core::ports::{Clock, Entropy};
use port_core::service::DestinationPolicy;
use port_core::{PortError, Timestamp};

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
/// for loopback, private, link-local and similar addresses (IPv6 forms that embed one
/// included; see [`port_core::destination::is_public`]), 403 `not_resolvable_destination`
/// when the host does not resolve. At execute time it resolves the host itself; the
/// delivery worker resolves again when it connects and vets those addresses with
/// [`DestinationPolicy::allows`], connecting only to them.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicDestinations;

#[async_trait]
impl DestinationPolicy for PublicDestinations {
    async fn check(&self, url: &str) -> Result<(), PortError> {
        let parsed = url::Url::parse(url).map_err(|_| destination::not_resolvable(url))?;
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addresses: Vec<IpAddr> = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            Some(url::Host::Domain(domain)) => tokio::net::lookup_host((domain, port))
                .await
                .map_err(|_| destination::not_resolvable(domain))?
                .map(|addr| addr.ip())
                .collect(),
            None => return Err(destination::not_resolvable(url)),
        };
        let host = parsed.host_str().unwrap_or(url);
        destination::vet(host, &addresses, |ip| self.allows(ip))
    }

    fn allows(&self, ip: IpAddr) -> bool {
        destination::is_public(ip)
    }
}

#[cfg(test)]
mod tests {
    use port_core::ErrorKind;

    use super::*;

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
        // IPv6 forms that reach 127.0.0.1, and the public control.
        for url in [
            "http://[::127.0.0.1]/hook",
            "http://[::ffff:127.0.0.1]/hook",
            "http://[64:ff9b::7f00:1]/hook",
            "http://[::ffff:0:7f00:1]/hook",
        ] {
            let err = policy.check(url).await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::PrivateDestination, "{url}");
        }
        assert!(
            policy
                .check("https://[2001:4860:4860::8888]/")
                .await
                .is_ok()
        );
        let err = policy.check("not a url").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotResolvableDestination);
    }

    #[test]
    fn clock_and_entropy_work() {
        assert!(SystemClock.now().unix_millis() > 1_600_000_000_000);
        assert_ne!(OsEntropy.random_bytes(), OsEntropy.random_bytes());
    }
}
