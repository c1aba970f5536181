//! `GET /v1/actions/runs/{id}/logs/stream`: server-sent events over a real socket.

use std::time::Duration;

use serde_json::json;

use crate::hooks::{Api, PATIENCE, Receiver, Reply, SseEvent, SseReader, quick_server};
use crate::support::Harness;

async fn open(api: &Api, run_id: &str, last_event_id: Option<&str>) -> SseReader {
    let mut request = api
        .request(
            reqwest::Method::GET,
            &format!("/actions/runs/{run_id}/logs/stream"),
        )
        .header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    SseReader::new(response)
}

#[track_caller]
fn assert_log(event: &SseEvent, seq: u64, message: &str) {
    assert_eq!(event.event, "log", "{event:?}");
    assert_eq!(
        event.id.as_deref(),
        Some(seq.to_string().as_str()),
        "{event:?}"
    );
    assert_eq!(event.data["message"], message, "{event:?}");
}

#[track_caller]
fn assert_status(event: &SseEvent, kind: &str, status: &str) {
    assert_eq!(event.event, kind, "{event:?}");
    assert_eq!(event.data["status"], status, "{event:?}");
}

/// A run whose invocation goes to pull-mode runners, so that portd writes nothing to
/// its log by itself.
async fn quiet_run(api: &Api, receiver: &Receiver) -> String {
    api.webhook_action("pulled", &receiver.url(), json!({ "agent": true }))
        .await;
    api.execute("pulled").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_sends_the_backlog_then_live_logs_and_ends_with_the_run() {
    let receiver = Receiver::start(vec![Reply::status(200)]).await;
    let server = quick_server().await;
    let api = Api::of(&server).await;
    let run_id = quiet_run(&api, &receiver).await;
    api.add_log(&run_id, json!({ "message": "one" })).await;
    api.add_log(&run_id, json!({ "message": "two" })).await;

    let mut stream = open(&api, &run_id, None).await;
    assert_log(&stream.expect_next().await, 1, "one");
    assert_log(&stream.expect_next().await, 2, "two");
    let status = stream.expect_next().await;
    assert_status(&status, "status", "IN_PROGRESS");
    assert_eq!(status.data["id"], run_id);

    api.add_log(&run_id, json!({ "message": "three" })).await;
    assert_log(&stream.expect_next().await, 3, "three");
    api.patch(
        &format!("/actions/runs/{run_id}"),
        json!({ "statusLabel": "Deploying" }),
    )
    .await
    .expect(200);
    let labelled = stream.expect_next().await;
    assert_status(&labelled, "status", "IN_PROGRESS");
    assert_eq!(labelled.data["statusLabel"], "Deploying");

    api.add_log(
        &run_id,
        json!({ "message": "done", "terminationStatus": "SUCCESS" }),
    )
    .await;
    assert_log(&stream.expect_next().await, 4, "done");
    assert_status(&stream.expect_next().await, "status", "SUCCESS");
    let end = stream.expect_next().await;
    assert_status(&end, "end", "SUCCESS");
    assert!(end.data["endedAt"].is_string());
    stream.expect_closed().await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_resumes_after_that_line() {
    let receiver = Receiver::start(vec![Reply::status(200)]).await;
    let server = quick_server().await;
    let api = Api::of(&server).await;
    let run_id = quiet_run(&api, &receiver).await;
    for message in ["one", "two", "three"] {
        api.add_log(&run_id, json!({ "message": message })).await;
    }

    // A live run: the lines after 2, then its status, then what comes.
    let mut stream = open(&api, &run_id, Some("2")).await;
    assert_log(&stream.expect_next().await, 3, "three");
    assert_status(&stream.expect_next().await, "status", "IN_PROGRESS");
    api.patch(
        &format!("/actions/runs/{run_id}"),
        json!({ "status": "FAILURE" }),
    )
    .await
    .expect(200);
    assert_status(&stream.expect_next().await, "status", "FAILURE");
    assert_status(&stream.expect_next().await, "end", "FAILURE");
    stream.expect_closed().await;

    // An ended run: the rest of its log, its status and the end, at once.
    let mut stream = open(&api, &run_id, Some("1")).await;
    assert_log(&stream.expect_next().await, 2, "two");
    assert_log(&stream.expect_next().await, 3, "three");
    assert_status(&stream.expect_next().await, "status", "FAILURE");
    assert_status(&stream.expect_next().await, "end", "FAILURE");
    stream.expect_closed().await;

    // Unknown runs are 404 before any stream starts.
    api.get("/actions/runs/r_0000000000000000/logs/stream")
        .await
        .expect(404);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_end_on_shutdown() {
    let receiver = Receiver::start(vec![Reply::status(200)]).await;
    let server = quick_server().await;
    let api = Api::of(&server).await;
    let run_id = quiet_run(&api, &receiver).await;
    let mut stream = open(&api, &run_id, None).await;
    assert_status(&stream.expect_next().await, "status", "IN_PROGRESS");

    let stopped = tokio::time::timeout(PATIENCE, server.shutdown()).await;
    assert!(
        matches!(stopped, Ok(Ok(()))),
        "an open stream does not hold up shutdown: {stopped:?}"
    );
    let rest = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("the stream closed");
    assert_eq!(rest, None);
}

#[tokio::test]
async fn a_long_backlog_is_sent_whole_and_in_order() {
    let h = Harness::memory().await;
    h.seed_catalog().await;
    let run_id = h.create_run().await;
    let lines = 1234;
    for i in 1..=lines {
        h.post(
            &format!("/v1/actions/runs/{run_id}/logs"),
            json!({ "message": format!("line {i}") }),
        )
        .await
        .expect(201);
    }
    h.patch(
        &format!("/v1/actions/runs/{run_id}"),
        json!({ "status": "SUCCESS" }),
    )
    .await
    .expect(200);

    // The run has ended, so the whole stream is the response body.
    let reply = h
        .get(&format!("/v1/actions/runs/{run_id}/logs/stream"))
        .await;
    assert_eq!(reply.status, 200);
    let text = reply.body.as_str().expect("an event stream").to_owned();
    let events: Vec<(String, Option<String>, serde_json::Value)> = text
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut event = String::new();
            let mut id = None;
            let mut data = serde_json::Value::Null;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = serde_json::from_str(v.trim()).unwrap();
                }
            }
            (event, id, data)
        })
        .collect();
    assert_eq!(
        events.len(),
        lines + 2,
        "every line, the status and the end"
    );
    for (i, (event, id, data)) in events.iter().take(lines).enumerate() {
        assert_eq!(event, "log");
        assert_eq!(id.as_deref(), Some((i + 1).to_string().as_str()));
        assert_eq!(data["message"], format!("line {}", i + 1));
    }
    assert_eq!(events[lines].0, "status");
    assert_eq!(events[lines + 1].0, "end");
    assert_eq!(events[lines + 1].2["status"], "SUCCESS");
}

