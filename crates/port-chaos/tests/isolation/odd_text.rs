//! NUL and other odd text: PostgreSQL cannot store NUL in text, SQLite can. An
//! organization sending NUL in log lines, JSON keys, query values, path segments, the
//! token route's client id and a token's subject gets the same 4xx on both stores
//! (422 naming the field, 404 for a path, 401 for a token), never a 5xx, while the
//! other organization keeps working.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result};
use port_chaos::api::Api;
use port_chaos::isolation::{Tenants, TenantsOptions};
use port_store::ScratchSchema;
use reqwest::Method;
use serde_json::{Value, json};

/// How many times the attacker sends its whole set of odd requests.
const ROUNDS: usize = 200;

/// One answer the attacker got: what it sent, the status, the identifier and message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Refusal {
    what: &'static str,
    status: u16,
    error: String,
    message: String,
}

/// The attacker's run to log to (its own action, agent mode: nothing is sent anywhere).
async fn attackers_run(attacker: &Api) -> Result<String> {
    let action = json!({
        "identifier": "odd",
        "title": "Odd",
        "trigger": { "type": "self-service", "operation": "CREATE", "userInputs": { "properties": {} } },
        "invocationMethod": { "type": "WEBHOOK", "url": "http://127.0.0.1:9/odd", "agent": true }
    });
    attacker
        .post("/v1/actions", &action)
        .await?
        .expect(201, "creating the attacker's action")?;
    let run = attacker
        .post("/v1/actions/odd/runs", &json!({ "properties": {} }))
        .await?
        .expect(202, "executing the attacker's action")?;
    run["run"]["id"]
        .as_str()
        .map(str::to_owned)
        .context("the execute answer has no run id")
}

/// A token whose subject holds NUL (its signature cannot be checked before the
/// subject is looked up).
fn token_with_nul_subject() -> String {
    let claims =
        json!({ "sub": "victim-client\u{0}", "org": "org_x", "iat": 0, "exp": 4_102_444_800_i64 });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"nobody's key"),
    )
    .unwrap()
}

/// Every odd request once; the answers, in order.
async fn odd_requests(attacker: &Api, run: &str) -> Result<Vec<Refusal>> {
    let anonymous = Api::anonymous(&attacker.base_url)?;
    let mut forged = attacker.clone();
    forged.token = token_with_nul_subject();
    let log_path = format!("/v1/actions/runs/{run}/logs");
    let requests: Vec<(&'static str, &Api, Method, String, Option<Value>)> = vec![
        (
            "a log line",
            attacker,
            Method::POST,
            log_path.clone(),
            Some(json!({ "message": "before\u{0}after" })),
        ),
        (
            "a status label",
            attacker,
            Method::PATCH,
            format!("/v1/actions/runs/{run}"),
            Some(json!({ "statusLabel": "\u{0}" })),
        ),
        (
            "a deep key",
            attacker,
            Method::POST,
            "/v1/blueprints".to_owned(),
            Some(json!({
                "identifier": "odd", "title": "Odd",
                "schema": { "properties": { "k\u{0}": { "type": "string" } } }
            })),
        ),
        (
            "a query value",
            attacker,
            Method::GET,
            "/v1/actions/runs?user_email=a%00b".to_owned(),
            None,
        ),
        (
            "a path segment",
            attacker,
            Method::GET,
            "/v1/actions/runs/r_%00".to_owned(),
            None,
        ),
        (
            "the token route's client id",
            &anonymous,
            Method::POST,
            "/v1/auth/access_token".to_owned(),
            Some(json!({ "clientId": "victim-client\u{0}", "clientSecret": "guess" })),
        ),
        (
            "a token's subject",
            &forged,
            Method::GET,
            "/v1/actions/runs".to_owned(),
            None,
        ),
    ];
    let mut answers = Vec::new();
    for (what, api, method, path, body) in requests {
        let answer = api
            .send(method, &path, body.as_ref(), &[])
            .await
            .with_context(|| format!("{what}: {path}"))?;
        answers.push(Refusal {
            what,
            status: answer.status,
            error: answer.body["error"].as_str().unwrap_or_default().to_owned(),
            message: answer.body["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        });
    }
    Ok(answers)
}

/// Runs the attack against a portd on `options`' database; the distinct answers.
async fn attack(options: TenantsOptions, name: &str) -> BTreeSet<Refusal> {
    let mut tenants = Tenants::start(options).await.unwrap();
    let report = tenants
        .under_attack(name, |attacker| async move {
            let run = attackers_run(&attacker).await?;
            let mut seen = BTreeSet::new();
            for _ in 0..ROUNDS {
                seen.extend(odd_requests(&attacker, &run).await?);
            }
            Ok(seen)
        })
        .await
        .unwrap();
    report.assert_held().unwrap();
    report.outcome
}

/// What both stores must answer, by request.
fn expected() -> BTreeSet<Refusal> {
    let refusal = |what, status, error: &str, message: &str| Refusal {
        what,
        status,
        error: error.to_owned(),
        message: message.to_owned(),
    };
    let nul = |field: &str| format!("{field}: must not contain NUL (U+0000)");
    [
        refusal("a log line", 422, "invalid_request", &nul("message")),
        refusal("a status label", 422, "invalid_request", &nul("statusLabel")),
        refusal("a deep key", 422, "invalid_request", &nul("schema.properties (a key)")),
        refusal("a query value", 422, "invalid_request", &nul("querystring.user_email")),
        refusal(
            "a path segment",
            404,
            "not_found",
            "resource /v1/actions/runs/r_%00 was not found",
        ),
        refusal("the token route's client id", 422, "invalid_request", &nul("clientId")),
        refusal(
            "a token's subject",
            401,
            "unauthorized",
            "missing, invalid or expired access token: send `Authorization: Bearer <token>` from POST /v1/auth/access_token",
        ),
    ]
    .into_iter()
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_text_is_refused_on_sqlite() {
    let on_sqlite = attack(TenantsOptions::default(), "NUL in text (SQLite)").await;
    assert_eq!(on_sqlite, expected());
}

/// The same answers as on SQLite (see [`expected`]), though PostgreSQL could not
/// store what SQLite can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_text_is_refused_on_postgres_as_on_sqlite() {
    let Some(url) = port_chaos::pg::test_database_url("odd text on PostgreSQL").unwrap() else {
        return;
    };
    let schema = ScratchSchema::create(&url, "iso_odd").await.unwrap();
    let on_postgres = attack(
        TenantsOptions::default().database_url(schema.url()),
        "NUL in text (PostgreSQL)",
    )
    .await;
    schema.drop_now().await.unwrap();
    assert_eq!(on_postgres, expected());
}
