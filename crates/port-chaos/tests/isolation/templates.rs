//! Templates are tenant code (issue 14, item 1): the attacker's actions carry jq bombs
//! that crashed, froze or filled portd before templates had a budget and a sandbox.
//! Each execute must be the attacker's own 422 naming the limit it hit; portd stays up
//! and the victim, whose probe action renders templates too, keeps its latency.

use std::time::Duration;

use anyhow::{Context as _, Result};
use port_chaos::api::Api;
use port_chaos::isolation::{Tenants, TenantsOptions};
use serde_json::{Value, json};

/// The bombs, each as the body template of one action.
const BOMBS: &[(&str, &str)] = &[
    ("stack-array", "{{ def f: [f]; f }}"),
    ("stack-add", "{{ def f: 1 + f; f }}"),
    ("spin", "{{ def f: f; f }}"),
    ("memory", "{{ [range(1e9)] | length }}"),
    ("payload", "{{ [range(2000000)] }}"),
    ("doubling", "{{ reduce range(64) as $i (\"x\"; . + .) }}"),
    (
        "shared",
        "{{ reduce range(64) as $i (1; [., .]) | tojson }}",
    ),
    ("repeat", "{{ [repeat(1)] }}"),
    ("closures", "{{ def f(g): g | f(g); f(.) }}"),
];

/// What the text of a limit error says, one of which each 422 must contain.
const LIMIT_WORDS: &[&str] = &[
    "evaluation steps",
    "deeper than",
    "time limit",
    "memory limit",
    "rendered more than",
    "more than",
];

fn action(identifier: &str, body: Value) -> Value {
    port_chaos::isolation::action(
        identifier,
        json!({
            "type": "WEBHOOK",
            "url": "http://127.0.0.1:9/never",
            "agent": true,
            "body": body
        }),
    )
}

/// Executes `identifier` and returns (status, error identifier, message).
async fn execute(attacker: &Api, identifier: &str) -> Result<(u16, String, String)> {
    let answer = attacker
        .post(
            &format!("/v1/actions/{identifier}/runs"),
            &json!({ "properties": {} }),
        )
        .await?;
    Ok((
        answer.status,
        answer.body["error"].as_str().unwrap_or_default().to_owned(),
        answer.body["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_bombs_are_the_attackers_422_and_nobody_elses_problem() {
    let mut tenants = Tenants::start(TenantsOptions::default()).await.unwrap();
    for (name, body) in BOMBS {
        tenants
            .attacker
            .post("/v1/actions", &action(name, json!({ "x": body })))
            .await
            .unwrap()
            .expect(201, name)
            .unwrap();
    }
    let report = tenants
        .under_attack("template bombs", |attacker| async move {
            let mut answers = Vec::new();
            // Every bomb twice at once, and the spinning one four times, so the
            // attacker asks for more workers than its share.
            let mut executes = Vec::new();
            for (name, _) in BOMBS {
                let copies = if *name == "spin" { 4 } else { 2 };
                for _ in 0..copies {
                    let attacker = attacker.clone();
                    executes.push(tokio::spawn(async move {
                        (*name, execute(&attacker, name).await)
                    }));
                }
            }
            for execute in executes {
                let (name, answer) = execute.await?;
                answers.push((name, answer?));
            }
            Ok(answers)
        })
        .await
        .unwrap();
    report.assert_held().unwrap();
    for (name, (status, error, message)) in &report.outcome {
        // Beyond its share of the workers the attacker may be told to slow down.
        if *status == 429 {
            assert_eq!(error, "too_many_requests", "{name}: {message}");
            continue;
        }
        assert_eq!(*status, 422, "{name}: {error} {message}");
        assert_eq!(
            error, "evaluate_invocation_method_error",
            "{name}: {message}"
        );
        assert!(
            LIMIT_WORDS.iter().any(|word| message.contains(word)),
            "{name}: the message names no limit: {message}"
        );
    }
    assert!(
        report
            .outcome
            .iter()
            .filter(|(_, (status, ..))| *status == 422)
            .count()
            >= BOMBS.len(),
        "most bombs should be refused as such: {:?}",
        report.outcome
    );
    // Nothing was stored for the attacker: no run, so no payload.
    let runs = tenants.attacker.get("/v1/actions/runs").await.unwrap();
    assert_eq!(runs.body["runs"], json!([]), "{}", runs.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_nested_too_deep_are_refused_when_the_action_is_saved() {
    let mut tenants = Tenants::start(TenantsOptions::default()).await.unwrap();
    let report = tenants
        .under_attack("20,000 nested parentheses", |attacker| async move {
            let deep = format!("{{{{ {}1{} }}}}", "(".repeat(20_000), ")".repeat(20_000));
            let mut answers = Vec::new();
            for attempt in 0..5 {
                let answer = attacker
                    .post(
                        "/v1/actions",
                        &action(&format!("deep-{attempt}"), json!({ "x": deep })),
                    )
                    .await?;
                answers.push((answer.status, answer.body));
            }
            Ok(answers)
        })
        .await
        .unwrap();
    report.assert_held().unwrap();
    for (status, body) in &report.outcome {
        assert_eq!(*status, 422, "{body}");
        assert_eq!(body["error"], "invalid_request", "{body}");
        let message = body["message"].as_str().context("a message").unwrap();
        assert!(message.contains("nests deeper than"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_template_costs_its_author_a_second_and_the_victim_nothing() {
    let mut tenants = Tenants::start(
        TenantsOptions::default()
            // A step budget out of reach, so the wall clock (one second, the default)
            // is what stops the template.
            .env("PORTD_TEMPLATE_MAX_STEPS", "100000000000"),
    )
    .await
    .unwrap();
    tenants
        .attacker
        .post(
            "/v1/actions",
            &action("spin", json!({ "x": "{{ def f: f; f }}" })),
        )
        .await
        .unwrap()
        .expect(201, "spin")
        .unwrap();
    let report = tenants
        .under_attack(
            "spinning templates past the wall clock",
            |attacker| async move {
                let started = std::time::Instant::now();
                let answers =
                    futures::future::try_join_all((0..3).map(|_| execute(&attacker, "spin")))
                        .await?;
                Ok((answers, started.elapsed()))
            },
        )
        .await
        .unwrap();
    report.assert_held().unwrap();
    let (answers, took) = &report.outcome;
    for (status, error, message) in answers {
        assert_eq!(*status, 422, "{message}");
        assert_eq!(error, "evaluate_invocation_method_error", "{message}");
        assert!(message.contains("time limit of 1000 ms"), "{message}");
    }
    // Three spins on one worker share: about three seconds, never forever.
    assert!(*took < Duration::from_secs(15), "{took:?}");
}
