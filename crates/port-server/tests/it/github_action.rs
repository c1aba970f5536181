//! port-github-action v1.7.10 against portd: every request the Action makes (its
//! method, path, query string, body bytes and headers, as `src/clients/port/*.ts` build
//! them with axios 1.13.2), in the order of its own integration tests, with the answers
//! snapshotted. The Action reads only a few keys of each answer; each test also checks
//! those, so a snapshot change that would break the Action fails plainly.

use axum::body::Body;
use axum::http::Method;
use serde_json::{Value, json};

use crate::support::{Harness, Reply};

/// What axios sends on every call, and the Action's own User-Agent: its client patches
/// `axios.get/post/put/delete` with `github-action/v1.0`, but not `axios.patch`.
const ACCEPT: &str = "application/json, text/plain, */*";
const ACCEPT_ENCODING: &str = "gzip, compress, deflate, br";
const ACTION_AGENT: &str = "github-action/v1.0";
const AXIOS_AGENT: &str = "axios/1.13.2";

/// The Action's blueprints and actions, as its test setup (`src/__tests__/utils/setup.ts`)
/// creates them.
async fn setup(h: &Harness) {
    h.post(
        "/v1/blueprints",
        json!({
            "identifier": "gh-action-test-bp2",
            "title": "GH Action Test BP 2",
            "icon": "Microservice",
            "schema": { "properties": { "str": { "type": "string" } }, "required": [] },
            "teamInheritance": { "path": "team" },
            "ownership": { "type": "Direct", "title": "team" }
        }),
    )
    .await
    .expect(201);
    h.post(
        "/v1/blueprints",
        json!({
            "identifier": "gh-action-test-bp",
            "title": "GH Action Test BP",
            "icon": "Microservice",
            "schema": {
                "properties": {
                    "text": { "type": "string" },
                    "number": { "type": "number" },
                    "boolean": { "type": "boolean" },
                    "array": { "type": "array" },
                    "object": { "type": "object" }
                },
                "required": []
            },
            "relations": {
                "gha-relation": { "title": "GHA Relation", "target": "gh-action-test-bp2", "many": false, "required": false }
            },
            "teamInheritance": { "path": "team" },
            "ownership": { "type": "Direct", "title": "team" }
        }),
    )
    .await
    .expect(201);
    h.post(
        "/v1/blueprints",
        json!({
            "identifier": "gh-action-test-bp-entity",
            "title": "GH Action Test BP Entity",
            "icon": "Microservice",
            "schema": {
                "properties": {
                    "text": { "type": "string" },
                    "number": { "type": "number" },
                    "boolean": { "type": "boolean" }
                },
                "required": []
            },
            "teamInheritance": { "path": "team" },
            "ownership": { "type": "Direct", "title": "team" }
        }),
    )
    .await
    .expect(201);
    for action in [
        json!({
            "identifier": "gh-action-test",
            "title": "GH Action Test",
            "icon": "DefaultBlueprint",
            "trigger": { "operation": "DELETE", "type": "self-service", "userInputs": { "properties": {} } },
            "invocationMethod": { "type": "KAFKA" }
        }),
        json!({
            "identifier": "gh-action-test-entity",
            "title": "GH Action Test Entity",
            "icon": "DefaultBlueprint",
            "trigger": {
                "operation": "DELETE",
                "blueprintIdentifier": "gh-action-test-bp-entity",
                "type": "self-service",
                "userInputs": { "properties": {} }
            },
            "invocationMethod": { "type": "KAFKA" }
        }),
    ] {
        h.post("/v1/actions", action).await.expect(201);
    }
}

/// The Action's client: a token from its own token request, then each call with the
/// headers axios and the Action set.
struct Action<'h> {
    h: &'h Harness,
    token: String,
}

impl<'h> Action<'h> {
    /// `getToken.ts`: `POST {baseUrl}/v1/auth/access_token` with `{clientId, clientSecret}`.
    async fn sign_in(h: &'h Harness) -> Self {
        let body = format!(
            r#"{{"clientId":"{}","clientSecret":"{}"}}"#,
            h.client_id, h.client_secret
        );
        let reply = h
            .raw(
                Method::POST,
                "/v1/auth/access_token",
                None,
                &[
                    ("accept", ACCEPT),
                    ("content-type", "application/json"),
                    ("user-agent", ACTION_AGENT),
                    ("accept-encoding", ACCEPT_ENCODING),
                ],
                Body::from(body),
            )
            .await
            .expect(200);
        Self {
            h,
            token: reply["accessToken"].as_str().unwrap().to_owned(),
        }
    }

