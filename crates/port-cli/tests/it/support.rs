//! Running the real `port` binary against an in-process portd.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use port_client::PortClient;
use port_server::testing::TestServer;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// The binary under test.
pub const PORT: &str = env!("CARGO_BIN_EXE_port");

/// What a finished `port` printed and exited with.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `port` with a clean environment: no PORT_* variables, no colour forcing, and a
/// configuration directory of its own (`config_home`).
pub fn command(config_home: &Path) -> Command {
    let mut command = Command::new(PORT);
    for name in [
        "PORT_API_URL",
        "PORT_CLIENT_ID",
        "PORT_CLIENT_SECRET",
        "PORT_PROFILE",
        "NO_COLOR",
        "CLICOLOR",
        "CLICOLOR_FORCE",
        "COLUMNS",
    ] {
        command.env_remove(name);
    }
    command
        .env("XDG_CONFIG_HOME", config_home)
        .env("HOME", config_home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `port ARGS` to its end.
pub async fn run_in(config_home: &Path, args: &[&str]) -> Output {
    let output = command(config_home)
        .args(args)
        .output()
        .await
        .expect("the port binary runs");
    Output {
        code: output.status.code().expect("port exited normally"),
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
    }
}

/// A portd with a CLI pointed at it.
pub struct Env {
    pub server: TestServer,
    pub client: PortClient,
    pub home: tempfile::TempDir,
}

impl Env {
    pub async fn start() -> Self {
        let server = TestServer::start().await.expect("portd starts");
        let client = PortClient::builder()
            .base_url(&server.api_url)
            .credentials(&server.client_id, &server.client_secret)
            .build()
            .expect("a client");
        Self {
            server,
            client,
            home: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// `args` followed by the connection flags.
    fn with_connection<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = args.to_vec();
        all.extend([
            "--api-url",
            &self.server.api_url,
            "--client-id",
            &self.server.client_id,
            "--client-secret",
            &self.server.client_secret,
        ]);
        all
    }

    /// Runs `port ARGS --api-url … --client-id … --client-secret …`.
    pub async fn port(&self, args: &[&str]) -> Output {
        run_in(self.home.path(), &self.with_connection(args)).await
    }

    /// Like [`Self::port`], with `input` on stdin.
    pub async fn port_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        use tokio::io::AsyncWriteExt as _;
        let mut child = command(self.home.path())
            .args(self.with_connection(args))
            .stdin(Stdio::piped())
            .spawn()
            .expect("the port binary starts");
        let mut stdin = child.stdin.take().expect("piped stdin");
        // A command that fails before reading closes the pipe: not the test's concern.
        if let Err(e) = stdin.write_all(input).await {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "stdin: {e}");
        }
        // Closed, so that port reads to the end.
        drop(stdin);
        let output = child.wait_with_output().await.expect("port was waited for");
        Output {
            code: output.status.code().expect("port exited normally"),
            stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
        }
    }

    /// Like [`Self::port`], asserting exit code 0.
    pub async fn ok(&self, args: &[&str]) -> String {
        let output = self.port(args).await;
        assert_eq!(output.code, 0, "port {args:?} failed: {output:?}");
        output.stdout
    }

    /// Starts `port ARGS …` and waits for the first line of its stdout (the run id of
    /// `port run`).
    pub async fn spawn_run(&self, args: &[&str]) -> Running {
        let mut child = command(self.home.path())
            .args(self.with_connection(args))
            .spawn()
            .expect("the port binary starts");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut stderr = child.stderr.take().expect("piped stderr");
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("port printed its first line in time")
            .expect("stdout is readable");
        let Some(first) = first else {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            panic!("port {args:?} printed nothing; stderr: {text}");
        };
        // Both pipes are drained while the child runs, so it never blocks on them.
        let stdout = tokio::spawn(async move {
            let mut text = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        Running {
            child,
            first_line: first,
            stdout,
            stderr,
        }
    }

    /// Writes `text` to a file in the configuration directory and returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.home.path().join(name);
        std::fs::write(&path, text).expect("the file is written");
        path.display().to_string()
    }
}

/// A `port` still running.
pub struct Running {
    child: Child,
    /// The first line it printed.
    pub first_line: String,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<String>,
}

impl Running {
    /// Waits (at most a minute) for the process to end; `stdout` holds what followed
    /// the first line.
    pub async fn finish(mut self) -> Output {
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("port ended in time")
            .expect("port was waited for");
        Output {
            code: status.code().expect("port exited normally"),
            stdout: self.stdout.await.expect("stdout was read"),
            stderr: self.stderr.await.expect("stderr was read"),
        }
    }
}

/// Two blueprints, as a JSON array.
pub const BLUEPRINTS: &str = r#"[
  {
    "identifier": "microservice",
    "title": "Service",
    "icon": "Microservice",
    "schema": {
      "properties": {
        "region": { "type": "string", "title": "Region" },
        "replicas": { "type": "number", "title": "Replicas" }
      },
      "required": []
    },
    "relations": {
      "environment": { "title": "Environment", "target": "environment", "required": false, "many": false }
    }
  },
  {
    "identifier": "environment",
    "title": "Environment",
    "schema": { "properties": {}, "required": [] },
    "relations": {}
  }
]"#;

/// A legacy v1 action (with a `blueprint` key) and three v2 actions, as YAML documents.
/// Their invocations go to pull-mode runners (KAFKA), so no delivery ends their runs:
/// the tests do.
pub const ACTIONS: &str = r#"
identifier: create_microservice
title: Create Microservice
blueprint: microservice
trigger: CREATE
userInputs:
  properties:
    name: { title: Service name, type: string }
    region: { title: Cloud Region, type: string }
invocationMethod: { type: KAFKA }
description: Create new microservice
---
- identifier: deploy_microservice
  title: Deploy Microservice
  trigger:
    type: self-service
    operation: DAY-2
    blueprintIdentifier: microservice
    userInputs:
      properties:
        environment: { title: Environment, type: string }
  invocationMethod: { type: KAFKA }
- identifier: delete_environment
  title: Delete Environment
  requiredApproval: true
  trigger:
    type: self-service
    operation: CREATE
    userInputs:
      properties:
        name: { type: string }
  invocationMethod: { type: KAFKA }
- identifier: nightly_report
  title: Nightly Report
  trigger:
    type: self-service
    operation: CREATE
    userInputs:
      properties:
        days: { type: number }
        verbose: { type: boolean }
  invocationMethod: { type: KAFKA }
"#;

/// Applies [`BLUEPRINTS`] and [`ACTIONS`] through the CLI.
pub async fn seed(env: &Env) {
    let blueprints = env.file("blueprints.json", BLUEPRINTS);
    let out = env.ok(&["blueprints", "apply", "-f", &blueprints]).await;
    assert_eq!(
        out,
        "blueprint microservice created\nblueprint environment created\n"
    );
    let actions = env.file("actions.yaml", ACTIONS);
    let out = env.ok(&["actions", "apply", "-f", &actions]).await;
    assert_eq!(
        out,
        "action create_microservice created\naction deploy_microservice created\n\
         action delete_environment created\naction nightly_report created\n"
    );
}
