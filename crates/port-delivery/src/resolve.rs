//! Connect-time SSRF protection: the delivery client's DNS resolver.
//!
//! The execute-time check resolved the host once already, but a name can answer
//! differently the next time (DNS rebinding). So the client never resolves on its own:
//! [`VettingResolver`] resolves a host once per connection, vets every address with the
//! destination policy ([`port_core::destination::vet`]) and hands reqwest only those
//! addresses. The address checked is the address connected to. URLs with an address
//! instead of a name never reach a resolver; the worker vets those itself
//! ([`refused_literal`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use port_core::PortError;
use port_core::destination;
use port_core::service::DestinationPolicy;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The destination policy refused what a host resolved to. Carried through reqwest's
/// error chain so that the worker can tell a refusal from a network failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RefusedDestination(pub PortError);

/// Resolves with `lookup`, then passes on only what `policy` allows (all or nothing).
pub struct VettingResolver {
    lookup: Arc<dyn Resolve>,
    policy: Arc<dyn DestinationPolicy>,
}

impl VettingResolver {
    pub fn new(lookup: Arc<dyn Resolve>, policy: Arc<dyn DestinationPolicy>) -> Self {
        Self { lookup, policy }
    }

    /// The system's resolver, vetted by `policy`.
    pub fn system(policy: Arc<dyn DestinationPolicy>) -> Self {
        Self::new(Arc::new(SystemLookup), policy)
    }
}

impl Resolve for VettingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let policy = self.policy.clone();
        let lookup = self.lookup.resolve(name);
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = lookup.await?.collect();
            let ips: Vec<IpAddr> = addresses.iter().map(SocketAddr::ip).collect();
            destination::vet(&host, &ips, |ip| policy.allows(ip)).map_err(RefusedDestination)?;
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// `getaddrinfo` on a blocking thread, as reqwest's default resolver does.
struct SystemLookup;

impl Resolve for SystemLookup {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: the connector puts the URL's port in.
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// The refusal for a URL whose host is an address the policy does not allow. Such URLs
/// are connected to directly, without a resolver.
pub fn refused_literal(url: &Url, policy: &dyn DestinationPolicy) -> Option<PortError> {
    let ip = match url.host()? {
        url::Host::Ipv4(ip) => IpAddr::V4(ip),
        url::Host::Ipv6(ip) => IpAddr::V6(ip),
        url::Host::Domain(_) => return None,
    };
    let host = url.host_str().unwrap_or_default();
    destination::vet(host, &[ip], |ip| policy.allows(ip)).err()
}

/// The refusal in an error's chain of causes, if the resolver refused.
pub fn refusal_in<'e>(
    error: &'e (dyn std::error::Error + 'static),
) -> Option<&'e RefusedDestination> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(refused) = error.downcast_ref::<RefusedDestination>() {
            return Some(refused);
        }
        cause = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use async_trait::async_trait;
    use port_core::ErrorKind;

    use super::*;

    /// Allows 127.0.0.2 only: a stand-in for "public" on loopback.
    struct OnlyDotTwo;

    #[async_trait]
    impl DestinationPolicy for OnlyDotTwo {
        async fn check(&self, _url: &str) -> Result<(), PortError> {
            Ok(())
        }

        fn allows(&self, ip: IpAddr) -> bool {
            ip == IpAddr::from([127, 0, 0, 2])
        }
    }

    struct Answers(Vec<IpAddr>);

    impl Resolve for Answers {
        fn resolve(&self, _name: Name) -> Resolving {
            let addresses: Vec<SocketAddr> =
                self.0.iter().map(|ip| SocketAddr::new(*ip, 0)).collect();
            Box::pin(async move { Ok(Box::new(addresses.into_iter()) as Addrs) })
        }
    }

    async fn resolve(answers: &[[u8; 4]]) -> Result<Vec<IpAddr>, ErrorKind> {
        let lookup = Answers(answers.iter().map(|a| IpAddr::from(*a)).collect());
        let resolver = VettingResolver::new(Arc::new(lookup), Arc::new(OnlyDotTwo));
        match resolver
            .resolve(Name::from_str("hooks.test").unwrap())
            .await
        {
            Ok(addrs) => Ok(addrs.map(|a| a.ip()).collect()),
            Err(e) => Err(refusal_in(&*e).expect("a refusal").0.kind),
        }
    }

    #[tokio::test]
    async fn only_vetted_answers_pass() {
        assert_eq!(
            resolve(&[[127, 0, 0, 2]]).await,
            Ok(vec![IpAddr::from([127, 0, 0, 2])])
        );
        assert_eq!(
            resolve(&[[127, 0, 0, 1]]).await,
            Err(ErrorKind::PrivateDestination)
        );
        assert_eq!(
            resolve(&[[127, 0, 0, 2], [127, 0, 0, 1]]).await,
            Err(ErrorKind::PrivateDestination),
            "one refused address refuses the name"
        );
        assert_eq!(resolve(&[]).await, Err(ErrorKind::NotResolvableDestination));
    }

    #[test]
    fn literal_addresses_are_vetted_without_a_resolver() {
        let refused = |url: &str| refused_literal(&Url::parse(url).unwrap(), &OnlyDotTwo);
        assert_eq!(
            refused("http://127.0.0.1:9/x").map(|e| e.kind),
            Some(ErrorKind::PrivateDestination)
        );
        assert!(refused("http://127.0.0.2:9/x").is_none());
        assert!(
            refused("http://hooks.test/x").is_none(),
            "names go to the resolver"
        );
    }

    struct Public;

    #[async_trait]
    impl DestinationPolicy for Public {
        async fn check(&self, _url: &str) -> Result<(), PortError> {
            Ok(())
        }

        fn allows(&self, ip: IpAddr) -> bool {
            destination::is_public(ip)
        }
    }

    #[test]
    fn literal_ipv6_forms_of_loopback_are_refused() {
        for url in [
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[::ffff:0:7f00:1]/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            let refused = refused_literal(&Url::parse(url).unwrap(), &Public);
            assert_eq!(
                refused.map(|e| e.kind),
                Some(ErrorKind::PrivateDestination),
                "{url}"
            );
        }
        assert!(
            refused_literal(&Url::parse("http://[2001:4860::8888]/").unwrap(), &Public).is_none()
        );
    }
}
