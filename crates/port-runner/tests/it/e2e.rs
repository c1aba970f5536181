//! End to end: portd delivers signed webhooks to a real `port-runner` process, which
//! runs real shell scripts and reports back through the real API.

use std::time::{Duration, Instant};

use port_client::RunStatus;
use serde_json::json;

use crate::support::{Setup, wait_gone};

/// The secret input the create script is given (`EXPECTED_TOKEN` in its environment).
const TOKEN: &str = "tok-0123456789";

/// Logs, sets a link and a label, upserts an entity bound to the run, proves it got
/// the invocation on stdin, the secret input decrypted (in its variable and on stdin)
/// and the API in its environment, then exits `$EXIT_CODE`.
const CREATE: &str = r#"#!/bin/sh
body=$(cat)
echo "creating $PORT_INPUT_NAME in $REGION_DEFAULT"
echo "using token $PORT_INPUT_TOKEN"
test "$PORT_INPUT_TOKEN" = "$EXPECTED_TOKEN" && echo "the token variable is decrypted"
case "$body" in *"\"token\":\"$EXPECTED_TOKEN\""*) echo "stdin carries the token decrypted";; esac
case "$body" in *"$PORT_RUN_ID"*) echo "stdin carries run $PORT_RUN_ID of $PORT_ACTION";; esac
echo "::port::link https://ci.example.com/runs/$PORT_RUN_ID"
echo "::port::status-label provisioning"
echo "::port::entity microservice {\"identifier\":\"$PORT_INPUT_NAME\",\"title\":\"$PORT_INPUT_NAME\",\"properties\":{\"region\":\"$REGION_DEFAULT\"}}"
echo "a warning on stderr" >&2
test -n "$PORT_CLIENT_SECRET" && echo "api at $PORT_API_URL"
exit "$EXIT_CODE"
"#;

fn create_config(exit_code: u8) -> String {
    format!(
        r#"[receiver]
listen = "127.0.0.1:0"
[actions.create_microservice]
command = ["./scripts/create.sh"]
timeout = "1m"
concurrency = 2
env = {{ REGION_DEFAULT = "eu-west-1", EXIT_CODE = "{exit_code}", EXPECTED_TOKEN = "{TOKEN}" }}
"#
    )
}

/// Runs the create script through portd and the runner; returns the ended run, its
/// logs and the runner's output.
async fn create_through_the_runner(
    exit_code: u8,
    name: &str,
) -> (Setup, port_client::Run, Vec<String>) {
    let setup = Setup::start().await;
    setup.script("create.sh", CREATE);
    let config = setup.config(&create_config(exit_code));
    let runner = setup.runner(&config);
    let url = runner.url.clone().expect("webhook mode");
    setup
        .action("create_microservice", &format!("{url}/"), false)
        .await;
    let run = setup
        .execute(
            "create_microservice",
            json!({ "name": name, "token": TOKEN }),
        )
        .await;
    let ended = setup.ended(&run.id).await;
    // portd answered and stored the secret encrypted only (the runner decrypted it).
    for seen in [&run, &ended] {
        let text = serde_json::to_string(seen).expect("JSON");
        assert!(!text.contains(TOKEN), "{text}");
    }
    let logs = setup.logs(&run.id).await;
    assert!(
        logs.iter()
            .any(|l| l == &format!("creating {name} in eu-west-1")),
        "{logs:#?}\nrunner:\n{}",
        runner.output()
    );
    drop(runner);
    (setup, ended, logs)
}

