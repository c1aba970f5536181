//! Secrets end to end against the real binary, on SQLite and on PostgreSQL: secret inputs
//! leave portd encrypted the way Port encrypts them (and Python's `cryptography`, used
//! the way port-agent decrypts, reads them back), organization secrets reach the
//! receiver only in what is sent, and no secret value is in any answer, in the
//! database (its files, a dump) or in portd's output at `trace`.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Uri};
use base64::Engine as _;
use port_chaos::api::Api;
use port_chaos::portd::{Portd, PortdSettings};
use port_store::ScratchSchema;
use serde_json::{Value, json};

const CLIENT_ID: &str = "client-for-secrets";
const CLIENT_SECRET: &str = "cs-Sx4Dc9Fv2Gb7Hn1Jm6Kl0Qw5Er8Ty3Ui";
const INPUT: &str = "in-Qz7Wx2Ec9Rv4Tb1Yn8Um3Ik6Ol5Pa0Sd";
const API_TOKEN: &str = "os-Lk3Jh8Gf2Ds7Ap1Mn6Bv0Cx5Zq9We4Rt";
const API_TOKEN_NEXT: &str = "os-Nx2Bc7Vz4Lk9Jh1Gf6Ds3Ap8Qw0Er5Ty";
const URL_KEY: &str = "uk-Po9Iu4Yt7Re2Wq5Ml8Nk1Jb6Hv3Gc0Fx";

fn every_secret() -> Vec<(&'static str, String)> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    vec![
        ("the client secret", CLIENT_SECRET.to_owned()),
        ("the secret input", INPUT.to_owned()),
        ("an organization secret", API_TOKEN.to_owned()),
        ("its base64 form", b64(API_TOKEN)),
        (
            "an organization secret's new value",
            API_TOKEN_NEXT.to_owned(),
        ),
        ("an organization secret read by the URL", URL_KEY.to_owned()),
    ]
}

fn assert_holds_no_secret(what: &str, text: &str) {
    for (name, value) in every_secret() {
        assert!(!text.contains(&value), "{what} holds {name}");
    }
}

/// One request as the backend received it.
#[derive(Debug, Clone)]
struct Captured {
    uri: String,
    authorization: String,
    body: Value,
}

