//! One run as one process: the invocation on stdin and in the environment, the
//! output to the run's log, the exit code to its status, and a timeout that kills the
//! whole process group.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use port_webhook::{HandlerError, Invocation, Outcome, RunContext, human_duration};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::{ActionSettings, PortSettings};
use crate::output;

/// How long, after the command exited, its output may keep coming (from a background
/// process that inherited the pipes) before the rest of its group is killed.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// Events buffered between the pipes and the shipper.
const EVENT_BUFFER: usize = 1024;

/// An action's command, ready to run.
#[derive(Debug, Clone)]
pub struct CommandRunner {
    action: ActionSettings,
    port_env: Vec<(String, String)>,
}

/// The environment variable of an input: `PORT_INPUT_` and the key upper-cased, every
/// character that is not an ASCII letter or digit replaced by `_`.
pub fn input_variable(key: &str) -> String {
    let name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("PORT_INPUT_{name}")
}

/// A value as an environment variable holds it: strings as they are, anything else
/// as compact JSON, `null` as nothing.
fn env_value(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The run's variables: `PORT_RUN_ID`, `PORT_ACTION`, `PORT_ENTITY` (the entity's
/// identifier), `PORT_ENTITY_JSON`, `PORT_BLUEPRINT`, `PORT_WEBHOOK_ID` and one
/// `PORT_INPUT_<NAME>` per input (secret inputs in clear: port-webhook decrypted them).
pub fn run_variables(invocation: &Invocation) -> Vec<(String, String)> {
    let mut vars = vec![
        ("PORT_RUN_ID".to_owned(), invocation.run_id.clone()),
        ("PORT_ACTION".to_owned(), invocation.action.clone()),
        (
            "PORT_ENTITY".to_owned(),
            invocation
                .entity_identifier()
                .unwrap_or_default()
                .to_owned(),
        ),
        (
            "PORT_ENTITY_JSON".to_owned(),
            invocation
                .entity
                .as_ref()
                .map(env_value)
                .unwrap_or_default(),
        ),
        (
            "PORT_BLUEPRINT".to_owned(),
            invocation.blueprint.clone().unwrap_or_default(),
        ),
        (
            "PORT_WEBHOOK_ID".to_owned(),
            invocation.webhook_id.clone().unwrap_or_default(),
        ),
    ];
    for (key, value) in &invocation.properties {
        vars.push((input_variable(key), env_value(value)));
    }
    // The OS refuses variables holding NUL bytes; such inputs are left out.
    vars.retain(|(name, value)| {
        let usable = !value.contains('\0');
        if !usable {
            tracing::warn!(run = %invocation.run_id, variable = %name, "left out a variable holding a NUL byte");
        }
        usable
    });
    vars
}

/// What the command reads on stdin: the body with its secret inputs in clear, as the
/// variables have them (what Port's agent forwards after decrypting), then a newline.
pub fn stdin_body(invocation: &Invocation) -> Vec<u8> {
    let mut input = serde_json::to_vec(&invocation.decrypted_body()).unwrap_or_default();
    input.push(b'\n');
    input
}

/// Kills a process group when dropped (and on demand), so that nothing a command
/// started outlives its run.
struct ProcessGroup(Option<u32>);

impl ProcessGroup {
    fn kill(&self) {
        #[cfg(unix)]
        if let Some(pid) = self
            .0
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            // ESRCH (the group is gone) is the usual, harmless answer.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            return format!("was killed by signal {signal}");
        }
    }
    format!("ended with {status}")
}

impl CommandRunner {
    pub fn new(action: ActionSettings, port: &PortSettings) -> Self {
        let port_env = vec![
            (port_client::ENV_API_URL.to_owned(), port.api_url.clone()),
            (
                port_client::ENV_CLIENT_ID.to_owned(),
                port.client_id.clone(),
            ),
            (
                port_client::ENV_CLIENT_SECRET.to_owned(),
                port.client_secret.0.clone(),
            ),
        ];
        Self { action, port_env }
    }

    /// The action's timeout.
    pub fn timeout(&self) -> Duration {
        self.action.timeout
    }

    fn program(&self) -> &PathBuf {
        &self.action.program
    }

