//! Run routes: execute, idempotency, list and paging, get/patch, approval, logs.

use axum::body::Body;
use axum::http::Method;
use serde_json::{Value, json};

use crate::support::{Harness, v2_action};

fn ids(body: &Value) -> Vec<String> {
    body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn execute_answers_202_with_a_v2_run() {
    let h = Harness::memory().await;
    h.seed_catalog().await;
    let body = h
        .post(
            "/v1/actions/create_microservice/runs",
            json!({ "properties": { "name": "a", "region": "b" } }),
        )
        .await
        .expect(202);
    let run = &body["run"];
    assert_eq!(run["status"], "IN_PROGRESS");
    assert_eq!(run["source"], "API");
    assert_eq!(
        run["action"],
        json!({ "identifier": "create_microservice", "title": "Create Microservice", "icon": null, "deleted": false })
    );
    assert_eq!(run["payload"]["type"], "WEBHOOK");
    assert_eq!(run["payload"]["url"], "https://getport.io");

    let body = h
        .post(
            "/v1/actions/create_microservice/runs",
            json!({ "properties": {}, "extra": 1 }),
        )
        .await
        .expect_error(422, "invalid_request");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `extra`"),
        "{body}"
    );
    h.post(
        "/v1/actions/create_microservice/runs",
        json!({ "properties": { "name": 5 } }),
    )
    .await
    .expect_error(422, "user_inputs_schema_invalid");
    h.post(
        "/v1/actions/deploy_microservice/runs",
        json!({ "properties": {} }),
    )
    .await
    .expect_error(422, "missing_self_service_action_entity");
    h.post(
        "/v1/actions/deploy_microservice/runs",
        json!({ "properties": {}, "entity": "ghost" }),
    )
    .await
    .expect_error(404, "not_found");
    h.post("/v1/actions/nope/runs", json!({ "properties": {} }))
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn idempotency_keys_return_the_same_run() {
    let h = Harness::memory().await;
    h.seed_catalog().await;
    let execute = |key: &'static str| {
        let h = &h;
        async move {
            let body = json!({ "properties": { "name": "a", "region": "b" } }).to_string();
            h.raw(
                Method::POST,
                "/v1/actions/create_microservice/runs",
                Some(&h.token),
                &[
                    ("content-type", "application/json"),
                    ("idempotency-key", key),
                ],
                Body::from(body),
            )
            .await
            .expect(202)["run"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let first = execute("key-1").await;
    h.clock.advance(60_000);
    let again = execute("key-1").await;
    assert_eq!(first, again);
    let other = execute("key-2").await;
    assert_ne!(first, other);
    let list = h.get("/v1/actions/runs").await.expect(200);
    assert_eq!(ids(&list), [other.clone(), first.clone()]);
    let metrics = h
        .send(Method::GET, "/metrics", None, None)
        .await
        .expect(200);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("portd_runs_created_total 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn list_filters_and_pages() {
    let h = Harness::memory().await;
    h.seed_catalog().await;
    h.post(
        "/v1/blueprints/microservice/entities",
        json!({ "identifier": "svc", "properties": { "region": "eu" } }),
    )
    .await
    .expect(201);
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(h.create_run().await);
    }
    let day2 = h
        .post(
            "/v1/actions/deploy_microservice/runs",
            json!({ "properties": {}, "entity": "svc" }),
        )
        .await
        .expect(202)["run"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.patch(
        &format!("/v1/actions/runs/{}", created[0]),
        json!({ "status": "SUCCESS", "externalRunId": "gh-1" }),
    )
    .await
    .expect(200);

    let all = h.get("/v1/actions/runs").await.expect(200);
    assert_eq!(ids(&all).len(), 6);
    assert_eq!(ids(&all)[0], day2, "newest first");
    assert!(all.get("next").is_none());
    assert_eq!(
        ids(&h.get("/v1/actions/runs?entity=svc").await.expect(200)),
        std::slice::from_ref(&day2)
    );
    assert_eq!(
        ids(&h
            .get("/v1/actions/runs?action=deploy_microservice")
            .await
            .expect(200)),
        std::slice::from_ref(&day2)
    );
    assert_eq!(
        ids(&h.get("/v1/actions/runs?active=false").await.expect(200)),
        [created[0].clone()]
    );
    assert_eq!(
        ids(&h.get("/v1/actions/runs?status=SUCCESS").await.expect(200)),
        [created[0].clone()]
    );
    assert_eq!(
        ids(&h
            .get("/v1/actions/runs?external_run_id=gh-1")
            .await
            .expect(200)),
        [created[0].clone()]
    );
    assert_eq!(
        ids(&h.get("/v1/actions/runs?active=true").await.expect(200)).len(),
        5
    );
    assert_eq!(
        ids(&h
            .get("/v1/actions/runs?source=API&source=UI")
            .await
            .expect(200))
        .len(),
        6
    );
    assert!(ids(&h.get("/v1/actions/runs?source=UI").await.expect(200)).is_empty());
    assert_eq!(
        ids(&h
            .get(&format!("/v1/actions/runs?user_id={}", h.client_id))
            .await
            .expect(200))
        .len(),
        6
    );
    assert_eq!(
        ids(&h
            .get("/v1/actions/runs?blueprint=microservice")
            .await
            .expect(200))
        .len(),
        6
    );

    // Paging: `next` is the last id; `before` continues after it.
    let page = h.get("/v1/actions/runs?limit=4").await.expect(200);
    assert_eq!(ids(&page).len(), 4);
    let next = page["next"].as_str().unwrap().to_owned();
    assert_eq!(next, ids(&page)[3]);
    let rest = h
        .get(&format!("/v1/actions/runs?limit=4&before={next}"))
        .await
        .expect(200);
    assert_eq!(ids(&rest).len(), 2);
    assert!(rest.get("next").is_none());
    let mut seen: Vec<String> = ids(&page).into_iter().chain(ids(&rest)).collect();
    seen.sort();
    let mut expected = created.clone();
    expected.push(day2);
    expected.sort();
    assert_eq!(seen, expected);

    // v2 list shape; bad parameters.
    let v2 = h
        .get("/v1/actions/runs?version=v2&limit=1")
        .await
        .expect(200);
    assert!(v2["runs"][0]["action"].is_object());
    for bad in [
        "limit=0",
        "limit=1001",
        "active=maybe",
        "source=CLI",
        "status=DONE",
        "version=v3",
        "before=x",
    ] {
        h.get(&format!("/v1/actions/runs?{bad}"))
            .await
            .expect_error(422, "invalid_request");
    }
}

#[tokio::test]
async fn get_and_patch() {
    let h = Harness::memory().await;
    h.seed_catalog().await;
    let run = h.create_run().await;
    let v2 = h
        .get(&format!("/v1/actions/runs/{run}?version=v2"))
        .await
        .expect(200);
    assert!(v2["run"]["action"].is_object());
    assert!(v2["run"].get("endedAt").is_none());

    let label = h
        .patch(
            &format!("/v1/actions/runs/{run}"),
            json!({ "statusLabel": "Building", "link": "https://ci/1", "summary": "s" }),
        )
        .await
        .expect(200);
    assert_eq!(label["run"]["status"], "IN_PROGRESS");
    assert_eq!(label["run"]["link"], json!(["https://ci/1"]));
    assert_eq!(label["run"]["statusLabel"], "Building");

    let body = h
        .patch(
            &format!("/v1/actions/runs/{run}"),
            json!({ "status": "SUCCESS", "colour": "green" }),
        )
        .await
        .expect_error(422, "invalid_request");
    assert!(
        body["message"].as_str().unwrap().contains("colour"),
        "{body}"
    );
    let body = h
        .patch(
            &format!("/v1/actions/runs/{run}"),
            json!({ "status": "DONE" }),
        )
        .await
        .expect_error(422, "invalid_request");
    assert!(
        body["message"].as_str().unwrap().starts_with("status:"),
        "{body}"
    );
    h.patch(
        &format!("/v1/actions/runs/{run}"),
        json!({ "statusLabel": 5 }),
    )
    .await
    .expect_error(422, "invalid_request");
    h.patch(&format!("/v1/actions/runs/{run}"), json!({ "link": [1] }))
        .await
        .expect_error(422, "invalid_request");

    let done = h
        .patch(
            &format!("/v1/actions/runs/{run}?version=v2"),
            json!({ "status": "FAILURE", "externalRunId": "ext" }),
        )
        .await
        .expect(200);
    assert_eq!(done["run"]["status"], "FAILURE");
    assert_eq!(done["run"]["externalRunId"], "ext");
    assert!(done["run"]["endedAt"].is_string());
    h.patch(
        &format!("/v1/actions/runs/{run}"),
        json!({ "status": "SUCCESS" }),
    )
    .await
    .expect_error(422, "run_exhausted");
    h.get("/v1/actions/runs/r_AAAAAAAAAAAAAAAA")
        .await
        .expect_error(404, "not_found");
    h.get("/v1/actions/runs/garbage")
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn approvals() {
    let h = Harness::memory().await;
    h.create_microservice_blueprint().await;
    let mut action = v2_action("guarded", "CREATE");
    action["requiredApproval"] = json!(true);
    h.post("/v1/actions", action).await.expect(201);
    let run = h
        .post("/v1/actions/guarded/runs", json!({ "properties": {} }))
        .await
        .expect(202)["run"]
        .clone();
    assert_eq!(run["status"], "WAITING_FOR_APPROVAL");
    let id = run["id"].as_str().unwrap();

    let approvers = h
        .get(&format!("/v1/actions/runs/{id}/approvers"))
        .await
        .expect(200);
    assert_eq!(approvers, json!({ "ok": true, "approvers": [] }));
    let approved = h
        .patch(
            &format!("/v1/actions/runs/{id}/approval?version=v2"),
            json!({ "status": "APPROVE", "description": "fine" }),
        )
        .await
        .expect(201);
    assert_eq!(approved["run"]["status"], "IN_PROGRESS");
    assert_eq!(
        approved["run"]["approval"],
        json!({ "description": "fine", "userId": h.client_id, "state": "APPROVED" })
    );
    let approvers = h
        .get(&format!("/v1/actions/runs/{id}/approvers"))
        .await
        .expect(200);
    assert_eq!(
        approvers["approvers"],
        json!([{ "userId": h.client_id, "state": "APPROVED", "description": "fine" }])
    );
    h.patch(
        &format!("/v1/actions/runs/{id}/approval"),
        json!({ "status": "DECLINE" }),
    )
    .await
    .expect_error(422, "run_not_waiting_for_approval");
    h.patch(
        &format!("/v1/actions/runs/{id}/approval"),
        json!({ "status": "MAYBE" }),
    )
    .await
    .expect_error(422, "invalid_request");

    let second = h
        .post("/v1/actions/guarded/runs", json!({ "properties": {} }))
        .await
        .expect(202)["run"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let declined = h
        .patch(
            &format!("/v1/actions/runs/{second}/approval"),
            json!({ "status": "DECLINE" }),
        )
        .await
        .expect(201);
    assert_eq!(declined["run"]["status"], "DECLINED");
}

#[tokio::test]
async fn logs_page_and_terminate() {
    let h = Harness::memory().await;
    h.seed_catalog().await;
    let run = h.create_run().await;
    for i in 0..5 {
        h.post(
            &format!("/v1/actions/runs/{run}/logs"),
            json!({ "message": format!("line {i}") }),
        )
        .await
        .expect(201);
    }
    let messages = |body: Value| -> Vec<String> {
        body["runLogs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["message"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        messages(
            h.get(&format!("/v1/actions/runs/{run}/logs"))
                .await
                .expect(200)
        )
        .len(),
        5
    );
    assert_eq!(
        messages(
            h.get(&format!("/v1/actions/runs/{run}/logs?limit=2&offset=1"))
                .await
                .expect(200)
        ),
        ["line 1", "line 2"]
    );
    assert_eq!(
        messages(
            h.get(&format!("/v1/actions/runs/{run}/logging?offset=4"))
                .await
                .expect(200)
        ),
        ["line 4"]
    );
    h.get(&format!("/v1/actions/runs/{run}/logs?limit=51"))
        .await
        .expect_error(422, "invalid_request");
    h.post(&format!("/v1/actions/runs/{run}/logs"), json!({}))
        .await
        .expect_error(422, "invalid_request");
    h.post(
        &format!("/v1/actions/runs/{run}/logs"),
        json!({ "message": "x", "level": "info" }),
    )
    .await
    .expect_error(422, "invalid_request");

    let last = h
        .post(
            &format!("/v1/actions/runs/{run}/logs"),
            json!({ "message": "bye", "terminationStatus": "FAILURE", "statusLabel": "Broken" }),
        )
        .await
        .expect(201);
    assert_eq!(last["runLog"]["message"], "bye");
    let ended = h.get(&format!("/v1/actions/runs/{run}")).await.expect(200);
    assert_eq!(ended["run"]["status"], "FAILURE");
    assert_eq!(ended["run"]["statusLabel"], "Broken");
    h.post(
        &format!("/v1/actions/runs/{run}/logs"),
        json!({ "message": "more" }),
    )
    .await
    .expect_error(422, "run_exhausted");
    h.get("/v1/actions/runs/r_AAAAAAAAAAAAAAAA/logs")
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn public_destination_mode_refuses_private_webhooks() {
    let h = Harness::memory_public_destinations().await;
    h.create_microservice_blueprint().await;
    for (identifier, url) in [
        ("loopback", "http://127.0.0.1:9/hook"),
        ("metadata", "http://169.254.169.254/latest"),
    ] {
        let mut action = v2_action(identifier, "CREATE");
        action["invocationMethod"]["url"] = json!(url);
        h.post("/v1/actions", action).await.expect(201);
        h.post(
            &format!("/v1/actions/{identifier}/runs"),
            json!({ "properties": {} }),
        )
        .await
        .expect_error(403, "private_destination");
    }
    let mut public = v2_action("public", "CREATE");
    public["invocationMethod"]["url"] = json!("https://93.184.215.14/hook");
    h.post("/v1/actions", public).await.expect(201);
    h.post("/v1/actions/public/runs", json!({ "properties": {} }))
        .await
        .expect(202);
    assert!(
        h.get("/v1/actions/runs").await.expect(200)["runs"]
            .as_array()
            .unwrap()
            .len()
            == 1
    );
}

/// Asserts a 422 `invalid_request` whose message names the field and its bound.
#[track_caller]
fn assert_bounded(reply: crate::support::Reply, message: &str) {
    let body = reply.expect_error(422, "invalid_request");
    assert_eq!(body["message"], message, "{body}");
}

#[tokio::test]
async fn a_runs_text_fields_are_bounded_on_every_route_that_writes_them() {
    let h = Harness::sqlite().await;
    h.seed_catalog().await;
    let run = h.create_run().await;
    let path = format!("/v1/actions/runs/{run}");

    // The summary: 64 Ki characters are kept, in either response shape, whatever their
    // size in bytes (`é` is two); one more is refused and nothing changes.
    for (version, unit) in [("v1", "["), ("v2", "é")] {
        let summary = unit.repeat(65_536);
        let kept = h
            .patch(
                &format!("{path}?version={version}"),
                json!({ "summary": summary }),
            )
            .await
            .expect(200);
        assert_eq!(kept["run"]["summary"].as_str(), Some(summary.as_str()));
        let reply = h
            .patch(
                &format!("{path}?version={version}"),
                json!({ "summary": format!("{summary}{unit}"), "statusLabel": "ignored" }),
            )
            .await;
        assert_bounded(
            reply,
            "summary: must be at most 65536 characters; this one has 65537",
        );
    }
    let stored = h.get(&format!("{path}?version=v2")).await.expect(200);
    assert_eq!(
        stored["run"]["summary"].as_str().map(|s| s.chars().count()),
        Some(65_536)
    );
    assert!(
        stored["run"]["statusLabel"].is_null(),
        "the refused patch changed nothing"
    );

    // The other free text a backend writes.
    let label = "l".repeat(1_025);
    assert_bounded(
        h.patch(&path, json!({ "statusLabel": label })).await,
        "statusLabel: must be at most 1024 characters; this one has 1025",
    );
    assert_bounded(
        h.post(
            &format!("{path}/logs"),
            json!({ "message": "still here", "statusLabel": label }),
        )
        .await,
        "statusLabel: must be at most 1024 characters; this one has 1025",
    );
    assert_bounded(
        h.patch(&path, json!({ "link": vec!["https://ci/1"; 101] }))
            .await,
        "link: at most 100 links; this list has 101",
    );
    let long_link = format!("https://ci/{}", "x".repeat(4_086));
    assert_bounded(
        h.patch(&path, json!({ "link": long_link })).await,
        "link[0]: must be at most 4096 characters; this one has 4097",
    );
    assert_bounded(
        h.patch(&path, json!({ "externalRunId": "e".repeat(1_025) }))
            .await,
        "externalRunId: must be at most 1024 characters; this one has 1025",
    );
    let at_bounds = h
        .patch(
            &path,
            json!({
                "statusLabel": "l".repeat(1_024),
                "link": vec![format!("https://ci/{}", "x".repeat(4_085)); 100],
                "externalRunId": "e".repeat(1_024),
            }),
        )
        .await
        .expect(200);
    assert_eq!(at_bounds["run"]["link"].as_array().map(Vec::len), Some(100));
    h.post(
        &format!("{path}/logs"),
        json!({ "message": "labelled", "statusLabel": "l".repeat(1_024) }),
    )
    .await
    .expect(201);

    // An approver's reason.
    let mut action = v2_action("guarded", "CREATE");
    action["requiredApproval"] = json!(true);
    h.post("/v1/actions", action).await.expect(201);
    let waiting = h
        .post("/v1/actions/guarded/runs", json!({ "properties": {} }))
        .await
        .expect(202)["run"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_bounded(
        h.patch(
            &format!("/v1/actions/runs/{waiting}/approval"),
            json!({ "status": "DECLINE", "description": "d".repeat(4_097) }),
        )
        .await,
        "description: must be at most 4096 characters; this one has 4097",
    );
    h.patch(
        &format!("/v1/actions/runs/{waiting}/approval"),
        json!({ "status": "DECLINE", "description": "d".repeat(4_096) }),
    )
    .await
    .expect(201);
}

/// A page of runs is bounded in bytes as well as in count: a tenant whose runs carry
/// the largest summaries cannot make one list answer (and the server's memory for it)
/// grow to `limit` times their size; the cursor still reaches every run.
#[tokio::test]
async fn a_page_of_large_runs_ends_at_its_byte_bound_and_the_cursor_reaches_the_rest() {
    let h = Harness::memory().await;
    h.seed_catalog().await;
    let summary = "s".repeat(65_536);
    let mut created = Vec::new();
    for _ in 0..150 {
        let run = h.create_run().await;
        h.patch(
            &format!("/v1/actions/runs/{run}"),
            json!({ "summary": summary }),
        )
        .await
        .expect(200);
        created.push(run);
    }
    let mut seen = Vec::new();
    let mut path = "/v1/actions/runs?limit=1000".to_owned();
    let mut pages = 0;
    loop {
        let page = h.get(&path).await.expect(200);
        let size = serde_json::to_vec(&page).unwrap().len();
        assert!(
            size <= port_core::service::RUNS_PAGE_MAX_BYTES + 128 * 1024,
            "a page of {size} bytes"
        );
        let runs = page["runs"].as_array().unwrap();
        assert!(!runs.is_empty());
        seen.extend(runs.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        pages += 1;
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/actions/runs?limit=1000&before={next}"),
            None => break,
        }
    }
    assert!(pages >= 2, "150 runs of 64 KiB need more than one page");
    created.reverse();
    assert_eq!(seen, created, "every run once, newest first");
}
