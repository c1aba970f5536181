//! Users, teams, action permissions and the audit trail, and their enforcement on
//! execute, approve and view, against the in-memory store: what people may do, and
//! the escalations they may not (a Member editing permissions or inviting, `run_as`
//! from a person, reading a run hidden from them, approving their own run, a policy
//! that never ends).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::executor::block_on;
use serde_json::{Value, json};

use port_core::access::{AuditFilter, AuditResource, Email, Role, TeamName};
use port_core::id::OrgId;
use port_core::ports::{DeliveryMode, InProcessTemplates, OrgStore, Organization, RunFilter};
use port_core::run::{Decision, RunPatch, RunStatus};
use port_core::service::access::NewUser;
use port_core::service::{
    AllowAllDestinations, Caller, DestinationPolicy, EntityWriteKind, EntityWriteOptions,
    ExecuteRequest, RUNS_PAGE_MAX_EXAMINED, Services,
};
use port_core::testing::{FixedClock, MemoryStore, RecordingNotifier, test_ids};
use port_core::{ErrorKind, PortError, Timestamp};

const ORG: &str = "org_AcmeAcmeAcmeAcme";
const CI: &str = "ci-client";

struct World {
    services: Services,
}

fn org() -> OrgId {
    OrgId::parse(ORG).expect("org id")
}

fn machine() -> Caller {
    Caller::machine(org(), CI)
}

fn email(address: &str) -> Email {
    Email::parse(address).expect("email")
}

/// An organization with a team `Platform` and four people: ada (Admin), bob and
/// dave (Members of Platform) and carol (a Member of no team).
fn world_with(destinations: Arc<dyn DestinationPolicy>) -> World {
    let clock = Arc::new(FixedClock::at_default());
    let store = Arc::new(MemoryStore::new());
    block_on(store.create_organization(&Organization {
        id: org(),
        name: "Acme".into(),
        created_at: Timestamp::from_unix_millis(1_000),
    }))
    .expect("organization");
    let services = Services::new(
        store,
        clock.clone(),
        test_ids(clock),
        Arc::new(RecordingNotifier::new()),
        destinations,
        Arc::new(InProcessTemplates::default()),
    );
    block_on(async {
        services
            .create_team(&machine(), &json!({"name": "Platform"}))
            .await
            .expect("team");
        for (address, role, teams) in [
            ("ada@acme.io", Role::Admin, vec![]),
            ("bob@acme.io", Role::Member, vec!["Platform"]),
            ("carol@acme.io", Role::Member, vec![]),
            ("dave@acme.io", Role::Member, vec!["Platform"]),
        ] {
            services
                .create_user(
                    &machine(),
                    NewUser {
                        email: email(address),
                        role,
                        first_name: None,
                        last_name: None,
                        teams: teams
                            .into_iter()
                            .map(|t| TeamName::parse(t).expect("team"))
                            .collect(),
                    },
                )
                .await
                .expect("user");
        }
    });
    World { services }
}

fn world() -> World {
    world_with(Arc::new(AllowAllDestinations))
}

impl World {
    async fn person(&self, address: &str) -> Caller {
        let user = self
            .services
            .get_user(&machine(), address)
            .await
            .expect("user");
        Caller::person(&user)
    }

    async fn action(&self, identifier: &str, extra: Value) {
        self.services
            .create_action(&machine(), &action_body(identifier, extra))
            .await
            .expect("action");
    }

    async fn permissions(&self, action: &str, body: Value) {
        self.services
            .patch_action_permissions(&machine(), action, &body)
            .await
            .expect("permissions");
    }

    async fn execute(
        &self,
        caller: &Caller,
        action: &str,
    ) -> Result<port_core::run::Run, PortError> {
        self.services
            .execute(caller, action, ExecuteRequest::default())
            .await
    }

    async fn service_blueprint(&self) {
        self.services
            .create_blueprint(
                &machine(),
                &json!({
                    "identifier": "service",
                    "title": "Service",
                    "schema": {"properties": {"owner": {"type": "string"}}, "required": []},
                }),
            )
            .await
            .expect("blueprint");
    }

    async fn entity(&self, identifier: &str, team: Option<&str>, owner: &str) {
        let mut body = json!({"identifier": identifier, "properties": {"owner": owner}});
        if let Some(team) = team {
            body["team"] = json!(team);
        }
        self.services
            .write_entity(
                &machine(),
                "service",
                &body,
                None,
                &EntityWriteOptions {
                    kind: EntityWriteKind::Create {
                        upsert: true,
                        merge: false,
                    },
                    validation_only: false,
                    create_missing_related: false,
                    run_id: None,
                },
            )
            .await
            .expect("entity");
    }

    async fn visible_ids(&self, caller: &Caller) -> Vec<String> {
        let page = self
            .services
            .list_runs_page(
                caller,
                &RunFilter {
                    limit: 100,
                    ..RunFilter::default()
                },
            )
            .await
            .expect("runs");
        page.runs.iter().map(|r| r.id.to_string()).collect()
    }
}

fn action_body(identifier: &str, extra: Value) -> Value {
    let mut action = json!({
        "identifier": identifier,
        "title": "Deploy",
        "trigger": {
            "type": "self-service",
            "operation": "CREATE",
            "userInputs": {"properties": {}, "required": []},
        },
        "invocationMethod": {"type": "WEBHOOK", "url": "https://backend.example/hook"},
    });
    if let (Value::Object(action), Value::Object(extra)) = (&mut action, extra) {
        action.extend(extra);
    }
    action
}

