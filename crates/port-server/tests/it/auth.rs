//! Access tokens: issuing, and 401 for missing, forged and expired ones.

use axum::http::Method;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::support::Harness;

#[tokio::test]
async fn issues_bearer_tokens_for_three_hours() {
    let h = Harness::memory().await;
    let body = h
        .send(
            Method::POST,
            "/v1/auth/access_token",
            None,
            Some(json!({ "clientId": h.client_id, "clientSecret": h.client_secret })),
        )
        .await
        .expect(200);
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["ok", "accessToken", "expiresIn", "tokenType"]
    );
    assert_eq!(body["expiresIn"], 10800);
    assert_eq!(body["tokenType"], "Bearer");
    let token = body["accessToken"].as_str().unwrap();
    h.send(Method::GET, "/v1/blueprints", Some(token), None)
        .await
        .expect(200);
}

#[tokio::test]
async fn refuses_bad_credentials() {
    let h = Harness::memory().await;
    h.send(
        Method::POST,
        "/v1/auth/access_token",
        None,
        Some(json!({ "clientId": h.client_id, "clientSecret": "wrong" })),
    )
    .await
    .expect_error(401, "unauthorized");
    h.send(
        Method::POST,
        "/v1/auth/access_token",
        None,
        Some(json!({ "clientId": "nobody", "clientSecret": "x" })),
    )
    .await
    .expect_error(401, "unauthorized");
    let body = h
        .send(
            Method::POST,
            "/v1/auth/access_token",
            None,
            Some(json!({ "clientId": h.client_id })),
        )
        .await
        .expect_error(422, "invalid_request");
    assert!(
        body["message"].as_str().unwrap().contains("clientSecret"),
        "{body}"
    );
}

#[tokio::test]
async fn refuses_missing_forged_and_expired_tokens() {
    let h = Harness::memory().await;
    h.send(Method::GET, "/v1/actions/runs", None, None)
        .await
        .expect_error(401, "unauthorized");
    h.send(Method::GET, "/v1/actions/runs", Some("not-a-jwt"), None)
        .await
        .expect_error(401, "unauthorized");

    // Right claims, wrong key.
    let now = 1_700_000_000;
    let claims = json!({ "sub": h.client_id, "org": h.org_id, "iat": now, "exp": now + 3600 });
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    h.send(Method::GET, "/v1/blueprints", Some(&forged), None)
        .await
        .expect_error(401, "unauthorized");
    // Signed with the raw client secret instead of the derived key.
    let raw = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(h.client_secret.as_bytes()),
    )
    .unwrap();
    h.send(Method::GET, "/v1/blueprints", Some(&raw), None)
        .await
        .expect_error(401, "unauthorized");
    // `alg: none` is refused.
    let unsigned = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        base64_url(&serde_json::to_vec(&claims).unwrap())
    );
    h.send(Method::GET, "/v1/blueprints", Some(&unsigned), None)
        .await
        .expect_error(401, "unauthorized");

    // Expiry follows the clock port.
    h.get("/v1/blueprints").await.expect(200);
    h.clock.advance(3 * 60 * 60 * 1000 - 1000);
    h.get("/v1/blueprints").await.expect(200);
    h.clock.advance(1000);
    h.get("/v1/blueprints")
        .await
        .expect_error(401, "unauthorized");
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn unauthenticated_routes_stay_open() {
    let h = Harness::memory().await;
    h.send(Method::GET, "/healthz", None, None)
        .await
        .expect(200);
    h.send(Method::GET, "/readyz", None, None).await.expect(200);
    h.send(Method::GET, "/openapi.json", None, None)
        .await
        .expect(200);
    h.send(Method::GET, "/metrics", None, None)
        .await
        .expect(200);
}

/// Ten wrong secrets for one client id (from one address), then 429 with
/// `Retry-After`, even for the right secret, which is not checked; other client ids
/// are not held up.
#[tokio::test]
async fn failed_logins_are_throttled_before_the_secret_is_checked() {
    let h = Harness::memory().await;
    let (other_id, other_secret, _) = h.new_organization("other").await;
    let login = |client_id: String, secret: String| {
        h.send(
            Method::POST,
            "/v1/auth/access_token",
            None,
            Some(json!({ "clientId": client_id, "clientSecret": secret })),
        )
    };
    for _ in 0..10 {
        login(h.client_id.clone(), "wrong".into())
            .await
            .expect_error(401, "unauthorized");
    }
    let throttled = login(h.client_id.clone(), "wrong".into()).await;
    assert_eq!(throttled.headers["retry-after"], "6");
    let body = throttled.expect_error(429, "too_many_requests");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("try again in 6 s"),
        "{body}"
    );
    let right = login(h.client_id.clone(), h.client_secret.clone()).await;
    assert!(right.headers.contains_key("retry-after"));
    right.expect_error(429, "too_many_requests");
    login(other_id, other_secret).await.expect(200);
}

#[tokio::test]
async fn short_bootstrap_secrets_are_refused_at_start() {
    let refused = port_server::testing::TestServer::start_configured(
        port_server::Extensions::default(),
        |config| config.bootstrap_client_secret = Some("x".repeat(31)),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("PORTD_BOOTSTRAP_CLIENT_SECRET has 31 characters")
            && refused.contains("at least 32"),
        "{refused}"
    );
    let started = port_server::testing::TestServer::start_configured(
        port_server::Extensions::default(),
        |config| config.bootstrap_client_secret = Some("x".repeat(32)),
    )
    .await
    .unwrap();
    started.shutdown().await.unwrap();
}
