//! The error envelope on every kind of failure, and request ids.

use axum::body::Body;
use axum::http::Method;
use serde_json::json;

use crate::support::Harness;

#[tokio::test]
async fn unknown_routes_and_methods() {
    let h = Harness::memory().await;
    let body = h
        .get("/v1/nothing/here")
        .await
        .expect_error(404, "not_found");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("/v1/nothing/here")
    );
    h.send(Method::GET, "/nope", None, None)
        .await
        .expect_error(404, "not_found");
    h.send(Method::DELETE, "/v1/auth/access_token", None, None)
        .await
        .expect_error(405, "method_not_allowed");
    h.send(Method::PUT, "/v1/actions/runs", Some(&h.token), None)
        .await
        .expect_error(405, "method_not_allowed");
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_refused() {
    let h = Harness::memory().await;
    h.seed_catalog().await;
    let run = h.create_run().await;
    // Exactly at the limit is read (and refused for its content), one byte more is 413.
    let padding = 1024 * 1024 - r#"{"message":""}"#.len();
    let at_limit = format!(r#"{{"message":"{}"}}"#, "a".repeat(padding));
    assert_eq!(at_limit.len(), 1024 * 1024);
    h.raw(
        Method::POST,
        &format!("/v1/actions/runs/{run}/logs"),
        Some(&h.token),
        &[],
        Body::from(at_limit),
    )
    .await
    .expect(201);
    let over = format!(r#"{{"message":"{}"}}"#, "a".repeat(padding + 1));
    assert_eq!(over.len(), 1024 * 1024 + 1);
    let body = h
        .raw(
            Method::POST,
            &format!("/v1/actions/runs/{run}/logs"),
            Some(&h.token),
            &[],
            Body::from(over.clone()),
        )
        .await
        .expect_error(413, "bad_request");
    assert!(body["message"].as_str().unwrap().contains("1MiB"));
    h.raw(
        Method::POST,
        "/v1/blueprints",
        Some(&h.token),
        &[],
        Body::from(over),
    )
    .await
    .expect_error(413, "bad_request");
}

#[tokio::test]
async fn malformed_bodies_are_422() {
    let h = Harness::memory().await;
    let body = h
        .raw(
            Method::POST,
            "/v1/blueprints",
            Some(&h.token),
            &[("content-type", "application/json")],
            Body::from("{\"identifier\":"),
        )
        .await
        .expect_error(422, "invalid_request");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("body: malformed JSON"),
        "{body}"
    );
    h.raw(
        Method::POST,
        "/v1/blueprints",
        Some(&h.token),
        &[],
        Body::empty(),
    )
    .await
    .expect_error(422, "invalid_request");
    let body = h
        .send(
            Method::POST,
            "/v1/auth/access_token",
            None,
            Some(json!({ "clientId": 1, "clientSecret": "x" })),
        )
        .await
        .expect_error(422, "invalid_request");
    assert!(
        body["message"].as_str().unwrap().starts_with("clientId:"),
        "{body}"
    );
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let h = Harness::memory().await;
    let reply = h
        .raw(
            Method::GET,
            "/healthz",
            None,
            &[("x-request-id", "abc-123")],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.headers["x-request-id"], "abc-123");
    let reply = h
        .raw(Method::GET, "/healthz", None, &[], Body::empty())
        .await;
    let generated = reply.headers["x-request-id"].to_str().unwrap();
    assert_eq!(generated.len(), 36, "{generated}");
    // Errors carry one too.
    let reply = h
        .raw(Method::GET, "/v1/blueprints", None, &[], Body::empty())
        .await;
    assert!(reply.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn metrics_count_routes_by_pattern() {
    let h = Harness::memory().await;
    h.get("/v1/blueprints/one").await.expect(404);
    h.get("/v1/blueprints/two").await.expect(404);
    let text = h
        .send(Method::GET, "/metrics", None, None)
        .await
        .expect(200);
    let text = text.as_str().unwrap();
    assert!(
        text.contains(r#"portd_http_requests_total{method="GET",route="/v1/blueprints/{blueprint_identifier}",status="404"} 2"#),
        "{text}"
    );
    assert!(text.contains(r#"portd_http_request_duration_seconds_count{method="GET",route="/v1/blueprints/{blueprint_identifier}"} 2"#));
    assert!(text.contains("portd_runs_created_total 0"));
}

/// Invented methods and paths add no label: methods outside the standard ones count as
/// `other`, paths no route matches as `unmatched`.
#[tokio::test]
async fn metrics_labels_stay_few_whatever_the_requests() {
    let h = Harness::memory().await;
    for n in 0..500 {
        let invented = Method::from_bytes(format!("X-INVENTED-{n}").as_bytes()).unwrap();
        let on_a_route = h
            .send(invented.clone(), "/v1/actions/runs", None, None)
            .await;
        assert_eq!(on_a_route.status, 405);
        let nowhere = h.send(invented, &format!("/nowhere/{n}"), None, None).await;
        assert_eq!(nowhere.status, 404);
        h.get(&format!("/v1/invented/{n}")).await.expect(404);
    }
    let text = h
        .send(Method::GET, "/metrics", None, None)
        .await
        .expect(200);
    let text = text.as_str().unwrap();
    assert!(
        !text.contains("INVENTED") && !text.contains("/nowhere/"),
        "{text}"
    );
    assert!(
        text.contains(
            r#"portd_http_requests_total{method="other",route="/v1/actions/runs",status="405"} 500"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"portd_http_requests_total{method="other",route="unmatched",status="404"} 500"#
        ),
        "{text}"
    );
    assert!(text.len() < 8 * 1024, "{} bytes:\n{text}", text.len());
}

/// Bodies the document calls invalid are refused (schemathesis found them accepted).
#[tokio::test]
async fn bodies_outside_the_document_are_refused() {
    let h = Harness::memory().await;
    // The ack body is an object: an array of arrays is not one.
    let raw = h
        .raw(
            Method::PATCH,
            "/v1/actions/runs/ack",
            Some(&h.token),
            &[],
            Body::from("[[]]"),
        )
        .await
        .expect_error(422, "invalid_request");
    assert_eq!(raw["message"], "body: must be a JSON object");
    h.patch("/v1/actions/runs/ack", json!({ "runIds": [] }))
        .await
        .expect(200);
    // installationId is a string when present.
    let null = h
        .post(
            "/v1/actions/runs/claim-pending",
            json!({ "limit": 1, "visibilityTimeoutMs": 60000, "installationId": null }),
        )
        .await
        .expect_error(422, "invalid_request");
    assert!(
        null["message"]
            .as_str()
            .unwrap()
            .starts_with("installationId"),
        "{null}"
    );
    h.post(
        "/v1/actions/runs/claim-pending",
        json!({ "limit": 1, "installationId": "runner-1" }),
    )
    .await
    .expect(200);
    // JSON Schema's integer includes 2644.0.
    h.post(
        "/v1/actions/runs/claim-pending",
        json!({ "limit": 1.0, "visibilityTimeoutMs": 2644.0 }),
    )
    .await
    .expect(200);
    h.post(
        "/v1/actions/runs/claim-pending",
        json!({ "visibilityTimeoutMs": 2644.5 }),
    )
    .await
    .expect_error(422, "invalid_request");
}

/// Messages name identifiers as they are written, not as Rust debug forms.
#[tokio::test]
async fn messages_print_plain_identifiers() {
    let h = Harness::memory().await;
    h.create_microservice_blueprint().await;
    let body = h
        .post(
            "/v1/blueprints/microservice/entities",
            json!({ "identifier": "svc", "blueprint": "other", "properties": {} }),
        )
        .await
        .expect_error(422, "invalid_request");
    assert_eq!(
        body["message"],
        "blueprint: must be microservice, the blueprint of the route"
    );
    let body = h
        .put(
            "/v1/blueprints/microservice",
            json!({ "identifier": "other", "title": "x", "schema": { "properties": {} } }),
        )
        .await
        .expect_error(422, "invalid_request");
    let message = body["message"].as_str().unwrap();
    assert!(!message.contains("BlueprintIdentifier("), "{message}");
}

/// Templates are tenant code: a budget exceeded at execute is the caller's 422 naming
/// the limit, and a template too deeply nested to parse safely is refused when the
/// action is saved (issue 14; the real binary's sandbox is tested in port-chaos).
#[tokio::test]
async fn templates_past_their_budget_are_refused_with_the_limit_named() {
    let h = Harness::memory().await;
    h.create_microservice_blueprint().await;
    for (identifier, body, limit) in [
        (
            "loop",
            "{{ def f: f; f }}",
            "exceeded its budget of 1000000 evaluation steps",
        ),
        (
            "payload",
            "{{ [range(40000)] }}",
            "rendered more than 262144 bytes",
        ),
    ] {
        let mut action = crate::support::v2_action(identifier, "CREATE");
        action["invocationMethod"]["body"] = json!({ "x": body });
        h.post("/v1/actions", action).await.expect(201);
        let answer = h
            .post(
                &format!("/v1/actions/{identifier}/runs"),
                json!({ "properties": {} }),
            )
            .await
            .expect_error(422, "evaluate_invocation_method_error");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(limit), "{message}");
    }
    // Nothing stored: the run list is empty.
    let runs = h.get("/v1/actions/runs").await.expect(200);
    assert_eq!(runs["runs"], json!([]));

    let mut deep = crate::support::v2_action("deep", "CREATE");
    deep["invocationMethod"]["body"] =
        json!({ "x": format!("{{{{ {}1{} }}}}", "(".repeat(20_000), ")".repeat(20_000)) });
    let answer = h
        .post("/v1/actions", deep)
        .await
        .expect_error(422, "invalid_request");
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains("nests deeper than 32 levels"), "{message}");
}
