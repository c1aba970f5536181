//! Exit codes: 0 success, 1 the run failed / was declined / timed out, 2 usage,
//! 3 API error, 4 authentication.

use std::time::Duration;

use port_client::{FinalStatus, RunStatus, RunUpdate};

use crate::support::{Env, run_in, seed};

/// Waits until the run has the status (the CLI may still be starting to watch it).
async fn until_status(env: &Env, run_id: &str, status: RunStatus) {
    for _ in 0..200 {
        if env.client.get_run(run_id).await.unwrap().status == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("run {run_id} never reached {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_fails_while_waited_for_exits_1() {
    let env = Env::start().await;
    seed(&env).await;
    let running = env
        .spawn_run(&["run", "nightly_report", "--prop", "days=7", "--wait"])
        .await;
    let run_id = running.first_line.clone();
    assert!(run_id.starts_with("r_"), "{run_id}");
    let run = env.client.get_run(&run_id).await.unwrap();
    assert_eq!(run.properties["days"], serde_json::json!(7));
    env.client
        .patch_run(
            &run_id,
            &RunUpdate {
                status: Some(FinalStatus::Failure),
                status_label: Some("Report broke".into()),
                link: Some(vec!["https://ci.example/runs/9".into()]),
                summary: Some("disk full".into()),
                ..RunUpdate::default()
            },
        )
        .await
        .unwrap();
    let output = running.finish().await;
    assert_eq!(output.code, 1, "{output:?}");
    assert_eq!(
        output.stdout,
        "Status:   FAILURE\nLabel:    Report broke\nLinks:    https://ci.example/runs/9\nSummary:  disk full\n"
    );
    assert_eq!(
        output.stderr,
        format!("error: run_failed: run {run_id} ended FAILURE\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_ended_by_a_log_line_while_followed_exits_with_its_status() {
    let env = Env::start().await;
    seed(&env).await;
    let running = env
        .spawn_run(&["run", "nightly_report", "--follow", "--timeout", "1m"])
        .await;
    let run_id = running.first_line.clone();
    env.client
        .add_log(&run_id, "collecting numbers", None, Some("Collecting"))
        .await
        .unwrap();
    env.client
        .add_log(&run_id, "report sent", Some(FinalStatus::Failure), None)
        .await
        .unwrap();
    let output = running.finish().await;
    assert_eq!(output.code, 1, "{output:?}");
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{output:?}");
    assert!(lines[0].ends_with("  collecting numbers"), "{output:?}");
    assert!(lines[1].ends_with("  report sent"), "{output:?}");
    assert_eq!(lines[2], "Status:  FAILURE");
    assert_eq!(lines[3], "Label:   Collecting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_run_exits_0_with_wait_and_with_follow() {
    let env = Env::start().await;
    seed(&env).await;
    for watch in ["--wait", "--follow"] {
        let running = env.spawn_run(&["run", "nightly_report", watch]).await;
        let run_id = running.first_line.clone();
        env.client
            .add_log(&run_id, "done", Some(FinalStatus::Success), Some("Sent"))
            .await
            .unwrap();
        let output = running.finish().await;
        assert_eq!(output.code, 0, "{watch}: {output:?}");
        assert!(
            output.stdout.contains("Status:  SUCCESS\nLabel:   Sent\n"),
            "{watch}: {output:?}"
        );
        assert!(output.stderr.is_empty(), "{watch}: {output:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_run_exits_1() {
    let env = Env::start().await;
    seed(&env).await;
    let running = env
        .spawn_run(&[
            "run",
            "delete_environment",
            "--prop",
            "name=staging",
            "--wait",
        ])
        .await;
    let run_id = running.first_line.clone();
    until_status(&env, &run_id, RunStatus::WaitingForApproval).await;
    env.client
        .decline(&run_id, Some("not today"))
        .await
        .unwrap();
    let output = running.finish().await;
    assert_eq!(output.code, 1, "{output:?}");
    assert!(output.stdout.starts_with("Status:  DECLINED"), "{output:?}");
    assert_eq!(
        output.stderr,
        format!("error: run_declined: run {run_id} was declined\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_does_not_end_in_time_exits_1() {
    let env = Env::start().await;
    seed(&env).await;
    for watch in ["--wait", "--follow"] {
        let output = env
            .port(&["run", "nightly_report", watch, "--timeout", "1s"])
            .await;
        assert_eq!(output.code, 1, "{watch}: {output:?}");
        assert!(
            output.stderr.starts_with("error: timeout: run r_")
                && output.stderr.contains("did not end within 1s"),
            "{watch}: {output:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_authentication_errors() {
    let env = Env::start().await;
    seed(&env).await;

    let unknown = env.port(&["run", "no_such_action"]).await;
    assert_eq!(unknown.code, 3, "{unknown:?}");
    assert!(
        unknown.stderr.starts_with("error: not_found: "),
        "{unknown:?}"
    );
    assert!(unknown.stdout.is_empty());

    let missing_run = env.port(&["runs", "get", "r_doesnotexist0000"]).await;
    assert_eq!(missing_run.code, 3, "{missing_run:?}");

    let home = tempfile::tempdir().unwrap();
    let bad_secret = run_in(
        home.path(),
        &[
            "blueprints",
            "list",
            "--api-url",
            &env.server.api_url,
            "--client-id",
            &env.server.client_id,
            "--client-secret",
            "wrong-secret",
        ],
    )
    .await;
    assert_eq!(bad_secret.code, 4, "{bad_secret:?}");
    assert!(
        bad_secret.stderr.starts_with("error: unauthorized: "),
        "{bad_secret:?}"
    );
    assert!(!bad_secret.stderr.contains("wrong-secret"));

    let no_credentials = run_in(
        home.path(),
        &["runs", "list", "--api-url", &env.server.api_url],
    )
    .await;
    assert_eq!(no_credentials.code, 4, "{no_credentials:?}");
    assert!(
        no_credentials
            .stderr
            .starts_with("error: missing_credentials: "),
        "{no_credentials:?}"
    );
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        vec!["run"],
        vec!["frobnicate"],
        vec!["runs", "patch", "r_1", "--status", "MAYBE"],
        vec!["run", "deploy", "--prop", "no-equals-sign"],
        vec!["run", "deploy", "--timeout", "1m"],
        vec!["runs", "list", "--limit", "0"],
        vec!["-o", "xml", "runs", "list"],
    ] {
        let output = run_in(home.path(), &args).await;
        assert_eq!(output.code, 2, "{args:?}: {output:?}");
        assert!(output.stderr.starts_with("error: "), "{args:?}: {output:?}");
    }
}

#[tokio::test]
async fn unreachable_servers_are_api_errors() {
    // A port nothing listens on: bind one, then free it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let home = tempfile::tempdir().unwrap();
    let output = run_in(
        home.path(),
        &[
            "runs",
            "list",
            "--api-url",
            &url,
            "--client-id",
            "a",
            "--client-secret",
            "b",
        ],
    )
    .await;
    assert_eq!(output.code, 3, "{output:?}");
    assert!(
        output.stderr.starts_with("error: transport_error: "),
        "{output:?}"
    );
}

#[tokio::test]
async fn invalid_files_are_usage_errors() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("missing.yaml");
    let output = run_in(
        home.path(),
        &[
            "blueprints",
            "apply",
            "-f",
            missing.to_str().unwrap(),
            "--client-id",
            "a",
            "--client-secret",
            "b",
        ],
    )
    .await;
    assert_eq!(output.code, 2, "{output:?}");
    assert!(
        output.stderr.starts_with("error: invalid_file: "),
        "{output:?}"
    );
}
