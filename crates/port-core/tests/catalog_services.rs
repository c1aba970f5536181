//! The services of blueprints, actions, approvals and deliveries against the in-memory
//! store: what the routes used to do themselves, now one service call each, and always
//! within the caller's organization.

use std::sync::Arc;

use futures::executor::block_on;

use port_core::ErrorKind;
use port_core::action::Operation;
use port_core::id::{OrgId, RunId};

use port_core::ports::{InProcessTemplates, Notice, RunStore};
use port_core::run::{Decision, RunStatus};
use port_core::service::{
    ActionFilter, AllowAllDestinations, Caller, ExecuteRequest, PENDING_APPROVER, Services,
};
use port_core::testing::{FixedClock, MemoryStore, RecordingNotifier, test_ids};
use serde_json::{Value, json};

struct World {
    services: Services,
    notifier: Arc<RecordingNotifier>,
    clock: Arc<FixedClock>,
}

fn world() -> World {
    let clock = Arc::new(FixedClock::at_default());
    let notifier = Arc::new(RecordingNotifier::new());
    let services = Services::new(
        Arc::new(MemoryStore::new()),
        clock.clone(),
        test_ids(clock.clone()),
        notifier.clone(),
        Arc::new(AllowAllDestinations),
        Arc::new(InProcessTemplates::default()),
    );
    World {
        services,
        notifier,
        clock,
    }
}

fn caller(org: &str, user: &str) -> Caller {
    Caller::machine(OrgId::parse(org).expect("org id"), user)
}

fn acme() -> Caller {
    caller("org_AcmeAcmeAcmeAcme", "alice")
}

fn globex() -> Caller {
    caller("org_GlobexGlobexGlob", "bob")
}

fn service_blueprint() -> Value {
    json!({
        "identifier": "service",
        "title": "Service",
        "schema": { "properties": { "language": { "type": "string" } }, "required": [] },
    })
}

fn deploy_action(identifier: &str, extra: Value) -> Value {
    let mut action = json!({
        "identifier": identifier,
        "title": "Deploy",
        "trigger": {
            "type": "self-service",
            "operation": "DAY-2",
            "blueprintIdentifier": "service",
            "userInputs": { "properties": {}, "required": [] },
        },
        "invocationMethod": { "type": "WEBHOOK", "url": "http://backend.example/hook" },
    });
    if let (Value::Object(action), Value::Object(extra)) = (&mut action, extra) {
        action.extend(extra);
    }
    action
}

fn create_action(identifier: &str) -> Value {
    json!({
        "identifier": identifier,
        "title": "Create",
        "trigger": {
            "type": "self-service",
            "operation": "CREATE",
            "userInputs": { "properties": {}, "required": [] },
        },
        "invocationMethod": { "type": "WEBHOOK", "url": "http://backend.example/hook" },
    })
}

fn kind<T: std::fmt::Debug>(result: Result<T, port_core::PortError>) -> ErrorKind {
    result.expect_err("refused").kind
}

