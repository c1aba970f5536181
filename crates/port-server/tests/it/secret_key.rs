//! The server key of the real `portd` binary: the key file created 0600 on first start
//! and reused, a malformed `PORTD_SECRET_KEY` refused, `portd secrets rotate-key` with
//! the key file and with environment keys, and a rotation interrupted before its last
//! rename finished at start. After each, the bootstrap client still gets a token, and
//! the database opens with the new key alone.

#![cfg(unix)]

use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use port_core::secret::{Keyring, ServerKey};
use port_store::StoreOptions;
use serde_json::json;

const CLIENT_ID: &str = "key-test-client";
const CLIENT_SECRET: &str = "key-test-secret-0123456789abcdefghijklmnopqrstuvwxyz";

/// Variables of the machine running the tests that would change what portd does.
const CLEARED: [&str; 8] = [
    "PORTD_DATABASE_URL",
    "PORTD_SECRET_KEY",
    "PORTD_PREVIOUS_SECRET_KEY",
    "PORTD_NEW_SECRET_KEY",
    "PORTD_LISTEN",
    "PORTD_LOG_FORMAT",
    "PORTD_DELIVERY_WORKER_ID",
    "RUST_LOG",
];

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn random_key() -> ServerKey {
    ServerKey::from_bytes(rand::random())
}

fn key_in(path: &Path) -> ServerKey {
    ServerKey::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The key files in `dir` (temporary ones included), sorted.
fn key_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("secret.key"))
        .collect();
    names.sort();
    names
}

/// A `portd` command on `data` (and `database`, else SQLite there), started by `sh`
/// under `umask 000` so that the modes seen are the ones portd asked for.
fn portd(data: &Path, database: Option<&str>, keys: &[(&str, String)]) -> Command {
    let mut command = Command::new("sh");
    command
        .args(["-c", "umask 000 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_portd"))
        .env("PORTD_DATA_DIR", data)
        .env("PORTD_BOOTSTRAP_CLIENT_ID", CLIENT_ID)
        .env("PORTD_BOOTSTRAP_CLIENT_SECRET", CLIENT_SECRET)
        .env("PORTD_LOG", "info")
        .stdin(Stdio::null());
    for name in CLEARED {
        command.env_remove(name);
    }
    if let Some(url) = database {
        command.env("PORTD_DATABASE_URL", url);
    }
    for (name, value) in keys {
        command.env(name, value);
    }
    command
}

/// A running `portd`, its stderr in a file.
struct Server {
    child: Child,
    api: String,
    stderr: PathBuf,
}