fn day2_body(identifier: &str) -> Value {
    json!({
        "identifier": identifier,
        "title": "Restart",
        "trigger": {
            "type": "self-service",
            "operation": "DAY-2",
            "blueprintIdentifier": "service",
            "userInputs": {"properties": {}, "required": []},
        },
        "invocationMethod": {"type": "WEBHOOK", "url": "https://backend.example/hook"},
    })
}

fn refusal<T: std::fmt::Debug>(result: Result<T, PortError>) -> (ErrorKind, String) {
    let e = result.expect_err("refused");
    (e.kind, e.message)
}

fn kind<T: std::fmt::Debug>(result: Result<T, PortError>) -> ErrorKind {
    refusal(result).0
}

// ---------------------------------------------------------------------------------------
// Users and teams
// ---------------------------------------------------------------------------------------

#[test]
fn admins_manage_users_and_members_only_list_them() {
    let w = world();
    let s = &w.services;
    block_on(async {
        let ada = w.person("ada@acme.io").await;
        let bob = w.person("bob@acme.io").await;

        let users = s.list_users(&bob).await.expect("a Member lists users");
        assert_eq!(users.len(), 4);
        assert_eq!(
            s.get_user(&bob, "Carol@Acme.io").await.expect("user").email,
            email("carol@acme.io")
        );
        assert_eq!(
            kind(s.get_user(&bob, "nobody@acme.io").await),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(s.get_user(&bob, "not an address").await),
            ErrorKind::NotFound
        );

        // A Member invites nobody, changes and deletes nobody.
        let invite = json!({"invitee": {"email": "eve@acme.io", "roles": ["Admin"]}});
        assert_eq!(
            kind(s.invite_user(&bob, &invite).await),
            ErrorKind::MissingPermissions
        );
        assert_eq!(
            kind(
                s.update_user(&bob, "bob@acme.io", &json!({"roles": ["Admin"]}))
                    .await
            ),
            ErrorKind::MissingPermissions
        );
        assert_eq!(
            kind(s.delete_user(&bob, "carol@acme.io").await),
            ErrorKind::MissingPermissions
        );

        let eve = s.invite_user(&ada, &invite).await.expect("invited");
        assert_eq!(eve.role, Role::Admin);
        assert_eq!(eve.to_json()["status"], "Invited");
        assert_eq!(
            kind(s.invite_user(&ada, &invite).await),
            ErrorKind::IdentifierTaken
        );
        let default_role = s
            .invite_user(&ada, &json!({"invitee": {"email": "finn@acme.io"}}))
            .await
            .expect("invited");
        assert_eq!(default_role.role, Role::Member);
        assert_eq!(
            kind(
                s.invite_user(
                    &ada,
                    &json!({"invitee": {"email": "gil@acme.io", "teams": ["Nope"]}})
                )
                .await
            ),
            ErrorKind::InvalidRequest
        );
        assert_eq!(
            kind(
                s.invite_user(
                    &ada,
                    &json!({"invitee": {"email": "gil@acme.io", "roles": ["Owner"]}})
                )
                .await
            ),
            ErrorKind::InvalidRequest
        );

        let carol = s
            .update_user(&ada, "carol@acme.io", &json!({"teams": ["Platform"]}))
            .await
            .expect("updated");
        assert_eq!(carol.teams, vec![TeamName::parse("Platform").unwrap()]);
        assert_eq!(carol.role, Role::Member);
        s.delete_user(&ada, "finn@acme.io").await.expect("deleted");
        assert_eq!(
            kind(s.get_user(&ada, "finn@acme.io").await),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(s.delete_user(&ada, "finn@acme.io").await),
            ErrorKind::NotFound
        );

        let users = s
            .audit_log(
                &ada,
                AuditFilter {
                    resources: vec![AuditResource::User],
                    ..AuditFilter::default()
                },
            )
            .await
            .expect("audit");
        let actions: Vec<(&str, &str, &str)> = users
            .iter()
            .take(3)
            .map(|e| (e.action.as_str(), e.identifier.as_str(), e.by.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("DELETE", "finn@acme.io", "ada@acme.io"),
                ("UPDATE", "carol@acme.io", "ada@acme.io"),
                ("CREATE", "finn@acme.io", "ada@acme.io"),
            ]
        );
        assert!(users.iter().all(|e| !e.by_machine || e.by == CI));
        assert_eq!(
            kind(s.audit_log(&bob, AuditFilter::default()).await),
            ErrorKind::MissingPermissions
        );
        assert_eq!(
            kind(
                s.audit_log(
                    &ada,
                    AuditFilter {
                        limit: 1_001,
                        ..AuditFilter::default()
                    }
                )
                .await
            ),
            ErrorKind::InvalidRequest
        );
    });
}

