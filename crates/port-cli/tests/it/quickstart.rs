//! The README's quickstart, run as written: the ```sh blocks between
//! `<!-- quickstart:begin -->` and `<!-- quickstart:end -->`, in order, with
//! `bash -euo pipefail`, except the block marked `<!-- quickstart:build -->` (this test
//! puts the debug binaries of `portd`, `port` and `port-runner` on the `PATH` instead)
//! and with free ports instead of 3000 and 8080. Then the runs it made are checked
//! through the SDK, against a portd restarted on the data directory it left, and the
//! sample output the README shows (```text blocks) against what the commands printed.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use port_client::{PortClient, Run, RunQuery};
use port_server::Config;
use serde_json::Value;

const README: &str = include_str!("../../../../README.md");
const BEGIN: &str = "<!-- quickstart:begin -->";
const END: &str = "<!-- quickstart:end -->";
const BUILD: &str = "<!-- quickstart:build -->";

/// How long the whole quickstart may take (it takes a few seconds).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long portd and port-runner may take to stop after the quickstart's last step.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A fenced block of the quickstart section.
#[derive(Debug)]
struct Block {
    /// The info string (`sh`, `text`, …).
    lang: String,
    /// Whether `<!-- quickstart:build -->` comes right before it.
    build: bool,
    text: String,
}

/// The fenced blocks between the quickstart's markers, in order.
fn quickstart_blocks(readme: &str) -> Vec<Block> {
    let start = readme
        .find(BEGIN)
        .unwrap_or_else(|| panic!("README.md has no {BEGIN}"));
    let end = readme[start..]
        .find(END)
        .map(|end| start + end)
        .unwrap_or_else(|| panic!("README.md has no {END} after {BEGIN}"));
    let mut blocks = Vec::new();
    let mut lines = readme[start + BEGIN.len()..end].lines();
    let mut build_next = false;
    while let Some(line) = lines.next() {
        let line = line.trim();
        if line == BUILD {
            build_next = true;
        } else if let Some(lang) = line.strip_prefix("```") {
            let mut text = String::new();
            let mut closed = false;
            for line in lines.by_ref() {
                if line.trim_start().starts_with("```") {
                    closed = true;
                    break;
                }
                text.push_str(line);
                text.push('\n');
            }
            assert!(
                closed,
                "an unterminated ``` block in the quickstart:\n{text}"
            );
            blocks.push(Block {
                lang: lang.trim().to_owned(),
                build: build_next,
                text,
            });
            build_next = false;
        } else if !line.is_empty() {
            assert!(!build_next, "{BUILD} must come right before a ```sh block");
        }
    }
    blocks
}

/// The lines of a script, outside here-documents, that hold a `#` comment: pasted
/// into zsh (without `interactive_comments`, its default) it would run them as words.
fn comment_lines(script: &str) -> Vec<&str> {
    let mut here_document_end: Option<&str> = None;
    let mut found = Vec::new();
    for line in script.lines() {
        if let Some(end) = here_document_end {
            if line.trim() == end {
                here_document_end = None;
            }
            continue;
        }
        if let Some(at) = line.find("<<") {
            here_document_end = line[at + 2..]
                .trim_start_matches('-')
                .split_whitespace()
                .next()
                .map(|word| word.trim_matches(|c| c == '\'' || c == '"'));
        }
        if line.trim_start().starts_with('#') || line.contains(" #") {
            found.push(line);
        }
    }
    found
}

/// The directory of the binaries under test, once `portd` and `port-runner` are built
/// there too: cargo builds only this crate's own binaries (`port`) for its tests.
fn binaries() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = Path::new(env!("CARGO_BIN_EXE_port"))
            .parent()
            .expect("the port binary is in a directory")
            .to_path_buf();
        let profile = dir
            .file_name()
            .and_then(|name| name.to_str())
            .expect("a profile directory")
            .to_owned();
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.current_dir(&workspace).args([
            "build",
            "-p",
            "port-server",
            "-p",
            "port-runner",
            "--bins",
        ]);
        if profile != "debug" {
            build.args(["--profile", &profile]);
        }
        let output = build.output().expect("cargo runs");
        assert!(
            output.status.success(),
            "cargo build -p port-server -p port-runner failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        for name in ["portd", "port", "port-runner"] {
            assert!(
                dir.join(name).is_file(),
                "{name} is not in {} after cargo build",
                dir.display()
            );
        }
        dir
    })
}

/// A free loopback port (free when this returns; nothing else here binds ports).
fn free_port() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port")
}

