//! port-client against a real portd (port-server's `TestServer`): the seed tutorial's
//! flow, end to end, through the SDK.

use std::time::Duration;

use futures::StreamExt;
use port_client::{
    ActionQuery, EntityDeleteOptions, EntityUpdateOptions, ExecuteRequest, FinalStatus, LogEvent,
    PortClient, RunQuery, RunStatus, RunUpdate,
};
use port_server::testing::TestServer;
use serde_json::json;

fn client(server: &TestServer) -> PortClient {
    PortClient::builder()
        .base_url(&server.api_url)
        .credentials(&server.client_id, &server.client_secret)
        .build()
        .expect("a valid client")
}

/// A webhook receiver on loopback that accepts everything. portd delivers runs for
/// real, and the seed's own URL (getport.io) may be unreachable from tests or refuse
/// the webhook, which would add log lines or fail the run.
async fn receiver() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/hook", axum::routing::any(|| async { "ok" }));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

/// The seed's blueprint and its two legacy actions, their webhooks going to `hook`.
async fn seed(client: &PortClient, hook: &str) {
    let blueprint = client
        .create_blueprint(&json!({
            "identifier": "microservice",
            "description": "This blueprint represents service in our software catalog",
            "title": "Service",
            "icon": "Microservice",
            "schema": { "properties": { "region": { "type": "string", "title": "Region" } }, "required": [] },
            "mirrorProperties": {},
            "calculationProperties": {},
            "relations": {}
        }))
        .await
        .unwrap();
    assert_eq!(blueprint.identifier, "microservice");
    assert_eq!(blueprint.title.as_deref(), Some("Service"));

    let created = client
        .create_blueprint_actions(
            "microservice",
            &json!([{
                "identifier": "create_microservice",
                "title": "Create Microservice",
                "userInputs": { "properties": {
                    "name": { "title": "Service name", "type": "string" },
                    "region": { "title": "Cloud Region", "type": "string" }
                } },
                "invocationMethod": { "url": hook, "agent": false, "type": "WEBHOOK" },
                "trigger": "CREATE",
                "description": "Create new microservice"
            }]),
        )
        .await
        .unwrap();
    assert_eq!(created[0].identifier(), Some("create_microservice"));
    let created = client
        .create_blueprint_actions(
            "microservice",
            &json!([{
                "identifier": "deploy_microservice",
                "title": "Deploy Microservice",
                "userInputs": { "properties": {
                    "environment": { "title": "Environment", "type": "string" }
                } },
                "invocationMethod": { "url": hook, "agent": false, "type": "WEBHOOK" },
                "trigger": "DAY-2",
                "description": "Deploy the microservice in a specified environment"
            }]),
        )
        .await
        .unwrap();
    assert_eq!(created[0].blueprint(), Some("microservice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_tutorial_through_the_sdk() {
    let server = TestServer::start().await.expect("portd starts");
    let client = client(&server);

    let token = client.access_token().await.unwrap();
    assert!(!token.expose().is_empty());
    assert!(token.expires_in().is_some_and(|s| s > 60));

    let (hook, _receiver) = receiver().await;
    seed(&client, &hook).await;
    let legacy = client.list_blueprint_actions("microservice").await.unwrap();
    assert_eq!(legacy.len(), 2);
    let action = client.get_action("create_microservice").await.unwrap();
    assert_eq!(action.blueprint(), Some("microservice"));
    let listed = client
        .list_actions(&ActionQuery {
            blueprint_identifier: vec!["microservice".into()],
            operation: vec!["DAY-2".into()],
            ..ActionQuery::default()
        })
        .await
        .unwrap();
    let identifiers: Vec<_> = listed.iter().filter_map(|a| a.identifier()).collect();
    assert_eq!(identifiers, ["deploy_microservice"]);

    // Execute, idempotently.
    let request = ExecuteRequest::new()
        .property("name", "my-microservice")
        .property("region", "eu-west-1")
        .idempotency_key("tutorial-1");
    let run = client
        .execute("create_microservice", &request)
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::InProgress);
    assert_eq!(run.action.identifier, "create_microservice");
    assert_eq!(
        run.blueprint.as_ref().map(|b| b.identifier.as_str()),
        Some("microservice")
    );
    assert_eq!(run.properties["region"], json!("eu-west-1"));
    assert_eq!(run.source_name(), Some("API"));
    let again = client
        .execute("create_microservice", &request)
        .await
        .unwrap();
    assert_eq!(again.id, run.id, "the same key gives the same run");

    let fetched = client.get_run(&run.id).await.unwrap();
    assert_eq!(fetched.id, run.id);
    assert!(!fetched.has_ended());
    let page = client
        .list_runs(&RunQuery {
            action: Some("create_microservice".into()),
            active: Some(true),
            ..RunQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.runs.len(), 1);

    // The backend's work: an entity bound to the run, log lines, a label and links.
    let entity = client
        .upsert_entity(
            "microservice",
            &json!({
                "identifier": "my-microservice",
                "title": "my-microservice",
                "properties": { "region": "eu-west-1" }
            }),
            Some(&run.id),
        )
        .await
        .unwrap();
    assert_eq!(entity.identifier, "my-microservice");
    assert_eq!(entity.properties["region"], json!("eu-west-1"));
    client
        .add_log(&run.id, "new entity: my-microservice", None, None)
        .await
        .unwrap();
    let log = client
        .add_log(&run.id, "New entity created!", None, Some("Creating"))
        .await
        .unwrap();
    assert_eq!(log.run_id, run.id);
    let logs = client.logs(&run.id, 0, 50).await.unwrap();
    let messages: Vec<_> = logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(
        messages,
        ["new entity: my-microservice", "New entity created!"]
    );
    assert_eq!(client.logs(&run.id, 1, 50).await.unwrap().len(), 1);

    let labelled = client
        .patch_run(
            &run.id,
            &RunUpdate {
                status_label: Some("Almost there".into()),
                external_run_id: Some("gh-3617893813".into()),
                ..RunUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(labelled.status_label.as_deref(), Some("Almost there"));
    assert_eq!(labelled.external_run_id.as_deref(), Some("gh-3617893813"));

    let finish = RunUpdate {
        status: Some(FinalStatus::Success),
        link: Some(vec![
            "https://github.com/actions/toolkit/actions/runs/3617893813".into(),
            "https://github.com/actions/toolkit/actions/runs/4165617487".into(),
        ]),
        ..RunUpdate::default()
    };
    let finished = client.patch_run(&run.id, &finish).await.unwrap();
    assert_eq!(finished.status, RunStatus::Success);
    assert!(finished.ended_at.is_some());
    assert_eq!(finished.link.len(), 2);
    // What makes run PATCH safe to retry: the same patch again is a no-op success.
    let repeated = client.patch_run(&run.id, &finish).await.unwrap();
    assert_eq!(repeated.ended_at, finished.ended_at);

    let audits = client.audit_log(&run.id).await.unwrap();
    assert_eq!(audits.len(), 1);
    assert_eq!(audits[0].identifier.as_deref(), Some("my-microservice"));
    assert_eq!(audits[0].context.as_ref().unwrap()["runId"], json!(run.id));

    let waited = client
        .wait_for_run(&run.id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(waited.status, RunStatus::Success);

    // Following an ended run gives its whole log, then the end.
    let events: Vec<_> = tokio::time::timeout(
        Duration::from_secs(30),
        client.follow_logs(&run.id).collect::<Vec<_>>(),
    )
    .await
    .expect("the log stream ends");
    let mut events = events.into_iter().map(Result::unwrap);
    assert!(
        matches!(events.next(), Some(LogEvent::Log(l)) if l.message == "new entity: my-microservice")
    );
    assert!(matches!(events.next(), Some(LogEvent::Log(l)) if l.message == "New entity created!"));
    assert!(matches!(events.next(), Some(LogEvent::Ended(r)) if r.status == RunStatus::Success));
    assert!(events.next().is_none());

    // The run is frozen now.
    let late = client
        .add_log(&run.id, "too late", None, None)
        .await
        .unwrap_err();
    assert_eq!(late.identifier(), Some("run_exhausted"));
    let bound_late = client
        .upsert_entity(
            "microservice",
            &json!({ "identifier": "other" }),
            Some(&run.id),
        )
        .await
        .unwrap_err();
    assert_eq!(bound_late.identifier(), Some("run_exhausted"));
    let not_waiting = client.approve(&run.id, None).await.unwrap_err();
    assert_eq!(
        not_waiting.identifier(),
        Some("run_not_waiting_for_approval")
    );

    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn day_2_runs_entities_and_errors() {
    let server = TestServer::start().await.expect("portd starts");
    let client = client(&server);
    let (hook, _receiver) = receiver().await;
    seed(&client, &hook).await;
    client
        .upsert_entity(
            "microservice",
            &json!({ "identifier": "my-microservice", "properties": { "region": "eu-west-1" } }),
            None,
        )
        .await
        .unwrap();

    // DAY-2 needs an entity.
    let missing = client
        .execute(
            "deploy_microservice",
            &ExecuteRequest::new().property("environment", "production"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        missing.identifier(),
        Some("missing_self_service_action_entity")
    );
    let run = client
        .execute_blueprint_action(
            "microservice",
            "deploy_microservice",
            &ExecuteRequest::new()
                .property("environment", "production")
                .entity("my-microservice"),
        )
        .await
        .unwrap();
    assert_eq!(
        run.entity.as_ref().map(|e| e.identifier.as_str()),
        Some("my-microservice")
    );

    // Entities, bound to the run where it makes sense.
    let patched = client
        .patch_entity(
            "microservice",
            "my-microservice",
            &json!({ "properties": { "region": "us-east-1" } }),
            &EntityUpdateOptions {
                run_id: Some(run.id.clone()),
                ..EntityUpdateOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.properties["region"], json!("us-east-1"));
    assert_eq!(
        client
            .get_entity("microservice", "my-microservice")
            .await
            .unwrap()
            .properties["region"],
        json!("us-east-1")
    );
    assert_eq!(client.list_entities("microservice").await.unwrap().len(), 1);
    client
        .delete_entity(
            "microservice",
            "my-microservice",
            &EntityDeleteOptions {
                run_id: Some(run.id.clone()),
                ..EntityDeleteOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(
        client
            .get_entity("microservice", "my-microservice")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(client.audit_log(&run.id).await.unwrap().len(), 2);

    // Ending with a log line.
    client
        .add_log(&run.id, "deployed", Some(FinalStatus::Failure), None)
        .await
        .unwrap();
    assert_eq!(
        client.get_run(&run.id).await.unwrap().status,
        RunStatus::Failure
    );

    let nope = client.get_run("r_0000000000000000").await.unwrap_err();
    assert!(nope.is_not_found());
    assert_eq!(nope.identifier(), Some("not_found"));

    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_unauthorized() {
    let server = TestServer::start().await.expect("portd starts");
    let client = PortClient::builder()
        .base_url(&server.api_url)
        .credentials(&server.client_id, "not-the-secret")
        .build()
        .unwrap();
    let error = client.list_blueprints().await.unwrap_err();
    assert!(
        matches!(error, port_client::ClientError::Unauthorized { .. }),
        "{error:?}"
    );
    server.shutdown().await.unwrap();
}

/// Executes `action` (pull mode) and claims its run as a runner would: the one sender
/// that sees secret values, so the value a secret holds can be read back.
async fn value_sent_by(client: &PortClient, action: &str) -> String {
    let run = client
        .execute(action, &ExecuteRequest::new())
        .await
        .unwrap();
    let claimed = client
        .claim_pending(10, 60_000, Some("_PORT_EXEC_AGENT"))
        .await
        .unwrap();
    let claimed = claimed
        .iter()
        .find(|r| r.id == run.id)
        .unwrap_or_else(|| panic!("run {} was not claimed: {claimed:?}", run.id));
    client.ack(&[&run.id]).await.unwrap();
    claimed.payload.as_ref().unwrap()["body"]["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organization_secrets_go_in_and_never_come_out() {
    const FIRST: &str = "tok-Zx8Cv3Bn6Mq1Wf4Jh7Kd0Lp5Rs2Gt9Ya";
    const SECOND: &str = "tok-second-Qw2Er4Ty6Ui8Op0As";
    let server = TestServer::start().await.expect("portd starts");
    let client = client(&server);
    // Nothing may show either value: not what the SDK returns, nor its `Debug`, nor
    // the API's raw answers, nor an error.
    let assert_clean = |what: &str, text: &str| {
        assert!(
            !text.contains(FIRST) && !text.contains(SECOND),
            "{what} shows a secret value: {text}"
        );
    };

    assert!(client.list_secrets().await.unwrap().is_empty());
    let created = client
        .create_secret("API_TOKEN", FIRST, Some("CI deploys"))
        .await
        .unwrap();
    assert_eq!(created.secret_name, "API_TOKEN");
    assert_eq!(created.description.as_deref(), Some("CI deploys"));
    assert!(created.created_at.is_some() && created.created_at == created.updated_at);
    assert_clean("create's answer", &format!("{created:?}"));

    // Taken: 409 `identifier_taken`, as an API error.
    let taken = client
        .create_secret("API_TOKEN", SECOND, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&taken, port_client::ClientError::Api { status: 409, error, .. } if error == "identifier_taken"),
        "{taken:?}"
    );
    assert_eq!(taken.status(), Some(409));
    assert_clean("the 409", &format!("{taken} {taken:?}"));
    // A name portd cannot keep is the caller's 422.
    let bad = client.create_secret("a.b", FIRST, None).await.unwrap_err();
    assert_eq!(
        (bad.status(), bad.identifier()),
        (Some(422), Some("invalid_request"))
    );
    assert_clean("the 422", &format!("{bad} {bad:?}"));

    // The value is what a sent invocation reads.
    client
        .create_action(&json!({
            "identifier": "reads_token",
            "title": "Reads the token",
            "trigger": { "type": "self-service", "operation": "CREATE", "userInputs": { "properties": {} } },
            "invocationMethod": {
                "type": "WEBHOOK",
                "agent": true,
                "url": "http://backend.internal/hook",
                "body": { "token": "{{ .secrets.API_TOKEN }}" }
            }
        }))
        .await
        .unwrap();
    assert_eq!(value_sent_by(&client, "reads_token").await, FIRST);

    let listed = client.list_secrets().await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&created));
    assert_clean("the list", &format!("{listed:?}"));
    let got = client.get_secret("API_TOKEN").await.unwrap();
    assert_eq!(got, created);

    // A new value; the description is kept when not given.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let updated = client
        .update_secret("API_TOKEN", Some(SECOND), None)
        .await
        .unwrap();
    assert_eq!(updated.description.as_deref(), Some("CI deploys"));
    assert!(updated.updated_at > created.updated_at, "{updated:?}");
    assert_eq!(updated.created_at, created.created_at);
    assert_clean("update's answer", &format!("{updated:?}"));
    assert_eq!(value_sent_by(&client, "reads_token").await, SECOND);
    // Only the description.
    let described = client
        .update_secret("API_TOKEN", None, Some("rotated"))
        .await
        .unwrap();
    assert_eq!(described.description.as_deref(), Some("rotated"));
    assert_eq!(value_sent_by(&client, "reads_token").await, SECOND);

    // The raw answers hold no value either.
    for path in ["organization/secrets", "organization/secrets/API_TOKEN"] {
        let raw = client
            .request_json(port_client::Method::GET, path, &[], None)
            .await
            .unwrap();
        assert_clean(path, &raw.to_string());
    }

    client.delete_secret("API_TOKEN").await.unwrap();
    let gone = client.get_secret("API_TOKEN").await.unwrap_err();
    assert!(gone.is_not_found(), "{gone:?}");
    assert!(client.list_secrets().await.unwrap().is_empty());
    let missing = client
        .update_secret("API_TOKEN", Some(FIRST), None)
        .await
        .unwrap_err();
    assert!(missing.is_not_found(), "{missing:?}");
    assert_clean("the 404", &format!("{missing} {missing:?}"));
    assert!(
        client
            .delete_secret("API_TOKEN")
            .await
            .unwrap_err()
            .is_not_found()
    );

    server.shutdown().await.unwrap();
}

/// A client of a person: a personal credential of `email` written to the server's
/// store (as `POST /v1/auth/credentials` makes one; a person's first token has to come
/// from somewhere).
async fn person(server: &TestServer, email: &str) -> PortClient {
    use port_core::ports::{ClientSecret, Credential};
    let credential = Credential {
        org_id: port_core::id::OrgId::parse(&server.org_id).unwrap(),
        client_id: format!("personal-{}", email.replace(['@', '.'], "-")),
        client_secret: ClientSecret::new(
            "a-personal-secret-of-sixty-four-characters-0123456789abcdefghijk",
        ),
        created_at: server.state().clock().now(),
        user: Some(port_core::access::Email::parse(email).unwrap()),
    };
    server
        .state()
        .store()
        .add_credential(&credential)
        .await
        .unwrap();
    PortClient::builder()
        .base_url(&server.api_url)
        .credentials(&credential.client_id, credential.client_secret.expose())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_permissions_run_as_withdraw_and_the_audit_log() {
    use port_client::{AuditQuery, TeamRequest, UserUpdate};
    let server = TestServer::start().await.unwrap();
    let machine = client(&server);

    machine
        .invite_user("ada@example.io", Some("Admin"), &[])
        .await
        .unwrap();
    machine
        .invite_user("bob@example.io", None, &[])
        .await
        .unwrap();
    let team = machine
        .create_team(&TeamRequest {
            name: Some("Leads".into()),
            users: Some(vec!["ada@example.io".into()]),
            description: Some("They approve".into()),
        })
        .await
        .unwrap();
    assert_eq!(team.users.len(), 1);
    let users = machine.list_users().await.unwrap();
    assert_eq!(users.len(), 2);
    let ada = machine.get_user("ada@example.io").await.unwrap();
    assert_eq!(
        (ada.role(), ada.team_names()),
        (Some("Admin"), vec!["Leads"])
    );
    let bob = machine
        .update_user(
            "bob@example.io",
            &UserUpdate {
                roles: None,
                teams: Some(vec!["Leads".into()]),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (bob.role(), bob.team_names()),
        (Some("Member"), vec!["Leads"])
    );
    let renamed = machine
        .update_team(
            "Leads",
            &TeamRequest {
                name: Some("Approvers".into()),
                ..TeamRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "Approvers");
    assert_eq!(machine.list_teams().await.unwrap().len(), 1);

    machine
        .create_action(&json!({
            "identifier": "guarded",
            "title": "Guarded",
            "trigger": { "type": "self-service", "operation": "CREATE",
                         "userInputs": { "properties": {}, "required": [] } },
            "requiredApproval": true,
            "invocationMethod": { "type": "WEBHOOK", "url": "http://127.0.0.1:9/hook" },
        }))
        .await
        .unwrap();
    let permissions = machine
        .patch_action_permissions(
            "guarded",
            &json!({ "execute": { "roles": ["Member"] }, "approve": { "teams": ["Approvers"] } }),
        )
        .await
        .unwrap();
    assert_eq!(permissions.execute.roles, ["Member"]);
    assert_eq!(permissions.execute.owned_by_team, Some(false));
    assert_eq!(
        machine.action_permissions("guarded").await.unwrap(),
        permissions
    );

    let run = machine
        .execute("guarded", &ExecuteRequest::new().run_as("bob@example.io"))
        .await
        .unwrap();
    assert_eq!(run.created_by.as_deref(), Some("bob@example.io"));
    assert_eq!(
        run.impersonated_by.as_deref(),
        Some(server.client_id.as_str())
    );
    assert_eq!(run.status, RunStatus::WaitingForApproval);
    let bob = person(&server, "bob@example.io").await;
    let withdrawn = bob.withdraw(&run.id, Some("not now")).await.unwrap();
    assert_eq!(withdrawn.status, RunStatus::Failure);
    let refused = bob.withdraw(&run.id, None).await.unwrap_err();
    assert_eq!(refused.status(), Some(422));

    // A person's own credentials; the organization's are not a person's.
    let own = bob.create_personal_credentials().await.unwrap();
    assert!(!format!("{own:?}").contains(&own.client_secret));
    let again = PortClient::builder()
        .base_url(&server.api_url)
        .credentials(&own.client_id, &own.client_secret)
        .build()
        .unwrap();
    assert_eq!(
        again.list_users().await.unwrap().len(),
        2,
        "the new credential works"
    );
    let refused = machine.create_personal_credentials().await.unwrap_err();
    assert_eq!(refused.status(), Some(403));
    let refused = bob.delete_team("Approvers").await.unwrap_err();
    assert_eq!(refused.status(), Some(403));

    let trail = machine
        .audit(&AuditQuery {
            resources: vec!["run".into()],
            run_id: Some(run.id.clone()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = trail.iter().filter_map(|a| a.action.as_deref()).collect();
    assert_eq!(actions, ["WITHDRAW", "CREATE"], "newest first");
    machine.delete_team("Approvers").await.unwrap();
    machine.delete_user("bob@example.io").await.unwrap();
    assert_eq!(
        machine
            .get_user("bob@example.io")
            .await
            .unwrap_err()
            .status(),
        Some(404)
    );
    server.shutdown().await.unwrap();
}