#[test]
fn the_last_admin_is_never_demoted_or_deleted() {
    let w = world();
    let s = &w.services;
    block_on(async {
        let ada = w.person("ada@acme.io").await;
        let (kind_, message) = refusal(
            s.update_user(&ada, "ada@acme.io", &json!({"roles": ["Member"]}))
                .await,
        );
        assert_eq!(kind_, ErrorKind::InvalidRequest);
        assert!(message.contains("last Admin"), "{message}");
        assert_eq!(
            kind(s.delete_user(&machine(), "ada@acme.io").await),
            ErrorKind::InvalidRequest
        );
        s.update_user(&ada, "bob@acme.io", &json!({"roles": ["Admin"]}))
            .await
            .expect("a second Admin");
        s.update_user(&ada, "ada@acme.io", &json!({"roles": ["Member"]}))
            .await
            .expect("no longer the last");
        assert_eq!(
            kind(s.delete_user(&machine(), "bob@acme.io").await),
            ErrorKind::InvalidRequest
        );
    });
}

#[test]
fn admins_manage_teams() {
    let w = world();
    let s = &w.services;
    block_on(async {
        let ada = w.person("ada@acme.io").await;
        let bob = w.person("bob@acme.io").await;
        assert_eq!(s.list_teams(&bob).await.expect("teams").len(), 1);
        assert_eq!(
            kind(s.create_team(&bob, &json!({"name": "Sneaky"})).await),
            ErrorKind::MissingPermissions
        );
        let team = s
            .create_team(
                &ada,
                &json!({"name": "Data", "description": "data people", "users": ["carol@acme.io"]}),
            )
            .await
            .expect("created");
        assert_eq!(team.users, vec![email("carol@acme.io")]);
        assert_eq!(
            kind(s.create_team(&ada, &json!({"name": "Data"})).await),
            ErrorKind::IdentifierTaken
        );
        assert_eq!(
            kind(
                s.create_team(
                    &ada,
                    &json!({"name": "Ghosts", "users": ["nobody@acme.io"]})
                )
                .await
            ),
            ErrorKind::InvalidRequest
        );
        assert_eq!(
            kind(
                s.create_team(&ada, &json!({"name": "X", "colour": "red"}))
                    .await
            ),
            ErrorKind::InvalidRequest
        );
        let carol = s.get_user(&ada, "carol@acme.io").await.expect("carol");
        assert_eq!(carol.teams, vec![TeamName::parse("Data").unwrap()]);

        // PATCH keeps what it does not name; PUT replaces all.
        let patched = s
            .update_team(
                &ada,
                "Data",
                &json!({"users": ["carol@acme.io", "bob@acme.io"]}),
                false,
            )
            .await
            .expect("patched");
        assert_eq!(patched.description.as_deref(), Some("data people"));
        assert_eq!(patched.users.len(), 2);
        let renamed = s
            .update_team(&ada, "Data", &json!({"name": "Analytics"}), true)
            .await
            .expect("replaced");
        assert_eq!(renamed.name.as_str(), "Analytics");
        assert_eq!(renamed.description, None);
        assert!(renamed.users.is_empty());
        assert_eq!(kind(s.get_team(&ada, "Data").await), ErrorKind::NotFound);
        assert_eq!(
            kind(s.update_team(&bob, "Analytics", &json!({}), false).await),
            ErrorKind::MissingPermissions
        );
        assert_eq!(
            kind(s.delete_team(&bob, "Analytics").await),
            ErrorKind::MissingPermissions
        );
        s.delete_team(&ada, "Analytics").await.expect("deleted");
        assert_eq!(
            kind(s.delete_team(&ada, "Analytics").await),
            ErrorKind::NotFound
        );

        let trail = s
            .audit_log(
                &ada,
                AuditFilter {
                    resources: vec![AuditResource::Team],
                    identifier: Some("Data".into()),
                    ..AuditFilter::default()
                },
            )
            .await
            .expect("audit");
        let actions: Vec<&str> = trail.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["UPDATE", "UPDATE", "CREATE"]);
    });
}

// ---------------------------------------------------------------------------------------
// Permissions
// ---------------------------------------------------------------------------------------

#[test]
fn permissions_default_to_admins_and_only_admins_change_them() {
    let w = world();
    let s = &w.services;
    block_on(async {
        w.action("deploy", json!({})).await;
        let ada = w.person("ada@acme.io").await;
        let bob = w.person("bob@acme.io").await;

        let defaults = s.action_permissions(&bob, "deploy").await.expect("read");
        assert_eq!(defaults.execute.roles, vec![Role::Admin]);
        assert_eq!(defaults.approve.roles, vec![Role::Admin]);
        assert_eq!(
            kind(s.action_permissions(&bob, "nope").await),
            ErrorKind::NotFound
        );

        // The escalation: a Member grants themselves the action.
        let grant = json!({"execute": {"users": ["bob@acme.io"]}});
        assert_eq!(
            kind(s.patch_action_permissions(&bob, "deploy", &grant).await),
            ErrorKind::MissingPermissions
        );
        assert_eq!(
            kind(w.execute(&bob, "deploy").await),
            ErrorKind::MissingPermissions
        );

        let patched = s
            .patch_action_permissions(&ada, "deploy", &grant)
            .await
            .expect("patched");
        assert_eq!(patched.execute.users, vec![email("bob@acme.io")]);
        assert_eq!(patched.execute.roles, vec![Role::Admin], "absent keys stay");
        assert_eq!(
            s.action_permissions(&bob, "deploy").await.expect("read"),
            patched
        );
        w.execute(&bob, "deploy").await.expect("bob may run it now");

        for bad in [
            json!({"execute": {"colour": "red"}}),
            json!({"approve": {"ownedByTeam": true}}),
            json!({"execute": {"policy": {"queries": {"q": {"rules": "nope"}}, "conditions": ["true"]}}}),
            json!({"execute": {"policy": {"queries": {"q": {"combinator": "and", "rules": []}}, "conditions": [format!("{}1{}", "(".repeat(40), ")".repeat(40))]}}}),
        ] {
            assert_eq!(
                kind(s.patch_action_permissions(&ada, "deploy", &bad).await),
                ErrorKind::InvalidRequest,
                "{bad}"
            );
        }
        assert_eq!(
            kind(s.patch_action_permissions(&ada, "nope", &grant).await),
            ErrorKind::NotFound
        );

        let trail = s
            .audit_log(
                &machine(),
                AuditFilter {
                    resources: vec![AuditResource::Permissions],
                    ..AuditFilter::default()
                },
            )
            .await
            .expect("audit");
        assert_eq!(trail.len(), 1);
        assert_eq!(trail[0].by, "ada@acme.io");
        assert_eq!(
            trail[0].diff["after"]["execute"]["users"],
            json!(["bob@acme.io"])
        );
    });
}

