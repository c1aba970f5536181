//! Action permissions over a real portd: their shape, who changes them, and what they
//! decide at the HTTP boundary: execute, `run_as`, which runs a person sees, who
//! approves, withdrawing, and the audit trail that records it all.

use reqwest::Method;
use serde_json::{Value, json};

use crate::people::{Org, claims};

/// A self-service action without a blueprint; `extra` keys are added to it.
fn action(identifier: &str, extra: Value) -> Value {
    let mut action = json!({
        "identifier": identifier,
        "title": identifier,
        "trigger": {
            "type": "self-service",
            "operation": "CREATE",
            "userInputs": { "properties": { "note": { "type": "string" } }, "required": [] },
        },
        // Nothing listens there: deliveries fail, which no test here waits for.
        "invocationMethod": { "type": "WEBHOOK", "url": "http://127.0.0.1:9/hook" },
    });
    if let (Value::Object(action), Value::Object(extra)) = (&mut action, extra) {
        action.extend(extra);
    }
    action
}

async fn create_action(org: &Org, identifier: &str, extra: Value) {
    org.post(&org.machine, "/v1/actions", action(identifier, extra))
        .await
        .expect(201);
}

async fn execute(org: &Org, token: &str, path: &str) -> crate::people::Answer {
    org.post(token, path, json!({ "properties": { "note": "hi" } }))
        .await
}

fn run_id(answer: &Value) -> String {
    answer["run"]["id"].as_str().expect("a run id").to_owned()
}

