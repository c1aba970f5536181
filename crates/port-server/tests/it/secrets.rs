//! Organization secrets (`/v1/organization/secrets`) and secret inputs through the
//! router: values go in and never come out; templates read them only when sending.

use axum::http::Method;
use port_core::secret::decrypt_input;
use serde_json::{Value, json};

use crate::support::Harness;

const VALUE: &str = "tok-Zx8Cv3Bn6Mq1Wf4Jh7Kd0Lp5Rs2Gt9Ya";

fn action(identifier: &str, invocation: Value) -> Value {
    json!({
        "identifier": identifier,
        "title": identifier,
        "trigger": {
            "type": "self-service",
            "operation": "CREATE",
            "userInputs": {
                "properties": {
                    "token": { "type": "string", "encryption": "aes256-gcm", "minLength": 8 },
                    "count": { "type": "number" }
                }
            }
        },
        "invocationMethod": invocation
    })
}

async fn with_secret(h: &Harness) {
    h.post(
        "/v1/organization/secrets",
        json!({ "secretName": "API_TOKEN", "secretValue": VALUE }),
    )
    .await
    .expect(201);
}

#[tokio::test]
async fn secrets_are_created_listed_updated_and_deleted_without_their_values() {
    for h in [Harness::memory().await, Harness::sqlite().await] {
        let created = h
            .post(
                "/v1/organization/secrets",
                json!({ "secretName": "API_TOKEN", "secretValue": VALUE, "description": "CI" }),
            )
            .await
            .expect(201);
        assert_eq!(created["ok"], true);
        assert_eq!(created["secret"]["secretName"], "API_TOKEN");
        assert_eq!(created["secret"]["description"], "CI");
        assert!(created["secret"]["createdAt"].is_string());
        h.post(
            "/v1/organization/secrets",
            json!({ "secretName": "API_TOKEN", "secretValue": "other" }),
        )
        .await
        .expect_error(409, "identifier_taken");
        h.post(
            "/v1/organization/secrets",
            json!({ "secretName": "a.b", "secretValue": "x" }),
        )
        .await
        .expect_error(422, "invalid_request");
        h.post(
            "/v1/organization/secrets",
            json!({ "secretName": "BIG", "secretValue": "é".repeat(64 * 1024 + 1) }),
        )
        .await
        .expect_error(422, "invalid_request");
        // All values together are bounded too: each send loads them.
        for n in 0..15 {
            h.post(
                "/v1/organization/secrets",
                json!({ "secretName": format!("FILL_{n}"), "secretValue": "x".repeat(64 * 1024) }),
            )
            .await
            .expect(201);
        }
        h.post(
            "/v1/organization/secrets",
            json!({ "secretName": "ONE_TOO_MANY", "secretValue": "x".repeat(64 * 1024) }),
        )
        .await
        .expect_error(422, "invalid_request");
        for n in 0..15 {
            h.delete(&format!("/v1/organization/secrets/FILL_{n}"))
                .await
                .expect(200);
        }
        // Null is not a description (the document types it as a string).
        h.post(
            "/v1/organization/secrets",
            json!({ "secretName": "NULL", "secretValue": "x", "description": null }),
        )
        .await
        .expect_error(422, "invalid_request");
        h.patch(
            "/v1/organization/secrets/API_TOKEN",
            json!({ "secretValue": null }),
        )
        .await
        .expect_error(422, "invalid_request");

        h.clock.advance(1_000);
        let patched = h
            .patch(
                "/v1/organization/secrets/API_TOKEN",
                json!({ "secretValue": "new-value-of-the-token" }),
            )
            .await
            .expect(200);
        assert_ne!(
            patched["secret"]["updatedAt"],
            created["secret"]["updatedAt"]
        );
        assert_eq!(patched["secret"]["description"], "CI", "kept");

        let listed = h.get("/v1/organization/secrets").await.expect(200);
        assert_eq!(listed["secrets"].as_array().unwrap().len(), 1);
        let one = h
            .get("/v1/organization/secrets/API_TOKEN")
            .await
            .expect(200);
        for answer in [&created, &patched, &listed, &one] {
            let text = answer.to_string();
            assert!(
                !text.contains(VALUE)
                    && !text.contains("new-value")
                    && !text.contains("secretValue"),
                "a value was answered: {text}"
            );
        }

        // Another organization sees none of it.
        let (client_id, secret, _) = h.new_organization("other").await;
        let other = h.token_for(&client_id, &secret).await;
        let theirs = h
            .send(Method::GET, "/v1/organization/secrets", Some(&other), None)
            .await
            .expect(200);
        assert_eq!(theirs["secrets"], json!([]));
        h.send(
            Method::DELETE,
            "/v1/organization/secrets/API_TOKEN",
            Some(&other),
            None,
        )
        .await
        .expect_error(404, "not_found");

        h.delete("/v1/organization/secrets/API_TOKEN")
            .await
            .expect(200);
        h.get("/v1/organization/secrets/API_TOKEN")
            .await
            .expect_error(404, "not_found");
    }
}

