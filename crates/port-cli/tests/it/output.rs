//! Table and JSON output of the list and get commands against a real portd, as
//! snapshots with ids and times filtered out.

use port_client::{FinalStatus, RunUpdate};

use crate::support::{Env, seed};

/// Snapshot settings that hide what changes from one server to the next.
fn filters(env: &Env) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&env.server.client_id, "[CLIENT_ID]");
    settings.add_filter(&env.server.org_id, "[ORG_ID]");
    settings.add_filter(
        r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
        "[TIMESTAMP]",
    );
    // Placeholders as wide as what they hide, so that table columns stay aligned.
    settings.add_filter(
        r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}",
        "YYYY-MM-DD hh:mm:ss",
    );
    settings.add_filter(r"\br_[A-Za-z0-9]{16}\b", "r_XXXXXXXXXXXXXXXX");
    settings.add_filter(r"\baction_[A-Za-z0-9]{16}\b", "action_XXXXXXXXXXXXXXXX");
    settings
}

/// A finished run of `create_microservice` and a running one of `deploy_microservice`.
async fn two_runs(env: &Env) -> (String, String) {
    env.ok(&[
        "entities",
        "upsert",
        "microservice",
        "--id",
        "svc-a",
        "--title",
        "Service A",
        "--prop",
        "region=eu-west-1",
        "--prop",
        "replicas=2",
    ])
    .await;
    let done = env
        .ok(&[
            "run",
            "create_microservice",
            "--prop",
            "name=svc-b",
            "--prop",
            "region=us-east-1",
        ])
        .await
        .trim()
        .to_owned();
    env.client
        .patch_run(
            &done,
            &RunUpdate {
                status: Some(FinalStatus::Success),
                status_label: Some("Created".into()),
                link: Some(vec!["https://ci.example/runs/1".into()]),
                summary: Some("svc-b is ready".into()),
                ..RunUpdate::default()
            },
        )
        .await
        .unwrap();
    // Later than the first, so that the newest-first order is certain.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let running = env
        .ok(&[
            "run",
            "deploy_microservice",
            "--entity",
            "svc-a",
            "--prop",
            "environment=prod",
        ])
        .await
        .trim()
        .to_owned();
    (done, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_and_details_as_tables_and_json() {
    let env = Env::start().await;
    seed(&env).await;
    let (done, _running) = two_runs(&env).await;

    let settings = filters(&env);
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("runs_list_table", vec!["runs", "list"]),
        ("runs_list_json", vec!["runs", "list", "-o", "json"]),
        ("runs_get_table", vec!["runs", "get", &done]),
        ("runs_get_json", vec!["runs", "get", &done, "-o", "json"]),
        ("blueprints_list_table", vec!["blueprints", "list"]),
        (
            "blueprints_list_json",
            vec!["blueprints", "list", "-o", "json"],
        ),
        ("actions_list_table", vec!["actions", "list"]),
        ("actions_list_json", vec!["actions", "list", "-o", "json"]),
    ];
    for (name, args) in cases {
        let out = env.ok(&args).await;
        settings.bind(|| insta::assert_snapshot!(name, out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_is_the_apis_json() {
    let env = Env::start().await;
    seed(&env).await;
    let (done, running) = two_runs(&env).await;

    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["runs", "list", "-o", "json"]).await).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [running.as_str(), done.as_str()]);

    let got: serde_json::Value =
        serde_json::from_str(&env.ok(&["runs", "get", &done, "-o", "json"]).await).unwrap();
    let api = env
        .client
        .request_json(
            port_client::Method::GET,
            &format!("actions/runs/{done}"),
            &[("version", "v2")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(got, api["run"]);
    let api_list = env
        .client
        .request_json(
            port_client::Method::GET,
            "actions/runs",
            &[("version", "v2")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(listed, api_list["runs"]);

    // YAML carries the same data.
    let yaml = env.ok(&["runs", "get", &done, "-o", "yaml"]).await;
    let from_yaml: serde_json::Value = parse_yaml(&yaml);
    assert_eq!(from_yaml["id"], got["id"]);
    assert_eq!(from_yaml["link"], got["link"]);
}

/// Parses YAML through the CLI's own reader, which the library exposes.
fn parse_yaml(yaml: &str) -> serde_json::Value {
    let mut documents = port_cli::input::parse_documents(yaml).unwrap();
    assert_eq!(documents.len(), 1);
    documents.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_list_filters() {
    let env = Env::start().await;
    seed(&env).await;
    let (done, running) = two_runs(&env).await;
    let only = |out: String| -> Vec<String> {
        let runs: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        runs.iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        only(env.ok(&["runs", "list", "--active", "-o", "json"]).await),
        [running.as_str()]
    );
    assert_eq!(
        only(
            env.ok(&["runs", "list", "--status", "success", "-o", "json"])
                .await
        ),
        [done.as_str()]
    );
    assert_eq!(
        only(
            env.ok(&[
                "runs",
                "list",
                "--action",
                "deploy_microservice",
                "-o",
                "json"
            ])
            .await
        ),
        [running.as_str()]
    );
    assert_eq!(
        only(
            env.ok(&["runs", "list", "--entity", "svc-a", "-o", "json"])
                .await
        ),
        [running.as_str()]
    );
    // Tables go through the SDK's typed query: the same filters apply.
    let table = env.ok(&["runs", "list", "--active"]).await;
    assert!(
        table.contains(&running) && !table.contains(&done),
        "{table}"
    );
    let table = env
        .ok(&[
            "runs",
            "list",
            "--status",
            "SUCCESS",
            "--action",
            "create_microservice",
        ])
        .await;
    assert!(
        table.contains(&done) && !table.contains(&running),
        "{table}"
    );
    assert_eq!(
        only(
            env.ok(&["runs", "list", "--limit", "1", "-o", "json"])
                .await
        )
        .len(),
        1
    );
}