#[test]
fn members_may_not_change_actions_blueprints_or_runs() {
    let w = world();
    let s = &w.services;
    block_on(async {
        let bob = w.person("bob@acme.io").await;
        assert_eq!(
            kind(s.create_action(&bob, &action_body("mine", json!({}))).await),
            ErrorKind::MissingPermissions
        );
        w.action("deploy", json!({"allowAnyoneToViewRuns": true}))
            .await;
        assert_eq!(
            kind(
                s.replace_action(&bob, "deploy", &action_body("deploy", json!({})))
                    .await
            ),
            ErrorKind::MissingPermissions
        );
        assert_eq!(
            kind(s.delete_action(&bob, "deploy").await),
            ErrorKind::MissingPermissions
        );
        assert_eq!(
            kind(
                s.create_blueprint(
                    &bob,
                    &json!({"identifier": "x", "title": "X", "schema": {"properties": {}}})
                )
                .await
            ),
            ErrorKind::MissingPermissions
        );
        // Members read actions.
        assert_eq!(
            s.list_actions(&bob, &Default::default())
                .await
                .expect("list")
                .len(),
            1
        );
        let run = w.execute(&machine(), "deploy").await.expect("run");
        assert_eq!(
            kind(
                s.patch_run(&bob, run.id.as_str(), RunPatch::default())
                    .await
            ),
            ErrorKind::MissingPermissions
        );
        assert_eq!(
            kind(
                s.add_log(&bob, run.id.as_str(), "hi".into(), None, None)
                    .await
            ),
            ErrorKind::MissingPermissions
        );

        let ada = w.person("ada@acme.io").await;
        s.replace_action(
            &ada,
            "deploy",
            &action_body("deploy", json!({"title": "Ship"})),
        )
        .await
        .expect("replaced");
        s.delete_action(&ada, "deploy").await.expect("deleted");
        let trail = s
            .audit_log(
                &ada,
                AuditFilter {
                    resources: vec![AuditResource::Action],
                    ..AuditFilter::default()
                },
            )
            .await
            .expect("audit");
        let actions: Vec<(&str, &str)> = trail
            .iter()
            .map(|e| (e.action.as_str(), e.by.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("DELETE", "ada@acme.io"),
                ("UPDATE", "ada@acme.io"),
                ("CREATE", CI)
            ]
        );
    });
}

// ---------------------------------------------------------------------------------------
// Execute
// ---------------------------------------------------------------------------------------

#[test]
fn execute_follows_users_roles_teams_and_owned_by_team() {
    let w = world();
    let s = &w.services;
    block_on(async {
        w.service_blueprint().await;
        w.entity("api", Some("Platform"), "bob@acme.io").await;
        w.entity("web", None, "bob@acme.io").await;
        s.create_action(&machine(), &day2_body("restart"))
            .await
            .expect("action");
        let (bob, carol, ada) = (
            w.person("bob@acme.io").await,
            w.person("carol@acme.io").await,
            w.person("ada@acme.io").await,
        );
        let on = |entity: &str| ExecuteRequest {
            entity: Some(entity.into()),
            ..ExecuteRequest::default()
        };
        s.execute(&ada, "restart", on("api"))
            .await
            .expect("Admins by default");
        assert_eq!(
            kind(s.execute(&bob, "restart", on("api")).await),
            ErrorKind::MissingPermissions
        );

        w.permissions("restart", json!({"execute": {"ownedByTeam": true}}))
            .await;
        let run = s
            .execute(&bob, "restart", on("api"))
            .await
            .expect("owned by his team");
        assert_eq!(run.created_by, "bob@acme.io");
        assert_eq!(
            kind(s.execute(&bob, "restart", on("web")).await),
            ErrorKind::MissingPermissions,
            "an entity of no team is not his"
        );
        assert_eq!(
            kind(s.execute(&carol, "restart", on("api")).await),
            ErrorKind::MissingPermissions
        );

        w.permissions(
            "restart",
            json!({"execute": {"teams": ["Platform"], "ownedByTeam": false}}),
        )
        .await;
        s.execute(&bob, "restart", on("web"))
            .await
            .expect("by team");
        w.permissions(
            "restart",
            json!({"execute": {"teams": [], "roles": ["Member"]}}),
        )
        .await;
        s.execute(&carol, "restart", on("web"))
            .await
            .expect("by role");
        assert_eq!(
            kind(s.execute(&ada, "restart", on("web")).await),
            ErrorKind::MissingPermissions,
            "the grant decides for Admins too"
        );
    });
}

