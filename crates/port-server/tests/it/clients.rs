//! Port's own clients, call by call: the exact request bodies and headers port-agent
//! (v0.8.9, POLLING mode) and Ocean (port-ocean 0.48.12) send (see the project's notes
//! on them), and snapshots of portd's answers. Ocean's own client classes are driven
//! against the real binary by port-chaos's `ocean` test.

use axum::body::Body;
use axum::http::Method;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::{Harness, Reply};

/// Ids, client ids and timestamps change from run to run; everything else is compared
/// exactly, keys in the order portd writes them.
fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_sort_maps(false);
    settings.set_prepend_module_to_snapshot(false);
    // Run ids inside messages.
    settings.add_filter(r"r_[A-Za-z0-9]{16}", "[run id]");
    settings
}

macro_rules! assert_client_snapshot {
    ($name:expr, $value:expr) => {
        settings().bind(|| {
            insta::assert_json_snapshot!($name, $value, {
                ".**.id" => "[id]",
                ".**.runId" => "[run id]",
                ".**.createdAt" => "[timestamp]",
                ".**.updatedAt" => "[timestamp]",
                ".**.claimedUntil" => "[timestamp]",
                ".**.endedAt" => "[timestamp]",
                ".**.createdBy" => "[client id]",
                ".**.updatedBy" => "[client id]",
                ".**.approval.userId" => "[client id]",
            });
        });
    };
}

/// The header both clients add to claims and acks.
const RESERVED: (&str, &str) = ("x-port-reserved-usage", "true");

async fn send(h: &Harness, method: Method, path: &str, body: Value, reserved: bool) -> Reply {
    let headers: &[(&str, &str)] = if reserved {
        &[("content-type", "application/json"), RESERVED]
    } else {
        &[("content-type", "application/json")]
    };
    h.raw(
        method,
        path,
        Some(&h.token.clone()),
        headers,
        Body::from(body.to_string()),
    )
    .await
}

async fn create_action(h: &Harness, identifier: &str, invocation: Value) {
    h.post(
        "/v1/actions",
        json!({
            "identifier": identifier,
            "title": identifier,
            "trigger": {
                "type": "self-service",
                "operation": "CREATE",
                "userInputs": { "properties": { "env": { "type": "string" } }, "required": [] }
            },
            "invocationMethod": invocation,
        }),
    )
    .await
    .expect(201);
}

async fn execute(h: &Harness, action: &str) -> String {
    let run = h
        .post(
            &format!("/v1/actions/{action}/runs"),
            json!({ "properties": { "env": "prod" } }),
        )
        .await
        .expect(202);
    run["run"]["id"].as_str().unwrap().to_owned()
}

/// An action for Port's agent: a synchronized WEBHOOK with `agent: true`.
async fn agent_action(h: &Harness) {
    create_action(
        h,
        "deploy",
        json!({
            "type": "WEBHOOK",
            "url": "https://backend.internal/deploy",
            "agent": true,
            "synchronized": true,
            "method": "POST",
            "body": { "env": "{{ .inputs.env }}", "runId": "{{ .run.id }}" },
        }),
    )
    .await;
}

/// An action for Ocean's GitHub integration `my-github-integration`.
async fn ocean_action(h: &Harness, identifier: &str) {
    create_action(
        h,
        identifier,
        json!({
            "type": "INTEGRATION_ACTION",
            "installationId": "my-github-integration",
            "integrationActionType": "dispatch_workflow",
            "integrationActionExecutionProperties": {
                "org": "acme",
                "repo": "infra",
                "workflow": "deploy.yml",
                "workflowInputs": { "env": "{{ .inputs.env }}" },
                "reportWorkflowStatus": true
            }
        }),
    )
    .await;
}

fn jwt_payload(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("three segments");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("a JSON object")
}

// ---------------------------------------------------------------------------------------
// Auth, as all of them use it

