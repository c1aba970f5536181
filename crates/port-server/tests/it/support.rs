//! The harness: the router in process (tower's `oneshot`) over a store, with a clock the
//! tests move, an organization and a token.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use port_core::ports::{Clock, Store};
use port_core::service::DestinationPolicy;
use port_core::testing::{FixedClock, MemoryStore, SeqEntropy};
use port_server::bootstrap::{create_credential, create_organization};
use port_server::{AppState, app};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// A response: status, headers and the body parsed as JSON (`Value::Null` when empty,
/// a string when not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {:#}",
            self.body
        );
        self.body
    }

    /// Asserts an error envelope with this status and identifier.
    #[track_caller]
    pub fn expect_error(self, status: u16, error: &str) -> Value {
        let body = self.expect(status);
        assert_eq!(body["ok"], json!(false), "{body:#}");
        assert_eq!(body["error"], json!(error), "{body:#}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body:#}"
        );
        body
    }
}

pub struct Harness {
    pub app: Router,
    pub state: AppState,
    pub clock: Arc<FixedClock>,
    pub token: String,
    pub client_id: String,
    pub client_secret: String,
    pub org_id: String,
    /// Keeps a SQLite database alive for the harness's lifetime.
    _dir: Option<tempfile::TempDir>,
}

impl Harness {
    /// Over the in-memory store.
    pub async fn memory() -> Self {
        Self::over(Arc::new(MemoryStore::new()), None, None).await
    }

    /// Over the in-memory store, refusing private webhook destinations.
    pub async fn memory_public_destinations() -> Self {
        Self::over(
            Arc::new(MemoryStore::new()),
            None,
            Some(Arc::new(port_server::PublicDestinations)),
        )
        .await
    }

    /// Over a real SQLite database in a temporary directory.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("portd.db").display());
        let store = port_store::open(&url, &port_store::StoreOptions::default())
            .await
            .unwrap();
        let store: Arc<dyn Store> = store;
        Self::over(store, Some(dir), None).await
    }

    async fn over(
        store: Arc<dyn Store>,
        dir: Option<tempfile::TempDir>,
        destinations: Option<Arc<dyn DestinationPolicy>>,
    ) -> Self {
        let clock = Arc::new(FixedClock::at_default());
        let mut builder = AppState::builder(store)
            .clock(clock.clone())
            .entropy(Arc::new(SeqEntropy::new()));
        if let Some(destinations) = destinations {
            builder = builder.destinations(destinations);
        }
        let state = builder.build();
        let mut harness = Self {
            app: app(state.clone()),
            state,
            clock,
            token: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            org_id: String::new(),
            _dir: dir,
        };
        let (client_id, client_secret, org_id) = harness.new_organization("test").await;
        harness.token = harness.token_for(&client_id, &client_secret).await;
        harness.client_id = client_id;
        harness.client_secret = client_secret;
        harness.org_id = org_id;
        harness
    }

    /// Creates another organization; returns its client id, secret and org id.
    pub async fn new_organization(&self, name: &str) -> (String, String, String) {
        let store = self.state.store().as_ref();
        let clock: &dyn Clock = self.clock.as_ref();
        let org = create_organization(store, self.state.ids(), clock, name)
            .await
            .unwrap();
        let credential = create_credential(store, clock, &org.id, None, None)
            .await
            .unwrap();
        (
            credential.client_id,
            credential.client_secret.expose().to_owned(),
            org.id.to_string(),
        )
    }

    /// A token from `POST /v1/auth/access_token`.
    pub async fn token_for(&self, client_id: &str, client_secret: &str) -> String {
        let body = self
            .send(
                Method::POST,
                "/v1/auth/access_token",
                None,
                Some(json!({"clientId": client_id, "clientSecret": client_secret})),
            )
            .await
            .expect(200);
        body["accessToken"].as_str().unwrap().to_owned()
    }

    /// Sends a request with a raw body and extra headers.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Sends a JSON request with the given token.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let (headers, body): (&[(&str, &str)], Body) = match body {
            Some(v) => (
                &[("content-type", "application/json")],
                Body::from(v.to_string()),
            ),
            None => (&[], Body::empty()),
        };
        self.raw(method, path, token, headers, body).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, Some(&self.token.clone()), None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(&self.token.clone()), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PUT, path, Some(&self.token.clone()), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PATCH, path, Some(&self.token.clone()), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, Some(&self.token.clone()), None)
            .await
    }

    /// The seed's `microservice` blueprint.
    pub async fn create_microservice_blueprint(&self) {
        self.post("/v1/blueprints", microservice_blueprint())
            .await
            .expect(201);
    }

    /// The seed's blueprint and its two legacy actions.
    pub async fn seed_catalog(&self) {
        self.create_microservice_blueprint().await;
        self.post(
            "/v1/blueprints/microservice/actions",
            create_microservice_actions(),
        )
        .await
        .expect(201);
        self.post(
            "/v1/blueprints/microservice/actions",
            deploy_microservice_actions(),
        )
        .await
        .expect(201);
    }

    /// Executes `create_microservice` and returns the run's id.
    pub async fn create_run(&self) -> String {
        let body = self
            .post(
                "/v1/actions/create_microservice/runs",
                json!({"properties": {"name": "my-microservice", "region": "eu-west-1"}}),
            )
            .await
            .expect(202);
        body["run"]["id"].as_str().unwrap().to_owned()
    }
}

pub fn microservice_blueprint() -> Value {
    json!({
        "identifier": "microservice",
        "description": "This blueprint represents service in our software catalog",
        "title": "Service",
        "icon": "Microservice",
        "schema": {
            "properties": { "region": { "type": "string", "title": "Region" } },
            "required": []
        },
        "mirrorProperties": {},
        "calculationProperties": {},
        "relations": {}
    })
}

/// The seed's legacy action, as the array its route takes.
fn seed_actions(v1: &str) -> Value {
    Value::Array(vec![
        serde_json::from_str(v1).expect("the seed's action is JSON"),
    ])
}

pub fn create_microservice_actions() -> Value {
    seed_actions(port_core::testing::seed::CREATE_MICROSERVICE)
}

pub fn deploy_microservice_actions() -> Value {
    seed_actions(port_core::testing::seed::DEPLOY_MICROSERVICE)
}

/// A v2 action bound to the `microservice` blueprint.
pub fn v2_action(identifier: &str, operation: &str) -> Value {
    json!({
        "identifier": identifier,
        "title": "V2 action",
        "trigger": {
            "type": "self-service",
            "operation": operation,
            "blueprintIdentifier": "microservice",
            "userInputs": { "properties": { "name": { "type": "string" } }, "required": [] }
        },
        "invocationMethod": { "type": "WEBHOOK", "url": "https://example.com/hook" }
    })
}
