//! portd's router in process over a real SQLite database, with organizations and
//! tokens. No delivery worker runs, so whatever the tests make portd store, nothing is
//! ever sent anywhere.

use std::sync::Arc;

use axum::Router;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt as _, Full};
use port_core::access::Email;
use port_core::id::OrgId;
use port_core::ports::{ClientSecret, Credential, Store};
use port_server::bootstrap::{create_credential, create_organization, random_alphanumeric};
use port_server::{AppState, app};
use port_store::{ScratchSchema, StoreAdmin};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// An organization and a valid token of it.
#[derive(Debug, Clone)]
pub struct Org {
    pub org_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub token: String,
}

/// A person of an organization and their personal credential's token.
#[derive(Debug, Clone)]
pub struct Person {
    pub email: String,
    pub token: String,
    pub client_id: String,
    pub client_secret: String,
}

/// An answer: status, headers and body (`Null` for event streams, whose body never
/// ends; a string when not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

pub struct InProcess {
    pub router: Router,
    pub state: AppState,
    store: Arc<dyn StoreAdmin>,
    /// Which database: `sqlite` or `postgres`.
    pub backend: &'static str,
    _dir: Option<tempfile::TempDir>,
    schema: Option<ScratchSchema>,
}

impl InProcess {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("portd.db").display());
        Self::over(&url, "sqlite", Some(dir), None).await
    }

    /// Over PostgreSQL in a throw-away schema of the database `base_url` names.
    pub async fn postgres(base_url: &str) -> Self {
        let schema = ScratchSchema::create(base_url, "chaos_it").await.unwrap();
        Self::over(&schema.url(), "postgres", None, Some(schema)).await
    }

    async fn over(
        url: &str,
        backend: &'static str,
        dir: Option<tempfile::TempDir>,
        schema: Option<ScratchSchema>,
    ) -> Self {
        let store = port_store::open(url, &port_store::StoreOptions::default())
            .await
            .unwrap();
        let data: Arc<dyn Store> = store.clone();
        let state = AppState::builder(data).build();
        Self {
            router: app(state.clone()),
            state,
            store,
            backend,
            _dir: dir,
            schema,
        }
    }

    /// Closes the store and drops the PostgreSQL schema (dropping `self` does too,
    /// less tidily).
    pub async fn finish(mut self) {
        self.store.close().await;
        if let Some(schema) = self.schema.take() {
            schema.drop_now().await.unwrap();
        }
    }

    /// A new organization with one credential and a token.
    pub async fn org(&self, name: &str) -> Org {
        let store = self.state.store().as_ref();
        let org = create_organization(store, self.state.ids(), self.state.clock().as_ref(), name)
            .await
            .unwrap();
        let credential = create_credential(store, self.state.clock().as_ref(), &org.id, None, None)
            .await
            .unwrap();
        let token = self.state.authenticator().token_for(&credential).token;
        Org {
            org_id: org.id.to_string(),
            client_id: credential.client_id,
            client_secret: credential.client_secret.expose().to_owned(),
            token,
        }
    }

    /// A person of `org`: invited with `role` by the organization's credential, with a
    /// personal credential (as `POST /v1/auth/credentials` makes one) and its token.
    pub async fn person(&self, org: &Org, email: &str, role: &str) -> Person {
        let invited = self
            .send(
                Method::POST,
                "/v1/users/invite",
                Some(&org.token),
                Some(json!({ "invitee": { "email": email, "roles": [role] } })),
            )
            .await;
        assert_eq!(invited.status, 200, "inviting {email}: {:#}", invited.body);
        let credential = Credential {
            org_id: OrgId::parse(&org.org_id).unwrap(),
            client_id: random_alphanumeric(32),
            client_secret: ClientSecret::new(random_alphanumeric(64)),
            created_at: self.state.clock().now(),
            user: Some(Email::parse(email).unwrap()),
        };
        self.state
            .store()
            .add_credential(&credential)
            .await
            .unwrap();
        Person {
            email: email.to_owned(),
            token: self.state.authenticator().token_for(&credential).token,
            client_id: credential.client_id,
            client_secret: credential.client_secret.expose().to_owned(),
        }
    }

    /// Sends a request; `None` when `uri` is not a valid request target.
    pub async fn raw(
        &self,
        method: Method,
        uri: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Option<Answer> {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request.body(Full::new(Bytes::from(body))).ok()?;
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let streaming = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let body = if streaming {
            Value::Null
        } else {
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Some(Answer { status, body })
    }

    /// A JSON request with a bearer token.
    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        if let Some(token) = token {
            headers.push(("authorization".to_owned(), format!("Bearer {token}")));
        }
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.raw(method, uri, &headers, body)
            .await
            .expect("a valid request")
    }
}

/// Objects of one organization, for paths to name.
#[derive(Debug, Clone)]
pub struct Known {
    pub blueprint: String,
    pub action: String,
    pub legacy_action: String,
    pub entity: String,
    pub run: String,
    pub ended_run: String,
    /// An Ocean integration's identifier.
    pub integration: String,
    /// An organization secret's name.
    pub secret: String,
    /// A user (a Member) of the organization.
    pub user: String,
    /// A team of the organization, with that user in it.
    pub team: String,
    /// The client id of that user's personal credential.
    pub credential: String,
}