/// The process group of the script: it and everything it started in the background.
/// Killed when dropped, so nothing outlives the test, whatever happened.
struct Group(u32);

impl Group {
    fn signal(&self, signal: &str) {
        // bash's `kill` takes a process group as `-PGID`, portably.
        let _ = Command::new("bash")
            .args(["-c", &format!("kill -{signal} -- -{} 2>/dev/null", self.0)])
            .status();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal("KILL");
    }
}

/// Reads a pipe to its end on a thread; the text arrives on the channel once every
/// process holding the pipe has closed it.
fn drain(mut pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = sender.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    receiver
}

/// What the script did.
struct Finished {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
    /// Whether its background processes had all stopped on their own by the time it
    /// and `STOP_TIMEOUT` were over.
    stopped: bool,
}

/// Waits for the script, then for its background processes (the pipes close when the
/// last of them exits); kills the group when either takes too long.
fn finish(mut child: Child, group: &Group) -> Finished {
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the script is waited for") {
            break Some(status);
        }
        if Instant::now() > deadline {
            group.signal("KILL");
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !status.is_some_and(|s| s.success()) {
        group.signal("TERM");
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    let mut stopped = true;
    let mut collect = |receiver: Receiver<String>| {
        let left = deadline.saturating_duration_since(Instant::now());
        receiver.recv_timeout(left).unwrap_or_else(|_| {
            stopped = false;
            group.signal("KILL");
            receiver.recv().unwrap_or_default()
        })
    };
    let stdout = collect(stdout);
    let stderr = collect(stderr);
    Finished {
        status,
        stdout,
        stderr,
        stopped,
    }
}

/// Finds `credentials.json` (in the data directory the quickstart made) under `dir`.
fn find_credentials(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)
        .expect("a readable directory")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() && depth > 0 {
            found.extend(find_credentials(&path, depth - 1));
        } else if path.file_name().is_some_and(|n| n == "credentials.json") {
            found.push(path);
        }
    }
    found
}

/// Whether `text` starts with a time as `port` prints it: `2026-11-27 03:47:40`.
fn starts_with_time(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 19
        && bytes[..19].iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b' ',
            13 | 16 => *b == b':',
            _ => b.is_ascii_digit(),
        })
}

/// A line of `port` output with its variable parts replaced: times, and a line that
/// is a run id.
fn normalize(line: &str) -> String {
    let line = line.trim_end();
    let is_run_id = line
        .strip_prefix("r_")
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()));
    if is_run_id {
        return "<run id>".to_owned();
    }
    let mut normalized = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if starts_with_time(rest) {
            normalized.push_str("<time>");
            rest = &rest[19..];
        } else {
            normalized.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    normalized
}

/// The first line of the sample that is not in `output`, where the sample's lines
/// must appear in order (other lines may come between them); `None` when all are.
fn missing_sample_line(sample: &str, output: &str) -> Option<String> {
    let printed: Vec<String> = output.lines().map(normalize).collect();
    let mut from = 0;
    for line in sample.lines().filter(|l| !l.trim().is_empty()) {
        let wanted = normalize(line);
        match printed[from..].iter().position(|p| *p == wanted) {
            Some(at) => from += at + 1,
            None => return Some(line.to_owned()),
        }
    }
    None
}

async fn log_lines(client: &PortClient, run: &Run) -> Vec<String> {
    client
        .logs(&run.id, 0, 50)
        .await
        .expect("the run's logs")
        .into_iter()
        .map(|log| log.message)
        .collect()
}

