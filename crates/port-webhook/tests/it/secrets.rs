//! Secret inputs: delivered encrypted (as Port and portd send them), decrypted for the
//! handler with the client secret, masked in what it reports; a value that does not
//! decrypt fails the run, naming the input, without running the handler.
//!
//! The bodies are portd's own with an encrypted `token` put in, so these tests do not
//! depend on how the server encrypts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use port_client::RunStatus;
use port_core::secret::{INPUT_IV_BYTES, encrypt_input};
use port_webhook::{ActionOptions, HandlerError, Invocation, Outcome, RunContext};
use serde_json::{Value, json};

use crate::support::{Delivery, Portd, Served, invocation};

const TOKEN: &str = "tok-clear-0042";

fn encrypt(secret: &str, clear: &str) -> String {
    encrypt_input(secret, clear, [5; INPUT_IV_BYTES]).expect("a key of 32 bytes or more")
}

/// What a handler saw of the `token` input: its value, and its value as delivered.
type Seen = Arc<Mutex<Option<(Option<String>, Option<String>)>>>;

/// Logs, labels and summarizes with the token in the text, and records what it saw.
fn reporting(seen: &Seen, calls: &Arc<AtomicUsize>) -> impl port_webhook::Handler {
    let (seen, calls) = (Arc::clone(seen), Arc::clone(calls));
    move |inv: Invocation, ctx: RunContext| {
        let (seen, calls) = (Arc::clone(&seen), Arc::clone(&calls));
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let token = inv.property_str("token").unwrap_or_default().to_owned();
            *seen.lock().unwrap() = Some((
                inv.property_str("token").map(str::to_owned),
                inv.encrypted_input("token").map(str::to_owned),
            ));
            ctx.log(format!("using token {token}")).await?;
            ctx.status_label(format!("label {token}")).await?;
            Ok::<_, HandlerError>(Outcome::with_summary(format!("done with {token}")))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_gets_secret_inputs_in_clear_and_everything_it_reports_masks_them() {
    let portd = Portd::start().await;
    portd.action("create_microservice", false, None).await;
    let seen = Seen::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let served = Served::start(
        portd
            .receiver()
            .handler("create_microservice", reporting(&seen, &calls))
            .build(),
    )
    .await;
    let run = portd
        .execute("create_microservice", json!({ "name": "svc-secret" }))
        .await;
    let (mut body, _) = invocation(&run);
    let blob = encrypt(portd.secret(), TOKEN);
    body["payload"]["properties"]["token"] = json!(blob);

    let (status, answer) = Delivery::new(&served.url, &body, portd.secret())
        .send()
        .await;
    assert_eq!(status, 200, "{answer}");
    let ended = portd.ended(&run.id).await;
    assert_eq!(ended.status, RunStatus::Success);
    let (value, encrypted) = seen.lock().unwrap().clone().expect("the handler ran");
    assert_eq!(value.as_deref(), Some(TOKEN));
    assert_eq!(encrypted.as_deref(), Some(blob.as_str()));

    let logs = portd.logs(&run.id).await;
    assert!(logs.contains(&"using token ***".to_owned()), "{logs:?}");
    assert_eq!(ended.status_label.as_deref(), Some("label ***"));
    assert_eq!(ended.summary.as_deref(), Some("done with ***"));
    assert!(!logs.iter().any(|l| l.contains(TOKEN)), "{logs:?}");
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_input_that_does_not_decrypt_fails_its_run_naming_the_input() {
    let portd = Portd::start().await;
    portd.action("create_microservice", false, None).await;
    let seen = Seen::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let served = Served::start(
        portd
            .receiver()
            .handler("create_microservice", reporting(&seen, &calls))
            .build(),
    )
    .await;
    let other_key = encrypt("another-organizations-client-secret-000", TOKEN);
    // Sent in clear (a server that did not encrypt), or encrypted with another key:
    // either way the handler must not be handed the value as if it were the secret.
    for (token, why) in [
        (json!(other_key), "does not decrypt with this key"),
        (json!(TOKEN), "not base64"),
        (json!(42), "not encrypted"),
    ] {
        let run = portd
            .execute("create_microservice", json!({ "name": "svc-bad" }))
            .await;
        let (mut body, _) = invocation(&run);
        body["payload"]["properties"]["token"] = token;
        let (status, _) = Delivery::new(&served.url, &body, portd.secret())
            .send()
            .await;
        assert_eq!(status, 200);
        let ended = portd.ended(&run.id).await;
        assert_eq!(ended.status, RunStatus::Failure);
        let summary = ended.summary.expect("a reason");
        assert!(summary.contains("secret input `token`"), "{summary}");
        assert!(summary.contains(why), "{summary}");
        assert!(!summary.contains(TOKEN) && !summary.contains(&other_key));
        let logs = portd.logs(&run.id).await;
        assert_eq!(logs, [format!("Run failed: {summary}")]);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no handler ran");
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronized_runs_undecryptable_secret_is_its_500_answer() {
    let portd = Portd::start().await;
    portd.action("lookup", true, None).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let served = Served::start(
        portd
            .receiver()
            .action(
                "lookup",
                ActionOptions::new().synchronized(true),
                reporting(&Seen::default(), &calls),
            )
            .build(),
    )
    .await;
    let run = portd.execute("lookup", json!({ "name": "svc" })).await;
    let (mut body, _) = invocation(&run);
    body["payload"]["properties"]["token"] = json!(TOKEN);
    let (status, answer) = Delivery::new(&served.url, &body, portd.secret())
        .send()
        .await;
    assert_eq!(status, 500);
    assert_eq!(answer["error"], json!("handler_failed"));
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(message.contains("secret input `token`"), "{answer}");
    assert!(!message.contains(TOKEN), "{answer}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    served.stop().await;
}

/// Delivers `body` for `action` by path, with the template's headers.
async fn deliver_v2(portd: &Portd, url: &str, action: &str, body: &Value) -> u16 {
    Delivery::new(format!("{url}/actions/{action}"), body, portd.secret())
        .send()
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_bodies_declare_their_secret_inputs_or_the_action_does() {
    let portd = Portd::start().await;
    // The template says which inputs are encrypted...
    portd
        .action(
            "deploy",
            false,
            Some(json!({
                "{{ spreadValue() }}": "{{ .inputs }}",
                "port_context": {
                    "runId": "{{ .run.id }}",
                    "encryptedProperties": "{{ .action.encryptedProperties }}"
                }
            })),
        )
        .await;
    // ...or it does not, and the handler's registration does.
    portd
        .action(
            "deploy_plain",
            false,
            Some(json!({
                "inputs": "{{ .inputs }}",
                "port_context": { "runId": "{{ .run.id }}" }
            })),
        )
        .await;
    let (seen, seen_plain) = (Seen::default(), Seen::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let served = Served::start(
        portd
            .receiver()
            .handler("deploy", reporting(&seen, &calls))
            .action(
                "deploy_plain",
                ActionOptions::new().secret_input("token"),
                reporting(&seen_plain, &calls),
            )
            .build(),
    )
    .await;

    let run = portd.execute("deploy", json!({ "name": "svc-v2" })).await;
    let (mut body, _) = invocation(&run);
    assert_eq!(
        body["port_context"]["encryptedProperties"],
        json!(["token"])
    );
    body["token"] = json!(encrypt(portd.secret(), TOKEN));
    assert_eq!(deliver_v2(&portd, &served.url, "deploy", &body).await, 200);
    assert_eq!(portd.ended(&run.id).await.status, RunStatus::Success);
    let (value, _) = seen.lock().unwrap().clone().expect("the handler ran");
    assert_eq!(value.as_deref(), Some(TOKEN));
    assert!(
        portd
            .logs(&run.id)
            .await
            .contains(&"using token ***".to_owned())
    );

    let run = portd
        .execute("deploy_plain", json!({ "name": "svc-v2" }))
        .await;
    let (mut body, _) = invocation(&run);
    body["inputs"]["token"] = json!(encrypt(portd.secret(), TOKEN));
    assert_eq!(
        deliver_v2(&portd, &served.url, "deploy_plain", &body).await,
        200
    );
    assert_eq!(portd.ended(&run.id).await.status, RunStatus::Success);
    let (value, _) = seen_plain.lock().unwrap().clone().expect("the handler ran");
    assert_eq!(value.as_deref(), Some(TOKEN));
    assert!(
        !portd.logs(&run.id).await.iter().any(|l| l.contains(TOKEN)),
        "masked"
    );
    served.stop().await;
}
