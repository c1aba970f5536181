//! The storage conformance suite: every function takes any `Arc<dyn Store>` and checks
//! the semantics the ports promise. `tests/backends.rs` runs each one against SQLite,
//! PostgreSQL and port-core's `MemoryStore`, so the fake provably behaves like the real
//! stores.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, ensure};
use port_core::action::InvocationKind;
use port_core::action::{Action, ActionDefinition, ActionMeta};
use port_core::catalog::{AffectedEntity, Blueprint, Entity, EntityOperation, Stamp};
use port_core::claim::{ClaimLimits, InFlight};
use port_core::destination::Destination;
use port_core::error::{ErrorKind, StoreError};
use port_core::id::{
    ActionId, ActionIdentifier, BlueprintIdentifier, DeliveryId, EntityIdentifier,
    IntegrationIdentifier, LogId, OrgId, RunId,
};
use port_core::integration::Integration;
use port_core::ports::{
    AgentClaim, ClientSecret, CreateRunOutcome, Credential, Delivery, DeliveryAttempt,
    DeliveryMode, DeliveryState, EntityDeletion, EntityWriteMode, IdGenerator, IdempotencyKey,
    NewDelivery, Organization, RunFilter, Store,
};
use port_core::run::{
    ActionRef, ApprovalPolicy, FinalStatus, NewRun, Outcome, Reference, Run, RunCommand, RunPatch,
    RunSource, RunState, RunStatus, start, transition,
};
use port_core::run_log::{NewRunLog, RunLog};
use port_core::testing::seed::{CREATE_MICROSERVICE, CREATE_PAYLOAD_ACTION, DEPLOY_MICROSERVICE};
use port_core::testing::{FixedClock, test_ids};
use port_core::time::Timestamp;
use serde_json::{Map, Value, json};

mod blueprint_events;
pub use blueprint_events::blueprint_deletion_records_entity_events;
mod events;
pub use events::{
    concurrent_event_claimers, entity_change_events, event_claims_are_fair_across_organizations,
    event_leases, run_change_events,
};
mod people;
pub use people::{
    action_permissions, audit_trail, deleting_a_user_removes_what_is_theirs, sessions_expire,
    team_rename_keeps_members, users_and_teams, users_are_per_organization,
};
mod search;
pub use search::{entity_scans, entity_search_budget, entity_search_semantics};
mod secrets;
pub use secrets::{organization_secrets, organization_secrets_are_isolated};
mod timers;
pub use timers::{concurrent_timer_firers, entity_timers, timers_fire_fairly_across_organizations};

type Shared = Arc<dyn Store>;

/// 2023-11-14T22:13:20Z: the base of every test's timeline.
const T0: i64 = 1_700_000_000_000;
const HOUR: i64 = 60 * 60 * 1000;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(T0 + offset_ms)
}

fn ids() -> IdGenerator {
    test_ids(Arc::new(FixedClock::new(at(0))))
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn bp(id: &str) -> BlueprintIdentifier {
    BlueprintIdentifier::parse(id).expect("valid blueprint identifier")
}

fn ent(id: &str) -> EntityIdentifier {
    EntityIdentifier::parse(id).expect("valid entity identifier")
}

fn act(id: &str) -> ActionIdentifier {
    ActionIdentifier::parse(id).expect("valid action identifier")
}

fn stamp(t: Timestamp, by: &str) -> Stamp {
    Stamp {
        created_at: t,
        created_by: by.into(),
        updated_at: t,
        updated_by: by.into(),
    }
}

fn is_already_exists<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::AlreadyExists(_)))
}

fn is_conflict<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict(_)))
}

async fn new_org(store: &dyn Store, ids: &IdGenerator, name: &str) -> Result<OrgId> {
    let id: OrgId = ids.next();
    store
        .create_organization(&Organization {
            id: id.clone(),
            name: name.into(),
            created_at: at(0),
        })
        .await?;
    Ok(id)
}

/// A run as the execute service would build it.
fn new_run(ids: &IdGenerator, org: &OrgId, action: &str, now: Timestamp) -> Run {
    start(
        NewRun {
            id: ids.next(),
            org_id: org.clone(),
            properties: obj(json!({ "name": "my-microservice", "region": "eu-west-1" })),
            source: RunSource::Ui,
            required_approval: Value::Bool(false),
            approval_policy: ApprovalPolicy::NotRequired,
            payload: Some(
                json!({ "type": "WEBHOOK", "url": "https://getport.io", "agent": false }),
            ),
            action: ActionRef {
                identifier: act(action),
                title: Some("Title".into()),
                icon: None,
                deleted: false,
            },
            blueprint: Some(Reference {
                identifier: "microservice".into(),
                title: Some("Service".into()),
                icon: Some("Microservice".into()),
                deleted: false,
            }),
            entity: None,
            synchronized: false,
            created_by: "auth0|638879fa62c686d381b36ecb".into(),
            impersonated_by: None,
            chain_depth: 0,
        },
        now,
    )
    .run
}

fn new_delivery(ids: &IdGenerator, run: &Run, mode: DeliveryMode, due: Timestamp) -> NewDelivery {
    NewDelivery {
        id: ids.next(),
        org_id: run.org_id.clone(),
        run_id: run.id.clone(),
        mode,
        request: json!({ "type": "WEBHOOK", "url": "https://example.com/hook", "method": "POST", "body": { "runId": run.id } }),
        synchronized: false,
        installation_id: None,
        created_at: due,
        next_attempt_at: due,
    }
}

/// A claim of every unbound agent delivery, as portd's runners make it.
fn unbound_claim(owner: &str, now: Timestamp, visibility_ms: i64, limit: u32) -> AgentClaim<'_> {
    AgentClaim {
        owner,
        installation_id: None,
        invocation_type: None,
        exclude_actions: &[],
        now,
        visibility_ms,
        limit,
    }
}

async fn create(store: &dyn Store, run: &Run, delivery: Option<&NewDelivery>) -> Result<()> {
    let outcome = store.create_run(run, delivery, None).await?;
    ensure!(
        outcome == CreateRunOutcome::Created,
        "expected Created, got {outcome:?}"
    );
    Ok(())
}

fn log(ids: &IdGenerator, run: &Run, message: &str, t: Timestamp) -> NewRunLog {
    NewRunLog::new(ids.next(), run.id.clone(), message, t, "runner")
}

fn run_ids(runs: &[Run]) -> Vec<RunId> {
    runs.iter().map(|r| r.id.clone()).collect()
}

fn seqs(logs: &[RunLog]) -> Vec<u64> {
    logs.iter().map(|l| l.seq).collect()
}

async fn delivery(
    store: &dyn Store,
    org: &OrgId,
    run: &RunId,
    id: &DeliveryId,
) -> Result<(Delivery, Vec<DeliveryAttempt>)> {
    store
        .deliveries_of_run(org, run)
        .await?
        .into_iter()
        .find(|(d, _)| &d.id == id)
        .ok_or_else(|| anyhow!("delivery {id} not found"))
}

// ---------------------------------------------------------------------------------------
// Organizations and credentials
// ---------------------------------------------------------------------------------------

