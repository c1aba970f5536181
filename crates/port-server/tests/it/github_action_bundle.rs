//! The real port-github-action bundle (`dist/index.js` of v1.7.10) run by node against a
//! real portd over loopback, its inputs in `INPUT_*` variables and its outputs read
//! from the `GITHUB_OUTPUT` file, as a GitHub runner runs it.
//!
//! The bundle is on no package registry (the npm package is private), and its code may
//! not be committed here; so this test runs when `PORTD_GHA_BUNDLE` names a copy of
//! `dist/index.js` (with the `sourcemap-register.js` it requires beside it) and `node`
//! (20 or later) is on `PATH`, and prints `skipped` otherwise. `github_action.rs` replays the same requests byte for byte without it.

use std::collections::HashMap;
use std::path::PathBuf;

use port_server::testing::TestServer;
use serde_json::{Value, json};

const BUNDLE_VAR: &str = "PORTD_GHA_BUNDLE";

fn bundle() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os(BUNDLE_VAR)?);
    let node = std::process::Command::new("node").arg("--version").output();
    (path.is_file() && node.is_ok_and(|o| o.status.success())).then_some(path)
}

/// What one step of the Action did: its exit code, outputs and log.
#[derive(Debug)]
struct Step {
    success: bool,
    outputs: HashMap<String, String>,
    log: String,
}

/// Parses `name<<DELIMITER\nvalue\nDELIMITER` blocks, as `@actions/core` writes them.
fn parse_outputs(text: &str) -> HashMap<String, String> {
    let mut outputs = HashMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some((name, delimiter)) = line.split_once("<<") else {
            continue;
        };
        let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delimiter).collect();
        outputs.insert(name.to_owned(), value.join("\n"));
    }
    outputs
}