#[test]
fn run_as_is_for_organization_credentials_only() {
    let w = world();
    let s = &w.services;
    block_on(async {
        w.action("deploy", json!({})).await;
        w.permissions("deploy", json!({"execute": {"users": ["bob@acme.io"]}}))
            .await;
        let bob = w.person("bob@acme.io").await;
        let as_ = |who: &str| ExecuteRequest {
            run_as: Some(who.into()),
            ..ExecuteRequest::default()
        };
        // The escalation: a person's token running as someone else.
        assert_eq!(
            kind(s.execute(&bob, "deploy", as_("ada@acme.io")).await),
            ErrorKind::MissingPermissions
        );
        assert_eq!(
            kind(s.execute(&machine(), "deploy", as_("nobody@acme.io")).await),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(s.execute(&machine(), "deploy", as_("carol@acme.io")).await),
            ErrorKind::MissingPermissions,
            "the permission is checked for the person run as"
        );
        let run = s
            .execute(&machine(), "deploy", as_("Bob@Acme.io"))
            .await
            .expect("run as bob");
        assert_eq!(run.created_by, "bob@acme.io");
        assert_eq!(run.impersonated_by.as_deref(), Some(CI));
        assert_eq!(run.to_v2_json()["impersonatedBy"], CI);
        let payload = run.payload.as_ref().expect("payload").to_string();
        assert!(
            payload.contains(r#""email":"bob@acme.io""#),
            "the invocation names bob: {payload}"
        );
        // Bob sees the run made in his name.
        s.get_run(&bob, run.id.as_str()).await.expect("his run");

        let trail = s
            .audit_log(
                &machine(),
                AuditFilter {
                    run_id: Some(run.id.clone()),
                    ..AuditFilter::default()
                },
            )
            .await
            .expect("audit");
        assert_eq!(trail.len(), 1);
        assert_eq!(trail[0].action, "CREATE");
        assert_eq!(trail[0].by, CI);
        assert!(trail[0].by_machine);
        assert_eq!(trail[0].on_behalf_of, Some(email("bob@acme.io")));
    });
}

// ---------------------------------------------------------------------------------------
// View
// ---------------------------------------------------------------------------------------

#[test]
fn hidden_runs_are_not_found_and_not_listed() {
    let w = world();
    let s = &w.services;
    block_on(async {
        w.action("deploy", json!({})).await;
        w.action("status", json!({"allowAnyoneToViewRuns": true}))
            .await;
        for action in ["deploy", "status"] {
            w.permissions(action, json!({"execute": {"roles": ["Member"]}}))
                .await;
        }
        let (bob, carol, ada) = (
            w.person("bob@acme.io").await,
            w.person("carol@acme.io").await,
            w.person("ada@acme.io").await,
        );
        let bobs = w.execute(&bob, "deploy").await.expect("bob's run");
        let open = w.execute(&bob, "status").await.expect("visible to all");
        let id = bobs.id.as_str();

        // The escalation: carol reads bob's run.
        assert_eq!(kind(s.get_run(&carol, id).await), ErrorKind::NotFound);
        assert_eq!(kind(s.run_version(&carol, id).await), ErrorKind::NotFound);
        assert_eq!(
            kind(s.list_logs(&carol, id, 0, 10).await),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(s.logs_after(&carol, &bobs.id, 0, 10).await),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(s.run_approvers(&carol, id, true).await),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(s.run_deliveries(&carol, id).await),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(s.withdraw(&carol, id, None).await),
            ErrorKind::NotFound
        );
        assert_eq!(w.visible_ids(&carol).await, vec![open.id.to_string()]);
        assert_eq!(
            s.list_runs(
                &carol,
                &RunFilter {
                    limit: 10,
                    ..RunFilter::default()
                }
            )
            .await
            .expect("runs")
            .len(),
            1
        );

        s.get_run(&bob, id).await.expect("his own");
        s.get_run(&ada, id).await.expect("an Admin's view");
        s.get_run(&machine(), id).await.expect("the organization's");
        assert_eq!(w.visible_ids(&bob).await.len(), 2);
        assert_eq!(w.visible_ids(&ada).await.len(), 2);

        // Approvers see the runs they may approve.
        w.permissions("deploy", json!({"approve": {"users": ["carol@acme.io"]}}))
            .await;
        s.get_run(&carol, id).await.expect("an approver's view");
        assert_eq!(w.visible_ids(&carol).await.len(), 2);
    });
}

#[test]
fn a_members_page_is_bounded_and_resumes_after_hidden_runs() {
    let w = world();
    let s = &w.services;
    block_on(async {
        w.action("deploy", json!({})).await;
        w.action("status", json!({"allowAnyoneToViewRuns": true}))
            .await;
        let carol = w.person("carol@acme.io").await;
        let open = w
            .execute(&machine(), "status")
            .await
            .expect("visible to all");
        for _ in 0..RUNS_PAGE_MAX_EXAMINED + 10 {
            w.execute(&machine(), "deploy")
                .await
                .expect("hidden from carol");
        }
        let filter = RunFilter {
            limit: 5,
            ..RunFilter::default()
        };
        let first = s.list_runs_page(&carol, &filter).await.expect("page");
        assert!(first.runs.is_empty(), "no run of hers among the newest");
        assert!(first.more, "a page reads a bounded share of the runs");
        let next = first.next.expect("where to resume");
        let second = s
            .list_runs_page(
                &carol,
                &RunFilter {
                    before: Some(next),
                    ..filter
                },
            )
            .await
            .expect("page");
        let ids: Vec<_> = second.runs.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, vec![open.id]);
        assert!(!second.more);
        assert_eq!(second.next, None);
    });
}

