//! The `portd` binary: first start in an empty directory prints credentials, serves
//! them, and exits 0 on SIGTERM.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[cfg(unix)]
#[tokio::test]
async fn first_start_prints_credentials_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portd"))
        .current_dir(dir.path())
        .env("PORTD_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("PORTD_DATA_DIR")
        .env_remove("PORTD_DATABASE_URL")
        .env_remove("PORTD_BOOTSTRAP_CLIENT_ID")
        .env_remove("PORTD_BOOTSTRAP_CLIENT_SECRET")
        .env_remove("PORTD_WEBHOOK_DESTINATIONS")
        .env("PORTD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // The credentials are printed before the server reports ready.
    let stdout = child.stdout.take().unwrap();
    let (client_id, client_secret, rest) = tokio::task::spawn_blocking(move || {
        let mut id = None;
        let mut secret = None;
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(v) = line.strip_prefix("PORT_CLIENT_ID=") {
                id = Some(v.to_owned());
            }
            if let Some(v) = line.strip_prefix("PORT_CLIENT_SECRET=") {
                secret = Some(v.to_owned());
            }
            if id.is_some() && secret.is_some() {
                break;
            }
        }
        (
            id.expect("client id printed"),
            secret.expect("client secret printed"),
            lines,
        )
    })
    .await
    .unwrap();
    // Keep reading, so the server never writes to a closed pipe.
    let drain = std::thread::spawn(move || rest.map_while(Result::ok).collect::<Vec<String>>());
    assert_eq!(client_id.len(), 32);
    assert_eq!(client_secret.len(), 64);
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(".portd/credentials.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["clientId"], json!(client_id));
    assert_eq!(
        saved["apiUrl"],
        json!(format!("http://127.0.0.1:{port}/v1"))
    );

    let api = format!("http://127.0.0.1:{port}/v1");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let token = loop {
        match http
            .post(format!("{api}/auth/access_token"))
            .json(&json!({ "clientId": client_id, "clientSecret": client_secret }))
            .send()
            .await
        {
            Ok(response) => {
                let body: Value = response.json().await.unwrap();
                break body["accessToken"].as_str().unwrap().to_owned();
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("portd did not answer: {e}"),
        }
    };
    let created = http
        .post(format!("{api}/blueprints"))
        .bearer_auth(&token)
        .json(&crate::support::microservice_blueprint())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("portd did not stop after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    assert!(exit.success(), "portd exited with {exit}");
    let printed_later = drain.join().unwrap();
    assert!(
        printed_later.iter().all(|l| !l.contains(&client_secret)),
        "the secret is printed once"
    );

    // A second start finds the credentials and prints none.
    let second = Command::new(env!("CARGO_BIN_EXE_portd"))
        .current_dir(dir.path())
        .args(["credentials", "create"])
        .env_remove("PORTD_DATA_DIR")
        .env_remove("PORTD_DATABASE_URL")
        .env("PORTD_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let printed: Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(printed["orgId"], saved["orgId"]);
    assert_ne!(printed["clientId"], saved["clientId"]);
}
