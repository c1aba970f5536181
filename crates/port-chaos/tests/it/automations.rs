//! Automations end to end against the real binary, with Port's documented examples:
//! notify a webhook when a run fails, approve a run when a condition holds (the
//! automation calls portd's own API), tear an environment down when its TTL timer
//! expires, and a kill -9 while events wait in the outbox
//! after which every automation has run exactly once.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use port_chaos::api::Api;
use port_chaos::portd::{Portd, PortdSettings};
use port_core::time::Timestamp;
use reqwest::Method;
use serde_json::{Value, json};

const CLIENT_ID: &str = "client-for-automations";
const CLIENT_SECRET: &str = "cs-Au7Tm2Ns9Qw4Er1Ty6Ui3Op8As5Df0Gh";

fn settings(dir: &Path) -> PortdSettings {
    PortdSettings {
        binary: port_chaos::portd::binary().expect("the portd binary"),
        data_dir: dir.join("data"),
        database_url: None,
        client_id: CLIENT_ID.to_owned(),
        client_secret: CLIENT_SECRET.to_owned(),
        log_filter: "info".to_owned(),
        log_file: dir.join("portd.log"),
        env: Vec::new(),
    }
}

/// A backend that records the JSON bodies it receives and answers 200.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Self {
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = bodies.clone();
        let app = axum::Router::new().fallback(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                axum::Json(json!({ "ok": true }))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, bodies, task }
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `check` until it returns something, for up to `within`.
async fn eventually<T>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn runs_of(api: &Api, action: &str) -> Vec<Value> {
    let answer = api
        .get(&format!(
            "/v1/actions/runs?version=v2&action={action}&limit=1000"
        ))
        .await
        .unwrap()
        .expect(200, "listing runs")
        .unwrap();
    answer["runs"].as_array().cloned().unwrap_or_default()
}

async fn create(api: &Api, path: &str, body: Value) -> Value {
    api.post(path, &body)
        .await
        .unwrap()
        .expect(201, path)
        .unwrap()
}

