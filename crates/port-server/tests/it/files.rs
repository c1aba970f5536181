//! The data directory and the files in it are their owner's only, whatever the umask:
//! the real binary started under `umask 000`.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

const CLIENT_ID: &str = "files-client";
const CLIENT_SECRET: &str = "files-secret-0123456789abcdefghijklmnopqrstuvwxyz";

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

/// `portd` started by `sh` after `umask 000`, on SQLite in `data`.
fn portd_under_umask_000(data: &Path, port: u16, stderr: Stdio) -> Child {
    Command::new("sh")
        .args(["-c", "umask 000 && exec \"$0\""])
        .arg(env!("CARGO_BIN_EXE_portd"))
        .env("PORTD_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTD_DATA_DIR", data)
        .env("PORTD_BOOTSTRAP_CLIENT_ID", CLIENT_ID)
        .env("PORTD_BOOTSTRAP_CLIENT_SECRET", CLIENT_SECRET)
        .env("PORTD_LOG", "warn")
        .env_remove("PORTD_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
}

#[tokio::test]
async fn data_stays_private_under_a_permissive_umask() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let port = free_port();
    let mut child = portd_under_umask_000(&data, port, Stdio::null());
    let api = format!("http://127.0.0.1:{port}/v1");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let token = loop {
        let login = http
            .post(format!("{api}/auth/access_token"))
            .json(&json!({ "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET }))
            .send()
            .await;
        if let Ok(answer) = login
            && answer.status() == 200
        {
            let body: serde_json::Value = answer.json().await.unwrap();
            break body["accessToken"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "portd did not start");
        assert!(child.try_wait().unwrap().is_none(), "portd exited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // A write, so the WAL and its index hold something.
    let created = http
        .post(format!("{api}/blueprints"))
        .bearer_auth(&token)
        .json(&json!({ "identifier": "files", "title": "Files", "schema": { "properties": {} } }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    let mut seen = vec![("data directory".to_owned(), mode(&data))];
    for name in [
        "portd.db",
        "portd.db-wal",
        "portd.db-shm",
        "credentials.json",
        "worker-id",
    ] {
        seen.push((name.to_owned(), mode(&data.join(name))));
    }
    terminate(&mut child);
    let expected: Vec<(String, u32)> = seen
        .iter()
        .map(|(name, _)| {
            let private = if name == "data directory" {
                0o700
            } else {
                0o600
            };
            (name.clone(), private)
        })
        .collect();
    assert_eq!(
        seen.iter()
            .map(|(n, m)| format!("{n} {m:03o}"))
            .collect::<Vec<_>>(),
        expected
            .iter()
            .map(|(n, m)| format!("{n} {m:03o}"))
            .collect::<Vec<_>>()
    );
    // Nothing else appeared beside them.
    let mut names: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
}

#[tokio::test]
async fn an_open_data_directory_of_older_portd_files_is_tightened() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    // What an older portd left under umask 022.
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("worker-id"), "portd-older\n").unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        data.join("worker-id"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let port = free_port();
    let mut child = portd_under_umask_000(&data, port, Stdio::null());
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "portd did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let modes = (
        mode(&data),
        mode(&data.join("worker-id")),
        mode(&data.join("portd.db")),
    );
    terminate(&mut child);
    assert_eq!(modes, (0o700, 0o600, 0o600));
}

#[tokio::test]
async fn an_open_data_directory_holding_other_files_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("shared");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("someone-elses.txt"), "").unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut child = portd_under_umask_000(&data, free_port(), Stdio::piped());
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            terminate(&mut child);
            panic!("portd started in an open directory holding another's files");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("open to other users (mode 755)")
            && stderr.contains("someone-elses.txt")
            && stderr.contains("chmod 700"),
        "{stderr}"
    );
    assert_eq!(mode(&data), 0o755, "left as it was");
    assert!(!data.join("portd.db").exists());
}
