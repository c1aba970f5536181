//! The permission matrix: roles × users × teams × `ownedByTeam` × policy, against
//! execute, approve and view, through `Services` over each store: the memory fake,
//! SQLite in a temporary directory and PostgreSQL (when `PORT_TEST_DATABASE_URL` is
//! set, in a throw-away schema). Each grant is set with `PATCH …/permissions` as an
//! Admin would, and every principal tries every action.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use port_core::access::{AuditFilter, Email, Role, TeamName};
use port_core::id::OrgId;
use port_core::ports::{DeliveryMode, InProcessTemplates, Organization, RunFilter, Store};
use port_core::run::{Decision, RunStatus};
use port_core::service::access::NewUser;
use port_core::service::{
    AllowAllDestinations, Caller, EntityWriteKind, EntityWriteOptions, ExecuteRequest, Services,
};
use port_core::testing::{FixedClock, MemoryStore, RecordingNotifier, test_ids};
use port_core::{ErrorKind, PortError, Timestamp};
use port_store::{ScratchSchema, StoreOptions};

const DATABASE_URL_VAR: &str = "PORT_TEST_DATABASE_URL";
const ORG: &str = "org_MatrixMatrixMatr";
const CI: &str = "ci-client";

/// Who tries: the organization's credential, an Admin of no team, and three Members:
/// bob (team Platform), carol (no team; named by address), dave (team Ops; owner of
/// the entity the actions run on, which belongs to Platform).
const PRINCIPALS: [&str; 5] = ["machine", "ada", "bob", "carol", "dave"];

/// One action of the matrix: its permissions and who may execute and approve it.
struct Case {
    action: &'static str,
    permissions: Value,
    execute: &'static [&'static str],
    approve: &'static [&'static str],
}

/// Admits the owner of the entity the run is on, found through a catalog query.
const OWNER_CONDITION: &str = ".user.email as $me | .entity.identifier as $e | [.results.services[] | select(.identifier == $e and .properties.owner == $me)] | length > 0";

fn policy() -> Value {
    json!({
        "queries": {"services": {"combinator": "and", "rules": [
            {"property": "$blueprint", "operator": "=", "value": "service"},
        ]}},
        "conditions": [OWNER_CONDITION],
    })
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            action: "by-default",
            permissions: json!({}),
            execute: &["machine", "ada"],
            approve: &["machine", "ada"],
        },
        Case {
            action: "by-user",
            permissions: json!({
                "execute": {"roles": [], "users": ["carol@matrix.io"]},
                "approve": {"roles": [], "users": ["carol@matrix.io"]},
            }),
            execute: &["machine", "carol"],
            approve: &["machine", "carol"],
        },
        Case {
            action: "by-role",
            permissions: json!({
                "execute": {"roles": ["Member"]},
                "approve": {"roles": ["Member"]},
            }),
            execute: &["machine", "bob", "carol", "dave"],
            approve: &["machine", "bob", "carol", "dave"],
        },
        Case {
            action: "by-team",
            permissions: json!({
                "execute": {"roles": [], "teams": ["Platform"]},
                "approve": {"roles": [], "teams": ["Ops"]},
            }),
            execute: &["machine", "bob"],
            approve: &["machine", "dave"],
        },
        Case {
            action: "owned-by-team",
            permissions: json!({"execute": {"roles": [], "ownedByTeam": true}}),
            execute: &["machine", "bob"],
            approve: &["machine", "ada"],
        },
        Case {
            action: "by-policy",
            permissions: json!({
                "execute": {"roles": [], "policy": policy()},
                "approve": {"roles": [], "policy": policy()},
            }),
            execute: &["machine", "dave"],
            approve: &["machine", "dave"],
        },
    ]
}

