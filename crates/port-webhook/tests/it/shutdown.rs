//! Graceful shutdown: refuse new deliveries, let runs in flight finish within the
//! grace period, fail the rest.

use std::time::Duration;

use port_client::RunStatus;
use port_webhook::{Invocation, Outcome, RunContext, SHUTDOWN_REASON};
use serde_json::json;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::support::{Delivery, Portd, invocation, now, port_core_sign};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_runs_within_the_grace_period_and_fails_the_rest() {
    let portd = Portd::start().await;
    portd.action("quick", false, None).await;
    portd.action("slow", false, None).await;
    let receiver = portd
        .receiver()
        .shutdown_grace(Duration::from_millis(800))
        .handler("quick", |_: Invocation, _: RunContext| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(Outcome::with_summary("made it"))
        })
        .handler("slow", |_: Invocation, _: RunContext| async {
            tokio::time::sleep(Duration::from_secs(120)).await;
            Ok(Outcome::done())
        })
        .build();
    // Served without graceful shutdown of its own, as when the router is nested in a
    // bigger app, so that a delivery can still arrive after shutdown began.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(axum::serve(listener, receiver.router()).into_future());

    let quick = portd.execute("quick", json!({})).await;
    let slow = portd.execute("slow", json!({})).await;
    let late = portd.execute("quick", json!({})).await;
    for run in [&quick, &slow] {
        let (body, _) = invocation(run);
        assert_eq!(
            Delivery::new(&url, &body, portd.secret()).send().await.0,
            200
        );
    }
    assert_eq!(receiver.in_flight(), 2);

    let stopping = receiver.clone();
    let shutdown = tokio::spawn(async move { stopping.shutdown().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (body, _) = invocation(&late);
    let (status, answer) = Delivery::new(&url, &body, portd.secret()).send().await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (503, Some("shutting_down"))
    );

    tokio::time::timeout(Duration::from_secs(20), shutdown)
        .await
        .expect("shutdown ends after the grace period")
        .unwrap();
    assert_eq!(receiver.in_flight(), 0);
    let quick = portd.run(&quick.id).await;
    assert_eq!(quick.status, RunStatus::Success);
    assert_eq!(quick.summary.as_deref(), Some("made it"));
    let slow = portd.run(&slow.id).await;
    assert_eq!(slow.status, RunStatus::Failure);
    assert_eq!(slow.summary.as_deref(), Some(SHUTDOWN_REASON));
    // Refused, so still waiting for a runner.
    assert_eq!(portd.run(&late.id).await.status, RunStatus::InProgress);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_returns_once_shutdown_is_requested() {
    let portd = Portd::start().await;
    portd.action("quick", false, None).await;
    let receiver = portd
        .receiver()
        .handler("quick", |_: Invocation, _: RunContext| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(Outcome::done())
        })
        .build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serving = receiver.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        serving
            .serve_with_shutdown(listener, async {
                let _ = rx.await;
            })
            .await
    });
    let run = portd.execute("quick", json!({})).await;
    let (body, _) = invocation(&run);
    assert_eq!(
        Delivery::new(&url, &body, portd.secret()).send().await.0,
        200
    );
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("serve returns")
        .unwrap()
        .unwrap();
    // The run in flight finished before serve returned.
    assert_eq!(portd.run(&run.id).await.status, RunStatus::Success);
}

/// A delivery answered 200 while a slot was free has started, even when shutdown begins
/// before its task first runs: on one thread, the token is cancelled between the answer
/// and the task's first poll, every time.
#[tokio::test(flavor = "current_thread")]
async fn an_accepted_run_starts_even_if_shutdown_begins_before_its_task_runs() {
    let portd = Portd::start().await;
    portd.action("quick", false, None).await;
    // Each round is a coin toss for an unbiased choice between "slot free" and
    // "stopping": twelve rounds make a pass by luck a 1-in-4096 event.
    for _ in 0..12 {
        let receiver = portd
            .receiver()
            .handler("quick", |_: Invocation, _: RunContext| async {
                Ok(Outcome::done())
            })
            .build();
        let run = portd.execute("quick", json!({})).await;
        let (body, _) = invocation(&run);
        let body = serde_json::to_vec(&body).unwrap();
        let timestamp = now();
        let request = axum::http::Request::post("/")
            .header("content-type", "application/json")
            .header("x-port-timestamp", timestamp.to_string())
            .header(
                "x-port-signature",
                port_core_sign(portd.secret(), timestamp, &body),
            )
            .body(axum::body::Body::from(body))
            .unwrap();
        let answer = receiver.router().oneshot(request).await.unwrap();
        assert_eq!(answer.status(), 200);
        // No await between the answer and this: the run's task has not been polled.
        receiver.shutdown_token().cancel();
        receiver.shutdown().await;
        assert_eq!(portd.run(&run.id).await.status, RunStatus::Success);
    }
}
