//! Blueprint routes.

use serde_json::json;

use crate::support::{Harness, microservice_blueprint};

#[tokio::test]
async fn blueprint_crud() {
    let h = Harness::memory().await;
    let created = h
        .post("/v1/blueprints", microservice_blueprint())
        .await
        .expect(201);
    let keys: Vec<&String> = created["blueprint"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "identifier",
            "description",
            "title",
            "icon",
            "schema",
            "mirrorProperties",
            "calculationProperties",
            "relations",
            "createdAt",
            "createdBy",
            "updatedAt",
            "updatedBy"
        ]
    );
    h.post("/v1/blueprints", microservice_blueprint())
        .await
        .expect_error(409, "identifier_taken");

    let list = h.get("/v1/blueprints").await.expect(200);
    assert_eq!(list["blueprints"].as_array().unwrap().len(), 1);
    let one = h.get("/v1/blueprints/microservice").await.expect(200);
    assert_eq!(one["blueprint"], created["blueprint"]);

    // PATCH merges schema properties.
    let patched = h
        .patch(
            "/v1/blueprints/microservice",
            json!({ "title": "Services", "schema": { "properties": { "tier": { "type": "number" } } } }),
        )
        .await
        .expect(200);
    assert_eq!(patched["blueprint"]["title"], "Services");
    assert_eq!(
        patched["blueprint"]["schema"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["region", "tier"]
    );

    // PUT replaces.
    let mut replacement = microservice_blueprint();
    replacement["title"] = json!("Replaced");
    replacement["schema"]["properties"] = json!({ "lang": { "type": "string" } });
    let replaced = h
        .put("/v1/blueprints/microservice", replacement)
        .await
        .expect(200);
    assert_eq!(replaced["blueprint"]["title"], "Replaced");
    assert_eq!(
        replaced["blueprint"]["schema"]["properties"],
        json!({ "lang": { "type": "string" } })
    );
    assert_eq!(
        replaced["blueprint"]["createdAt"],
        created["blueprint"]["createdAt"]
    );
    let mut renamed = microservice_blueprint();
    renamed["identifier"] = json!("other");
    h.put("/v1/blueprints/microservice", renamed)
        .await
        .expect_error(422, "invalid_request");

    assert_eq!(
        h.delete("/v1/blueprints/microservice").await.expect(200),
        json!({ "ok": true })
    );
    h.get("/v1/blueprints/microservice")
        .await
        .expect_error(404, "not_found");
    h.delete("/v1/blueprints/microservice")
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn invalid_blueprints_name_the_field() {
    let h = Harness::memory().await;
    let body = h
        .post(
            "/v1/blueprints",
            json!({ "identifier": "svc", "schema": { "properties": {} } }),
        )
        .await
        .expect_error(422, "invalid_request");
    assert_eq!(body["message"], "title: is required");
    let body = h
        .post(
            "/v1/blueprints",
            json!({ "identifier": "svc", "title": "S", "schema": { "properties": { "x": { "type": "date" } } } }),
        )
        .await
        .expect_error(422, "invalid_request");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("schema.properties.x.type"),
        "{body}"
    );
    let body = h
        .post(
            "/v1/blueprints",
            json!({ "identifier": "a b", "title": "S", "schema": { "properties": {} } }),
        )
        .await
        .expect_error(422, "invalid_request");
    assert!(
        body["message"].as_str().unwrap().starts_with("identifier:"),
        "{body}"
    );
}
