//! Guessing on the token route: an organization hammers `POST /v1/auth/access_token`
//! with wrong secrets (for its own client id, for the victim's, for invented ones)
//! from twenty addresses of 127.0.0.0/8. It gets 401s, then 429s with `Retry-After`;
//! the victim keeps working and keeps refreshing its token from its own address; and
//! the attacker's right secret works again once the throttle expires.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use futures::StreamExt as _;
use port_chaos::api::{Answer, Api};
use port_chaos::isolation::{Tenants, TenantsOptions, VICTIM_CLIENT_ID, VICTIM_CLIENT_SECRET};
use reqwest::Method;
use serde_json::json;

/// The attacker's addresses: 127.0.0.2 to 127.0.0.21 (the victim uses 127.0.0.1).
const ADDRESSES: u8 = 20;
/// Wrong attempts per address for each kind of client id.
const ATTEMPTS: usize = 15;

async fn login(api: &Api, client_id: &str, secret: &str) -> Result<Answer> {
    api.send(
        Method::POST,
        "/v1/auth/access_token",
        Some(&json!({ "clientId": client_id, "clientSecret": secret })),
        &[],
    )
    .await
    .context("POST /v1/auth/access_token")
}

/// What the attack saw.
#[derive(Debug, Default)]
struct Outcome {
    /// The attacker's answers, by status.
    attacker: BTreeMap<u16, usize>,
    /// 429s without a usable `Retry-After` or without the envelope.
    malformed_429: usize,
    /// The victim's logins during the attack, by status.
    victim_logins: BTreeMap<u16, usize>,
    /// The attacker's right secret, throttled, then accepted after `Retry-After`.
    right_secret_throttled: u16,
    retry_after: u64,
    right_secret_after_wait: u16,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_secrets_is_throttled_and_never_locks_the_victim_out() {
    let mut tenants = Tenants::start(TenantsOptions::default()).await.unwrap();
    let base = tenants.base_url();
    let own = tenants.attacker_credentials.clone();
    let report = tenants
        .under_attack("token guessing", |_attacker| async move {
            let mut outcome = Outcome::default();
            // The victim refreshes its token from its usual address all along.
            let victim = Api::anonymous(&base)?;
            let stop = Arc::new(AtomicBool::new(false));
            let refresher = {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut statuses = BTreeMap::<u16, usize>::new();
                    while !stop.load(Ordering::SeqCst) {
                        let answer = login(&victim, VICTIM_CLIENT_ID, VICTIM_CLIENT_SECRET).await?;
                        *statuses.entry(answer.status).or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    anyhow::Ok(statuses)
                })
            };
            let clients: Vec<Api> = (0..ADDRESSES)
                .map(|n| Api::anonymous_from(&base, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + n))))
                .collect::<Result<_>>()?;
            let mut attempts = Vec::new();
            for (n, client) in clients.iter().enumerate() {
                for i in 0..ATTEMPTS {
                    attempts.push((client.clone(), own.client_id.clone(), format!("wrong-{i}")));
                    attempts.push((
                        client.clone(),
                        VICTIM_CLIENT_ID.to_owned(),
                        format!("wrong-{i}"),
                    ));
                    attempts.push((
                        client.clone(),
                        format!("invented-{n}-{i}"),
                        "wrong".to_owned(),
                    ));
                }
            }
            let answers =
                futures::stream::iter(attempts)
                    .map(|(api, client_id, secret)| async move {
                        login(&api, &client_id, &secret).await
                    })
                    .buffer_unordered(8)
                    .collect::<Vec<_>>()
                    .await;
            for answer in answers {
                let answer = answer?;
                *outcome.attacker.entry(answer.status).or_default() += 1;
                if answer.status == 429
                    && (answer.body["error"] != "too_many_requests"
                        || answer
                            .header("retry-after")
                            .and_then(|s| s.parse::<u64>().ok())
                            .is_none_or(|s| s == 0))
                {
                    outcome.malformed_429 += 1;
                }
            }
            // The attacker's own right secret from its throttled address: refused
            // unchecked, then accepted once the throttle has expired.
            let home = &clients[0];
            let throttled = login(home, &own.client_id, &own.client_secret).await?;
            outcome.right_secret_throttled = throttled.status;
            outcome.retry_after = throttled
                .header("retry-after")
                .and_then(|s| s.parse().ok())
                .unwrap_or_default();
            ensure!(
                outcome.retry_after <= 60,
                "Retry-After {}",
                outcome.retry_after
            );
            tokio::time::sleep(Duration::from_secs(outcome.retry_after)).await;
            outcome.right_secret_after_wait = login(home, &own.client_id, &own.client_secret)
                .await?
                .status;
            stop.store(true, Ordering::SeqCst);
            outcome.victim_logins = refresher.await??;
            Ok(outcome)
        })
        .await
        .unwrap();
    report.assert_held().unwrap();
    let outcome = &report.outcome;
    port_chaos::visible(&format!("token guessing: {outcome:?}"));
    assert_eq!(
        outcome.attacker.keys().copied().collect::<Vec<_>>(),
        [401, 429],
        "{outcome:?}"
    );
    // No address got more failures checked than the per-address bound (30).
    let per_address_bound = usize::from(ADDRESSES) * 30;
    assert!(outcome.attacker[&401] <= per_address_bound, "{outcome:?}");
    assert!(
        outcome.attacker[&429] >= usize::from(ADDRESSES) * ATTEMPTS * 3 - per_address_bound,
        "{outcome:?}"
    );
    assert_eq!(outcome.malformed_429, 0, "{outcome:?}");
    assert_eq!(outcome.right_secret_throttled, 429, "{outcome:?}");
    assert_eq!(outcome.right_secret_after_wait, 200, "{outcome:?}");
    assert_eq!(
        outcome.victim_logins.keys().copied().collect::<Vec<_>>(),
        [200],
        "{outcome:?}"
    );
    assert!(outcome.victim_logins[&200] >= 10, "{outcome:?}");
}
