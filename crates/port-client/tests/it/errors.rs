//! Error answers become typed errors carrying Port's identifier.

use port_client::{ClientError, EntityWriteOptions, Method};
use serde_json::json;

use crate::script::{Reply, ScriptServer};

#[tokio::test]
async fn the_error_envelope_becomes_an_api_error() {
    let server = ScriptServer::start(|r, _| {
        (r.path == "/v1/actions/runs/r_1/logs").then(|| {
            Reply::error(
                422,
                "run_exhausted",
                "run r_1 has already ended with status SUCCESS",
            )
        })
    })
    .await;
    let error = server
        .client()
        .add_log("r_1", "late", None, None)
        .await
        .unwrap_err();
    assert_eq!(error.identifier(), Some("run_exhausted"));
    assert_eq!(error.status(), Some(422));
    let ClientError::Api {
        status,
        error: id,
        message,
        body,
    } = &error
    else {
        panic!("not an API error: {error:?}");
    };
    assert_eq!((*status, id.as_str()), (422, "run_exhausted"));
    assert_eq!(message, "run r_1 has already ended with status SUCCESS");
    assert_eq!(body["ok"], json!(false));
}

#[tokio::test]
async fn a_missing_resource_is_not_found() {
    let server = ScriptServer::start(|_, _| None).await;
    let error = server
        .client()
        .get_entity("service", "nope")
        .await
        .unwrap_err();
    assert!(error.is_not_found());
    assert_eq!(error.identifier(), Some("not_found"));
}

#[tokio::test]
async fn a_non_json_error_keeps_its_text() {
    let server = ScriptServer::start(|r, _| {
        (r.path == "/v1/blueprints").then(|| Reply::text(500, "upstream exploded"))
    })
    .await;
    let error = server.client().list_blueprints().await.unwrap_err();
    assert!(
        matches!(&error, ClientError::Api { status: 500, error, message, .. } if error.is_empty() && message == "upstream exploded"),
        "{error:?}"
    );
    assert_eq!(error.identifier(), None);
}

#[tokio::test]
async fn a_malformed_success_is_a_decode_error() {
    let server = ScriptServer::start(|r, _| {
        (r.path == "/v1/actions/runs/r_1")
            .then(|| Reply::json(200, json!({ "ok": true, "run": { "id": 3 } })))
    })
    .await;
    let error = server.client().get_run("r_1").await.unwrap_err();
    assert!(matches!(error, ClientError::Decode { .. }), "{error:?}");
}

#[tokio::test]
async fn request_json_is_the_escape_hatch() {
    let server = ScriptServer::start(|r, nth| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/v1/kafka-credentials") => Some(match nth {
            0 => Reply::text(503, "busy"),
            _ => Reply::json(200, json!({ "ok": true, "credentials": { "brokers": [] } })),
        }),
        ("POST", "/v1/organization/things") => Some(Reply::error(409, "conflict", "exists")),
        _ => None,
    })
    .await;
    let client = server.client();
    let body = client
        .request_json(Method::GET, "/v1/kafka-credentials", &[("a", "b c")], None)
        .await
        .unwrap();
    assert_eq!(body["credentials"]["brokers"], json!([]));
    let sent = server.to("GET", "/v1/kafka-credentials");
    assert_eq!(sent.len(), 2, "a GET is retried");
    assert_eq!(sent[1].param("a").as_deref(), Some("b c"));
    assert_eq!(sent[1].bearer().as_deref(), Some("tok-0"));
    let error = client
        .request_json(
            Method::POST,
            "organization/things",
            &[],
            Some(json!({ "x": 1 })),
        )
        .await
        .unwrap_err();
    assert_eq!(error.identifier(), Some("conflict"));
    assert_eq!(
        server.to("POST", "/v1/organization/things")[0].json(),
        json!({ "x": 1 })
    );
}

#[tokio::test]
async fn entity_writes_send_their_flags_and_encode_identifiers() {
    let server = ScriptServer::start(|r, _| {
        (r.method == "POST" && r.path == "/v1/blueprints/team%2Fa/entities").then(|| {
            Reply::json(201, json!({ "ok": true, "entity": { "identifier": "svc", "blueprint": "team/a", "properties": {}, "relations": {} } }))
        })
    })
    .await;
    let entity = server
        .client()
        .create_entity(
            "team/a",
            &json!({ "identifier": "svc" }),
            &EntityWriteOptions {
                validation_only: true,
                create_missing_related_entities: true,
                ..EntityWriteOptions::upsert_merge().run_id("r_1")
            },
        )
        .await
        .unwrap();
    assert_eq!(entity.identifier, "svc");
    let sent = &server.to("POST", "/v1/blueprints/team%2Fa/entities")[0];
    assert_eq!(
        sent.query,
        "upsert=true&merge=true&validation_only=true&create_missing_related_entities=true&run_id=r_1"
    );
}