fn visible(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn org() -> OrgId {
    OrgId::parse(ORG).expect("org id")
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn on_api() -> ExecuteRequest {
    ExecuteRequest {
        entity: Some("api".into()),
        ..ExecuteRequest::default()
    }
}

fn denied(result: &Result<impl std::fmt::Debug, PortError>, kind: ErrorKind) -> bool {
    matches!(result, Err(e) if e.kind == kind)
}

struct Matrix {
    services: Services,
    callers: Vec<(&'static str, Caller)>,
}

impl Matrix {
    fn caller(&self, name: &str) -> &Caller {
        &self
            .callers
            .iter()
            .find(|(n, _)| *n == name)
            .expect("a principal")
            .1
    }

    fn machine(&self) -> &Caller {
        self.caller("machine")
    }

    async fn new(store: Arc<dyn Store>) -> Result<Self> {
        store
            .create_organization(&Organization {
                id: org(),
                name: "Matrix".into(),
                created_at: Timestamp::from_unix_millis(1_000),
            })
            .await?;
        let clock = Arc::new(FixedClock::at_default());
        let services = Services::new(
            store,
            clock.clone(),
            test_ids(clock),
            Arc::new(RecordingNotifier::new()),
            Arc::new(AllowAllDestinations),
            Arc::new(InProcessTemplates::default()),
        );
        let machine = Caller::machine(org(), CI);
        for team in ["Platform", "Ops"] {
            services
                .create_team(&machine, &json!({"name": team}))
                .await?;
        }
        let mut callers = vec![("machine", machine.clone())];
        for (name, role, teams) in [
            ("ada", Role::Admin, vec![]),
            ("bob", Role::Member, vec!["Platform"]),
            ("carol", Role::Member, vec![]),
            ("dave", Role::Member, vec!["Ops"]),
        ] {
            let user = services
                .create_user(
                    &machine,
                    NewUser {
                        email: Email::parse(&format!("{name}@matrix.io"))?,
                        role,
                        first_name: None,
                        last_name: None,
                        teams: teams
                            .into_iter()
                            .map(TeamName::parse)
                            .collect::<Result<_, _>>()?,
                    },
                )
                .await?;
            callers.push((name, Caller::person(&user)));
        }
        services
            .create_blueprint(
                &machine,
                &json!({
                    "identifier": "service",
                    "title": "Service",
                    "schema": {"properties": {"owner": {"type": "string"}}, "required": []},
                }),
            )
            .await?;
        for (identifier, team, owner) in [
            ("api", "Platform", "dave@matrix.io"),
            ("web", "Ops", "bob@matrix.io"),
        ] {
            services
                .write_entity(
                    &machine,
                    "service",
                    &json!({"identifier": identifier, "team": team, "properties": {"owner": owner}}),
                    None,
                    &EntityWriteOptions {
                        kind: EntityWriteKind::Create {
                            upsert: false,
                            merge: false,
                        },
                        validation_only: false,
                        create_missing_related: false,
                        run_id: None,
                    },
                )
                .await?;
        }
        Ok(Self { services, callers })
    }

    /// Creates the case's action (DAY-2 on a service, approval required) and sets its
    /// permissions as an Admin.
    async fn action(&self, identifier: &str, permissions: &Value, extra: Value) -> Result<()> {
        let mut body = json!({
            "identifier": identifier,
            "title": identifier,
            "trigger": {
                "type": "self-service",
                "operation": "DAY-2",
                "blueprintIdentifier": "service",
                "userInputs": {"properties": {}, "required": []},
            },
            "requiredApproval": true,
            "invocationMethod": {"type": "WEBHOOK", "url": "https://backend.example/hook"},
        });
        if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
            body.extend(extra);
        }
        let ada = self.caller("ada");
        self.services.create_action(ada, &body).await?;
        self.services
            .patch_action_permissions(ada, identifier, permissions)
            .await?;
        Ok(())
    }

    async fn visible_ids(&self, caller: &Caller) -> Result<BTreeSet<String>> {
        let page = self
            .services
            .list_runs_page(
                caller,
                &RunFilter {
                    limit: 1_000,
                    ..RunFilter::default()
                },
            )
            .await?;
        Ok(page.runs.iter().map(|r| r.id.to_string()).collect())
    }
}

/// Every principal against every case: who executes, who approves, who sees.
async fn matrix(store: Arc<dyn Store>) -> Result<()> {
    let m = Matrix::new(store).await?;
    let s = &m.services;
    for case in cases() {
        m.action(case.action, &case.permissions, json!({})).await?;

        let mut executed = BTreeSet::new();
        for name in PRINCIPALS {
            let result = s.execute(m.caller(name), case.action, on_api()).await;
            match &result {
                Ok(run) => {
                    ensure!(run.status() == RunStatus::WaitingForApproval);
                    executed.insert(name.to_owned());
                }
                Err(_) => ensure!(
                    denied(&result, ErrorKind::MissingPermissions),
                    "{} executing {}: {result:?}",
                    name,
                    case.action
                ),
            }
        }
        ensure!(
            executed == set(case.execute),
            "execute {}: {executed:?}, expected {:?}",
            case.action,
            case.execute
        );

        // One run for each principal to decide on, requested by the organization; the
        // same run shows who sees it.
        let mut approved = BTreeSet::new();
        for name in PRINCIPALS {
            let run = s.execute(m.machine(), case.action, on_api()).await?;
            let id = run.id.as_str();
            let seen = s.get_run(m.caller(name), id).await.is_ok();
            let listed = m.visible_ids(m.caller(name)).await?.contains(id);
            let may_see = set(case.approve).contains(name) || name == "ada" || name == "machine";
            ensure!(
                seen == may_see && listed == may_see,
                "{name} viewing a run of {}: got {seen} / listed {listed}, expected {may_see}",
                case.action
            );
            let result = s.decide(m.caller(name), id, Decision::Approved, None).await;
            match &result {
                Ok(run) => {
                    ensure!(run.status() == RunStatus::InProgress);
                    approved.insert(name.to_owned());
                }
                Err(_) if may_see => ensure!(
                    denied(&result, ErrorKind::MissingPermissions),
                    "{name} approving {}: {result:?}",
                    case.action
                ),
                Err(_) => ensure!(
                    denied(&result, ErrorKind::NotFound),
                    "{name} approving a hidden run of {}: {result:?}",
                    case.action
                ),
            }
        }
        ensure!(
            approved == set(case.approve),
            "approve {}: {approved:?}, expected {:?}",
            case.action,
            case.approve
        );
    }

    // `ownedByTeam` is about the entity the run is on: bob's team owns api, not web.
    let web = ExecuteRequest {
        entity: Some("web".into()),
        ..ExecuteRequest::default()
    };
    ensure!(denied(
        &s.execute(m.caller("bob"), "owned-by-team", web.clone())
            .await,
        ErrorKind::MissingPermissions
    ));
    // The policy too: dave owns api, not web.
    ensure!(denied(
        &s.execute(m.caller("dave"), "by-policy", web).await,
        ErrorKind::MissingPermissions
    ));

    // A requester sees their run and does not approve it; another approver does.
    let bobs = s.execute(m.caller("bob"), "by-role", on_api()).await?;
    let id = bobs.id.as_str();
    ensure!(s.get_run(m.caller("bob"), id).await.is_ok());
    ensure!(denied(
        &s.decide(m.caller("bob"), id, Decision::Approved, None)
            .await,
        ErrorKind::MissingPermissions
    ));
    s.decide(m.caller("carol"), id, Decision::Approved, None)
        .await?;
    // Bob's run of by-team, which only dave approves: hidden from carol.
    let run = s.execute(m.caller("bob"), "by-team", on_api()).await?;
    ensure!(denied(
        &s.get_run(m.caller("carol"), run.id.as_str()).await,
        ErrorKind::NotFound
    ));
    ensure!(
        !m.visible_ids(m.caller("carol"))
            .await?
            .contains(run.id.as_str())
    );

    // `allowAnyoneToViewRuns` shows every run of the action to everyone.
    m.action(
        "open",
        &json!({"execute": {"roles": ["Admin"]}}),
        json!({"allowAnyoneToViewRuns": true}),
    )
    .await?;
    let open = s.execute(m.caller("ada"), "open", on_api()).await?;
    for name in PRINCIPALS {
        ensure!(
            s.get_run(m.caller(name), open.id.as_str()).await.is_ok(),
            "{name} sees a run of an open action"
        );
    }

    // ALL: every resolved approver (Platform: bob; Ops: dave), the requester excepted.
    m.action(
        "all",
        &json!({"execute": {"roles": ["Member", "Admin"]}, "approve": {"roles": [], "teams": ["Platform", "Ops"]}}),
        json!({"requiredApproval": {"type": "ALL"}}),
    )
    .await?;
    let run = s.execute(m.caller("carol"), "all", on_api()).await?;
    let id = run.id.as_str();
    let first = s
        .decide(m.caller("bob"), id, Decision::Approved, None)
        .await?;
    ensure!(first.status() == RunStatus::WaitingForApproval);
    let second = s
        .decide(m.caller("dave"), id, Decision::Approved, None)
        .await?;
    ensure!(second.status() == RunStatus::InProgress);
    m.action(
        "all-nobody",
        &json!({"execute": {"roles": ["Member"]}, "approve": {"roles": [], "teams": ["Ops"]}}),
        json!({"requiredApproval": {"type": "ALL"}}),
    )
    .await?;
    ensure!(denied(
        &s.execute(m.caller("dave"), "all-nobody", on_api()).await,
        ErrorKind::InvalidRequest
    ));
    let carols = s.execute(m.caller("carol"), "all-nobody", on_api()).await?;
    ensure!(carols.approval_policy.approvers() == ["dave@matrix.io"]);
    // ...unless the grant names the requester in users: then they approve their own.
    s.patch_action_permissions(
        m.caller("ada"),
        "all-nobody",
        &json!({"approve": {"teams": [], "users": ["dave@matrix.io"]}}),
    )
    .await?;
    let own = s.execute(m.caller("dave"), "all-nobody", on_api()).await?;
    ensure!(own.approval_policy.approvers() == ["dave@matrix.io"]);
    let approved = s
        .decide(m.caller("dave"), own.id.as_str(), Decision::Approved, None)
        .await?;
    ensure!(approved.status() == RunStatus::InProgress);

    // A run waiting for approval is written with its notification; its requester
    // withdraws it; the trail says who did what.
    m.action(
        "notify",
        &json!({"execute": {"roles": ["Member"]}}),
        json!({"approvalNotification": {"type": "webhook", "url": "https://hooks.example/x", "format": "slack"}}),
    )
    .await?;
    let run = s.execute(m.caller("carol"), "notify", on_api()).await?;
    let id = run.id.as_str();
    let deliveries = s.run_deliveries(m.caller("carol"), id).await?;
    ensure!(deliveries.len() == 1, "{deliveries:?}");
    ensure!(deliveries[0].0.mode == DeliveryMode::ApprovalNotification);
    ensure!(deliveries[0].0.request["body"]["blocks"].is_array());
    ensure!(denied(
        &s.withdraw(m.caller("bob"), id, None).await,
        ErrorKind::NotFound
    ));
    let withdrawn = s
        .withdraw(m.caller("carol"), id, Some("not now".into()))
        .await?;
    ensure!(withdrawn.status() == RunStatus::Failure);
    let trail = s
        .audit_log(
            m.machine(),
            AuditFilter {
                run_id: Some(run.id.clone()),
                ..AuditFilter::default()
            },
        )
        .await?;
    let actions: Vec<(&str, &str)> = trail
        .iter()
        .map(|e| (e.action.as_str(), e.by.as_str()))
        .collect();
    ensure!(
        actions
            == [
                ("WITHDRAW", "carol@matrix.io"),
                ("CREATE", "carol@matrix.io")
            ],
        "{actions:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_on_memory() -> Result<()> {
    matrix(Arc::new(MemoryStore::new())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_on_sqlite() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("portd.db").display());
    let admin = port_store::open(&url, &StoreOptions::default()).await?;
    let outcome = matrix(admin.clone()).await;
    admin.close().await;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_on_postgres() -> Result<()> {
    let Ok(base_url) = std::env::var(DATABASE_URL_VAR) else {
        visible(&format!("skipped: {DATABASE_URL_VAR} not set"));
        return Ok(());
    };
    let schema = ScratchSchema::create(&base_url, "perm")
        .await
        .context("create a schema in the test database")?;
    let admin = port_store::open(&schema.url(), &StoreOptions::default()).await?;
    let outcome = matrix(admin.clone()).await;
    admin.close().await;
    schema.drop_now().await?;
    visible("postgres permission matrix ran");
    outcome
}