    /// Runs the command for one run.
    pub async fn run(
        &self,
        invocation: Invocation,
        context: RunContext,
    ) -> Result<Outcome, HandlerError> {
        let name = &self.action.program_name;
        let mut command = Command::new(self.program());
        command
            .args(&self.action.args)
            .current_dir(&self.action.workdir)
            .envs(&self.action.env)
            .envs(self.port_env.iter().cloned())
            .envs(run_variables(&invocation))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        let mut child = command
            .spawn()
            .map_err(|e| HandlerError::new(format!("could not start {name}: {e}")))?;
        let group = ProcessGroup(child.id());
        tracing::info!(run = %invocation.run_id, command = %name, pid = ?child.id(), "started the command");

        if let Some(mut stdin) = child.stdin.take() {
            let input = stdin_body(&invocation);
            // A command that does not read its input must not block on it.
            tokio::spawn(async move {
                let _ = stdin.write_all(&input).await;
            });
        }
        let (events, received) = mpsc::channel(EVENT_BUFFER);
        let mut readers = JoinSet::new();
        if let Some(stdout) = child.stdout.take() {
            readers.spawn(output::read_lines(stdout, true, events.clone()));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.spawn(output::read_lines(stderr, false, events.clone()));
        }
        drop(events);
        let shipper = tokio::spawn(output::ship(context, received));

        let timeout = self.action.timeout;
        let status = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => Some(status),
            Ok(Err(e)) => {
                group.kill();
                return Err(HandlerError::new(format!("waiting for {name} failed: {e}")));
            }
            Err(_) => {
                tracing::warn!(run = %invocation.run_id, command = %name, "the command timed out; killing its process group");
                group.kill();
                let _ = child.wait().await;
                None
            }
        };
        let drained = tokio::time::timeout(DRAIN_AFTER_EXIT, async {
            while readers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::info!(run = %invocation.run_id, "output still open after the command exited; killing what is left of its group");
            group.kill();
            readers.abort_all();
        }
        drop(group);
        let tail = shipper.await.unwrap_or_default();

        match status {
            None => Err(HandlerError::new(format!(
                "timed out after {}: {name} was killed",
                human_duration(timeout)
            ))),
            Some(status) if status.success() => {
                tracing::info!(run = %invocation.run_id, command = %name, "the command succeeded");
                Ok(Outcome::done())
            }
            Some(status) => {
                let mut reason = format!("{name} {}", describe(status));
                if !tail.is_empty() {
                    reason.push_str("; last output:\n");
                    reason.push_str(&tail.join("\n"));
                }
                Err(HandlerError::new(reason))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn inputs_become_variables() {
        assert_eq!(input_variable("name"), "PORT_INPUT_NAME");
        assert_eq!(input_variable("db-size.gb"), "PORT_INPUT_DB_SIZE_GB");
        assert_eq!(input_variable("région"), "PORT_INPUT_R_GION");
        let mut invocation = Invocation::new("r_1", "deploy")
            .with_property("name", "svc")
            .with_property("replicas", 3)
            .with_property("tags", json!(["a", "b"]))
            .with_property("nothing", Value::Null)
            .with_property("bad", "a\0b");
        invocation.entity = Some(json!({ "identifier": "svc-a", "title": "A" }));
        let vars = run_variables(&invocation);
        let get = |name: &str| {
            vars.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("PORT_RUN_ID"), Some("r_1"));
        assert_eq!(get("PORT_ACTION"), Some("deploy"));
        assert_eq!(get("PORT_ENTITY"), Some("svc-a"));
        assert_eq!(
            get("PORT_ENTITY_JSON"),
            Some(r#"{"identifier":"svc-a","title":"A"}"#)
        );
        assert_eq!(get("PORT_INPUT_NAME"), Some("svc"));
        assert_eq!(get("PORT_INPUT_REPLICAS"), Some("3"));
        assert_eq!(get("PORT_INPUT_TAGS"), Some(r#"["a","b"]"#));
        assert_eq!(get("PORT_INPUT_NOTHING"), Some(""));
        assert_eq!(get("PORT_INPUT_BAD"), None);
    }

    #[test]
    fn secret_inputs_reach_the_command_decrypted() {
        let client_secret = "runner-test-client-secret-0123456789abcdef";
        let encrypted =
            port_core::secret::encrypt_input(client_secret, "tok-for-the-command", [1; 16])
                .unwrap();
        let body = json!({
            "action": "deploy",
            "resourceType": "run",
            "context": { "runId": "r_1" },
            "payload": {
                "action": { "identifier": "deploy", "userInputs": { "properties": {
                    "token": { "type": "string", "encryption": "aes256-gcm" }
                } } },
                "properties": { "name": "svc", "token": encrypted }
            }
        });
        // What port-webhook hands the runner.
        let mut invocation = Invocation::from_body(body, None, None).unwrap();
        invocation.decrypt_secret_inputs(client_secret).unwrap();
        let vars = run_variables(&invocation);
        assert!(vars.contains(&("PORT_INPUT_TOKEN".into(), "tok-for-the-command".into())));
        let stdin: Value = serde_json::from_slice(&stdin_body(&invocation)).unwrap();
        assert_eq!(
            stdin["payload"]["properties"],
            json!({ "name": "svc", "token": "tok-for-the-command" })
        );
        assert!(stdin_body(&invocation).ends_with(b"\n"));
    }
}