/// Checks the runs, the entity and the audit log the quickstart left, through the SDK
/// against a portd restarted on its data directory.
async fn check_what_the_runs_did(data_dir: &Path, credentials: &Value) {
    let server = port_server::server::start(Config {
        listen: "127.0.0.1:0".into(),
        data_dir: data_dir.to_path_buf(),
        print_bootstrap_credentials: false,
        ..Config::default()
    })
    .await
    .expect("portd starts again on the quickstart's data directory");
    assert!(
        server.bootstrap_credentials().is_none(),
        "the data directory already had credentials"
    );
    let client = PortClient::builder()
        .base_url(server.api_url())
        .credentials(
            credentials["clientId"].as_str().expect("clientId"),
            credentials["clientSecret"].as_str().expect("clientSecret"),
        )
        .build()
        .expect("a client");

    let runs = client
        .list_runs(&RunQuery::default())
        .await
        .expect("the runs")
        .runs;
    assert_eq!(runs.len(), 2, "{runs:?}");
    let of = |action: &str| {
        runs.iter()
            .find(|r| r.action.identifier == action)
            .unwrap_or_else(|| panic!("no run of {action}: {runs:?}"))
    };
    let (create, deploy) = (of("create_microservice"), of("deploy_microservice"));

    // CREATE: the script's logs, link and summary, and the entity bound to the run.
    assert_eq!(create.status.as_str(), "SUCCESS", "{create:?}");
    assert!(create.entity.is_none(), "{create:?}");
    assert_eq!(create.properties["name"], "my-microservice");
    assert_eq!(create.properties["region"], "eu-west-1");
    assert_eq!(
        create.link,
        ["https://github.com/actions/toolkit/actions/runs/3617893813"]
    );
    assert_eq!(
        create.summary.as_deref(),
        Some("my-microservice is ready in eu-west-1")
    );
    assert_eq!(
        log_lines(&client, create).await,
        [
            "creating my-microservice in eu-west-1",
            "new entity: my-microservice",
            "New entity created!",
        ]
    );
    let audits = client
        .audit_log(&create.id)
        .await
        .expect("the create run's audit log");
    assert_eq!(audits.len(), 1, "{audits:?}");
    let audit = &audits[0];
    assert_eq!(audit.identifier.as_deref(), Some("my-microservice"));
    assert_eq!(audit.resource_type.as_deref(), Some("entity"));
    assert_eq!(audit.action.as_deref(), Some("CREATE"));
    assert_eq!(audit.status.as_deref(), Some("SUCCESS"));
    let context = audit.context.as_ref().expect("the audit's context");
    assert_eq!(context["blueprint"], "microservice");
    assert_eq!(context["runId"], create.id.as_str());
    let entity = client
        .get_entity("microservice", "my-microservice")
        .await
        .expect("the entity");
    assert_eq!(entity.title.as_deref(), Some("my-microservice"));
    assert_eq!(entity.properties["region"], "eu-west-1");

    // DAY-2: on the entity, with its own logs, link and summary.
    assert_eq!(deploy.status.as_str(), "SUCCESS", "{deploy:?}");
    assert_eq!(
        deploy.entity.as_ref().map(|e| e.identifier.as_str()),
        Some("my-microservice")
    );
    assert_eq!(deploy.properties["environment"], "production");
    assert_eq!(
        deploy.link,
        [format!("https://ci.example.com/deployments/{}", deploy.id)]
    );
    assert_eq!(
        deploy.summary.as_deref(),
        Some("my-microservice is live in production")
    );
    assert_eq!(
        log_lines(&client, deploy).await,
        ["deploying my-microservice to production"]
    );

    server.shutdown().await.expect("portd stops");
}