/// A backend that records what it receives and, like careless ones do, echoes the
/// `Authorization` header in its answer (portd must mask it in what it keeps).
struct Backend {
    url: String,
    received: Arc<Mutex<Vec<Captured>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    async fn start() -> Self {
        let received: Arc<Mutex<Vec<Captured>>> = Arc::default();
        let sink = received.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let authorization = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Captured {
                        uri: uri.to_string(),
                        authorization: authorization.clone(),
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    });
                axum::Json(json!({ "seen": authorization }))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            received,
            task,
        }
    }

    async fn wait_for(&self, count: usize) -> Vec<Captured> {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let received = self
                .received
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if received.len() >= count {
                return received;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the backend received {} requests, not {count}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Python with the `cryptography` package: the machine's, else a virtualenv of the
/// target directory with it installed (pinned).
fn python_with_cryptography() -> String {
    let has = |python: &str| {
        Command::new(python)
            .args(["-c", "import cryptography"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has("python3") {
        return "python3".to_owned();
    }
    let venv = port_chaos::portd::target_dir().unwrap().join("venv-crypto");
    let python = venv.join("bin/python").display().to_string();
    if !has(&python) {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(made.success(), "python3 -m venv");
        let installed = Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "cryptography==48.0.0",
            ])
            .status()
            .unwrap();
        assert!(installed.success(), "pip install cryptography");
    }
    python
}

/// Decrypts a secret input as port-agent's `decrypt_field` does: base64, IV = the first
/// 16 bytes, then ciphertext and tag, AES-256-GCM keyed by the client secret's first
/// 32 bytes (here with `cryptography`'s AESGCM, which takes ciphertext and tag together).
fn decrypt_in_python(client_secret: &str, encrypted: &str) -> String {
    const SCRIPT: &str = r#"
import base64, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
key = sys.stdin.readline().rstrip("\n").encode("utf-8")[:32]
blob = base64.b64decode(sys.stdin.readline().strip())
sys.stdout.write(AESGCM(key).decrypt(blob[:16], blob[16:], None).decode("utf-8"))
"#;
    use std::io::Write as _;
    let mut child = Command::new(python_with_cryptography())
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // On stdin, not in argv: other processes of the machine can read argv.
    write!(
        child.stdin.take().unwrap(),
        "{client_secret}\n{encrypted}\n"
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python could not decrypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn settings(dir: &Path, database_url: Option<String>) -> PortdSettings {
    PortdSettings {
        binary: port_chaos::portd::binary().expect("the portd binary"),
        data_dir: dir.join("data"),
        database_url,
        client_id: CLIENT_ID.to_owned(),
        client_secret: CLIENT_SECRET.to_owned(),
        log_filter: "trace".to_owned(),
        log_file: dir.join("portd.log"),
        env: Vec::new(),
    }
}

/// Runs the secrets workload against a started portd; returns what the answers held.
async fn workload(base: &str) -> String {
    let api = Api::login(base, CLIENT_ID, CLIENT_SECRET).await.unwrap();
    let backend = Backend::start().await;
    let mut answers = String::new();
    for (name, value) in [("API_TOKEN", API_TOKEN), ("URL_KEY", URL_KEY)] {
        let created = api
            .post(
                "/v1/organization/secrets",
                &json!({ "secretName": name, "secretValue": value, "description": "for deploys" }),
            )
            .await
            .unwrap()
            .expect(201, "creating a secret")
            .unwrap();
        assert_eq!(created["secret"]["secretName"], name, "{created:#}");
        answers.push_str(&created.to_string());
    }
    let listed = api
        .get("/v1/organization/secrets")
        .await
        .unwrap()
        .expect(200, "listing secrets")
        .unwrap();
    assert_eq!(
        listed["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["secretName"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["API_TOKEN", "URL_KEY"]
    );
    answers.push_str(&listed.to_string());

    api.post(
        "/v1/actions",
        &json!({
            "identifier": "deploy",
            "title": "Deploy",
            "trigger": {
                "type": "self-service",
                "operation": "CREATE",
                "userInputs": {
                    "properties": {
                        "token": { "type": "string", "encryption": "aes256-gcm", "minLength": 12 },
                        "note": { "type": "string" }
                    },
                    "required": ["token"]
                }
            },
            "invocationMethod": {
                "type": "WEBHOOK",
                "url": format!("{}/hook?key={{{{ .secrets.URL_KEY }}}}", backend.url),
                "headers": { "Authorization": "Bearer {{ .secrets.API_TOKEN }}" },
                "body": {
                    "token": "{{ .inputs.token }}",
                    "basic": "{{ .secrets.API_TOKEN | @base64 }}",
                    "run": "{{ .run.id }}"
                }
            }
        }),
    )
    .await
    .unwrap()
    .expect(201, "creating the action")
    .unwrap();

    let executed = api
        .post(
            "/v1/actions/deploy/runs",
            &json!({ "properties": { "token": INPUT, "note": "hello" } }),
        )
        .await
        .unwrap()
        .expect(202, "executing")
        .unwrap();
    answers.push_str(&executed.to_string());
    let run = executed["run"]["id"].as_str().unwrap().to_owned();
    let encrypted = executed["run"]["properties"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        decrypt_in_python(CLIENT_SECRET, &encrypted),
        INPUT,
        "Python decrypts the secret input portd encrypted"
    );

    let first = backend.wait_for(1).await;
    assert_eq!(first[0].authorization, format!("Bearer {API_TOKEN}"));
    assert!(
        first[0].uri.ends_with(&format!("/hook?key={URL_KEY}")),
        "{}",
        first[0].uri
    );
    assert_eq!(
        first[0].body["basic"],
        base64::engine::general_purpose::STANDARD.encode(API_TOKEN)
    );
    assert_eq!(first[0].body["run"], run.as_str());
    assert_eq!(
        first[0].body["token"], encrypted,
        "the backend gets the secret input encrypted"
    );

    for path in [
        format!("/v1/actions/runs/{run}"),
        format!("/v1/actions/runs/{run}?version=v2"),
        "/v1/actions/runs?version=v2".to_owned(),
        "/v1/actions/runs".to_owned(),
        format!("/v1/actions/runs/{run}/deliveries"),
        format!("/v1/actions/runs/{run}/logs"),
    ] {
        let answer = api.get(&path).await.unwrap().expect(200, &path).unwrap();
        let text = answer.to_string();
        assert!(!text.contains("portdDeferred"), "{path}: {text}");
        answers.push_str(&text);
    }
    let shown = api
        .get(&format!("/v1/actions/runs/{run}?version=v2"))
        .await
        .unwrap()
        .expect(200, "the run")
        .unwrap();
    assert_eq!(
        shown["run"]["payload"]["headers"]["Authorization"], "Bearer {{ .secrets.API_TOKEN }}",
        "a run shows the template of a part that reads secrets: {shown:#}"
    );

    // A new value is what later sends use.
    let patched = api
        .send(
            reqwest::Method::PATCH,
            "/v1/organization/secrets/API_TOKEN",
            Some(&json!({ "secretValue": API_TOKEN_NEXT })),
            &[],
        )
        .await
        .unwrap()
        .expect(200, "patching a secret")
        .unwrap();
    answers.push_str(&patched.to_string());
    api.post(
        "/v1/actions/deploy/runs",
        &json!({ "properties": { "token": INPUT } }),
    )
    .await
    .unwrap()
    .expect(202, "executing again")
    .unwrap();
    let second = backend.wait_for(2).await;
    assert_eq!(second[1].authorization, format!("Bearer {API_TOKEN_NEXT}"));
    answers
}

fn assert_log_clean(dir: &Path) {
    let log = std::fs::read_to_string(dir.join("portd.log")).unwrap();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the log was written at trace"
    );
    assert_holds_no_secret("portd's output at trace", &log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_encrypted_and_out_of_answers_logs_and_the_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), None);
    let mut portd = Portd::spawn(&settings).unwrap();
    portd.ready(Duration::from_secs(60)).await.unwrap();
    let answers = workload(&portd.base_url()).await;
    portd.terminate(Duration::from_secs(20)).unwrap();

    assert_holds_no_secret("the API's answers", &answers);
    assert_log_clean(dir.path());
    // Every byte of the database's files: pages, WAL, freed pages included.
    let mut files = 0;
    for entry in std::fs::read_dir(&settings.data_dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("portd.db") {
            let bytes = std::fs::read(entry.path()).unwrap();
            assert_holds_no_secret(&name, &String::from_utf8_lossy(&bytes));
            files += 1;
        }
    }
    assert!(files > 0, "the database files were read");
    // And a dump, as an operator would take one.
    if let Ok(dump) = Command::new("sqlite3")
        .arg(settings.data_dir.join("portd.db"))
        .arg(".dump")
        .output()
    {
        let text = String::from_utf8_lossy(&dump.stdout);
        assert!(
            text.contains("org_secrets"),
            "the dump has the secrets table"
        );
        assert_holds_no_secret("an SQLite dump", &text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_encrypted_and_out_of_answers_logs_and_the_postgres_database() {
    let Some(base_url) = port_chaos::pg::test_database_url("secrets on PostgreSQL").unwrap() else {
        return;
    };
    let schema = ScratchSchema::create(&base_url, "secrets").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), Some(schema.url()));
    let mut portd = Portd::spawn(&settings).unwrap();
    portd.ready(Duration::from_secs(60)).await.unwrap();
    let answers = workload(&portd.base_url()).await;
    portd.terminate(Duration::from_secs(20)).unwrap();

    assert_holds_no_secret("the API's answers", &answers);
    assert_log_clean(dir.path());
    let dump = Command::new("pg_dump")
        .args(["--data-only", "--schema", schema.name()])
        .arg(&base_url)
        .output()
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(
        text.contains("org_secrets"),
        "the dump has the secrets table"
    );
    assert_holds_no_secret("a PostgreSQL dump", &text);
    schema.drop_now().await.unwrap();
}
