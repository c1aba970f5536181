//! Tokens: cached, refreshed once on 401, never looped.

use std::time::Duration;

use port_client::ClientError;
use serde_json::json;

use crate::script::{Reply, ScriptServer, run_json};

const RUN: &str = "/v1/actions/runs/r_1";

#[tokio::test]
async fn one_token_serves_many_calls() {
    let server = ScriptServer::start(|r, _| {
        (r.path == RUN).then(|| {
            Reply::json(
                200,
                json!({ "ok": true, "run": run_json("r_1", "IN_PROGRESS") }),
            )
        })
    })
    .await;
    let client = server.client();
    for _ in 0..3 {
        client.get_run("r_1").await.unwrap();
    }
    // Clones share the cache.
    client.clone().get_run("r_1").await.unwrap();
    assert_eq!(server.token_requests(), 1);
    let token_request = &server.to("POST", "/v1/auth/access_token")[0];
    assert_eq!(
        token_request.json(),
        json!({ "clientId": "client-id", "clientSecret": "client-secret" })
    );
    for request in server.to("GET", RUN) {
        assert_eq!(request.bearer().as_deref(), Some("tok-0"));
    }
}

#[tokio::test]
async fn concurrent_first_calls_fetch_one_token() {
    let server = ScriptServer::start(|r, _| {
        (r.path == RUN).then(|| {
            Reply::json(
                200,
                json!({ "ok": true, "run": run_json("r_1", "IN_PROGRESS") }),
            )
        })
    })
    .await;
    let client = server.client();
    let calls = (0..5).map(|_| client.get_run("r_1"));
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    assert_eq!(server.token_requests(), 1);
}

#[tokio::test]
async fn a_401_refreshes_the_token_and_resends_once() {
    let server = ScriptServer::start(|r, nth| {
        (r.path == RUN).then(|| match nth {
            0 => Reply::error(401, "unauthorized", "expired token"),
            _ => Reply::json(
                200,
                json!({ "ok": true, "run": run_json("r_1", "IN_PROGRESS") }),
            ),
        })
    })
    .await;
    let run = server.client().get_run("r_1").await.unwrap();
    assert_eq!(run.id, "r_1");
    assert_eq!(server.token_requests(), 2);
    let sent: Vec<_> = server.to("GET", RUN).iter().map(|r| r.bearer()).collect();
    assert_eq!(sent, [Some("tok-0".to_owned()), Some("tok-1".to_owned())]);
}

#[tokio::test]
async fn a_second_401_is_returned_without_looping() {
    let server = ScriptServer::start(|r, _| {
        (r.path == RUN).then(|| Reply::error(401, "unauthorized", "this token is refused"))
    })
    .await;
    let error = server.client().get_run("r_1").await.unwrap_err();
    assert!(
        matches!(&error, ClientError::Unauthorized { message, .. } if message == "this token is refused"),
        "{error:?}"
    );
    assert_eq!(error.identifier(), Some("unauthorized"));
    assert_eq!(server.token_requests(), 2);
    assert_eq!(server.to("GET", RUN).len(), 2);
}

#[tokio::test]
async fn refused_credentials_are_unauthorized() {
    let server = ScriptServer::start(|r, _| {
        (r.path == "/v1/auth/access_token")
            .then(|| Reply::error(401, "unauthorized", "bad client id or secret"))
    })
    .await;
    let error = server.client().get_run("r_1").await.unwrap_err();
    assert!(
        matches!(error, ClientError::Unauthorized { .. }),
        "{error:?}"
    );
    assert_eq!(server.token_requests(), 1);
    assert!(server.to("GET", RUN).is_empty());
    // The secret is not in what a caller would print.
    assert!(!format!("{error:?} {error}").contains("client-secret"));
}

#[tokio::test]
async fn tokens_are_renewed_before_they_expire() {
    let server = ScriptServer::start(|r, nth| match r.path.as_str() {
        "/v1/auth/access_token" => Some(Reply::json(
            200,
            json!({ "ok": true, "accessToken": format!("short-{nth}"), "expiresIn": 1 }),
        )),
        RUN => Some(Reply::json(
            200,
            json!({ "ok": true, "run": run_json("r_1", "IN_PROGRESS") }),
        )),
        _ => None,
    })
    .await;
    let client = server.client();
    client.get_run("r_1").await.unwrap();
    client.get_run("r_1").await.unwrap();
    assert_eq!(server.token_requests(), 1);
    // A 1 s token is used for half its life at most.
    tokio::time::sleep(Duration::from_millis(600)).await;
    client.get_run("r_1").await.unwrap();
    assert_eq!(server.token_requests(), 2);
    assert_eq!(
        server.to("GET", RUN)[2].bearer().as_deref(),
        Some("short-1")
    );
}

#[tokio::test]
async fn a_fixed_token_is_sent_as_is_and_not_refreshed() {
    let server = ScriptServer::start(|r, _| {
        (r.path == RUN).then(|| Reply::error(401, "unauthorized", "no"))
    })
    .await;
    let client = port_client::PortClient::builder()
        .base_url(&server.api_url)
        .access_token("fixed")
        .build()
        .unwrap();
    assert!(matches!(
        client.get_run("r_1").await,
        Err(ClientError::Unauthorized { .. })
    ));
    assert_eq!(server.token_requests(), 0);
    let sent = server.to("GET", RUN);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].bearer().as_deref(), Some("fixed"));
}