#[tokio::test]
async fn permissions_have_ports_shape_and_only_admins_change_them() {
    let org = Org::start().await;
    let (admin, member) = org.admin_and_member().await;
    create_action(&org, "deploy", json!({})).await;

    let default = org
        .get(&member, "/v1/actions/deploy/permissions")
        .await
        .expect(200);
    assert_eq!(
        default,
        json!({
            "ok": true,
            "permissions": {
                "execute": { "users": [], "roles": ["Admin"], "teams": [], "policy": null, "ownedByTeam": false },
                "approve": { "users": [], "roles": ["Admin"], "teams": [], "policy": null },
            },
        })
    );
    org.get(&member, "/v1/actions/nothing/permissions")
        .await
        .expect_error(404, "not_found");

    let grant = json!({ "execute": { "roles": ["Admin", "Member"] } });
    org.patch(&member, "/v1/actions/deploy/permissions", grant.clone())
        .await
        .expect_error(403, "missing_permissions");
    execute(&org, &member, "/v1/actions/deploy/runs")
        .await
        .expect_error(403, "missing_permissions");
    let patched = org
        .patch(&admin, "/v1/actions/deploy/permissions", grant)
        .await
        .expect(200);
    assert_eq!(
        patched["permissions"]["execute"]["roles"],
        json!(["Admin", "Member"])
    );
    assert_eq!(
        patched["permissions"]["approve"]["roles"],
        json!(["Admin"]),
        "what the patch leaves out stays"
    );
    execute(&org, &member, "/v1/actions/deploy/runs")
        .await
        .expect(202);

    org.patch(
        &admin,
        "/v1/actions/deploy/permissions",
        json!({ "execute": { "roles": ["Owner"] } }),
    )
    .await
    .expect_error(422, "invalid_request");
    org.patch(
        &admin,
        "/v1/actions/deploy/permissions",
        json!({ "approve": { "ownedByTeam": true } }),
    )
    .await
    .expect_error(422, "invalid_request");
    org.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn run_as_is_for_organization_credentials_and_runs_as_the_person() {
    let org = Org::start().await;
    let (admin, member) = org.admin_and_member().await;
    create_action(&org, "deploy", json!({})).await;

    // A person's token may not act as someone else, whatever their role.
    execute(
        &org,
        &admin,
        "/v1/actions/deploy/runs?run_as=member@example.io",
    )
    .await
    .expect_error(403, "missing_permissions");
    // The credential acts as the person: the Member may not execute it yet.
    execute(
        &org,
        &org.machine,
        "/v1/actions/deploy/runs?run_as=member@example.io",
    )
    .await
    .expect_error(403, "missing_permissions");
    execute(
        &org,
        &org.machine,
        "/v1/actions/deploy/runs?run_as=nobody@example.io",
    )
    .await
    .expect_error(404, "not_found");

    let ran = execute(
        &org,
        &org.machine,
        "/v1/actions/deploy/runs?run_as=admin@example.io",
    )
    .await
    .expect(202);
    let client_id = claims(&org.machine)["sub"].as_str().unwrap().to_owned();
    assert_eq!(ran["run"]["createdBy"], "admin@example.io");
    assert_eq!(ran["run"]["impersonatedBy"], json!(client_id));
    let id = run_id(&ran);
    let seen = org
        .get(&admin, &format!("/v1/actions/runs/{id}?version=v2"))
        .await
        .expect(200);
    assert_eq!(seen["run"]["impersonatedBy"], json!(client_id));
    // The person it ran as sees it among their own runs.
    let theirs = org
        .get(&member, "/v1/actions/runs?user_email=admin@example.io")
        .await
        .expect(200);
    assert_eq!(
        theirs["runs"],
        json!([]),
        "the Member sees no one else's run"
    );
    org.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn members_see_only_the_runs_they_may() {
    let org = Org::start().await;
    let (admin, member) = org.admin_and_member().await;
    create_action(&org, "deploy", json!({})).await;
    org.patch(
        &org.machine,
        "/v1/actions/deploy/permissions",
        json!({ "execute": { "users": ["member@example.io"] } }),
    )
    .await
    .expect(200);
    let theirs = run_id(
        &execute(&org, &org.machine, "/v1/actions/deploy/runs")
            .await
            .expect(202),
    );
    let own = run_id(
        &execute(&org, &member, "/v1/actions/deploy/runs")
            .await
            .expect(202),
    );

    // Hidden is not found: existence is not leaked.
    for path in [
        format!("/v1/actions/runs/{theirs}"),
        format!("/v1/actions/runs/{theirs}/logs"),
        format!("/v1/actions/runs/{theirs}/approvers"),
        format!("/v1/audit-log?run_id={theirs}"),
    ] {
        org.get(&member, &path).await.expect_error(404, "not_found");
    }
    // Backends (machines) update runs; a person is refused before the run is looked up,
    // so the answer is the same for a hidden run and one that does not exist.
    let patch = json!({ "statusLabel": "mine now" });
    let hidden = org
        .call(
            &member,
            Method::PATCH,
            &format!("/v1/actions/runs/{theirs}"),
            Some(patch.clone()),
        )
        .await
        .expect_error(403, "missing_permissions");
    let missing = org
        .call(
            &member,
            Method::PATCH,
            "/v1/actions/runs/r_AAAAAAAAAAAAAAAA",
            Some(patch),
        )
        .await
        .expect_error(403, "missing_permissions");
    assert_eq!(hidden, missing);
    org.get(&member, &format!("/v1/actions/runs/{own}"))
        .await
        .expect(200);
    org.get(&admin, &format!("/v1/actions/runs/{theirs}"))
        .await
        .expect(200);
    let ids = |page: &Value| -> Vec<String> {
        page["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let listed = org.get(&member, "/v1/actions/runs").await.expect(200);
    assert_eq!(ids(&listed), vec![own]);
    let listed = org.get(&admin, "/v1/actions/runs").await.expect(200);
    assert_eq!(ids(&listed).len(), 2);

    // allowAnyoneToViewRuns shows them all.
    org.call(
        &org.machine,
        Method::PUT,
        "/v1/actions/deploy",
        Some(action("deploy", json!({ "allowAnyoneToViewRuns": true }))),
    )
    .await
    .expect(200);
    org.get(&member, &format!("/v1/actions/runs/{theirs}"))
        .await
        .expect(200);
    let listed = org.get(&member, "/v1/actions/runs").await.expect(200);
    assert_eq!(ids(&listed).len(), 2);
    org.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn approvers_decide_and_requesters_withdraw() {
    let org = Org::start().await;
    let (_, member) = org.admin_and_member().await;
    org.invite("lead@example.io", "Member", &[]).await;
    org.invite("other@example.io", "Member", &[]).await;
    org.post(
        &org.machine,
        "/v1/teams",
        json!({ "name": "Leads", "users": ["lead@example.io"] }),
    )
    .await
    .expect(200);
    create_action(&org, "guarded", json!({ "requiredApproval": true })).await;
    org.patch(
        &org.machine,
        "/v1/actions/guarded/permissions",
        json!({
            "execute": { "roles": ["Member"] },
            "approve": { "teams": ["Leads"] },
        }),
    )
    .await
    .expect(200);
    let lead = org.token_of("lead@example.io").await;
    let other = org.token_of("other@example.io").await;

    let waiting = execute(&org, &member, "/v1/actions/guarded/runs")
        .await
        .expect(202);
    assert_eq!(waiting["run"]["status"], "WAITING_FOR_APPROVAL");
    let id = run_id(&waiting);
    let approve = json!({ "status": "APPROVE" });
    let approval = format!("/v1/actions/runs/{id}/approval");
    // The requester is not an approver; neither is another Member.
    org.patch(&member, &approval, approve.clone())
        .await
        .expect_error(403, "missing_permissions");
    org.patch(&other, &approval, approve.clone())
        .await
        .expect_error(404, "not_found");
    let approved = org.patch(&lead, &approval, approve).await.expect(201);
    assert_eq!(approved["run"]["status"], "IN_PROGRESS");

    // Withdrawing: only the requester (or an Admin, or a machine), and only while it
    // waits.
    let waiting = run_id(
        &execute(&org, &member, "/v1/actions/guarded/runs")
            .await
            .expect(202),
    );
    let withdraw = format!("/v1/actions/runs/{waiting}/withdraw");
    org.post(&lead, &withdraw, json!({}))
        .await
        .expect_error(403, "missing_permissions");
    let withdrawn = org
        .post(&member, &withdraw, json!({ "reason": "wrong inputs" }))
        .await
        .expect(200);
    assert_eq!(withdrawn["run"]["status"], "FAILURE");
    assert_eq!(
        withdrawn["run"]["statusLabel"],
        "Withdrawn by member@example.io"
    );
    org.post(&member, &withdraw, json!({}))
        .await
        .expect_error(422, "run_not_waiting_for_approval");
    // The body is optional.
    let waiting = run_id(
        &execute(&org, &member, "/v1/actions/guarded/runs")
            .await
            .expect(202),
    );
    let answer = org
        .http
        .post(format!(
            "{}/v1/actions/runs/{waiting}/withdraw",
            org.server.base_url
        ))
        .bearer_auth(&org.machine)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    org.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_audit_log_says_who_did_what() {
    let org = Org::start().await;
    let (admin, member) = org.admin_and_member().await;
    create_action(&org, "deploy", json!({})).await;
    org.patch(
        &admin,
        "/v1/actions/deploy/permissions",
        json!({ "execute": { "roles": ["Member"] } }),
    )
    .await
    .expect(200);
    let ran = run_id(
        &execute(&org, &member, "/v1/actions/deploy/runs")
            .await
            .expect(202),
    );
    let impersonated = run_id(
        &execute(
            &org,
            &org.machine,
            "/v1/actions/deploy/runs?run_as=member@example.io",
        )
        .await
        .expect(202),
    );

    let audits = org.get(&admin, "/v1/audit-log").await.expect(200)["audits"].clone();
    let find = |resource: &str, identifier: &str, action: &str| -> Value {
        audits
            .as_array()
            .unwrap()
            .iter()
            .find(|a| {
                a["resourceType"] == resource
                    && a["identifier"] == identifier
                    && a["action"] == action
            })
            .unwrap_or_else(|| panic!("no {action} of {resource} {identifier} in {audits:#}"))
            .clone()
    };
    let invited = find("user", "member@example.io", "CREATE");
    assert_eq!(invited["trigger"]["by"]["isMachine"], true);
    let changed = find("permissions", "deploy", "UPDATE");
    assert_eq!(changed["trigger"]["by"]["userId"], "admin@example.io");
    assert_eq!(changed["trigger"]["by"]["isMachine"], false);
    assert_eq!(
        changed["diff"]["after"]["execute"]["roles"],
        json!(["Member"])
    );
    let executed = find("run", &ran, "CREATE");
    assert_eq!(executed["trigger"]["by"]["userId"], "member@example.io");
    let on_behalf = find("run", &impersonated, "CREATE");
    assert_eq!(on_behalf["context"]["onBehalfOf"], "member@example.io");
    assert_eq!(on_behalf["trigger"]["by"]["isMachine"], true);
    find("action", "deploy", "CREATE");

    // Filters.
    let runs = org
        .get(&admin, "/v1/audit-log?resources=run&limit=1")
        .await
        .expect(200);
    assert_eq!(runs["audits"].as_array().unwrap().len(), 1);
    assert_eq!(runs["audits"][0]["resourceType"], "run");
    let one = org
        .get(&admin, &format!("/v1/audit-log?resources=run&run_id={ran}"))
        .await
        .expect(200);
    assert!(
        one["audits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["identifier"] == json!(ran)),
        "{one:#}"
    );
    let none = org
        .get(
            &admin,
            "/v1/audit-log?resources=team&from=2999-01-01T00:00:00Z",
        )
        .await
        .expect(200);
    assert_eq!(none["audits"], json!([]));
    org.get(&admin, "/v1/audit-log?from=yesterday")
        .await
        .expect_error(422, "invalid_request");
    org.get(&admin, "/v1/audit-log?resources=entity")
        .await
        .expect_error(422, "invalid_request");

    // A Member reads the entity changes of runs they see, never the trail.
    org.get(&member, &format!("/v1/audit-log?run_id={ran}"))
        .await
        .expect(200);
    org.get(&member, "/v1/audit-log?resources=run")
        .await
        .expect_error(403, "missing_permissions");
    org.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_new_route_is_in_the_document() {
    let org = Org::start().await;
    let doc = org.get(&org.machine, "/openapi.json").await.expect(200);
    for (path, method) in [
        ("/v1/users", "get"),
        ("/v1/users/invite", "post"),
        ("/v1/users/{user_email}", "patch"),
        ("/v1/teams/{name}", "put"),
        ("/v1/actions/{action_identifier}/permissions", "patch"),
        ("/v1/actions/runs/{run_id}/withdraw", "post"),
        ("/v1/auth/credentials", "post"),
        ("/v1/audit-log", "get"),
    ] {
        let responses = &doc["paths"][path][method]["responses"];
        assert!(responses["403"].is_object(), "{method} {path}: {responses}");
    }
    let execute = &doc["paths"]["/v1/actions/{action_identifier}/runs"]["post"];
    let run_as = execute["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "run_as")
        .expect("run_as is documented");
    assert!(
        run_as["description"]
            .as_str()
            .unwrap()
            .contains("Organization credentials only")
    );
    org.server.shutdown().await.unwrap();
}