#[tokio::test]
async fn secret_inputs_are_encrypted_as_port_does_everywhere_they_appear() {
    let h = Harness::sqlite().await;
    h.post(
        "/v1/actions",
        action(
            "deploy",
            json!({
                "type": "WEBHOOK",
                "url": "http://127.0.0.1:9/hook",
                "body": { "token": "{{ .inputs.token }}", "also": "{{ .inputs.token }}" }
            }),
        ),
    )
    .await
    .expect(201);
    let input = "my-clear-secret-input";
    let run = h
        .post(
            "/v1/actions/deploy/runs",
            json!({ "properties": { "token": input, "count": 2 } }),
        )
        .await
        .expect(202);
    let id = run["run"]["id"].as_str().unwrap();
    let encrypted = run["run"]["properties"]["token"].as_str().unwrap();
    assert_eq!(decrypt_input(&h.client_secret, encrypted).unwrap(), input);
    assert_eq!(
        run["run"]["properties"]["count"], 2,
        "other inputs are left alone"
    );
    assert_eq!(run["run"]["payload"]["body"]["token"], encrypted);
    for path in [
        format!("/v1/actions/runs/{id}"),
        format!("/v1/actions/runs/{id}?version=v2"),
        "/v1/actions/runs?version=v2".to_owned(),
    ] {
        let text = h.get(&path).await.expect(200).to_string();
        assert!(
            !text.contains(input),
            "{path} answers the clear value: {text}"
        );
    }
    // Each encryption has its own IV.
    let again = h
        .post(
            "/v1/actions/deploy/runs",
            json!({ "properties": { "token": input } }),
        )
        .await
        .expect(202);
    assert_ne!(
        again["run"]["properties"]["token"],
        run["run"]["properties"]["token"]
    );
}

#[tokio::test]
async fn templates_read_secrets_only_when_sending_and_never_print_them() {
    let h = Harness::memory().await;
    with_secret(&h).await;
    h.post(
        "/v1/actions",
        action(
            "pulled",
            json!({
                "type": "WEBHOOK",
                "agent": true,
                "url": "http://backend.internal/hook",
                "headers": { "Authorization": "Bearer {{ .secrets.API_TOKEN }}", "X-Run": "{{ .run.id }}" },
                "body": { "plain": "{{ .inputs.count }}" }
            }),
        ),
    )
    .await
    .expect(201);
    let run = h
        .post(
            "/v1/actions/pulled/runs",
            json!({ "properties": { "count": 3 } }),
        )
        .await
        .expect(202);
    let payload = &run["run"]["payload"];
    assert_eq!(
        payload["headers"]["Authorization"], "Bearer {{ .secrets.API_TOKEN }}",
        "the stored payload keeps the template: {payload:#}"
    );
    assert_eq!(
        payload["body"]["plain"], 3,
        "parts without secrets are evaluated"
    );
    assert!(payload.get("portdDeferred").is_none(), "{payload:#}");

    // A runner pulling the run is the sender: it gets the value.
    let claimed = h
        .send(
            Method::POST,
            "/v1/actions/runs/claim-pending",
            Some(&h.token),
            Some(json!({ "installationId": "_PORT_EXEC_AGENT", "limit": 10 })),
        )
        .await
        .expect(200);
    let sent = &claimed["runs"][0]["payload"];
    assert_eq!(sent["headers"]["Authorization"], format!("Bearer {VALUE}"));
    assert_eq!(sent["headers"]["X-Run"], run["run"]["id"]);
    assert!(sent.get("portdDeferred").is_none(), "{sent:#}");
    // And what is stored still holds no value.
    let id = run["run"]["id"].as_str().unwrap();
    let stored = h
        .get(&format!("/v1/actions/runs/{id}?version=v2"))
        .await
        .expect(200);
    assert!(!stored.to_string().contains(VALUE));

    // A template that fails on a secret is the caller's 422, without the value.
    h.post(
        "/v1/actions",
        action(
            "broken",
            json!({
                "type": "WEBHOOK",
                "url": "http://backend.internal/hook",
                "body": { "x": "{{ .secrets.API_TOKEN + 1 }}" }
            }),
        ),
    )
    .await
    .expect(201);
    let refused = h
        .post("/v1/actions/broken/runs", json!({ "properties": {} }))
        .await
        .expect_error(422, "evaluate_invocation_method_error");
    assert!(!refused.to_string().contains(VALUE), "{refused:#}");

    // Nor when what the secret rendered into is quoted back (an unusable URL).
    h.post(
        "/v1/actions",
        action(
            "bad_url",
            json!({ "type": "WEBHOOK", "url": "{{ .secrets.API_TOKEN }}" }),
        ),
    )
    .await
    .expect(201);
    let refused = h
        .post("/v1/actions/bad_url/runs", json!({ "properties": {} }))
        .await
        .expect_error(422, "invalid_evaluated_invocation_method");
    assert!(!refused.to_string().contains(VALUE), "{refused:#}");

    // A part that does not name `secrets` does not see them.
    h.post(
        "/v1/actions",
        action(
            "sneaky",
            json!({
                "type": "WEBHOOK",
                "url": "http://backend.internal/hook",
                "body": { "everything": "{{ . | tostring }}" }
            }),
        ),
    )
    .await
    .expect(201);
    let sneaky = h
        .post("/v1/actions/sneaky/runs", json!({ "properties": {} }))
        .await
        .expect(202);
    assert!(!sneaky.to_string().contains(VALUE), "{sneaky:#}");
}