impl Server {
    fn spawn(
        data: &Path,
        database: Option<&str>,
        keys: &[(&str, String)],
        logs: &tempfile::TempDir,
    ) -> Self {
        let port = free_port();
        let stderr = logs.path().join(format!("portd-{port}.log"));
        let child = portd(data, database, keys)
            .env("PORTD_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            api: format!("http://127.0.0.1:{port}/v1"),
            stderr,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for the server and logs the bootstrap client in.
    async fn token(&mut self) -> String {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(answer) = http
                .post(format!("{}/auth/access_token", self.api))
                .json(&json!({ "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET }))
                .send()
                .await
            {
                let status = answer.status();
                let body: serde_json::Value = answer.json().await.unwrap();
                assert_eq!(status, 200, "{body}\n{}", self.logs());
                return body["accessToken"].as_str().unwrap().to_owned();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("portd exited ({status}):\n{}", self.logs());
            }
            assert!(Instant::now() < deadline, "portd did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, and its logs once it has stopped.
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = self.child.wait().unwrap();
        let logs = self.logs();
        assert!(status.success(), "portd exited with {status}:\n{logs}");
        logs
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts portd, logs the bootstrap client in, stops it; returns its logs.
async fn serve_once(
    data: &Path,
    database: Option<&str>,
    keys: &[(&str, String)],
    logs: &tempfile::TempDir,
) -> String {
    let mut server = Server::spawn(data, database, keys, logs);
    server.token().await;
    server.stop()
}

/// Runs portd to its end (a refused start, a subcommand).
fn run(command: &mut Command) -> (Output, String, String) {
    let output = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

fn rotate_key(data: &Path, database: Option<&str>, keys: &[(&str, String)]) -> String {
    let (output, stdout, stderr) = run(portd(data, database, keys).args(["secrets", "rotate-key"]));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    stdout
}

/// How many secrets a store opened with `keyring` alone has to re-seal; an error when
/// one is sealed with a key the ring lacks.
async fn reseal_with(url: &str, keyring: Keyring) -> Result<u64, String> {
    let options = StoreOptions {
        keyring: Some(keyring),
        ..StoreOptions::default()
    };
    let store = port_store::open(url, &options).await.unwrap();
    let resealed = store.reseal_secrets().await.map_err(|e| e.to_string());
    store.close().await;
    resealed
}

fn sqlite(data: &Path) -> String {
    format!("sqlite://{}", data.join("portd.db").display())
}

#[tokio::test]
async fn the_first_start_creates_a_private_key_file_that_later_starts_reuse() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let logs = tempfile::tempdir().unwrap();
    let first = serve_once(&data, None, &[], &logs).await;
    let path = data.join("secret.key");
    assert_eq!(mode(&path), 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    let key = ServerKey::parse(&text).unwrap();
    assert!(first.contains("created the server key"), "{first}");
    assert!(first.contains(key.id()), "the key's id is logged:\n{first}");
    assert!(!first.contains(text.trim()), "the key is never logged");

    let second = serve_once(&data, None, &[], &logs).await;
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "reused");
    assert!(second.contains(key.id()), "{second}");
    assert!(!second.contains("created the server key"), "{second}");
    assert!(!second.contains(text.trim()));
    // The credential is sealed with that key: it alone opens everything.
    assert_eq!(reseal_with(&sqlite(&data), Keyring::new(key)).await, Ok(0));
    assert_eq!(key_files(&data), ["secret.key"]);
}

#[tokio::test]
async fn a_malformed_secret_key_stops_the_start_with_a_clear_message() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    // A real key cut short: the kind of mistake whose text must not be echoed.
    let cut_short = random_key().to_text()[..40].to_owned();
    let (output, stdout, stderr) =
        run(
            portd(&data, None, &[("PORTD_SECRET_KEY", cut_short.clone())])
                .env("PORTD_LISTEN", format!("127.0.0.1:{}", free_port())),
        );
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("PORTD_SECRET_KEY is not a server key")
            && stderr.contains("64 hexadecimal digits or in base64"),
        "{stderr}"
    );
    assert!(!stderr.contains(&cut_short) && !stdout.contains(&cut_short));
    assert!(
        !data.join("secret.key").exists() && !data.join("portd.db").exists(),
        "nothing was created with a key that is not the configured one"
    );
}

#[tokio::test]
async fn rotate_key_on_a_stopped_portd_replaces_the_key_file() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let logs = tempfile::tempdir().unwrap();
    serve_once(&data, None, &[], &logs).await;
    let path = data.join("secret.key");
    let old_text = std::fs::read_to_string(&path).unwrap();
    let old = ServerKey::parse(&old_text).unwrap();

    let printed = rotate_key(&data, None, &[]);
    let new_text = std::fs::read_to_string(&path).unwrap();
    let new = ServerKey::parse(&new_text).unwrap();
    assert_ne!(new, old, "a new key");
    assert_eq!(mode(&path), 0o600);
    assert!(
        printed.contains("re-sealed 1 secret(s)")
            && printed.contains(new.id())
            && printed.contains(old.id()),
        "{printed}"
    );
    assert!(!printed.contains(old_text.trim()) && !printed.contains(new_text.trim()));
    assert_eq!(
        key_files(&data),
        ["secret.key"],
        "no secret.key.next or temporary file is left"
    );
    // Everything is sealed with the new key; the old one opens nothing any more.
    let url = sqlite(&data);
    assert_eq!(reseal_with(&url, Keyring::new(new.clone())).await, Ok(0));
    let refused = reseal_with(&url, Keyring::new(old)).await.unwrap_err();
    assert!(refused.contains(new.id()), "{refused}");

    let restarted = serve_once(&data, None, &[], &logs).await;
    assert!(restarted.contains(new.id()), "{restarted}");
}

#[tokio::test]
async fn a_rotation_interrupted_before_its_rename_is_finished_at_start() {
    let root = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    // Interrupted before the database was re-sealed, then after.
    for resealed_before_the_crash in [false, true] {
        let data = root
            .path()
            .join(format!("data-{resealed_before_the_crash}"));
        serve_once(&data, None, &[], &logs).await;
        let old = key_in(&data.join("secret.key"));
        let new = random_key();
        let mut next = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(data.join("secret.key.next"))
            .unwrap();
        std::io::Write::write_all(&mut next, new.to_text().as_bytes()).unwrap();
        drop(next);
        let url = sqlite(&data);
        if resealed_before_the_crash {
            let ring = Keyring::new(new.clone()).with_previous(old.clone());
            assert_eq!(reseal_with(&url, ring).await, Ok(1));
        }

        let finished = serve_once(&data, None, &[], &logs).await;
        assert!(
            finished.contains("the server key is rotated") && finished.contains(new.id()),
            "{finished}"
        );
        assert_eq!(key_in(&data.join("secret.key")), new);
        assert!(!data.join("secret.key.next").exists());
        assert_eq!(mode(&data.join("secret.key")), 0o600);
        assert_eq!(reseal_with(&url, Keyring::new(new.clone())).await, Ok(0));
        // And portd starts again with the new key alone.
        serve_once(&data, None, &[], &logs).await;
    }
}

#[tokio::test]
async fn environment_keys_rotate_across_restarts_and_with_rotate_key() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let logs = tempfile::tempdir().unwrap();
    let [k1, k2, k3] = [random_key(), random_key(), random_key()];
    let hex = |key: &ServerKey| {
        // Both written forms are accepted; use hexadecimal here.
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(key.to_text())
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let first = serve_once(&data, None, &[("PORTD_SECRET_KEY", hex(&k1))], &logs).await;
    assert!(first.contains(k1.id()), "{first}");
    assert!(
        !data.join("secret.key").exists(),
        "no key file beside an environment key"
    );

    // Without the new key, rotate-key says where it comes from.
    let (output, stdout, stderr) =
        run(portd(&data, None, &[("PORTD_SECRET_KEY", k1.to_text())])
            .args(["secrets", "rotate-key"]));
    assert!(!output.status.success(), "{stdout}");
    assert!(stderr.contains("PORTD_NEW_SECRET_KEY"), "{stderr}");

    let printed = rotate_key(
        &data,
        None,
        &[
            ("PORTD_SECRET_KEY", k1.to_text()),
            ("PORTD_NEW_SECRET_KEY", k2.to_text()),
        ],
    );
    assert!(
        printed.contains(k2.id()) && printed.contains("PORTD_PREVIOUS_SECRET_KEY"),
        "{printed}"
    );
    assert!(!printed.contains(&k1.to_text()) && !printed.contains(&k2.to_text()));

    // A replica still on the old key alone cannot read the secrets: it does not start.
    let (output, _, stderr) = run(portd(&data, None, &[("PORTD_SECRET_KEY", k1.to_text())])
        .env("PORTD_LISTEN", format!("127.0.0.1:{}", free_port())));
    assert!(!output.status.success());
    assert!(stderr.contains(k2.id()), "names the key it lacks: {stderr}");

    // The rolling way: the new key current, the old one previous, re-sealed at start.
    serve_once(
        &data,
        None,
        &[
            ("PORTD_SECRET_KEY", k3.to_text()),
            ("PORTD_PREVIOUS_SECRET_KEY", k2.to_text()),
        ],
        &logs,
    )
    .await;
    serve_once(&data, None, &[("PORTD_SECRET_KEY", k3.to_text())], &logs).await;
    assert_eq!(reseal_with(&sqlite(&data), Keyring::new(k3)).await, Ok(0));
}

#[tokio::test]
async fn rotate_key_against_postgresql() {
    let Ok(base_url) = std::env::var("PORT_TEST_DATABASE_URL") else {
        println!("skipped: PORT_TEST_DATABASE_URL not set");
        return;
    };
    let schema = port_store::ScratchSchema::create(&base_url, "secret_key")
        .await
        .unwrap();
    let url = schema.url();
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let logs = tempfile::tempdir().unwrap();
    serve_once(&data, Some(&url), &[], &logs).await;
    let old = key_in(&data.join("secret.key"));
    rotate_key(&data, Some(&url), &[]);
    let new = key_in(&data.join("secret.key"));
    assert_ne!(new, old);
    assert_eq!(reseal_with(&url, Keyring::new(new)).await, Ok(0));
    serve_once(&data, Some(&url), &[], &logs).await;
    schema.drop_now().await.unwrap();
}