    /// One call as axios makes it: a JSON body (compact, in the Action's key order) gets
    /// `Content-Type: application/json`; PATCH goes out with axios's own User-Agent.
    async fn call(&self, method: Method, uri: &str, body: Option<&str>) -> Reply {
        let agent = if method == Method::PATCH {
            AXIOS_AGENT
        } else {
            ACTION_AGENT
        };
        let mut headers = vec![
            ("accept", ACCEPT),
            ("user-agent", agent),
            ("accept-encoding", ACCEPT_ENCODING),
        ];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        self.h
            .raw(
                method,
                uri,
                Some(&self.token),
                &headers,
                body.map_or_else(Body::empty, |b| Body::from(b.to_owned())),
            )
            .await
    }
}

/// Ids, timestamps and the client id change from run to run.
fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_sort_maps(false);
    settings.set_prepend_module_to_snapshot(false);
    settings
}

macro_rules! snapshot {
    ($name:expr, $reply:expr) => {{
        let reply: &Reply = &$reply;
        let shown = json!({ "status": reply.status.as_u16(), "body": reply.body });
        settings().bind(|| {
            insta::assert_json_snapshot!($name, shown, {
                ".**.createdAt" => "[timestamp]",
                ".**.updatedAt" => "[timestamp]",
                ".**.endedAt" => insta::dynamic_redaction(|value, _| {
                    if value.as_str().is_some() { "[timestamp]".into() } else { value }
                }),
                ".**.createdBy" => "[client id]",
                ".**.updatedBy" => "[client id]",
                ".**.userId" => "[client id]",
                ".**.id" => "[id]",
                ".**.runId" => "[run id]",
            });
        });
    }};
}

/// The entities the Action's test setup seeds (`ensureTestEntity`: the Action's
/// `upsertEntity` with the entity spread first, then `blueprint`).
async fn seed_entities(action: &Action<'_>) {
    for (blueprint, body) in [
        (
            "gh-action-test-bp2",
            r#"{"identifier":"test_entity","title":"GH Action 2 Test Identity","team":["Test"],"properties":{"str":"foo"},"relations":{},"blueprint":"gh-action-test-bp2"}"#,
        ),
        (
            "gh-action-test-bp2",
            r#"{"identifier":"test","title":"GH Action Test Relation Target","team":["Test"],"properties":{"str":"relation-target"},"relations":{},"blueprint":"gh-action-test-bp2"}"#,
        ),
        (
            "gh-action-test-bp-entity",
            r#"{"identifier":"gh-action-test-bp-entity","title":"GH Action Test Entity","team":["Test"],"properties":{"text":"test","number":1,"boolean":true},"relations":{},"blueprint":"gh-action-test-bp-entity"}"#,
        ),
    ] {
        let uri = format!("/v1/blueprints/{blueprint}/entities?upsert=true&merge=true");
        action
            .call(Method::POST, &uri, Some(body))
            .await
            .expect(201);
    }
}

