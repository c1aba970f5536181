//! Connect-time SSRF protection: the worker connects only to addresses the destination
//! policy vetted, resolved once, and a refusal ends the run.
//!
//! On loopback, 127.0.0.2 plays the public address and 127.0.0.1 the private one: the
//! policy allows only the first, and two receivers listen on the same port of each, so
//! whichever one gets the request shows which address was connected to.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{Result, bail, ensure};
use async_trait::async_trait;
use port_core::destination;
use port_core::ports::DeliveryState;
use port_core::run::RunStatus;
use port_core::service::DestinationPolicy;
use port_core::{ErrorKind, PortError};
use serde_json::json;

use crate::support::{Harness, Receiver, Reply, ScriptedDns, fast_config, webhook_action};

const VETTED: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
const PRIVATE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// Allows [`VETTED`] only; at execute time it resolves names with the test's DNS.
struct OnlyVetted {
    dns: Arc<ScriptedDns>,
}

#[async_trait]
impl DestinationPolicy for OnlyVetted {
    async fn check(&self, url: &str) -> Result<(), PortError> {
        let url = reqwest::Url::parse(url).map_err(|_| destination::not_resolvable(url))?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let addresses: Vec<IpAddr> = match url.host() {
            Some(url::Host::Domain(_)) => self.dns.answer().into_iter().collect(),
            _ => vec![host.trim_matches(['[', ']']).parse().unwrap_or(PRIVATE)],
        };
        destination::vet(&host, &addresses, |ip| self.allows(ip))
    }

    fn allows(&self, ip: IpAddr) -> bool {
        ip == VETTED
    }
}

/// A receiver on 127.0.0.2 and one on 127.0.0.1, on the same port.
async fn receivers() -> Result<(Receiver, Receiver)> {
    for _ in 0..20 {
        let vetted =
            Receiver::start_on(SocketAddr::new(VETTED, 0), vec![Reply::status(200)]).await?;
        let port = vetted.addr.port();
        if let Ok(private) =
            Receiver::start_on(SocketAddr::new(PRIVATE, port), vec![Reply::status(200)]).await
        {
            return Ok((vetted, private));
        }
    }
    bail!("no port free on both 127.0.0.1 and 127.0.0.2")
}

async fn harness(dns: &Arc<ScriptedDns>, url: &str) -> Result<Harness> {
    let mut h = Harness::new().await?;
    h.services.destinations = Arc::new(OnlyVetted { dns: dns.clone() });
    h.create_action(&webhook_action("hook", url, json!({}), json!({})))
        .await?;
    h.start_worker_with_resolver(fast_config(), dns.clone())?;
    Ok(h)
}

#[tokio::test]
async fn the_connection_goes_to_the_address_that_was_vetted() -> Result<()> {
    let (vetted, private) = receivers().await?;
    // Execute-time check, then the worker's one lookup; any further lookup would
    // answer the private address.
    let dns = ScriptedDns::new([VETTED, VETTED, PRIVATE]);
    let url = format!("http://hooks.test:{}/hook", vetted.addr.port());
    let h = harness(&dns, &url).await?;
    let run = h.execute("hook", json!({})).await?;

    h.wait_for_delivery(&run.id, DeliveryState::Delivered)
        .await?;
    ensure!(
        vetted.received().len() == 1,
        "the vetted address got the webhook"
    );
    ensure!(private.received().is_empty(), "nothing reached 127.0.0.1");
    ensure!(
        dns.lookups() == 2,
        "one lookup to check, one to connect: {}",
        dns.lookups()
    );
    Ok(())
}

#[tokio::test]
async fn a_name_that_rebinds_to_a_private_address_is_not_connected_to() -> Result<()> {
    let (vetted, private) = receivers().await?;
    // Public when executed, 127.0.0.1 when the worker connects.
    let dns = ScriptedDns::new([VETTED, PRIVATE]);
    let url = format!("http://rebind.test:{}/hook", vetted.addr.port());
    let h = harness(&dns, &url).await?;
    let run = h.execute("hook", json!({})).await?;

    let failed = h
        .wait_for_run(&run.id, "FAILURE", |r| r.status() == RunStatus::Failure)
        .await?;
    let summary = failed.summary.unwrap_or_default();
    ensure!(
        summary
            == "Webhook delivery failed: the webhook host rebind.test resolves to a private \
                address, which this server does not call (private_destination) (not retried)",
        "{summary}"
    );
    let (_, attempts) = h.wait_for_delivery(&run.id, DeliveryState::Failed).await?;
    ensure!(
        attempts.len() == 1,
        "refused once, never retried: {attempts:?}"
    );
    ensure!(attempts[0].status_code.is_none());
    ensure!(private.received().is_empty() && vetted.received().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_private_address_in_the_url_is_refused_at_delivery() -> Result<()> {
    let (_vetted, private) = receivers().await?;
    let dns = ScriptedDns::new([VETTED]);
    let mut h = Harness::new().await?;
    // The action was executed while the server allowed every destination; the worker
    // runs under the stricter policy (a restart with PORTD_WEBHOOK_DESTINATIONS=public).
    h.create_action(&webhook_action(
        "hook",
        &private.url("/hook"),
        json!({}),
        json!({}),
    ))
    .await?;
    let run = h.execute("hook", json!({})).await?;
    h.services.destinations = Arc::new(OnlyVetted { dns: dns.clone() });
    h.start_worker_with_resolver(fast_config(), dns.clone())?;

    let failed = h
        .wait_for_run(&run.id, "FAILURE", |r| r.status() == RunStatus::Failure)
        .await?;
    let summary = failed.summary.unwrap_or_default();
    ensure!(
        summary.contains("the webhook host 127.0.0.1 resolves to a private address")
            && summary.contains(ErrorKind::PrivateDestination.identifier())
            && summary.ends_with("(not retried)"),
        "{summary}"
    );
    ensure!(private.received().is_empty());
    ensure!(dns.lookups() == 0, "an address needs no lookup");
    Ok(())
}
