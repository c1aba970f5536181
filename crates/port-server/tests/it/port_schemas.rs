//! Our responses validate against the response schemas of Port's own OpenAPI document
//! (vendored in tests/data/port-openapi-schemas.json; see its `$comment`).

use std::sync::LazyLock;

use serde_json::{Value, json};

use crate::support::{Harness, v2_action};

static SCHEMAS: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../data/port-openapi-schemas.json"))
        .expect("vendored schemas are JSON")
});

#[track_caller]
fn assert_valid(schema_name: &str, instance: &Value) {
    let schema = &SCHEMAS[schema_name];
    assert!(schema.is_object(), "no vendored schema {schema_name}");
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("schema {schema_name} does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{schema_name}: {errors:#?}\n{instance:#}"
    );
}

#[tokio::test]
async fn runs_logs_and_actions_match_ports_schemas() {
    let h = Harness::memory().await;
    h.seed_catalog().await;
    h.post(
        "/v1/blueprints/microservice/entities",
        json!({ "identifier": "svc", "title": "Svc", "properties": {} }),
    )
    .await
    .expect(201);

    let executed = h
        .post(
            "/v1/actions/create_microservice/runs",
            json!({ "properties": { "name": "a", "region": "b" } }),
        )
        .await
        .expect(202);
    assert_valid("execute_202", &executed);
    let run = executed["run"]["id"].as_str().unwrap().to_owned();
    let day2 = h
        .post(
            "/v1/actions/deploy_microservice/runs",
            json!({ "properties": { "environment": "prod" }, "entity": "svc" }),
        )
        .await
        .expect(202);
    assert_valid("execute_202", &day2);

    assert_valid(
        "run_get_200",
        &h.get(&format!("/v1/actions/runs/{run}?version=v2"))
            .await
            .expect(200),
    );
    assert_valid(
        "runs_list_200",
        &h.get("/v1/actions/runs?version=v2").await.expect(200),
    );
    let log = h
        .post(
            &format!("/v1/actions/runs/{run}/logs"),
            json!({ "message": "hello" }),
        )
        .await
        .expect(201);
    assert_valid("log_post_201", &log);
    assert_valid(
        "logs_get_200",
        &h.get(&format!("/v1/actions/runs/{run}/logs"))
            .await
            .expect(200),
    );
    let patched = h
        .patch(
            &format!("/v1/actions/runs/{run}?version=v2"),
            json!({ "status": "SUCCESS", "statusLabel": "Done", "link": "https://ci/1", "summary": "ok", "externalRunId": "x" }),
        )
        .await
        .expect(200);
    assert_valid("run_patch_200", &patched);

    // Approval and approvers.
    let mut guarded = v2_action("guarded", "CREATE");
    guarded["requiredApproval"] = json!({ "type": "ANY" });
    let created = h.post("/v1/actions", guarded).await.expect(201);
    assert_valid("action", &created["action"]);
    let waiting = h
        .post("/v1/actions/guarded/runs", json!({ "properties": {} }))
        .await
        .expect(202);
    assert_valid("execute_202", &waiting);
    let id = waiting["run"]["id"].as_str().unwrap();
    let approved = h
        .patch(
            &format!("/v1/actions/runs/{id}/approval?version=v2"),
            json!({ "status": "APPROVE", "description": "ok" }),
        )
        .await
        .expect(201);
    assert_valid("approval_201", &approved);
    assert_valid(
        "approvers_200",
        &h.get(&format!("/v1/actions/runs/{id}/approvers"))
            .await
            .expect(200),
    );

    // Actions in the v2 shape, including ones written through the legacy routes.
    for action in h.get("/v1/actions").await.expect(200)["actions"]
        .as_array()
        .unwrap()
    {
        assert_valid("action", action);
    }

    // Error envelopes.
    assert_valid(
        "error_404",
        &h.get("/v1/actions/runs/r_AAAAAAAAAAAAAAAA")
            .await
            .expect(404),
    );
    assert_valid(
        "error_422",
        &h.post(&format!("/v1/actions/runs/{run}/logs"), json!({}))
            .await
            .expect(422),
    );
    let unauthorized = h
        .send(axum::http::Method::GET, "/v1/actions/runs", None, None)
        .await
        .expect(401);
    assert_valid("error_401", &unauthorized);

    // Bulk entities.
    let bulk = h
        .post(
            "/v1/blueprints/microservice/entities/bulk",
            json!({ "entities": [{ "identifier": "b1", "properties": {} }] }),
        )
        .await
        .expect(200);
    assert_valid("bulk_entities_200", &bulk);
    let partial = h
        .post(
            "/v1/blueprints/microservice/entities/bulk",
            json!({ "entities": [{ "identifier": "b2", "properties": {} }, { "identifier": "b1", "properties": {} }] }),
        )
        .await
        .expect(207);
    assert_valid("bulk_entities_207", &partial);
}
