//! What the endpoint accepts and refuses: signatures, duplicates, routing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use port_client::RunStatus;
use port_webhook::{HandlerError, Invocation, Outcome, RunContext};
use serde_json::{Value, json};

use crate::support::{Delivery, Portd, Served, invocation, now, port_core_sign};

/// A handler that counts its calls and succeeds.
fn counting(calls: &Arc<AtomicUsize>) -> impl port_webhook::Handler {
    let calls = Arc::clone(calls);
    move |_: Invocation, _: RunContext| {
        let calls = Arc::clone(&calls);
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, HandlerError>(Outcome::with_summary("counted"))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_delivery_runs_its_handler_and_the_run_succeeds() {
    let portd = Portd::start().await;
    portd.action("create_microservice", false, None).await;
    let seen = Arc::new(std::sync::Mutex::new(None::<Invocation>));
    let keep = Arc::clone(&seen);
    let receiver = portd
        .receiver()
        .handler(
            "create_microservice",
            move |inv: Invocation, ctx: RunContext| {
                let keep = Arc::clone(&keep);
                async move {
                    ctx.log(format!(
                        "creating {}",
                        inv.property_str("name").unwrap_or("?")
                    ))
                    .await?;
                    *keep.lock().unwrap() = Some(inv);
                    Ok(Outcome::with_summary("created"))
                }
            },
        )
        .build();
    let served = Served::start(receiver).await;
    let run = portd
        .execute("create_microservice", json!({ "name": "svc-a" }))
        .await;
    let (body, _) = invocation(&run);

    let (status, answer) = Delivery::new(&served.url, &body, portd.secret())
        .webhook_id("msg_1")
        .send()
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["runId"], json!(run.id));

    let ended = portd.ended(&run.id).await;
    assert_eq!(ended.status, RunStatus::Success);
    assert_eq!(ended.summary.as_deref(), Some("created"));
    assert!(
        portd
            .logs(&run.id)
            .await
            .contains(&"creating svc-a".to_owned())
    );
    let inv = seen.lock().unwrap().clone().expect("the handler ran");
    assert_eq!(inv.run_id, run.id);
    assert_eq!(inv.action, "create_microservice");
    assert_eq!(inv.webhook_id.as_deref(), Some("msg_1"));
    assert_eq!(inv.blueprint.as_deref(), Some("microservice"));
    assert!(!inv.synchronized);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_stale_and_unsigned_deliveries_get_401_and_run_nothing() {
    let portd = Portd::start().await;
    portd.action("create_microservice", false, None).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let served = Served::start(
        portd
            .receiver()
            .handler("create_microservice", counting(&calls))
            .build(),
    )
    .await;
    let run = portd
        .execute("create_microservice", json!({ "name": "svc" }))
        .await;
    let (body, _) = invocation(&run);

    // Tampered: signed over one body, another one sent.
    let delivery = Delivery::new(&served.url, &body, portd.secret());
    let signature = port_core_sign(portd.secret(), delivery.timestamp, &delivery.body);
    let mut tampered: Value = body.clone();
    tampered["payload"]["properties"]["name"] = json!("evil");
    let tampered = serde_json::to_vec(&tampered).unwrap();
    let (status, answer) = delivery.send_with(Some(&signature), &tampered).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("invalid_signature"))
    );
    // Even one byte of whitespace changes the MAC: the raw bytes are what is checked.
    let mut spaced = delivery.body.clone();
    spaced.push(b' ');
    assert_eq!(delivery.send_with(Some(&signature), &spaced).await.0, 401);

    // Stale: correctly signed, ten minutes ago.
    let (status, answer) = Delivery::new(&served.url, &body, portd.secret())
        .at(now() - 600)
        .send()
        .await;
    assert_eq!(status, 401);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("away from now"),
        "{answer}"
    );

    // Unsigned, and signed with another secret.
    let unsigned = Delivery::new(&served.url, &body, portd.secret());
    assert_eq!(unsigned.send_with(None, &unsigned.body).await.0, 401);
    assert_eq!(
        Delivery::new(&served.url, &body, "not-the-secret")
            .send()
            .await
            .0,
        401
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(portd.run(&run.id).await.status, RunStatus::InProgress);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_delivery_gets_200_without_running_again() {
    let portd = Portd::start().await;
    portd.action("create_microservice", false, None).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let served = Served::start(
        portd
            .receiver()
            .handler("create_microservice", counting(&calls))
            .build(),
    )
    .await;
    let run = portd
        .execute("create_microservice", json!({ "name": "svc" }))
        .await;
    let (body, _) = invocation(&run);

    let first = Delivery::new(&served.url, &body, portd.secret())
        .webhook_id("dlv_same")
        .send()
        .await;
    assert_eq!(first.0, 200);
    assert_eq!(portd.ended(&run.id).await.status, RunStatus::Success);
    // The retry is signed anew (a later timestamp) but carries the same webhook-id.
    let again = Delivery::new(&served.url, &body, portd.secret())
        .webhook_id("dlv_same")
        .at(now() + 1)
        .send()
        .await;
    assert_eq!(again.0, 200);
    assert_eq!(again.1["duplicate"], json!(true));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Two copies at once still run once.
    let run = portd
        .execute("create_microservice", json!({ "name": "svc-2" }))
        .await;
    let (body, _) = invocation(&run);
    let copy = || async {
        Delivery::new(&served.url, &body, portd.secret())
            .webhook_id("dlv_race")
            .send()
            .await
    };
    let (a, b) = tokio::join!(copy(), copy());
    assert_eq!((a.0, b.0), (200, 200));
    assert_eq!(portd.ended(&run.id).await.status, RunStatus::Success);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_actions_get_404_and_unreadable_bodies_400() {
    let portd = Portd::start().await;
    portd.action("create_microservice", false, None).await;
    portd.action("not_handled_here", false, None).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let served = Served::start(
        portd
            .receiver()
            .handler("create_microservice", counting(&calls))
            .build(),
    )
    .await;
    let run = portd
        .execute("not_handled_here", json!({ "name": "svc" }))
        .await;
    let (body, _) = invocation(&run);
    let (status, answer) = Delivery::new(&served.url, &body, portd.secret())
        .send()
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (404, Some("unknown_action"))
    );

    let (status, answer) = Delivery::new(&served.url, &json!({ "hello": 1 }), portd.secret())
        .send()
        .await;
    assert_eq!(status, 400);
    assert!(
        answer["message"].as_str().unwrap().contains("run id"),
        "{answer}"
    );
    let not_json = Delivery::new(&served.url, &json!(null), portd.secret());
    let signature = port_core_sign(portd.secret(), not_json.timestamp, b"{oops");
    assert_eq!(not_json.send_with(Some(&signature), b"{oops").await.0, 400);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_bodies_are_routed_by_path_with_the_run_id_header() {
    let portd = Portd::start().await;
    // The usual v2 template: inputs spread at the top, the run id beside them.
    portd
        .action(
            "deploy",
            false,
            Some(json!({
                "{{ spreadValue() }}": "{{ .inputs }}",
                "port_context": { "runId": "{{ .run.id }}" }
            })),
        )
        .await;
    let seen = Arc::new(std::sync::Mutex::new(None::<Invocation>));
    let keep = Arc::clone(&seen);
    let served = Served::start(
        portd
            .receiver()
            .handler("deploy", move |inv: Invocation, _ctx: RunContext| {
                let keep = Arc::clone(&keep);
                async move {
                    *keep.lock().unwrap() = Some(inv);
                    Ok(Outcome::done())
                }
            })
            .build(),
    )
    .await;
    let run = portd.execute("deploy", json!({ "name": "svc-v2" })).await;
    let (body, headers) = invocation(&run);
    assert_eq!(body["port_context"]["runId"], json!(run.id));

    // Without the path the body names no action.
    let (status, _) = Delivery::new(&served.url, &body, portd.secret())
        .send()
        .await;
    assert_eq!(status, 400);

    let mut delivery = Delivery::new(
        format!("{}/actions/deploy", served.url),
        &body,
        portd.secret(),
    );
    for (name, value) in &headers {
        delivery = delivery.header(name, value);
    }
    assert_eq!(delivery.send().await.0, 200);
    assert_eq!(portd.ended(&run.id).await.status, RunStatus::Success);
    let inv = seen.lock().unwrap().clone().expect("the handler ran");
    assert_eq!(inv.action, "deploy");
    assert_eq!(inv.run_id, run.id);
    assert_eq!(inv.properties.get("name"), Some(&json!("svc-v2")));
    assert!(!inv.properties.contains_key("port_context"));
    served.stop().await;
}
