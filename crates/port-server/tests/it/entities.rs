//! Entity routes: create/upsert/merge, schema checks, bulk, search, relations, and
//! binding changes to runs.

use serde_json::{Value, json};

use crate::support::Harness;

async fn harness() -> Harness {
    let h = Harness::memory().await;
    h.post(
        "/v1/blueprints",
        json!({
            "identifier": "service",
            "title": "Service",
            "schema": {
                "properties": {
                    "language": { "type": "string", "enum": ["go", "rust", "python"] },
                    "replicas": { "type": "number" },
                    "homepage": { "type": "string", "format": "url" },
                    "public": { "type": "boolean" }
                },
                "required": ["language"]
            },
            "relations": { "team": { "title": "Team", "target": "team", "required": false, "many": false } }
        }),
    )
    .await
    .expect(201);
    h.post(
        "/v1/blueprints",
        json!({ "identifier": "team", "title": "Team", "schema": { "properties": {} } }),
    )
    .await
    .expect(201);
    h
}

#[tokio::test]
async fn create_upsert_merge_replace_delete() {
    let h = harness().await;
    let created = h
        .post(
            "/v1/blueprints/service/entities",
            json!({ "identifier": "svc-a", "title": "A", "properties": { "language": "go", "replicas": 2 } }),
        )
        .await
        .expect(201);
    assert_eq!(
        created["entity"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        [
            "identifier",
            "title",
            "icon",
            "blueprint",
            "properties",
            "relations",
            "createdAt",
            "createdBy",
            "updatedAt",
            "updatedBy"
        ]
    );
    h.post(
        "/v1/blueprints/service/entities",
        json!({ "identifier": "svc-a", "properties": { "language": "go" } }),
    )
    .await
    .expect_error(409, "identifier_taken");

    // upsert without merge replaces; with merge keeps what is not mentioned.
    let replaced = h
        .post(
            "/v1/blueprints/service/entities?upsert=true",
            json!({ "identifier": "svc-a", "properties": { "language": "rust" } }),
        )
        .await
        .expect(200);
    assert_eq!(
        replaced["entity"]["properties"],
        json!({ "language": "rust" })
    );
    assert_eq!(replaced["entity"]["title"], Value::Null);
    let merged = h
        .post(
            "/v1/blueprints/service/entities?upsert=true&merge=true",
            json!({ "identifier": "svc-a", "title": "A2", "properties": { "replicas": 3 } }),
        )
        .await
        .expect(200);
    assert_eq!(
        merged["entity"]["properties"],
        json!({ "language": "rust", "replicas": 3 })
    );
    assert_eq!(merged["entity"]["title"], "A2");

    let patched = h
        .patch(
            "/v1/blueprints/service/entities/svc-a",
            json!({ "properties": { "public": true } }),
        )
        .await
        .expect(200);
    assert_eq!(
        patched["entity"]["properties"],
        json!({ "language": "rust", "replicas": 3, "public": true })
    );
    let put = h
        .put(
            "/v1/blueprints/service/entities/svc-a",
            json!({ "title": "Only", "properties": { "language": "go" } }),
        )
        .await
        .expect(200);
    assert_eq!(put["entity"]["properties"], json!({ "language": "go" }));
    h.put(
        "/v1/blueprints/service/entities/missing",
        json!({ "properties": { "language": "go" } }),
    )
    .await
    .expect_error(404, "not_found");

    let one = h
        .get("/v1/blueprints/service/entities/svc-a")
        .await
        .expect(200);
    assert_eq!(one["entity"]["title"], "Only");
    let list = h.get("/v1/blueprints/service/entities").await.expect(200);
    assert_eq!(list["entities"].as_array().unwrap().len(), 1);

    // validation_only stores nothing.
    let checked = h
        .post(
            "/v1/blueprints/service/entities?validation_only=true",
            json!({ "identifier": "ghost", "properties": { "language": "go" } }),
        )
        .await
        .expect(200);
    assert_eq!(checked["entity"]["identifier"], "ghost");
    h.get("/v1/blueprints/service/entities/ghost")
        .await
        .expect_error(404, "not_found");

    h.delete("/v1/blueprints/service/entities/svc-a")
        .await
        .expect(200);
    h.get("/v1/blueprints/service/entities/svc-a")
        .await
        .expect_error(404, "not_found");
    h.get("/v1/blueprints/nope/entities")
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn missing_identifiers_are_generated() {
    let h = harness().await;
    let created = h
        .post(
            "/v1/blueprints/service/entities",
            json!({ "properties": { "language": "go" } }),
        )
        .await
        .expect(201);
    let id = created["entity"]["identifier"].as_str().unwrap();
    assert!(id.starts_with("e_") && id.len() == 18, "{id}");
}

#[tokio::test]
async fn properties_are_checked_against_the_schema() {
    let h = harness().await;
    let body = h
        .post(
            "/v1/blueprints/service/entities",
            json!({ "identifier": "x", "properties": { "language": 3, "colour": "red" } }),
        )
        .await
        .expect_error(422, "blueprint_schema_mismatch");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("properties.language: must be a string"),
        "{message}"
    );
    assert!(
        message.contains("properties.colour: is not a property"),
        "{message}"
    );

    let body = h
        .post(
            "/v1/blueprints/service/entities",
            json!({ "identifier": "x", "properties": {} }),
        )
        .await
        .expect_error(422, "blueprint_schema_mismatch");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("properties.language: is required")
    );
    let body = h
        .post(
            "/v1/blueprints/service/entities",
            json!({ "identifier": "x", "properties": { "language": "cobol" } }),
        )
        .await
        .expect_error(422, "blueprint_schema_mismatch");
    assert!(body["message"].as_str().unwrap().contains("must be one of"));
    let body = h
        .post(
            "/v1/blueprints/service/entities",
            json!({ "identifier": "x", "properties": { "language": "go", "homepage": "nope" } }),
        )
        .await
        .expect_error(422, "blueprint_schema_mismatch");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("properties.homepage: must be a valid url")
    );
    let body = h
        .post(
            "/v1/blueprints/service/entities",
            json!({ "identifier": "x", "size": 1 }),
        )
        .await
        .expect_error(422, "invalid_request");
    assert_eq!(body["message"], "size: is not allowed");
}

