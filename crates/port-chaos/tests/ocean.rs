//! Ocean's own Port client (port-ocean 0.48.12, pinned) against the real portd binary:
//! its start-up calls and the action-run calls of its ExecutionManager and executors,
//! made by port_ocean's `PortClient` from `clients/ocean_driver.py`.
//!
//! The client is installed from PyPI into `target/venv-ocean` on the first run (about
//! 20 s with a warm pip cache). Without Python or PyPI the test prints `skipped:` and
//! passes, except under `CI`, where failing to install fails it.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use port_chaos::api::Api;
use port_chaos::clients::{OCEAN_VERSION, drive_ocean, ocean_python};
use port_chaos::portd::{Portd, PortdSettings, binary};
use port_chaos::visible;
use serde_json::{Value, json};

const CLIENT_ID: &str = "ocean-test-client";
const CLIENT_SECRET: &str = "ocean-test-secret-0123456789abcdefghijklmnopqrstuvwxyz";

async fn integration_action(api: &Api, identifier: &str) -> Result<()> {
    api.post(
        "/v1/actions",
        &json!({
            "identifier": identifier,
            "title": identifier,
            "trigger": {
                "type": "self-service",
                "operation": "CREATE",
                "userInputs": { "properties": { "env": { "type": "string" } }, "required": [] }
            },
            "invocationMethod": {
                "type": "INTEGRATION_ACTION",
                "installationId": "my-github-integration",
                "integrationActionType": "dispatch_workflow",
                "integrationActionExecutionProperties": {
                    "org": "acme",
                    "repo": "infra",
                    "workflow": "deploy.yml",
                    "workflowInputs": { "env": "{{ .inputs.env }}" }
                }
            }
        }),
    )
    .await?
    .expect(201, "creating an INTEGRATION_ACTION action")?;
    Ok(())
}

async fn execute(api: &Api, action: &str) -> Result<String> {
    let run = api
        .post(
            &format!("/v1/actions/{action}/runs"),
            &json!({ "properties": { "env": "prod" } }),
        )
        .await?
        .expect(202, "executing")?;
    run["run"]["id"]
        .as_str()
        .map(str::to_owned)
        .context("the run has no id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oceans_port_client_processes_action_runs() -> Result<()> {
    let python = match ocean_python() {
        Ok(python) => python,
        Err(e) if std::env::var_os("CI").is_none() => {
            visible(&format!(
                "skipped: port-ocean {OCEAN_VERSION} could not be installed: {e:#}"
            ));
            return Ok(());
        }
        Err(e) => return Err(e.context(format!("installing port-ocean {OCEAN_VERSION}"))),
    };

    let dir = tempfile::Builder::new()
        .prefix("port-chaos-ocean-")
        .tempdir()?;
    let settings = PortdSettings {
        binary: binary()?,
        data_dir: dir.path().join("data"),
        database_url: None,
        client_id: CLIENT_ID.to_owned(),
        client_secret: CLIENT_SECRET.to_owned(),
        log_filter: "warn".to_owned(),
        log_file: dir.path().join("portd.log"),
        env: Vec::new(),
    };
    let mut portd = Portd::spawn(&settings)?;
    portd.ready(Duration::from_secs(60)).await?;
    let api = Api::login(&portd.base_url(), CLIENT_ID, CLIENT_SECRET).await?;
    integration_action(&api, "dispatch").await?;
    integration_action(&api, "busy").await?;
    let busy = execute(&api, "busy").await?;
    let dispatched = execute(&api, "dispatch").await?;

    let report = drive_ocean(&python, &portd.base_url(), CLIENT_ID, CLIENT_SECRET)
        .await
        .with_context(|| format!("portd's log:\n{}", portd.log_tail(30)))?;
    visible(&format!("ocean {OCEAN_VERSION} against portd: {report}"));

    ensure!(report["isMachine"] == json!(true), "{report}");
    ensure!(report["provisionEnabled"] == json!([]), "{report}");
    ensure!(report["featureFlags"] == json!([]), "{report}");
    ensure!(report["installationType"] == "OnPrem", "{report}");
    ensure!(
        report["claimed"]
            == json!([{ "id": dispatched, "action": "dispatch", "type": "dispatch_workflow" }]),
        "only the run of the action not excluded: {report}"
    );
    ensure!(
        report["secondAck"] == "RunAlreadyAcknowledgedError",
        "{report}"
    );
    ensure!(report["foundInProgress"] == json!(true), "{report}");
    ensure!(report["unknownExternalId"] == Value::Null, "{report}");
    ensure!(report["finalStatus"] == "SUCCESS", "{report}");
    ensure!(report["laterClaimed"] == json!(["busy"]), "{report}");

    // What portd stored from those calls.
    let run = api
        .get(&format!("/v1/actions/runs/{dispatched}?version=v2"))
        .await?
        .expect(200, "reading the run")?;
    ensure!(run["run"]["status"] == "SUCCESS", "{run}");
    ensure!(run["run"]["externalRunId"] == "42", "{run}");
    ensure!(
        run["run"]["link"] == json!(["https://github.com/acme/infra/actions/runs/42"]),
        "{run}"
    );
    let logs = api
        .get(&format!("/v1/actions/runs/{dispatched}/logs"))
        .await?
        .expect(200, "reading the logs")?;
    let messages: Vec<&str> = logs["runLogs"]
        .as_array()
        .context("runLogs")?
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    ensure!(
        messages == ["Dispatched workflow deploy.yml", "Workflow completed"],
        "{messages:?}"
    );
    let failed = api
        .get(&format!("/v1/actions/runs/{busy}?version=v2"))
        .await?
        .expect(200, "reading the excluded run")?;
    ensure!(failed["run"]["status"] == "FAILURE", "{failed}");
    let integration = api
        .get("/v1/integration/my-github-integration")
        .await?
        .expect(200, "reading the integration")?;
    ensure!(
        integration["integration"]["installationAppType"] == "github"
            && integration["integration"]["processingMode"] == "dsp",
        "{integration}"
    );
    portd.terminate(Duration::from_secs(20))?;
    Ok(())
}
