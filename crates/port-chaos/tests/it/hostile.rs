//! Hostile input: arbitrary requests to every route of `routes::ENDPOINTS` (in process,
//! over SQLite, and over PostgreSQL in a throw-away schema) never get a 5xx. Paths carry real identifiers, arbitrary text,
//! percent-escapes and dot segments; query strings carry the route's documented
//! parameters and others with arbitrary values; bodies are valid requests with a
//! random part replaced, arbitrary JSON, truncated JSON or raw bytes; headers vary the
//! token, the content type and the idempotency key. Fixed cases add what random
//! generation rarely reaches: bodies over the 1 MiB limit, deep nesting, invalid UTF-8.
//! NUL (U+0000), which PostgreSQL cannot store in text, is generated in strings, keys,
//! path segments, query names and values, the token route's client id and a token's
//! subject: it must be refused alike on both stores, never answered 5xx.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use http::Method;
use port_server::routes::Endpoint;
use port_server::{ENDPOINTS, HttpMethod};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

use crate::common::{InProcess, Known, fill_path, seed};

/// Cases per route (`CHAOS_HOSTILE_CASES` overrides).
const DEFAULT_CASES: u32 = 100;

/// Keys the API knows, so generated objects reach past the first type check.
const KEYS: &[&str] = &[
    "identifier",
    "title",
    "icon",
    "description",
    "schema",
    "properties",
    "required",
    "relations",
    "type",
    "format",
    "enum",
    "trigger",
    "operation",
    "blueprintIdentifier",
    "userInputs",
    "invocationMethod",
    "url",
    "agent",
    "synchronized",
    "method",
    "headers",
    "body",
    "requiredApproval",
    "status",
    "statusLabel",
    "message",
    "link",
    "summary",
    "externalRunId",
    "terminationStatus",
    "entity",
    "entities",
    "runIds",
    "visibilityTimeoutMs",
    "limit",
    "clientId",
    "clientSecret",
    "query",
    "combinator",
    "rules",
    "operator",
    "value",
    "from",
    "encryption",
    "default",
    "event",
    "condition",
    "timeoutSeconds",
    "publish",
    "team",
    "upsert",
    "secretName",
    "secretValue",
    "description",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z_]{0,12}",
        3 => ".{0,40}",
        1 => Just("{{ .inputs | keys }}".to_owned()),
        1 => Just("{{ .secrets.nope | error }}".to_owned()),
        1 => prop::sample::select(vec![
            "SUCCESS", "FAILURE", "IN_PROGRESS", "APPROVE", "DECLINE", "CREATE", "DAY-2",
            "DELETE", "WEBHOOK", "GITHUB", "KAFKA", "self-service", "automation", "string",
            "number", "array", "object", "entity", "aes256-gcm", "v1", "v2",
        ])
        .prop_map(str::to_owned),
        // Loopback only: nothing runs a delivery here, but never name another host.
        1 => Just("http://127.0.0.1:9/hook".to_owned()),
        1 => Just("\u{0}\u{202e}\u{feff}".to_owned()),
        1 => "[a-z]{0,6}\u{0}[a-z]{0,6}",
        1 => "[a-zA-Z0-9]{240,300}",
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => text(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter_map("finite", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        Just(json!(u64::MAX)),
        Just(json!(-0.0)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// A valid body for the route's schema, to be mutated.
pub(crate) fn template(schema: &str, known: &Known) -> Value {
    match schema {
        "AccessTokenRequest" => json!({ "clientId": "someone", "clientSecret": "wrong" }),
        "Blueprint" => json!({
            "identifier": "fuzzed", "title": "Fuzzed",
            "schema": { "properties": { "n": { "type": "number" } }, "required": [] },
            "relations": { "parent": { "target": known.blueprint, "many": false, "required": false } }
        }),
        "Entity" => json!({
            "identifier": "fuzzed-entity", "title": "E",
            "properties": { "region": "us" }, "relations": {}
        }),
        "BulkEntitiesRequest" => json!({
            "entities": [{ "identifier": "bulk-1", "properties": {} }, { "identifier": "bulk-2" }]
        }),
        "EntitySearchRequest" => json!({
            "query": { "combinator": "and", "rules": [
                { "property": "region", "operator": "=", "value": "eu" }
            ] },
            "limit": 10
        }),
        "Action" => json!({
            "identifier": "fuzzed_action", "title": "F",
            "trigger": {
                "type": "self-service", "operation": "CREATE",
                "blueprintIdentifier": known.blueprint,
                "userInputs": { "properties": { "x": { "type": "string" } }, "required": [] }
            },
            "invocationMethod": {
                "type": "WEBHOOK", "url": "http://127.0.0.1:9/hook",
                "body": { "x": "{{ .inputs.x }}" }
            },
            "requiredApproval": false
        }),
        "ExecuteRequest" => {
            json!({ "entity": known.entity, "properties": { "note": "n", "token": "secret-value" } })
        }
        "RunPatch" => json!({
            "status": "SUCCESS", "statusLabel": "l", "link": ["https://example.com"],
            "summary": "s", "externalRunId": "x", "message": { "k": 1 }
        }),
        "RunLogRequest" => {
            json!({ "message": "m", "terminationStatus": "FAILURE", "statusLabel": "l" })
        }
        "ApprovalRequest" => json!({ "status": "APPROVE", "description": "ok" }),
        "ClaimRequest" => json!({ "limit": 5, "visibilityTimeoutMs": 30000 }),
        "AckRequest" => json!({ "runIds": [known.run] }),
        "HeartbeatRequest" => json!({ "visibilityTimeoutMs": 30000 }),
        "RunResponseRequest" => json!({ "response": { "ok": true, "items": [1, "two"] } }),
        "NodeClaimRequest" => json!({ "installationId": "_PORT_EXEC_AGENT", "limit": 100 }),
        "OrganizationPatch" => {
            json!({ "name": "Fuzzed", "settings": { "portAgentStreamerName": "POLLING" } })
        }
        "IntegrationCreateRequest" => json!({
            "installationId": "fuzzed-integration", "installationAppType": "github",
            "version": "0.1.0", "config": { "resources": [] }, "actionsProcessingEnabled": true
        }),
        "IntegrationPatch" => json!({ "version": "0.2.0", "processingMode": "dsp" }),
        "IntegrationConfigRequest" => json!({ "config": { "resources": [] } }),
        "SecretCreateRequest" => json!({
            "secretName": "FUZZED_SECRET", "secretValue": "fuzzed-value", "description": "d"
        }),
        "SecretPatch" => json!({ "secretValue": "another-value", "description": "d2" }),
        "InviteRequest" => json!({
            "invitee": { "email": "fuzzed@example.io", "roles": ["Admin"], "teams": [known.team] }
        }),
        "UserPatch" => json!({ "roles": ["Admin"], "teams": [known.team] }),
        "TeamRequest" => {
            json!({ "name": "Fuzzed Team", "users": [known.user], "description": "d" })
        }
        "TeamPatch" => {
            json!({ "name": "Fuzzed Team 2", "users": [known.user], "description": null })
        }
        "ActionPermissionsPatch" => json!({
            "execute": { "users": [known.user], "roles": ["Member"], "teams": [known.team], "ownedByTeam": true },
            "approve": { "roles": ["Member"], "policy": null }
        }),
        "WithdrawRequest" => json!({ "reason": "changed my mind" }),
        _ => json!({
            "identifier": "fuzzed_legacy", "title": "L", "trigger": "CREATE",
            "userInputs": { "properties": {}, "required": [] },
            "invocationMethod": { "type": "WEBHOOK", "url": "http://127.0.0.1:9/legacy" }
        }),
    }
}

/// Replaces the `index`-th node (depth first, modulo their number) with `noise`.
fn replace_node(value: &mut Value, index: &mut usize, noise: &Value) -> bool {
    if *index == 0 {
        *value = noise.clone();
        return true;
    }
    *index -= 1;
    match value {
        Value::Array(items) => items.iter_mut().any(|v| replace_node(v, index, noise)),
        Value::Object(map) => map.values_mut().any(|v| replace_node(v, index, noise)),
        _ => false,
    }
}

fn count_nodes(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count_nodes).sum(),
        Value::Object(map) => map.values().map(count_nodes).sum(),
        _ => 0,
    }
}

fn mutate(mut value: Value, noise: Value, at: usize, how: u8) -> Value {
    match how % 3 {
        0 => {
            let mut index = at % count_nodes(&value);
            replace_node(&mut value, &mut index, &noise);
        }
        1 => {
            if let Value::Object(map) = &mut value {
                map.insert(format!("extra{}", at % 3), noise);
            }
        }
        _ => {
            if let Value::Object(map) = &mut value
                && !map.is_empty()
            {
                let key = map.keys().nth(at % map.len()).cloned().unwrap_or_default();
                map.remove(&key);
            }
        }
    }
    value
}

fn body(schema: Option<&'static str>, known: &Known) -> BoxedStrategy<Vec<u8>> {
    let base = template(schema.unwrap_or("Object"), known);
    let truncated = base.to_string().into_bytes();
    let valid = base.to_string().into_bytes();
    prop_oneof![
        3 => Just(valid),
        4 => (json_value(), any::<usize>(), any::<u8>())
            .prop_map(move |(noise, at, how)| mutate(base.clone(), noise, at, how).to_string().into_bytes()),
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => any::<usize>().prop_map(move |cut| truncated[..cut % truncated.len()].to_vec()),
        1 => Just(Vec::new()),
    ]
    .boxed()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn segment(param: &str, known: &Known) -> BoxedStrategy<String> {
    let mut real = vec![crate::common::known_value(known, param)];
    match param {
        "run_id" => real.push(known.ended_run.clone()),
        "action_identifier" => real.push(known.legacy_action.clone()),
        _ => {}
    }
    prop_oneof![
        8 => prop::sample::select(real),
        2 => "[A-Za-z0-9_.-]{1,20}",
        2 => ".{0,30}".prop_map(|s| encode(&s)),
        1 => prop::sample::select(vec![
            "%FF", "%00", "..", ".", "%2F", "a%20b", "%", "r_", "%E2%80%AE", "r_%00", "svc%00",
        ])
            .prop_map(str::to_owned),
        1 => "[a-z]{300,400}",
    ]
    .boxed()
}

fn query(endpoint: &Endpoint) -> BoxedStrategy<String> {
    let mut names: Vec<&'static str> = endpoint.query.iter().map(|q| q.name).collect();
    names.extend(["limit", "offset", "version", "run_id", "upsert"]);
    let value = prop_oneof![
        2 => prop::sample::select(vec![
            "true", "false", "1", "0", "-1", "1001", "51", "v1", "v2", "v3", "",
            "99999999999999999999999", "1e3", "null", "UI", "SUCCESS", "%00", "a%00b",
        ])
        .prop_map(str::to_owned),
        1 => ".{0,20}".prop_map(|s| encode(&s)),
    ];
    let name = prop_oneof![
        8 => prop::sample::select(names).prop_map(str::to_owned),
        1 => Just("na%00me".to_owned()),
    ];
    let pair = (name, value);
    let generated = (prop::collection::vec(pair, 1..5), any::<u8>()).prop_map(|(pairs, junk)| {
        let mut parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if junk % 8 == 0 {
            parts.push("&=&%ZZ=%&a".to_owned());
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    });
    prop_oneof![Just(String::new()), generated].boxed()
}

/// One generated request.
#[derive(Debug, Clone)]
struct Hostile {
    method: Method,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn method_of(method: HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Delete => Method::DELETE,
    }
}

/// A well-formed token (signed with a key nobody has) whose subject holds NUL: the
/// subject is looked up before the signature can be checked.
fn token_with_nul_subject() -> String {
    let claims =
        json!({ "sub": "victim\u{0}", "org": "org_x", "iat": 0, "exp": 4_102_444_800_i64 });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"nobody's key"),
    )
    .unwrap()
}

fn request(endpoint: &'static Endpoint, known: &Known, token: &str) -> BoxedStrategy<Hostile> {
    let params: Vec<String> = endpoint
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}').map(str::to_owned))
        .collect();
    let segments: Vec<BoxedStrategy<String>> = params.iter().map(|p| segment(p, known)).collect();
    let method = prop_oneof![
        9 => Just(method_of(endpoint.method)),
        1 => prop::sample::select(vec![
            Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE,
            Method::OPTIONS, Method::HEAD,
        ]),
    ];
    let token = token.to_owned();
    let auth = prop_oneof![
        36 => Just(Some(format!("Bearer {token}"))),
        1 => Just(None),
        1 => Just(Some("Bearer not.a.jwt".to_owned())),
        1 => Just(Some(format!("Bearer {}", token_with_nul_subject()))),
        1 => Just(Some(format!("Basic {token}"))),
        1 => "[ -~]{0,60}".prop_map(Some),
    ];
    let content_type = prop_oneof![
        8 => Just(Some("application/json".to_owned())),
        1 => Just(None),
        1 => prop::sample::select(vec![
            "text/plain", "application/json; charset=utf-16", "multipart/form-data",
            "application/x-www-form-urlencoded", "*/*",
        ])
        .prop_map(|s| Some(s.to_owned())),
    ];
    let extra = prop_oneof![
        3 => Just(Vec::new()),
        1 => "[ -~]{0,300}".prop_map(|k| vec![("idempotency-key".to_owned(), k)]),
        1 => "[ -~]{0,20}".prop_map(|id| vec![("last-event-id".to_owned(), id)]),
    ];
    (
        method,
        segments,
        query(endpoint),
        auth,
        content_type,
        extra,
        body(endpoint.body, known),
    )
        .prop_map(
            move |(method, segments, query, auth, content_type, extra, body)| {
                let mut values = segments.into_iter();
                let path = fill_path(endpoint.path, |_| values.next().unwrap_or_default());
                let mut headers = extra;
                if let Some(auth) = auth {
                    headers.push(("authorization".to_owned(), auth));
                }
                if let Some(content_type) = content_type {
                    headers.push(("content-type".to_owned(), content_type));
                }
                Hostile {
                    method,
                    uri: format!("{path}{query}"),
                    headers,
                    body,
                }
            },
        )
        .boxed()
}