async fn run_step(bundle: &PathBuf, server: &TestServer, inputs: &[(&str, &str)]) -> Step {
    let dir = tempfile::tempdir().unwrap();
    let output_file = dir.path().join("output");
    std::fs::write(&output_file, "").unwrap();
    let mut command = std::process::Command::new("node");
    command
        .arg(bundle)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GITHUB_OUTPUT", &output_file)
        .env("INPUT_BASEURL", &server.base_url)
        .env("INPUT_CLIENTID", &server.client_id)
        .env("INPUT_CLIENTSECRET", &server.client_secret)
        // The defaults action.yml gives.
        .env("INPUT_OPERATION", "UPSERT")
        .env("INPUT_PROPERTIES", "{}")
        .env("INPUT_DELETE_DEPENDENTS", "false")
        .env("INPUT_CREATEMISSINGRELATEDENTITIES", "false");
    for (name, value) in inputs {
        command.env(format!("INPUT_{}", name.to_uppercase()), value);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    Step {
        success: output.status.success(),
        outputs: parse_outputs(&std::fs::read_to_string(&output_file).unwrap()),
        log: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

#[tokio::test]
async fn the_real_action_bundle_runs_every_operation() {
    let Some(bundle) = bundle() else {
        println!(
            "skipped: set {BUNDLE_VAR} to port-github-action's dist/index.js (v1.7.10) and put node on PATH"
        );
        return;
    };
    let server = TestServer::start().await.unwrap();
    let token = server.token().await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("{}{path}", server.base_url))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    for blueprint in [
        json!({ "identifier": "gh-action-test-bp2", "title": "BP 2", "schema": { "properties": { "str": { "type": "string" } } } }),
        json!({
            "identifier": "gh-action-test-bp", "title": "BP",
            "schema": { "properties": { "text": { "type": "string" }, "number": { "type": "number" } } },
            "relations": { "gha-relation": { "title": "GHA Relation", "target": "gh-action-test-bp2", "many": false, "required": false } }
        }),
    ] {
        assert_eq!(
            post("/v1/blueprints", blueprint).await.unwrap().status(),
            201
        );
    }
    let action = json!({
        "identifier": "gh-action-test", "title": "GH Action Test",
        "trigger": { "operation": "CREATE", "type": "self-service", "userInputs": { "properties": {} } },
        "invocationMethod": { "type": "KAFKA" }
    });
    assert_eq!(post("/v1/actions", action).await.unwrap().status(), 201);

    let step = |inputs: &'static [(&'static str, &'static str)]| run_step(&bundle, &server, inputs);
    let ok = |step: &Step| assert!(step.success, "the step failed:\n{}", step.log);

    // UPSERT with createMissingRelatedEntities: the related entity is made too.
    let upsert = step(&[
        ("operation", "UPSERT"),
        ("identifier", "svc"),
        ("title", "Service"),
        ("blueprint", "gh-action-test-bp"),
        ("team", "[\"Test\"]"),
        ("properties", "{\"text\": \"hello\", \"number\": 1}"),
        ("relations", "{\"gha-relation\": \"target\"}"),
        ("createMissingRelatedEntities", "true"),
    ])
    .await;
    ok(&upsert);
    assert_eq!(upsert.outputs["identifier"], "svc");

    // UPSERT without an identifier.
    let generated = step(&[
        ("operation", "UPSERT"),
        ("blueprint", "gh-action-test-bp2"),
        ("properties", "{\"str\": \"foo\"}"),
    ])
    .await;
    ok(&generated);
    assert!(generated.outputs["identifier"].starts_with("e_"));

    // GET, whole and with include.
    let get = step(&[
        ("operation", "GET"),
        ("identifier", "svc"),
        ("blueprint", "gh-action-test-bp"),
    ])
    .await;
    ok(&get);
    let entity: Value = serde_json::from_str(&get.outputs["entity"]).unwrap();
    assert_eq!(
        entity,
        json!({
            "identifier": "svc", "title": "Service", "blueprint": "gh-action-test-bp",
            "properties": { "text": "hello", "number": 1 }, "team": ["Test"],
            "relations": { "gha-relation": "target" }
        })
    );
    let included = step(&[
        ("operation", "GET"),
        ("identifier", "svc"),
        ("blueprint", "gh-action-test-bp"),
        ("include", " properties.text , identifier "),
    ])
    .await;
    ok(&included);
    let entity: Value = serde_json::from_str(&included.outputs["entity"]).unwrap();
    assert_eq!(entity["identifier"], "svc");
    assert_eq!(entity["properties"], json!({ "text": "hello" }));
    assert_eq!(entity.get("title"), None);

    // SEARCH across blueprints, with include.
    let search = step(&[
        ("operation", "SEARCH"),
        (
            "query",
            "{ \"rules\": [{ \"operator\": \"in\", \"value\": [\"svc\", \"target\"], \"property\": \"$identifier\"}], \"combinator\": \"and\" }",
        ),
        ("include", "identifier,blueprint"),
    ])
    .await;
    ok(&search);
    let entities: Value = serde_json::from_str(&search.outputs["entities"]).unwrap();
    assert_eq!(
        entities,
        json!([
            { "identifier": "svc", "blueprint": "gh-action-test-bp" },
            { "identifier": "target", "blueprint": "gh-action-test-bp2" }
        ])
    );

    // BULK_UPSERT.
    let bulk = step(&[
        ("operation", "BULK_UPSERT"),
        (
            "entities",
            "[{\"identifier\": \"b1\", \"blueprint\": \"gh-action-test-bp2\", \"properties\": {}}, {\"identifier\": \"b2\", \"blueprint\": \"gh-action-test-bp\", \"properties\": {\"number\": 2}}]",
        ),
    ])
    .await;
    ok(&bulk);
    assert_eq!(bulk.outputs["identifiers"], "[\"b1\",\"b2\"]");

    // CREATE_RUN, then PATCH_RUN with a log line and a status.
    let created = step(&[("operation", "CREATE_RUN"), ("action", "gh-action-test")]).await;
    ok(&created);
    let run_id = created.outputs["runId"].clone();
    assert!(run_id.starts_with("r_"), "{run_id}");
    let run_id: &'static str = Box::leak(run_id.into_boxed_str());
    let patched = step(Box::leak(Box::new([
        ("operation", "PATCH_RUN"),
        ("runId", run_id),
        ("logMessage", "Deployed"),
        ("status", "SUCCESS"),
        ("link", "[\"https://example.com/build/1\"]"),
        ("summary", "All good"),
    ])))
    .await;
    ok(&patched);
    assert_eq!(patched.outputs["runId"], run_id);
    assert_eq!(patched.outputs["logMessage"], "Deployed");

    // DELETE.
    let deleted = step(&[
        ("operation", "DELETE"),
        ("identifier", "svc"),
        ("blueprint", "gh-action-test-bp"),
    ])
    .await;
    ok(&deleted);
    // And a failing step: the entity is gone.
    let missing = step(&[
        ("operation", "GET"),
        ("identifier", "svc"),
        ("blueprint", "gh-action-test-bp"),
    ])
    .await;
    assert!(!missing.success, "{}", missing.log);
    assert!(missing.log.contains("404"), "{}", missing.log);
}