#[test]
fn the_readme_quickstart_runs_as_written() {
    let blocks = quickstart_blocks(README);
    let build: Vec<&Block> = blocks.iter().filter(|b| b.build).collect();
    assert!(
        build.len() == 1 && build[0].lang == "sh" && build[0].text.contains("cargo build"),
        "the quickstart needs one ```sh block marked {BUILD} that builds the binaries: \
         {build:?}"
    );
    let script: String = blocks
        .iter()
        .filter(|b| b.lang == "sh" && !b.build)
        .map(|b| b.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let comments = comment_lines(&script);
    assert!(
        comments.is_empty(),
        "comments in the quickstart's commands break pasting into zsh: {comments:?}"
    );
    assert!(
        script.contains("127.0.0.1:8080"),
        "the runner listens on 127.0.0.1:8080"
    );

    // Free ports instead of 3000 (portd's default; PORTD_LISTEN too, in case the
    // README leaves it implicit) and 8080 (the runner's).
    let (api, runner) = (free_port(), free_port());
    let api_address = api.local_addr().expect("an address").to_string();
    let runner_address = runner.local_addr().expect("an address").to_string();
    drop((api, runner));
    let script = script
        .replace("127.0.0.1:3000", &api_address)
        .replace("127.0.0.1:8080", &runner_address);
    assert!(
        !script.contains(":3000") && !script.contains(":8080"),
        "the quickstart names ports 3000 and 8080 only as 127.0.0.1:PORT:\n{script}"
    );

    let bin = binaries();
    let root = tempfile::tempdir().expect("a temporary directory");
    // The clone the README starts from; `mktemp -d` makes its scratch directory in
    // TMPDIR, the data directory included.
    let clone = root.path().join("clone");
    let tmp = root.path().join("tmp");
    let home = root.path().join("home");
    for dir in [&clone, &tmp, &home] {
        std::fs::create_dir(dir).expect("a directory");
    }
    let script_path = root.path().join("quickstart.sh");
    std::fs::write(&script_path, &script).expect("the script is written");

    let mut command = Command::new("bash");
    command.arg("-euo").arg("pipefail").arg(&script_path);
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("PORT_") || text.starts_with("PORTD_") || text.starts_with("CLICOLOR") {
            command.env_remove(&name);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(
        std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&path)),
    )
    .expect("a PATH");
    let child = command
        .env("PATH", path)
        .env("PORTD_LISTEN", &api_address)
        .env("TMPDIR", &tmp)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("NO_COLOR", "1")
        .current_dir(&clone)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash starts");
    let group = Group(child.id());
    let finished = finish(child, &group);
    drop(group);

    let report = format!(
        "--- script ---\n{script}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        finished.stdout, finished.stderr
    );
    match finished.status {
        None => panic!("the quickstart did not end within {SCRIPT_TIMEOUT:?}\n{report}"),
        Some(status) => assert!(
            status.success(),
            "the quickstart failed: {status}\n{report}"
        ),
    }
    assert!(
        finished.stopped,
        "portd or port-runner still ran {STOP_TIMEOUT:?} after the quickstart's last step\n{report}"
    );
    for sample in blocks.iter().filter(|b| b.lang == "text") {
        if let Some(line) = missing_sample_line(&sample.text, &finished.stdout) {
            panic!(
                "the README's sample output line {line:?} is not in what the quickstart \
                 printed (in this order):\n{}",
                finished.stdout
            );
        }
    }

    let credentials = find_credentials(&tmp, 3);
    assert_eq!(
        credentials.len(),
        1,
        "one credentials.json under TMPDIR: {credentials:?}"
    );
    let text = std::fs::read_to_string(&credentials[0]).expect("credentials.json is readable");
    let credentials_json: Value = serde_json::from_str(&text).expect("credentials.json is JSON");
    let data_dir = credentials[0].parent().expect("the data directory");
    tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(check_what_the_runs_did(data_dir, &credentials_json));
}

#[test]
fn sample_output_is_compared_without_times_and_run_ids() {
    assert_eq!(normalize("r_0Vc8rHbYDrSM9iHR"), "<run id>");
    assert_eq!(
        normalize("2026-11-27 03:47:40  creating my-microservice"),
        "<time>  creating my-microservice"
    );
    assert_eq!(normalize("Status:   SUCCESS  "), "Status:   SUCCESS");
    assert_eq!(
        normalize("Created:     2026-11-27 04:51:36"),
        "Created:     <time>"
    );
    assert_eq!(normalize("été 2026-11-27 04:51"), "été 2026-11-27 04:51");
    assert_eq!(normalize("r_"), "r_");
    let output = "r_2\n2026-11-27 03:47:40  a\nnoise\nStatus:   SUCCESS\n";
    assert_eq!(
        missing_sample_line("r_1\n2020-01-01 00:00:00  a\n\nStatus:   SUCCESS\n", output),
        None
    );
    assert_eq!(
        missing_sample_line("Status:   SUCCESS\n2020-01-01 00:00:00  a\n", output),
        Some("2020-01-01 00:00:00  a".to_owned()),
        "lines out of order are not the sample"
    );
    assert_eq!(
        missing_sample_line("Status:   FAILURE\n", output),
        Some("Status:   FAILURE".to_owned())
    );
}

#[test]
fn comments_are_found_outside_here_documents_only() {
    let script = "cat > a.sh <<'EOF'\n#!/bin/sh\necho a # b\nEOF\nls  # all\n# alone\n\
                  cat <<-\"END\"\n# in\nEND\necho 'no comment'\n";
    assert_eq!(comment_lines(script), ["ls  # all", "# alone"]);
}

#[test]
fn the_build_block_is_found_and_skipped() {
    let readme = "intro\n```sh\nnot this\n```\n<!-- quickstart:begin -->\ntext\n\
                  <!-- quickstart:build -->\n```sh\ncargo build\n```\nmore\n```sh\necho hi\n```\n\
                  ```text\nhi\n```\n<!-- quickstart:end -->\n```sh\nnor this\n```\n";
    let blocks = quickstart_blocks(readme);
    let summary: Vec<(&str, bool, &str)> = blocks
        .iter()
        .map(|b| (b.lang.as_str(), b.build, b.text.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("sh", true, "cargo build\n"),
            ("sh", false, "echo hi\n"),
            ("text", false, "hi\n"),
        ]
    );
}
