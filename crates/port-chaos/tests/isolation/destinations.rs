//! Webhook destinations under `PORTD_WEBHOOK_DESTINATIONS=public`: the attacker tries
//! every way of writing a loopback, private or metadata address into a webhook URL
//! (IPv6 forms that embed an IPv4 address, NAT64, 6to4, Teredo, numeric IPv4 forms, a
//! name) and each execute is refused with Port's 403 `private_destination`; nothing is
//! sent, and the victim does not notice.

use anyhow::Result;
use port_chaos::isolation::{Tenants, TenantsOptions};
use serde_json::json;

/// Each URL reaches 127.0.0.1, ::1, 10.0.0.1 or 169.254.169.254 one way or another.
const BYPASSES: &[&str] = &[
    "http://127.0.0.1:9/hook",
    "http://localhost:9/hook",
    "http://2130706433:9/hook",
    "http://0x7f.1:9/hook",
    "http://[::1]:9/hook",
    // IPv4-compatible, -mapped and -translated.
    "http://[::127.0.0.1]:9/hook",
    "http://[::ffff:127.0.0.1]:9/hook",
    "http://[::ffff:0:7f00:1]:9/hook",
    "http://[::a9fe:a9fe]/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/latest/meta-data/",
    // NAT64, well-known and local-use prefixes.
    "http://[64:ff9b::7f00:1]:9/hook",
    "http://[64:ff9b::a00:1]:9/hook",
    "http://[64:ff9b:1::a9fe:a9fe]/latest/meta-data/",
    // 6to4 of 127.0.0.1, Teredo with client 127.0.0.1 behind a public server.
    "http://[2002:7f00:1::1]:9/hook",
    "http://[2001:0:808:808::80ff:fffe]:9/hook",
];

struct Refusal {
    url: &'static str,
    status: u16,
    error: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_of_writing_a_private_address_is_refused() -> Result<()> {
    let options = TenantsOptions::default().env("PORTD_WEBHOOK_DESTINATIONS", "public");
    let mut tenants = Tenants::start(options).await?;
    let report = tenants
        .under_attack("private webhook destinations", |attacker| async move {
            let mut refusals = Vec::new();
            for (i, url) in BYPASSES.iter().enumerate() {
                let action = format!("bypass-{i}");
                attacker
                    .post(
                        "/v1/actions",
                        &port_chaos::isolation::action(
                            &action,
                            json!({ "type": "WEBHOOK", "url": url }),
                        ),
                    )
                    .await?
                    .expect(201, "creating an attacker action")?;
                let answer = port_chaos::isolation::execute(&attacker, &action).await?;
                refusals.push(Refusal {
                    url,
                    status: answer.status,
                    error: answer.body["error"].as_str().unwrap_or_default().to_owned(),
                });
            }
            let runs = attacker
                .get("/v1/actions/runs")
                .await?
                .expect(200, "listing the attacker's runs")?;
            let created = runs["runs"].as_array().map_or(0, Vec::len);
            Ok((refusals, created))
        })
        .await?;
    report.assert_held()?;
    let (refusals, created) = &report.outcome;
    let accepted: Vec<String> = refusals
        .iter()
        .filter(|r| (r.status, r.error.as_str()) != (403, "private_destination"))
        .map(|r| format!("{} answered {} {:?}", r.url, r.status, r.error))
        .collect();
    assert!(accepted.is_empty(), "not refused: {accepted:#?}");
    port_chaos::visible(&format!(
        "isolation `private webhook destinations`: {} URLs, all 403 private_destination",
        refusals.len()
    ));
    assert_eq!(*created, 0, "a refused execute creates no run");
    Ok(())
}