#[tokio::test]
async fn tokens_carry_ports_claims_and_never_revoke_each_other() {
    let h = Harness::memory().await;
    let credentials = json!({ "clientId": h.client_id, "clientSecret": h.client_secret });
    let first = h
        .send(
            Method::POST,
            "/v1/auth/access_token",
            None,
            Some(credentials.clone()),
        )
        .await
        .expect(200);
    // Ocean validates these three with a strict model: `expiresIn` an integer.
    assert!(first["expiresIn"].is_u64(), "{first}");
    assert_eq!(first["tokenType"], "Bearer");
    let token = first["accessToken"].as_str().unwrap().to_owned();
    let claims = jwt_payload(&token);
    assert_eq!(claims["isMachine"], json!(true), "{claims}");

    // Port's agent asks for a token before every call; Ocean keeps its first one.
    for _ in 0..3 {
        h.send(
            Method::POST,
            "/v1/auth/access_token",
            None,
            Some(credentials.clone()),
        )
        .await
        .expect(200);
    }
    h.send(Method::GET, "/v1/organization", Some(&token), None)
        .await
        .expect(200);
}

// ---------------------------------------------------------------------------------------
// port-agent (POLLING)

#[tokio::test]
async fn port_agent_start_up_sets_its_streamer_without_a_name() {
    let h = Harness::memory().await;
    let patched = send(
        &h,
        Method::PATCH,
        "/v1/organization",
        json!({ "settings": { "portAgentStreamerName": "POLLING" } }),
        false,
    )
    .await
    .expect(200);
    assert_client_snapshot!("clients_agent_patch_organization", &patched);
    let organization = h.get("/v1/organization").await.expect(200);
    assert_client_snapshot!("clients_organization", &organization);
    assert_eq!(organization["organization"]["name"], "test", "name kept");
}

#[tokio::test]
async fn port_agent_polls_both_claim_routes_and_reports_a_synchronized_run() {
    let h = Harness::memory().await;
    agent_action(&h).await;
    // Runs the agent must never be handed: a webhook portd sends itself, a GitHub
    // workflow for another runner, an integration's run.
    create_action(
        &h,
        "pushed",
        json!({ "type": "WEBHOOK", "url": "https://backend.internal/pushed" }),
    )
    .await;
    create_action(
        &h,
        "gh",
        json!({ "type": "GITHUB", "org": "acme", "repo": "infra", "workflow": "x.yml" }),
    )
    .await;
    ocean_action(&h, "scale").await;
    for action in ["pushed", "gh", "scale"] {
        execute(&h, action).await;
    }
    let run_id = execute(&h, "deploy").await;

    let claim = json!({ "installationId": "_PORT_EXEC_AGENT", "limit": 100, "invocationMethod": "WEBHOOK" });
    let claimed = send(
        &h,
        Method::POST,
        "/v1/actions/runs/claim-pending",
        claim.clone(),
        true,
    )
    .await
    .expect(200);
    assert_eq!(claimed["runs"].as_array().unwrap().len(), 1, "{claimed:#}");
    assert_eq!(claimed["runs"][0]["id"], json!(run_id));
    assert!(claimed["runs"][0]["payload"]["body"].is_object());
    assert_client_snapshot!("clients_agent_claim", &claimed);

    let nodes = send(
        &h,
        Method::POST,
        "/v1/workflows/runs/claim-pending",
        json!({ "installationId": "_PORT_EXEC_AGENT", "limit": 100 }),
        true,
    )
    .await
    .expect(200);
    assert_eq!(nodes, json!({ "ok": true, "nodeRuns": [] }));

    let ack = json!({ "runIds": [run_id] });
    let acked = send(&h, Method::PATCH, "/v1/actions/runs/ack", ack.clone(), true)
        .await
        .expect(200);
    assert_eq!(acked, json!({ "ok": true, "ackedCount": 1 }));
    let again = send(&h, Method::PATCH, "/v1/actions/runs/ack", ack, true)
        .await
        .expect(200);
    assert_eq!(
        again,
        json!({ "ok": true, "ackedCount": 0 }),
        "the agent skips a run it did not newly acknowledge"
    );
    // Acknowledged runs are never offered again, even after the visibility passes.
    h.clock.advance(10 * 60 * 1000);
    let later = send(
        &h,
        Method::POST,
        "/v1/actions/runs/claim-pending",
        claim,
        true,
    )
    .await
    .expect(200);
    assert_eq!(later["runs"], json!([]));

    let logs = format!("/v1/actions/runs/{run_id}/logs");
    for message in [
        "An action message has been received",
        "Preparing the payload for the request",
        "Sending the request",
        "Action invocation has completed successfully with status code: 200",
        "Reporting the run response",
    ] {
        send(
            &h,
            Method::POST,
            &logs,
            json!({ "message": message }),
            false,
        )
        .await
        .expect(201);
    }
    let reported = send(
        &h,
        Method::PATCH,
        &format!("/v1/actions/runs/{run_id}/response"),
        json!({ "response": { "deployed": true, "version": "1.2.3" } }),
        false,
    )
    .await
    .expect(200);
    assert_eq!(reported["run"]["status"], "IN_PROGRESS");
    assert_client_snapshot!("clients_agent_response", &reported);
    send(
        &h,
        Method::POST,
        &logs,
        json!({ "message": "The run response was reported successfully " }),
        false,
    )
    .await
    .expect(201);

    // A synchronized run delivered to an agent: the agent sets its status.
    let path = format!("/v1/actions/runs/{run_id}");
    let done = send(
        &h,
        Method::PATCH,
        &path,
        json!({ "status": "SUCCESS" }),
        false,
    )
    .await
    .expect(200);
    assert_eq!(done["run"]["status"], "SUCCESS");
    // The agent's closing line comes after the status: an ended run takes no more lines
    // (Port's 422 `run_exhausted`), which the agent does not read.
    send(
        &h,
        Method::POST,
        &logs,
        json!({ "message": "Port agent finished processing the action run" }),
        false,
    )
    .await
    .expect_error(422, "run_exhausted");
    // Its failure report after a first, informative one never overwrites it.
    send(
        &h,
        Method::PATCH,
        &path,
        json!({ "status": "FAILURE", "summary": "Agent failed to process the run" }),
        false,
    )
    .await
    .expect_error(422, "run_exhausted");
    let run = h
        .get(&format!("/v1/actions/runs/{run_id}?version=v2"))
        .await
        .expect(200);
    assert_eq!(
        run["run"]["response"],
        json!({ "deployed": true, "version": "1.2.3" })
    );
    let v1 = h
        .get(&format!("/v1/actions/runs/{run_id}"))
        .await
        .expect(200);
    assert_eq!(v1["run"]["response"], run["run"]["response"]);
}

