//! The legacy invocation message must have exactly the seed's structure, and v2
//! templates must evaluate into the run's payload.

use port_core::ErrorKind;
use port_core::action::{Action, ActionDefinition, ActionMeta};
use port_core::catalog::{Entity, Stamp};
use port_core::id::{ActionId, BlueprintIdentifier, EntityIdentifier, OrgId, RunId};
use port_core::invocation::{Actor, InvocationInput, evaluate, legacy_message};
use port_core::ports::DeliveryMode;
use port_core::run::RunSource;
use port_core::time::Timestamp;
use serde_json::{Map, Value, json};

fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

fn seed_user() -> Actor {
    Actor {
        user_id: "auth0|638879fa62c686d381b36ecb".into(),
        email: Some("[email protected]".into()),
        first_name: Some("test".into()),
        last_name: Some("test".into()),
    }
}

fn v1_action(def: Value, id: &str, at: &str) -> Action {
    let microservice = BlueprintIdentifier::parse("microservice").unwrap();
    Action {
        meta: ActionMeta {
            id: ActionId::parse(id).unwrap(),
            created_at: ts(at),
            created_by: "auth0|638879fa62c686d381b36ecb".into(),
            updated_at: ts(at),
            updated_by: "auth0|638879fa62c686d381b36ecb".into(),
        },
        definition: ActionDefinition::from_v1(&def, &microservice).unwrap(),
    }
}

fn create_microservice() -> Action {
    v1_action(
        json!({
            "identifier": "create_microservice",
            "title": "Create Microservice",
            "userInputs": {"properties": {
                "name": {"title": "Service name", "type": "string"},
                "region": {"title": "Cloud Region", "type": "string"}
            }},
            "invocationMethod": {"url": "https://getport.io", "agent": false, "type": "WEBHOOK"},
            "trigger": "CREATE",
            "description": "Create new microservice"
        }),
        "action_ed2B0O9CbEYkuqvN",
        "2022-12-07T09:48:28.659Z",
    )
}

fn deploy_microservice() -> Action {
    v1_action(
        json!({
            "identifier": "deploy_microservice",
            "title": "Deploy Microservice",
            "userInputs": {"properties": {"environment": {"title": "Environment", "type": "string"}}},
            "invocationMethod": {"url": "https://getport.io", "agent": false, "type": "WEBHOOK"},
            "trigger": "DAY-2",
            "description": "Deploy the microservice in a specified environment"
        }),
        "action_AOLZfMmE3YUeBlMt",
        "2022-12-08T10:05:54.935Z",
    )
}

fn my_microservice() -> Entity {
    let mut properties = Map::new();
    properties.insert("region".into(), json!("eu-west-1"));
    Entity {
        org_id: OrgId::parse("org_7SDeR821bunhS8es").unwrap(),
        blueprint: BlueprintIdentifier::parse("microservice").unwrap(),
        identifier: EntityIdentifier::parse("my-microservice").unwrap(),
        title: Some("my-microservice".into()),
        icon: None,
        team: None,
        properties,
        relations: Map::new(),
        stamp: Stamp {
            created_at: ts("2022-12-07T15:25:28.677Z"),
            created_by: "KZ5zDPudPshQMShUb4cLopBEE1fNSJGE".into(),
            updated_at: ts("2022-12-07T15:30:24.660Z"),
            updated_by: "KZ5zDPudPshQMShUb4cLopBEE1fNSJGE".into(),
        },
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "mirrors InvocationInput's fields"
)]
fn input<'a>(
    org: &'a OrgId,
    action: &'a Action,
    run_id: &'a RunId,
    entity: Option<&'a Entity>,
    properties: &'a Map<String, Value>,
    actor: &'a Actor,
    at: Timestamp,
    empty: &'a Map<String, Value>,
) -> InvocationInput<'a> {
    InvocationInput {
        org_id: org,
        action,
        run_id,
        entity,
        properties,
        actor,
        origin: RunSource::Ui,
        at,
        secret_keys: &[],
        secrets: empty,
        event: None,
    }
}