/// A real server (SQLite) whose organizations may hold `streams` log streams each.
async fn server_with_streams(streams: u32) -> port_server::testing::TestServer {
    port_server::testing::TestServer::start_configured(Default::default(), |config| {
        config.delivery = Some(crate::hooks::quick_delivery());
        config.max_streams_per_org = streams;
    })
    .await
    .expect("portd starts")
}

/// Opens a stream and reads up to the run's first `status`: the stream is established.
async fn established(api: &Api, run_id: &str) -> SseReader {
    let mut stream = open(api, run_id, None).await;
    while stream.expect_next().await.event != "status" {}
    stream
}

async fn stream_answer(api: &Api, run_id: &str) -> reqwest::Response {
    api.request(
        reqwest::Method::GET,
        &format!("/actions/runs/{run_id}/logs/stream"),
    )
    .send()
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_holds_at_most_its_streams_and_a_closed_one_frees_its_slot() {
    let receiver = Receiver::start(vec![Reply::status(200)]).await;
    let server = server_with_streams(3).await;
    let api = Api::of(&server).await;
    let run_id = quiet_run(&api, &receiver).await;
    let other_run = api.execute("pulled").await;

    let mut streams = Vec::new();
    for run in [&run_id, &run_id, &other_run] {
        streams.push(established(&api, run).await);
    }
    // The fourth is refused before anything is read, with Port's envelope and a time
    // to come back.
    let refused = stream_answer(&api, &run_id).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.headers()["retry-after"],
        port_server::error::RETRY_AFTER_SECS
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["ok"], false);
    assert_eq!(body["error"], "too_many_requests");
    assert!(
        body["message"].as_str().unwrap().contains("3 log streams"),
        "{body}"
    );
    let org = port_core::OrgId::parse(&server.org_id).unwrap();
    assert_eq!(server.state().hub().open_streams(&org), 3);

    // Another organization has its own streams.
    let store = server.state().store().as_ref();
    let clock = port_server::adapters::SystemClock;
    let other =
        port_server::bootstrap::create_organization(store, server.state().ids(), &clock, "other")
            .await
            .unwrap();
    let credential =
        port_server::bootstrap::create_credential(store, &clock, &other.id, None, None)
            .await
            .unwrap();
    let neighbour = Api::login(
        &server.api_url,
        &credential.client_id,
        credential.client_secret.expose(),
    )
    .await;
    let theirs = quiet_run(&neighbour, &receiver).await;
    let mut neighbours = established(&neighbour, &theirs).await;

    // A client that goes away frees its slot: the server notices when it next writes.
    drop(streams.remove(0));
    api.add_log(&run_id, json!({ "message": "to whoever listens" }))
        .await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut reopened = loop {
        let answer = stream_answer(&api, &run_id).await;
        if answer.status() == 200 {
            break SseReader::new(answer);
        }
        assert_eq!(answer.status(), 429);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed stream's slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_log(&reopened.expect_next().await, 1, "to whoever listens");

    // So does a stream that ends with its run.
    api.patch(
        &format!("/actions/runs/{other_run}"),
        json!({ "status": "SUCCESS" }),
    )
    .await
    .expect(200);
    let mut ended = streams.pop().unwrap();
    while ended.expect_next().await.event != "end" {}
    ended.expect_closed().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server.state().hub().open_streams(&org) > 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ended stream kept its slot"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _fresh = established(&api, &run_id).await;
    assert_eq!(stream_answer(&api, &run_id).await.status(), 429);
    // The neighbour's stream was never disturbed.
    neighbour
        .add_log(&theirs, json!({ "message": "still here" }))
        .await;
    assert_log(&neighbours.expect_next().await, 1, "still here");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_get_only_what_changed_from_one_feed_per_run() {
    let receiver = Receiver::start(vec![Reply::status(200)]).await;
    let server = quick_server().await;
    let api = Api::of(&server).await;
    let run_id = quiet_run(&api, &receiver).await;
    // A run with a large field: a change that does not touch it must not resend it.
    api.patch(
        &format!("/actions/runs/{run_id}"),
        json!({ "summary": "s".repeat(60_000) }),
    )
    .await
    .expect(200);
    api.add_log(&run_id, json!({ "message": "before" })).await;

    let mut followers = Vec::new();
    for _ in 0..20 {
        let mut stream = open(&api, &run_id, None).await;
        assert_log(&stream.expect_next().await, 1, "before");
        let status = stream.expect_next().await;
        assert_status(&status, "status", "IN_PROGRESS");
        assert_eq!(status.data["summary"].as_str().map(str::len), Some(60_000));
        followers.push(stream);
    }
    assert_eq!(
        server.state().hub().followed_runs(),
        1,
        "one feed for all 20"
    );

    // A log line reaches every follower as that line alone: no status, no re-read run.
    api.add_log(&run_id, json!({ "message": "new" })).await;
    for stream in &mut followers {
        assert_log(&stream.expect_next().await, 2, "new");
    }
    // A change to the run is one status event, after which the next line follows
    // directly: nothing was queued in between.
    api.patch(
        &format!("/actions/runs/{run_id}"),
        json!({ "statusLabel": "Deploying" }),
    )
    .await
    .expect(200);
    api.add_log(&run_id, json!({ "message": "after" })).await;
    for stream in &mut followers {
        let status = stream.expect_next().await;
        assert_status(&status, "status", "IN_PROGRESS");
        assert_eq!(status.data["statusLabel"], "Deploying");
        assert_log(&stream.expect_next().await, 3, "after");
    }
    drop(followers);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_does_not_read_neither_blocks_writers_nor_is_buffered_for() {
    let receiver = Receiver::start(vec![Reply::status(200)]).await;
    let server = quick_server().await;
    let api = Api::of(&server).await;
    let run_id = quiet_run(&api, &receiver).await;
    let org = port_core::OrgId::parse(&server.org_id).unwrap();
    let run = port_core::RunId::parse(&run_id).unwrap();

    // Its connection is open, its body is no longer read: the socket fills up.
    let mut stalled = established(&api, &run_id).await;
    let lines = 300_u64;
    let line = |i: u64| format!("{i:05} {}", "x".repeat(60 * 1024));
    let writes = async {
        for i in 1..=lines {
            api.add_log(&run_id, json!({ "message": line(i) })).await;
        }
    };
    // 18 MB of lines: far more than the socket holds, so writers that waited for this
    // reader would never finish.
    tokio::time::timeout(Duration::from_secs(120), writes)
        .await
        .expect("the writers were never held up by the stalled reader");
    let feed = server.state().hub().follow(&org, &run);
    assert!(
        feed.window_bytes() <= port_delivery::RunFeed::WINDOW_BYTES,
        "the run's window holds {} bytes",
        feed.window_bytes()
    );

    // Read late, the stream still has every line, in order: what fell out of the
    // window came from the store.
    for i in 1..=lines {
        let event = stalled.expect_next().await;
        assert_log(&event, i, &line(i));
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_the_delivery_worker_writes_reach_followers() {
    // The worker's line about a failed attempt comes with a notice that says only
    // "this run changed": one follower reads the store for the run's feed.
    let receiver = Receiver::start(vec![
        Reply::status(500).after(Duration::from_millis(700)),
        Reply::status(200),
    ])
    .await;
    let server = quick_server().await;
    let api = Api::of(&server).await;
    api.webhook_action("flaky", &receiver.url(), json!({}))
        .await;
    let run_id = api.execute("flaky").await;
    let mut first = established(&api, &run_id).await;
    let mut second = established(&api, &run_id).await;
    for stream in [&mut first, &mut second] {
        let line = stream.expect_next().await;
        assert_eq!(line.event, "log", "{line:?}");
        assert_eq!(line.id.as_deref(), Some("1"));
        let message = line.data["message"].as_str().unwrap();
        assert!(message.contains("500"), "{message}");
    }
    server.shutdown().await.unwrap();
}
