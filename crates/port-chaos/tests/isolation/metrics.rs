//! `/metrics` stays small whatever the requests: an organization sending thousands of
//! invented methods and paths gets 404/405 and adds no label.

use std::collections::BTreeMap;

use futures::StreamExt as _;
use port_chaos::isolation::{Tenants, TenantsOptions};
use reqwest::Method;

/// Requests the attacker sends (each with a method and a path of its own).
const INVENTED: usize = 3_000;

/// What `/metrics` may weigh after the attack: the labels of the routes the victim and
/// the harness used, whatever the attacker invented.
const METRICS_LIMIT_BYTES: usize = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_and_paths_add_no_metrics_labels() {
    let mut tenants = Tenants::start(TenantsOptions::default()).await.unwrap();
    let base = tenants.base_url();
    let report = tenants
        .under_attack("invented methods and paths", |attacker| async move {
            let statuses = futures::stream::iter(0..INVENTED)
                .map(|n| {
                    let attacker = attacker.clone();
                    async move {
                        let method = Method::from_bytes(format!("INVENTED{n}").as_bytes())?;
                        // Half on a real route (405), half on invented paths (404).
                        let path = if n % 2 == 0 {
                            "/v1/actions/runs".to_owned()
                        } else {
                            format!("/v1/invented/{n}/path")
                        };
                        let answer = attacker.send(method, &path, None, &[]).await?;
                        anyhow::Ok(answer.status)
                    }
                })
                .buffer_unordered(8)
                .collect::<Vec<_>>()
                .await;
            let mut counted = BTreeMap::<u16, usize>::new();
            for status in statuses {
                *counted.entry(status?).or_default() += 1;
            }
            Ok(counted)
        })
        .await
        .unwrap();
    report.assert_held().unwrap();
    let statuses = &report.outcome;
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        [404, 405],
        "the attacker got {statuses:?}"
    );
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    port_chaos::visible(&format!(
        "metrics after {INVENTED} invented requests: {} bytes, {} lines; attacker statuses {statuses:?}",
        metrics.len(),
        metrics.lines().count()
    ));
    assert!(!metrics.contains("INVENTED") && !metrics.contains("/v1/invented/"));
    assert!(
        metrics.contains(r#"method="other",route="unmatched",status="404""#),
        "{metrics}"
    );
    assert!(
        metrics.len() < METRICS_LIMIT_BYTES,
        "/metrics is {} bytes",
        metrics.len()
    );
}
