//! The sandbox against real worker processes (this crate's `port-template-worker`).

use std::ffi::OsString;
use std::time::{Duration, Instant};

use port_core::id::OrgId;
use port_core::ports::TemplateEngine as _;
use port_core::template::{Budget, Limit, TemplateError};
use port_sandbox::{Limits, SandboxConfig, TemplateSandbox};
use serde_json::{Value, json};

fn config() -> SandboxConfig {
    SandboxConfig::new(
        env!("CARGO_BIN_EXE_port-template-worker"),
        Vec::<OsString>::new(),
    )
}

/// A budget the in-process meter never exhausts, so the operating system's limits are
/// what stops a template.
fn unmetered(limits: Limits) -> Limits {
    Limits {
        budget: Budget {
            steps: u64::MAX / 2,
            output_bytes: usize::MAX / 2,
            ..Budget::default()
        },
        ..limits
    }
}

fn org(name: &str) -> OrgId {
    OrgId::parse(&format!("org_{name}0000000000000000")[..20]).unwrap()
}

async fn render(
    sandbox: &TemplateSandbox,
    org_id: &OrgId,
    template: &str,
) -> Result<Value, TemplateError> {
    sandbox
        .render(
            org_id,
            &json!(template),
            &json!({ "inputs": { "name": "svc" } }),
        )
        .await
}

#[tokio::test]
async fn renders_templates_and_keeps_workers_warm() {
    let sandbox = TemplateSandbox::new(config());
    sandbox.warm_up().await.unwrap();
    let a = org("a");
    assert_eq!(
        render(&sandbox, &a, "{{ .inputs.name | ascii_upcase }}")
            .await
            .unwrap(),
        json!("SVC")
    );
    // No template, no worker needed.
    assert_eq!(render(&sandbox, &a, "plain").await.unwrap(), json!("plain"));
    // Template errors come back as they are.
    let error = render(&sandbox, &a, "{{ error(\"boom\") }}")
        .await
        .unwrap_err();
    assert!(
        matches!(error, TemplateError::Evaluate { ref message, .. } if message == "boom"),
        "{error:?}"
    );
    assert!(sandbox.idle_workers() >= 1);
    // Debug builds may reach the wall clock before the step budget.
    let limited = render(&sandbox, &a, "{{ def f: f; f }}").await.unwrap_err();
    assert!(
        matches!(
            limited.limit(),
            Some(Limit::Steps(Budget::DEFAULT_STEPS) | Limit::Time(1000))
        ),
        "{limited:?}"
    );
    // A killed worker is replaced right away, so the next render does not wait for one.
    assert!(sandbox.idle_workers() >= 1);
}

#[tokio::test]
async fn a_render_past_the_wall_clock_is_killed() {
    let mut config = config();
    config.limits = unmetered(Limits {
        time: Duration::from_millis(300),
        ..Limits::default()
    });
    let sandbox = TemplateSandbox::new(config);
    let started = Instant::now();
    let error = render(&sandbox, &org("a"), "{{ def f: f; f }}")
        .await
        .unwrap_err();
    assert_eq!(error.limit(), Some(&Limit::Time(300)), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The next render gets a fresh worker.
    assert_eq!(
        render(&sandbox, &org("a"), "{{ 1 + 2 }}").await.unwrap(),
        json!(3)
    );
}

#[tokio::test]
async fn memory_past_the_limit_ends_the_worker_not_the_server() {
    let mut config = config();
    config.limits = unmetered(Limits {
        time: Duration::from_secs(20),
        memory_bytes: 64 * 1024 * 1024,
        ..Limits::default()
    });
    let sandbox = TemplateSandbox::new(config);
    let error = render(&sandbox, &org("a"), "{{ [range(100000000)] | length }}")
        .await
        .unwrap_err();
    assert_eq!(
        error.limit(),
        Some(&Limit::Memory(64 * 1024 * 1024)),
        "{error:?}"
    );
    assert_eq!(
        render(&sandbox, &org("a"), "{{ 40 + 2 }}").await.unwrap(),
        json!(42)
    );
}

#[tokio::test]
async fn deep_recursion_is_a_limit() {
    let sandbox = TemplateSandbox::new(config());
    for template in [
        "{{ def f: [f]; f }}",
        "{{ def f: 1 + f; f }}",
        "{{ def f(g): g | f(g); f(.) }}",
    ] {
        let error = render(&sandbox, &org("a"), template).await.unwrap_err();
        assert!(
            matches!(
                error.limit(),
                Some(Limit::Recursion | Limit::Steps(_) | Limit::Time(_))
            ),
            "{template}: {error:?}"
        );
    }
}

#[tokio::test]
async fn one_organizations_slow_templates_only_queue_its_own() {
    let mut config = config();
    config.workers = 2;
    config.per_org = 1;
    config.queue_per_org = 2;
    config.limits = unmetered(Limits {
        time: Duration::from_millis(1500),
        ..Limits::default()
    });
    let sandbox = TemplateSandbox::new(config);
    sandbox.warm_up().await.unwrap();
    let attacker = org("attacker");
    let bombs: Vec<_> = (0..3)
        .map(|_| {
            let sandbox = sandbox.clone();
            let attacker = attacker.clone();
            tokio::spawn(async move { render(&sandbox, &attacker, "{{ def f: f; f }}").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One bomb renders, two wait: beyond its queue, the attacker is told to slow down
    // at once.
    let started = Instant::now();
    let refused = render(&sandbox, &attacker, "{{ 1 }}").await.unwrap_err();
    assert!(
        matches!(refused, TemplateError::Unavailable { busy: true, .. }),
        "{refused:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(100));
    // Meanwhile another organization renders at its usual pace.
    let victim = org("victim");
    for _ in 0..10 {
        let started = Instant::now();
        assert_eq!(
            render(&sandbox, &victim, "{{ .inputs.name }}")
                .await
                .unwrap(),
            json!("svc")
        );
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
    }
    for bomb in bombs {
        let error = bomb.await.unwrap().unwrap_err();
        assert!(
            matches!(error.limit(), Some(Limit::Time(1500))),
            "{error:?}"
        );
    }
}