#[tokio::test]
async fn port_agent_reports_text_and_failures() {
    let h = Harness::memory().await;
    agent_action(&h).await;
    let run_id = execute(&h, "deploy").await;
    send(
        &h,
        Method::PATCH,
        &format!("/v1/actions/runs/{run_id}/response"),
        json!({ "response": "plain text answer" }),
        false,
    )
    .await
    .expect(200);
    let failed = send(
        &h,
        Method::PATCH,
        &format!("/v1/actions/runs/{run_id}"),
        json!({ "status": "FAILURE", "summary": "Failed to invoke the webhook with status code: 500. Response: boom" }),
        false,
    )
    .await
    .expect(200);
    assert_eq!(failed["run"]["response"], "plain text answer");
    assert_eq!(failed["run"]["status"], "FAILURE");
    // The same report again is harmless; another is refused.
    for (response, status) in [(json!("plain text answer"), 200), (json!("other"), 422)] {
        let reply = send(
            &h,
            Method::PATCH,
            &format!("/v1/actions/runs/{run_id}/response"),
            json!({ "response": response }),
            false,
        )
        .await;
        assert_eq!(reply.status.as_u16(), status, "{:#}", reply.body);
    }
    for (body, why) in [
        (json!({}), "no response"),
        (json!({ "response": 1, "extra": 2 }), "an unknown key"),
        (json!([{ "response": 1 }]), "not an object"),
    ] {
        let reply = send(
            &h,
            Method::PATCH,
            &format!("/v1/actions/runs/{run_id}/response"),
            body,
            false,
        )
        .await;
        assert_eq!(reply.status.as_u16(), 422, "{why}: {:#}", reply.body);
    }
    send(
        &h,
        Method::PATCH,
        "/v1/actions/runs/r_0000000000000000/response",
        json!({ "response": 1 }),
        false,
    )
    .await
    .expect_error(404, "not_found");
}

// ---------------------------------------------------------------------------------------
// Ocean