#[test]
fn blueprints_are_created_changed_and_deleted_within_their_organization() {
    let w = world();
    let s = &w.services;
    block_on(async {
        let created = s
            .create_blueprint(&acme(), &service_blueprint())
            .await
            .expect("created");
        assert_eq!(created.identifier.as_str(), "service");
        assert_eq!(created.stamp.created_by, "alice");
        assert_eq!(
            kind(s.create_blueprint(&acme(), &service_blueprint()).await),
            ErrorKind::IdentifierTaken
        );

        // Another organization sees none of it, and may use the same identifier.
        assert!(s.list_blueprints(&globex()).await.expect("list").is_empty());
        assert_eq!(
            kind(s.blueprint_of(&globex(), "service").await),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(
                s.patch_blueprint(&globex(), "service", json!({ "title": "Theirs" }))
                    .await
            ),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(s.delete_blueprint(&globex(), "service").await),
            ErrorKind::NotFound
        );
        s.create_blueprint(&globex(), &service_blueprint())
            .await
            .expect("the same identifier in another organization");

        w.clock.advance(1000);
        let patched = s
            .patch_blueprint(&acme(), "service", json!({ "title": "Services" }))
            .await
            .expect("patched");
        assert_eq!(patched.title.as_deref(), Some("Services"));
        assert_eq!(patched.stamp.created_at, created.stamp.created_at);
        assert!(patched.stamp.updated_at > created.stamp.updated_at);
        // The schema stays: a patch merges.
        assert!(patched.definition.get("schema").is_some());

        let replaced = s
            .replace_blueprint(
                &acme(),
                "service",
                json!({ "title": "Replaced", "schema": { "properties": {} } }),
            )
            .await
            .expect("replaced");
        assert_eq!(replaced.title.as_deref(), Some("Replaced"));
        let refused = s
            .replace_blueprint(
                &acme(),
                "service",
                json!({ "identifier": "other", "title": "X", "schema": { "properties": {} } }),
            )
            .await
            .expect_err("another identifier than the path's");
        assert_eq!(refused.kind, ErrorKind::InvalidRequest);
        assert_eq!(
            refused.message,
            "identifier: must be service, the identifier in the path"
        );
        assert_eq!(
            kind(
                s.patch_blueprint(&acme(), "service", json!(["not", "an", "object"]))
                    .await
            ),
            ErrorKind::InvalidRequest
        );

        assert_eq!(
            s.blueprint_of(&globex(), "service")
                .await
                .expect("theirs")
                .title
                .as_deref(),
            Some("Service"),
            "the other organization's blueprint is untouched"
        );
        s.delete_blueprint(&acme(), "service")
            .await
            .expect("deleted");
        assert_eq!(
            kind(s.blueprint_of(&acme(), "service").await),
            ErrorKind::NotFound
        );
        assert_eq!(s.list_blueprints(&globex()).await.expect("list").len(), 1);
        // An identifier that cannot exist is simply not found.
        assert_eq!(
            kind(s.blueprint_of(&acme(), "not an identifier!").await),
            ErrorKind::NotFound
        );
    });
}

#[test]
fn actions_are_created_listed_and_filtered_per_organization() {
    let w = world();
    let s = &w.services;
    block_on(async {
        // A trigger naming a blueprint that does not exist is 404.
        let missing = s
            .create_action(&acme(), &deploy_action("deploy", json!({})))
            .await
            .expect_err("no blueprint yet");
        assert_eq!(missing.kind, ErrorKind::NotFound);
        assert_eq!(missing.message, "blueprint service was not found");

        s.create_blueprint(&acme(), &service_blueprint())
            .await
            .expect("blueprint");
        let deploy = s
            .create_action(&acme(), &deploy_action("deploy", json!({})))
            .await
            .expect("created");
        assert_eq!(deploy.meta.created_by, "alice");
        s.create_action(&acme(), &create_action("scaffold"))
            .await
            .expect("created");
        s.create_action(
            &acme(),
            &deploy_action("hidden", json!({ "publish": false })),
        )
        .await
        .expect("created");
        assert_eq!(
            kind(s.create_action(&acme(), &create_action("scaffold")).await),
            ErrorKind::IdentifierTaken
        );

        let identifiers = |actions: Vec<port_core::action::Action>| -> Vec<String> {
            let mut ids: Vec<String> = actions
                .iter()
                .map(|a| a.definition.identifier.to_string())
                .collect();
            ids.sort();
            ids
        };
        let all = s
            .list_actions(&acme(), &ActionFilter::default())
            .await
            .expect("list");
        assert_eq!(identifiers(all), ["deploy", "hidden", "scaffold"]);
        let day2 = ActionFilter {
            operations: vec![Operation::Day2],
            ..ActionFilter::default()
        };
        assert_eq!(
            identifiers(s.list_actions(&acme(), &day2).await.expect("list")),
            ["deploy", "hidden"]
        );
        let published_of_service = ActionFilter {
            blueprints: vec!["service".into()],
            published: Some(true),
            ..ActionFilter::default()
        };
        assert_eq!(
            identifiers(
                s.list_actions(&acme(), &published_of_service)
                    .await
                    .expect("list")
            ),
            ["deploy"]
        );
        let automations = ActionFilter {
            self_service: Some(false),
            ..ActionFilter::default()
        };
        assert!(
            s.list_actions(&acme(), &automations)
                .await
                .expect("list")
                .is_empty()
        );

        // Another organization sees none of them and cannot change them.
        assert!(
            s.list_actions(&globex(), &ActionFilter::default())
                .await
                .expect("list")
                .is_empty()
        );
        assert_eq!(
            kind(s.get_action(&globex(), "deploy").await),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(s.delete_action(&globex(), "deploy").await),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(
                s.replace_action(&globex(), "scaffold", &create_action("scaffold"))
                    .await
            ),
            ErrorKind::NotFound
        );

        // A replacement keeps the id and the creation stamp; its identifier is the path's.
        w.clock.advance(1000);
        let mut changed = deploy_action("deploy", json!({}));
        changed["title"] = json!("Deploy now");
        let replaced = s
            .replace_action(&acme(), "deploy", &changed)
            .await
            .expect("replaced");
        assert_eq!(replaced.meta.id, deploy.meta.id);
        assert_eq!(replaced.meta.created_at, deploy.meta.created_at);
        assert!(replaced.meta.updated_at > deploy.meta.updated_at);
        assert_eq!(replaced.definition.title.as_deref(), Some("Deploy now"));
        assert_eq!(
            kind(
                s.replace_action(&acme(), "deploy", &create_action("scaffold"))
                    .await
            ),
            ErrorKind::InvalidRequest
        );

        s.delete_action(&acme(), "hidden").await.expect("deleted");
        assert_eq!(
            kind(s.get_action(&acme(), "hidden").await),
            ErrorKind::NotFound
        );
    });
}

