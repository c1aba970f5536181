//! Retries: transient answers and failed connections, only where repeating is safe.

use std::time::{Duration, Instant};

use port_client::{ClientError, ExecuteRequest, FinalStatus, PortClient, RunUpdate};
use serde_json::json;

use crate::script::{Reply, ScriptServer, log_json, run_json};

const RUN: &str = "/v1/actions/runs/r_1";

fn run_reply() -> Reply {
    Reply::json(
        200,
        json!({ "ok": true, "run": run_json("r_1", "IN_PROGRESS") }),
    )
}

#[tokio::test]
async fn a_get_is_retried_through_503s() {
    let server = ScriptServer::start(|r, nth| {
        (r.path == RUN).then(|| match nth {
            0 | 1 => Reply::error(503, "service_unavailable", "try again"),
            _ => run_reply(),
        })
    })
    .await;
    server.client().get_run("r_1").await.unwrap();
    assert_eq!(server.to("GET", RUN).len(), 3);
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let server = ScriptServer::start(|r, nth| {
        (r.path == RUN).then(|| match nth {
            0 => Reply::error(429, "rate_limited", "slow down").header("retry-after", "1"),
            _ => run_reply(),
        })
    })
    .await;
    let client = server.client();
    client.access_token().await.unwrap();
    let started = Instant::now();
    client.get_run("r_1").await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(950),
        "waited only {waited:?}"
    );
    assert_eq!(server.to("GET", RUN).len(), 2);
}

#[tokio::test]
async fn retry_after_is_capped() {
    let server = ScriptServer::start(|r, nth| {
        (r.path == RUN).then(|| match nth {
            0 => Reply::text(503, "busy").header("retry-after", "3600"),
            _ => run_reply(),
        })
    })
    .await;
    let client = server
        .builder()
        .max_retry_after(Duration::from_millis(100))
        .build()
        .unwrap();
    let started = Instant::now();
    client.get_run("r_1").await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn retries_stop_at_the_limit() {
    let server =
        ScriptServer::start(|r, _| (r.path == RUN).then(|| Reply::text(502, "bad gateway"))).await;
    let client = server.builder().max_retries(2).build().unwrap();
    let error = client.get_run("r_1").await.unwrap_err();
    assert!(
        matches!(error, ClientError::Api { status: 502, .. }),
        "{error:?}"
    );
    assert_eq!(server.to("GET", RUN).len(), 3);
}

#[tokio::test]
async fn execute_is_retried_with_the_same_idempotency_key() {
    let path = "/v1/actions/deploy/runs";
    let server = ScriptServer::start(move |r, nth| {
        (r.path == path).then(|| match nth {
            0 => Reply::error(503, "service_unavailable", "try again"),
            _ => Reply::json(
                202,
                json!({ "ok": true, "run": run_json("r_1", "IN_PROGRESS") }),
            ),
        })
    })
    .await;
    let client = server.client();
    let run = client
        .execute("deploy", &ExecuteRequest::new().property("env", "prod"))
        .await
        .unwrap();
    assert_eq!(run.id, "r_1");
    let sent = server.to("POST", path);
    assert_eq!(sent.len(), 2);
    let keys: Vec<_> = sent.iter().map(|r| r.header("idempotency-key")).collect();
    let key = keys[0].clone().expect("an idempotency key");
    assert_eq!(key.len(), 36, "a UUID: {key}");
    assert_eq!(keys[1].as_deref(), Some(key.as_str()));
    assert_eq!(sent[0].json(), json!({ "properties": { "env": "prod" } }));

    // A second execute is a different request with a different key; a caller's key is
    // used as given.
    client
        .execute(
            "deploy",
            &ExecuteRequest::new()
                .entity("svc")
                .idempotency_key("mine-1"),
        )
        .await
        .unwrap();
    let third = &server.to("POST", path)[2];
    assert_eq!(third.header("idempotency-key").as_deref(), Some("mine-1"));
    assert_eq!(third.json(), json!({ "properties": {}, "entity": "svc" }));
}

#[tokio::test]
async fn a_log_post_is_not_retried_on_503() {
    let path = "/v1/actions/runs/r_1/logs";
    let server = ScriptServer::start(move |r, _| {
        (r.path == path).then(|| Reply::error(503, "service_unavailable", "try again"))
    })
    .await;
    let error = server
        .client()
        .add_log("r_1", "hello", None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ClientError::Api { status: 503, .. }),
        "{error:?}"
    );
    assert_eq!(server.to("POST", path).len(), 1);
}

#[tokio::test]
async fn a_log_post_is_retried_on_429_which_was_not_processed() {
    let path = "/v1/actions/runs/r_1/logs";
    let server = ScriptServer::start(move |r, nth| {
        (r.path == path).then(|| match nth {
            0 => Reply::error(429, "rate_limited", "slow down").header("retry-after", "0"),
            _ => Reply::json(201, json!({ "ok": true, "runLog": log_json("r_1", 1) })),
        })
    })
    .await;
    let log = server
        .client()
        .add_log("r_1", "done", Some(FinalStatus::Success), Some("Deployed"))
        .await
        .unwrap();
    assert_eq!(log.message, "line 1");
    let sent = server.to("POST", path);
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[1].json(),
        json!({ "message": "done", "terminationStatus": "SUCCESS", "statusLabel": "Deployed" })
    );
}

#[tokio::test]
async fn a_run_patch_is_retried() {
    let server = ScriptServer::start(|r, nth| {
        (r.path == RUN && r.method == "PATCH").then(|| match nth {
            0 => Reply::text(504, "gateway timeout"),
            _ => Reply::json(
                200,
                json!({ "ok": true, "run": run_json("r_1", "SUCCESS") }),
            ),
        })
    })
    .await;
    let update = RunUpdate {
        status: Some(FinalStatus::Success),
        summary: Some("all good".into()),
        ..RunUpdate::default()
    };
    let run = server.client().patch_run("r_1", &update).await.unwrap();
    assert!(run.has_ended());
    let sent = server.to("PATCH", RUN);
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[1].json(),
        json!({ "status": "SUCCESS", "summary": "all good" })
    );
    assert_eq!(sent[1].param("version").as_deref(), Some("v2"));
}

#[tokio::test]
async fn connection_failures_are_retried_then_reported() {
    // A port nothing listens on: bind one, note it, close it.
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let client = PortClient::builder()
        .base_url(format!("http://{address}/v1"))
        .access_token("t")
        .max_retries(2)
        .base_delay(Duration::from_millis(10))
        .build()
        .unwrap();
    let started = Instant::now();
    // Even a non-idempotent call: a refused connection never reached the server.
    let error = client.add_log("r_1", "x", None, None).await.unwrap_err();
    assert!(matches!(error, ClientError::Transport(_)), "{error:?}");
    assert!(started.elapsed() >= Duration::from_millis(10));
}
