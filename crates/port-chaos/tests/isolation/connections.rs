//! Stalled and trickled connections: an attacker opens many more raw TCP connections
//! than portd takes, each sending half a request head and stalling, some trickling a
//! byte at a time (slowloris). portd runs with an open-files limit of 256 (`ulimit -n`),
//! so the attack is sized by portd's descriptors, not the test's: after the reserve for
//! the store, deliveries, template workers and refusals (224 with two workers) it takes
//! about 30 connections, and says so in its log. The victim keeps its latency and its
//! SQLite writes keep working; connections over the cap are answered 503 at once; held
//! ones are closed at the header timeout.

use std::time::{Duration, Instant};

use anyhow::Result;
use port_chaos::isolation::{Tenants, TenantsOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// portd's open-files limit in this test.
const OPEN_FILES: u64 = 256;
/// Connections that stall after half a head: more than portd has descriptors.
const STALLED: usize = 300;
/// Connections that trickle a byte every 200 ms.
const TRICKLING: usize = 10;
/// PORTD_HEADER_READ_TIMEOUT_SECS in this test.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// `text` without ANSI colour sequences (`ESC [ … m`), which portd's log may hold.
fn without_colours(text: &str) -> String {
    let mut plain = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// How one attacking connection ended.
#[derive(Debug)]
enum Ending {
    /// Answered 503 with Port's envelope and `Retry-After`, then closed.
    Refused(Duration),
    /// Closed without an answer.
    Closed(Duration),
    /// Still open when the attacker gave up.
    Open,
    /// Anything else (another answer, a malformed one).
    Other(String),
}

async fn attack_one(address: String, trickle: bool) -> Result<Ending> {
    let mut stream = TcpStream::connect(&address).await?;
    // From the established connection: a full backlog delays the handshake itself
    // (the kernel drops the SYN and the client sends it again a second later).
    let started = Instant::now();
    let head = "GET /v1/actions/runs HTTP/1.1\r\nHost: portd\r\nAuthorization: Bearer ";
    let (mut reader, mut writer) = stream.split();
    let write = async {
        if trickle {
            for byte in head.bytes().cycle() {
                if writer.write_all(&[byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        } else {
            let _ = writer.write_all(head.as_bytes()).await;
            std::future::pending::<()>().await;
        }
    };
    let read = async {
        let mut answer = Vec::new();
        let mut buffer = [0u8; 2048];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => return answer,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    };
    let ending = tokio::select! {
        () = write => unreachable!("writing never ends by itself"),
        answer = tokio::time::timeout(HEADER_TIMEOUT + Duration::from_secs(5), read) => answer,
    };
    let Ok(answer) = ending else {
        return Ok(Ending::Open);
    };
    let after = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    Ok(if text.is_empty() {
        Ending::Closed(after)
    } else if text.starts_with("HTTP/1.1 503 ")
        && text.contains("\r\nretry-after: 2\r\n")
        && text.contains(r#""error":"service_unavailable""#)
    {
        Ending::Refused(after)
    } else {
        Ending::Other(text.into_owned())
    })
}

/// What the attack saw.
#[derive(Debug, Default)]
struct Outcome {
    refused: Vec<Duration>,
    closed: Vec<Duration>,
    open: usize,
    other: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_beyond_the_cap_are_refused_and_timed_out() {
    let options = TenantsOptions::default().open_files_limit(OPEN_FILES).env(
        "PORTD_HEADER_READ_TIMEOUT_SECS",
        &HEADER_TIMEOUT.as_secs().to_string(),
    );
    let mut tenants = Tenants::start(options).await.unwrap();
    // portd warns that it lowered its cap (1024 by default) to fit the limit.
    let log = without_colours(&tenants.portd.log_tail(200));
    let cap: usize = log
        .lines()
        .find(|l| l.contains("lowered the connection cap"))
        .and_then(|l| {
            l.split("allowed=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no lowered cap in portd's log:\n{log}"));
    assert!(
        (16..=44).contains(&cap),
        "a cap of {cap} under a limit of {OPEN_FILES}"
    );
    let address = tenants.base_url().trim_start_matches("http://").to_owned();
    let report = tenants
        .under_attack("stalled connections", |_attacker| async move {
            let mut attackers = Vec::new();
            // The trickling ones first, so that they are among those portd takes.
            for n in 0..TRICKLING + STALLED {
                let trickle = n < TRICKLING;
                attackers.push(tokio::spawn(attack_one(address.clone(), trickle)));
            }
            let mut outcome = Outcome::default();
            for attacker in attackers {
                match attacker.await?? {
                    Ending::Refused(after) => outcome.refused.push(after),
                    Ending::Closed(after) => outcome.closed.push(after),
                    Ending::Open => outcome.open += 1,
                    Ending::Other(text) => outcome.other.push(text),
                }
            }
            Ok(outcome)
        })
        .await
        .unwrap();
    report.assert_held().unwrap();
    let outcome = &report.outcome;
    let slowest = |times: &[Duration]| times.iter().max().copied().unwrap_or_default();
    port_chaos::visible(&format!(
        "stalled connections (cap {cap} under ulimit -n {OPEN_FILES}): {} refused with 503 (slowest {:?}), {} closed without an answer \
         (slowest {:?}), {} still open, {} other",
        outcome.refused.len(),
        slowest(&outcome.refused),
        outcome.closed.len(),
        slowest(&outcome.closed),
        outcome.open,
        outcome.other.len()
    ));
    assert!(outcome.other.is_empty(), "{:?}", &outcome.other[..1]);
    assert_eq!(
        outcome.open, 0,
        "connections left open past the header timeout"
    );
    // portd held at most its cap of connections until the header timeout.
    let held: Vec<&Duration> = outcome
        .closed
        .iter()
        .filter(|after| **after >= HEADER_TIMEOUT - Duration::from_millis(200))
        .collect();
    let promptly = Duration::from_millis(1000);
    // All it could take but the few the victim and the harness use.
    assert!(
        held.len() <= cap && held.len() + 5 >= cap,
        "{} connections were held under a cap of {cap}",
        held.len()
    );
    // The others were all answered 503.
    assert_eq!(
        outcome.refused.len() + held.len(),
        TRICKLING + STALLED,
        "{outcome:?}"
    );
    assert!(slowest(&outcome.refused) < promptly, "{outcome:?}");
    for after in &outcome.closed {
        let at_once = *after < promptly;
        let at_timeout = *after >= HEADER_TIMEOUT - Duration::from_millis(200)
            && *after < HEADER_TIMEOUT + Duration::from_millis(1500);
        assert!(at_once || at_timeout, "a connection closed after {after:?}");
    }
    // portd still takes connections and writes: a fresh client logs in and executes.
    let fresh = port_chaos::api::Api::login(
        &tenants.base_url(),
        port_chaos::isolation::VICTIM_CLIENT_ID,
        port_chaos::isolation::VICTIM_CLIENT_SECRET,
    )
    .await
    .unwrap();
    let executed = fresh
        .post(
            &format!("/v1/actions/{}/runs", port_chaos::isolation::PROBE_ACTION),
            &serde_json::json!({ "properties": { "note": "after" } }),
        )
        .await
        .unwrap();
    assert_eq!(executed.status, 202, "{}", executed.body);
    let metrics = reqwest::get(format!("{}/metrics", tenants.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_default()
    };
    assert!(counter("portd_connections_refused_total ") > 0, "{metrics}");
    assert!(
        counter(r#"portd_connections_timed_out_total{reason="header"} "#) >= held.len() as u64,
        "{metrics}"
    );
}
