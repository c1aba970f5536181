//! Watching a run: the event stream, the polling fallback, and waiting for the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use port_client::{ClientError, LogEvent, RunStatus};
use serde_json::json;

use crate::script::{Reply, ScriptServer, log_json, run_json};

const RUN: &str = "/v1/actions/runs/r_1";
const LOGS: &str = "/v1/actions/runs/r_1/logs";
const STREAM: &str = "/v1/actions/runs/r_1/logs/stream";

async fn collect(server: &ScriptServer) -> Vec<Result<LogEvent, ClientError>> {
    let events = server.client().follow_logs("r_1");
    tokio::time::timeout(Duration::from_secs(20), events.collect::<Vec<_>>())
        .await
        .expect("the stream ends")
}

fn describe(events: &[Result<LogEvent, ClientError>]) -> Vec<String> {
    events
        .iter()
        .map(|event| match event {
            Ok(LogEvent::Log(log)) => format!("log {}", log.message),
            Ok(LogEvent::Status(run)) => format!("status {}", run.status),
            Ok(LogEvent::Ended(run)) => format!("ended {}", run.status),
            Err(e) => format!("error {e}"),
        })
        .collect()
}

#[tokio::test]
async fn follow_logs_polls_when_the_stream_route_is_missing() {
    // The run gets two lines, then a third and ends; the stream route does not exist.
    let polls = Arc::new(AtomicUsize::new(0));
    let seen = polls.clone();
    let server = ScriptServer::start(move |r, _| match r.path.as_str() {
        RUN => {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let status = if n < 2 { "IN_PROGRESS" } else { "SUCCESS" };
            Some(Reply::json(
                200,
                json!({ "ok": true, "run": run_json("r_1", status) }),
            ))
        }
        LOGS => {
            // Lines 1–2 exist from the start, line 3 from the third run poll on.
            let available = if seen.load(Ordering::SeqCst) >= 2 {
                3
            } else {
                2
            };
            let offset: usize = r.param("offset").unwrap().parse().unwrap();
            let logs: Vec<_> = (offset + 1..=available)
                .map(|n| log_json("r_1", n))
                .collect();
            Some(Reply::json(200, json!({ "ok": true, "runLogs": logs })))
        }
        _ => None,
    })
    .await;
    let events = collect(&server).await;
    assert_eq!(
        describe(&events),
        [
            "log line 1",
            "log line 2",
            "status IN_PROGRESS",
            "log line 3",
            "ended SUCCESS"
        ]
    );
    assert_eq!(
        server.to("GET", STREAM).len(),
        1,
        "the stream was tried first"
    );
    let offsets: Vec<_> = server
        .to("GET", LOGS)
        .iter()
        .map(|r| r.param("offset").unwrap())
        .collect();
    assert_eq!(offsets.first().map(String::as_str), Some("0"));
    assert_eq!(offsets.last().map(String::as_str), Some("3"));
}

#[tokio::test]
async fn follow_logs_polls_when_every_stream_of_the_organization_is_taken() {
    // portd refuses another stream (429); polling still follows the run.
    let server = ScriptServer::start(move |r, _| match r.path.as_str() {
        STREAM => Some(Reply::json(
            429,
            json!({ "ok": false, "error": "too_many_requests", "message": "100 log streams" }),
        )),
        RUN => Some(Reply::json(
            200,
            json!({ "ok": true, "run": run_json("r_1", "SUCCESS") }),
        )),
        LOGS => {
            let offset: usize = r.param("offset").unwrap().parse().unwrap();
            let logs: Vec<_> = (offset + 1..=2).map(|n| log_json("r_1", n)).collect();
            Some(Reply::json(200, json!({ "ok": true, "runLogs": logs })))
        }
        _ => None,
    })
    .await;
    let events = collect(&server).await;
    assert_eq!(
        describe(&events),
        ["log line 1", "log line 2", "ended SUCCESS"]
    );
    assert!(
        server.to("GET", STREAM).len() > 1,
        "the client retried the stream before polling"
    );
}

#[tokio::test]
async fn follow_logs_pages_through_long_logs() {
    let server = ScriptServer::start(move |r, _| match r.path.as_str() {
        RUN => Some(Reply::json(
            200,
            json!({ "ok": true, "run": run_json("r_1", "FAILURE") }),
        )),
        LOGS => {
            let offset: usize = r.param("offset").unwrap().parse().unwrap();
            let limit: usize = r.param("limit").unwrap().parse().unwrap();
            let logs: Vec<_> = (offset + 1..=120.min(offset + limit))
                .map(|n| log_json("r_1", n))
                .collect();
            Some(Reply::json(200, json!({ "ok": true, "runLogs": logs })))
        }
        _ => None,
    })
    .await;
    let events = collect(&server).await;
    assert_eq!(events.len(), 121);
    assert!(matches!(&events[119], Ok(LogEvent::Log(log)) if log.message == "line 120"));
    assert!(matches!(&events[120], Ok(LogEvent::Ended(run)) if run.status == RunStatus::Failure));
}

