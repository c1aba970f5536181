//! Pull mode: the same handlers, fed by claim-pending, heartbeat and ack.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use port_client::RunStatus;
use port_webhook::{AckMode, HandlerError, Invocation, Outcome, PullOptions, RunContext};
use serde_json::json;

use crate::support::Portd;

fn fast() -> PullOptions {
    PullOptions::new().poll_interval(Duration::from_millis(50))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulled_runs_are_handled_and_ended() {
    let portd = Portd::start().await;
    portd.action("create_microservice", false, None).await;
    portd.action("broken", false, None).await;
    let receiver = portd
        .receiver()
        .handler(
            "create_microservice",
            |inv: Invocation, ctx: RunContext| async move {
                ctx.log(format!(
                    "pulled {}",
                    inv.property_str("name").unwrap_or("?")
                ))
                .await?;
                Ok(Outcome::with_summary("pulled and done"))
            },
        )
        .handler("broken", |_: Invocation, _: RunContext| async {
            Err::<Outcome, _>(HandlerError::new("broken on purpose"))
        })
        .build();
    let ok = portd
        .execute("create_microservice", json!({ "name": "svc-p" }))
        .await;
    let broken = portd.execute("broken", json!({})).await;
    let pulling = receiver.clone();
    let puller = tokio::spawn(async move { pulling.pull(fast()).await });

    let ok = portd.ended(&ok.id).await;
    assert_eq!(ok.status, RunStatus::Success);
    assert_eq!(ok.summary.as_deref(), Some("pulled and done"));
    assert!(
        portd
            .logs(&ok.id)
            .await
            .contains(&"pulled svc-p".to_owned())
    );
    let broken = portd.ended(&broken.id).await;
    assert_eq!(broken.status, RunStatus::Failure);
    assert_eq!(broken.summary.as_deref(), Some("broken on purpose"));

    receiver.shutdown_token().cancel();
    tokio::time::timeout(Duration::from_secs(20), puller)
        .await
        .expect("pull returns after shutdown")
        .unwrap();
    // Acknowledged once reported: nothing is left to claim.
    assert!(
        portd
            .client
            .claim_pending(10, 1000, None)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_long_run_from_being_handed_out_again() {
    let portd = Portd::start().await;
    portd.action("create_microservice", false, None).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let build = |calls: &Arc<AtomicUsize>| {
        let calls = Arc::clone(calls);
        portd
            .receiver()
            .handler(
                "create_microservice",
                move |_: Invocation, _: RunContext| {
                    let calls = Arc::clone(&calls);
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        // Longer than the visibility timeout: only heartbeats keep the claim.
                        tokio::time::sleep(Duration::from_millis(1500)).await;
                        Ok(Outcome::done())
                    }
                },
            )
            .build()
    };
    let (first, second) = (build(&calls), build(&calls));
    let options = fast()
        .visibility_timeout(Duration::from_millis(400))
        .heartbeat_interval(Duration::from_millis(100));
    let run = portd.execute("create_microservice", json!({})).await;
    let pullers = [first.clone(), second.clone()].map(|receiver| {
        let options = options.clone();
        tokio::spawn(async move { receiver.pull(options).await })
    });
    assert_eq!(portd.ended(&run.id).await.status, RunStatus::Success);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    for (receiver, puller) in [first, second].into_iter().zip(pullers) {
        receiver.shutdown_token().cancel();
        tokio::time::timeout(Duration::from_secs(20), puller)
            .await
            .expect("pull returns")
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledging_on_claim_works_too() {
    let portd = Portd::start().await;
    portd.action("create_microservice", false, None).await;
    let receiver = portd
        .receiver()
        .handler(
            "create_microservice",
            |_: Invocation, _: RunContext| async { Ok(Outcome::done()) },
        )
        .build();
    let run = portd.execute("create_microservice", json!({})).await;
    let pulling = receiver.clone();
    let puller = tokio::spawn(async move { pulling.pull(fast().ack(AckMode::OnClaim)).await });
    assert_eq!(portd.ended(&run.id).await.status, RunStatus::Success);
    receiver.shutdown_token().cancel();
    tokio::time::timeout(Duration::from_secs(20), puller)
        .await
        .expect("pull returns")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulled_synchronized_runs_are_ended_by_their_runner() {
    // portd cannot see the answer of a pulled synchronized run, so the runner reports
    // the status itself, as Port's agent does.
    let portd = Portd::start().await;
    portd.action("lookup", true, None).await;
    let receiver = portd
        .receiver()
        .handler("lookup", |_: Invocation, ctx: RunContext| async move {
            ctx.log("looked it up").await?;
            Ok(Outcome::with_summary("found").response(json!({ "healthy": true })))
        })
        .build();
    let run = portd.execute("lookup", json!({})).await;
    let pulling = receiver.clone();
    let puller = tokio::spawn(async move { pulling.pull(fast()).await });
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    while portd.run(&run.id).await.status != RunStatus::Success {
        assert!(
            std::time::Instant::now() < deadline,
            "the runner never ended the run"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.shutdown_token().cancel();
    tokio::time::timeout(Duration::from_secs(20), puller)
        .await
        .expect("pull returns")
        .unwrap();
    let seen = portd.run(&run.id).await;
    assert_eq!(seen.status, RunStatus::Success);
    assert_eq!(seen.summary.as_deref(), Some("found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulled_runs_get_their_secret_inputs_in_clear() {
    let portd = Portd::start().await;
    portd.action("create_microservice", false, None).await;
    let seen = Arc::new(std::sync::Mutex::new(None::<String>));
    let keep = Arc::clone(&seen);
    let receiver = portd
        .receiver()
        .handler(
            "create_microservice",
            move |inv: Invocation, ctx: RunContext| {
                let keep = Arc::clone(&keep);
                async move {
                    let token = inv.property_str("token").unwrap_or_default().to_owned();
                    ctx.log(format!("pulled with {token}")).await?;
                    *keep.lock().unwrap() = Some(token);
                    Ok(Outcome::done())
                }
            },
        )
        .build();
    let run = portd
        .execute(
            "create_microservice",
            json!({ "name": "svc-p", "token": "tok-pulled-secret" }),
        )
        .await;
    // What a claim hands out (the run's payload) holds the secret encrypted only.
    let stored = serde_json::to_string(&portd.run(&run.id).await).unwrap();
    assert!(!stored.contains("tok-pulled-secret"), "{stored}");
    let pulling = receiver.clone();
    let puller = tokio::spawn(async move { pulling.pull(fast()).await });
    let ended = portd.ended(&run.id).await;
    assert_eq!(ended.status, RunStatus::Success, "{:?}", ended.summary);
    assert_eq!(seen.lock().unwrap().as_deref(), Some("tok-pulled-secret"));
    assert!(
        portd
            .logs(&run.id)
            .await
            .contains(&"pulled with ***".to_owned())
    );
    receiver.shutdown_token().cancel();
    tokio::time::timeout(Duration::from_secs(20), puller)
        .await
        .expect("pull returns")
        .unwrap();
}
