//! Escalation attempts by the people of an organization, over every route of
//! `routes::ENDPOINTS` where it applies: a Member changing permissions, their own role
//! or teams, inviting an Admin, acting as someone else (`run_as`), reading or touching
//! runs hidden from them, approving their own run, and tokens re-signed to say more than
//! their credential does. Each refusal is checked to have changed nothing.

use http::Method;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use port_server::{ENDPOINTS, HttpMethod};
use serde_json::{Value, json};

use crate::common::{Answer, InProcess, Known, Org, Person, fill_path, known_value, seed};

fn method_of(method: HttpMethod) -> Method {
    Method::from_bytes(method.as_str().as_bytes()).unwrap()
}

fn body_for(schema: Option<&str>, known: &Known) -> Option<Value> {
    schema.map(|schema| crate::hostile::template(schema, known))
}

#[track_caller]
fn refused(answer: &Answer, what: &str) {
    assert!(
        matches!(answer.status, 403 | 404),
        "{what}: expected a refusal, got {} {:#}",
        answer.status,
        answer.body
    );
}

/// An organization seeded with objects, its credential, and an Admin and a Member.
struct People {
    h: InProcess,
    org: Org,
    known: Known,
    admin: Person,
    member: Person,
}

impl People {
    async fn start() -> Self {
        let h = InProcess::sqlite().await;
        let org = h.org("a").await;
        let known = seed(&h, &org).await;
        let admin = h.person(&org, "admin@example.io", "Admin").await;
        let member = h.person(&org, "member@example.io", "Member").await;
        Self {
            h,
            org,
            known,
            admin,
            member,
        }
    }

    async fn as_machine(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.h.send(method, path, Some(&self.org.token), body).await
    }

    async fn as_member(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.h
            .send(method, path, Some(&self.member.token), body)
            .await
    }

    async fn state_of(&self, path: &str) -> Value {
        let answer = self.as_machine(Method::GET, path, None).await;
        assert_eq!(answer.status, 200, "{path}: {:#}", answer.body);
        answer.body
    }
}

#[tokio::test]
async fn a_member_changes_nobodys_permissions_roles_or_teams() {
    let p = People::start().await;
    let permissions = "/v1/actions/deploy/permissions";
    let before = (
        p.state_of(permissions).await,
        p.state_of("/v1/users").await,
        p.state_of("/v1/teams").await,
        p.state_of("/v1/actions/deploy").await,
    );
    let attempts: Vec<(&str, Method, String, Option<Value>)> = vec![
        (
            "granting themselves execute and approve",
            Method::PATCH,
            permissions.into(),
            Some(json!({
                "execute": { "users": [p.member.email], "roles": ["Member"] },
                "approve": { "users": [p.member.email] },
            })),
        ),
        (
            "a policy that admits everyone",
            Method::PATCH,
            permissions.into(),
            Some(json!({ "execute": { "policy": {
                "queries": { "all": { "combinator": "and", "rules": [] } },
                "conditions": ["true"],
            } } })),
        ),
        (
            "promoting themselves",
            Method::PATCH,
            format!("/v1/users/{}", p.member.email),
            Some(json!({ "roles": ["Admin"] })),
        ),
        (
            "joining a team",
            Method::PATCH,
            format!("/v1/users/{}", p.member.email),
            Some(json!({ "teams": [p.known.team] })),
        ),
        (
            "adding themselves to a team",
            Method::PATCH,
            "/v1/teams/Known%20Team".into(),
            Some(json!({ "users": [p.known.user, p.member.email] })),
        ),
        (
            "replacing a team",
            Method::PUT,
            "/v1/teams/Known%20Team".into(),
            Some(json!({ "name": "Known Team", "users": [p.member.email] })),
        ),
        (
            "inviting an Admin",
            Method::POST,
            "/v1/users/invite".into(),
            Some(json!({ "invitee": { "email": "accomplice@example.io", "roles": ["Admin"] } })),
        ),
        (
            "inviting a Member",
            Method::POST,
            "/v1/users/invite".into(),
            Some(json!({ "invitee": { "email": "accomplice@example.io" } })),
        ),
        (
            "demoting the Admin",
            Method::PATCH,
            format!("/v1/users/{}", p.admin.email),
            Some(json!({ "roles": ["Member"] })),
        ),
        (
            "deleting the Admin",
            Method::DELETE,
            format!("/v1/users/{}", p.admin.email),
            None,
        ),
        (
            "creating a team",
            Method::POST,
            "/v1/teams".into(),
            Some(json!({ "name": "Mine", "users": [p.member.email] })),
        ),
        (
            "rewriting the action",
            Method::PUT,
            "/v1/actions/deploy".into(),
            Some(crate::hostile::template("Action", &p.known)),
        ),
        (
            "reading the audit trail",
            Method::GET,
            "/v1/audit-log".into(),
            None,
        ),
    ];
    for (what, method, path, body) in attempts {
        let answer = p.as_member(method, &path, body).await;
        assert_eq!(
            (answer.status, answer.body["error"].as_str()),
            (403, Some("missing_permissions")),
            "{what}: {:#}",
            answer.body
        );
    }
    let after = (
        p.state_of(permissions).await,
        p.state_of("/v1/users").await,
        p.state_of("/v1/teams").await,
        p.state_of("/v1/actions/deploy").await,
    );
    assert_eq!(before, after, "a refused attempt changed something");
    let runs = p
        .as_member(
            Method::POST,
            "/v1/actions/deploy/runs",
            Some(json!({ "entity": "svc", "properties": {} })),
        )
        .await;
    assert_eq!(runs.status, 403, "still no execute grant: {:#}", runs.body);
    p.h.finish().await;
}

