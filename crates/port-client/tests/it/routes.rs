//! What the typed methods send and how they read the answers.

use port_client::{RunQuery, RunStatus};
use serde_json::json;

use crate::script::{Reply, ScriptServer, run_json};

#[tokio::test]
async fn list_runs_sends_filters_and_returns_the_cursor() {
    let server = ScriptServer::start(|r, _| {
        (r.path == "/v1/actions/runs").then(|| {
            Reply::json(
                200,
                json!({ "ok": true, "runs": [run_json("r_2", "SUCCESS")], "next": "r_2" }),
            )
        })
    })
    .await;
    let page = server
        .client()
        .list_runs(&RunQuery {
            action: Some("deploy".into()),
            active: Some(false),
            status: Some(RunStatus::Success),
            external_run_id: Some("gh-1".into()),
            limit: Some(1),
            before: Some("r_3".into()),
            ..RunQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.runs.len(), 1);
    assert_eq!(page.next.as_deref(), Some("r_2"));
    let sent = &server.to("GET", "/v1/actions/runs")[0];
    assert_eq!(
        sent.query,
        "version=v2&active=false&limit=1&external_run_id=gh-1&action=deploy&status=SUCCESS&before=r_3"
    );
}

#[tokio::test]
async fn approvals_send_the_decision() {
    let path = "/v1/actions/runs/r_1/approval";
    let server = ScriptServer::start(move |r, nth| {
        (r.path == path).then(|| match nth {
            0 => Reply::json(
                201,
                json!({ "ok": true, "run": run_json("r_1", "IN_PROGRESS") }),
            ),
            // Approval is not repeated: a 503 is returned as is.
            _ => Reply::error(503, "service_unavailable", "later"),
        })
    })
    .await;
    let client = server.client();
    client.approve("r_1", Some("ship it")).await.unwrap();
    assert!(client.decline("r_1", None).await.is_err());
    let sent = server.to("PATCH", path);
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0].json(),
        json!({ "status": "APPROVE", "description": "ship it" })
    );
    assert_eq!(sent[1].json(), json!({ "status": "DECLINE" }));
}

#[tokio::test]
async fn runners_claim_ack_and_heartbeat() {
    let server = ScriptServer::start(|r, _| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/v1/actions/runs/claim-pending") => {
            let mut run = run_json("r_1", "IN_PROGRESS");
            run["payload"] = json!({ "type": "WEBHOOK", "agent": true, "body": { "x": 1 } });
            Some(Reply::json(200, json!({ "ok": true, "runs": [run] })))
        }
        ("PATCH", "/v1/actions/runs/ack") => Some(Reply::json(200, json!({ "ok": true, "ackedCount": 1 }))),
        ("POST", "/v1/actions/runs/r_1/heartbeat") => Some(Reply::json(200, json!({ "ok": true }))),
        ("GET", "/v1/actions/runs/r_1/deliveries") => Some(Reply::json(
            200,
            json!({ "ok": true, "deliveries": [{ "id": "msg_1", "runId": "r_1", "mode": "AGENT", "state": "PENDING", "attempts": 1 }] }),
        )),
        ("POST", "/v1/actions/runs/r_1/deliveries/redeliver") => Some(Reply::json(200, json!({ "ok": true }))),
        _ => None,
    })
    .await;
    let client = server.client();
    let runs = client
        .claim_pending(10, 30_000, Some("runner-a"))
        .await
        .unwrap();
    assert_eq!(runs[0].payload.as_ref().unwrap()["body"], json!({ "x": 1 }));
    assert_eq!(client.ack(&["r_1"]).await.unwrap(), 1);
    client.heartbeat("r_1").await.unwrap();
    let deliveries = client.deliveries("r_1").await.unwrap();
    assert_eq!(deliveries[0].state.as_deref(), Some("PENDING"));
    assert_eq!(deliveries[0].attempt_count, Some(1));
    client.redeliver("r_1").await.unwrap();

    let claim = &server.to("POST", "/v1/actions/runs/claim-pending")[0];
    assert_eq!(
        claim.json(),
        json!({ "limit": 10, "visibilityTimeoutMs": 30000, "installationId": "runner-a" })
    );
    assert_eq!(
        claim.header("x-port-reserved-usage").as_deref(),
        Some("true")
    );
    let ack = &server.to("PATCH", "/v1/actions/runs/ack")[0];
    assert_eq!(ack.json(), json!({ "runIds": ["r_1"] }));
}

#[tokio::test]
async fn legacy_action_routes_accept_one_or_many() {
    let server = ScriptServer::start(|r, _| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/v1/blueprints/microservice/actions") => Some(Reply::json(
            201,
            json!({ "ok": true, "actions": [{ "identifier": "a", "blueprint": "microservice" }, { "identifier": "b" }] }),
        )),
        ("GET", "/v1/blueprints/microservice/actions/a") => Some(Reply::json(
            200,
            json!({ "ok": true, "action": { "identifier": "a", "blueprint": "microservice", "trigger": "CREATE" } }),
        )),
        _ => None,
    })
    .await;
    let client = server.client();
    let created = client
        .create_blueprint_actions(
            "microservice",
            &json!([{ "identifier": "a" }, { "identifier": "b" }]),
        )
        .await
        .unwrap();
    let identifiers: Vec<_> = created.iter().map(|a| a.identifier()).collect();
    assert_eq!(identifiers, [Some("a"), Some("b")]);
    let one = client
        .get_blueprint_action("microservice", "a")
        .await
        .unwrap();
    assert_eq!(one.blueprint(), Some("microservice"));
}
