//! The web UI's routes (the browser tests are the `ui` test binary): the page and its
//! assets are served without a token, typed, cacheable by ETag, and under a strict
//! Content-Security-Policy; the API keeps its error envelope around them.

use axum::body::Body;
use axum::http::Method;
use port_server::ui::{ASSETS, CONTENT_SECURITY_POLICY_VALUE};
use serde_json::Value;

use crate::support::{Harness, Reply};

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[track_caller]
fn assert_protected(reply: &Reply, what: &str) {
    let policy = header(reply, "content-security-policy");
    assert_eq!(policy, CONTENT_SECURITY_POLICY_VALUE, "{what}");
    assert!(policy.starts_with("default-src 'self'"), "{what}: {policy}");
    assert!(!policy.contains("unsafe-inline"), "{what}: {policy}");
    assert_eq!(header(reply, "x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header(reply, "referrer-policy"), "no-referrer", "{what}");
    assert_eq!(header(reply, "cache-control"), "no-cache", "{what}");
}

#[tokio::test]
async fn pages_serve_the_app_shell_without_a_token() {
    let h = Harness::memory().await;
    for path in [
        "/",
        "/runs/r_0Vc8uz6OklnJV2L0",
        "/actions",
        "/actions/deploy",
        "/automations",
        "/automations/notify_on_failure",
    ] {
        // No token, and a token that is not valid: the page signs in by itself.
        for token in [None, Some("not-a-token")] {
            let reply = h.send(Method::GET, path, token, None).await;
            assert_eq!(reply.status.as_u16(), 200, "{path}: {}", reply.body);
            assert_eq!(
                header(&reply, "content-type"),
                "text/html; charset=utf-8",
                "{path}"
            );
            assert_protected(&reply, path);
            let Value::String(html) = &reply.body else {
                panic!("{path}: not HTML: {}", reply.body);
            };
            assert!(html.starts_with("<!doctype html>"), "{path}");
            assert!(
                html.contains(r#"<script type="module" src="/assets/app.js"></script>"#),
                "{path}"
            );
            assert!(!html.contains("<script>"), "{path}: an inline script");
            assert!(
                html.contains(r#"<main id="main""#),
                "{path}: no main landmark"
            );
        }
    }
    let reply = h.send(Method::HEAD, "/", None, None).await;
    assert_eq!(reply.status.as_u16(), 200);
    assert_protected(&reply, "HEAD /");
}

#[tokio::test]
async fn assets_are_served_with_their_content_types_and_etags() {
    let h = Harness::memory().await;
    assert!(ASSETS.len() >= 8);
    for asset in ASSETS {
        let path = format!("/assets/{}", asset.path);
        let reply = h.send(Method::GET, &path, None, None).await;
        assert_eq!(reply.status.as_u16(), 200, "{path}");
        assert_eq!(header(&reply, "content-type"), asset.content_type, "{path}");
        assert_protected(&reply, &path);
        let etag = header(&reply, "etag").to_owned();
        assert!(etag.starts_with('"') && etag.len() > 10, "{path}: {etag}");

        let again = h
            .raw(
                Method::GET,
                &path,
                None,
                &[("if-none-match", &etag)],
                Body::empty(),
            )
            .await;
        assert_eq!(again.status.as_u16(), 304, "{path}");
        assert_eq!(again.body, Value::Null, "{path}");
        assert_eq!(header(&again, "etag"), etag, "{path}");
    }
    let types: Vec<(&str, &str)> = ["app.js", "views/run.js", "app.css", "favicon.svg"]
        .into_iter()
        .map(|name| {
            let asset = ASSETS.iter().find(|a| a.path == name).unwrap();
            (name, asset.content_type)
        })
        .collect();
    assert_eq!(
        types,
        [
            ("app.js", "text/javascript; charset=utf-8"),
            ("views/run.js", "text/javascript; charset=utf-8"),
            ("app.css", "text/css; charset=utf-8"),
            ("favicon.svg", "image/svg+xml"),
        ]
    );
}

#[tokio::test]
async fn unknown_ui_paths_keep_the_api_error_envelope() {
    let h = Harness::memory().await;
    for path in [
        "/assets/nothing.js",
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/src/lib.rs",
        "/runs",
        "/runs/x/y",
        "/index.html",
    ] {
        h.send(Method::GET, path, None, None)
            .await
            .expect_error(404, "not_found");
    }
    h.send(Method::POST, "/", None, None)
        .await
        .expect_error(405, "method_not_allowed");
    // The page's routes are not part of the API's document.
    let doc = h
        .send(Method::GET, "/openapi.json", None, None)
        .await
        .expect(200);
    let paths = doc["paths"].as_object().unwrap();
    assert!(
        paths
            .keys()
            .all(|p| p.starts_with("/v1/") || !p.contains("assets") && p != "/"),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
}