#[tokio::test]
async fn run_as_from_a_personal_token_is_refused_and_runs_nothing() {
    let p = People::start().await;
    let runs_before = p.state_of("/v1/actions/runs").await["runs"]
        .as_array()
        .unwrap()
        .len();
    for (who, token) in [("an Admin", &p.admin.token), ("a Member", &p.member.token)] {
        for target in [&p.admin.email, &p.member.email, &p.known.user] {
            for path in [
                format!("/v1/actions/deploy/runs?run_as={target}"),
                format!("/v1/blueprints/service/actions/legacy_create/runs?run_as={target}"),
            ] {
                let answer =
                    p.h.send(
                        Method::POST,
                        &path,
                        Some(token),
                        Some(json!({ "entity": "svc", "properties": {} })),
                    )
                    .await;
                assert_eq!(
                    (answer.status, answer.body["error"].as_str()),
                    (403, Some("missing_permissions")),
                    "{who} running as {target} through {path}: {:#}",
                    answer.body
                );
            }
        }
    }
    let runs_after = p.state_of("/v1/actions/runs").await["runs"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(runs_before, runs_after);
    p.h.finish().await;
}

/// A hidden run answers exactly as a run that does not exist, on every route that
/// names a run; the run lists leave it out.
#[tokio::test]
async fn runs_hidden_from_a_member_are_not_found_on_every_run_route() {
    let p = People::start().await;
    let hidden = p.known.run.clone();
    let before = p
        .state_of(&format!("/v1/actions/runs/{hidden}?version=v2"))
        .await;
    let missing = "r_AAAAAAAAAAAAAAAA";
    let mut checked = 0;
    for endpoint in ENDPOINTS
        .iter()
        .filter(|e| e.path.contains("{run_id}") && e.operation_id != "streamRunLogs")
    {
        let body = body_for(endpoint.body, &p.known);
        let on_hidden = p
            .as_member(
                method_of(endpoint.method),
                &fill_path(endpoint.path, |_| hidden.clone()),
                body.clone(),
            )
            .await;
        let on_missing = p
            .as_member(
                method_of(endpoint.method),
                &fill_path(endpoint.path, |_| missing.to_owned()),
                body,
            )
            .await;
        refused(&on_hidden, &format!("{endpoint:?} on a hidden run"));
        assert_eq!(
            (on_hidden.status, on_hidden.body["error"].clone()),
            (on_missing.status, on_missing.body["error"].clone()),
            "{endpoint:?}: a hidden run answers unlike a missing one: {:#} vs {:#}",
            on_hidden.body,
            on_missing.body
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} run routes");
    // The stream is refused before it starts.
    let stream = p
        .as_member(
            Method::GET,
            &format!("/v1/actions/runs/{hidden}/logs/stream"),
            None,
        )
        .await;
    assert_eq!(stream.status, 404);
    for query in ["", "?active=true", "?action=deploy", "?entity=svc"] {
        let listed = p
            .as_member(Method::GET, &format!("/v1/actions/runs{query}"), None)
            .await;
        assert_eq!(listed.status, 200);
        assert_eq!(listed.body["runs"], json!([]), "{query}: {:#}", listed.body);
    }
    let audit = p
        .as_member(Method::GET, &format!("/v1/audit-log?run_id={hidden}"), None)
        .await;
    assert_eq!(audit.status, 404);
    let after = p
        .state_of(&format!("/v1/actions/runs/{hidden}?version=v2"))
        .await;
    assert_eq!(
        before["run"]["status"], after["run"]["status"],
        "the hidden run was changed"
    );
    assert_eq!(before["run"]["statusLabel"], after["run"]["statusLabel"]);
    crate::visible(&format!(
        "escalation: {checked} run routes answer a hidden run as a missing one"
    ));
    p.h.finish().await;
}

#[tokio::test]
async fn a_requester_does_not_approve_their_own_run() {
    let p = People::start().await;
    let guarded = json!({
        "identifier": "guarded",
        "title": "Guarded",
        "trigger": {
            "type": "self-service",
            "operation": "CREATE",
            "userInputs": { "properties": {}, "required": [] },
        },
        "requiredApproval": true,
        "invocationMethod": { "type": "WEBHOOK", "url": "http://127.0.0.1:9/hook" },
    });
    assert_eq!(
        p.as_machine(Method::POST, "/v1/actions", Some(guarded))
            .await
            .status,
        201
    );
    // Members execute and approve; the requester is one of them, but not named.
    let granted = p
        .as_machine(
            Method::PATCH,
            "/v1/actions/guarded/permissions",
            Some(json!({ "execute": { "roles": ["Member"] }, "approve": { "roles": ["Member"] } })),
        )
        .await;
    assert_eq!(granted.status, 200, "{:#}", granted.body);
    let run = p
        .as_member(
            Method::POST,
            "/v1/actions/guarded/runs",
            Some(json!({ "properties": {} })),
        )
        .await;
    assert_eq!(run.status, 202, "{:#}", run.body);
    let id = run.body["run"]["id"].as_str().unwrap().to_owned();
    let approval = format!("/v1/actions/runs/{id}/approval");
    let own = p
        .as_member(
            Method::PATCH,
            &approval,
            Some(json!({ "status": "APPROVE" })),
        )
        .await;
    assert_eq!(
        (own.status, own.body["error"].as_str()),
        (403, Some("missing_permissions")),
        "{:#}",
        own.body
    );
    let still = p
        .state_of(&format!("/v1/actions/runs/{id}?version=v2"))
        .await;
    assert_eq!(still["run"]["status"], "WAITING_FOR_APPROVAL");
    // Another Member may; the decision stands.
    let other = p.h.person(&p.org, "other@example.io", "Member").await;
    let decided =
        p.h.send(
            Method::PATCH,
            &approval,
            Some(&other.token),
            Some(json!({ "status": "APPROVE" })),
        )
        .await;
    assert_eq!(decided.status, 201, "{:#}", decided.body);
    p.h.finish().await;
}

/// A personal credential's key signs only what the credential is: a token re-signed
/// with it to say it is a machine, or another person, is refused.
#[tokio::test]
async fn personal_tokens_cannot_claim_more_than_their_credential() {
    let p = People::start().await;
    let key = crate::security::token_key(&p.member.client_secret);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .cast_signed();
    let mint = |extra: Value| {
        let mut claims = json!({
            "sub": p.member.client_id, "org": p.org.org_id, "iat": now - 60, "exp": now + 3600,
        });
        if let (Value::Object(claims), Value::Object(extra)) = (&mut claims, extra) {
            claims.extend(extra);
        }
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&key),
        )
        .unwrap()
    };
    // The derivation is right: the member's own claims are accepted.
    let genuine =
        mint(json!({ "isMachine": false, "personalToken": true, "email": p.member.email }));
    let answer =
        p.h.send(Method::GET, "/v1/users", Some(&genuine), None)
            .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    for (what, claims) in [
        ("a machine", json!({ "isMachine": true })),
        (
            "a machine, personal claim dropped",
            json!({ "isMachine": true, "email": null }),
        ),
        (
            "the Admin",
            json!({ "isMachine": false, "personalToken": true, "email": p.admin.email }),
        ),
    ] {
        let token = mint(claims);
        for (method, path) in [(Method::GET, "/v1/users"), (Method::GET, "/v1/audit-log")] {
            let answer = p.h.send(method, path, Some(&token), None).await;
            assert_eq!(
                answer.status, 401,
                "claiming to be {what}: {:#}",
                answer.body
            );
        }
    }
    // A deleted person's tokens stop at once.
    let deleted = p
        .as_machine(
            Method::DELETE,
            &format!("/v1/users/{}", p.member.email),
            None,
        )
        .await;
    assert_eq!(deleted.status, 200);
    let answer =
        p.h.send(Method::GET, "/v1/users", Some(&p.member.token), None)
            .await;
    assert_eq!(answer.status, 401);
    p.h.finish().await;
}

