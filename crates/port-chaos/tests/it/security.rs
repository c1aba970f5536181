//! Security properties over every route of `routes::ENDPOINTS`, completing
//! port-server's own tests (tests/it/tenancy.rs and auth.rs check a hand-picked set of
//! routes): another organization's objects answer 404 on every route that names one,
//! and bad tokens (forged, expired, signed for another organization, unsigned) answer
//! 401 on every authenticated route. Also: secrets never reach the real binary's
//! logs, and secrets, tokens and signatures are compared in constant time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::{Hmac, Mac};
use http::Method;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use port_chaos::api::Api;
use port_chaos::portd::{Portd, PortdSettings};
use port_chaos::receiver::Receiver;
use port_server::ENDPOINTS;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::common::{InProcess, Known, fill_path, known_value, seed};

/// What port-server's `auth.rs` mixes into the token key (a client can derive its own
/// key; the sanity check below proves this copy right).
const TOKEN_KEY_CONTEXT: &[u8] = b"portd-access-token";

pub(crate) fn token_key(client_secret: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(client_secret.as_bytes()).unwrap();
    mac.update(TOKEN_KEY_CONTEXT);
    mac.finalize().into_bytes().to_vec()
}

fn mint(algorithm: Algorithm, key: &[u8], sub: &str, org: &str, exp_from_now: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .cast_signed();
    let claims = json!({ "sub": sub, "org": org, "iat": now - 60, "exp": now + exp_from_now });
    jsonwebtoken::encode(
        &Header::new(algorithm),
        &claims,
        &EncodingKey::from_secret(key),
    )
    .unwrap()
}

fn method_of(method: port_server::HttpMethod) -> Method {
    Method::from_bytes(method.as_str().as_bytes()).unwrap()
}

/// A plausible body for the route, so refusals come from the lookup, not validation.
fn body_for(schema: Option<&str>, known: &Known) -> Option<Value> {
    schema.map(|schema| crate::hostile::template(schema, known))
}

#[tokio::test]
async fn another_organizations_objects_answer_404_on_every_route() {
    let h = InProcess::sqlite().await;
    let a = h.org("a").await;
    let known = seed(&h, &a).await;
    let b = h.org("b").await;
    let mut checked = 0;
    for endpoint in ENDPOINTS.iter().filter(|e| e.path.contains('{')) {
        let path = fill_path(endpoint.path, |p| known_value(&known, p));
        let answer = h
            .send(
                method_of(endpoint.method),
                &path,
                Some(&b.token),
                body_for(endpoint.body, &known),
            )
            .await;
        assert_eq!(
            answer.status, 404,
            "{endpoint:?} as another organization: {:#}",
            answer.body
        );
        assert_eq!(answer.body["error"], "not_found", "{endpoint:?}");
        checked += 1;
    }
    // Routes without an id in the path: nothing of A is listed, claimed or acknowledged.
    for (path, key) in [
        ("/v1/actions/runs", "runs"),
        ("/v1/actions", "actions"),
        ("/v1/blueprints", "blueprints"),
    ] {
        let answer = h.send(Method::GET, path, Some(&b.token), None).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body[key], json!([]), "{path}");
    }
    let audit = h
        .send(
            Method::GET,
            &format!("/v1/audit-log?run_id={}", known.run),
            Some(&b.token),
            None,
        )
        .await;
    assert_eq!(audit.status, 404, "{:#}", audit.body);
    let acked = h
        .send(
            Method::PATCH,
            "/v1/actions/runs/ack",
            Some(&b.token),
            Some(json!({ "runIds": [known.run] })),
        )
        .await;
    assert!(
        !acked.body.to_string().contains(&known.run) || acked.status == 404,
        "acknowledging another organization's run: {} {:#}",
        acked.status,
        acked.body
    );
    let claimed = h
        .send(
            Method::POST,
            "/v1/actions/runs/claim-pending",
            Some(&b.token),
            Some(json!({ "limit": 100 })),
        )
        .await;
    assert!(
        !claimed.body.to_string().contains(&known.run),
        "{:#}",
        claimed.body
    );

    // A's objects are untouched by everything B tried (PATCHes, DELETEs, logs…).
    let token = Some(a.token.as_str());
    let run = h
        .send(
            Method::GET,
            &format!("/v1/actions/runs/{}?version=v2", known.run),
            token,
            None,
        )
        .await;
    assert_eq!(run.status, 200);
    assert_eq!(run.body["run"]["status"], "IN_PROGRESS", "{:#}", run.body);
    let logs = h
        .send(
            Method::GET,
            &format!("/v1/actions/runs/{}/logs", known.run),
            token,
            None,
        )
        .await;
    let messages: Vec<&str> = logs.body["runLogs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert!(messages.contains(&"a log line"), "{messages:?}");
    assert!(
        messages.iter().all(|m| *m != "m"),
        "B's log line reached A's run: {messages:?}"
    );
    for path in [
        format!("/v1/blueprints/{}", known.blueprint),
        format!(
            "/v1/blueprints/{}/entities/{}",
            known.blueprint, known.entity
        ),
        format!("/v1/actions/{}", known.action),
        format!(
            "/v1/blueprints/{}/actions/{}",
            known.blueprint, known.legacy_action
        ),
    ] {
        let answer = h.send(Method::GET, &path, token, None).await;
        assert_eq!(answer.status, 200, "{path}: {:#}", answer.body);
    }
    crate::visible(&format!(
        "tenancy: {checked} routes with an id answer 404 to another organization"
    ));
}

