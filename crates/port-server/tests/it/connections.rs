//! Connections over a real socket: the header read timeout (stalled and trickled
//! heads), the idle keep-alive timeout (never cutting a log stream), and 503 at once
//! beyond the connection cap.

use std::time::{Duration, Instant};

use port_server::Extensions;
use port_server::connections::ConnectionLimits;
use port_server::testing::TestServer;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::hooks::{Api, Receiver, Reply, SseReader};

async fn server(limits: ConnectionLimits) -> TestServer {
    TestServer::start_configured(Extensions::default(), |config| config.connections = limits)
        .await
        .expect("portd starts")
}

fn limits(max_connections: usize, header: u64, idle: u64) -> ConnectionLimits {
    ConnectionLimits {
        max_connections,
        header_read_timeout: Duration::from_secs(header),
        idle_timeout: Duration::from_secs(idle),
        ..ConnectionLimits::default()
    }
}

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.base_url.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection (or `within` passes: `None`); what
/// was read, and when it closed.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> Option<(String, Instant)> {
    let mut read = Vec::new();
    let outcome = tokio::time::timeout(within, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(n) => read.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    outcome
        .ok()
        .map(|closed| (String::from_utf8_lossy(&read).into_owned(), closed))
}

/// Sends one complete request and reads its whole response (by Content-Length).
async fn request(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: portd\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut read = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(
            n > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&read)
        );
        read.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&read).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_trickled_heads_are_closed_at_the_header_timeout() {
    let server = server(limits(64, 1, 30)).await;
    let started = Instant::now();
    let mut silent = connect(&server).await;
    let mut half = connect(&server).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: portd\r\n")
        .await
        .unwrap();
    let mut trickle = connect(&server).await;
    let trickler = tokio::spawn(async move {
        // One byte every 100 ms of a head that never ends: the clock never restarts.
        let head = format!("GET /healthz HTTP/1.1\r\nX-Slow: {}", "a".repeat(100));
        for byte in head.bytes() {
            if trickle.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        until_closed(&mut trickle, Duration::from_secs(5)).await
    });
    for (what, closed) in [
        (
            "silent",
            until_closed(&mut silent, Duration::from_secs(5)).await,
        ),
        (
            "half a head",
            until_closed(&mut half, Duration::from_secs(5)).await,
        ),
        ("trickled", trickler.await.unwrap()),
    ] {
        let (read, at) = closed.unwrap_or_else(|| panic!("{what}: still open after 5 s"));
        let after = at - started;
        assert!(
            after >= Duration::from_millis(900) && after < Duration::from_millis(2500),
            "{what}: closed after {after:?}"
        );
        assert_eq!(read, "", "{what}: no answer to half a request");
    }
    let metrics = reqwest::get(format!("{}/metrics", server.base_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"portd_connections_timed_out_total{reason="header"} 3"#),
        "{metrics}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_cut_at_the_body_read_timeout() {
    let server = server(ConnectionLimits {
        body_read_timeout: Duration::from_secs(1),
        ..limits(64, 10, 30)
    })
    .await;
    let mut slow = connect(&server).await;
    slow.write_all(
        b"POST /v1/auth/access_token HTTP/1.1\r\nHost: portd\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let (reader, mut writer) = slow.into_split();
    let trickler = tokio::spawn(async move {
        for byte in br#"{"clientId": "someone", "clientSecret": ""#.iter().cycle() {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut reader = reader;
    let mut answer = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut answer)).await;
    trickler.abort();
    assert!(
        closed.is_ok(),
        "the slow body was still being read after 5 s"
    );
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_millis(2500),
        "answered after {after:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 422 "), "{answer}");
    assert!(
        answer.contains("the request body could not be read"),
        "{answer}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_close_after_the_idle_timeout() {
    let server = server(limits(64, 10, 1)).await;
    // A connection in use stays open past the idle timeout.
    let mut busy = connect(&server).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let answer = request(&mut busy, "/healthz").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // Once idle, it is closed after about the idle timeout.
    let idle_since = Instant::now();
    let (read, at) = until_closed(&mut busy, Duration::from_secs(5))
        .await
        .expect("closed when idle");
    assert_eq!(read, "");
    let after = at - idle_since;
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_millis(2500),
        "closed after {after:?} idle"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_streams_outlive_the_idle_timeout() {
    let server = server(limits(64, 1, 1)).await;
    let receiver = Receiver::start(vec![Reply::status(200)]).await;
    let api = Api::of(&server).await;
    api.webhook_action("pulled", &receiver.url(), json!({ "agent": true }))
        .await;
    let run_id = api.execute("pulled").await;
    let response = api
        .request(
            reqwest::Method::GET,
            &format!("/actions/runs/{run_id}/logs/stream"),
        )
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = SseReader::new(response);
    // Three idle timeouts without a byte on the stream.
    tokio::time::sleep(Duration::from_secs(3)).await;
    api.add_log(&run_id, json!({ "message": "still here" }))
        .await;
    // The run's status comes first; then the log line.
    let event = loop {
        let event = stream.expect_next().await;
        if event.event == "log" {
            break event;
        }
    };
    assert_eq!(event.data["message"], "still here");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_a_503_at_once() {
    let server = server(limits(4, 2, 30)).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = connect(&server).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .unwrap();
        held.push(stream);
    }
    // Accepted in order: let the server take the four before the fifth.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = Instant::now();
    let mut over = connect(&server).await;
    over.write_all(b"GET /healthz HTTP/1.1\r\nHost: portd\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = until_closed(&mut over, Duration::from_secs(5))
        .await
        .expect("the connection over the cap is closed");
    assert!(
        closed - asked < Duration::from_millis(500),
        "answered after {:?}",
        closed - asked
    );
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(
        head.contains("retry-after: 2") && head.contains("connection: close"),
        "{head}"
    );
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["ok"], false);
    assert_eq!(body["error"], "service_unavailable");
    // The held ones time out, and the server takes connections again.
    for mut stream in held {
        assert!(
            until_closed(&mut stream, Duration::from_secs(5))
                .await
                .is_some()
        );
    }
    let mut again = connect(&server).await;
    let answer = request(&mut again, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(server.state().health().ping().await.is_ok());
    server.shutdown().await.unwrap();
}