/// The seed's CREATE invocation body, verbatim.
const SEED_CREATE_BODY: &str = r#"{"action":"create_microservice","resourceType":"run","status":"TRIGGERED","trigger":{"by":{"orgId":"org_7SDeR821bunhS8es","userId":"auth0|638879fa62c686d381b36ecb","user":{"email":"[email protected]","firstName":"test","lastName":"test","id":"auth0|638879fa62c686d381b36ecb"}},"origin":"UI","at":"2022-12-07T12:53:52.916Z"},"context":{"entity":null,"blueprint":"microservice","runId":"r_QOz6WoOB1Q2lmhZZ"},"payload":{"entity":null,"action":{"id":"action_ed2B0O9CbEYkuqvN","identifier":"create_microservice","title":"Create Microservice","userInputs":{"properties":{"name":{"title":"Service name","type":"string"},"region":{"title":"Cloud Region","type":"string"}}},"invocationMethod":{"url":"https://getport.io","agent":false,"type":"WEBHOOK"},"trigger":"CREATE","description":"Create new microservice","blueprint":"microservice","createdAt":"2022-12-07T09:48:28.659Z","createdBy":"auth0|638879fa62c686d381b36ecb","updatedAt":"2022-12-07T09:48:28.659Z","updatedBy":"auth0|638879fa62c686d381b36ecb"},"properties":{"name":"my-microservice","region":"eu-west-1"}}}"#;

#[test]
fn create_message_is_the_seeds_body_byte_for_byte() {
    let org = OrgId::parse("org_7SDeR821bunhS8es").unwrap();
    let action = create_microservice();
    let run_id = RunId::parse("r_QOz6WoOB1Q2lmhZZ").unwrap();
    let props = json!({"name": "my-microservice", "region": "eu-west-1"})
        .as_object()
        .unwrap()
        .clone();
    let actor = seed_user();
    let empty = Map::new();
    let message = legacy_message(&input(
        &org,
        &action,
        &run_id,
        None,
        &props,
        &actor,
        ts("2022-12-07T12:53:52.916Z"),
        &empty,
    ));
    assert_eq!(serde_json::to_string(&message).unwrap(), SEED_CREATE_BODY);
    insta::assert_json_snapshot!("legacy_message_create_microservice", message);
}

#[test]
fn day2_message_carries_the_full_entity() {
    let org = OrgId::parse("org_7SDeR821bunhS8es").unwrap();
    let action = deploy_microservice();
    let run_id = RunId::parse("r_z0nJYJv0wCm2ASTR").unwrap();
    let entity = my_microservice();
    let props = json!({"environment": "production"})
        .as_object()
        .unwrap()
        .clone();
    let actor = seed_user();
    let empty = Map::new();
    let message = legacy_message(&input(
        &org,
        &action,
        &run_id,
        Some(&entity),
        &props,
        &actor,
        ts("2022-12-08T10:07:09.886Z"),
        &empty,
    ));
    // The seed shows this body wrapped in an outer `payload`; Port's agent and docs
    // elsewhere use the unwrapped form, which is what portd sends.
    let seed: Value = serde_json::from_str(include_str!("data/seed_day2_body.json")).unwrap();
    assert_eq!(
        serde_json::to_string(&message).unwrap(),
        serde_json::to_string(&seed["payload"]).unwrap()
    );
    insta::assert_json_snapshot!("legacy_message_deploy_microservice", message);
}

