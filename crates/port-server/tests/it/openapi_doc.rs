//! The OpenAPI document lists every route the router serves, and the router serves
//! every route of the table with the documented method.

use axum::body::Body;
use axum::http::Method;
use port_server::ENDPOINTS;
use serde_json::Value;

use crate::support::Harness;

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "x"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_route_is_documented_and_served() {
    let h = Harness::memory().await;
    let doc = h
        .send(Method::GET, "/openapi.json", None, None)
        .await
        .expect(200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for endpoint in ENDPOINTS {
        let operation = &paths[endpoint.path][endpoint.method.openapi_key()];
        assert!(
            operation.is_object(),
            "{} {} is not documented",
            endpoint.method.as_str(),
            endpoint.path
        );
        assert!(
            operation["responses"][endpoint.success.to_string()].is_object(),
            "{endpoint:?}"
        );
        operations += 1;

        // The router answers the documented method on the path (anything but a routing
        // 404 or a 405 proves the route exists).
        let method = Method::from_bytes(endpoint.method.as_str().as_bytes()).unwrap();
        let reply = h
            .raw(
                method,
                &concrete(endpoint.path),
                Some(&h.token),
                &[],
                Body::from("{}"),
            )
            .await;
        assert_ne!(reply.status.as_u16(), 405, "{endpoint:?}: {}", reply.body);
        let routing_miss = reply.status.as_u16() == 404
            && reply.body["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("route "));
        assert!(!routing_miss, "{endpoint:?} is not routed: {}", reply.body);
    }
    let documented: usize = paths
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented, operations,
        "the document has operations the table does not"
    );

    // Every schema reference resolves.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let name = reference.strip_prefix("#/components/schemas/").unwrap();
        assert!(schemas.contains_key(name), "unresolved {reference}");
    }
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "$ref" {
                    out.push(v.as_str().unwrap().to_owned());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// A harness with a blueprint, actions, an entity and a run, and the path of an
/// endpoint with its parameters filled with those.
async fn seeded() -> (Harness, String) {
    let h = Harness::memory().await;
    h.seed_catalog().await;
    h.post(
        "/v1/blueprints/microservice/entities",
        serde_json::json!({ "identifier": "svc", "title": "Svc", "properties": {} }),
    )
    .await
    .expect(201);
    h.post(
        "/v1/integration",
        serde_json::json!({ "installationId": "my-ocean-integration", "config": {} }),
    )
    .await
    .expect(201);
    h.post(
        "/v1/organization/secrets",
        serde_json::json!({ "secretName": "API_TOKEN", "secretValue": "value", "description": "d" }),
    )
    .await
    .expect(201);
    let run = h.create_run().await;
    h.post(
        "/v1/users/invite",
        serde_json::json!({ "invitee": { "email": "ada@example.io", "roles": ["Admin"] } }),
    )
    .await
    .expect(200);
    h.post(
        "/v1/teams",
        serde_json::json!({ "name": "Platform", "users": ["ada@example.io"] }),
    )
    .await
    .expect(200);
    (h, run)
}

fn filled(path: &str, run: &str) -> String {
    path.replace("{blueprint_identifier}", "microservice")
        .replace("{action_identifier}", "deploy_microservice")
        .replace("{entity_identifier}", "svc")
        .replace("{run_id}", run)
        .replace("{identifier}", "my-ocean-integration")
        .replace("{secret_name}", "API_TOKEN")
        .replace("{user_email}", "ada@example.io")
        .replace("{name}", "Platform")
}

fn documented_query_schema<'a>(doc: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["in"] == "query" && p["name"] == name)
        .map(|p| &p["schema"])
        .unwrap_or_else(|| panic!("{method} {path}: ?{name} is not documented"))
}

/// Every query parameter the server refuses values of says which values it takes
/// (enum, range, pattern or a non-string type), and its route documents the 422;
/// every value the document allows at the edges is accepted.
#[tokio::test]
async fn validated_query_parameters_document_their_constraints() {
    let (h, run) = seeded().await;
    let doc = h
        .send(Method::GET, "/openapi.json", None, None)
        .await
        .expect(200);
    let mut checked = 0;
    for endpoint in ENDPOINTS.iter().filter(|e| e.authenticated) {
        if endpoint.operation_id == "streamRunLogs" {
            continue;
        }
        let method = Method::from_bytes(endpoint.method.as_str().as_bytes()).unwrap();
        let key = endpoint.method.openapi_key();
        for param in endpoint.query {
            let schema = documented_query_schema(&doc, endpoint.path, key, param.name);
            let scalar = if param.repeated {
                &schema["items"]
            } else {
                schema
            };
            // A value no constrained parameter takes, and the empty value.
            for bad in ["not-a-valid-value", ""] {
                let uri = format!("{}?{}={bad}", filled(endpoint.path, &run), param.name);
                let reply = h
                    .raw(method.clone(), &uri, Some(&h.token), &[], Body::from("{}"))
                    .await;
                let refused = reply.status.as_u16() == 422
                    && reply.body["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with(&format!("querystring.{}", param.name)));
                if refused {
                    checked += 1;
                    let constrained = scalar["type"] != "string"
                        || scalar.get("enum").is_some()
                        || scalar.get("pattern").is_some()
                        || scalar.get("format").is_some();
                    assert!(
                        constrained,
                        "{endpoint:?}: ?{}={bad} is refused but the document allows it: {schema}",
                        param.name
                    );
                    assert!(
                        doc["paths"][endpoint.path][key]["responses"]["422"].is_object(),
                        "{endpoint:?} answers 422 but does not document it"
                    );
                }
            }
            // The documented values are accepted (as far as the query goes).
            let mut good: Vec<String> = scalar["enum"]
                .as_array()
                .map(|values| {
                    values
                        .iter()
                        .map(|v| v.as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            for edge in ["minimum", "maximum"] {
                if let Some(n) = scalar[edge].as_u64() {
                    good.push(n.to_string());
                }
            }
            if scalar["type"] == "boolean" {
                good.extend(["true".to_owned(), "false".to_owned()]);
            }
            for value in good {
                let uri = format!("{}?{}={value}", filled(endpoint.path, &run), param.name);
                let reply = h
                    .raw(method.clone(), &uri, Some(&h.token), &[], Body::from("{}"))
                    .await;
                let message = reply.body["message"].as_str().unwrap_or_default();
                assert!(
                    !message.starts_with(&format!("querystring.{}", param.name)),
                    "{endpoint:?}: documented ?{}={value} is refused: {message}",
                    param.name
                );
            }
        }
    }
    assert!(checked >= 15, "only {checked} refusals seen");
    // The ranges the server checks are the documented ones.
    let limit = documented_query_schema(&doc, "/v1/actions/runs", "get", "limit");
    assert_eq!(
        (limit["minimum"].as_u64(), limit["maximum"].as_u64()),
        (Some(1), Some(1000))
    );
    let limit = documented_query_schema(&doc, "/v1/actions/runs/{run_id}/logs", "get", "limit");
    assert_eq!(
        (limit["minimum"].as_u64(), limit["maximum"].as_u64()),
        (Some(1), Some(50))
    );
    let version = documented_query_schema(&doc, "/v1/actions/runs/{run_id}", "get", "version");
    assert_eq!(version["enum"], serde_json::json!(["v1", "v2"]));
}

/// The statuses schemathesis saw undocumented (2026-11-27) are documented.
#[tokio::test]
async fn every_status_a_route_answers_is_documented() {
    let h = Harness::memory().await;
    let doc = h
        .send(Method::GET, "/openapi.json", None, None)
        .await
        .expect(200);
    let expected: &[(&str, &str, &[u16])] = &[
        ("/v1/actions", "get", &[422]),
        ("/v1/actions/{action_identifier}", "get", &[422]),
        ("/v1/actions/runs", "get", &[422]),
        ("/v1/actions/runs/{run_id}", "get", &[422]),
        ("/v1/actions/runs/{run_id}", "patch", &[409, 422]),
        (
            "/v1/actions/runs/{run_id}/approval",
            "patch",
            &[403, 409, 422],
        ),
        ("/v1/actions/runs/{run_id}/approvers", "get", &[422]),
        ("/v1/actions/runs/{run_id}/logs", "get", &[422]),
        ("/v1/actions/runs/{run_id}/logs", "post", &[409, 422]),
        ("/v1/actions/runs/{run_id}/logging", "get", &[422]),
        (
            "/v1/actions/runs/{run_id}/deliveries/redeliver",
            "post",
            &[422],
        ),
        ("/v1/audit-log", "get", &[403, 422]),
        ("/v1/users/invite", "post", &[403, 409, 422]),
        ("/v1/users/{user_email}", "delete", &[403, 422]),
        ("/v1/teams", "post", &[403, 409, 422]),
        (
            "/v1/actions/runs/{run_id}/withdraw",
            "post",
            &[403, 409, 422],
        ),
        ("/v1/auth/credentials", "post", &[403, 422]),
        ("/v1/blueprints", "post", &[409, 422]),
        (
            "/v1/blueprints/{blueprint_identifier}/entities",
            "post",
            &[200, 201, 400, 409, 422],
        ),
        (
            "/v1/blueprints/{blueprint_identifier}/entities/{entity_identifier}",
            "delete",
            &[400, 403, 422],
        ),
        ("/v1/actions", "post", &[409, 422]),
        ("/v1/actions/{action_identifier}/runs", "post", &[403, 422]),
    ];
    for (path, method, statuses) in expected {
        let responses = &doc["paths"][path][method]["responses"];
        for status in *statuses {
            assert!(
                responses[status.to_string()].is_object(),
                "{method} {path} does not document {status}: {responses}"
            );
        }
    }
    // The Idempotency-Key constraints the server checks.
    let key = doc["paths"]["/v1/actions/{action_identifier}/runs"]["post"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .unwrap();
    assert_eq!(key["schema"]["minLength"], 1);
    assert_eq!(key["schema"]["maxLength"], 255);
    assert!(key["schema"]["pattern"].is_string());
}

/// Validates `instance` against the document's component `name`.
#[track_caller]
fn assert_matches_component(doc: &Value, name: &str, instance: &Value) {
    let schema = serde_json::json!({
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"],
    });
    let validator = jsonschema::draft202012::new(&schema)
        .unwrap_or_else(|e| panic!("{name} does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:#?}\n{instance:#}");
}

/// The legacy action routes answer the v1 shape and document it (schemathesis found
/// them documented with the v2 `Action`).
#[tokio::test]
async fn legacy_and_current_responses_match_their_documented_schemas() {
    let (h, run) = seeded().await;
    let doc = h
        .send(Method::GET, "/openapi.json", None, None)
        .await
        .expect(200);
    // A person's own credentials are listed to people only (an organization credential
    // gets 403).
    for endpoint in ENDPOINTS.iter().filter(|e| {
        e.method == port_server::HttpMethod::Get
            && e.authenticated
            && e.operation_id != "streamRunLogs"
            && e.operation_id != "listPersonalCredentials"
    }) {
        let mut uri = filled(endpoint.path, &run);
        if endpoint.operation_id == "getAuditLog" {
            uri.push_str(&format!("?run_id={run}"));
        }
        let body = h.get(&uri).await.expect(endpoint.success);
        let schema = &doc["paths"][endpoint.path]["get"]["responses"][endpoint.success.to_string()]
            ["content"]["application/json"]["schema"]["$ref"];
        let name = schema
            .as_str()
            .unwrap()
            .strip_prefix("#/components/schemas/")
            .unwrap();
        assert_matches_component(&doc, name, &body);
    }
    let legacy = h
        .get("/v1/blueprints/microservice/actions")
        .await
        .expect(200);
    assert!(
        legacy["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["trigger"].is_string()),
        "{legacy}"
    );
}

/// A NUL in a query value is refused (422 naming it) wherever the route reads its
/// query, and every route that may answer so documents the 422.
#[tokio::test]
async fn nul_in_a_query_is_refused_and_documented() {
    let (h, run) = seeded().await;
    let doc = h
        .send(Method::GET, "/openapi.json", None, None)
        .await
        .expect(200);
    let mut refused = 0;
    for endpoint in ENDPOINTS.iter().filter(|e| e.authenticated) {
        if endpoint.operation_id == "streamRunLogs" {
            continue;
        }
        let method = Method::from_bytes(endpoint.method.as_str().as_bytes()).unwrap();
        let key = endpoint.method.openapi_key();
        let names = endpoint
            .query
            .iter()
            .map(|p| p.name)
            .chain(["undocumented"]);
        for name in names {
            let uri = format!("{}?{name}=a%00b", filled(endpoint.path, &run));
            let reply = h
                .raw(method.clone(), &uri, Some(&h.token), &[], Body::from("{}"))
                .await;
            assert!(reply.status.as_u16() < 500, "{endpoint:?}: {reply:?}");
            if reply.status.as_u16() == 422 {
                // Routes with a body may refuse `{}` first.
                let message = reply.body["message"].as_str().unwrap_or_default();
                if message.starts_with("querystring") {
                    refused += 1;
                    assert_eq!(
                        message,
                        format!("querystring.{name}: must not contain NUL (U+0000)"),
                        "{endpoint:?}"
                    );
                }
                assert!(
                    doc["paths"][endpoint.path][key]["responses"]["422"].is_object(),
                    "{endpoint:?} answers 422 to ?{name}=a%00b but does not document it"
                );
            }
        }
    }
    assert!(refused > 10, "only {refused} refusals");
}

/// Every body refuses NUL in its text and keys (422), so the document says so: every
/// free-text string has a pattern, and free-form values are `NulFreeJson`. Without it,
/// schemathesis generates NUL and reports the 422 as valid data refused.
#[tokio::test]
async fn the_document_says_bodies_may_not_hold_nul() {
    let h = Harness::memory().await;
    let doc = h.get("/openapi.json").await.expect(200);
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("NulFreeJson"));
    fn open_strings(value: &Value, at: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if map.get("type") == Some(&Value::String("string".into()))
                    && !["pattern", "enum", "const", "format"]
                        .iter()
                        .any(|k| map.contains_key(*k))
                {
                    out.push(at.to_owned());
                }
                for (key, inner) in map {
                    open_strings(inner, &format!("{at}/{key}"), out);
                }
            }
            Value::Array(items) => {
                for (i, inner) in items.iter().enumerate() {
                    open_strings(inner, &format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut open = Vec::new();
    open_strings(
        &doc["components"]["schemas"],
        "#/components/schemas",
        &mut open,
    );
    assert!(open.is_empty(), "strings that could hold NUL: {open:?}");

    let nul_key = serde_json::json!({ "title": "T", "schema": { "properties": { "a\u{0}": { "type": "string" } } } });
    let compiled = jsonschema::options()
        .with_resource(
            "urn:portd",
            jsonschema::Resource::from_contents(doc.clone()).unwrap(),
        )
        .build(&serde_json::json!({ "$ref": "urn:portd#/components/schemas/Blueprint" }))
        .unwrap();
    assert!(!compiled.is_valid(&nul_key), "a NUL key must be invalid");
}