#[tokio::test]
async fn upsert_and_bulk_upsert() {
    let h = Harness::sqlite().await;
    setup(&h).await;
    let action = Action::sign_in(&h).await;
    seed_entities(&action).await;

    // UPSERT without `identifier` (its input is optional): Port makes one up.
    let created = action
        .call(
            Method::POST,
            "/v1/blueprints/gh-action-test-bp/entities?upsert=true&merge=true",
            Some(
                r#"{"title":"GH Action Test Identity","icon":"Microservice","blueprint":"gh-action-test-bp","properties":{"text":"test","number":1,"boolean":true,"array":[1,2],"object":{"foo":"bar"}},"team":["Test"],"relations":{"gha-relation":"test"}}"#,
            ),
        )
        .await;
    snapshot!("gha_upsert_auto_identifier", created);
    let identifier = created.body["entity"]["identifier"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(identifier.starts_with("e_"), "{identifier}");

    // UPSERT of an existing entity merges: `properties: {}` and `relations: {}` (the
    // inputs' defaults) keep what it had.
    let uri = "/v1/blueprints/gh-action-test-bp/entities?upsert=true&merge=true";
    let body = format!(
        r#"{{"identifier":"{identifier}","title":"Renamed","blueprint":"gh-action-test-bp","properties":{{}},"relations":{{}}}}"#
    );
    let merged = action.call(Method::POST, uri, Some(&body)).await;
    snapshot!("gha_upsert_merge", merged);
    assert_eq!(merged.status.as_u16(), 200);
    assert_eq!(merged.body["entity"]["properties"]["text"], "test");
    assert_eq!(merged.body["entity"]["relations"]["gha-relation"], "test");

    // A team input that is not JSON is sent as a string.
    let team = action
        .call(
            Method::POST,
            uri,
            Some(r#"{"identifier":"team-as-text","blueprint":"gh-action-test-bp","properties":{},"team":"Test","relations":{}}"#),
        )
        .await
        .expect(201);
    assert_eq!(team["entity"]["team"], "Test");

    // A relation to a missing entity: 404 unless createMissingRelatedEntities.
    let missing = r#"{"identifier":"needs-target","blueprint":"gh-action-test-bp","properties":{},"relations":{"gha-relation":"not-there-yet"}}"#;
    let refused = action.call(Method::POST, uri, Some(missing)).await;
    snapshot!("gha_upsert_missing_related", refused);
    let created = action
        .call(
            Method::POST,
            "/v1/blueprints/gh-action-test-bp/entities?upsert=true&merge=true&create_missing_related_entities=true",
            Some(missing),
        )
        .await
        .expect(201);
    assert_eq!(created["entity"]["identifier"], "needs-target");
    action
        .call(
            Method::GET,
            "/v1/blueprints/gh-action-test-bp2/entities/not-there-yet",
            None,
        )
        .await
        .expect(200);

    // An unknown relation key is refused (the Action's "relation id not found" case
    // expects a 4xx and fails the step).
    let unknown = action
        .call(
            Method::POST,
            uri,
            Some(r#"{"blueprint":"gh-action-test-bp","properties":{},"relations":{"invalidRelation":"dummyTarget"}}"#),
        )
        .await;
    assert!(unknown.status.is_client_error(), "{:?}", unknown.status);

    // BULK_UPSERT: one UPSERT per entity, in order, each entity's blueprint in the URL.
    let mut identifiers = Vec::new();
    for body in [
        r#"{"identifier":"bulk-1","blueprint":"gh-action-test-bp2","properties":{"str":"one"}}"#,
        r#"{"identifier":"bulk-2","title":"Two","blueprint":"gh-action-test-bp","properties":{"number":2},"relations":{"gha-relation":"bulk-1"}}"#,
    ] {
        let blueprint = serde_json::from_str::<Value>(body).unwrap()["blueprint"]
            .as_str()
            .unwrap()
            .to_owned();
        let reply = action
            .call(
                Method::POST,
                &format!("/v1/blueprints/{blueprint}/entities?upsert=true&merge=true"),
                Some(body),
            )
            .await
            .expect(201);
        identifiers.push(reply["entity"]["identifier"].as_str().unwrap().to_owned());
    }
    assert_eq!(identifiers, ["bulk-1", "bulk-2"]);
}

#[tokio::test]
async fn get_with_and_without_include() {
    let h = Harness::sqlite().await;
    setup(&h).await;
    let action = Action::sign_in(&h).await;
    seed_entities(&action).await;

    // The Action builds its output from identifier, title, blueprint, properties, team,
    // relations and scorecards of `entity`.
    let whole = action
        .call(
            Method::GET,
            "/v1/blueprints/gh-action-test-bp2/entities/test_entity",
            None,
        )
        .await;
    snapshot!("gha_get", whole);
    let entity = &whole.body["entity"];
    assert_eq!(entity["blueprint"], "gh-action-test-bp2");
    assert_eq!(entity["identifier"], "test_entity");
    assert_eq!(entity["title"], "GH Action 2 Test Identity");
    assert_eq!(entity["properties"], json!({ "str": "foo" }));
    assert_eq!(entity["team"], json!(["Test"]));
    assert_eq!(entity["relations"], json!({}));

    // `include: identifier` (one value) and `include: '  properties.str  ,  identifier  ,  title  '`
    // (split, trimmed and repeated by the Action).
    let one = action
        .call(
            Method::GET,
            "/v1/blueprints/gh-action-test-bp2/entities/test_entity?include=identifier",
            None,
        )
        .await;
    snapshot!("gha_get_include_one", one);
    assert_eq!(one.body["entity"], json!({ "identifier": "test_entity" }));
    let several = action
        .call(
            Method::GET,
            "/v1/blueprints/gh-action-test-bp2/entities/test_entity?include=properties.str&include=identifier&include=title",
            None,
        )
        .await;
    snapshot!("gha_get_include_several", several);
    assert_eq!(
        several.body["entity"],
        json!({ "identifier": "test_entity", "title": "GH Action 2 Test Identity", "properties": { "str": "foo" } })
    );

    // The identifier goes through encodeURIComponent.
    action
        .call(
            Method::POST,
            "/v1/blueprints/gh-action-test-bp2/entities?upsert=true&merge=true",
            Some(r#"{"identifier":"team/svc@v1","blueprint":"gh-action-test-bp2","properties":{},"relations":{}}"#),
        )
        .await
        .expect(201);
    let encoded = action
        .call(
            Method::GET,
            "/v1/blueprints/gh-action-test-bp2/entities/team%2Fsvc%40v1",
            None,
        )
        .await
        .expect(200);
    assert_eq!(encoded["entity"]["identifier"], "team/svc@v1");

    // "entity not exists": a 404 the Action reports as the step's failure.
    let missing = action
        .call(
            Method::GET,
            "/v1/blueprints/invalidBlueprint/entities/invalidIdentifier",
            None,
        )
        .await;
    snapshot!("gha_get_missing", missing);
}

#[tokio::test]
async fn search_across_blueprints() {
    let h = Harness::sqlite().await;
    setup(&h).await;
    let action = Action::sign_in(&h).await;
    seed_entities(&action).await;

    // The Action's own search cases: a query that finds nothing, without and with
    // `include` (one value, several).
    let nothing = r#"{"rules":[{"operator":"=","value":"not_exists_entity","property":"$identifier"}],"combinator":"and"}"#;
    for uri in [
        "/v1/entities/search",
        "/v1/entities/search?include=identifier",
        "/v1/entities/search?include=properties.str&include=identifier&include=blueprint",
    ] {
        let reply = action
            .call(Method::POST, uri, Some(nothing))
            .await
            .expect(200);
        assert_eq!(reply["entities"], json!([]), "{uri}");
    }

    // A search over two blueprints, as users write them in `query`.
    let found = action
        .call(
            Method::POST,
            "/v1/entities/search",
            Some(r#"{"combinator":"and","rules":[{"property":"$blueprint","operator":"in","value":["gh-action-test-bp2","gh-action-test-bp-entity"]},{"combinator":"or","rules":[{"property":"str","operator":"=","value":"foo"},{"property":"boolean","operator":"=","value":true}]}]}"#),
        )
        .await;
    snapshot!("gha_search", found);
    let found: Vec<(&str, &str)> = found.body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["blueprint"].as_str().unwrap(),
                e["identifier"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("gh-action-test-bp-entity", "gh-action-test-bp-entity"),
            ("gh-action-test-bp2", "test_entity")
        ]
    );

    // With `include`, only those parts (Ocean asks for blueprint and identifier).
    let projected = action
        .call(
            Method::POST,
            "/v1/entities/search?include=properties.str&include=identifier&include=blueprint",
            Some(r#"{"rules":[{"operator":"beginsWith","value":"test","property":"$identifier"}],"combinator":"and"}"#),
        )
        .await;
    snapshot!("gha_search_include", projected);
    assert_eq!(
        projected.body["entities"],
        json!([
            { "identifier": "test", "blueprint": "gh-action-test-bp2", "properties": { "str": "relation-target" } },
            { "identifier": "test_entity", "blueprint": "gh-action-test-bp2", "properties": { "str": "foo" } }
        ])
    );

    // A malformed query is the user's 422, naming the rule.
    let bad = action
        .call(
            Method::POST,
            "/v1/entities/search",
            Some(r#"{"rules":[{"operator":"~","value":"x","property":"$identifier"}],"combinator":"and"}"#),
        )
        .await;
    snapshot!("gha_search_bad_operator", bad);
}

#[tokio::test]
async fn runs_patches_logs_and_deletes() {
    let h = Harness::sqlite().await;
    setup(&h).await;
    let action = Action::sign_in(&h).await;
    seed_entities(&action).await;

    // CREATE_RUN, without and with an entity.
    let run = action
        .call(
            Method::POST,
            "/v1/actions/gh-action-test/runs",
            Some(r#"{"properties":{}}"#),
        )
        .await;
    snapshot!("gha_create_run", run);
    let run_id = run.body["run"]["id"].as_str().unwrap().to_owned();
    let on_entity = action
        .call(
            Method::POST,
            "/v1/actions/gh-action-test-entity/runs",
            Some(r#"{"properties":{},"entity":"gh-action-test-bp-entity"}"#),
        )
        .await
        .expect(202);
    assert_eq!(
        on_entity["run"]["entity"]["identifier"],
        "gh-action-test-bp-entity"
    );

    // UPSERT and DELETE bound to the run with `run_id`; the Action's test then reads
    // the audit log with its own parameters.
    let body = r#"{"identifier":"gh-action-test-bp-entity","title":"GH Action Test Entity with RunId","icon":"Microservice","blueprint":"gh-action-test-bp","properties":{"text":"test","number":1,"boolean":true},"relations":{}}"#;
    action
        .call(
            Method::POST,
            &format!(
                "/v1/blueprints/gh-action-test-bp/entities?upsert=true&merge=true&run_id={run_id}"
            ),
            Some(body),
        )
        .await
        .expect(201);
    let audits = action
        .call(
            Method::GET,
            &format!("/v1/audit-log?resources=entity&run_id={run_id}&includes=context"),
            None,
        )
        .await
        .expect(200);
    assert_eq!(audits["audits"].as_array().unwrap().len(), 1);
    assert_eq!(
        audits["audits"][0]["context"]["entity"],
        "gh-action-test-bp-entity"
    );

    // PATCH_RUN: the log line first (the Action reads runLog.message and runLog.runId),
    // then the PATCH with its redundant `runId` query parameter (it reads run.id).
    let log = action
        .call(
            Method::POST,
            &format!("/v1/actions/runs/{run_id}/logs"),
            Some(r#"{"message":"Test message"}"#),
        )
        .await;
    snapshot!("gha_patch_run_log", log);
    assert_eq!(log.body["runLog"]["message"], "Test message");
    assert_eq!(log.body["runLog"]["runId"], run_id.as_str());
    let patched = action
        .call(
            Method::PATCH,
            &format!("/v1/actions/runs/{run_id}?runId={run_id}"),
            Some(r#"{"status":"SUCCESS","link":["https://github.com/org/repo/actions/runs/1"],"summary":"Done","externalRunId":"1"}"#),
        )
        .await;
    snapshot!("gha_patch_run", patched);
    assert_eq!(patched.body["run"]["id"], run_id.as_str());
    // A second status on an ended run: the 422 the Action's tests expect.
    let again = action
        .call(
            Method::PATCH,
            &format!("/v1/actions/runs/{run_id}?runId={run_id}"),
            Some(r#"{"status":"FAILURE"}"#),
        )
        .await;
    snapshot!("gha_patch_run_ended", again);
    // A `link` input that is not JSON goes as a string.
    let second = action
        .call(
            Method::POST,
            "/v1/actions/gh-action-test/runs",
            Some(r#"{"properties":{}}"#),
        )
        .await
        .expect(202);
    let second = second["run"]["id"].as_str().unwrap();
    let linked = action
        .call(
            Method::PATCH,
            &format!("/v1/actions/runs/{second}?runId={second}"),
            Some(r#"{"link":"https://example.com/build/2","summary":"Building"}"#),
        )
        .await
        .expect(200);
    assert_eq!(linked["run"]["id"], second);

    // DELETE, always with delete_dependents; with a run that ended, the binding is
    // refused (400 run_exhausted on entity routes).
    let ended = action
        .call(
            Method::DELETE,
            &format!(
                "/v1/blueprints/gh-action-test-bp/entities/gh-action-test-bp-entity?delete_dependents=false&run_id={run_id}"
            ),
            None,
        )
        .await;
    snapshot!("gha_delete_bound_to_ended_run", ended);
    let deleted = action
        .call(
            Method::DELETE,
            &format!(
                "/v1/blueprints/gh-action-test-bp/entities/gh-action-test-bp-entity?delete_dependents=false&run_id={second}"
            ),
            None,
        )
        .await;
    snapshot!("gha_delete", deleted);
    // The relation target has a dependent: refused unless delete_dependents=true.
    action
        .call(
            Method::POST,
            "/v1/blueprints/gh-action-test-bp/entities?upsert=true&merge=true",
            Some(r#"{"identifier":"dependent","blueprint":"gh-action-test-bp","properties":{},"relations":{"gha-relation":"test"}}"#),
        )
        .await
        .expect(201);
    let refused = action
        .call(
            Method::DELETE,
            "/v1/blueprints/gh-action-test-bp2/entities/test?delete_dependents=false",
            None,
        )
        .await;
    snapshot!("gha_delete_has_dependents", refused);
    action
        .call(
            Method::DELETE,
            "/v1/blueprints/gh-action-test-bp2/entities/test?delete_dependents=true",
            None,
        )
        .await
        .expect(200);
    action
        .call(
            Method::GET,
            "/v1/blueprints/gh-action-test-bp/entities/dependent",
            None,
        )
        .await
        .expect_error(404, "not_found");
}