#[test]
fn webhook_without_body_template_sends_the_legacy_message() {
    let org = OrgId::parse("org_7SDeR821bunhS8es").unwrap();
    let action = create_microservice();
    let run_id = RunId::parse("r_QOz6WoOB1Q2lmhZZ").unwrap();
    let props = Map::new();
    let actor = seed_user();
    let empty = Map::new();
    let evaluated = evaluate(&input(
        &org,
        &action,
        &run_id,
        None,
        &props,
        &actor,
        ts("2022-12-07T12:53:52.916Z"),
        &empty,
    ))
    .unwrap();
    assert_eq!(evaluated.delivery.mode, DeliveryMode::Webhook);
    assert_eq!(evaluated.payload["method"], "POST");
    assert_eq!(evaluated.payload["url"], "https://getport.io");
    assert_eq!(evaluated.payload["body"]["resourceType"], "run");
}

fn v2_action(invocation: Value) -> Action {
    Action {
        meta: ActionMeta {
            id: ActionId::parse("action_ed2B0O9CbEYkuqvN").unwrap(),
            created_at: ts("2022-12-07T09:48:28.659Z"),
            created_by: "me".into(),
            updated_at: ts("2022-12-07T09:48:28.659Z"),
            updated_by: "me".into(),
        },
        definition: ActionDefinition::from_v2(&json!({
            "identifier": "deploy",
            "trigger": {"type": "self-service", "operation": "CREATE", "userInputs": {"properties": {}}},
            "invocationMethod": invocation,
        }))
        .unwrap(),
    }
}

#[test]
fn v2_templates_evaluate_url_headers_and_body() {
    let org = OrgId::parse("org_7SDeR821bunhS8es").unwrap();
    let action = v2_action(json!({
        "type": "WEBHOOK",
        "url": "http://127.0.0.1:9/hooks/{{ .inputs.env }}",
        "method": "PUT",
        "synchronized": "{{ .inputs.env == \"prod\" }}",
        "headers": {"RUN_ID": "{{ .run.id }}", "X-Env": "{{ .inputs.env }}"},
        "body": {"{{ spreadValue() }}": "{{ .inputs }}", "port_context": {"runId": "{{ .run.id }}"}, "{{ null }}": "dropped"}
    }));
    let run_id = RunId::parse("r_QOz6WoOB1Q2lmhZZ").unwrap();
    let props = json!({"env": "prod"}).as_object().unwrap().clone();
    let actor = seed_user();
    let empty = Map::new();
    let evaluated = evaluate(&input(
        &org,
        &action,
        &run_id,
        None,
        &props,
        &actor,
        ts("2022-12-07T12:53:52.916Z"),
        &empty,
    ))
    .unwrap();
    assert_eq!(
        evaluated.payload,
        json!({
            "type": "WEBHOOK",
            "url": "http://127.0.0.1:9/hooks/prod",
            "agent": false,
            "synchronized": true,
            "method": "PUT",
            "headers": {"RUN_ID": "r_QOz6WoOB1Q2lmhZZ", "X-Env": "prod"},
            "body": {"env": "prod", "port_context": {"runId": "r_QOz6WoOB1Q2lmhZZ"}}
        })
    );
    assert!(evaluated.synchronized());
}

#[test]
fn template_failures_carry_ports_identifiers() {
    let org = OrgId::parse("org_7SDeR821bunhS8es").unwrap();
    let run_id = RunId::parse("r_QOz6WoOB1Q2lmhZZ").unwrap();
    let props = Map::new();
    let actor = seed_user();
    let empty = Map::new();
    let broken = v2_action(json!({"type": "WEBHOOK", "url": "http://x/{{ .inputs | }}"}));
    let err = evaluate(&input(
        &org,
        &broken,
        &run_id,
        None,
        &props,
        &actor,
        ts("2022-12-07T12:53:52.916Z"),
        &empty,
    ))
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::EvaluateInvocationMethodError);
    let not_a_url = v2_action(json!({"type": "WEBHOOK", "url": "{{ 42 }}"}));
    let err = evaluate(&input(
        &org,
        &not_a_url,
        &run_id,
        None,
        &props,
        &actor,
        ts("2022-12-07T12:53:52.916Z"),
        &empty,
    ))
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidEvaluatedInvocationMethod);
}