#[test]
fn legacy_actions_belong_to_their_blueprint() {
    let w = world();
    let s = &w.services;
    block_on(async {
        s.create_blueprint(&acme(), &service_blueprint())
            .await
            .expect("blueprint");
        let v1 = |identifier: &str| {
            json!({
                "identifier": identifier,
                "title": identifier,
                "trigger": "DAY-2",
                "invocationMethod": { "type": "WEBHOOK", "url": "http://backend.example/hook" },
                "userInputs": { "properties": {}, "required": [] },
            })
        };
        let created = s
            .create_blueprint_actions(&acme(), "service", &json!([v1("a"), v1("b")]))
            .await
            .expect("created");
        assert_eq!(created.len(), 2);
        // Nothing is created when one identifier of the body is taken.
        assert_eq!(
            kind(
                s.create_blueprint_actions(&acme(), "service", &json!([v1("c"), v1("a")]))
                    .await
            ),
            ErrorKind::IdentifierTaken
        );
        assert_eq!(
            s.blueprint_actions(&acme(), "service")
                .await
                .expect("list")
                .len(),
            2
        );
        // The body becomes the whole set: `a` goes, `b` stays (same id), `c` comes.
        let replaced = s
            .replace_blueprint_actions(&acme(), "service", &json!([v1("b"), v1("c")]))
            .await
            .expect("replaced");
        assert_eq!(replaced.len(), 2);
        assert_eq!(replaced[0].meta.id, created[1].meta.id);
        assert_eq!(
            kind(s.blueprint_action(&acme(), "service", "a").await),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(
                s.replace_blueprint_actions(&acme(), "service", &v1("b"))
                    .await
            ),
            ErrorKind::InvalidRequest,
            "the whole set is an array"
        );
        // A v2 action of no blueprint is not one of the blueprint's.
        s.create_action(&acme(), &create_action("scaffold"))
            .await
            .expect("created");
        let not_its = s
            .blueprint_action(&acme(), "service", "scaffold")
            .await
            .expect_err("not the blueprint's");
        assert_eq!(
            not_its.message,
            "action scaffold of blueprint service was not found"
        );
        assert_eq!(
            kind(s.blueprint_actions(&globex(), "service").await),
            ErrorKind::NotFound
        );
        s.delete_blueprint_action(&acme(), "service", "c")
            .await
            .expect("deleted");
        assert_eq!(
            s.blueprint_actions(&acme(), "service")
                .await
                .expect("list")
                .len(),
            1
        );
    });
}

