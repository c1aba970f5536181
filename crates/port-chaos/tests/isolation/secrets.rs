//! Organization secrets are tenant data every send reads (issue 16): the attacker fills
//! its secret store to the bound, then executes runs whose templates read a secret, so
//! each execute and each delivery renders against a megabyte of secrets. The bound is
//! the attacker's 422, its loads of secrets take turns (one per organization, so they
//! never hold the store's shared read connections), its renders cost it its own
//! template share, and the victim keeps its latency.

use port_chaos::api::Api;
use port_chaos::isolation::{Tenants, TenantsOptions};
use serde_json::json;

/// The largest value, and how many of them fit the organization's 1 MiB.
const VALUE_BYTES: usize = 64 * 1024;
const FITTING: usize = 16;
/// Runs the attacker starts at once: twice the template workers' queue it may hold,
/// each rendering against a megabyte (about 0.1 s in a debug build).
const RUNS: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_secret_store_read_by_every_send_costs_only_its_owner() {
    let mut tenants = Tenants::start(TenantsOptions::default()).await.unwrap();
    let report = tenants
        .under_attack(
            "a megabyte of secrets read by every send",
            |attacker| async move {
                let value = "s".repeat(VALUE_BYTES);
                let mut over_bound = None;
                for n in 0..=FITTING {
                    let answer = attacker
                        .post(
                            "/v1/organization/secrets",
                            &json!({ "secretName": format!("S{n}"), "secretValue": value }),
                        )
                        .await?;
                    if answer.status != 201 {
                        over_bound = Some((n, answer.status, answer.body));
                        break;
                    }
                }
                attacker
                    .post(
                        "/v1/actions",
                        &port_chaos::isolation::action(
                            "reads_secrets",
                            json!({
                                "type": "WEBHOOK",
                                // Refused at once: every attempt renders, fails, and retries.
                                "url": "http://127.0.0.1:9/hook",
                                "headers": { "Authorization": "Bearer {{ .secrets.S0 }}" },
                                "body": { "all": "{{ .secrets | keys | length }}" }
                            }),
                        ),
                    )
                    .await?
                    .expect(201, "the attacker's action")?;
                let runs: Vec<_> = (0..RUNS)
                    .map(|_| {
                        let attacker: Api = attacker.clone();
                        tokio::spawn(async move {
                            port_chaos::isolation::execute(&attacker, "reads_secrets").await
                        })
                    })
                    .collect();
                let mut statuses = Vec::new();
                for run in runs {
                    statuses.push(run.await??.status);
                }
                // Their deliveries render against the secrets too (and fail, and retry):
                // the victim keeps probing while they do.
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                Ok((over_bound, statuses))
            },
        )
        .await
        .unwrap();
    report.assert_held().unwrap();
    let (over_bound, statuses) = &report.outcome;
    let (n, status, body) = over_bound.as_ref().expect("the store is bounded");
    // 16 values of 64 KiB are the whole megabyte: the 16th already passes it by a little
    // (nothing else counts), so it or the next one is refused.
    assert!(*n >= FITTING - 1, "refused too early, at {n}: {body}");
    assert_eq!(*status, 422, "{body}");
    assert_eq!(body["error"], "invalid_request", "{body}");
    assert!(
        statuses.iter().all(|s| [202, 429].contains(s)),
        "each execute is the attacker's run or its 429: {statuses:?}"
    );
    assert!(
        statuses.contains(&202),
        "some runs were created: {statuses:?}"
    );
}