// ---------------------------------------------------------------------------------------
// Approvals
// ---------------------------------------------------------------------------------------

#[test]
fn requesters_do_not_approve_their_own_runs() {
    let w = world();
    let s = &w.services;
    block_on(async {
        w.action("deploy", json!({"requiredApproval": true})).await;
        w.permissions(
            "deploy",
            json!({"execute": {"roles": ["Member"]}, "approve": {"teams": ["Platform"]}}),
        )
        .await;
        let (bob, carol, dave) = (
            w.person("bob@acme.io").await,
            w.person("carol@acme.io").await,
            w.person("dave@acme.io").await,
        );
        let run = w.execute(&bob, "deploy").await.expect("run");
        assert_eq!(run.status(), RunStatus::WaitingForApproval);
        let id = run.id.as_str();
        let (k, message) = refusal(s.decide(&bob, id, Decision::Approved, None).await);
        assert_eq!(k, ErrorKind::MissingPermissions);
        assert!(message.contains("requested run"), "{message}");
        assert_eq!(
            kind(s.decide(&bob, id, Decision::Declined, None).await),
            ErrorKind::MissingPermissions
        );
        let carols = w.execute(&carol, "deploy").await.expect("carol's run");
        assert_eq!(
            kind(
                s.decide(&carol, carols.id.as_str(), Decision::Approved, None)
                    .await
            ),
            ErrorKind::MissingPermissions,
            "carol is no approver"
        );
        let approved = s
            .decide(&dave, id, Decision::Approved, Some("go".into()))
            .await
            .expect("dave approves");
        assert_eq!(approved.status(), RunStatus::InProgress);

        // Named in users, a requester may decide on their own run.
        w.permissions(
            "deploy",
            json!({"approve": {"users": ["bob@acme.io"], "teams": []}}),
        )
        .await;
        let own = w.execute(&bob, "deploy").await.expect("run");
        s.decide(&bob, own.id.as_str(), Decision::Declined, None)
            .await
            .expect("named explicitly");

        let trail = s
            .audit_log(
                &machine(),
                AuditFilter {
                    run_id: Some(run.id.clone()),
                    ..AuditFilter::default()
                },
            )
            .await
            .expect("audit");
        let actions: Vec<(&str, &str)> = trail
            .iter()
            .map(|e| (e.action.as_str(), e.by.as_str()))
            .collect();
        assert_eq!(
            actions,
            [("APPROVE", "dave@acme.io"), ("CREATE", "bob@acme.io")]
        );
    });
}

#[test]
fn all_needs_every_resolved_approver_and_refuses_none() {
    let w = world();
    let s = &w.services;
    block_on(async {
        w.action("guarded", json!({"requiredApproval": {"type": "ALL"}}))
            .await;
        w.permissions(
            "guarded",
            json!({"execute": {"roles": ["Member", "Admin"]}, "approve": {"roles": [], "users": ["nobody@acme.io"]}}),
        )
        .await;
        let (ada, bob, carol, dave) = (
            w.person("ada@acme.io").await,
            w.person("bob@acme.io").await,
            w.person("carol@acme.io").await,
            w.person("dave@acme.io").await,
        );
        let (k, message) = refusal(w.execute(&bob, "guarded").await);
        assert_eq!(k, ErrorKind::InvalidRequest);
        assert!(message.contains("guarded"), "{message}");

        // The requester is no approver of their own run: with only bob named, bob's
        // run has nobody to approve it.
        w.permissions(
            "guarded",
            json!({"approve": {"users": [], "teams": ["Platform"]}}),
        )
        .await;
        let run = w
            .execute(&ada, "guarded")
            .await
            .expect("bob and dave approve");
        let id = run.id.as_str();
        let pending: Vec<String> = s
            .run_approvers(&ada, id, true)
            .await
            .expect("approvers")
            .into_iter()
            .map(|a| a.user_id)
            .collect();
        assert_eq!(pending, ["bob@acme.io", "dave@acme.io"]);
        let bobs = w.execute(&bob, "guarded").await.expect("dave alone");
        assert_eq!(
            s.run_approvers(&bob, bobs.id.as_str(), true)
                .await
                .expect("approvers")
                .len(),
            1
        );

        let one = s
            .decide(&bob, id, Decision::Approved, None)
            .await
            .expect("bob");
        assert_eq!(one.status(), RunStatus::WaitingForApproval);
        assert_eq!(
            kind(s.decide(&carol, id, Decision::Approved, None).await),
            ErrorKind::NotFound,
            "carol may neither see nor approve it"
        );
        assert_eq!(
            kind(s.decide(&ada, id, Decision::Approved, None).await),
            ErrorKind::MissingPermissions,
            "the requester is not one of them"
        );
        let both = s
            .decide(&dave, id, Decision::Approved, None)
            .await
            .expect("dave");
        assert_eq!(both.status(), RunStatus::InProgress);

        // An organization credential decides alone.
        let other = w.execute(&ada, "guarded").await.expect("run");
        let approved = s
            .decide(&machine(), other.id.as_str(), Decision::Approved, None)
            .await
            .expect("the organization approves");
        assert_eq!(approved.status(), RunStatus::InProgress);
    });
}