#[tokio::test]
async fn relations_need_their_targets() {
    let h = harness().await;
    let body = json!({ "identifier": "svc", "properties": { "language": "go" }, "relations": { "team": "platform" } });
    h.post("/v1/blueprints/service/entities", body.clone())
        .await
        .expect_error(404, "not_found");
    h.post(
        "/v1/blueprints/service/entities?create_missing_related_entities=true",
        body,
    )
    .await
    .expect(201);
    h.get("/v1/blueprints/team/entities/platform")
        .await
        .expect(200);
    h.post(
        "/v1/blueprints/service/entities",
        json!({ "identifier": "svc2", "properties": { "language": "go" }, "relations": { "team": ["platform"] } }),
    )
    .await
    .expect_error(422, "relation_many_violation");

    // The team has a dependent now.
    h.delete("/v1/blueprints/team/entities/platform")
        .await
        .expect_error(403, "has_dependents");
    h.delete("/v1/blueprints/team/entities/platform?delete_dependents=true")
        .await
        .expect(200);
    h.get("/v1/blueprints/service/entities/svc")
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn bulk_reports_each_entity() {
    let h = harness().await;
    let ok = h
        .post(
            "/v1/blueprints/service/entities/bulk",
            json!({ "entities": [
                { "identifier": "a", "properties": { "language": "go" } },
                { "identifier": "b", "properties": { "language": "rust" } }
            ] }),
        )
        .await
        .expect(200);
    assert_eq!(
        ok,
        json!({ "ok": true, "entities": [
            { "identifier": "a", "index": 0, "created": true },
            { "identifier": "b", "index": 1, "created": true }
        ], "errors": [] })
    );
    let partial = h
        .post(
            "/v1/blueprints/service/entities/bulk?upsert=true",
            json!({ "entities": [
                { "identifier": "a", "properties": { "language": "python" } },
                { "identifier": "c", "properties": { "language": 1 } }
            ] }),
        )
        .await
        .expect(207);
    assert_eq!(
        partial["entities"],
        json!([{ "identifier": "a", "index": 0, "created": false }])
    );
    assert_eq!(partial["errors"][0]["identifier"], "c");
    assert_eq!(partial["errors"][0]["statusCode"], 422);
    assert_eq!(partial["errors"][0]["error"], "blueprint_schema_mismatch");
    h.post(
        "/v1/blueprints/service/entities/bulk",
        json!({ "entities": [] }),
    )
    .await
    .expect_error(422, "invalid_request");
    let too_many: Vec<Value> = (0..21)
        .map(|i| json!({ "identifier": format!("e{i}") }))
        .collect();
    h.post(
        "/v1/blueprints/service/entities/bulk",
        json!({ "entities": too_many }),
    )
    .await
    .expect_error(422, "invalid_request");
}

#[tokio::test]
async fn search_matches_rules() {
    let h = harness().await;
    for (id, title, language, replicas) in [
        ("svc-a", "Alpha", "go", 1),
        ("svc-b", "Beta", "rust", 2),
        ("web-c", "Gamma", "go", 3),
    ] {
        h.post(
            "/v1/blueprints/service/entities",
            json!({ "identifier": id, "title": title, "properties": { "language": language, "replicas": replicas } }),
        )
        .await
        .expect(201);
    }
    let search = |query: Value| {
        let h = &h;
        async move {
            let body = h
                .post(
                    "/v1/blueprints/service/entities/search",
                    json!({ "query": query }),
                )
                .await
                .expect(200);
            body["entities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["identifier"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let rule = |property: &str, operator: &str, value: Value| json!({ "property": property, "operator": operator, "value": value });
    assert_eq!(
        search(json!({ "combinator": "and", "rules": [rule("language", "=", json!("go"))] })).await,
        ["svc-a", "web-c"]
    );
    assert_eq!(
        search(json!({ "combinator": "and", "rules": [rule("language", "!=", json!("go"))] }))
            .await,
        ["svc-b"]
    );
    assert_eq!(
        search(json!({ "combinator": "and", "rules": [rule("replicas", "in", json!([1, 3]))] }))
            .await,
        ["svc-a", "web-c"]
    );
    assert_eq!(
        search(json!({ "combinator": "and", "rules": [rule("$title", "contains", json!("amm"))] }))
            .await,
        ["web-c"]
    );
    assert_eq!(
        search(json!({ "combinator": "and", "rules": [rule("$identifier", "beginsWith", json!("svc"))] })).await,
        ["svc-a", "svc-b"]
    );
    assert_eq!(
        search(json!({ "combinator": "or", "rules": [
            rule("language", "=", json!("rust")),
            { "combinator": "and", "rules": [rule("language", "=", json!("go")), rule("replicas", "=", json!(3))] }
        ] }))
        .await,
        ["svc-b", "web-c"]
    );
    // Paging with limit / from.
    let page = h
        .post(
            "/v1/blueprints/service/entities/search",
            json!({ "query": { "combinator": "and", "rules": [] }, "limit": 2, "include": ["identifier"] }),
        )
        .await
        .expect(200);
    assert_eq!(
        page["entities"],
        json!([{ "identifier": "svc-a" }, { "identifier": "svc-b" }])
    );
    assert_eq!(page["next"], "svc-b");
    let next = h
        .post(
            "/v1/blueprints/service/entities/search",
            json!({ "query": { "combinator": "and", "rules": [] }, "limit": 2, "from": "svc-b" }),
        )
        .await
        .expect(200);
    assert_eq!(next["entities"][0]["identifier"], "web-c");
    assert!(next.get("next").is_none());
    let body = h
        .post(
            "/v1/blueprints/service/entities/search",
            json!({ "query": { "combinator": "xor", "rules": [] } }),
        )
        .await
        .expect_error(422, "invalid_request");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("query.combinator")
    );
}

#[tokio::test]
async fn run_id_binds_changes_while_the_run_is_in_progress() {
    let h = Harness::memory().await;
    h.seed_catalog().await;
    let run = h.create_run().await;
    h.post(
        &format!("/v1/blueprints/microservice/entities?run_id={run}"),
        json!({ "identifier": "bound", "properties": { "region": "eu-west-1" } }),
    )
    .await
    .expect(201);
    h.patch(
        &format!("/v1/blueprints/microservice/entities/bound?run_id={run}"),
        json!({ "properties": { "region": "us-east-1" } }),
    )
    .await
    .expect(200);
    h.delete(&format!(
        "/v1/blueprints/microservice/entities/bound?run_id={run}"
    ))
    .await
    .expect(200);
    let audit = h
        .get(&format!("/v1/audit-log?run_id={run}"))
        .await
        .expect(200);
    let actions: Vec<&str> = audit["audits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["CREATE", "UPDATE", "DELETE"]);

    h.patch(
        &format!("/v1/actions/runs/{run}"),
        json!({ "status": "FAILURE" }),
    )
    .await
    .expect(200);
    let body = h
        .post(
            &format!("/v1/blueprints/microservice/entities?run_id={run}"),
            json!({ "identifier": "late" }),
        )
        .await
        .expect_error(400, "run_exhausted");
    assert!(body["message"].as_str().unwrap().contains(&run));
    h.post(
        "/v1/blueprints/microservice/entities?run_id=r_AAAAAAAAAAAAAAAA",
        json!({ "identifier": "x" }),
    )
    .await
    .expect_error(404, "not_found");
    // Entity changes are kept per run: asking for them without one is refused.
    h.get("/v1/audit-log?resources=entity")
        .await
        .expect_error(422, "invalid_request");
    h.get("/v1/audit-log?run_id=r_AAAAAAAAAAAAAAAA")
        .await
        .expect_error(404, "not_found");
}

/// Ocean's resync search (port-ocean 0.48.12, `mixins/entities.py`): repeated `include`,
/// `exclude_calculated_properties`, and `$datasource` rules. portd records no data
/// source, so those rules match nothing: Ocean then sees none of its entities to
/// reconcile, and deletes nothing.
#[tokio::test]
async fn ocean_resync_search_is_answered() {
    let h = harness().await;
    h.post(
        "/v1/blueprints/service/entities",
        json!({ "identifier": "svc", "properties": { "language": "go" } }),
    )
    .await
    .expect(201);
    let body = json!({ "combinator": "and", "rules": [
        { "property": "$blueprint", "operator": "=", "value": "service" },
        { "property": "$datasource", "operator": "contains", "value": "port-ocean/github/" },
        { "property": "$datasource", "operator": "contains", "value": "/my-github-integration/exporter" }
    ] });
    let uri = "/v1/entities/search?exclude_calculated_properties=true&include=blueprint&include=identifier";
    let found = h
        .raw(
            axum::http::Method::POST,
            uri,
            Some(&h.token),
            &[
                ("content-type", "application/json"),
                (
                    "user-agent",
                    "port-ocean/github/1.0.0/my-github-integration/exporter",
                ),
            ],
            axum::body::Body::from(body.to_string()),
        )
        .await
        .expect(200);
    assert_eq!(found["entities"], json!([]));
    // Without the data source rules, the same search finds the entity, projected.
    let found = h
        .post(
            uri,
            json!({ "combinator": "and", "rules": [{ "property": "$blueprint", "operator": "=", "value": "service" }] }),
        )
        .await
        .expect(200);
    assert_eq!(
        found["entities"],
        json!([{ "identifier": "svc", "blueprint": "service" }])
    );
    // `include[]=` (bracket form) and a single value work too; a bad flag is refused.
    let found = h
        .post(
            "/v1/entities/search?include[]=identifier",
            json!({ "combinator": "and", "rules": [] }),
        )
        .await
        .expect(200);
    assert_eq!(found["entities"], json!([{ "identifier": "svc" }]));
    h.post(
        "/v1/entities/search?exclude_calculated_properties=yes",
        json!({ "combinator": "and", "rules": [] }),
    )
    .await
    .expect_error(422, "invalid_request");
}

#[tokio::test]
async fn blueprint_search_bodies_include_by_identifier_and_list_takes_include() {
    let h = harness().await;
    h.post(
        "/v1/blueprints/team/entities",
        json!({ "identifier": "platform" }),
    )
    .await
    .expect(201);
    h.post(
        "/v1/blueprints/service/entities",
        json!({ "identifier": "svc", "title": "Svc", "properties": { "language": "go", "replicas": 2 }, "relations": { "team": "platform" } }),
    )
    .await
    .expect(201);
    let page = h
        .post(
            "/v1/blueprints/service/entities/search",
            json!({ "query": { "combinator": "and", "rules": [] }, "include": ["$identifier", "language", "team"], "exclude": ["properties.replicas"] }),
        )
        .await
        .expect(200);
    assert_eq!(
        page["entities"],
        json!([{ "identifier": "svc", "properties": { "language": "go" }, "relations": { "team": "platform" } }])
    );
    let list = h
        .get("/v1/blueprints/service/entities?include=identifier&include=relations.team")
        .await
        .expect(200);
    assert_eq!(
        list["entities"],
        json!([{ "identifier": "svc", "relations": { "team": "platform" } }])
    );
    // A cursor that no page gave is refused.
    h.post(
        "/v1/blueprints/service/entities/search",
        json!({ "query": { "combinator": "and", "rules": [] }, "from": "not an identifier" }),
    )
    .await
    .expect_error(422, "invalid_request");
}

/// Listing a blueprint reads it a page at a time and refuses, with the search's 422,
/// a blueprint too large to answer in one list (as are deletes whose dependents could
/// not be checked within the same bound), instead of loading it whole.
#[tokio::test]
async fn a_blueprint_too_large_to_list_is_refused_not_loaded() {
    let h = Harness::memory().await;
    h.post(
        "/v1/blueprints",
        json!({
            "identifier": "blob",
            "title": "Blob",
            "schema": { "properties": { "data": { "type": "string" } } }
        }),
    )
    .await
    .expect(201);
    let data = "d".repeat(900 * 1024);
    for i in 0..3 {
        h.post(
            "/v1/blueprints/blob/entities",
            json!({ "identifier": format!("b{i}"), "properties": { "data": data } }),
        )
        .await
        .expect(201);
    }
    let listed = h.get("/v1/blueprints/blob/entities").await.expect(200);
    let ids: Vec<&str> = listed["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["identifier"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["b0", "b1", "b2"]);
    for i in 3..40 {
        h.post(
            "/v1/blueprints/blob/entities",
            json!({ "identifier": format!("b{i}"), "properties": { "data": data } }),
        )
        .await
        .expect(201);
    }
    h.get("/v1/blueprints/blob/entities")
        .await
        .expect_error(422, "search_too_broad");
}