#[tokio::test]
async fn forged_expired_and_foreign_tokens_answer_401_on_every_authenticated_route() {
    let h = InProcess::sqlite().await;
    let a = h.org("a").await;
    let known = seed(&h, &a).await;
    let b = h.org("b").await;
    let a_key = token_key(&a.client_secret);
    let b_key = token_key(&b.client_secret);

    // The derivation is right: a token minted with A's key is accepted.
    let minted = mint(Algorithm::HS256, &a_key, &a.client_id, &a.org_id, 3600);
    let answer = h
        .send(Method::GET, "/v1/blueprints", Some(&minted), None)
        .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);

    let unsigned = {
        let token = mint(Algorithm::HS256, &a_key, &a.client_id, &a.org_id, 3600);
        let mut parts = token.split('.');
        let (_, claims) = (parts.next(), parts.next().unwrap());
        // {"alg":"none","typ":"JWT"}
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{claims}.")
    };
    let bad: Vec<(&str, String)> = vec![
        ("garbage", "not-a-jwt".to_owned()),
        (
            "forged (A's claims, a guessed key)",
            mint(Algorithm::HS256, b"guess", &a.client_id, &a.org_id, 3600),
        ),
        (
            "signed with A's raw client secret",
            mint(
                Algorithm::HS256,
                a.client_secret.as_bytes(),
                &a.client_id,
                &a.org_id,
                3600,
            ),
        ),
        (
            "expired (A's own key)",
            mint(Algorithm::HS256, &a_key, &a.client_id, &a.org_id, -1),
        ),
        (
            "B's credential claiming A's organization",
            mint(Algorithm::HS256, &b_key, &b.client_id, &a.org_id, 3600),
        ),
        (
            "A's credential signed with B's key",
            mint(Algorithm::HS256, &b_key, &a.client_id, &a.org_id, 3600),
        ),
        (
            "HS512 with A's key",
            mint(Algorithm::HS512, &a_key, &a.client_id, &a.org_id, 3600),
        ),
        ("alg none", unsigned),
        (
            "an unknown client",
            mint(Algorithm::HS256, &a_key, "nobody", &a.org_id, 3600),
        ),
    ];
    let mut checked = 0;
    for endpoint in ENDPOINTS.iter().filter(|e| e.authenticated) {
        let path = fill_path(endpoint.path, |p| known_value(&known, p));
        for (what, token) in &bad {
            let answer = h
                .send(
                    method_of(endpoint.method),
                    &path,
                    Some(token),
                    body_for(endpoint.body, &known),
                )
                .await;
            assert_eq!(
                answer.status, 401,
                "{endpoint:?} with a token {what}: {:#}",
                answer.body
            );
            checked += 1;
        }
        let answer = h
            .send(
                method_of(endpoint.method),
                &path,
                None,
                body_for(endpoint.body, &known),
            )
            .await;
        assert_eq!(answer.status, 401, "{endpoint:?} without a token");
        checked += 1;
    }
    crate::visible(&format!(
        "tokens: {checked} requests with missing, forged, expired or foreign tokens answered 401"
    ));
}