pub async fn org_and_credentials(store: Shared) -> Result<()> {
    let ids = ids();
    let org = Organization {
        id: ids.next(),
        name: "Acme".into(),
        created_at: at(0),
    };
    store.create_organization(&org).await?;
    assert_eq!(store.get_organization(&org.id).await?, Some(org.clone()));
    assert!(is_already_exists(&store.create_organization(&org).await));
    assert_eq!(store.get_organization(&ids.next()).await?, None);

    let secret = "s3cr3t-never-in-messages";
    let later = Credential {
        org_id: org.id.clone(),
        client_id: "client-b".into(),
        client_secret: ClientSecret::new(secret),
        created_at: at(10),
        user: None,
    };
    let first = Credential {
        org_id: org.id.clone(),
        client_id: "client-z".into(),
        client_secret: ClientSecret::new("other"),
        created_at: at(5),
        user: None,
    };
    store.add_credential(&later).await?;
    store.add_credential(&first).await?;
    assert_eq!(
        store.credentials(&org.id).await?,
        vec![first.clone(), later.clone()],
        "oldest first"
    );
    let dup = store.add_credential(&later).await;
    assert!(is_already_exists(&dup), "{dup:?}");
    assert!(
        !format!("{dup:?}").contains(secret),
        "no secret in errors: {dup:?}"
    );
    let orphan = Credential {
        org_id: ids.next(),
        ..first.clone()
    };
    let orphan = Credential {
        client_id: "client-orphan".into(),
        ..orphan
    };
    assert!(matches!(
        store.add_credential(&orphan).await,
        Err(StoreError::Other(_))
    ));

    let found = store
        .find_credential("client-b")
        .await?
        .context("credential found")?;
    assert_eq!(found, later);
    assert_eq!(found.client_secret.expose(), secret);
    assert_eq!(store.find_credential("nobody").await?, None);
    assert_eq!(store.count_credentials().await?, 2);

    let other = new_org(&*store, &ids, "Other").await?;
    let theirs = Credential {
        org_id: other.clone(),
        client_id: "client-other".into(),
        client_secret: ClientSecret::new("x"),
        created_at: at(0),
        user: None,
    };
    store.add_credential(&theirs).await?;
    assert_eq!(
        store.count_credentials().await?,
        3,
        "counted across organizations"
    );
    assert_eq!(store.credentials(&other).await?, vec![theirs]);
    assert_eq!(store.credentials(&org.id).await?.len(), 2);

    assert!(
        !store.delete_credential(&org.id, "client-other").await?,
        "another organization's credential is not found"
    );
    assert!(store.delete_credential(&other, "client-other").await?);
    assert!(!store.delete_credential(&other, "client-other").await?);
    assert_eq!(store.find_credential("client-other").await?, None);
    assert_eq!(store.count_credentials().await?, 2);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Blueprints, entities, actions
// ---------------------------------------------------------------------------------------

fn microservice_blueprint(org: &OrgId, t: Timestamp) -> Blueprint {
    // The seed's blueprint, key order as written.
    let definition = obj(json!({
        "description": "This blueprint represents service in our software catalog",
        "title": "Service",
        "icon": "Microservice",
        "schema": { "properties": { "region": { "type": "string", "title": "Region" } }, "required": [] },
        "mirrorProperties": {},
        "calculationProperties": {},
        "relations": {}
    }));
    Blueprint {
        org_id: org.clone(),
        identifier: bp("microservice"),
        title: Some("Service".into()),
        definition,
        stamp: stamp(t, "auth0|638879fa62c686d381b36ecb"),
    }
}

fn entity(org: &OrgId, blueprint: &str, id: &str, t: Timestamp) -> Entity {
    Entity {
        org_id: org.clone(),
        blueprint: bp(blueprint),
        identifier: ent(id),
        title: Some(id.into()),
        icon: None,
        team: Some(json!(["platform", "sre"])),
        properties: obj(
            json!({ "region": "eu-west-1", "a": 1, "nested": { "z": null, "b": [true] } }),
        ),
        relations: obj(json!({ "owner": "team-a" })),
        stamp: stamp(t, "KZ5zDPudPshQMShUb4cLopBEE1fNSJGE"),
    }
}

fn seed_action(v1: &str, id: &str, created: &str) -> Result<Action> {
    let value: Value = serde_json::from_str(v1)?;
    let definition = ActionDefinition::from_v1(&value, &bp("microservice"))?;
    let t = Timestamp::parse(created)?;
    Ok(Action {
        meta: ActionMeta {
            id: ActionId::parse(id)?,
            created_at: t,
            created_by: "auth0|638879fa62c686d381b36ecb".into(),
            updated_at: t,
            updated_by: "auth0|638879fa62c686d381b36ecb".into(),
        },
        definition,
    })
}

fn v2_action(ids: &IdGenerator, value: Value, t: Timestamp) -> Result<Action> {
    Ok(Action {
        meta: ActionMeta {
            id: ids.next(),
            created_at: t,
            created_by: "me".into(),
            updated_at: t,
            updated_by: "me".into(),
        },
        definition: ActionDefinition::from_v2(&value)?,
    })
}

fn unbound_action(ids: &IdGenerator, identifier: &str, t: Timestamp) -> Result<Action> {
    v2_action(
        ids,
        json!({
            "identifier": identifier,
            "trigger": {
                "type": "automation",
                "event": { "type": "ENTITY_CREATED", "blueprintIdentifier": "microservice" },
                "condition": { "type": "JQ", "expressions": [], "combinator": "and" }
            },
            "invocationMethod": { "type": "KAFKA" },
            "publish": true,
            "x-custom": { "b": 1, "a": 2 }
        }),
        t,
    )
}

pub async fn blueprint_crud(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let micro = microservice_blueprint(&org, at(10));
    store.create_blueprint(&micro).await?;
    let got = store
        .get_blueprint(&org, &micro.identifier)
        .await?
        .context("blueprint stored")?;
    assert_eq!(got, micro);
    assert_eq!(
        Value::Object(got.definition.clone()).to_string(),
        Value::Object(micro.definition.clone()).to_string(),
        "key order survives"
    );
    assert!(is_already_exists(&store.create_blueprint(&micro).await));

    let mut older = microservice_blueprint(&org, at(5));
    older.identifier = bp("service/legacy");
    older.title = None;
    store.create_blueprint(&older).await?;
    let listed: Vec<_> = store
        .list_blueprints(&org)
        .await?
        .into_iter()
        .map(|b| b.identifier)
        .collect();
    assert_eq!(
        listed,
        vec![older.identifier.clone(), micro.identifier.clone()],
        "oldest first"
    );

    let mut renamed = micro.clone();
    renamed.title = Some("Microservice".into());
    renamed
        .definition
        .insert("title".into(), json!("Microservice"));
    renamed.stamp.updated_at = at(20);
    renamed.stamp.updated_by = "someone-else".into();
    store.update_blueprint(&renamed).await?;
    assert_eq!(
        store.get_blueprint(&org, &micro.identifier).await?,
        Some(renamed.clone())
    );
    let mut ghost = micro.clone();
    ghost.identifier = bp("ghost");
    assert!(
        is_conflict(&store.update_blueprint(&ghost).await),
        "updating a missing blueprint"
    );

    // Deleting a blueprint takes its entities and its blueprint-bound actions along.
    for id in ["a", "b"] {
        store
            .put_entity(
                &entity(&org, "microservice", id, at(30)),
                EntityWriteMode::CreateOnly,
                None,
                &[],
            )
            .await?;
    }
    store
        .put_entity(
            &entity(&org, "service/legacy", "kept", at(30)),
            EntityWriteMode::CreateOnly,
            None,
            &[],
        )
        .await?;
    let create = seed_action(
        CREATE_MICROSERVICE,
        "action_ed2B0O9CbEYkuqvN",
        "2022-12-07T09:48:28.659Z",
    )?;
    let deploy = seed_action(
        DEPLOY_MICROSERVICE,
        "action_AOLZfMmE3YUeBlMt",
        "2022-12-08T10:05:54.935Z",
    )?;
    let unbound = unbound_action(&ids, "on_create", at(40))?;
    let mut legacy_bound = v2_action(
        &ids,
        json!({
            "identifier": "legacy_op",
            "trigger": { "type": "self-service", "operation": "DAY-2", "blueprintIdentifier": "service/legacy",
                         "userInputs": { "properties": {} } },
            "invocationMethod": { "type": "WEBHOOK", "url": "https://example.com" }
        }),
        at(41),
    )?;
    legacy_bound.meta.updated_by = "x".into();
    for action in [&create, &deploy, &unbound, &legacy_bound] {
        store.create_action(&org, action).await?;
    }
    assert!(
        store
            .delete_blueprint(&org, &micro.identifier, "deleter", at(50))
            .await?
    );
    assert_eq!(store.get_blueprint(&org, &micro.identifier).await?, None);
    assert!(
        store
            .list_entities(&org, &micro.identifier)
            .await?
            .is_empty()
    );
    assert_eq!(store.list_entities(&org, &older.identifier).await?.len(), 1);
    let remaining: BTreeSet<String> = store
        .list_actions(&org)
        .await?
        .into_iter()
        .map(|a| a.definition.identifier.to_string())
        .collect();
    assert_eq!(
        remaining,
        BTreeSet::from(["legacy_op".to_owned(), "on_create".to_owned()])
    );
    assert!(
        !store
            .delete_blueprint(&org, &micro.identifier, "deleter", at(50))
            .await?,
        "already gone"
    );
    assert_eq!(store.list_blueprints(&org).await?, vec![older]);
    Ok(())
}

pub async fn entities_and_affected_records(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let run_id: RunId = ids.next();
    let other_run: RunId = ids.next();
    let record =
        |e: &Entity, operation: EntityOperation, t: Timestamp, run: &RunId| AffectedEntity {
            org_id: org.clone(),
            run_id: run.clone(),
            blueprint: e.blueprint.clone(),
            entity: e.identifier.clone(),
            operation,
            at: t,
            by: "KZ5zDPudPshQMShUb4cLopBEE1fNSJGE".into(),
            snapshot: e.to_json(),
        };
    fn deletion(a: &AffectedEntity) -> EntityDeletion<'_> {
        EntityDeletion {
            by: "KZ5zDPudPshQMShUb4cLopBEE1fNSJGE",
            at: a.at,
            affected: Some(a),
        }
    }

    let mut e = entity(&org, "microservice", "my-microservice", at(0));
    e.team = None;
    let created = record(&e, EntityOperation::Create, at(1), &run_id);
    assert!(
        store
            .put_entity(&e, EntityWriteMode::CreateOnly, Some(&created), &[])
            .await?,
        "created"
    );
    assert_eq!(
        store.get_entity(&org, &e.blueprint, &e.identifier).await?,
        Some(e.clone())
    );

    // Create-only refuses an existing entity and writes nothing, not even its record.
    let refused = record(&e, EntityOperation::Create, at(2), &run_id);
    assert!(is_already_exists(
        &store
            .put_entity(&e, EntityWriteMode::CreateOnly, Some(&refused), &[])
            .await
    ));

    let mut changed = e.clone();
    changed
        .properties
        .insert("region".into(), json!("us-east-1"));
    changed.team = Some(Value::Null);
    changed.icon = Some("Service".into());
    changed.stamp.updated_at = at(3);
    let updated = record(&changed, EntityOperation::Update, at(3), &run_id);
    assert!(
        !store
            .put_entity(&changed, EntityWriteMode::Upsert, Some(&updated), &[])
            .await?,
        "replaced"
    );
    assert_eq!(
        store.get_entity(&org, &e.blueprint, &e.identifier).await?,
        Some(changed.clone())
    );

    let fresh = entity(&org, "microservice", "second", at(4));
    // Two records at the same instant keep the order they were written in.
    let fresh_record = record(&fresh, EntityOperation::Create, at(3), &run_id);
    assert!(
        store
            .put_entity(&fresh, EntityWriteMode::Upsert, Some(&fresh_record), &[])
            .await?,
        "upsert creates"
    );
    let unrelated = entity(&org, "microservice", "third", at(5));
    let unrelated_record = record(&unrelated, EntityOperation::Create, at(0), &other_run);
    store
        .put_entity(
            &unrelated,
            EntityWriteMode::Upsert,
            Some(&unrelated_record),
            &[],
        )
        .await?;
    store
        .put_entity(
            &entity(&org, "other", "elsewhere", at(5)),
            EntityWriteMode::Upsert,
            None,
            &[],
        )
        .await?;

    let listed: Vec<_> = store
        .list_entities(&org, &bp("microservice"))
        .await?
        .into_iter()
        .map(|e| e.identifier.to_string())
        .collect();
    assert_eq!(listed, ["my-microservice", "second", "third"]);

    let deleted = record(&changed, EntityOperation::Delete, at(9), &run_id);
    assert!(
        store
            .delete_entity(&org, &e.blueprint, &e.identifier, &deletion(&deleted))
            .await?
    );
    assert_eq!(
        store.get_entity(&org, &e.blueprint, &e.identifier).await?,
        None
    );
    let nothing = record(&changed, EntityOperation::Delete, at(10), &run_id);
    assert!(
        !store
            .delete_entity(&org, &e.blueprint, &e.identifier, &deletion(&nothing))
            .await?
    );

    assert_eq!(
        store.affected_entities(&org, &run_id).await?,
        vec![created, updated, fresh_record, deleted],
        "oldest first, refused writes left no record"
    );
    assert_eq!(
        store.affected_entities(&org, &other_run).await?,
        vec![unrelated_record]
    );
    Ok(())
}

