//! A real server on a loopback socket (SQLite in a temporary directory), driven with
//! reqwest as Port's clients drive Port.

use serde_json::{Value, json};

use port_server::testing::TestServer;

#[tokio::test]
async fn serves_over_a_real_socket() {
    let server = TestServer::start().await.unwrap();
    let http = reqwest::Client::new();
    let api = &server.api_url;

    let health: Value = http
        .get(format!("{}/healthz", server.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, json!({ "ok": true }));
    let ready = http
        .get(format!("{}/readyz", server.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    let token: Value = http
        .post(format!("{api}/auth/access_token"))
        .json(&json!({ "clientId": server.client_id, "clientSecret": server.client_secret }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["accessToken"].as_str().unwrap().to_owned();

    let created = http
        .post(format!("{api}/blueprints"))
        .bearer_auth(&token)
        .json(&crate::support::microservice_blueprint())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let actions = http
        .post(format!("{api}/blueprints/microservice/actions"))
        .bearer_auth(&token)
        .json(&crate::support::create_microservice_actions())
        .send()
        .await
        .unwrap();
    assert_eq!(actions.status(), 201);
    let executed = http
        .post(format!("{api}/actions/create_microservice/runs"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "socket-1")
        .json(&json!({ "properties": { "name": "n", "region": "r" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(executed.status(), 202);
    assert!(executed.headers().contains_key("x-request-id"));
    let run: Value = executed.json().await.unwrap();
    let run_id = run["run"]["id"].as_str().unwrap();
    let got: Value = http
        .get(format!("{api}/actions/runs/{run_id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["run"]["status"], "IN_PROGRESS");

    // A too large body is refused with the envelope over the wire as well.
    let huge = http
        .post(format!("{api}/blueprints"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(vec![b' '; 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    let body: Value = huge.json().await.unwrap();
    assert_eq!(body["error"], "bad_request");

    // The bootstrap file exists with owner-only permissions.
    let file = server.data_dir().join("credentials.json");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved["clientId"], json!(server.client_id));
    assert_eq!(saved["apiUrl"], json!(server.api_url));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    server.shutdown().await.unwrap();
}
