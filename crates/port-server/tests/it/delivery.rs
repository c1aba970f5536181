//! Delivery through a real portd (`TestServer`: SQLite, the delivery worker, the
//! reaper) to webhook receivers on loopback: signed webhooks, attempts, redelivery,
//! approval gating, the destination policy, and the claim / ack / heartbeat routes
//! of pull-mode runners.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use port_core::signature::{DEFAULT_TOLERANCE_SECS, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify};
use port_server::DestinationMode;
use port_server::testing::TestServer;
use serde_json::json;

use crate::hooks::{Api, PATIENCE, Receiver, Reply, quick_delivery, quick_server};

fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_delivers_a_signed_webhook() {
    let receiver = Receiver::start(vec![Reply::status(200)]).await;
    let server = quick_server().await;
    let api = Api::of(&server).await;
    api.webhook_action("deploy", &receiver.url(), json!({}))
        .await;

    let run_id = api.execute("deploy").await;
    let received = receiver.wait_for(1, PATIENCE).await;
    let hook = &received[0];
    verify(
        server.client_secret.as_bytes(),
        hook.header(SIGNATURE_HEADER),
        hook.header(TIMESTAMP_HEADER),
        &hook.body,
        unix_now(),
        DEFAULT_TOLERANCE_SECS,
    )
    .expect("the signature verifies over the raw body");
    assert_eq!(hook.header("content-type"), "application/json");
    assert!(hook.header("user-agent").starts_with("portd/"));
    assert_eq!(hook.run_id(), run_id);
    assert_eq!(hook.json()["action"], "deploy");

    let delivery = api.delivery_in_state(&run_id, "DELIVERED").await;
    assert_eq!(
        delivery["id"],
        hook.webhook_id(),
        "webhook-id is the delivery id"
    );
    assert_eq!(delivery["runId"], run_id);
    assert_eq!(delivery["mode"], "WEBHOOK");
    assert_eq!(delivery["attemptCount"], 1);
    assert_eq!(delivery["attempts"][0]["statusCode"], 200);
    assert_eq!(delivery["nextAttemptAt"], json!(null));
    // The run is left to its backend.
    assert_eq!(api.run(&run_id).await["status"], "IN_PROGRESS");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deliveries_route_lists_every_attempt() {
    let receiver = Receiver::start(vec![Reply::status(500), Reply::status(200)]).await;
    let server = quick_server().await;
    let api = Api::of(&server).await;
    api.webhook_action("deploy", &receiver.url(), json!({}))
        .await;

    let run_id = api.execute("deploy").await;
    let received = receiver.wait_for(2, PATIENCE).await;
    assert_eq!(
        received[0].webhook_id(),
        received[1].webhook_id(),
        "one webhook-id across attempts"
    );
    let delivery = api.delivery_in_state(&run_id, "DELIVERED").await;
    assert_eq!(delivery["id"], received[0].webhook_id());
    assert_eq!(delivery["attemptCount"], 2);
    let attempts = delivery["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{delivery:#}");
    assert_eq!(attempts[0]["number"], 1);
    assert_eq!(attempts[0]["statusCode"], 500);
    assert_eq!(attempts[1]["number"], 2);
    assert_eq!(attempts[1]["statusCode"], 200);
    for attempt in attempts {
        assert!(attempt["startedAt"].is_string() && attempt["endedAt"].is_string());
        assert!(attempt["durationMs"].is_u64());
    }
    // The failed attempt left a line in the run's log.
    let logs = api
        .get(&format!("/actions/runs/{run_id}/logs"))
        .await
        .expect(200);
    let first = logs["runLogs"][0]["message"].as_str().unwrap();
    assert!(first.contains("attempt 1 of 4 failed: HTTP 500"), "{first}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliver_sends_again_with_the_same_webhook_id() {
    let receiver = Receiver::start(vec![Reply::status(200)]).await;
    let server = quick_server().await;
    let api = Api::of(&server).await;
    api.webhook_action("deploy", &receiver.url(), json!({}))
        .await;
    let run_id = api.execute("deploy").await;
    api.delivery_in_state(&run_id, "DELIVERED").await;

    api.post(
        &format!("/actions/runs/{run_id}/deliveries/redeliver"),
        json!({}),
    )
    .await
    .expect(200);
    let received = receiver.wait_for(2, PATIENCE).await;
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].webhook_id(), received[1].webhook_id());
    assert_eq!(received[0].body, received[1].body, "the same request");
    let delivery = api.delivery_in_state(&run_id, "DELIVERED").await;
    assert_eq!(delivery["attemptCount"], 2);

    // Once the run has ended there is nothing to resend.
    api.patch(
        &format!("/actions/runs/{run_id}"),
        json!({ "status": "SUCCESS" }),
    )
    .await
    .expect(200);
    api.post(
        &format!("/actions/runs/{run_id}/deliveries/redeliver"),
        json!({}),
    )
    .await
    .expect_error(422, "run_exhausted");
    api.post(
        "/actions/runs/r_0000000000000000/deliveries/redeliver",
        json!({}),
    )
    .await
    .expect_error(404, "not_found");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_gates_the_delivery() {
    let receiver = Receiver::start(vec![Reply::status(200)]).await;
    let server = quick_server().await;
    let api = Api::of(&server).await;
    let action = json!({
        "identifier": "guarded",
        "title": "Guarded",
        "trigger": { "type": "self-service", "operation": "CREATE", "userInputs": { "properties": {} } },
        "invocationMethod": { "type": "WEBHOOK", "url": receiver.url() },
        "requiredApproval": true,
    });
    api.post("/actions", action).await.expect(201);
    let run_id = api.execute("guarded").await;
    assert_eq!(api.run(&run_id).await["status"], "WAITING_FOR_APPROVAL");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        receiver.received().is_empty(),
        "nothing is sent before approval"
    );
    assert!(api.deliveries(&run_id).await.is_empty());
    api.post(
        &format!("/actions/runs/{run_id}/deliveries/redeliver"),
        json!({}),
    )
    .await
    .expect_error(422, "invalid_request");

    api.patch(
        &format!("/actions/runs/{run_id}/approval"),
        json!({ "status": "APPROVE" }),
    )
    .await
    .expect(201);
    let received = receiver.wait_for(1, PATIENCE).await;
    assert_eq!(received[0].run_id(), run_id);
    api.delivery_in_state(&run_id, "DELIVERED").await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_destinations_refuse_loopback_at_execute() {
    let receiver = Receiver::start(vec![Reply::status(200)]).await;
    let server = TestServer::start_configured(Default::default(), |config| {
        config.webhook_destinations = DestinationMode::Public;
        config.delivery = Some(quick_delivery());
    })
    .await
    .unwrap();
    let api = Api::of(&server).await;
    api.webhook_action("deploy", &receiver.url(), json!({}))
        .await;
    api.post("/actions/deploy/runs", json!({ "properties": {} }))
        .await
        .expect_error(403, "private_destination");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.received().is_empty());
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Pull-mode runners

/// A server with an `agent: true` action; returns it, its API and a run.
async fn agent_run() -> (TestServer, Api, String, Receiver) {
    let receiver = Receiver::start(vec![Reply::status(200)]).await;
    let server = quick_server().await;
    let api = Api::of(&server).await;
    api.webhook_action("pulled", &receiver.url(), json!({ "agent": true }))
        .await;
    let run_id = api.execute("pulled").await;
    (server, api, run_id, receiver)
}

async fn claim(api: &Api, visibility_ms: u64) -> Vec<serde_json::Value> {
    let body = api
        .post(
            "/actions/runs/claim-pending",
            json!({ "limit": 10, "visibilityTimeoutMs": visibility_ms }),
        )
        .await
        .expect(200);
    body["runs"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_runs_are_claimed_not_sent() {
    let (server, api, run_id, receiver) = agent_run().await;
    let runs = claim(&api, 60_000).await;
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["id"], run_id);
    assert_eq!(run["status"], "IN_PROGRESS");
    assert_eq!(run["payload"]["agent"], true);
    assert_eq!(run["payload"]["body"]["context"]["runId"], run_id);
    assert!(run["claimedUntil"].is_string(), "{run:#}");
    assert!(
        claim(&api, 60_000).await.is_empty(),
        "a live claim is not served twice"
    );

    let delivery = api.delivery_in_state(&run_id, "PENDING").await;
    assert_eq!(delivery["mode"], "AGENT");
    assert_eq!(delivery["attemptCount"], 1, "one claim");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        receiver.received().is_empty(),
        "agent runs are not sent over HTTP"
    );

    // Ocean asks for up to 1000 runs at once (portd hands out 100 at most).
    for limit in [0, 1001] {
        api.post(
            "/actions/runs/claim-pending",
            json!({ "limit": limit, "visibilityTimeoutMs": 1000 }),
        )
        .await
        .expect_error(422, "invalid_request");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_claim_is_served_again_after_its_visibility() {
    let (server, api, run_id, _receiver) = agent_run().await;
    assert_eq!(claim(&api, 1000).await.len(), 1);
    assert!(claim(&api, 1000).await.is_empty());
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let again = claim(&api, 60_000).await;
    assert_eq!(again.len(), 1, "the expired claim is served again");
    assert_eq!(again[0]["id"], run_id);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_runs_are_not_served_again() {
    let (server, api, run_id, _receiver) = agent_run().await;
    assert_eq!(claim(&api, 200).await.len(), 1);
    let acked = api
        .patch(
            "/actions/runs/ack",
            json!({ "runIds": [run_id, "r_0000000000000000", "not-a-run"] }),
        )
        .await
        .expect(200);
    assert_eq!(acked, json!({ "ok": true, "ackedCount": 1 }));
    let again = api
        .patch("/actions/runs/ack", json!({ "runIds": [run_id] }))
        .await
        .expect(200);
    assert_eq!(again["ackedCount"], 0, "acknowledging twice is harmless");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(claim(&api, 60_000).await.is_empty(), "done with for good");
    api.delivery_in_state(&run_id, "DELIVERED").await;
    // The run itself is the runner's to finish.
    assert_eq!(api.run(&run_id).await["status"], "IN_PROGRESS");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_extends_a_claim() {
    let (server, api, run_id, _receiver) = agent_run().await;
    let path = format!("/actions/runs/{run_id}/heartbeat");
    api.post(&path, json!({}))
        .await
        .expect_error(404, "not_found");
    assert_eq!(claim(&api, 1000).await.len(), 1);
    let beat = api
        .post(&path, json!({ "visibilityTimeoutMs": 10_000 }))
        .await
        .expect(200);
    assert!(beat["claimedUntil"].is_string(), "{beat:#}");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(
        claim(&api, 60_000).await.is_empty(),
        "the claim outlived its first visibility"
    );
    // No body at all extends by the default.
    let response = api
        .request(reqwest::Method::POST, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    api.post(&path, json!({ "visibilityTimeoutMs": 1 }))
        .await
        .expect_error(422, "invalid_request");

    api.patch("/actions/runs/ack", json!({ "runIds": [run_id] }))
        .await
        .expect(200);
    api.post(&path, json!({}))
        .await
        .expect_error(404, "not_found");
    api.post("/actions/runs/r_0000000000000000/heartbeat", json!({}))
        .await
        .expect_error(404, "not_found");
    server.shutdown().await.unwrap();
}