pub async fn actions_round_trip(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let create = seed_action(
        CREATE_MICROSERVICE,
        "action_ed2B0O9CbEYkuqvN",
        "2022-12-07T09:48:28.659Z",
    )?;
    let deploy = seed_action(
        DEPLOY_MICROSERVICE,
        "action_AOLZfMmE3YUeBlMt",
        "2022-12-08T10:05:54.935Z",
    )?;
    let automation = unbound_action(&ids, "on_create", at(0))?;
    store.create_action(&org, &deploy).await?;
    store.create_action(&org, &create).await?;
    store.create_action(&org, &automation).await?;
    assert!(is_already_exists(&store.create_action(&org, &create).await));

    let got = store
        .get_action(&org, &act("create_microservice"))
        .await?
        .context("stored")?;
    assert_eq!(got, create);
    // Read back, it renders exactly as the seed's invocation payload shows it.
    let expected: Value = serde_json::from_str(CREATE_PAYLOAD_ACTION)?;
    assert_eq!(
        got.to_v1_json().map(|v| v.to_string()),
        Some(expected.to_string())
    );
    let got = store
        .get_action(&org, &act("on_create"))
        .await?
        .context("stored")?;
    assert_eq!(
        got.to_v2_json().to_string(),
        automation.to_v2_json().to_string()
    );

    let listed: Vec<_> = store.list_actions(&org).await?;
    assert_eq!(
        listed,
        vec![create.clone(), deploy.clone(), automation.clone()],
        "oldest first"
    );

    let mut renamed = create.clone();
    renamed.definition.title = Some("Create a microservice".into());
    renamed.meta.updated_at = at(1);
    renamed.meta.updated_by = "editor".into();
    store.update_action(&org, &renamed).await?;
    assert_eq!(
        store.get_action(&org, &act("create_microservice")).await?,
        Some(renamed)
    );
    let ghost = unbound_action(&ids, "ghost", at(0))?;
    assert!(is_conflict(&store.update_action(&org, &ghost).await));

    assert!(
        store
            .delete_action(&org, &act("deploy_microservice"))
            .await?
    );
    assert_eq!(
        store.get_action(&org, &act("deploy_microservice")).await?,
        None
    );
    assert!(
        !store
            .delete_action(&org, &act("deploy_microservice"))
            .await?
    );
    assert_eq!(store.list_actions(&org).await?.len(), 2);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------

pub async fn runs_create_get_and_filter(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let other = new_org(&*store, &ids, "Other").await?;

    // r1: CREATE from the UI by alice, in progress.
    let mut r1 = new_run(&ids, &org, "create_microservice", at(0));
    r1.created_by = "alice".into();
    // r2: DAY-2 on an entity, from the API by bob.
    let mut r2 = new_run(&ids, &org, "deploy_microservice", at(1));
    r2.entity = Some(Reference {
        identifier: "my-microservice".into(),
        title: None,
        icon: None,
        deleted: false,
    });
    r2.source = RunSource::Api;
    r2.created_by = "bob".into();
    r2.payload = Some(Value::Null);
    // r3: waiting for approval, started by an automation.
    let r3 = start(
        NewRun {
            id: ids.next(),
            org_id: org.clone(),
            properties: Map::new(),
            source: RunSource::Automation,
            required_approval: json!({ "type": "ALL" }),
            approval_policy: ApprovalPolicy::All {
                approvers: vec!["carol".into(), "dave".into()],
            },
            payload: None,
            action: ActionRef {
                identifier: act("delete_service"),
                title: None,
                icon: None,
                deleted: true,
            },
            blueprint: Some(Reference {
                identifier: "service".into(),
                title: None,
                icon: None,
                deleted: true,
            }),
            entity: Some(Reference {
                identifier: "my-microservice".into(),
                title: Some("t".into()),
                icon: Some("i".into()),
                deleted: false,
            }),
            synchronized: true,
            created_by: "alice".into(),
            impersonated_by: None,
            // Stored and read back though never on the wire.
            chain_depth: 3,
        },
        at(2),
    )
    .run;
    // r4: ended with an external run id.
    let mut r4 = new_run(&ids, &org, "create_microservice", at(3));
    r4.blueprint = None;
    r4.created_by = "bob".into();
    // r5: same action, another organization.
    let r5 = new_run(&ids, &other, "create_microservice", at(4));

    for run in [&r1, &r2, &r3, &r4, &r5] {
        create(&*store, run, None).await?;
    }
    let patch = RunPatch {
        status: Some(FinalStatus::Success),
        external_run_id: Some("ext-1".into()),
        link: Some(vec![
            "https://github.com/actions/toolkit/actions/runs/3617893813".into(),
        ]),
        message: Some(obj(json!({ "run_status": "Run completed successfully!" }))),
        ..RunPatch::default()
    };
    let ended = transition(
        &r4,
        RunCommand::Patch(patch),
        "KZ5zDPudPshQMShUb4cLopBEE1fNSJGE",
        at(5),
    )?
    .run;
    store.save_transition(&ended, r4.version, &[], None).await?;
    let r4 = ended;
    assert!(
        is_already_exists(&store.create_run(&r1, None, None).await),
        "same run id twice"
    );

    for run in [&r1, &r2, &r3, &r4] {
        assert_eq!(
            store.get_run(&org, &run.id).await?.as_ref(),
            Some(run),
            "{} reads back",
            run.id
        );
    }
    assert_eq!(store.get_run(&other, &r5.id).await?, Some(r5.clone()));

    let list = |filter: RunFilter| {
        let store = store.clone();
        let org = org.clone();
        async move {
            store
                .list_runs(
                    &org,
                    &RunFilter {
                        limit: 100,
                        ..filter
                    },
                )
                .await
                .map(|runs| run_ids(&runs))
        }
    };
    let ids_of = |runs: &[&Run]| runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();

    assert_eq!(
        list(RunFilter::default()).await?,
        ids_of(&[&r4, &r3, &r2, &r1]),
        "newest first"
    );
    assert_eq!(
        list(RunFilter {
            entity: Some("my-microservice".into()),
            ..Default::default()
        })
        .await?,
        ids_of(&[&r3, &r2])
    );
    assert_eq!(
        list(RunFilter {
            blueprint: Some("microservice".into()),
            ..Default::default()
        })
        .await?,
        ids_of(&[&r2, &r1])
    );
    assert_eq!(
        list(RunFilter {
            action: Some("create_microservice".into()),
            ..Default::default()
        })
        .await?,
        ids_of(&[&r4, &r1])
    );
    assert_eq!(
        list(RunFilter {
            active: Some(true),
            ..Default::default()
        })
        .await?,
        ids_of(&[&r3, &r2, &r1])
    );
    assert_eq!(
        list(RunFilter {
            active: Some(false),
            ..Default::default()
        })
        .await?,
        ids_of(&[&r4])
    );
    assert_eq!(
        list(RunFilter {
            status: Some(RunStatus::WaitingForApproval),
            ..Default::default()
        })
        .await?,
        ids_of(&[&r3])
    );
    assert_eq!(
        list(RunFilter {
            status: Some(RunStatus::Success),
            ..Default::default()
        })
        .await?,
        ids_of(&[&r4])
    );
    assert_eq!(
        list(RunFilter {
            status: Some(RunStatus::Declined),
            ..Default::default()
        })
        .await?,
        ids_of(&[])
    );
    assert_eq!(
        list(RunFilter {
            user: Some("alice".into()),
            ..Default::default()
        })
        .await?,
        ids_of(&[&r3, &r1])
    );
    assert_eq!(
        list(RunFilter {
            sources: vec![RunSource::Api, RunSource::Automation],
            ..Default::default()
        })
        .await?,
        ids_of(&[&r3, &r2])
    );
    assert_eq!(
        list(RunFilter {
            sources: vec![RunSource::Ui],
            ..Default::default()
        })
        .await?,
        ids_of(&[&r4, &r1])
    );
    assert_eq!(
        list(RunFilter {
            external_run_id: Some("ext-1".into()),
            ..Default::default()
        })
        .await?,
        ids_of(&[&r4])
    );
    assert_eq!(
        list(RunFilter {
            action: Some("create_microservice".into()),
            user: Some("bob".into()),
            active: Some(false),
            ..Default::default()
        })
        .await?,
        ids_of(&[&r4]),
        "filters combine"
    );
    assert_eq!(
        list(RunFilter {
            active: Some(true),
            status: Some(RunStatus::Success),
            ..Default::default()
        })
        .await?,
        ids_of(&[]),
        "contradictory filters match nothing"
    );
    let limited = store
        .list_runs(
            &org,
            &RunFilter {
                limit: 2,
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(run_ids(&limited), ids_of(&[&r4, &r3]));
    assert!(
        store
            .list_runs(&org, &RunFilter::default())
            .await?
            .is_empty(),
        "limit 0 lists nothing"
    );
    assert_eq!(
        run_ids(
            &store
                .list_runs(
                    &other,
                    &RunFilter {
                        limit: 100,
                        ..Default::default()
                    }
                )
                .await?
        ),
        ids_of(&[&r5])
    );
    Ok(())
}

pub async fn runs_keyset_pagination(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let mut all = Vec::new();
    for i in 0..25 {
        let action = if i % 2 == 0 { "even" } else { "odd" };
        let run = new_run(&ids, &org, action, at(i));
        create(&*store, &run, None).await?;
        all.push(run);
    }
    all.reverse();
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_runs(
                &org,
                &RunFilter {
                    before: before.clone(),
                    limit: 10,
                    ..Default::default()
                },
            )
            .await?;
        if page.is_empty() {
            break;
        }
        before = page.last().map(|r| r.id.clone());
        pages.push(run_ids(&page));
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
    assert_eq!(
        pages.concat(),
        run_ids(&all),
        "every run once, newest first"
    );

    let evens: Vec<RunId> = all
        .iter()
        .filter(|r| r.action.identifier.as_str() == "even")
        .map(|r| r.id.clone())
        .collect();
    let first = store
        .list_runs(
            &org,
            &RunFilter {
                action: Some("even".into()),
                limit: 5,
                ..Default::default()
            },
        )
        .await?;
    let rest = store
        .list_runs(
            &org,
            &RunFilter {
                action: Some("even".into()),
                before: first.last().map(|r| r.id.clone()),
                limit: 50,
                ..Default::default()
            },
        )
        .await?;
    assert_eq!([run_ids(&first), run_ids(&rest)].concat(), evens);
    Ok(())
}

pub async fn save_transition_refuses_lost_updates(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let run = new_run(&ids, &org, "create_microservice", at(0));
    create(&*store, &run, None).await?;

    let a = transition(
        &run,
        RunCommand::Patch(RunPatch {
            summary: Some("a".into()),
            ..Default::default()
        }),
        "u",
        at(1),
    )?;
    let b = transition(
        &run,
        RunCommand::Patch(RunPatch {
            summary: Some("b".into()),
            ..Default::default()
        }),
        "u",
        at(1),
    )?;
    assert_eq!(a.run.version, 2);
    store.save_transition(&a.run, 1, &[], None).await?;
    let stale = store
        .save_transition(&b.run, 1, &[log(&ids, &run, "lost?", at(1))], None)
        .await;
    assert!(is_conflict(&stale), "{stale:?}");
    let stored = store.get_run(&org, &run.id).await?.context("run")?;
    assert_eq!(stored, a.run, "the first writer's change stands");
    assert_eq!(store.run_version(&org, &run.id).await?, Some(2));
    assert!(
        store.list_logs(&org, &run.id, 0, 10).await?.is_empty(),
        "a refused transition writes no log"
    );

    // A log that changes nothing still needs the version it was decided on.
    let line = transition(
        &stored,
        RunCommand::AddLog {
            message: "hello".into(),
            termination_status: None,
            status_label: None,
        },
        "runner",
        at(2),
    )?;
    assert!(!line.changed(&stored));
    assert!(is_conflict(
        &store
            .save_transition(&line.run, 1, &[log(&ids, &run, "x", at(2))], None)
            .await
    ));
    let written = store
        .save_transition(&line.run, 2, &[log(&ids, &run, "hello", at(2))], None)
        .await?;
    assert_eq!(seqs(&written), [1]);
    assert_eq!(
        store.run_version(&org, &run.id).await?,
        Some(2),
        "a log line alone leaves the version"
    );

    let done = transition(
        &stored,
        RunCommand::Patch(RunPatch {
            status: Some(FinalStatus::Failure),
            ..Default::default()
        }),
        "u",
        at(3),
    )?;
    store.save_transition(&done.run, 2, &[], None).await?;
    assert_eq!(store.run_version(&org, &run.id).await?, Some(3));
    let missing = new_run(&ids, &org, "create_microservice", at(3));
    assert_eq!(store.run_version(&org, &missing.id).await?, None);
    let stored = store.get_run(&org, &run.id).await?.context("run")?;
    assert_eq!(
        stored.state,
        RunState::Ended {
            outcome: Outcome::Failure,
            at: at(3)
        }
    );
    assert_eq!(stored.version, 3);

    let missing = new_run(&ids, &org, "x", at(0));
    assert!(
        is_conflict(&store.save_transition(&missing, 1, &[], None).await),
        "unknown run"
    );
    let foreign = log(&ids, &missing, "wrong run", at(4));
    assert!(matches!(
        store.save_transition(&stored, 3, &[foreign], None).await,
        Err(StoreError::Other(_))
    ));
    Ok(())
}

pub async fn logs_are_sequenced(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let run = new_run(&ids, &org, "deploy", at(0));
    let other = new_run(&ids, &org, "deploy", at(0));
    create(&*store, &run, None).await?;
    create(&*store, &other, None).await?;

    let first: Vec<NewRunLog> = ["one", "two", "três ✓"]
        .iter()
        .map(|m| log(&ids, &run, m, at(1)))
        .collect();
    let written = store.save_transition(&run, 1, &first, None).await?;
    assert_eq!(seqs(&written), [1, 2, 3]);
    assert_eq!(
        written
            .iter()
            .map(|l| l.message.as_str())
            .collect::<Vec<_>>(),
        ["one", "two", "três ✓"]
    );
    let second = vec![
        log(&ids, &run, "four", at(2)),
        log(&ids, &run, "five", at(2)),
    ];
    assert_eq!(
        seqs(&store.save_transition(&run, 1, &second, None).await?),
        [4, 5]
    );
    assert_eq!(
        seqs(
            &store
                .save_transition(&other, 1, &[log(&ids, &other, "x", at(3))], None)
                .await?
        ),
        [1]
    );

    let all = store.list_logs(&org, &run.id, 0, 100).await?;
    assert_eq!(seqs(&all), [1, 2, 3, 4, 5]);
    assert_eq!(all[..3], written[..]);
    assert_eq!(all[2].message, "três ✓");
    assert_eq!(all[2].created_by, "runner");
    assert_eq!(all[2].run_id, run.id);
    assert_eq!(seqs(&store.list_logs(&org, &run.id, 0, 2).await?), [1, 2]);
    assert_eq!(
        seqs(&store.list_logs(&org, &run.id, 2, 10).await?),
        [3, 4, 5]
    );
    assert_eq!(seqs(&store.list_logs(&org, &run.id, 3, 1).await?), [4]);
    assert!(store.list_logs(&org, &run.id, 5, 10).await?.is_empty());
    assert_eq!(seqs(&store.logs_after(&org, &run.id, 3, 10).await?), [4, 5]);
    assert_eq!(seqs(&store.logs_after(&org, &run.id, 0, 2).await?), [1, 2]);
    assert!(store.logs_after(&org, &run.id, 5, 10).await?.is_empty());
    assert_eq!(seqs(&store.list_logs(&org, &other.id, 0, 10).await?), [1]);
    Ok(())
}

pub async fn idempotency_keys(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let other = new_org(&*store, &ids, "Other").await?;
    let key = |org: &OrgId, t: Timestamp| IdempotencyKey {
        org_id: org.clone(),
        key: "req-42".into(),
        created_at: t,
    };

    let r1 = new_run(&ids, &org, "deploy", at(0));
    let d1 = new_delivery(&ids, &r1, DeliveryMode::Webhook, at(0));
    assert_eq!(
        store
            .create_run(&r1, Some(&d1), Some(&key(&org, at(0))))
            .await?,
        CreateRunOutcome::Created
    );

    let r2 = new_run(&ids, &org, "deploy", at(HOUR));
    let d2 = new_delivery(&ids, &r2, DeliveryMode::Webhook, at(HOUR));
    assert_eq!(
        store
            .create_run(&r2, Some(&d2), Some(&key(&org, at(HOUR))))
            .await?,
        CreateRunOutcome::Existing(r1.id.clone())
    );
    assert_eq!(store.get_run(&org, &r2.id).await?, None, "nothing written");
    assert!(
        store.deliveries_of_run(&org, &r2.id).await?.is_empty(),
        "not even the delivery"
    );
    let almost = new_run(&ids, &org, "deploy", at(24 * HOUR - 1));
    assert_eq!(
        store
            .create_run(&almost, None, Some(&key(&org, at(24 * HOUR - 1))))
            .await?,
        CreateRunOutcome::Existing(r1.id.clone()),
        "still within 24 hours"
    );

    let theirs = new_run(&ids, &other, "deploy", at(HOUR));
    assert_eq!(
        store
            .create_run(&theirs, None, Some(&key(&other, at(HOUR))))
            .await?,
        CreateRunOutcome::Created,
        "keys are per organization"
    );

    let r3 = new_run(&ids, &org, "deploy", at(24 * HOUR));
    assert_eq!(
        store
            .create_run(&r3, None, Some(&key(&org, at(24 * HOUR))))
            .await?,
        CreateRunOutcome::Created,
        "an expired key is replaced"
    );
    let r4 = new_run(&ids, &org, "deploy", at(24 * HOUR + 1));
    assert_eq!(
        store
            .create_run(&r4, None, Some(&key(&org, at(24 * HOUR + 1))))
            .await?,
        CreateRunOutcome::Existing(r3.id.clone())
    );
    assert!(
        store.get_run(&org, &r1.id).await?.is_some(),
        "the old run stays"
    );

    let plain_a = new_run(&ids, &org, "deploy", at(0));
    let plain_b = new_run(&ids, &org, "deploy", at(0));
    assert_eq!(
        store.create_run(&plain_a, None, None).await?,
        CreateRunOutcome::Created
    );
    assert_eq!(
        store.create_run(&plain_b, None, None).await?,
        CreateRunOutcome::Created
    );
    Ok(())
}

pub async fn idempotency_key_race(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let key = IdempotencyKey {
        org_id: org.clone(),
        key: "same".into(),
        created_at: at(0),
    };
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let run = new_run(&ids, &org, "deploy", at(0));
        let delivery = new_delivery(&ids, &run, DeliveryMode::Webhook, at(0));
        let (store, key) = (store.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let outcome = store.create_run(&run, Some(&delivery), Some(&key)).await;
            (run.id, outcome)
        }));
    }
    let mut created = Vec::new();
    let mut existing = Vec::new();
    for task in tasks {
        match task.await? {
            (id, Ok(CreateRunOutcome::Created)) => created.push(id),
            (_, Ok(CreateRunOutcome::Existing(id))) => existing.push(id),
            (_, Err(e)) => return Err(anyhow!("create failed: {e}")),
        }
    }
    assert_eq!(created.len(), 1, "exactly one create wins");
    assert!(
        existing.iter().all(|id| id == &created[0]),
        "the others see the winner"
    );
    let runs = store
        .list_runs(
            &org,
            &RunFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(run_ids(&runs), created);
    assert_eq!(
        store
            .claim_due_webhooks("w", at(0), 1000, &ClaimLimits::up_to(100))
            .await?
            .len(),
        1,
        "one delivery"
    );
    Ok(())
}

pub async fn stale_in_progress_runs(store: Shared) -> Result<()> {
    let ids = ids();
    let a = new_org(&*store, &ids, "A").await?;
    let b = new_org(&*store, &ids, "B").await?;
    let old_a = new_run(&ids, &a, "x", at(0));
    let old_b = new_run(&ids, &b, "x", at(10));
    let ended = new_run(&ids, &a, "x", at(5));
    let young = new_run(&ids, &b, "x", at(100));
    let mut waiting = new_run(&ids, &a, "x", at(1));
    waiting.state = RunState::WaitingForApproval;
    for run in [&old_b, &old_a, &ended, &young, &waiting] {
        create(&*store, run, None).await?;
    }
    let done = transition(&ended, RunCommand::TimedOut, "reaper", at(6))?.run;
    store.save_transition(&done, 1, &[], None).await?;

    let stale = store.in_progress_runs_created_before(at(100), 10).await?;
    assert_eq!(
        run_ids(&stale),
        vec![old_a.id.clone(), old_b.id.clone()],
        "oldest first, across organizations"
    );
    assert_eq!(
        run_ids(&store.in_progress_runs_created_before(at(100), 1).await?),
        vec![old_a.id.clone()]
    );
    assert!(
        store
            .in_progress_runs_created_before(at(0), 10)
            .await?
            .is_empty(),
        "strictly before"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Deliveries
// ---------------------------------------------------------------------------------------

pub async fn webhook_delivery_lifecycle(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let run = new_run(&ids, &org, "deploy", at(0));
    let mut d = new_delivery(&ids, &run, DeliveryMode::Webhook, at(0));
    d.synchronized = true;
    assert_eq!(store.next_due_after(at(-1)).await?, None);
    store.create_run(&run, Some(&d), None).await?;
    assert_eq!(store.next_due_after(at(-1)).await?, Some(at(0)));
    assert_eq!(store.next_due_after(at(0)).await?, None, "strictly after");

    assert!(
        store
            .claim_due_webhooks("w1", at(-1), 30_000, &ClaimLimits::up_to(10))
            .await?
            .is_empty(),
        "not due yet"
    );
    let claimed = store
        .claim_due_webhooks("w1", at(0), 30_000, &ClaimLimits::up_to(10))
        .await?;
    assert_eq!(claimed.len(), 1);
    let c = &claimed[0];
    assert_eq!(
        (&c.id, &c.org_id, &c.run_id, c.mode),
        (&d.id, &org, &run.id, DeliveryMode::Webhook)
    );
    assert_eq!(
        (&c.request, c.synchronized, &c.installation_id),
        (&d.request, true, &None)
    );
    assert_eq!(
        (c.state, c.attempts, c.next_attempt_at),
        (DeliveryState::Pending, 0, at(0))
    );
    assert_eq!(
        (c.lease_owner.as_deref(), c.lease_until),
        (Some("w1"), Some(at(30_000)))
    );
    assert_eq!((c.created_at, c.updated_at), (at(0), at(0)));
    assert!(
        store
            .claim_due_webhooks("w2", at(1), 30_000, &ClaimLimits::up_to(10))
            .await?
            .is_empty(),
        "leased"
    );
    assert_eq!(
        store.next_due_after(at(1)).await?,
        None,
        "a leased delivery is not announced: the worker's safety poll finds expired leases"
    );

    let first = DeliveryAttempt {
        delivery_id: d.id.clone(),
        org_id: org.clone(),
        run_id: run.id.clone(),
        number: 1,
        started_at: at(10),
        ended_at: at(250),
        status_code: Some(503),
        error: Some("server answered 503".into()),
        response_excerpt: Some("<html>busy</html>".into()),
        duration_ms: 240,
    };
    store.record_attempt(&first).await?;
    assert!(
        is_conflict(&store.reschedule(&d.id, "w2", at(60_000)).await),
        "only the holder reschedules"
    );
    store.reschedule(&d.id, "w1", at(60_000)).await?;
    let (after, attempts) = delivery(&*store, &org, &run.id, &d.id).await?;
    assert_eq!(
        (after.attempts, after.lease_owner, after.lease_until),
        (1, None, None)
    );
    assert_eq!(
        (after.next_attempt_at, after.updated_at),
        (at(60_000), at(250))
    );
    assert_eq!(attempts, vec![first.clone()]);
    assert_eq!(store.next_due_after(at(250)).await?, Some(at(60_000)));
    assert!(
        is_conflict(&store.reschedule(&d.id, "w1", at(70_000)).await),
        "the lease was released"
    );

    assert!(
        store
            .claim_due_webhooks("w2", at(59_999), 30_000, &ClaimLimits::up_to(10))
            .await?
            .is_empty()
    );
    assert_eq!(
        store
            .claim_due_webhooks("w2", at(60_000), 30_000, &ClaimLimits::up_to(10))
            .await?
            .len(),
        1
    );
    let second = DeliveryAttempt {
        number: 2,
        started_at: at(60_000),
        ended_at: at(60_100),
        status_code: Some(200),
        error: None,
        response_excerpt: None,
        duration_ms: 100,
        ..first.clone()
    };
    store.record_attempt(&second).await?;
    assert!(
        is_already_exists(&store.record_attempt(&second).await),
        "an attempt is recorded once"
    );
    store
        .finish(&d.id, DeliveryState::Delivered, at(60_200))
        .await?;
    let (done, attempts) = delivery(&*store, &org, &run.id, &d.id).await?;
    assert_eq!(
        (done.state, done.attempts, done.lease_owner, done.updated_at),
        (DeliveryState::Delivered, 2, None, at(60_200))
    );
    assert_eq!(attempts, vec![first.clone(), second]);
    assert_eq!(store.next_due_after(at(-1)).await?, None);
    assert!(
        store
            .claim_due_webhooks("w3", at(999_999), 30_000, &ClaimLimits::up_to(10))
            .await?
            .is_empty(),
        "finished"
    );

    // A later delivery of the same run (say, after an approval); redelivery picks it.
    let later = new_delivery(&ids, &run, DeliveryMode::Webhook, at(70_000));
    store.save_transition(&run, 1, &[], Some(&later)).await?;
    let listed: Vec<DeliveryId> = store
        .deliveries_of_run(&org, &run.id)
        .await?
        .into_iter()
        .map(|(d, _)| d.id)
        .collect();
    assert_eq!(listed, vec![d.id.clone(), later.id.clone()], "oldest first");
    let claimed = store
        .claim_due_webhooks("w3", at(70_000), 1000, &ClaimLimits::up_to(10))
        .await?;
    assert_eq!(
        claimed.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        vec![later.id.clone()]
    );
    store
        .finish(&later.id, DeliveryState::Failed, at(70_001))
        .await?;

    assert!(store.redeliver(&org, &run.id, at(80_000)).await?);
    let (again, _) = delivery(&*store, &org, &run.id, &later.id).await?;
    assert_eq!(
        (again.state, again.next_attempt_at, again.lease_owner),
        (DeliveryState::Pending, at(80_000), None)
    );
    assert_eq!(again.attempts, 0);
    assert_eq!(
        delivery(&*store, &org, &run.id, &d.id).await?.0.state,
        DeliveryState::Delivered,
        "older one untouched"
    );
    assert_eq!(store.next_due_after(at(79_999)).await?, Some(at(80_000)));
    assert_eq!(
        store
            .claim_due_webhooks("w4", at(80_000), 1000, &ClaimLimits::up_to(10))
            .await?
            .len(),
        1
    );
    // The worker's common case: the attempt and the end in one write, all or nothing.
    let answered = DeliveryAttempt {
        delivery_id: later.id.clone(),
        number: 1,
        started_at: at(80_001),
        ended_at: at(80_002),
        status_code: Some(200),
        error: None,
        response_excerpt: None,
        duration_ms: 1,
        ..first.clone()
    };
    store
        .record_final_attempt(&answered, DeliveryState::Delivered, at(80_003))
        .await?;
    let (ended, attempts) = delivery(&*store, &org, &run.id, &later.id).await?;
    assert_eq!(
        (
            ended.state,
            ended.attempts,
            ended.lease_owner,
            ended.updated_at
        ),
        (DeliveryState::Delivered, 1, None, at(80_003))
    );
    assert_eq!(attempts, vec![answered.clone()]);
    assert!(
        is_already_exists(
            &store
                .record_final_attempt(&answered, DeliveryState::Failed, at(80_004))
                .await
        ),
        "an attempt is recorded once"
    );
    let (unchanged, _) = delivery(&*store, &org, &run.id, &later.id).await?;
    assert_eq!(
        (unchanged.state, unchanged.attempts, unchanged.updated_at),
        (DeliveryState::Delivered, 1, at(80_003)),
        "a refused final attempt changes nothing"
    );
    let quiet = new_run(&ids, &org, "deploy", at(0));
    create(&*store, &quiet, None).await?;
    assert!(
        !store.redeliver(&org, &quiet.id, at(80_000)).await?,
        "nothing to redeliver"
    );
    let waiting = new_run(&ids, &org, "deploy", at(0));
    let notice = new_delivery(&ids, &waiting, DeliveryMode::ApprovalNotification, at(0));
    create(&*store, &waiting, Some(&notice)).await?;
    assert!(
        !store.redeliver(&org, &waiting.id, at(80_000)).await?,
        "an approval notice is not the run's invocation"
    );
    assert!(
        is_already_exists(&store.save_transition(&run, 1, &[], Some(&later)).await),
        "delivery ids are unique"
    );
    Ok(())
}

pub async fn leases_are_exclusive_and_expire(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let mut due = Vec::new();
    for i in 0..3 {
        let run = new_run(&ids, &org, "deploy", at(0));
        // Due in reverse creation order: claims follow due time, not creation.
        let d = new_delivery(&ids, &run, DeliveryMode::Webhook, at(10 - i));
        store.create_run(&run, Some(&d), None).await?;
        due.push(d.id);
    }
    let agent_run = new_run(&ids, &org, "deploy", at(0));
    store
        .create_run(
            &agent_run,
            Some(&new_delivery(&ids, &agent_run, DeliveryMode::Agent, at(0))),
            None,
        )
        .await?;

    let w1: Vec<DeliveryId> = store
        .claim_due_webhooks("w1", at(100), 1_000, &ClaimLimits::up_to(2))
        .await?
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(
        w1,
        vec![due[2].clone(), due[1].clone()],
        "earliest due first"
    );
    let w2: Vec<DeliveryId> = store
        .claim_due_webhooks("w2", at(100), 5_000, &ClaimLimits::up_to(10))
        .await?
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(
        w2,
        vec![due[0].clone()],
        "the rest, agent deliveries excluded"
    );
    assert!(
        store
            .claim_due_webhooks("w3", at(1_099), 1_000, &ClaimLimits::up_to(10))
            .await?
            .is_empty(),
        "leases held"
    );

    // w1 died without releasing: once its lease expires another worker takes over.
    let taken: Vec<Delivery> = store
        .claim_due_webhooks("w3", at(1_100), 1_000, &ClaimLimits::up_to(10))
        .await?;
    assert_eq!(taken.iter().map(|d| d.id.clone()).collect::<Vec<_>>(), w1);
    assert!(
        taken
            .iter()
            .all(|d| d.lease_owner.as_deref() == Some("w3") && d.lease_until == Some(at(2_100)))
    );
    assert!(
        is_conflict(&store.reschedule(&w1[0], "w1", at(5_000)).await),
        "the dead worker lost its lease"
    );
    store.reschedule(&w1[0], "w3", at(5_000)).await?;
    store
        .finish(&w2[0], DeliveryState::Delivered, at(1_200))
        .await?;
    Ok(())
}

/// A webhook delivery of a new run of `org` to `url`, due at `due`.
async fn webhook_to(
    store: &dyn Store,
    ids: &IdGenerator,
    org: &OrgId,
    url: &str,
    due: i64,
) -> Result<NewDelivery> {
    let run = new_run(ids, org, "deploy", at(0));
    let mut d = new_delivery(ids, &run, DeliveryMode::Webhook, at(due));
    d.request["url"] = json!(url);
    create(store, &run, Some(&d)).await?;
    Ok(d)
}

fn claimed_ids(claimed: &[Delivery]) -> Vec<DeliveryId> {
    claimed.iter().map(|d| d.id.clone()).collect()
}

/// One organization's backlog does not starve another's: each slot goes to the
/// organization with the fewest in flight, oldest due first among equals.
pub async fn claims_take_turns_across_organizations(store: Shared) -> Result<()> {
    let ids = ids();
    let a = new_org(&*store, &ids, "A").await?;
    let b = new_org(&*store, &ids, "B").await?;
    let c = new_org(&*store, &ids, "C").await?;
    let mut backlog = Vec::new();
    for due in 0..6 {
        backlog.push(
            webhook_to(&*store, &ids, &a, "https://a.example/hook", due)
                .await?
                .id,
        );
    }
    let b0 = webhook_to(&*store, &ids, &b, "https://b.example/hook", 10)
        .await?
        .id;
    let b1 = webhook_to(&*store, &ids, &b, "https://b.example/hook", 11)
        .await?
        .id;
    let c0 = webhook_to(&*store, &ids, &c, "https://c.example/hook", 3)
        .await?
        .id;
    let later = webhook_to(&*store, &ids, &b, "https://b.example/hook", 5_000)
        .await?
        .id;
    let agent_run = new_run(&ids, &c, "deploy", at(0));
    let agent = new_delivery(&ids, &agent_run, DeliveryMode::Agent, at(0));
    create(&*store, &agent_run, Some(&agent)).await?;

    let first = store
        .claim_due_webhooks("w", at(100), 60_000, &ClaimLimits::up_to(5))
        .await?;
    assert_eq!(
        claimed_ids(&first),
        vec![backlog[0].clone(), c0, b0, backlog[1].clone(), b1],
        "every organization's oldest, then every one's next"
    );
    assert!(first.iter().all(|d| d.lease_owner.as_deref() == Some("w")));
    let rest = store
        .claim_due_webhooks("w", at(100), 60_000, &ClaimLimits::up_to(10))
        .await?;
    assert_eq!(
        claimed_ids(&rest),
        backlog[2..].to_vec(),
        "not due yet, leased and agent deliveries are left"
    );
    assert!(!claimed_ids(&rest).contains(&later));
    assert_eq!(
        store.next_due_after(at(100)).await?,
        Some(at(5_000)),
        "the worker sleeps until the next delivery falls due"
    );
    Ok(())
}

/// A claim takes no more than each organization's and each (organization,
/// destination)'s room; what does not fit stays unleased, so no waiting delivery holds
/// a lease that could expire.
pub async fn claims_respect_organization_and_destination_room(store: Shared) -> Result<()> {
    let ids = ids();
    let a = new_org(&*store, &ids, "A").await?;
    let b = new_org(&*store, &ids, "B").await?;
    let hung = "https://hung.example/hook";
    let a_hung_0 = webhook_to(&*store, &ids, &a, hung, 0).await?;
    let a_hung_1 = webhook_to(&*store, &ids, &a, hung, 1).await?;
    let a_ok_0 = webhook_to(&*store, &ids, &a, "https://ok.example/x", 2).await?;
    let a_ok_1 = webhook_to(&*store, &ids, &a, "https://ok.example/y", 3).await?;
    // Another organization's deliveries to the same host have rooms of their own.
    let b_hung_0 = webhook_to(&*store, &ids, &b, hung, 4).await?;
    let b_hung_1 = webhook_to(&*store, &ids, &b, hung, 5).await?;
    // No usable URL: no destination, counted for its organization only.
    let b_broken = webhook_to(&*store, &ids, &b, "not a url", 6).await?;

    // The worker has one of A's in flight, to hung.example.
    let mut in_flight = InFlight::default();
    in_flight.add(&a, Destination::of_url(hung).as_ref());
    let limits = ClaimLimits {
        total: 10,
        per_org: 2,
        per_destination: 1,
        in_flight: in_flight.clone(),
    };
    let claimed = store
        .claim_due_webhooks("w", at(10), 60_000, &limits)
        .await?;
    assert_eq!(
        claimed_ids(&claimed),
        vec![b_hung_0.id.clone(), a_ok_0.id.clone(), b_broken.id.clone()],
        "B, with nothing in flight, first; A: one slot left, not to its full \
         destination; B: one per destination"
    );
    for waiting in [&a_hung_0, &a_hung_1, &a_ok_1, &b_hung_1] {
        let (now, _) = delivery(&*store, &waiting.org_id, &waiting.run_id, &waiting.id).await?;
        assert_eq!(
            (now.lease_owner, now.lease_until, now.attempts),
            (None, None, 0),
            "a delivery that does not fit waits unleased"
        );
    }

    // Full organizations get nothing, however long their backlogs.
    let mut full = in_flight;
    full.add(&a, Destination::of_url("https://ok.example/").as_ref());
    full.add(&b, Destination::of_url(hung).as_ref());
    full.add(&b, None);
    let limits = ClaimLimits {
        total: 10,
        per_org: 2,
        per_destination: 1,
        in_flight: full,
    };
    assert!(
        store
            .claim_due_webhooks("w", at(10), 60_000, &limits)
            .await?
            .is_empty(),
        "A and B are full"
    );
    // With room again, A's waiting deliveries are claimed oldest due first.
    let limits = ClaimLimits {
        total: 10,
        per_org: 10,
        per_destination: 10,
        in_flight: InFlight::default(),
    };
    let claimed = store
        .claim_due_webhooks("w", at(10), 60_000, &limits)
        .await?;
    assert_eq!(
        claimed_ids(&claimed),
        vec![a_hung_0.id, b_hung_1.id, a_hung_1.id, a_ok_1.id]
    );
    Ok(())
}

/// A worker restarting under its stable id takes back what its crashed predecessor
/// held, at once; other workers' leases, finished deliveries and agent claims stay.
pub async fn restarted_worker_releases_its_leases(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let mut webhooks = Vec::new();
    for _ in 0..3 {
        let run = new_run(&ids, &org, "deploy", at(0));
        let d = new_delivery(&ids, &run, DeliveryMode::Webhook, at(0));
        store.create_run(&run, Some(&d), None).await?;
        webhooks.push((run.id.clone(), d.id));
    }
    let agent_run = new_run(&ids, &org, "deploy", at(0));
    let agent = new_delivery(&ids, &agent_run, DeliveryMode::Agent, at(0));
    store.create_run(&agent_run, Some(&agent), None).await?;

    let mine = store
        .claim_due_webhooks("node-a", at(10), 60_000, &ClaimLimits::up_to(2))
        .await?;
    ensure!(mine.len() == 2, "node-a claims two: {mine:?}");
    let theirs = store
        .claim_due_webhooks("node-b", at(10), 60_000, &ClaimLimits::up_to(10))
        .await?;
    ensure!(theirs.len() == 1, "node-b claims the third: {theirs:?}");
    // One of node-a's deliveries ended before the crash: it stays delivered.
    store
        .finish(&mine[1].id, DeliveryState::Delivered, at(20))
        .await?;
    // An agent claim under the same name is a runner's, not the worker's.
    let claimed = store
        .claim_agent_deliveries(&org, &unbound_claim("node-a", at(10), 60_000, 10))
        .await?;
    ensure!(claimed.len() == 1);

    ensure!(store.release_leases("node-a", at(30)).await? == 1);
    ensure!(
        store.release_leases("node-a", at(31)).await? == 0,
        "releasing twice finds nothing"
    );
    let (released, _) = delivery(&*store, &org, &mine[0].run_id, &mine[0].id).await?;
    ensure!(released.lease_owner.is_none() && released.lease_until.is_none());
    ensure!(released.state == DeliveryState::Pending && released.updated_at == at(30));
    let (done, _) = delivery(&*store, &org, &mine[1].run_id, &mine[1].id).await?;
    ensure!(done.state == DeliveryState::Delivered);
    let (held, _) = delivery(&*store, &org, &theirs[0].run_id, &theirs[0].id).await?;
    ensure!(held.lease_owner.as_deref() == Some("node-b"));
    let (agent_now, _) = delivery(&*store, &org, &agent_run.id, &agent.id).await?;
    ensure!(agent_now.lease_owner.as_deref() == Some("node-a"));

    // Claimable at once, long before the old lease would have expired.
    let again = store
        .claim_due_webhooks("node-a", at(40), 60_000, &ClaimLimits::up_to(10))
        .await?;
    ensure!(
        again.iter().map(|d| d.id.clone()).collect::<Vec<_>>() == vec![mine[0].id.clone()],
        "only the released delivery is claimable again: {again:?}"
    );
    ensure!(webhooks.iter().any(|(_, id)| id == &mine[0].id));
    Ok(())
}

pub async fn agent_deliveries(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let other = new_org(&*store, &ids, "Other").await?;
    let make = async |org: &OrgId,
                      mode: DeliveryMode,
                      installation: Option<&str>|
           -> Result<(Run, NewDelivery)> {
        let run = new_run(&ids, org, "deploy", at(0));
        let mut d = new_delivery(&ids, &run, mode, at(0));
        d.installation_id = installation.map(str::to_owned);
        store.create_run(&run, Some(&d), None).await?;
        Ok((run, d))
    };
    let (unbound_run, unbound) = make(&org, DeliveryMode::Agent, None).await?;
    let (bound_run, bound) = make(&org, DeliveryMode::Agent, Some("inst-1")).await?;
    let (_, elsewhere) = make(&other, DeliveryMode::Agent, None).await?;
    let (webhook_run, _) = make(&org, DeliveryMode::Webhook, None).await?;

    let claim = |installation: Option<&'static str>, owner: &'static str, t: Timestamp| {
        let (store, org) = (store.clone(), org.clone());
        async move {
            let claim = AgentClaim {
                owner,
                installation_id: installation,
                invocation_type: None,
                exclude_actions: &[],
                now: t,
                visibility_ms: 10_000,
                limit: 10,
            };
            store.claim_agent_deliveries(&org, &claim).await.map(|ds| {
                ds.into_iter()
                    .map(|d| (d.id, d.attempts, d.lease_until))
                    .collect::<Vec<_>>()
            })
        }
    };
    assert_eq!(
        claim(None, "r0", at(0)).await?,
        vec![(unbound.id.clone(), 1, Some(at(10_000)))],
        "unbound only"
    );
    assert_eq!(
        claim(Some("inst-1"), "r1", at(0)).await?,
        vec![(bound.id.clone(), 1, Some(at(10_000)))]
    );
    assert!(
        claim(Some("inst-1"), "r1", at(1)).await?.is_empty(),
        "claims are invisible to others"
    );
    assert!(
        claim(Some("inst-2"), "r2", at(1)).await?.is_empty(),
        "bound to another installation"
    );

    assert!(
        store
            .heartbeat_agent_delivery(&org, &unbound_run.id, at(5_000), 10_000)
            .await?
    );
    assert!(claim(Some("inst-1"), "r1", at(12_000)).await?.contains(&(
        bound.id.clone(),
        2,
        Some(at(22_000))
    )));
    // r0 kept its claim alive; the bound one expired and was served again.
    assert!(
        !store
            .heartbeat_agent_delivery(&org, &webhook_run.id, at(12_000), 10_000)
            .await?,
        "webhooks have no agent claim"
    );
    // r0 crashed: its heartbeat stops and the claim becomes visible once it expires.
    assert!(claim(None, "r3", at(14_999)).await?.is_empty());
    assert_eq!(
        claim(None, "r3", at(15_000)).await?,
        vec![(unbound.id.clone(), 2, Some(at(25_000)))]
    );
    assert!(
        !store
            .heartbeat_agent_delivery(&org, &bound_run.id, at(30_000), 10_000)
            .await?,
        "expired claims cannot be revived"
    );
    assert!(
        !store
            .heartbeat_agent_delivery(&other, &unbound_run.id, at(16_000), 10_000)
            .await?,
        "other organization"
    );

    assert_eq!(
        store
            .ack_agent_deliveries(&other, std::slice::from_ref(&unbound_run.id), at(16_000))
            .await?,
        0
    );
    assert_eq!(
        store
            .ack_agent_deliveries(
                &org,
                &[
                    unbound_run.id.clone(),
                    bound_run.id.clone(),
                    webhook_run.id.clone()
                ],
                at(16_000)
            )
            .await?,
        2
    );
    assert_eq!(
        store
            .ack_agent_deliveries(&org, std::slice::from_ref(&unbound_run.id), at(16_001))
            .await?,
        0,
        "already acknowledged"
    );
    assert!(claim(Some("inst-1"), "r1", at(99_000)).await?.is_empty());
    let (acked, _) = delivery(&*store, &org, &unbound_run.id, &unbound.id).await?;
    assert_eq!(
        (
            acked.state,
            acked.lease_owner,
            acked.lease_until,
            acked.updated_at
        ),
        (DeliveryState::Delivered, None, None, at(16_000))
    );
    assert!(
        !store
            .heartbeat_agent_delivery(&org, &unbound_run.id, at(16_002), 10_000)
            .await?,
        "acknowledged"
    );

    let theirs = store
        .claim_agent_deliveries(
            &other,
            &AgentClaim {
                owner: "x",
                installation_id: None,
                invocation_type: None,
                exclude_actions: &[],
                now: at(0),
                visibility_ms: 1_000,
                limit: 10,
            },
        )
        .await?;
    assert_eq!(
        theirs.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        vec![elsewhere.id.clone()]
    );
    assert!(
        store
            .claim_due_webhooks("w", at(0), 1_000, &ClaimLimits::up_to(10))
            .await?
            .iter()
            .all(|d| d.mode == DeliveryMode::Webhook)
    );
    Ok(())
}

/// Claims by route: Port's agent (unbound WEBHOOK runs), an installation (its bound
/// runs only), any unbound run; `exclude` leaves some actions' runs for later.
pub async fn agent_claims_are_routed(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let make = async |action: &str,
                      request: Value,
                      installation: Option<&str>,
                      due: i64|
           -> Result<NewDelivery> {
        let run = new_run(&ids, &org, action, at(due));
        let mut d = new_delivery(&ids, &run, DeliveryMode::Agent, at(due));
        d.request = request;
        d.installation_id = installation.map(str::to_owned);
        create(&*store, &run, Some(&d)).await?;
        Ok(d)
    };
    let webhook =
        json!({ "type": "WEBHOOK", "url": "https://example.com", "agent": true, "body": {} });
    let ocean = |installation: &str| {
        json!({
            "type": "INTEGRATION_ACTION", "installationId": installation,
            "integrationActionType": "dispatch_workflow", "integrationActionExecutionProperties": {}
        })
    };
    let agent_run = make("deploy", webhook.clone(), None, 0).await?;
    let github = make(
        "deploy",
        json!({ "type": "GITHUB", "org": "o", "repo": "r", "workflow": "w" }),
        None,
        1,
    )
    .await?;
    let mine_a = make("scale", ocean("gh"), Some("gh"), 2).await?;
    let mine_b = make("restart", ocean("gh"), Some("gh"), 3).await?;
    let theirs = make("scale", ocean("gl"), Some("gl"), 4).await?;

    let claim = |installation: Option<&'static str>,
                 kind: Option<InvocationKind>,
                 exclude: Vec<ActionIdentifier>| {
        let (store, org) = (store.clone(), org.clone());
        async move {
            let claim = AgentClaim {
                owner: "runner",
                installation_id: installation,
                invocation_type: kind,
                exclude_actions: &exclude,
                now: at(10),
                visibility_ms: 60_000,
                limit: 10,
            };
            store
                .claim_agent_deliveries(&org, &claim)
                .await
                .map(|ds| ds.into_iter().map(|d| d.id).collect::<Vec<_>>())
        }
    };
    assert_eq!(
        claim(None, Some(InvocationKind::Webhook), vec![]).await?,
        vec![agent_run.id.clone()],
        "Port's agent: unbound WEBHOOK runs only"
    );
    assert_eq!(
        claim(Some("gh"), None, vec![act("scale")]).await?,
        vec![mine_b.id.clone()],
        "the installation's runs, minus the excluded action's"
    );
    assert_eq!(
        claim(Some("gh"), Some(InvocationKind::IntegrationAction), vec![]).await?,
        vec![mine_a.id.clone()],
        "the excluded run is there for a later claim"
    );
    assert_eq!(
        claim(None, None, vec![]).await?,
        vec![github.id.clone()],
        "every unbound run"
    );
    assert!(claim(None, None, vec![]).await?.is_empty());
    assert_eq!(
        claim(Some("gl"), None, vec![]).await?,
        vec![theirs.id.clone()]
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Organization settings and integrations
// ---------------------------------------------------------------------------------------

pub async fn organization_settings_and_integrations(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let other = new_org(&*store, &ids, "Other").await?;
    assert_eq!(store.organization_settings(&org).await?, Some(Map::new()));
    assert_eq!(store.organization_settings(&ids.next()).await?, None);
    let settings = obj(json!({ "portAgentStreamerName": "POLLING", "hiddenBlueprints": ["a"] }));
    assert!(
        store
            .update_organization(&org, None, Some(&settings))
            .await?
    );
    assert_eq!(
        store.organization_settings(&org).await?,
        Some(settings.clone())
    );
    assert!(
        store
            .update_organization(&org, Some("Renamed"), None)
            .await?
    );
    assert_eq!(
        store.get_organization(&org).await?.map(|o| o.name),
        Some("Renamed".to_owned())
    );
    assert_eq!(
        store.organization_settings(&org).await?,
        Some(settings),
        "kept"
    );
    assert_eq!(store.organization_settings(&other).await?, Some(Map::new()));
    assert!(
        !store
            .update_organization(&ids.next(), Some("x"), None)
            .await?
    );

    let id = IntegrationIdentifier::parse("my-github-integration")?;
    let integration = Integration {
        org_id: org.clone(),
        identifier: id.clone(),
        // Key order survives.
        document: obj(
            json!({ "version": "1.0", "config": { "resources": [] }, "actionsProcessingEnabled": true }),
        ),
        created_at: at(0),
        created_by: "ocean".into(),
        updated_at: at(0),
        updated_by: "ocean".into(),
    };
    store.create_integration(&integration).await?;
    assert!(is_already_exists(
        &store.create_integration(&integration).await
    ));
    assert_eq!(
        store.get_integration(&org, &id).await?,
        Some(integration.clone())
    );
    assert_eq!(store.get_integration(&other, &id).await?, None);
    assert_eq!(store.count_integrations(&org).await?, 1);
    assert_eq!(store.count_integrations(&other).await?, 0);

    let mut changed = integration.clone();
    changed
        .document
        .insert("processingMode".into(), json!("dsp"));
    changed.updated_at = at(5);
    changed.updated_by = "other-client".into();
    changed.created_by = "forged".into();
    assert!(store.update_integration(&changed).await?);
    let stored = store.get_integration(&org, &id).await?.context("stored")?;
    assert_eq!(stored.document, changed.document);
    assert_eq!(
        (stored.updated_at, stored.updated_by.as_str()),
        (at(5), "other-client")
    );
    assert_eq!(stored.created_by, "ocean", "creation is the store's record");
    let elsewhere = Integration {
        org_id: other.clone(),
        ..changed.clone()
    };
    assert!(!store.update_integration(&elsewhere).await?);
    assert!(!store.delete_integration(&other, &id).await?);
    assert!(store.delete_integration(&org, &id).await?);
    assert_eq!(store.get_integration(&org, &id).await?, None);
    assert!(!store.delete_integration(&org, &id).await?);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Organization isolation
// ---------------------------------------------------------------------------------------

pub async fn organizations_are_isolated(store: Shared) -> Result<()> {
    let ids = ids();
    let a = new_org(&*store, &ids, "A").await?;
    let b = new_org(&*store, &ids, "B").await?;
    store
        .add_credential(&Credential {
            org_id: a.clone(),
            client_id: "a-client".into(),
            client_secret: ClientSecret::new("s"),
            created_at: at(0),
            user: None,
        })
        .await?;
    let blueprint = microservice_blueprint(&a, at(0));
    store.create_blueprint(&blueprint).await?;
    let e = entity(&a, "microservice", "svc", at(0));
    let run = new_run(&ids, &a, "create_microservice", at(0));
    let mut agent = new_delivery(&ids, &run, DeliveryMode::Agent, at(0));
    agent.installation_id = None;
    store.create_run(&run, Some(&agent), None).await?;
    let record = AffectedEntity {
        org_id: a.clone(),
        run_id: run.id.clone(),
        blueprint: e.blueprint.clone(),
        entity: e.identifier.clone(),
        operation: EntityOperation::Create,
        at: at(0),
        by: "u".into(),
        snapshot: json!({}),
    };
    store
        .put_entity(&e, EntityWriteMode::CreateOnly, Some(&record), &[])
        .await?;
    let action = seed_action(
        CREATE_MICROSERVICE,
        "action_ed2B0O9CbEYkuqvN",
        "2022-12-07T09:48:28.659Z",
    )?;
    store.create_action(&a, &action).await?;
    store
        .save_transition(&run, 1, &[log(&ids, &run, "hi", at(1))], None)
        .await?;

    assert!(store.credentials(&b).await?.is_empty());
    assert_eq!(store.get_blueprint(&b, &blueprint.identifier).await?, None);
    assert!(store.list_blueprints(&b).await?.is_empty());
    assert_eq!(
        store.get_entity(&b, &e.blueprint, &e.identifier).await?,
        None
    );
    assert!(store.list_entities(&b, &e.blueprint).await?.is_empty());
    assert!(store.affected_entities(&b, &run.id).await?.is_empty());
    assert_eq!(
        store.get_action(&b, &action.definition.identifier).await?,
        None
    );
    assert!(store.list_actions(&b).await?.is_empty());
    assert_eq!(store.get_run(&b, &run.id).await?, None);
    assert_eq!(store.run_version(&b, &run.id).await?, None);
    assert!(
        store
            .list_runs(
                &b,
                &RunFilter {
                    limit: 10,
                    ..Default::default()
                }
            )
            .await?
            .is_empty()
    );
    assert!(store.list_logs(&b, &run.id, 0, 10).await?.is_empty());
    assert!(store.logs_after(&b, &run.id, 0, 10).await?.is_empty());
    assert!(store.deliveries_of_run(&b, &run.id).await?.is_empty());
    assert!(!store.redeliver(&b, &run.id, at(5)).await?);
    assert!(
        store
            .claim_agent_deliveries(&b, &unbound_claim("r", at(5), 1000, 10))
            .await?
            .is_empty()
    );
    assert_eq!(
        store
            .ack_agent_deliveries(&b, std::slice::from_ref(&run.id), at(5))
            .await?,
        0
    );
    assert!(
        !store
            .heartbeat_agent_delivery(&b, &run.id, at(5), 1000)
            .await?
    );

    // Writes aimed at another organization's rows touch nothing.
    assert!(
        !store
            .delete_entity(
                &b,
                &e.blueprint,
                &e.identifier,
                &EntityDeletion {
                    by: "intruder",
                    at: at(5),
                    affected: None,
                },
            )
            .await?
    );
    assert!(
        !store
            .delete_action(&b, &action.definition.identifier)
            .await?
    );
    assert!(
        !store
            .delete_blueprint(&b, &blueprint.identifier, "intruder", at(5))
            .await?
    );
    let mut hijack = run.clone();
    hijack.org_id = b.clone();
    assert!(is_conflict(
        &store.save_transition(&hijack, 1, &[], None).await
    ));
    assert!(is_conflict(
        &store
            .update_blueprint(&Blueprint {
                org_id: b.clone(),
                ..blueprint.clone()
            })
            .await
    ));
    assert!(is_conflict(&store.update_action(&b, &action).await));

    // Everything is still there for its owner.
    assert!(
        store
            .get_entity(&a, &e.blueprint, &e.identifier)
            .await?
            .is_some()
    );
    assert!(
        store
            .get_action(&a, &action.definition.identifier)
            .await?
            .is_some()
    );
    assert_eq!(
        store.get_blueprint(&a, &blueprint.identifier).await?,
        Some(blueprint)
    );
    assert_eq!(store.list_logs(&a, &run.id, 0, 10).await?.len(), 1);
    assert_eq!(store.affected_entities(&a, &run.id).await?.len(), 1);
    assert_eq!(
        store
            .claim_agent_deliveries(&a, &unbound_claim("r", at(5), 1000, 10))
            .await?
            .len(),
        1
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------

/// Reads the run, decides with [`transition`] and stores, retrying on conflicts as the
/// services do. `Ok(Err(_))` is the domain refusing the command.
async fn apply(
    store: &dyn Store,
    org: &OrgId,
    id: &RunId,
    command: RunCommand,
    log_id: Option<LogId>,
) -> Result<Result<Vec<RunLog>, port_core::PortError>> {
    for _ in 0..10_000 {
        let run = store.get_run(org, id).await?.context("run exists")?;
        let next = match transition(&run, command.clone(), "worker", at(1)) {
            Ok(next) => next,
            Err(refused) => return Ok(Err(refused)),
        };
        let mut logs = Vec::new();
        if let (Some(log_id), RunCommand::AddLog { message, .. }) = (&log_id, &command) {
            logs.push(NewRunLog::new(
                log_id.clone(),
                id.clone(),
                message,
                at(1),
                "worker",
            ));
        }
        match store
            .save_transition(&next.run, run.version, &logs, None)
            .await
        {
            Ok(stored) => return Ok(Ok(stored)),
            Err(StoreError::Conflict(_)) => tokio::task::yield_now().await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(anyhow!("no progress after 10000 conflicts"))
}

pub async fn concurrent_logs_and_patches(store: Shared) -> Result<()> {
    const WRITERS: usize = 16;
    const LINES: usize = 25;
    const PATCHERS: usize = 4;
    const PATCHES: usize = 10;
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let run = new_run(&ids, &org, "deploy", at(0));
    create(&*store, &run, None).await?;

    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (store, org, id, ids) = (store.clone(), org.clone(), run.id.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 0..LINES {
                let message = format!("writer {w} line {i}");
                let command = RunCommand::AddLog {
                    message,
                    termination_status: None,
                    status_label: None,
                };
                let log_id: LogId = ids.next();
                let stored = apply(&*store, &org, &id, command, Some(log_id.clone())).await?;
                let stored = stored.map_err(|e| anyhow!("log refused: {e}"))?;
                anyhow::ensure!(stored.len() == 1 && stored[0].id == log_id);
                written.push(log_id);
            }
            anyhow::Ok(written)
        }));
    }
    for p in 0..PATCHERS {
        let (store, org, id) = (store.clone(), org.clone(), run.id.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..PATCHES {
                let patch = RunPatch {
                    summary: Some(format!("patcher {p} patch {i}")),
                    ..Default::default()
                };
                apply(&*store, &org, &id, RunCommand::Patch(patch), None)
                    .await?
                    .map_err(|e| anyhow!("{e}"))?;
            }
            anyhow::Ok(Vec::new())
        }));
    }
    let mut expected_logs = HashSet::new();
    for task in tasks {
        expected_logs.extend(task.await??);
    }
    let mid = store.get_run(&org, &run.id).await?.context("run")?;
    assert_eq!(
        mid.version,
        1 + (PATCHERS * PATCHES) as u64,
        "every patch counted: no lost update"
    );

    // Two callers race to end the run; exactly one wins.
    let success = RunCommand::Patch(RunPatch {
        status: Some(FinalStatus::Success),
        ..Default::default()
    });
    let failure = RunCommand::AddLog {
        message: "giving up".into(),
        termination_status: Some(FinalStatus::Failure),
        status_label: None,
    };
    let final_log: LogId = ids.next();
    let racers = [(success, None), (failure, Some(final_log.clone()))].map(|(command, log_id)| {
        let (store, org, id) = (store.clone(), org.clone(), run.id.clone());
        tokio::spawn(async move { apply(&*store, &org, &id, command, log_id).await })
    });
    let mut winners = 0;
    let mut log_won = false;
    for (i, racer) in racers.into_iter().enumerate() {
        match racer.await?? {
            Ok(_) => {
                winners += 1;
                log_won = i == 1;
            }
            Err(refused) => assert_eq!(refused.kind, ErrorKind::RunExhausted),
        }
    }
    assert_eq!(winners, 1, "no double termination");
    if log_won {
        expected_logs.insert(final_log);
    }
    let end = store.get_run(&org, &run.id).await?.context("run")?;
    assert!(end.is_terminal());
    assert_eq!(end.version, mid.version + 1);

    let logs = store.list_logs(&org, &run.id, 0, 10_000).await?;
    let total = WRITERS * LINES + usize::from(log_won);
    assert_eq!(
        seqs(&logs),
        (1..=total as u64).collect::<Vec<_>>(),
        "seqs 1..N without gaps"
    );
    let stored: HashSet<LogId> = logs.iter().map(|l| l.id.clone()).collect();
    assert_eq!(stored.len(), total, "each log once");
    assert_eq!(stored, expected_logs);
    // Each writer's own lines keep their order.
    for w in 0..WRITERS {
        let mine: Vec<&str> = logs
            .iter()
            .filter_map(|l| l.message.strip_prefix(&format!("writer {w} line ")))
            .collect();
        let want: Vec<String> = (0..LINES).map(|i| i.to_string()).collect();
        assert_eq!(mine, want, "writer {w}");
    }
    Ok(())
}

pub async fn concurrent_claimers(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let mut all = BTreeSet::new();
    for i in 0..50 {
        let run = new_run(&ids, &org, "deploy", at(0));
        let d = new_delivery(&ids, &run, DeliveryMode::Webhook, at(i));
        store.create_run(&run, Some(&d), None).await?;
        all.insert(d.id);
    }
    let claimers = ["w1", "w2"].map(|owner| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .claim_due_webhooks(owner, at(1_000), 60_000, &ClaimLimits::up_to(7))
                    .await?;
                if batch.is_empty() {
                    return anyhow::Ok(mine);
                }
                for d in batch {
                    anyhow::ensure!(d.lease_owner.as_deref() == Some(owner));
                    mine.push(d.id);
                }
                tokio::task::yield_now().await;
            }
        })
    });
    let mut seen = BTreeSet::new();
    let mut counts = Vec::new();
    for claimer in claimers {
        let mine = claimer.await??;
        counts.push(mine.len());
        for id in mine {
            assert!(seen.insert(id.clone()), "{id} was held by both claimers");
        }
    }
    assert_eq!(seen, all, "every delivery claimed once: {counts:?}");
    Ok(())
}
