//! Crash safety of the real `portd` binary: `kill -9` while webhooks are in flight
//! loses no acknowledged run, log line or patch, and a restart on the same data
//! directory sends every pending delivery (with its webhook-id) within 10 s, long
//! before the dead process's leases would have expired.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::hooks::{Api, Receiver, Reply};

const CLIENT_ID: &str = "crash-test-client";
const CLIENT_SECRET: &str = "crash-test-secret-0123456789abcdefghijklmnopqrstuvwxyz";

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A `portd` process, killed (and reaped) when dropped.
struct Portd {
    child: Child,
    api: String,
}

impl Portd {
    fn spawn(data_dir: &Path) -> Self {
        let port = free_port();
        // Many quick retries: deliveries stay pending (not failed) across the crash.
        let schedule = std::iter::once("0")
            .chain(std::iter::repeat_n("0.5", 60))
            .collect::<Vec<_>>()
            .join(",");
        let child = Command::new(env!("CARGO_BIN_EXE_portd"))
            .env("PORTD_LISTEN", format!("127.0.0.1:{port}"))
            .env("PORTD_DATA_DIR", data_dir)
            .env_remove("PORTD_DATABASE_URL")
            .env("PORTD_BOOTSTRAP_CLIENT_ID", CLIENT_ID)
            .env("PORTD_BOOTSTRAP_CLIENT_SECRET", CLIENT_SECRET)
            .env_remove("PORTD_WEBHOOK_DESTINATIONS")
            .env("PORTD_DELIVERY_RETRY_SCHEDULE", schedule)
            // The default attempt timeout (30 s) makes the lease 60 s: far beyond the
            // 10 s a restart has to send what was in flight.
            .env_remove("PORTD_DELIVERY_TIMEOUT_SECS")
            .env_remove("PORTD_DELIVERY_WORKER_ID")
            .env_remove("PORTD_RUN_TIMEOUT_SECS")
            .env("PORTD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self {
            child,
            api: format!("http://127.0.0.1:{port}/v1"),
        }
    }

    async fn ready(&self) -> Api {
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = reqwest::Client::new();
        let health = self.api.trim_end_matches("/v1").to_owned() + "/healthz";
        while http.get(&health).send().await.is_err() {
            assert!(Instant::now() < deadline, "portd did not start");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Api::login(&self.api, CLIENT_ID, CLIENT_SECRET).await
    }

    fn kill_9(&mut self) {
        let status = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let _ = self.child.wait();
    }
}

impl Drop for Portd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_and_a_restart_delivers_within_10_s() {
    const RUNS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    // The receiver holds each request and then fails it: webhooks are in flight (their
    // deliveries leased) when portd dies.
    let receiver = Receiver::start(vec![Reply::status(503).after(Duration::from_secs(3))]).await;

    let mut first = Portd::spawn(dir.path());
    let api = first.ready().await;
    api.webhook_action("deploy", &receiver.url(), json!({}))
        .await;
    let mut runs = Vec::new();
    for i in 0..RUNS {
        let run_id = api.execute("deploy").await;
        // Acknowledged writes that must survive.
        api.add_log(&run_id, json!({ "message": format!("log of run {i}") }))
            .await;
        api.patch(
            &format!("/actions/runs/{run_id}"),
            json!({ "statusLabel": format!("label {i}") }),
        )
        .await
        .expect(200);
        runs.push(run_id);
    }
    // Every run's webhook is in flight.
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen_before: HashMap<String, String> = loop {
        let seen: HashMap<String, String> = receiver
            .received()
            .iter()
            .map(|r| (r.run_id(), r.webhook_id().to_owned()))
            .collect();
        if seen.len() == RUNS {
            break seen;
        }
        assert!(Instant::now() < deadline, "webhooks sent: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.kill_9();
    let crashed_at = receiver.received().len();

    receiver.answer(vec![Reply::status(200)]);
    let restarted_at = Instant::now();
    let second = Portd::spawn(dir.path());
    let api = second.ready().await;

    // Every run's webhook arrives again, with the same webhook-id, within 10 s.
    let mut delivered = HashSet::new();
    while delivered.len() < RUNS {
        let elapsed = restarted_at.elapsed();
        assert!(
            elapsed < Duration::from_secs(10),
            "after {elapsed:?} only {delivered:?} of {runs:?} were delivered again"
        );
        for request in receiver.received().iter().skip(crashed_at) {
            let run_id = request.run_id();
            assert_eq!(
                seen_before.get(&run_id).map(String::as_str),
                Some(request.webhook_id()),
                "the same webhook-id as before the crash"
            );
            delivered.insert(run_id);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The new process got the 200s: every delivery is done, still within the 10 s.
    for run_id in &runs {
        api.delivery_in_state(run_id, "DELIVERED").await;
    }
    let elapsed = restarted_at.elapsed();
    assert!(
        elapsed < Duration::from_secs(10),
        "delivered only after {elapsed:?}"
    );

    for (i, run_id) in runs.iter().enumerate() {
        let run = api.run(run_id).await;
        assert_eq!(run["status"], "IN_PROGRESS", "{run:#}");
        assert_eq!(run["statusLabel"], format!("label {i}"));
        let logs = api
            .get(&format!("/actions/runs/{run_id}/logs"))
            .await
            .expect(200);
        let messages: Vec<&str> = logs["runLogs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["message"].as_str())
            .collect();
        assert!(
            messages.contains(&format!("log of run {i}").as_str()),
            "{messages:?}"
        );
    }
    let worker_id = std::fs::read_to_string(dir.path().join("worker-id")).unwrap();
    assert!(worker_id.trim().starts_with("portd-"), "{worker_id}");
    drop(second);
}