/// Every state-changing route a Member without grants calls on the organization's
/// objects is refused, but for making their own credentials.
#[tokio::test]
async fn a_member_without_grants_changes_nothing_on_any_route() {
    let p = People::start().await;
    let mut allowed = Vec::new();
    let mut refusals = 0;
    for endpoint in ENDPOINTS
        .iter()
        .filter(|e| e.authenticated && e.method != HttpMethod::Get)
    {
        let path = fill_path(endpoint.path, |param| known_value(&p.known, param));
        let answer = p
            .as_member(
                method_of(endpoint.method),
                &path,
                body_for(endpoint.body, &p.known),
            )
            .await;
        if answer.status < 400 {
            allowed.push(endpoint.operation_id);
        } else {
            assert_ne!(answer.status, 500, "{endpoint:?}: {:#}", answer.body);
            refusals += 1;
        }
    }
    // Reads that take a body (searches) and a person's own credentials.
    let reads = [
        "searchEntities",
        "searchEntitiesAcrossBlueprints",
        "createPersonalCredentials",
    ];
    let unexpected: Vec<_> = allowed.iter().filter(|op| !reads.contains(op)).collect();
    assert!(
        unexpected.is_empty(),
        "a Member without grants was let through: {unexpected:?}"
    );
    crate::visible(&format!(
        "escalation: {refusals} state-changing routes refuse a Member without grants"
    ));
    p.h.finish().await;
}