/// Ocean's `POST /v1/integration` body at first start-up (no port-app-config file).
fn ocean_create_integration() -> Value {
    json!({
        "installationId": "my-github-integration",
        "installationAppType": "github",
        "version": "0.1.0",
        "changelogDestination": {},
        "config": {},
        "actionsProcessingEnabled": true,
        "incrementalSyncEnabled": false,
        "createPortResourcesOrigin": "Ocean"
    })
}

#[tokio::test]
async fn ocean_start_up_creates_and_updates_its_integration() {
    let h = Harness::memory().await;
    let path = "/v1/integration/my-github-integration?oceanCoreVersion=0.48.12&isPolling=false";
    // Read before it exists: a JSON body Ocean can parse.
    let missing = h.get(path).await.expect_error(404, "not_found");
    assert_client_snapshot!("clients_ocean_integration_missing", &missing);
    let provision = h.get("/v1/integration/provision-enabled").await.expect(200);
    assert_eq!(provision, json!({ "ok": true, "integrations": [] }));
    let organization = h.get("/v1/organization").await.expect(200);
    assert_eq!(organization["organization"]["featureFlags"], json!([]));
    assert!(organization["organization"]["id"].is_string());

    let created = h
        .post("/v1/integration", ocean_create_integration())
        .await
        .expect(201);
    assert_client_snapshot!("clients_ocean_integration_created", &created);
    h.post("/v1/integration", ocean_create_integration())
        .await
        .expect_error(409, "identifier_taken");

    // Ocean patches what differs from its local config, `version` always.
    let patched = h
        .patch(
            "/v1/integration/my-github-integration",
            json!({ "processingMode": "dsp", "version": "0.1.0" }),
        )
        .await
        .expect(200);
    assert_eq!(patched["integration"]["processingMode"], "dsp");
    let config = json!({
        "deleteDependentEntities": true,
        "createMissingRelatedEntities": true,
        "enableMergeEntity": true,
        "resources": [{ "kind": "repository", "selector": { "query": "true" } }]
    });
    let configured = h
        .patch(
            "/v1/integration/my-github-integration/config",
            json!({ "config": config }),
        )
        .await
        .expect(200);
    assert_eq!(configured["integration"]["config"], config);
    let read = h.get(path).await.expect(200);
    assert_client_snapshot!("clients_ocean_integration", &read);

    // What Ocean reads back has the types it reads.
    h.patch(
        "/v1/integration/my-github-integration",
        json!({ "config": "not an object" }),
    )
    .await
    .expect_error(422, "invalid_request");
    h.post("/v1/integration", json!({ "installationId": "a/b" }))
        .await
        .expect_error(422, "invalid_request");
    h.get("/v1/integration/my-github-integration?byField=logIngestId")
        .await
        .expect_error(404, "not_found");

    // Another organization sees none of it.
    let (client_id, secret, _) = h.new_organization("other").await;
    let other = h.token_for(&client_id, &secret).await;
    h.send(Method::GET, path, Some(&other), None)
        .await
        .expect_error(404, "not_found");
    h.delete("/v1/integration/my-github-integration")
        .await
        .expect(200);
    h.get(path).await.expect_error(404, "not_found");
}

