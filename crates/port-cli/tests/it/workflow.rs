//! The other commands against a real portd: apply again (update), entities, logs,
//! patches, approvals, deliveries.

use serde_json::{Value, json};

use crate::support::{ACTIONS, Env, seed};

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_twice_updates_and_v1_actions_need_a_blueprint() {
    let env = Env::start().await;
    seed(&env).await;

    // Applying the same files again updates everything.
    let actions = env.file(
        "actions-again.yaml",
        &ACTIONS.replace("Nightly Report", "Daily Report"),
    );
    let out = env.ok(&["actions", "apply", "-f", &actions]).await;
    assert_eq!(
        out,
        "action create_microservice updated\naction deploy_microservice updated\n\
         action delete_environment updated\naction nightly_report updated\n"
    );
    let report = json_of(
        &env.ok(&["actions", "get", "nightly_report", "-o", "json"])
            .await,
    );
    assert_eq!(report["title"], "Daily Report");
    let legacy = env.ok(&["actions", "get", "create_microservice"]).await;
    assert!(legacy.contains("Blueprint:    microservice"), "{legacy}");
    assert!(legacy.contains("Operation:    CREATE"), "{legacy}");

    // A v1 action without a `blueprint` key needs --blueprint.
    let v1 = env.file(
        "v1.json",
        r#"{"identifier": "scale", "title": "Scale", "trigger": "DAY-2",
            "userInputs": {"properties": {"replicas": {"type": "number"}}},
            "invocationMethod": {"type": "KAFKA"}}"#,
    );
    let refused = env.port(&["actions", "apply", "-f", &v1]).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.starts_with("error: missing_blueprint: "));
    let applied = json_of(
        &env.ok(&[
            "actions",
            "apply",
            "-f",
            &v1,
            "--blueprint",
            "microservice",
            "-o",
            "json",
        ])
        .await,
    );
    assert_eq!(applied[0]["identifier"], "scale");
    let listed = env
        .ok(&["actions", "list", "--blueprint", "microservice"])
        .await;
    assert!(listed.contains("scale"), "{listed}");
    assert!(!listed.contains("nightly_report"), "{listed}");

    assert_eq!(
        env.ok(&["actions", "delete", "scale"]).await,
        "action scale deleted\n"
    );
    assert_eq!(env.port(&["actions", "get", "scale"]).await.code, 3);

    let blueprint = env.ok(&["blueprints", "get", "microservice"]).await;
    assert!(blueprint.contains("region (string)"), "{blueprint}");
    assert!(
        blueprint.contains("environment -> environment"),
        "{blueprint}"
    );
    let yaml = env
        .ok(&["blueprints", "get", "environment", "-o", "yaml"])
        .await;
    assert!(yaml.starts_with("identifier: environment\n"), "{yaml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_and_runs_from_the_command_line() {
    let env = Env::start().await;
    seed(&env).await;

    // Entities: inline, then from a file, bound to a run.
    let entity = json_of(
        &env.ok(&[
            "entities",
            "upsert",
            "microservice",
            "--id",
            "svc-a",
            "--prop",
            "replicas=3",
            "--prop",
            "region=eu-west-1",
            "-o",
            "json",
        ])
        .await,
    );
    assert_eq!(
        entity["properties"],
        json!({ "replicas": 3, "region": "eu-west-1" })
    );

    let inputs = env.file("inputs.yaml", "environment: staging\nextra: [1, 2]\n");
    let run = json_of(
        &env.ok(&[
            "run",
            "deploy_microservice",
            "--entity",
            "svc-a",
            "--props-file",
            &inputs,
            "--prop",
            "environment=prod",
            "--idempotency-key",
            "deploy-1",
            "-o",
            "json",
        ])
        .await,
    );
    let run_id = run["id"].as_str().unwrap().to_owned();
    assert_eq!(run["status"], "IN_PROGRESS");
    assert_eq!(run["properties"]["environment"], "prod");
    assert_eq!(run["properties"]["extra"], json!([1, 2]));
    // The same key gives the same run.
    let again = env
        .ok(&[
            "run",
            "deploy_microservice",
            "--entity",
            "svc-a",
            "--prop",
            "environment=prod",
            "--idempotency-key",
            "deploy-1",
        ])
        .await;
    assert_eq!(again.trim(), run_id);

    let file = env.file(
        "entities.json",
        r#"[{"identifier": "svc-b", "title": "B", "properties": {"region": "us-east-1"}},
            {"identifier": "svc-c", "properties": {}}]"#,
    );
    let out = env
        .ok(&[
            "entities",
            "upsert",
            "microservice",
            "-f",
            &file,
            "--run-id",
            &run_id,
        ])
        .await;
    assert_eq!(
        out,
        "entity microservice/svc-b upserted\nentity microservice/svc-c upserted\n"
    );
    let shown = env.ok(&["entities", "get", "microservice", "svc-b"]).await;
    assert!(shown.contains("Title:       B\n"), "{shown}");
    assert!(shown.contains("region=us-east-1"), "{shown}");

    // Logs and patches.
    env.ok(&["runs", "log", &run_id, "deploying", "--label", "Deploying"])
        .await;
    env.ok(&["runs", "log", &run_id, "halfway"]).await;
    let logs = env.ok(&["runs", "logs", &run_id]).await;
    let messages: Vec<&str> = logs
        .lines()
        .map(|l| l.split_once("  ").unwrap().1)
        .collect();
    assert_eq!(messages, ["deploying", "halfway"]);
    let logs_json = json_of(&env.ok(&["runs", "logs", &run_id, "-o", "json"]).await);
    assert_eq!(logs_json[1]["message"], "halfway");

    let patched = env
        .ok(&[
            "runs",
            "patch",
            &run_id,
            "--label",
            "Almost",
            "--link",
            "https://ci/1",
            "--link",
            "https://ci/2",
            "--external-run-id",
            "gh-1",
        ])
        .await;
    assert!(patched.contains("Label:        Almost\n"), "{patched}");
    assert!(
        patched.contains("Links:        https://ci/1\n              https://ci/2\n"),
        "{patched}"
    );
    let nothing = env.port(&["runs", "patch", &run_id]).await;
    assert_eq!(nothing.code, 2, "{nothing:?}");

    env.ok(&[
        "runs",
        "log",
        &run_id,
        "all done",
        "--termination-status",
        "success",
    ])
    .await;
    // Following an ended run prints its lines and its end, and exits with its outcome.
    let followed = env.port(&["runs", "logs", &run_id, "-f"]).await;
    assert_eq!(followed.code, 0, "{followed:?}");
    assert!(followed.stdout.contains("  all done\n"), "{followed:?}");
    assert!(
        followed.stdout.contains("Status:  SUCCESS\n"),
        "{followed:?}"
    );
    let finished = env
        .port(&["runs", "patch", &run_id, "--summary", "late"])
        .await;
    assert_eq!(finished.code, 3, "{finished:?}");
    assert!(
        finished.stderr.starts_with("error: run_exhausted: "),
        "{finished:?}"
    );

    let deleted = env
        .ok(&["entities", "delete", "microservice", "svc-c"])
        .await;
    assert_eq!(deleted, "entity microservice/svc-c deleted\n");
    assert_eq!(
        env.port(&["entities", "get", "microservice", "svc-c"])
            .await
            .code,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_and_deliveries() {
    let env = Env::start().await;
    seed(&env).await;
    let waiting = env
        .ok(&["run", "delete_environment", "--prop", "name=dev"])
        .await;
    let run_id = waiting.trim();
    let shown = env.ok(&["runs", "get", run_id]).await;
    assert!(shown.contains("WAITING_FOR_APPROVAL"), "{shown}");

    let approved = json_of(
        &env.ok(&[
            "runs", "approve", run_id, "--reason", "go ahead", "-o", "json",
        ])
        .await,
    );
    assert_eq!(approved["status"], "IN_PROGRESS");
    let twice = env.port(&["runs", "decline", run_id]).await;
    assert_eq!(twice.code, 3, "{twice:?}");
    assert!(twice.stderr.starts_with("error: "), "{twice:?}");

    let deliveries = env.ok(&["runs", "deliveries", run_id]).await;
    assert!(deliveries.starts_with("ID "), "{deliveries}");
    let listed = json_of(&env.ok(&["runs", "deliveries", run_id, "-o", "json"]).await);
    assert!(listed.is_array(), "{listed}");
}
