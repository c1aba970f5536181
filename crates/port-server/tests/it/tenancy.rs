//! Another organization's data is invisible: 404 everywhere, nothing listed.

use axum::http::Method;
use serde_json::{Value, json};

use crate::support::Harness;

#[tokio::test]
async fn other_organizations_see_nothing() {
    let h = Harness::memory().await;
    h.seed_catalog().await;
    h.post(
        "/v1/blueprints/microservice/entities",
        json!({ "identifier": "svc", "properties": {} }),
    )
    .await
    .expect(201);
    let run = h.create_run().await;
    h.post(
        &format!("/v1/actions/runs/{run}/logs"),
        json!({ "message": "secret log" }),
    )
    .await
    .expect(201);

    let (client_id, secret, _) = h.new_organization("other").await;
    let other = h.token_for(&client_id, &secret).await;
    let as_other = |method: Method, path: String, body: Option<Value>| {
        let h = &h;
        let other = other.clone();
        async move { h.send(method, &path, Some(&other), body).await }
    };

    for path in [
        format!("/v1/actions/runs/{run}"),
        format!("/v1/actions/runs/{run}/logs"),
        format!("/v1/actions/runs/{run}/logging"),
        format!("/v1/actions/runs/{run}/approvers"),
        format!("/v1/audit-log?run_id={run}"),
        "/v1/actions/create_microservice".to_owned(),
        "/v1/blueprints/microservice".to_owned(),
        "/v1/blueprints/microservice/entities".to_owned(),
        "/v1/blueprints/microservice/entities/svc".to_owned(),
        "/v1/blueprints/microservice/actions".to_owned(),
        "/v1/blueprints/microservice/actions/create_microservice".to_owned(),
    ] {
        as_other(Method::GET, path, None)
            .await
            .expect_error(404, "not_found");
    }
    as_other(
        Method::PATCH,
        format!("/v1/actions/runs/{run}"),
        Some(json!({ "status": "FAILURE" })),
    )
    .await
    .expect_error(404, "not_found");
    as_other(
        Method::POST,
        format!("/v1/actions/runs/{run}/logs"),
        Some(json!({ "message": "x" })),
    )
    .await
    .expect_error(404, "not_found");
    as_other(
        Method::POST,
        "/v1/actions/create_microservice/runs".into(),
        Some(json!({ "properties": {} })),
    )
    .await
    .expect_error(404, "not_found");
    as_other(
        Method::DELETE,
        "/v1/actions/create_microservice".into(),
        None,
    )
    .await
    .expect_error(404, "not_found");
    as_other(Method::DELETE, "/v1/blueprints/microservice".into(), None)
        .await
        .expect_error(404, "not_found");
    as_other(
        Method::POST,
        format!("/v1/blueprints/microservice/entities?run_id={run}"),
        Some(json!({})),
    )
    .await
    .expect_error(404, "not_found");

    let runs = as_other(Method::GET, "/v1/actions/runs".into(), None)
        .await
        .expect(200);
    assert_eq!(runs["runs"], json!([]));
    let actions = as_other(Method::GET, "/v1/actions".into(), None)
        .await
        .expect(200);
    assert_eq!(actions["actions"], json!([]));
    let blueprints = as_other(Method::GET, "/v1/blueprints".into(), None)
        .await
        .expect(200);
    assert_eq!(blueprints["blueprints"], json!([]));

    // The same identifiers are free in the other organization.
    as_other(
        Method::POST,
        "/v1/blueprints".into(),
        Some(crate::support::microservice_blueprint()),
    )
    .await
    .expect(201);
    // And the first organization still has its data.
    h.get(&format!("/v1/actions/runs/{run}")).await.expect(200);
}