#[tokio::test]
async fn follow_logs_reads_the_event_stream_and_resumes_after_a_drop() {
    let status = json!({ "ok": true, "run": run_json("r_1", "IN_PROGRESS") }).to_string();
    let first_log = log_json("r_1", 1).to_string();
    let second_log = json!({ "runLog": log_json("r_1", 2) }).to_string();
    let ended = run_json("r_1", "SUCCESS").to_string();
    let server = ScriptServer::start(move |r, nth| {
        (r.path == STREAM).then(|| match nth {
            // The first connection: a status, one log line split across chunks, then
            // the connection drops.
            0 => {
                let log_event = format!("event: log\nid: 1\ndata: {first_log}\n\n");
                let (a, b) = log_event.split_at(17);
                Reply::sse(&[
                    (0, ": connected\nretry: 10\n\n"),
                    (0, &format!("event: status\ndata: {status}\n\n")),
                    (10, a),
                    (10, b),
                ])
            }
            // The reconnection resumes after line 1, then the run ends.
            _ => {
                assert_eq!(r.header("last-event-id").as_deref(), Some("1"));
                Reply::sse(&[
                    (
                        0,
                        &format!("event: log\r\nid: 2\r\ndata: {second_log}\r\n\r\n"),
                    ),
                    (0, "event: something-new\ndata: {}\n\n"),
                    (
                        5,
                        &format!("event: status\ndata: {ended}\n\nevent: end\ndata: {{}}\n\n"),
                    ),
                ])
            }
        })
    })
    .await;
    let events = collect(&server).await;
    assert_eq!(
        describe(&events),
        [
            "status IN_PROGRESS",
            "log line 1",
            "log line 2",
            "ended SUCCESS"
        ]
    );
    let streams = server.to("GET", STREAM);
    assert_eq!(streams.len(), 2);
    assert_eq!(
        streams[0].header("accept").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(streams[0].header("last-event-id"), None);
    assert!(server.to("GET", LOGS).is_empty(), "no polling");
}

#[tokio::test]
async fn an_end_without_a_run_fetches_it() {
    let server = ScriptServer::start(move |r, _| match r.path.as_str() {
        STREAM => Some(Reply::sse(&[(0, "event: end\ndata: \n\n")])),
        RUN => Some(Reply::json(
            200,
            json!({ "ok": true, "run": run_json("r_1", "DECLINED") }),
        )),
        _ => None,
    })
    .await;
    assert_eq!(describe(&collect(&server).await), ["ended DECLINED"]);
}

#[tokio::test]
async fn following_a_missing_run_fails() {
    let server = ScriptServer::start(|_, _| None).await;
    let events = collect(&server).await;
    assert_eq!(events.len(), 1);
    assert!(matches!(&events[0], Err(e) if e.is_not_found()));
}

#[tokio::test]
async fn wait_for_run_returns_the_ended_run() {
    let server = ScriptServer::start(|r, nth| {
        (r.path == RUN).then(|| {
            let status = if nth < 2 { "IN_PROGRESS" } else { "SUCCESS" };
            Reply::json(200, json!({ "ok": true, "run": run_json("r_1", status) }))
        })
    })
    .await;
    let run = server
        .client()
        .wait_for_run("r_1", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Success);
    assert_eq!(server.to("GET", RUN).len(), 3);
}

#[tokio::test]
async fn wait_for_run_times_out() {
    let server = ScriptServer::start(|r, _| {
        (r.path == RUN).then(|| {
            Reply::json(
                200,
                json!({ "ok": true, "run": run_json("r_1", "WAITING_FOR_APPROVAL") }),
            )
        })
    })
    .await;
    let error = server
        .client()
        .wait_for_run("r_1", Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Timeout { last_status: Some(RunStatus::WaitingForApproval), waited, .. } if *waited >= Duration::from_millis(500)),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_unknown_status_with_an_end_time_counts_as_ended() {
    let server = ScriptServer::start(|r, _| {
        (r.path == RUN).then(|| {
            let mut run = run_json("r_1", "CANCELLED");
            run["endedAt"] = json!("2024-08-15T12:31:00.000Z");
            Reply::json(200, json!({ "ok": true, "run": run }))
        })
    })
    .await;
    let run = server
        .client()
        .wait_for_run("r_1", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Other("CANCELLED".into()));
}