#[test]
fn requesters_withdraw_runs_that_still_wait() {
    let w = world();
    let s = &w.services;
    block_on(async {
        w.action(
            "deploy",
            json!({"requiredApproval": true, "allowAnyoneToViewRuns": true}),
        )
        .await;
        w.permissions("deploy", json!({"execute": {"roles": ["Member"]}}))
            .await;
        let (bob, carol) = (
            w.person("bob@acme.io").await,
            w.person("carol@acme.io").await,
        );
        let run = w.execute(&bob, "deploy").await.expect("run");
        let id = run.id.as_str();
        assert_eq!(
            kind(s.withdraw(&carol, id, None).await),
            ErrorKind::MissingPermissions,
            "someone else's run"
        );
        let withdrawn = s
            .withdraw(&bob, id, Some("wrong inputs".into()))
            .await
            .expect("withdrawn");
        assert_eq!(withdrawn.status(), RunStatus::Failure);
        assert_eq!(
            withdrawn.status_label.as_deref(),
            Some("Withdrawn by bob@acme.io")
        );
        assert_eq!(withdrawn.summary.as_deref(), Some("wrong inputs"));
        assert_eq!(
            kind(s.withdraw(&bob, id, None).await),
            ErrorKind::RunNotWaitingForApproval
        );
        let other = w.execute(&carol, "deploy").await.expect("run");
        let by_org = s
            .withdraw(&machine(), other.id.as_str(), None)
            .await
            .expect("the organization withdraws");
        assert_eq!(
            by_org.status_label.as_deref(),
            Some(format!("Withdrawn by {CI}").as_str())
        );
        let trail = s
            .audit_log(
                &machine(),
                AuditFilter {
                    run_id: Some(run.id.clone()),
                    ..AuditFilter::default()
                },
            )
            .await
            .expect("audit");
        assert_eq!(trail[0].action, "WITHDRAW");
        assert_eq!(trail[0].diff["reason"], "wrong inputs");
    });
}

// ---------------------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------------------

#[test]
fn policies_admit_by_catalog_and_conditions() {
    let w = world();
    let s = &w.services;
    block_on(async {
        w.service_blueprint().await;
        w.entity("api", None, "carol@acme.io").await;
        w.action("deploy", json!({})).await;
        w.permissions(
            "deploy",
            json!({"execute": {"roles": [], "policy": {
                "queries": {"owned": {"combinator": "and", "rules": [
                    {"property": "$blueprint", "operator": "=", "value": "service"},
                ]}},
                "conditions": [
                    ".user.email as $me | [.results.owned[] | select(.properties.owner == $me)] | length > 0",
                ],
            }}}),
        )
        .await;
        let (bob, carol) = (
            w.person("bob@acme.io").await,
            w.person("carol@acme.io").await,
        );
        w.execute(&carol, "deploy")
            .await
            .expect("carol owns a service");
        let (k, message) = refusal(w.execute(&bob, "deploy").await);
        assert_eq!(k, ErrorKind::MissingPermissions);
        assert!(message.contains("policy"), "{message}");

        // Approvals by policy, checked for the decider at decision time.
        w.action("guarded", json!({"requiredApproval": true})).await;
        w.permissions(
            "guarded",
            json!({"execute": {"roles": ["Member"]}, "approve": {"roles": [], "policy": {
                "queries": {"all": {"combinator": "and", "rules": []}},
                "conditions": [".user.teams | index(\"Platform\") != null"],
            }}}),
        )
        .await;
        let run = w.execute(&carol, "guarded").await.expect("run");
        assert_eq!(
            kind(
                s.decide(&carol, run.id.as_str(), Decision::Approved, None)
                    .await
            ),
            ErrorKind::MissingPermissions
        );
        s.get_run(&bob, run.id.as_str())
            .await
            .expect("an approver by policy sees it");
        s.decide(&bob, run.id.as_str(), Decision::Approved, None)
            .await
            .expect("Platform approves");
    });
}