fn assert_reported(run: &port_client::Run, logs: &[String], name: &str) {
    let position = |text: &str| {
        logs.iter()
            .position(|l| l == text)
            .unwrap_or_else(|| panic!("no log line {text:?} in {logs:#?}"))
    };
    // stdout lines arrive in order, as separate lines.
    let creating = position(&format!("creating {name} in eu-west-1"));
    let token = position("using token ***");
    let decrypted = position("the token variable is decrypted");
    let stdin_token = position("stdin carries the token decrypted");
    let stdin = position(&format!(
        "stdin carries run {} of create_microservice",
        run.id
    ));
    assert!(
        creating < token && token < decrypted && decrypted < stdin_token && stdin_token < stdin,
        "{logs:#?}"
    );
    position("a warning on stderr");
    assert!(
        logs.iter()
            .any(|l| l.starts_with("api at http://127.0.0.1:"))
    );
    // Workflow commands are acted on, not logged; the secret never shows.
    assert!(!logs.iter().any(|l| l.contains("::port::")), "{logs:#?}");
    assert!(!logs.iter().any(|l| l.contains(TOKEN)), "{logs:#?}");
    assert_eq!(
        run.link,
        [format!("https://ci.example.com/runs/{}", run.id)]
    );
    assert_eq!(run.status_label.as_deref(), Some("provisioning"));
}

