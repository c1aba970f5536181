//! Action routes: v2 and the legacy blueprint-scoped v1 routes over one store.

use serde_json::{Value, json};

use crate::support::{Harness, create_microservice_actions, v2_action};

fn identifiers(body: &Value) -> Vec<String> {
    body["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["identifier"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn v2_crud_and_filters() {
    let h = Harness::memory().await;
    h.create_microservice_blueprint().await;
    let created = h
        .post("/v1/actions", v2_action("deploy", "DAY-2"))
        .await
        .expect(201);
    let action = &created["action"];
    assert!(action["id"].as_str().unwrap().starts_with("action_"));
    assert_eq!(action["trigger"]["operation"], "DAY-2");
    assert_eq!(
        action.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "identifier",
            "title",
            "trigger",
            "invocationMethod",
            "id",
            "createdAt",
            "createdBy",
            "updatedAt",
            "updatedBy"
        ]
    );
    h.post("/v1/actions", v2_action("deploy", "DAY-2"))
        .await
        .expect_error(409, "identifier_taken");
    h.post("/v1/actions", v2_action("create", "CREATE"))
        .await
        .expect(201);
    h.post(
        "/v1/actions",
        json!({
            "identifier": "on_change",
            "trigger": { "type": "automation", "event": { "type": "ENTITY_UPDATED", "blueprintIdentifier": "microservice" } },
            "invocationMethod": { "type": "WEBHOOK", "url": "https://example.com" },
            "publish": false
        }),
    )
    .await
    .expect(201);

    assert_eq!(
        identifiers(&h.get("/v1/actions").await.expect(200)).len(),
        3
    );
    assert_eq!(
        identifiers(&h.get("/v1/actions?operation=DAY-2").await.expect(200)),
        ["deploy"]
    );
    let mut both = identifiers(
        &h.get("/v1/actions?action_identifier=deploy&action_identifier=create")
            .await
            .expect(200),
    );
    both.sort();
    assert_eq!(both, ["create", "deploy"]);
    assert_eq!(
        identifiers(
            &h.get("/v1/actions?trigger_type=automation")
                .await
                .expect(200)
        ),
        ["on_change"]
    );
    assert_eq!(
        identifiers(&h.get("/v1/actions?published=false").await.expect(200)),
        ["on_change"]
    );
    assert_eq!(
        identifiers(
            &h.get("/v1/actions?trigger_event=ENTITY_UPDATED")
                .await
                .expect(200)
        ),
        ["on_change"]
    );
    assert_eq!(
        identifiers(
            &h.get("/v1/actions?blueprint_identifier=microservice&operation=CREATE")
                .await
                .expect(200)
        ),
        ["create"]
    );
    h.get("/v1/actions?operation=UPDATE")
        .await
        .expect_error(422, "invalid_request");
    let v1 = h
        .get("/v1/actions?action_identifier=deploy&version=v1")
        .await
        .expect(200);
    assert_eq!(v1["actions"][0]["trigger"], "DAY-2");

    let one = h.get("/v1/actions/deploy").await.expect(200);
    assert_eq!(one["action"], created["action"]);
    let mut changed = v2_action("deploy", "DAY-2");
    changed["title"] = json!("Deploy it");
    let replaced = h.put("/v1/actions/deploy", changed).await.expect(200);
    assert_eq!(replaced["action"]["title"], "Deploy it");
    assert_eq!(replaced["action"]["id"], created["action"]["id"]);
    h.put("/v1/actions/deploy", v2_action("other", "DAY-2"))
        .await
        .expect_error(422, "invalid_request");
    h.delete("/v1/actions/deploy").await.expect(200);
    h.get("/v1/actions/deploy")
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn v2_refusals() {
    let h = Harness::memory().await;
    h.create_microservice_blueprint().await;
    let mut bad_inputs = v2_action("bad", "CREATE");
    bad_inputs["trigger"]["userInputs"] = json!({ "properties": { "x": { "type": "date" } } });
    h.post("/v1/actions", bad_inputs)
        .await
        .expect_error(422, "user_inputs_schema_invalid");
    let mut no_method = v2_action("bad", "CREATE");
    no_method
        .as_object_mut()
        .unwrap()
        .remove("invocationMethod");
    let body = h
        .post("/v1/actions", no_method)
        .await
        .expect_error(422, "invalid_request");
    assert_eq!(body["message"], "invocationMethod: is required");
    let mut other_blueprint = v2_action("bad", "CREATE");
    other_blueprint["trigger"]["blueprintIdentifier"] = json!("nope");
    h.post("/v1/actions", other_blueprint)
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn legacy_routes_share_the_store() {
    let h = Harness::memory().await;
    h.create_microservice_blueprint().await;
    let created = h
        .post(
            "/v1/blueprints/microservice/actions",
            create_microservice_actions(),
        )
        .await
        .expect(201);
    assert_eq!(created["actions"][0]["trigger"], "CREATE");
    // A single action (not an array) answers `action`.
    let mut single = create_microservice_actions()[0].clone();
    single["identifier"] = json!("single");
    let one = h
        .post("/v1/blueprints/microservice/actions", single.clone())
        .await
        .expect(201);
    assert_eq!(one["action"]["identifier"], "single");
    h.post("/v1/blueprints/microservice/actions", single.clone())
        .await
        .expect_error(409, "identifier_taken");
    h.post("/v1/blueprints/nope/actions", single.clone())
        .await
        .expect_error(404, "not_found");

    // Both views see both actions.
    let v1 = h
        .get("/v1/blueprints/microservice/actions")
        .await
        .expect(200);
    assert_eq!(identifiers(&v1), ["create_microservice", "single"]);
    let v2 = h.get("/v1/actions/create_microservice").await.expect(200);
    assert_eq!(v2["action"]["trigger"]["type"], "self-service");
    assert_eq!(
        v2["action"]["trigger"]["blueprintIdentifier"],
        "microservice"
    );
    let legacy_one = h
        .get("/v1/blueprints/microservice/actions/single")
        .await
        .expect(200);
    assert_eq!(legacy_one["action"]["blueprint"], "microservice");

    single["title"] = json!("Renamed");
    let put = h
        .put("/v1/blueprints/microservice/actions/single", single)
        .await
        .expect(200);
    assert_eq!(put["action"]["title"], "Renamed");

    // PUT on the collection replaces the whole set.
    let mut replacement = create_microservice_actions();
    replacement[0]["title"] = json!("Create it");
    let all = h
        .put("/v1/blueprints/microservice/actions", replacement)
        .await
        .expect(200);
    assert_eq!(identifiers(&all), ["create_microservice"]);
    h.get("/v1/actions/single")
        .await
        .expect_error(404, "not_found");
    assert_eq!(all["actions"][0]["id"], created["actions"][0]["id"]);

    // Legacy execute answers like the current route (202, v2 run).
    let run = h
        .post(
            "/v1/blueprints/microservice/actions/create_microservice/runs",
            json!({ "properties": { "name": "x", "region": "y" } }),
        )
        .await
        .expect(202);
    assert_eq!(run["run"]["action"]["identifier"], "create_microservice");
    h.delete("/v1/blueprints/microservice/actions/create_microservice")
        .await
        .expect(200);
    h.get("/v1/blueprints/microservice/actions/create_microservice")
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn run_routes_are_not_captured_by_action_routes() {
    let h = Harness::memory().await;
    h.seed_catalog().await;
    let run = h.create_run().await;
    // `/v1/actions/runs` lists runs rather than reading an action called "runs".
    let list = h.get("/v1/actions/runs").await.expect(200);
    assert_eq!(list["runs"][0]["id"], json!(run));
    h.get(&format!("/v1/actions/runs/{run}")).await.expect(200);
    h.get(&format!("/v1/actions/runs/{run}/logs"))
        .await
        .expect(200);
}
