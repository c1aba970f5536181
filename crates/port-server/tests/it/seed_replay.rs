//! Replays every request of Port's "reflect action progress" tutorial (the seed) and
//! compares the answers with the tutorial's, key by key where it shows JSON.

use axum::http::Method;
use serde_json::{Value, json};

use crate::support::{
    Harness, create_microservice_actions, deploy_microservice_actions, microservice_blueprint,
};

/// The keys of a JSON object, in order.
fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// Ids and timestamps change from run to run; everything else is compared exactly.
fn redacted_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_sort_maps(false);
    settings.set_prepend_module_to_snapshot(false);
    settings
}

macro_rules! assert_redacted_snapshot {
    ($name:expr, $value:expr) => {
        redacted_settings().bind(|| {
            insta::assert_json_snapshot!($name, $value, {
                ".**.id" => "[id]",
                ".**.runId" => "[run id]",
                ".**.createdAt" => "[timestamp]",
                ".**.updatedAt" => "[timestamp]",
                // null while running, a timestamp once ended.
                ".**.endedAt" => insta::dynamic_redaction(|value, _| {
                    if value.as_str().is_some() { "[timestamp]".into() } else { value }
                }),
                ".**.createdBy" => "[client id]",
                ".**.updatedBy" => "[client id]",
            });
        });
    };
}

