//! Organization secrets: what the methods send, which of them are repeated, and that a
//! value sent never shows in an error, a `Debug` print or the client's logs.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use port_client::ClientError;
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span;

use crate::script::{Reply, ScriptServer};

const VALUE: &str = "tok-Zx8Cv3Bn6Mq1Wf4Jh7Kd0Lp5Rs2Gt9Ya";
const SECRETS: &str = "/v1/organization/secrets";

fn secret_reply(status: u16) -> Reply {
    Reply::json(
        status,
        json!({ "ok": true, "secret": {
            "secretName": "API_TOKEN",
            "description": "CI",
            "createdAt": "2024-08-15T12:30:00.000Z",
            "updatedAt": "2024-08-15T12:30:00.000Z"
        } }),
    )
}

#[tokio::test]
async fn a_create_is_repeated_only_when_the_server_cannot_have_acted() {
    let server = ScriptServer::start(|r, nth| {
        (r.path == SECRETS).then(|| match nth {
            // Perhaps stored: a retry could only get 409 for this very secret.
            0 => Reply::error(503, "service_unavailable", "later"),
            // Refused before anything was done.
            1 => Reply::error(429, "rate_limited", "slow down"),
            _ => secret_reply(201),
        })
    })
    .await;
    let client = server.client();
    let error = client
        .create_secret("API_TOKEN", VALUE, Some("CI"))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(503));
    assert_eq!(server.to("POST", SECRETS).len(), 1);

    let created = client
        .create_secret("API_TOKEN", VALUE, None)
        .await
        .unwrap();
    assert_eq!(created.secret_name, "API_TOKEN");
    let sent = server.to("POST", SECRETS);
    assert_eq!(sent.len(), 3);
    assert_eq!(
        sent[0].json(),
        json!({ "secretName": "API_TOKEN", "secretValue": VALUE, "description": "CI" })
    );
    // No description given, none sent (portd refuses a null one).
    assert_eq!(
        sent[2].json(),
        json!({ "secretName": "API_TOKEN", "secretValue": VALUE })
    );
}

#[tokio::test]
async fn updates_are_repeated_and_send_only_what_changes() {
    let path = "/v1/organization/secrets/MY%20TOKEN";
    let server = ScriptServer::start(move |r, nth| {
        (r.path == path).then(|| match (r.method.as_str(), nth) {
            ("PATCH", 0) => Reply::error(503, "service_unavailable", "later"),
            ("DELETE", _) => Reply::json(200, json!({ "ok": true })),
            _ => secret_reply(200),
        })
    })
    .await;
    let client = server.client();
    client
        .update_secret("MY TOKEN", Some(VALUE), None)
        .await
        .unwrap();
    client
        .update_secret("MY TOKEN", None, Some("rotated"))
        .await
        .unwrap();
    let sent = server.to("PATCH", path);
    assert_eq!(sent.len(), 3, "the 503 was retried");
    assert_eq!(sent[1].json(), json!({ "secretValue": VALUE }));
    assert_eq!(sent[2].json(), json!({ "description": "rotated" }));
    client.get_secret("MY TOKEN").await.unwrap();
    client.delete_secret("MY TOKEN").await.unwrap();
    assert_eq!(server.to("DELETE", path).len(), 1);
}

#[tokio::test]
async fn a_value_quoted_back_is_masked_or_dropped() {
    let server = ScriptServer::start(|r, _| match (r.method.as_str(), r.path.as_str()) {
        ("POST", SECRETS) => Some(Reply::json(
            422,
            json!({
                "ok": false,
                "error": "invalid_request",
                "message": format!("body.secretValue: {VALUE:?} is not allowed"),
                "details": { "secretValue": VALUE }
            }),
        )),
        ("PATCH", _) => Some(Reply::json(
            200,
            json!({ "ok": true, "secret": { "secretName": "API_TOKEN", "secretValue": VALUE } }),
        )),
        ("GET", SECRETS) => Some(Reply::json(
            200,
            json!({ "ok": true, "secrets": [{ "secretName": "API_TOKEN", "secretValue": VALUE }] }),
        )),
        _ => None,
    })
    .await;
    let client = server.client();
    let error = client
        .create_secret("API_TOKEN", VALUE, None)
        .await
        .unwrap_err();
    assert_eq!(error.identifier(), Some("invalid_request"));
    let ClientError::Api { message, body, .. } = &error else {
        panic!("not an API error: {error:?}");
    };
    assert!(message.contains("[REDACTED]"), "{message}");
    assert_eq!(body["details"]["secretValue"], json!("[REDACTED]"));
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(VALUE), "{shown}");

    // A server that answers a value: the SDK does not keep it.
    let updated = client
        .update_secret("API_TOKEN", Some(VALUE), None)
        .await
        .unwrap();
    let listed = client.list_secrets().await.unwrap();
    for shown in [
        format!("{updated:?}"),
        format!("{listed:?}"),
        serde_json::to_string(&listed).unwrap(),
    ] {
        assert!(!shown.contains(VALUE), "{shown}");
    }
}

/// Every event and span field, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<String>>);

impl Captured {
    fn text(&self) -> String {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Visit for Captured {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = write!(text, "{}={value:?} ", field.name());
    }
}

/// A subscriber that records everything, at every level, from every crate.
struct Capture(Captured);

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &span::Attributes<'_>) -> span::Id {
        span.record(&mut self.0.clone());
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, values: &span::Record<'_>) {
        values.record(&mut self.0.clone());
    }

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut visitor = self.0.clone();
        let _ = write!(
            visitor.0.lock().unwrap_or_else(PoisonError::into_inner),
            "\n{} ",
            event.metadata().target()
        );
        event.record(&mut visitor);
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

// A current-thread runtime: the subscriber set for this thread sees the client and the
// script server alike.
#[tokio::test]
async fn the_clients_logs_never_hold_a_value() {
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(Capture(captured.clone()));
    let server = ScriptServer::start(|r, nth| {
        r.path
            .starts_with(SECRETS)
            .then(|| match (r.method.as_str(), nth) {
                ("POST", 0) => Reply::error(429, "rate_limited", "slow down"),
                ("PATCH", 0) => Reply::error(503, "service_unavailable", "later"),
                _ => secret_reply(200),
            })
    })
    .await;
    let client = server.client();
    client
        .create_secret("API_TOKEN", VALUE, None)
        .await
        .unwrap();
    client
        .update_secret("API_TOKEN", Some(VALUE), None)
        .await
        .unwrap();
    let logs = captured.text();
    // Both retries were logged (the capture works), without the value.
    assert!(
        logs.matches("retrying a transient answer").count() >= 2,
        "{logs}"
    );
    assert!(!logs.contains(VALUE), "{logs}");
}