async fn assert_entity_bound(setup: &Setup, run_id: &str, name: &str) {
    let audit = setup.client.audit_log(run_id).await.expect("the audit log");
    assert!(
        audit
            .iter()
            .any(|entry| entry.identifier.as_deref() == Some(name)),
        "{audit:#?}"
    );
    let entity = setup
        .client
        .get_entity("microservice", name)
        .await
        .expect("the entity exists");
    assert_eq!(entity.properties["region"], json!("eu-west-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_exiting_1_fails_its_run_with_its_logs_link_and_entity() {
    let (setup, run, logs) = create_through_the_runner(1, "svc-fail").await;
    assert_eq!(run.status, RunStatus::Failure);
    assert_reported(&run, &logs, "svc-fail");
    assert_entity_bound(&setup, &run.id, "svc-fail").await;
    let summary = run.summary.expect("a summary");
    assert!(
        summary.starts_with("./scripts/create.sh exited with code 1; last output:"),
        "{summary}"
    );
    assert!(summary.contains("api at http://127.0.0.1:"), "{summary}");
    assert!(!summary.contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_exiting_0_ends_its_run_success() {
    let (setup, run, logs) = create_through_the_runner(0, "svc-ok").await;
    assert_eq!(run.status, RunStatus::Success);
    assert_reported(&run, &logs, "svc-ok");
    assert_entity_bound(&setup, &run.id, "svc-ok").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_outliving_its_timeout_is_killed_and_its_run_fails() {
    let setup = Setup::start().await;
    let pid_file = setup.path("sleeper.pid");
    setup.script(
        "slow.sh",
        "#!/bin/sh\necho started\nsleep 60 &\necho $! > \"$PID_FILE\"\nwait\necho never\n",
    );
    let config = setup.config(&format!(
        "[receiver]\nlisten = \"127.0.0.1:0\"\n[actions.slow]\ncommand = [\"./scripts/slow.sh\"]\ntimeout = \"1s\"\nenv = {{ PID_FILE = \"{}\" }}\n",
        pid_file.display()
    ));
    let runner = setup.runner(&config);
    let url = runner.url.clone().expect("webhook mode");
    setup.action("slow", &format!("{url}/"), false).await;
    let started = Instant::now();
    let run = setup.execute("slow", json!({})).await;
    let run = setup.ended(&run.id).await;
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(run.status, RunStatus::Failure);
    assert_eq!(
        run.summary.as_deref(),
        Some("timed out after 1s: ./scripts/slow.sh was killed")
    );
    let logs = setup.logs(&run.id).await;
    assert!(logs.contains(&"started".to_owned()), "{logs:#?}");
    assert!(!logs.contains(&"never".to_owned()));
    // The whole process group went, the background sleep included.
    wait_gone(&pid_file).await;
    drop(runner);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_fails_unfinished_runs_after_the_grace_period_and_kills_their_commands() {
    let setup = Setup::start().await;
    let pid_file = setup.path("long.pid");
    setup.script(
        "long.sh",
        "#!/bin/sh\nsleep 60 &\necho $! > \"$PID_FILE\"\necho started\nwait\n",
    );
    let config = setup.config(&format!(
        "[receiver]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"500ms\"\n[actions.long]\ncommand = [\"./scripts/long.sh\"]\nenv = {{ PID_FILE = \"{}\" }}\n",
        pid_file.display()
    ));
    let mut runner = setup.runner(&config);
    let url = runner.url.clone().expect("webhook mode");
    setup.action("long", &format!("{url}/"), false).await;
    let run = setup.execute("long", json!({})).await;
    setup.wait_for_log(&run.id, "started").await;
    let status = runner.terminate();
    assert!(status.success(), "{status:?}\n{}", runner.output());
    let run = setup.ended(&run.id).await;
    assert_eq!(run.status, RunStatus::Failure);
    assert_eq!(run.summary.as_deref(), Some(port_webhook::SHUTDOWN_REASON));
    wait_gone(&pid_file).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_mode_claims_and_runs_agent_runs() {
    let setup = Setup::start().await;
    setup.script(
        "pulled.sh",
        "#!/bin/sh\necho \"pulled $PORT_INPUT_NAME\"\necho '::port::summary all good'\n",
    );
    let config = setup.config(
        "[receiver]\nmode = \"pull\"\npoll_interval = \"100ms\"\nvisibility_timeout = \"10s\"\n[actions.pulled]\ncommand = [\"./scripts/pulled.sh\"]\n",
    );
    let runner = setup.runner(&config);
    assert_eq!(runner.url, None);
    setup
        .action("pulled", "http://127.0.0.1:9/unused", true)
        .await;
    let run = setup.execute("pulled", json!({ "name": "svc-pull" })).await;
    let run = setup.ended(&run.id).await;
    assert_eq!(run.status, RunStatus::Success, "{}", runner.output());
    assert_eq!(run.summary.as_deref(), Some("all good"));
    assert!(
        setup
            .logs(&run.id)
            .await
            .contains(&"pulled svc-pull".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronized_actions_end_with_the_commands_exit_code() {
    let setup = Setup::single_attempt().await;
    setup.script(
        "check.sh",
        "#!/bin/sh\necho \"checking $PORT_INPUT_NAME\"\nexit \"$EXIT_CODE\"\n",
    );
    let config = setup.config(
        r#"[receiver]
listen = "127.0.0.1:0"
[actions.check_ok]
command = ["./scripts/check.sh"]
synchronized = true
env = { EXIT_CODE = "0" }
[actions.check_fail]
command = ["./scripts/check.sh"]
synchronized = true
env = { EXIT_CODE = "3" }
"#,
    );
    let runner = setup.runner(&config);
    let url = runner.url.clone().expect("webhook mode");
    for action in ["check_ok", "check_fail"] {
        setup
            .action_with(
                action,
                json!({ "type": "WEBHOOK", "url": format!("{url}/"), "synchronized": true }),
            )
            .await;
    }

    let ok = setup.execute("check_ok", json!({ "name": "svc-s" })).await;
    let ok = setup.ended(&ok.id).await;
    assert_eq!(ok.status, RunStatus::Success, "{}", runner.output());
    assert_eq!(ok.response.as_ref().map(|r| &r["ok"]), Some(&json!(true)));
    assert!(
        setup
            .logs(&ok.id)
            .await
            .contains(&"checking svc-s".to_owned())
    );

    let failed = setup
        .execute("check_fail", json!({ "name": "svc-s" }))
        .await;
    let failed = setup.ended(&failed.id).await;
    assert_eq!(failed.status, RunStatus::Failure, "{}", runner.output());
    let response = failed.response.expect("the answer is stored");
    assert_eq!(response["error"], json!("handler_failed"));
    assert!(
        response["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("./scripts/check.sh exited with code 3")),
        "{response}"
    );
}