async fn replay(h: &Harness) {
    // Setup: the blueprint and the two legacy actions, exactly as the seed shows them.
    let blueprint = h
        .post("/v1/blueprints", microservice_blueprint())
        .await
        .expect(201);
    assert_eq!(blueprint["ok"], json!(true));
    assert_eq!(blueprint["blueprint"]["identifier"], "microservice");
    let created = h
        .post(
            "/v1/blueprints/microservice/actions",
            create_microservice_actions(),
        )
        .await
        .expect(201);
    assert_eq!(keys(&created), ["ok", "actions"]);
    // The v1 view has the shape of the seed's `payload.action`.
    assert_eq!(
        keys(&created["actions"][0]),
        [
            "id",
            "identifier",
            "title",
            "userInputs",
            "invocationMethod",
            "trigger",
            "description",
            "blueprint",
            "createdAt",
            "createdBy",
            "updatedAt",
            "updatedBy"
        ]
    );
    assert!(
        created["actions"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("action_")
    );
    assert_eq!(
        created["actions"][0]["invocationMethod"],
        json!({ "url": "https://getport.io", "agent": false, "type": "WEBHOOK" })
    );
    h.post(
        "/v1/blueprints/microservice/actions",
        deploy_microservice_actions(),
    )
    .await
    .expect(201);

    // CREATE trigger: execute with the seed's inputs, then read the run (v1 by default).
    let executed = h
        .post(
            "/v1/actions/create_microservice/runs",
            json!({ "properties": { "name": "my-microservice", "region": "eu-west-1" } }),
        )
        .await
        .expect(202);
    let run_id = executed["run"]["id"].as_str().unwrap().to_owned();
    assert!(run_id.starts_with("r_") && run_id.len() == 18, "{run_id}");

    let run = h
        .get(&format!("/v1/actions/runs/{run_id}"))
        .await
        .expect(200);
    assert_eq!(keys(&run), ["ok", "run"]);
    assert_eq!(
        keys(&run["run"]),
        [
            "id",
            "status",
            "blueprint",
            "action",
            "endedAt",
            "source",
            "relatedEntityExists",
            "relatedBlueprintExists",
            "properties",
            "createdAt",
            "updatedAt",
            "createdBy",
            "updatedBy"
        ]
    );
    assert_eq!(run["run"]["status"], "IN_PROGRESS");
    assert_eq!(
        run["run"]["blueprint"],
        json!({ "identifier": "microservice", "title": "Service" })
    );
    assert_eq!(run["run"]["action"], "create_microservice");
    assert_eq!(run["run"]["endedAt"], Value::Null);
    assert_eq!(run["run"]["relatedEntityExists"], json!(false));
    assert_eq!(run["run"]["relatedBlueprintExists"], json!(true));
    assert_eq!(
        run["run"]["properties"],
        json!({ "name": "my-microservice", "region": "eu-west-1" })
    );
    assert_eq!(run["run"]["createdBy"], json!(h.client_id));
    assert_redacted_snapshot!("seed_create_run_v1", &run);

    let logging = h
        .get(&format!("/v1/actions/runs/{run_id}/logging"))
        .await
        .expect(200);
    assert_eq!(logging.to_string(), r#"{"ok":true,"runLogs":[]}"#);

    // DAY-2 trigger: on the existing entity my-microservice.
    h.post(
        "/v1/blueprints/microservice/entities",
        json!({ "identifier": "my-microservice", "title": "my-microservice", "properties": { "region": "eu-west-1" } }),
    )
    .await
    .expect(201);
    let day2 = h
        .post(
            "/v1/blueprints/microservice/actions/deploy_microservice/runs",
            json!({ "properties": { "environment": "production" }, "entity": "my-microservice" }),
        )
        .await
        .expect(202);
    let day2_id = day2["run"]["id"].as_str().unwrap().to_owned();
    let day2_run = h
        .get(&format!("/v1/actions/runs/{day2_id}"))
        .await
        .expect(200);
    assert_eq!(
        keys(&day2_run["run"]),
        [
            "id",
            "status",
            "blueprint",
            "entity",
            "action",
            "endedAt",
            "source",
            "relatedEntityExists",
            "relatedBlueprintExists",
            "properties",
            "createdAt",
            "updatedAt",
            "createdBy",
            "updatedBy"
        ]
    );
    assert_eq!(
        day2_run["run"]["entity"],
        json!({ "identifier": "my-microservice", "title": "my-microservice" })
    );
    assert_eq!(day2_run["run"]["relatedEntityExists"], json!(true));
    assert_eq!(
        day2_run["run"]["properties"],
        json!({ "environment": "production" })
    );
    assert_redacted_snapshot!("seed_day2_run_v1", &day2_run);
    let logging = h
        .get(&format!("/v1/actions/runs/{day2_id}/logging"))
        .await
        .expect(200);
    assert_eq!(logging, json!({ "ok": true, "runLogs": [] }));

    // Updating the CREATE run with the seed's PATCH body.
    h.clock.advance(7_000);
    let patched = h
        .patch(
            &format!("/v1/actions/runs/{run_id}"),
            json!({
                "status": "SUCCESS",
                "link": [
                    "https://github.com/actions/toolkit/actions/runs/3617893813",
                    "https://github.com/actions/toolkit/actions/runs/4165617487"
                ],
                "message": { "run_status": "Run completed successfully!" }
            }),
        )
        .await
        .expect(200);
    assert_eq!(
        keys(&patched["run"]),
        [
            "id",
            "status",
            "blueprint",
            "action",
            "endedAt",
            "source",
            "link",
            "message",
            "relatedEntityExists",
            "relatedBlueprintExists",
            "properties",
            "createdAt",
            "updatedAt",
            "createdBy",
            "updatedBy"
        ]
    );
    assert_eq!(patched["run"]["status"], "SUCCESS");
    assert!(patched["run"]["endedAt"].is_string());
    assert_eq!(patched["run"]["endedAt"], patched["run"]["updatedAt"]);
    assert_ne!(patched["run"]["createdAt"], patched["run"]["updatedAt"]);
    assert_eq!(
        patched["run"]["message"],
        json!({ "run_status": "Run completed successfully!" })
    );
    assert_redacted_snapshot!("seed_patch_run_v1", &patched);

    // Logs of the DAY-2 run.
    let log = h
        .post(
            &format!("/v1/actions/runs/{day2_id}/logs"),
            json!({ "message": "my new log message" }),
        )
        .await
        .expect(201);
    assert_eq!(keys(&log), ["ok", "runLog"]);
    assert_eq!(
        keys(&log["runLog"]),
        ["id", "runId", "message", "createdAt", "createdBy"]
    );
    assert!(log["runLog"]["id"].as_str().unwrap().starts_with("log_"));
    assert_eq!(log["runLog"]["runId"], json!(day2_id));
    assert_redacted_snapshot!("seed_log_created", &log);
    let logs = h
        .get(&format!("/v1/actions/runs/{day2_id}/logs"))
        .await
        .expect(200);
    assert_eq!(
        logs,
        json!({ "ok": true, "runLogs": [log["runLog"].clone()] })
    );
    let final_log = h
        .post(
            &format!("/v1/actions/runs/{day2_id}/logs"),
            json!({ "message": "my new log message with final status", "terminationStatus": "SUCCESS" }),
        )
        .await
        .expect(201);
    assert_eq!(
        final_log["runLog"]["message"],
        "my new log message with final status"
    );
    let ended = h
        .get(&format!("/v1/actions/runs/{day2_id}"))
        .await
        .expect(200);
    assert_eq!(ended["run"]["status"], "SUCCESS");
    h.post(
        &format!("/v1/actions/runs/{day2_id}/logs"),
        json!({ "message": "too late", "terminationStatus": "FAILURE" }),
    )
    .await
    .expect_error(422, "run_exhausted");

    // The Python snippet: token → run → entity with run_id → two logs → SUCCESS with link.
    let third = h
        .post(
            "/v1/actions/create_microservice/runs",
            json!({ "properties": { "name": "my microservice 2", "region": "eu-west-1" } }),
        )
        .await
        .expect(202);
    let third_id = third["run"]["id"].as_str().unwrap().to_owned();
    let token = h.token_for(&h.client_id, &h.client_secret).await;
    let run = h
        .send(
            Method::GET,
            &format!("/v1/actions/runs/{third_id}"),
            Some(&token),
            None,
        )
        .await
        .expect(200)["run"]
        .clone();
    let props = &run["properties"];
    let name = props["name"].as_str().unwrap();
    let entity = h
        .send(
            Method::POST,
            &format!("/v1/blueprints/microservice/entities?run_id={third_id}&upsert=true"),
            Some(&token),
            Some(json!({
                "identifier": name.replace(' ', "_"),
                "title": name,
                "properties": { "region": props["region"] }
            })),
        )
        .await
        .expect(201);
    let entity_id = entity["entity"]["identifier"].as_str().unwrap().to_owned();
    assert_eq!(entity_id, "my_microservice_2");
    for message in [
        format!("new entity: {entity_id}"),
        "New entity created!".to_owned(),
    ] {
        h.send(
            Method::POST,
            &format!("/v1/actions/runs/{third_id}/logs"),
            Some(&token),
            Some(json!({ "message": message })),
        )
        .await
        .expect(201);
    }
    let done = h
        .send(
            Method::PATCH,
            &format!("/v1/actions/runs/{third_id}"),
            Some(&token),
            Some(json!({ "status": "SUCCESS", "link": ["https://github.com/actions/toolkit/actions/runs/3617893813"] })),
        )
        .await
        .expect(200);
    assert_eq!(done["run"]["status"], "SUCCESS");
    assert_eq!(
        done["run"]["link"],
        json!(["https://github.com/actions/toolkit/actions/runs/3617893813"])
    );
    let logs = h
        .get(&format!("/v1/actions/runs/{third_id}/logs"))
        .await
        .expect(200);
    let messages: Vec<&str> = logs["runLogs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        ["new entity: my_microservice_2", "New entity created!"]
    );
    let audit = h
        .get(&format!("/v1/audit-log?run_id={third_id}"))
        .await
        .expect(200);
    assert_eq!(audit["audits"].as_array().unwrap().len(), 1);
    assert_eq!(audit["audits"][0]["identifier"], "my_microservice_2");
    assert_eq!(audit["audits"][0]["action"], "CREATE");
    assert_eq!(audit["audits"][0]["context"]["runId"], json!(third_id));
    // The run has ended, so it takes no more entity changes.
    h.post(
        &format!("/v1/blueprints/microservice/entities?run_id={third_id}&upsert=true"),
        json!({ "identifier": "late" }),
    )
    .await
    .expect_error(400, "run_exhausted");
}

#[tokio::test]
async fn seed_replay_in_memory() {
    replay(&Harness::memory().await).await;
}

#[tokio::test]
async fn seed_replay_on_sqlite() {
    replay(&Harness::sqlite().await).await;
}