/// Requests no generator is likely to make.
fn fixed_cases(endpoint: &Endpoint, known: &Known, token: &str) -> Vec<Hostile> {
    let path = fill_path(endpoint.path, |p| crate::common::known_value(known, p));
    let huge = format!("{{\"message\": \"{}\"}}", "x".repeat(1024 * 1024 + 1));
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let bodies: Vec<Vec<u8>> = vec![
        huge.into_bytes(),
        deep.into_bytes(),
        b"{\"identifier\": \"\xff\xfe\"}".to_vec(),
        b"\xef\xbb\xbf{}".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{\"a\": 1e999999}".to_vec(),
        b"{\"identifier\": \"x\", \"identifier\": \"y\"}".to_vec(),
        br#"{"clientId": "victim\u0000", "clientSecret": "x\u0000"}"#.to_vec(),
        br#"{"a\u0000": {"b": ["\u0000"]}}"#.to_vec(),
    ];
    bodies
        .into_iter()
        .map(|body| Hostile {
            method: method_of(endpoint.method),
            uri: path.clone(),
            headers: vec![
                ("authorization".to_owned(), format!("Bearer {token}")),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            body,
        })
        .collect()
}

#[test]
fn arbitrary_requests_to_every_route_never_get_a_5xx() {
    let rt = runtime();
    let h = rt.block_on(InProcess::sqlite());
    hostile_requests(&rt, h);
}

/// The same over PostgreSQL, which cannot store everything SQLite can (NUL in text).
#[test]
fn arbitrary_requests_to_every_route_never_get_a_5xx_on_postgres() {
    let Some(url) = port_chaos::pg::test_database_url("hostile input on PostgreSQL").unwrap()
    else {
        return;
    };
    let rt = runtime();
    let h = rt.block_on(InProcess::postgres(&url));
    hostile_requests(&rt, h);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn hostile_requests(rt: &tokio::runtime::Runtime, h: InProcess) {
    let cases = std::env::var("CHAOS_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);

    let tried = Cell::new(0u64);
    let refused = Cell::new(0u64);
    let server_errors = Cell::new(0u64);
    let statuses = RefCell::new(BTreeMap::<u16, u64>::new());
    let send = |request: Hostile| -> Result<(), TestCaseError> {
        let answer = rt.block_on(h.raw(
            request.method.clone(),
            &request.uri,
            &request.headers,
            request.body.clone(),
        ));
        tried.set(tried.get() + 1);
        let Some(answer) = answer else {
            // Not a valid request target: no client could send it.
            refused.set(refused.get() + 1);
            return Ok(());
        };
        *statuses.borrow_mut().entry(answer.status).or_default() += 1;
        if answer.status >= 500 {
            server_errors.set(server_errors.get() + 1);
            return Err(TestCaseError::fail(format!(
                "{} {} answered {}: {}",
                request.method, request.uri, answer.status, answer.body
            )));
        }
        Ok(())
    };

    for (n, endpoint) in ENDPOINTS.iter().enumerate() {
        // A fresh organization per route: earlier routes replace and delete things.
        let org = rt.block_on(h.org(&format!("hostile-{n}")));
        let known = rt.block_on(seed(&h, &org));
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 256,
            ..Config::default()
        });
        let strategy = request(endpoint, &known, &org.token);
        if let Err(failure) = runner.run(&strategy, send) {
            panic!("{endpoint:?}: {failure}");
        }
        if endpoint.body.is_some() {
            for request in fixed_cases(endpoint, &known, &org.token) {
                if let Err(failure) = send(request) {
                    panic!("{endpoint:?}: {failure}");
                }
            }
        }
    }
    crate::visible(&format!(
        "hostile input ({}): {} requests to {} routes ({} not valid request targets), {} answered 5xx; by status: {:?}",
        h.backend,
        tried.get(),
        ENDPOINTS.len(),
        refused.get(),
        server_errors.get(),
        statuses.borrow()
    ));
    rt.block_on(h.finish());
}