#[tokio::test]
async fn ocean_claims_acks_and_reports_its_runs() {
    let h = Harness::memory().await;
    h.post("/v1/integration", ocean_create_integration())
        .await
        .expect(201);
    ocean_action(&h, "dispatch").await;
    ocean_action(&h, "busy").await;
    // Port's agent's runs are not Ocean's.
    agent_action(&h).await;
    execute(&h, "deploy").await;
    let busy = execute(&h, "busy").await;
    let run_id = execute(&h, "dispatch").await;

    let claimed = send(
        &h,
        Method::POST,
        "/v1/actions/runs/claim-pending",
        json!({
            "installationId": "my-github-integration",
            "limit": 300,
            "visibilityTimeoutMs": 60000,
            "exclude": ["busy"]
        }),
        true,
    )
    .await
    .expect(200);
    assert_eq!(claimed["runs"].as_array().unwrap().len(), 1, "{claimed:#}");
    assert_client_snapshot!("clients_ocean_claim", &claimed);
    let nodes = send(
        &h,
        Method::POST,
        "/v1/workflows/runs/claim-pending",
        json!({ "installationId": "my-github-integration", "limit": 299, "visibilityTimeoutMs": 60000 }),
        true,
    )
    .await
    .expect(200);
    assert_eq!(nodes["nodeRuns"], json!([]));

    // Ocean acknowledges just before it executes, maybe after the claim expired.
    h.clock.advance(120_000);
    let ack = json!({ "runId": run_id });
    let acked = send(&h, Method::PATCH, "/v1/actions/runs/ack", ack.clone(), true)
        .await
        .expect(200);
    assert_eq!(acked, json!({ "ok": true, "ackedCount": 1 }));
    let twice = send(&h, Method::PATCH, "/v1/actions/runs/ack", ack, true)
        .await
        .expect_error(409, "conflict");
    assert_client_snapshot!("clients_ocean_ack_twice", &twice);
    send(
        &h,
        Method::PATCH,
        "/v1/actions/runs/ack",
        json!({ "runId": "r_0000000000000000" }),
        true,
    )
    .await
    .expect_error(404, "not_found");

    // The executor: started (link and external id), a log, completed.
    let path = format!("/v1/actions/runs/{run_id}");
    send(
        &h,
        Method::PATCH,
        &path,
        json!({ "link": "https://github.com/acme/infra/actions/runs/42", "externalRunId": "42" }),
        false,
    )
    .await
    .expect(200);
    send(
        &h,
        Method::POST,
        &format!("{path}/logs"),
        json!({ "message": "Workflow dispatched" }),
        false,
    )
    .await
    .expect(201);
    // The completion webhook looks the run up by its external id (not URL-encoded).
    let found = h
        .get("/v1/actions/runs?version=v2&external_run_id=42")
        .await
        .expect(200);
    assert_client_snapshot!("clients_ocean_run_by_external_id", &found);
    let none = h
        .get("/v1/actions/runs?version=v2&external_run_id=43")
        .await
        .expect(200);
    assert_eq!(none["runs"], json!([]));
    let node_runs = send(
        &h,
        Method::GET,
        "/v1/workflows/nodes/runs?external_run_id=43&include=nodeConfig",
        Value::Null,
        true,
    )
    .await
    .expect(200);
    assert_eq!(node_runs, json!({ "ok": true, "nodeRuns": [] }));
    send(
        &h,
        Method::POST,
        &format!("{path}/logs"),
        json!({ "message": "Workflow completed" }),
        false,
    )
    .await
    .expect(201);
    let done = send(
        &h,
        Method::PATCH,
        &path,
        json!({ "status": "SUCCESS" }),
        false,
    )
    .await
    .expect(200);
    assert_eq!(done["run"]["status"], "SUCCESS");

    // The excluded action's run waits for a later claim.
    let later = send(
        &h,
        Method::POST,
        "/v1/actions/runs/claim-pending",
        json!({ "installationId": "my-github-integration", "limit": 300, "visibilityTimeoutMs": 60000 }),
        true,
    )
    .await
    .expect(200);
    let ids: Vec<&Value> = later["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(ids, vec![&json!(busy)]);
}

#[tokio::test]
async fn a_single_ack_says_why_a_run_cannot_be_acknowledged() {
    let h = Harness::memory().await;
    create_action(
        &h,
        "pushed",
        json!({ "type": "WEBHOOK", "url": "https://backend.internal/pushed" }),
    )
    .await;
    let pushed = execute(&h, "pushed").await;
    let reply = send(
        &h,
        Method::PATCH,
        "/v1/actions/runs/ack",
        json!({ "runId": pushed }),
        true,
    )
    .await
    .expect_error(409, "conflict");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("not waiting for a runner"),
        "{reply}"
    );
    for body in [
        json!({}),
        json!({ "runId": pushed, "runIds": [pushed] }),
        json!({ "runId": 1 }),
    ] {
        send(&h, Method::PATCH, "/v1/actions/runs/ack", body, true)
            .await
            .expect_error(422, "invalid_request");
    }
}