/// Strings that must never show in portd's output.
struct Secrets {
    client_secret: String,
    wrong_secret: String,
    input: String,
    short_input: String,
    header_secret: String,
    db_password: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_portd_logs() {
    let secrets = Secrets {
        client_secret: "cs-Vq8Lz3Xr0Pn6Tt2Wm5Yk9Ja4Hb7Gd1Fe".to_owned(),
        wrong_secret: "ws-Mf2Qs7Ux4Kc9Ld3Pz8Hv1Nb6Rt5Jy0Ge".to_owned(),
        input: "in-Aa7Sd2Fg9Hj4Kl1Qw8Er3Ty6Ui5Op0Zx".to_owned(),
        short_input: "sh-9Xq".to_owned(),
        header_secret: "hd-Pl4Ok8Ij2Uh6Yg0Tf5Rd9Es3Wa7Qz1Xc".to_owned(),
        db_password: "pw-Bn5Mv0Cx9Zl4Kj8Hg3Fd7Sa2Qw6Er1Ty".to_owned(),
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("portd.log");
    let binary = port_chaos::portd::binary().expect("the portd binary");

    // A database URL with a password that cannot connect: the error is logged.
    let failing = PortdSettings {
        binary: binary.clone(),
        data_dir: dir.path().join("pg"),
        database_url: Some(format!(
            "postgres://portd:{}@127.0.0.1:{}/portd",
            secrets.db_password,
            port_chaos::portd::free_port().unwrap()
        )),
        client_id: "client-for-logs".to_owned(),
        client_secret: secrets.client_secret.clone(),
        log_filter: "trace".to_owned(),
        log_file: log.clone(),
        env: Vec::new(),
    };
    let mut doomed = Portd::spawn(&failing).unwrap();
    assert!(
        doomed.ready(Duration::from_secs(60)).await.is_err(),
        "portd cannot start without its database"
    );
    drop(doomed);

    let settings = PortdSettings {
        data_dir: dir.path().join("data"),
        database_url: None,
        log_filter: "debug".to_owned(),
        ..failing
    };
    let mut portd = Portd::spawn(&settings).unwrap();
    portd.ready(Duration::from_secs(60)).await.unwrap();
    let base = portd.base_url();
    workload(&base, &secrets, &settings.client_id).await;
    portd.terminate(Duration::from_secs(20)).unwrap();

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("DEBUG") && text.contains("/v1/actions/deploy/runs"),
        "the log has debug lines about the workload"
    );
    for (what, secret) in [
        ("the client secret", &secrets.client_secret),
        ("a wrong client secret", &secrets.wrong_secret),
        ("a secret input", &secrets.input),
        (
            "a secret input that failed validation",
            &secrets.short_input,
        ),
        ("an organization secret", &secrets.header_secret),
        ("the database password", &secrets.db_password),
    ] {
        if let Some(line) = text.lines().find(|l| l.contains(secret.as_str())) {
            panic!("{what} is in portd's log:\n{line}");
        }
    }
    crate::visible(&format!(
        "secrets: {} lines of portd output (debug and trace) hold none of 6 secret values",
        text.lines().count()
    ));
}

/// Logs in (also with a wrong secret), creates an action with a secret input and a
/// webhook, executes it (with a valid and an invalid secret), logs and patches.
async fn workload(base: &str, secrets: &Secrets, client_id: &str) {
    let refused = Api::login(base, client_id, &secrets.wrong_secret).await;
    assert!(refused.is_err(), "a wrong secret is refused");
    let api = Api::login(base, client_id, &secrets.client_secret)
        .await
        .unwrap();
    let receiver = Receiver::start(&secrets.client_secret, 1).await.unwrap();
    api.post(
        "/v1/actions",
        &json!({
            "identifier": "deploy",
            "title": "Deploy",
            "trigger": {
                "type": "self-service",
                "operation": "CREATE",
                "userInputs": {
                    "properties": {
                        "token": { "type": "string", "encryption": "aes256-gcm", "minLength": 12 },
                        "note": { "type": "string" }
                    },
                    "required": ["token"]
                }
            },
            "invocationMethod": {
                "type": "WEBHOOK",
                "url": receiver.url(),
                "headers": { "X-Extra": secrets.header_secret },
                "body": { "token": "{{ .inputs.token }}", "run": "{{ .run.id }}" }
            }
        }),
    )
    .await
    .unwrap()
    .expect(201, "creating the action")
    .unwrap();
    let run = api
        .post(
            "/v1/actions/deploy/runs",
            &json!({ "properties": { "token": secrets.input, "note": "hello" } }),
        )
        .await
        .unwrap()
        .expect(202, "executing")
        .unwrap()["run"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = api
        .post(
            "/v1/actions/deploy/runs",
            &json!({ "properties": { "token": secrets.short_input } }),
        )
        .await
        .unwrap();
    assert_eq!(refused.status, 422, "{:#}", refused.body);
    assert!(
        !refused.body.to_string().contains(&secrets.short_input),
        "the 422 echoes the secret: {:#}",
        refused.body
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while receiver.count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the webhook did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    api.post(
        &format!("/v1/actions/runs/{run}/logs"),
        &json!({ "message": "working" }),
    )
    .await
    .unwrap()
    .expect(201, "logging")
    .unwrap();
    let fetched = api
        .get(&format!("/v1/actions/runs/{run}?version=v2"))
        .await
        .unwrap()
        .expect(200, "reading the run")
        .unwrap();
    // The run's inputs, like its payload, hold the secret only encrypted (Port's way).
    let shown = fetched["run"]["properties"]["token"]
        .as_str()
        .unwrap_or_default();
    assert!(
        shown.len() > secrets.input.len() && !fetched.to_string().contains(&secrets.input),
        "{fetched:#}"
    );
    api.send(
        reqwest::Method::PATCH,
        &format!("/v1/actions/runs/{run}"),
        Some(&json!({ "status": "SUCCESS", "summary": "done" })),
        &[],
    )
    .await
    .unwrap();
}

/// The source files of the workspace's crates (not tests).
fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&crates).unwrap().flatten() {
        walk(&entry.path().join("src"), &mut out);
    }
    out.sort();
    out
}

/// Words naming secret material in an identifier.
const SECRET_WORDS: &[&str] = &[
    "secret",
    "signature",
    "token",
    "mac",
    "hmac",
    "digest",
    "password",
];

/// Lines that compare with `==` on purpose, and why that is safe.
const ALLOWED: &[(&str, &str)] = &[(
    "c.token.0 == used",
    "port-client: which of its own two tokens a 401 answered; no secret is checked",
)];

/// Whether `line` compares secret material with `==`/`!=` (a variable-time compare).
/// Comparisons of lengths, emptiness, options, enum variants and string literals are
/// not.
fn compares_secret(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or_default();
    let Some(at) = code.find("==").or_else(|| code.find("!=")) else {
        return false;
    };
    if code[at + 2..].trim_start().starts_with('"')
        || ALLOWED.iter().any(|(allowed, _)| code.contains(allowed))
    {
        return false;
    }
    if [
        ".is_some()",
        ".is_none()",
        ".is_empty()",
        ".len()",
        "Kind::",
        "::Token",
    ]
    .iter()
    .any(|benign| code.contains(benign))
    {
        return false;
    }
    let around = &code[at.saturating_sub(40)..(at + 40).min(code.len())];
    let lowered = around.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| lowered.contains(word))
}