#[test]
fn a_policy_bomb_admits_nobody_within_its_budget() {
    let w = world();
    let s = &w.services;
    block_on(async {
        w.action("deploy", json!({})).await;
        let bob = w.person("bob@acme.io").await;
        for bomb in [
            "def f: f; f",
            "last(repeat(1))",
            "def grow: [., .] | grow; 1 | grow",
            "[range(1e12)] | length > 0",
        ] {
            w.permissions(
                "deploy",
                json!({"execute": {"roles": [], "policy": {
                    "queries": {"all": {"combinator": "and", "rules": []}},
                    "conditions": [bomb, "true"],
                }}}),
            )
            .await;
            let started = Instant::now();
            let (k, message) = refusal(w.execute(&bob, "deploy").await);
            assert_eq!(k, ErrorKind::MissingPermissions, "{bomb}");
            assert!(
                message.contains("could not be evaluated"),
                "{bomb}: {message}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{bomb} took {:?}",
                started.elapsed()
            );
        }
        // A view through an exploding approve policy hides the run, quietly.
        w.permissions(
            "deploy",
            json!({"execute": {"roles": ["Member"], "policy": null}, "approve": {"policy": {
                "queries": {"all": {"combinator": "and", "rules": []}},
                "conditions": ["def f: f; f"],
            }}}),
        )
        .await;
        let run = w.execute(&machine(), "deploy").await.expect("run");
        assert_eq!(
            kind(s.get_run(&bob, run.id.as_str()).await),
            ErrorKind::NotFound
        );
    });
}

// ---------------------------------------------------------------------------------------
// Approval notifications
// ---------------------------------------------------------------------------------------

/// Refuses one address, as the server's policy refuses private ones.
struct RefuseInternal;

#[async_trait]
impl DestinationPolicy for RefuseInternal {
    async fn check(&self, url: &str) -> Result<(), PortError> {
        if url.contains("internal") {
            Err(PortError::new(
                ErrorKind::PrivateDestination,
                format!("{url} is private"),
            ))
        } else {
            Ok(())
        }
    }
}

#[test]
fn approval_notifications_are_written_with_the_run() {
    let w = world_with(Arc::new(RefuseInternal));
    let s = &w.services;
    block_on(async {
        for bad in [
            json!({"type": "pigeon"}),
            json!({"type": "webhook"}),
            json!({"type": "webhook", "url": "ftp://x.io"}),
            json!({"type": "webhook", "url": "https://x.io", "format": "xml"}),
            json!({"type": "email", "url": "https://x.io"}),
            json!("webhook"),
        ] {
            assert_eq!(
                kind(
                    s.create_action(
                        &machine(),
                        &action_body("bad", json!({"approvalNotification": bad}))
                    )
                    .await
                ),
                ErrorKind::InvalidRequest,
                "{bad}"
            );
        }
        w.action(
            "deploy",
            json!({
                "requiredApproval": true,
                "approvalNotification": {"type": "webhook", "url": "https://hooks.example/a", "format": "json"},
            }),
        )
        .await;
        w.action(
            "chat",
            json!({
                "requiredApproval": {"type": "ALL"},
                "approvalNotification": {"type": "webhook", "url": "https://hooks.slack.example/b", "format": "slack"},
            }),
        )
        .await;
        w.action(
            "mail",
            json!({"requiredApproval": true, "approvalNotification": {"type": "email"}}),
        )
        .await;
        w.action(
            "private",
            json!({
                "requiredApproval": true,
                "approvalNotification": {"type": "webhook", "url": "https://internal.example/", "format": "json"},
            }),
        )
        .await;
        for action in ["deploy", "chat", "mail", "private"] {
            w.permissions(
                action,
                json!({"execute": {"roles": ["Member"]}, "approve": {"teams": ["Platform"]}}),
            )
            .await;
        }
        let carol = w.person("carol@acme.io").await;

        let run = w.execute(&carol, "deploy").await.expect("run");
        let deliveries = s
            .run_deliveries(&carol, run.id.as_str())
            .await
            .expect("deliveries");
        assert_eq!(
            deliveries.len(),
            1,
            "only the notification, nothing dispatched"
        );
        let (delivery, _) = &deliveries[0];
        assert_eq!(delivery.mode, DeliveryMode::ApprovalNotification);
        assert_eq!(delivery.request["url"], "https://hooks.example/a");
        assert_eq!(delivery.request["format"], "json");
        let body = &delivery.request["body"];
        assert_eq!(body["type"], "APPROVAL_REQUESTED");
        assert_eq!(body["run"]["id"], run.id.as_str());
        assert_eq!(
            body["action"],
            json!({"identifier": "deploy", "title": "Deploy"})
        );
        // Admins (the default approve grant kept) and Platform.
        assert_eq!(
            body["approvers"],
            json!(["ada@acme.io", "bob@acme.io", "dave@acme.io"])
        );
        assert_eq!(body["requestedBy"], "carol@acme.io");
        assert_eq!(body["approveUrl"], Value::Null);

        let run = w.execute(&carol, "chat").await.expect("run");
        let deliveries = s
            .run_deliveries(&carol, run.id.as_str())
            .await
            .expect("deliveries");
        let request = &deliveries[0].0.request;
        assert_eq!(request["format"], "slack");
        let text = request["body"]["text"].as_str().expect("text");
        assert!(
            text.contains("carol@acme.io") && text.contains(run.id.as_str()),
            "{text}"
        );
        let blocks = request["body"]["blocks"].to_string();
        assert!(blocks.contains("*Inputs:*"), "{blocks}");

        let run = w.execute(&carol, "mail").await.expect("run");
        assert!(
            s.run_deliveries(&carol, run.id.as_str())
                .await
                .expect("none")
                .is_empty()
        );

        assert_eq!(
            kind(w.execute(&carol, "private").await),
            ErrorKind::PrivateDestination
        );
    });
}