#[test]
fn approvals_and_deliveries_go_through_services() {
    let w = world();
    let s = &w.services;
    block_on(async {
        let approval = json!({
            "identifier": "guarded",
            "title": "Guarded",
            "trigger": {
                "type": "self-service",
                "operation": "CREATE",
                "userInputs": { "properties": {}, "required": [] },
            },
            "requiredApproval": { "type": "ALL" },
            "approvers": ["carol", "dave"],
            "invocationMethod": { "type": "WEBHOOK", "url": "http://backend.example/hook" },
        });
        s.create_action(&acme(), &approval).await.expect("action");
        let run = s
            .execute(&acme(), "guarded", ExecuteRequest::default())
            .await
            .expect("executed");
        assert_eq!(run.status(), RunStatus::WaitingForApproval);

        let pending = s
            .run_approvers(&acme(), run.id.as_str(), true)
            .await
            .expect("approvers");
        assert_eq!(pending.len(), 2);
        assert!(pending.iter().all(|a| a.state == PENDING_APPROVER));
        // Not yet delivered: nothing to redeliver, and no claim to extend.
        assert_eq!(
            kind(s.redeliver(&acme(), run.id.as_str()).await),
            ErrorKind::InvalidRequest
        );
        assert_eq!(
            kind(s.heartbeat(&acme(), run.id.as_str(), 60_000).await),
            ErrorKind::NotFound
        );
        // Another organization sees no such run.
        assert_eq!(
            kind(s.run_approvers(&globex(), run.id.as_str(), true).await),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(s.run_deliveries(&globex(), run.id.as_str()).await),
            ErrorKind::NotFound
        );

        let carol = caller("org_AcmeAcmeAcmeAcme", "carol");
        let dave = caller("org_AcmeAcmeAcmeAcme", "dave");
        s.decide(
            &carol,
            run.id.as_str(),
            Decision::Approved,
            Some("fine".into()),
        )
        .await
        .expect("approved");
        let decided = s
            .run_approvers(&acme(), run.id.as_str(), true)
            .await
            .expect("approvers");
        assert_eq!(decided[0].user_id, "carol");
        assert_eq!(decided[0].state, "APPROVED");
        assert_eq!(decided[0].description.as_deref(), Some("fine"));
        assert_eq!(decided[1].state, PENDING_APPROVER);
        assert_eq!(
            s.run_approvers(&acme(), run.id.as_str(), false)
                .await
                .expect("approvers")
                .len(),
            1
        );
        let run = s
            .decide(&dave, run.id.as_str(), Decision::Approved, None)
            .await
            .expect("approved");
        assert_eq!(run.status(), RunStatus::InProgress);

        let deliveries = s
            .run_deliveries(&acme(), run.id.as_str())
            .await
            .expect("deliveries");
        assert_eq!(deliveries.len(), 1);
        w.notifier.take();
        s.redeliver(&acme(), run.id.as_str())
            .await
            .expect("redelivered");
        assert!(
            w.notifier
                .take()
                .iter()
                .any(|n| matches!(n, Notice::DeliveryReady)),
            "the delivery worker is woken"
        );
        assert_eq!(
            kind(s.redeliver(&globex(), run.id.as_str()).await),
            ErrorKind::NotFound
        );
    });
}

#[test]
fn a_follower_reads_only_its_organization() {
    let w = world();
    let s = &w.services;
    block_on(async {
        s.create_action(&acme(), &create_action("scaffold"))
            .await
            .expect("action");
        let run = s
            .execute(&acme(), "scaffold", ExecuteRequest::default())
            .await
            .expect("executed");
        s.add_log(&acme(), run.id.as_str(), "hello".into(), None, None)
            .await
            .expect("logged");

        let lines = s.logs_after(&acme(), &run.id, 0, 10).await.expect("lines");
        assert_eq!(lines.len(), 1);
        assert!(
            s.logs_after(&globex(), &run.id, 0, 10)
                .await
                .expect("lines")
                .is_empty()
        );

        let theirs = s.org_runs(&globex());
        let acme_org = acme().org_id;
        assert!(
            theirs
                .get_run(&acme_org, &run.id)
                .await
                .expect("read")
                .is_none()
        );
        assert!(
            theirs
                .logs_after(&acme_org, &run.id, 0, 10)
                .await
                .expect("read")
                .is_empty()
        );
        let ours = s.org_runs(&acme());
        assert_eq!(
            ours.run_version(&acme_org, &run.id).await.expect("read"),
            Some(
                s.run_version(&acme(), run.id.as_str())
                    .await
                    .expect("version")
            )
        );
        let stored = ours
            .get_run(&acme_org, &run.id)
            .await
            .expect("read")
            .expect("found");
        assert!(
            ours.save_transition(&stored, stored.version, &[], None)
                .await
                .is_err(),
            "the view is read-only"
        );
        let unknown = RunId::parse("r_AAAAAAAAAAAAAAAA").expect("run id");
        assert!(
            ours.get_run(&acme_org, &unknown)
                .await
                .expect("read")
                .is_none()
        );
    });
}
