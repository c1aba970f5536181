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