/// A blueprint, a v2 action and a legacy one (webhooks to a closed loopback port:
/// nothing is delivered in process anyway), an entity, a run with a log line, a run
/// that has ended, and an integration.
pub async fn seed(h: &InProcess, org: &Org) -> Known {
    let token = Some(org.token.as_str());
    let ok = |answer: Answer, status: u16| {
        assert_eq!(answer.status, status, "seeding: {:#}", answer.body);
        answer.body
    };
    ok(
        h.send(
            Method::POST,
            "/v1/blueprints",
            token,
            Some(json!({
                "identifier": "service",
                "title": "Service",
                "schema": { "properties": { "region": { "type": "string" } }, "required": [] }
            })),
        )
        .await,
        201,
    );
    ok(
        h.send(
            Method::POST,
            "/v1/actions",
            token,
            Some(json!({
                "identifier": "deploy",
                "title": "Deploy",
                "trigger": {
                    "type": "self-service",
                    "operation": "DAY-2",
                    "blueprintIdentifier": "service",
                    "userInputs": {
                        "properties": {
                            "note": { "type": "string" },
                            "token": { "type": "string", "encryption": "aes256-gcm" }
                        },
                        "required": []
                    }
                },
                "invocationMethod": { "type": "WEBHOOK", "url": "http://127.0.0.1:9/hook" }
            })),
        )
        .await,
        201,
    );
    ok(
        h.send(
            Method::POST,
            "/v1/blueprints/service/actions",
            token,
            Some(json!({
                "identifier": "legacy_create",
                "title": "Create",
                "trigger": "CREATE",
                "userInputs": { "properties": { "name": { "type": "string" } }, "required": [] },
                "invocationMethod": { "type": "WEBHOOK", "url": "http://127.0.0.1:9/legacy" }
            })),
        )
        .await,
        201,
    );
    ok(
        h.send(
            Method::POST,
            "/v1/blueprints/service/entities",
            token,
            Some(json!({ "identifier": "svc", "properties": { "region": "eu" } })),
        )
        .await,
        201,
    );
    let execute = |properties: Value| {
        h.send(
            Method::POST,
            "/v1/actions/deploy/runs",
            token,
            Some(json!({ "entity": "svc", "properties": properties })),
        )
    };
    let run = ok(execute(json!({ "note": "first" })).await, 202)["run"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        h.send(
            Method::POST,
            &format!("/v1/actions/runs/{run}/logs"),
            token,
            Some(json!({ "message": "a log line" })),
        )
        .await,
        201,
    );
    let ended_run = ok(execute(json!({ "note": "second" })).await, 202)["run"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        h.send(
            Method::PATCH,
            &format!("/v1/actions/runs/{ended_run}"),
            token,
            Some(json!({ "status": "SUCCESS" })),
        )
        .await,
        200,
    );
    ok(
        h.send(
            Method::POST,
            "/v1/integration",
            token,
            Some(json!({ "installationId": "my-integration", "config": {} })),
        )
        .await,
        201,
    );
    ok(
        h.send(
            Method::POST,
            "/v1/organization/secrets",
            token,
            Some(json!({ "secretName": "API_TOKEN", "secretValue": "a-value-of-the-secret" })),
        )
        .await,
        201,
    );
    let known_user = h.person(org, "known@example.io", "Member").await;
    ok(
        h.send(
            Method::POST,
            "/v1/teams",
            token,
            Some(json!({ "name": "Known Team", "users": ["known@example.io"] })),
        )
        .await,
        200,
    );
    Known {
        blueprint: "service".into(),
        action: "deploy".into(),
        legacy_action: "legacy_create".into(),
        entity: "svc".into(),
        run,
        ended_run,
        integration: "my-integration".into(),
        secret: "API_TOKEN".into(),
        user: "known@example.io".into(),
        team: "Known Team".into(),
        credential: known_user.client_id,
    }
}

/// `path` with each `{param}` replaced by `fill(param)`.
pub fn fill_path(path: &str, mut fill: impl FnMut(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
        out.push_str(&fill(&rest[open + 1..close]));
        rest = &rest[(close + 1).min(rest.len())..];
    }
    out.push_str(rest);
    out
}

/// The known object a path parameter names.
pub fn known_value(known: &Known, param: &str) -> String {
    match param {
        "blueprint_identifier" => known.blueprint.clone(),
        "action_identifier" => known.action.clone(),
        "entity_identifier" => known.entity.clone(),
        "run_id" => known.run.clone(),
        "identifier" => known.integration.clone(),
        "secret_name" => known.secret.clone(),
        "user_email" => known.user.clone(),
        // Percent-encoded: the team's name has a space.
        "name" => known.team.replace(' ', "%20"),
        "client_id" => known.credential.clone(),
        other => panic!("a path parameter the tests do not know: {other}"),
    }
}