#[tokio::test]
async fn claims_are_bounded() {
    let h = Harness::memory().await;
    let too_many: Vec<String> = (0..101).map(|i| format!("action_{i}")).collect();
    for body in [
        json!({ "installationId": "x", "exclude": too_many }),
        json!({ "invocationMethod": "CARRIER_PIGEON" }),
        json!({ "limit": 1001 }),
        json!({ "visibilityTimeoutMs": 0 }),
    ] {
        send(
            &h,
            Method::POST,
            "/v1/actions/runs/claim-pending",
            body,
            true,
        )
        .await
        .expect_error(422, "invalid_request");
    }
    // Ocean may ask for 1 ms: served as the shortest lease.
    send(
        &h,
        Method::POST,
        "/v1/actions/runs/claim-pending",
        json!({ "installationId": "x", "visibilityTimeoutMs": 1 }),
        true,
    )
    .await
    .expect(200);
    // At most 100 runs at once, whatever the limit.
    create_action(
        &h,
        "many",
        json!({ "type": "WEBHOOK", "url": "https://backend.internal/x", "agent": true }),
    )
    .await;
    for _ in 0..101 {
        execute(&h, "many").await;
    }
    let claimed = send(
        &h,
        Method::POST,
        "/v1/actions/runs/claim-pending",
        json!({ "installationId": "_PORT_EXEC_AGENT", "limit": 1000, "invocationMethod": "WEBHOOK" }),
        true,
    )
    .await
    .expect(200);
    assert_eq!(claimed["runs"].as_array().unwrap().len(), 100);
}

#[tokio::test]
async fn organization_and_integrations_are_bounded() {
    let h = Harness::memory().await;
    let huge = "x".repeat(port_core::integration::MAX_SETTINGS_BYTES);
    h.patch("/v1/organization", json!({ "settings": { "big": huge } }))
        .await
        .expect_error(422, "invalid_request");
    h.patch("/v1/organization", json!({ "name": "" }))
        .await
        .expect_error(422, "invalid_request");
    h.patch("/v1/organization", json!({ "announcement": {} }))
        .await
        .expect_error(422, "invalid_request");
    h.patch("/v1/organization", json!({ "name": "Renamed" }))
        .await
        .expect(200);
    assert_eq!(
        h.get("/v1/organization").await.expect(200)["organization"]["name"],
        "Renamed"
    );

    let big = "y".repeat(port_core::integration::MAX_INTEGRATION_BYTES);
    h.post(
        "/v1/integration",
        json!({ "installationId": "big", "config": { "x": big } }),
    )
    .await
    .expect_error(422, "invalid_request");
    for i in 0..port_core::integration::MAX_INTEGRATIONS_PER_ORG {
        h.post(
            "/v1/integration",
            json!({ "installationId": format!("i-{i}") }),
        )
        .await
        .expect(201);
    }
    h.post("/v1/integration", json!({ "installationId": "one-more" }))
        .await
        .expect_error(422, "invalid_request");
    h.delete("/v1/integration/i-0").await.expect(200);
    h.post("/v1/integration", json!({ "installationId": "one-more" }))
        .await
        .expect(201);
}

#[tokio::test]
async fn approvals_answer_ports_v2_run() {
    let h = Harness::memory().await;
    h.post(
        "/v1/actions",
        json!({
            "identifier": "guarded",
            "title": "Guarded",
            "trigger": { "type": "self-service", "operation": "CREATE", "userInputs": { "properties": {} } },
            "invocationMethod": { "type": "WEBHOOK", "url": "https://backend.internal/x", "agent": true, "body": {} },
            "requiredApproval": true
        }),
    )
    .await
    .expect(201);
    let first = h
        .post("/v1/actions/guarded/runs", json!({ "properties": {} }))
        .await
        .expect(202);
    let run = first["run"]["id"].as_str().unwrap();
    let approved = h
        .patch(
            &format!("/v1/actions/runs/{run}/approval"),
            json!({ "status": "APPROVE", "description": "ok" }),
        )
        .await
        .expect(201);
    assert_client_snapshot!("clients_approval_v2", &approved);
    let second = h
        .post("/v1/actions/guarded/runs", json!({ "properties": {} }))
        .await
        .expect(202);
    let run = second["run"]["id"].as_str().unwrap();
    let legacy = h
        .patch(
            &format!("/v1/actions/runs/{run}/approval?version=v1"),
            json!({ "status": "DECLINE" }),
        )
        .await
        .expect(201);
    assert_eq!(legacy["run"]["action"], "guarded", "v1 on request");
}
