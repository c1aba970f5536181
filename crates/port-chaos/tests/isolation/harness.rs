//! The harness itself: quiet neighbours pass, a dead portd fails.

use std::time::Duration;

use port_chaos::isolation::{Tenants, TenantsOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_neighbour_keeps_the_victims_latency() {
    let mut tenants = Tenants::start(TenantsOptions::default()).await.unwrap();
    let report = tenants
        .under_attack("ordinary neighbour", |attacker| async move {
            // Reading its own (empty) run list is what a quiet neighbour does.
            for _ in 0..20 {
                let answer = attacker.get("/v1/actions/runs").await?;
                anyhow::ensure!(answer.status == 200, "{}", answer.body);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(())
        })
        .await
        .unwrap();
    report.assert_held().unwrap();
    assert!(report.baseline.count() > 10, "{}", report.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_portd_fails_the_check() {
    let mut tenants = Tenants::start(TenantsOptions::default()).await.unwrap();
    let pid = tenants.portd.pid();
    let report = tenants
        .under_attack("kill -9", |_attacker| async move {
            let status = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()?;
            anyhow::ensure!(status.success(), "kill failed");
            Ok(())
        })
        .await
        .unwrap();
    let error = report.assert_held().unwrap_err().to_string();
    assert!(error.contains("did not survive"), "{error}");
    assert!(!report.alive);
}
