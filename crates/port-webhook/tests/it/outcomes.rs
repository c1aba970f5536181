//! How runs end: from the handler's result, its panic, its timeout; synchronized
//! answers; what the run context reports on the way.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use port_client::RunStatus;
use port_webhook::{ActionOptions, HandlerError, Invocation, Outcome, RunContext};
use serde_json::json;

use crate::support::{Delivery, Portd, Served, invocation};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_ends_its_run_failure() {
    let portd = Portd::start().await;
    portd.action("create_microservice", false, None).await;
    let served = Served::start(
        portd
            .receiver()
            .handler(
                "create_microservice",
                |_: Invocation, _: RunContext| async {
                    if std::hint::black_box(true) {
                        panic!("boom in the handler");
                    }
                    Ok(Outcome::done())
                },
            )
            .build(),
    )
    .await;
    let run = portd.execute("create_microservice", json!({})).await;
    let (body, _) = invocation(&run);
    assert_eq!(
        Delivery::new(&served.url, &body, portd.secret())
            .send()
            .await
            .0,
        200
    );
    let ended = portd.ended(&run.id).await;
    assert_eq!(ended.status, RunStatus::Failure);
    assert_eq!(
        ended.summary.as_deref(),
        Some("handler panicked: boom in the handler")
    );
    // The receiver survives its handler's panic.
    let run = portd.execute("create_microservice", json!({})).await;
    let (body, _) = invocation(&run);
    assert_eq!(
        Delivery::new(&served.url, &body, portd.secret())
            .send()
            .await
            .0,
        200
    );
    assert_eq!(portd.ended(&run.id).await.status, RunStatus::Failure);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erroring_handler_ends_its_run_failure_with_the_reason() {
    let portd = Portd::start().await;
    portd.action("create_microservice", false, None).await;
    let served = Served::start(
        portd
            .receiver()
            .handler(
                "create_microservice",
                |inv: Invocation, ctx: RunContext| async move {
                    ctx.log("about to fail").await?;
                    let name = inv.property_str("name").unwrap_or_default().to_owned();
                    Err::<Outcome, _>(HandlerError::new(format!("quota exceeded for {name}")))
                },
            )
            .build(),
    )
    .await;
    let run = portd
        .execute("create_microservice", json!({ "name": "svc-q" }))
        .await;
    let (body, _) = invocation(&run);
    assert_eq!(
        Delivery::new(&served.url, &body, portd.secret())
            .send()
            .await
            .0,
        200
    );
    let ended = portd.ended(&run.id).await;
    assert_eq!(ended.status, RunStatus::Failure);
    assert_eq!(ended.summary.as_deref(), Some("quota exceeded for svc-q"));
    let logs = portd.logs(&run.id).await;
    assert!(logs.contains(&"about to fail".to_owned()), "{logs:?}");
    assert!(
        logs.contains(&"Run failed: quota exceeded for svc-q".to_owned()),
        "{logs:?}"
    );
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_returning_ok_ends_its_run_success_unless_it_ended_it() {
    let portd = Portd::start().await;
    portd.action("create_microservice", false, None).await;
    portd.action("self_ending", false, None).await;
    let served = Served::start(
        portd
            .receiver()
            .handler(
                "create_microservice",
                |_: Invocation, _: RunContext| async { Ok(Outcome::done()) },
            )
            // Ends its run FAILURE itself, then returns normally: FAILURE stays.
            .handler("self_ending", |_: Invocation, ctx: RunContext| async move {
                ctx.fail("decided to fail").await?;
                Ok(Outcome::with_summary("ignored"))
            })
            .build(),
    )
    .await;
    let ok = portd.execute("create_microservice", json!({})).await;
    let failed = portd.execute("self_ending", json!({})).await;
    for run in [&ok, &failed] {
        let (body, _) = invocation(run);
        assert_eq!(
            Delivery::new(&served.url, &body, portd.secret())
                .send()
                .await
                .0,
            200
        );
    }
    let ok = portd.ended(&ok.id).await;
    assert_eq!(ok.status, RunStatus::Success);
    assert!(ok.ended_at.is_some());
    let failed = portd.ended(&failed.id).await;
    assert_eq!(failed.status, RunStatus::Failure);
    assert_eq!(failed.summary.as_deref(), Some("decided to fail"));
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_over_its_timeout_ends_its_run_failure() {
    let portd = Portd::start().await;
    portd.action("create_microservice", false, None).await;
    let served = Served::start(
        portd
            .receiver()
            .action(
                "create_microservice",
                ActionOptions::new().timeout(Duration::from_millis(300)),
                |_: Invocation, _: RunContext| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok(Outcome::done())
                },
            )
            .build(),
    )
    .await;
    let run = portd.execute("create_microservice", json!({})).await;
    let (body, _) = invocation(&run);
    assert_eq!(
        Delivery::new(&served.url, &body, portd.secret())
            .send()
            .await
            .0,
        200
    );
    let ended = portd.ended(&run.id).await;
    assert_eq!(ended.status, RunStatus::Failure);
    assert_eq!(ended.summary.as_deref(), Some("timed out after 300ms"));
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronized_handlers_outcome_is_the_http_answer() {
    let portd = Portd::start().await;
    portd.action("lookup", true, None).await;
    let served = Served::start(
        portd
            .receiver()
            .action(
                "lookup",
                ActionOptions::new().synchronized(true),
                |inv: Invocation, _: RunContext| async move {
                    match inv.property_str("name") {
                        Some("bad") => Err(HandlerError::new("no such service: bad")),
                        name => Ok(Outcome::with_summary("found")
                            .response(json!({ "service": name, "replicas": 3 }))),
                    }
                },
            )
            .build(),
    )
    .await;

    let run = portd.execute("lookup", json!({ "name": "svc-s" })).await;
    let (body, _) = invocation(&run);
    let (status, answer) = Delivery::new(&served.url, &body, portd.secret())
        .webhook_id("sync_1")
        .send()
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer, json!({ "service": "svc-s", "replicas": 3 }));
    // The status is portd's to set from the answer: nothing PATCHed it. The summary
    // was reported.
    let seen = portd.run(&run.id).await;
    assert_eq!(seen.status, RunStatus::InProgress);
    assert_eq!(seen.summary.as_deref(), Some("found"));
    // A redelivery of the same delivery gets the same answer without running again.
    let (status, again) = Delivery::new(&served.url, &body, portd.secret())
        .webhook_id("sync_1")
        .send()
        .await;
    assert_eq!((status, again), (200, answer));

    let run = portd.execute("lookup", json!({ "name": "bad" })).await;
    let (body, _) = invocation(&run);
    let (status, answer) = Delivery::new(&served.url, &body, portd.secret())
        .send()
        .await;
    assert_eq!(status, 500);
    assert_eq!(answer["error"], json!("handler_failed"));
    assert_eq!(answer["message"], json!("no such service: bad"));
    let seen = portd.run(&run.id).await;
    assert_eq!(seen.status, RunStatus::InProgress);
    assert_eq!(seen.summary.as_deref(), Some("no such service: bad"));
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_context_reports_progress_links_and_bound_entities() {
    let portd = Portd::start().await;
    portd.action("create_microservice", false, None).await;
    let seen_token = Arc::new(std::sync::Mutex::new(None::<String>));
    let keep = Arc::clone(&seen_token);
    let served = Served::start(
        portd
            .receiver()
            .handler(
                "create_microservice",
                move |inv: Invocation, ctx: RunContext| {
                    let keep = Arc::clone(&keep);
                    async move {
                        let name = inv.property_str("name").unwrap_or_default().to_owned();
                        ctx.status_label("provisioning").await?;
                        ctx.add_link("https://ci.example.com/1").await?;
                        ctx.add_link("https://ci.example.com/2").await?;
                        ctx.external_run_id("ci-42").await?;
                        // The token input is secret: the handler gets it decrypted, and
                        // it never reaches the log in clear.
                        let token = inv.property_str("token").unwrap_or_default().to_owned();
                        *keep.lock().unwrap() = Some(token.clone());
                        ctx.log(format!("using token {token}")).await?;
                        ctx.upsert_entity(
                            "microservice",
                            &json!({ "identifier": name, "title": name, "properties": { "region": "eu" } }),
                        )
                        .await?;
                        Ok(Outcome::with_summary(format!("{name} created")))
                    }
                },
            )
            .build(),
    )
    .await;
    let run = portd
        .execute(
            "create_microservice",
            json!({ "name": "svc-ctx", "token": "tok-very-secret" }),
        )
        .await;
    // portd answered, stored and delivered the secret encrypted only.
    let answered = serde_json::to_string(&run).unwrap();
    assert!(!answered.contains("tok-very-secret"), "{answered}");
    let stored = serde_json::to_string(&portd.run(&run.id).await).unwrap();
    assert!(!stored.contains("tok-very-secret"), "{stored}");
    let (body, _) = invocation(&run);
    assert_eq!(
        Delivery::new(&served.url, &body, portd.secret())
            .send()
            .await
            .0,
        200
    );
    let ended = portd.ended(&run.id).await;
    assert_eq!(ended.status, RunStatus::Success);
    assert_eq!(ended.summary.as_deref(), Some("svc-ctx created"));
    assert_eq!(ended.status_label.as_deref(), Some("provisioning"));
    assert_eq!(
        ended.link,
        ["https://ci.example.com/1", "https://ci.example.com/2"]
    );
    assert_eq!(ended.external_run_id.as_deref(), Some("ci-42"));
    assert_eq!(
        seen_token.lock().unwrap().as_deref(),
        Some("tok-very-secret"),
        "the handler gets the clear value"
    );
    let logs = portd.logs(&run.id).await;
    assert!(logs.contains(&"using token ***".to_owned()), "{logs:?}");
    assert!(!logs.iter().any(|l| l.contains("tok-very-secret")));
    let audit = portd.client.audit_log(&run.id).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|entry| entry.identifier.as_deref() == Some("svc-ctx")),
        "{audit:?}"
    );
    let entity = portd
        .client
        .get_entity("microservice", "svc-ctx")
        .await
        .unwrap();
    assert_eq!(entity.identifier, "svc-ctx");
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excess_deliveries_wait_for_a_free_slot() {
    let portd = Portd::start().await;
    portd.action("create_microservice", false, None).await;
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (r, m) = (Arc::clone(&running), Arc::clone(&most));
    let served = Served::start(
        portd
            .receiver()
            .action(
                "create_microservice",
                ActionOptions::new().concurrency(1),
                move |_: Invocation, _: RunContext| {
                    let (running, most) = (Arc::clone(&r), Arc::clone(&m));
                    async move {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok(Outcome::done())
                    }
                },
            )
            .build(),
    )
    .await;
    let mut runs = Vec::new();
    for _ in 0..3 {
        let run = portd.execute("create_microservice", json!({})).await;
        let (body, _) = invocation(&run);
        assert_eq!(
            Delivery::new(&served.url, &body, portd.secret())
                .send()
                .await
                .0,
            200
        );
        runs.push(run);
    }
    for run in &runs {
        assert_eq!(portd.ended(&run.id).await.status, RunStatus::Success);
    }
    assert_eq!(most.load(Ordering::SeqCst), 1);
    served.stop().await;
}
