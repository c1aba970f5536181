//! Routes that now only extract, call one service and render still answer as before:
//! the order of refusals of the legacy execute route, the approvers' shape, and one
//! table of every route however many files it is written in.

use std::collections::HashSet;

use port_server::testing::TestServer;
use port_server::{ENDPOINTS, HttpMethod};
use serde_json::{Value, json};

struct Api {
    server: TestServer,
    client: reqwest::Client,
    token: String,
}

impl Api {
    async fn start() -> Self {
        let server = TestServer::start().await.expect("server starts");
        let token = server.token().await;
        Self {
            server,
            client: reqwest::Client::new(),
            token,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.server.base_url))
            .bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("answered");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    async fn post(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body), headers)
            .await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None, &[]).await
    }
}

fn error_of(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["error"].as_str().unwrap_or_default())
}

#[tokio::test]
async fn the_legacy_execute_route_refuses_a_missing_action_before_a_bad_idempotency_key() {
    let api = Api::start().await;
    let too_long = "k".repeat(300);
    let bad_key = [("idempotency-key", too_long.as_str())];
    let missing = api
        .post(
            "/v1/blueprints/service/actions/deploy/runs",
            json!({}),
            &bad_key,
        )
        .await;
    assert_eq!(error_of(&missing), (404, "not_found"));
    assert_eq!(
        missing.1["message"], "blueprint service was not found",
        "{missing:?}"
    );

    let (status, _) = api
        .post(
            "/v1/blueprints",
            json!({ "identifier": "service", "title": "Service", "schema": { "properties": {} } }),
            &[],
        )
        .await;
    assert_eq!(status, 201);
    let (status, created) = api
        .post(
            "/v1/blueprints/service/actions",
            json!({
                "identifier": "deploy",
                "title": "Deploy",
                "trigger": "CREATE",
                "invocationMethod": { "type": "WEBHOOK", "url": "https://example.com/hook" },
                "userInputs": { "properties": {}, "required": [] },
            }),
            &[],
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let no_action = api
        .post(
            "/v1/blueprints/service/actions/other/runs",
            json!({}),
            &bad_key,
        )
        .await;
    assert_eq!(error_of(&no_action), (404, "not_found"));

    let refused = api
        .post(
            "/v1/blueprints/service/actions/deploy/runs",
            json!({}),
            &bad_key,
        )
        .await;
    assert_eq!(error_of(&refused), (422, "invalid_request"));
    assert_eq!(
        refused.1["message"],
        "headers.idempotency-key: must be 1 to 255 visible ASCII characters"
    );
    let keyed = [("idempotency-key", "once")];
    let (status, first) = api
        .post(
            "/v1/blueprints/service/actions/deploy/runs",
            json!({}),
            &keyed,
        )
        .await;
    assert_eq!(status, 202, "{first}");
    let (status, again) = api.post("/v1/actions/deploy/runs", json!({}), &keyed).await;
    assert_eq!(status, 202);
    assert_eq!(again["run"]["id"], first["run"]["id"]);
    server_stops(api).await;
}

#[tokio::test]
async fn approvers_keep_their_shape() {
    let api = Api::start().await;
    let (status, answer) = api
        .post(
            "/v1/actions",
            json!({
                "identifier": "guarded",
                "title": "Guarded",
                "trigger": {
                    "type": "self-service",
                    "operation": "CREATE",
                    "userInputs": { "properties": {}, "required": [] },
                },
                "requiredApproval": { "type": "ALL" },
                "approvers": ["carol", "dave"],
                "invocationMethod": { "type": "WEBHOOK", "url": "https://example.com/hook" },
            }),
            &[],
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let (status, run) = api.post("/v1/actions/guarded/runs", json!({}), &[]).await;
    assert_eq!(status, 202, "{run}");
    let id = run["run"]["id"].as_str().expect("run id");

    let (status, pending) = api
        .get(&format!(
            "/v1/actions/runs/{id}/approvers?include_pending_approvers=true"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        pending,
        json!({
            "ok": true,
            "approvers": [
                { "userId": "carol", "state": "PENDING", "description": null },
                { "userId": "dave", "state": "PENDING", "description": null },
            ],
        })
    );
    let (status, none) = api.get(&format!("/v1/actions/runs/{id}/approvers")).await;
    assert_eq!(status, 200);
    assert_eq!(none, json!({ "ok": true, "approvers": [] }));
    let redeliver = api
        .post(
            &format!("/v1/actions/runs/{id}/deliveries/redeliver"),
            json!({}),
            &[],
        )
        .await;
    assert_eq!(error_of(&redeliver), (422, "invalid_request"));
    server_stops(api).await;
}

#[test]
fn the_table_lists_every_route_once_in_its_order() {
    assert_eq!(ENDPOINTS.len(), 81);
    let mut seen = HashSet::new();
    for endpoint in ENDPOINTS {
        assert!(
            seen.insert((endpoint.method, endpoint.path)),
            "{endpoint:?} is listed twice"
        );
    }
    let first = ENDPOINTS.first().expect("routes");
    assert_eq!((first.method, first.path), (HttpMethod::Get, "/healthz"));
    let last = ENDPOINTS.last().expect("routes");
    assert_eq!(
        (last.method, last.path),
        (HttpMethod::Patch, "/v1/integration/{identifier}/config")
    );
}

async fn server_stops(api: Api) {
    api.server.shutdown().await.expect("stops");
}