#[test]
fn secrets_tokens_and_signatures_are_compared_in_constant_time() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();

    // Webhook signatures: subtle's ct_eq over every candidate.
    let signature = read("crates/port-core/src/signature.rs");
    assert!(signature.contains("use subtle::ConstantTimeEq"));
    assert!(signature.contains(".ct_eq(&expected[..])"));
    // Client secrets: hashed, then ct_eq.
    let auth = read("crates/port-server/src/auth.rs");
    assert!(auth.contains("fn secrets_match") && auth.contains("given.ct_eq(&expected)"));
    // Tokens: jsonwebtoken's HS256 check, which compares with ring's
    // `constant_time::verify_slices_are_equal`; no hand-written comparison of the
    // signature part.
    assert!(auth.contains("jsonwebtoken::decode::<Claims>(token, &key, &validation)"));
    let lock = read("Cargo.lock");
    assert!(
        lock.contains("name = \"jsonwebtoken\"\nversion = \"9."),
        "jsonwebtoken 9 (ring backend) verifies HMACs in constant time; re-check another version"
    );
    assert!(lock.contains("name = \"ring\""));
    // Whoever verifies webhooks goes through port_core::signature.
    let receiver = read("crates/port-webhook/src/receiver.rs");
    assert!(receiver.contains("verify_with_any_secret") || receiver.contains("signature::verify"));

    // And nowhere is secret material compared with == or != (tests excepted).
    let mut offenders = Vec::new();
    for file in sources() {
        let text = std::fs::read_to_string(&file).unwrap();
        let production = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in production.lines().enumerate() {
            if compares_secret(line) {
                offenders.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "secret material compared with ==/!= (use subtle's ct_eq):\n{}",
        offenders.join("\n")
    );
    // The scan itself can fail.
    assert!(compares_secret("if given_secret == stored {"));
    assert!(compares_secret("    signature != expected_mac"));
    assert!(!compares_secret("if secret.len() == 32 {"));
    assert!(!compares_secret("let same = a.ct_eq(&b);"));
    assert!(!compares_secret(
        "} else if endpoint.path == \"/v1/auth/access_token\" {"
    ));
}