/// Keeps an access token to portd's own API as the organization secret `PORTD_TOKEN`,
/// for automations that call the API, as Port's examples do.
async fn keep_token_as_secret(api: &Api) {
    let token = api
        .post(
            "/v1/auth/access_token",
            &json!({ "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET }),
        )
        .await
        .unwrap()
        .expect(200, "a token")
        .unwrap()["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    create(
        api,
        "/v1/organization/secrets",
        json!({ "secretName": "PORTD_TOKEN", "secretValue": token }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_automation_examples_run_against_portd() {
    let dir = tempfile::tempdir().unwrap();
    let mut portd = Portd::spawn(&settings(dir.path())).unwrap();
    portd.ready(Duration::from_secs(60)).await.unwrap();
    let base = portd.base_url();
    let api = Api::login(&base, CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let receiver = Receiver::start().await;

    // A self-service action whose runs wait for approval, and one the team's backend
    // reports on.
    create(
        &api,
        "/v1/actions",
        json!({
            "identifier": "create_env",
            "title": "Create environment",
            "trigger": {
                "type": "self-service",
                "operation": "CREATE",
                "userInputs": { "properties": { "tier": { "type": "string" } } }
            },
            "invocationMethod": { "type": "WEBHOOK", "url": receiver.url },
            "requiredApproval": true
        }),
    )
    .await;
    create(
        &api,
        "/v1/actions",
        json!({
            "identifier": "deploy",
            "title": "Deploy",
            "trigger": {
                "type": "self-service",
                "operation": "CREATE",
                "userInputs": { "properties": {} }
            },
            "invocationMethod": { "type": "WEBHOOK", "url": receiver.url }
        }),
    )
    .await;

    // Port's "approve automatically" example: on RUN_CREATED, when the condition holds,
    // call the approval route of the API with a token kept as an organization secret.
    keep_token_as_secret(&api).await;
    create(
        &api,
        "/v1/actions",
        json!({
            "identifier": "approve_dev_envs",
            "title": "Approve development environments",
            "trigger": {
                "type": "automation",
                "event": { "type": "RUN_CREATED", "actionIdentifier": "create_env" },
                "condition": {
                    "type": "JQ",
                    "expressions": [".diff.after.properties.tier == \"dev\""],
                    "combinator": "and"
                }
            },
            "invocationMethod": {
                "type": "WEBHOOK",
                "url": format!("{base}/v1/actions/runs/{{{{ .event.context.runId }}}}/approval"),
                "method": "PATCH",
                "synchronized": true,
                "headers": { "Authorization": "Bearer {{ .secrets.PORTD_TOKEN }}" },
                "body": { "status": "APPROVE", "description": "Development environments need no review" }
            },
            "publish": true
        }),
    )
    .await;

    // Port's "notify when a run fails" example, on RUN_UPDATED.
    create(
        &api,
        "/v1/actions",
        json!({
            "identifier": "notify_failed_deploys",
            "title": "Tell the team about failed deploys",
            "trigger": {
                "type": "automation",
                "event": { "type": "RUN_UPDATED", "actionIdentifier": "deploy" },
                "condition": {
                    "type": "JQ",
                    "expressions": [
                        ".diff.before.status != \"FAILURE\"",
                        ".diff.after.status == \"FAILURE\""
                    ],
                    "combinator": "and"
                }
            },
            "invocationMethod": {
                "type": "WEBHOOK",
                "url": receiver.url,
                "body": {
                    "text": "Deploy {{ .event.diff.after.id }} failed: {{ .event.diff.after.statusLabel }}",
                    "runId": "{{ .event.diff.after.id }}"
                }
            },
            "publish": true
        }),
    )
    .await;

    // An automation cannot be executed by hand.
    let refused = api
        .post(
            "/v1/actions/notify_failed_deploys/runs",
            &json!({ "properties": {} }),
        )
        .await
        .unwrap();
    assert_eq!(refused.status, 422);
    assert_eq!(refused.body["error"], "run_non_self_service_error");

    let execute = async |tier: &str| {
        api.post(
            "/v1/actions/create_env/runs",
            &json!({ "properties": { "tier": tier } }),
        )
        .await
        .unwrap()
        .expect(202, "executing create_env (it waits for approval)")
        .unwrap()["run"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let dev = execute("dev").await;
    let prod = execute("prod").await;
    let approved = eventually(
        "the dev run's approval",
        Duration::from_secs(20),
        async || {
            let run = api
                .get(&format!("/v1/actions/runs/{dev}?version=v2"))
                .await
                .ok()?
                .body["run"]
                .clone();
            (run["status"] != "WAITING_FOR_APPROVAL").then_some(run)
        },
    )
    .await;
    assert_eq!(approved["status"], "IN_PROGRESS", "{approved:#}");
    assert_eq!(approved["approval"]["state"], "APPROVED", "{approved:#}");
    let automation_runs = eventually(
        "the approving run to end",
        Duration::from_secs(20),
        async || {
            let runs = runs_of(&api, "approve_dev_envs").await;
            (runs.len() == 1 && runs[0]["status"] == "SUCCESS").then_some(runs)
        },
    )
    .await;
    assert_eq!(automation_runs[0]["source"], "AUTOMATION");
    let prod_run = api
        .get(&format!("/v1/actions/runs/{prod}?version=v2"))
        .await
        .unwrap()
        .body["run"]
        .clone();
    assert_eq!(
        prod_run["status"], "WAITING_FOR_APPROVAL",
        "the condition does not hold for prod"
    );

    // A deploy that succeeds notifies nobody; one that fails does, once.
    let deploy = async || {
        api.post("/v1/actions/deploy/runs", &json!({ "properties": {} }))
            .await
            .unwrap()
            .expect(202, "executing deploy")
            .unwrap()["run"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let fine = deploy().await;
    let broken = deploy().await;
    for (run, status, label) in [
        (&fine, "SUCCESS", "Deployed"),
        (&broken, "FAILURE", "Image not found"),
    ] {
        api.send(
            Method::PATCH,
            &format!("/v1/actions/runs/{run}"),
            Some(&json!({ "status": status, "statusLabel": label })),
            &[],
        )
        .await
        .unwrap()
        .expect(200, "reporting the deploy")
        .unwrap();
    }
    let notice = eventually("the failure notice", Duration::from_secs(20), async || {
        receiver
            .bodies()
            .into_iter()
            .find(|b| b.get("text").is_some())
    })
    .await;
    assert_eq!(notice["runId"], broken.as_str());
    assert_eq!(
        notice["text"],
        format!("Deploy {broken} failed: Image not found")
    );
    // Give a second notice time to show up if one were coming.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let notices = receiver
        .bodies()
        .into_iter()
        .filter(|b| b.get("text").is_some())
        .count();
    assert_eq!(notices, 1);
    assert_eq!(runs_of(&api, "notify_failed_deploys").await.len(), 1);

    portd.terminate(Duration::from_secs(20)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_automation_runs_exactly_once_across_a_kill_9() {
    const ENTITIES: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path());
    let mut portd = Portd::spawn(&settings).unwrap();
    portd.ready(Duration::from_secs(60)).await.unwrap();
    let api = Api::login(&portd.base_url(), CLIENT_ID, CLIENT_SECRET)
        .await
        .unwrap();
    let receiver = Receiver::start().await;
    create(
        &api,
        "/v1/blueprints",
        json!({ "identifier": "service", "title": "Service", "schema": { "properties": {} } }),
    )
    .await;
    for identifier in ["on_service_created", "on_any_service_change"] {
        let event = if identifier == "on_service_created" {
            "ENTITY_CREATED"
        } else {
            "ANY_ENTITY_CHANGE"
        };
        create(
            &api,
            "/v1/actions",
            json!({
                "identifier": identifier,
                "trigger": {
                    "type": "automation",
                    "event": { "type": event, "blueprintIdentifier": "service" }
                },
                "invocationMethod": {
                    "type": "WEBHOOK",
                    "url": receiver.url,
                    "body": { "entity": "{{ .event.context.entityIdentifier }}" }
                },
                "publish": true
            }),
        )
        .await;
    }
    // Write the entities as fast as the API takes them and kill portd right after, so
    // events are left in the outbox (and some runs half done).
    for i in 0..ENTITIES {
        create(
            &api,
            "/v1/blueprints/service/entities",
            json!({ "identifier": format!("svc-{i:03}"), "title": format!("Service {i}") }),
        )
        .await;
    }
    portd.kill().unwrap();
    let mut portd = Portd::spawn(&settings).unwrap();
    portd.ready(Duration::from_secs(60)).await.unwrap();
    let api = Api::login(&portd.base_url(), CLIENT_ID, CLIENT_SECRET)
        .await
        .unwrap();
    for action in ["on_service_created", "on_any_service_change"] {
        let runs = eventually(
            &format!("{ENTITIES} runs of {action}"),
            Duration::from_secs(60),
            async || {
                let runs = runs_of(&api, action).await;
                (runs.len() >= ENTITIES).then_some(runs)
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let runs = if runs.len() == ENTITIES {
            runs_of(&api, action).await
        } else {
            runs
        };
        let mut per_entity: BTreeMap<String, usize> = BTreeMap::new();
        for run in &runs {
            let entity = run["payload"]["body"]["entity"]
                .as_str()
                .unwrap_or("?")
                .to_owned();
            *per_entity.entry(entity).or_default() += 1;
        }
        assert_eq!(runs.len(), ENTITIES, "{action}: {per_entity:?}");
        assert!(
            per_entity.values().all(|&n| n == 1),
            "{action}: {per_entity:?}"
        );
    }
    portd.terminate(Duration::from_secs(20)).unwrap();
}

/// Now, as portd writes time (same machine, same clock).
fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    Timestamp::from_unix_millis(i64::try_from(ms).unwrap())
}

async fn entity_exists(api: &Api, identifier: &str) -> bool {
    let answer = api
        .get(&format!("/v1/blueprints/environment/entities/{identifier}"))
        .await
        .unwrap();
    assert!(
        [200, 404].contains(&answer.status),
        "{}: {}",
        answer.status,
        answer.body
    );
    answer.status == 200
}

/// Port's "tear an environment down when its TTL expires" example: a `timer` property,
/// an automation on `TIMER_PROPERTY_EXPIRED` that deletes the entity through the API
/// (with a token kept as an organization secret). The run starts within a second of
/// the expiry, once, and a timer that expires while portd is down (killed) fires when
/// it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_ttl_timers_tear_environments_down_once_even_across_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path());
    let mut portd = Portd::spawn(&settings).unwrap();
    portd.ready(Duration::from_secs(60)).await.unwrap();
    let base = portd.base_url();
    let api = Api::login(&base, CLIENT_ID, CLIENT_SECRET).await.unwrap();
    create(
        &api,
        "/v1/blueprints",
        json!({
            "identifier": "environment",
            "title": "Environment",
            "schema": { "properties": {
                "ttl": { "type": "string", "format": "timer", "title": "TTL" }
            }}
        }),
    )
    .await;
    // A timer holds a time: anything else is refused like any malformed property.
    let refused = api
        .post(
            "/v1/blueprints/environment/entities",
            &json!({ "identifier": "bad", "properties": { "ttl": "tomorrow" } }),
        )
        .await
        .unwrap();
    assert_eq!(refused.status, 422, "{}", refused.body);

    keep_token_as_secret(&api).await;
    create(
        &api,
        "/v1/organization/secrets",
        json!({ "secretName": "PORTD_URL", "secretValue": base }),
    )
    .await;
    create(
        &api,
        "/v1/actions",
        json!({
            "identifier": "teardown_expired_envs",
            "title": "Tear down expired environments",
            "trigger": {
                "type": "automation",
                "event": {
                    "type": "TIMER_PROPERTY_EXPIRED",
                    "blueprintIdentifier": "environment",
                    "propertyIdentifier": "ttl"
                },
                "condition": {
                    "type": "JQ",
                    "expressions": [".context.propertyIdentifier == \"ttl\""],
                    "combinator": "and"
                }
            },
            "invocationMethod": {
                "type": "WEBHOOK",
                // portd's address is a secret too: the restarted portd listens elsewhere.
                "url": "{{ .secrets.PORTD_URL }}/v1/blueprints/{{ .event.context.blueprintIdentifier }}/entities/{{ .event.context.entityIdentifier }}",
                "method": "DELETE",
                "synchronized": true,
                "headers": { "Authorization": "Bearer {{ .secrets.PORTD_TOKEN }}" }
            },
            "publish": true
        }),
    )
    .await;

    // Expires in two seconds; its neighbour never does.
    let expiry = now().plus_millis(2_000);
    create(
        &api,
        "/v1/blueprints/environment/entities",
        json!({ "identifier": "env-a", "properties": { "ttl": expiry.to_string() } }),
    )
    .await;
    create(
        &api,
        "/v1/blueprints/environment/entities",
        json!({ "identifier": "env-forever", "properties": {} }),
    )
    .await;
    assert!(entity_exists(&api, "env-a").await);
    let runs = eventually(
        "the teardown of env-a",
        Duration::from_secs(15),
        async || {
            let runs = runs_of(&api, "teardown_expired_envs").await;
            (runs.len() == 1 && runs[0]["status"] == "SUCCESS").then_some(runs)
        },
    )
    .await;
    assert_eq!(runs[0]["source"], "AUTOMATION");
    let started = Timestamp::parse(runs[0]["createdAt"].as_str().unwrap()).unwrap();
    let late = started.unix_millis() - expiry.unix_millis();
    assert!(
        (0..=1_000).contains(&late),
        "the run started {late} ms after the expiry"
    );
    assert!(!entity_exists(&api, "env-a").await, "torn down");
    assert!(entity_exists(&api, "env-forever").await);

    // A timer that expires while portd is down fires when it is back, once.
    let expiry = now().plus_millis(1_500);
    create(
        &api,
        "/v1/blueprints/environment/entities",
        json!({ "identifier": "env-b", "properties": { "ttl": expiry.to_string() } }),
    )
    .await;
    portd.kill().unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let mut portd = Portd::spawn(&settings).unwrap();
    portd.ready(Duration::from_secs(60)).await.unwrap();
    let api = Api::login(&portd.base_url(), CLIENT_ID, CLIENT_SECRET)
        .await
        .unwrap();
    api.send(
        Method::PATCH,
        "/v1/organization/secrets/PORTD_URL",
        Some(&json!({ "secretValue": portd.base_url() })),
        &[],
    )
    .await
    .unwrap()
    .expect(200, "the new address")
    .unwrap();
    eventually(
        "the teardown of env-b",
        Duration::from_secs(15),
        async || (!entity_exists(&api, "env-b").await).then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let runs = runs_of(&api, "teardown_expired_envs").await;
    assert_eq!(runs.len(), 2, "one run per expiry: {runs:#?}");
    assert!(runs.iter().all(|r| r["status"] == "SUCCESS"), "{runs:#?}");
    assert!(entity_exists(&api, "env-forever").await);
    portd.terminate(Duration::from_secs(20)).unwrap();
}

/// Port's "update an entity when a run ends" example, with the `UPSERT_ENTITY`
/// backend: portd itself writes the entity the automation's templates render (merged
/// into what is there), bound to the automation's run, which ends with the outcome: a
/// write that cannot happen fails its run with Port's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_entity_automations_set_a_property_when_a_run_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut portd = Portd::spawn(&settings(dir.path())).unwrap();
    portd.ready(Duration::from_secs(60)).await.unwrap();
    let api = Api::login(&portd.base_url(), CLIENT_ID, CLIENT_SECRET)
        .await
        .unwrap();
    let receiver = Receiver::start().await;
    create(
        &api,
        "/v1/blueprints",
        json!({
            "identifier": "service",
            "title": "Service",
            "schema": { "properties": {
                "lastDeploy": { "type": "string" },
                "tier": { "type": "string" }
            }}
        }),
    )
    .await;
    create(
        &api,
        "/v1/blueprints/service/entities",
        json!({ "identifier": "svc-a", "properties": { "tier": "gold" } }),
    )
    .await;
    create(
        &api,
        "/v1/actions",
        json!({
            "identifier": "deploy",
            "trigger": {
                "type": "self-service",
                "operation": "DAY-2",
                "userInputs": { "properties": { "service": { "type": "string" } } }
            },
            "invocationMethod": { "type": "WEBHOOK", "url": receiver.url }
        }),
    )
    .await;
    for (identifier, blueprint) in [("record_deploys", "service"), ("record_nowhere", "nope")] {
        create(
            &api,
            "/v1/actions",
            json!({
                "identifier": identifier,
                "trigger": {
                    "type": "automation",
                    "event": { "type": "RUN_UPDATED", "actionIdentifier": "deploy" },
                    "condition": {
                        "type": "JQ",
                        "expressions": [
                            ".diff.before.status != \"SUCCESS\"",
                            ".diff.after.status == \"SUCCESS\""
                        ],
                        "combinator": "and"
                    }
                },
                "invocationMethod": {
                    "type": "UPSERT_ENTITY",
                    "blueprintIdentifier": blueprint,
                    "mapping": {
                        "identifier": "{{ .event.diff.after.properties.service }}",
                        "properties": { "lastDeploy": "{{ .event.diff.after.id }}" }
                    }
                },
                "publish": true
            }),
        )
        .await;
    }

    let run = api
        .post(
            "/v1/actions/deploy/runs",
            &json!({ "properties": { "service": "svc-a" } }),
        )
        .await
        .unwrap()
        .expect(202, "executing deploy")
        .unwrap()["run"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    api.send(
        Method::PATCH,
        &format!("/v1/actions/runs/{run}"),
        Some(&json!({ "status": "SUCCESS" })),
        &[],
    )
    .await
    .unwrap()
    .expect(200, "the deploy ends")
    .unwrap();

    let recorded = eventually(
        "the recording run to end",
        Duration::from_secs(20),
        async || {
            let runs = runs_of(&api, "record_deploys").await;
            (runs.len() == 1 && runs[0]["status"] != "IN_PROGRESS").then_some(runs)
        },
    )
    .await;
    assert_eq!(recorded[0]["status"], "SUCCESS", "{recorded:#?}");
    assert_eq!(recorded[0]["source"], "AUTOMATION");
    let entity = api
        .get("/v1/blueprints/service/entities/svc-a")
        .await
        .unwrap()
        .expect(200, "svc-a")
        .unwrap()["entity"]
        .clone();
    assert_eq!(entity["properties"]["lastDeploy"], run.as_str());
    assert_eq!(entity["properties"]["tier"], "gold", "merged, not replaced");
    // Bound to the automation's run.
    let recording_run = recorded[0]["id"].as_str().unwrap();
    let audits = api
        .get(&format!("/v1/audit-log?run_id={recording_run}"))
        .await
        .unwrap()
        .expect(200, "the run's audit log")
        .unwrap()["audits"]
        .clone();
    assert_eq!(audits.as_array().map(Vec::len), Some(1), "{audits:#}");
    assert_eq!(audits[0]["identifier"], "svc-a", "{audits:#}");

    let failed = eventually(
        "the run writing to a missing blueprint to end",
        Duration::from_secs(20),
        async || {
            let runs = runs_of(&api, "record_nowhere").await;
            (runs.len() == 1 && runs[0]["status"] != "IN_PROGRESS").then_some(runs)
        },
    )
    .await;
    assert_eq!(failed[0]["status"], "FAILURE", "{failed:#?}");
    assert_eq!(failed[0]["response"]["error"], "not_found", "{failed:#?}");
    portd.terminate(Duration::from_secs(20)).unwrap();
}
