//! Live-log streams (issue 14, item 9): the attacker follows the largest run the API
//! lets it build (about 2 MB of fields) with as many streams as portd allows, some read
//! and some left unread, and writes to it. Before streams had feeds, each log line made
//! every follower re-read and re-serialize the whole run: 500 followers took portd from
//! 84 to 681 MB and one write to 11 s. Now the attacker's extra streams are its own 429,
//! its writes stay quick, portd's memory stays put and the victim keeps its latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use futures::StreamExt as _;
use port_chaos::api::Api;
use port_chaos::isolation::{Tenants, TenantsOptions};
use serde_json::{Value, json};

/// portd's default `PORTD_MAX_STREAMS_PER_ORG`.
const STREAMS_PER_ORG: usize = 100;
/// How many more the attacker tries.
const EXTRA_STREAMS: usize = 20;
/// Streams whose bodies the attacker reads; the others it never reads.
const READ_STREAMS: usize = 20;
/// Log lines and run changes the attacker writes while following.
const LOG_WRITES: usize = 200;
const PATCHES: usize = 3;
/// How much portd's resident memory may grow over the attack.
const MAX_RSS_GROWTH_MIB: u64 = 200;

/// The bounds of port_core::run, in characters.
const SUMMARY_CHARS: usize = 65_536;
const LINKS: usize = 100;
const LINK_CHARS: usize = 4_096;

/// portd's resident memory (`VmRSS`), in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")
}

/// The attacker's run with the most data the API accepts across its properties, links
/// and summary (each at its bound, in multi-byte characters where it counts): about
/// 2 MB. Returns its id and the size of its v2 JSON.
async fn largest_legal_run(attacker: &Api) -> Result<(String, usize)> {
    let action = json!({
        "identifier": "hoard",
        "title": "Hoard",
        "trigger": {
            "type": "self-service",
            "operation": "CREATE",
            "userInputs": { "properties": { "blob": { "type": "string" } } }
        },
        // Nothing is sent anywhere, and the invocation stays small.
        "invocationMethod": {
            "type": "WEBHOOK",
            "url": "http://127.0.0.1:9/never",
            "agent": true,
            "body": { "run": "{{ .run.id }}" }
        }
    });
    attacker
        .post("/v1/actions", &action)
        .await?
        .expect(201, "the action")?;
    // The execute body may hold 1 MiB.
    let blob = "p".repeat(1_000_000);
    let run = attacker
        .post(
            "/v1/actions/hoard/runs",
            &json!({ "properties": { "blob": blob } }),
        )
        .await?
        .expect(202, "the run")?;
    let run_id = run["run"]["id"].as_str().context("a run id")?.to_owned();
    let path = format!("/v1/actions/runs/{run_id}");
    // Each patch body may hold 1 MiB: the links (two bytes a character) in one, the
    // summary (four) in another.
    let links: Vec<String> = (0..LINKS)
        .map(|i| {
            format!(
                "https://ci.example.com/{i:03}/{}",
                "é".repeat(LINK_CHARS - 28)
            )
        })
        .collect();
    patch(attacker, &path, &json!({ "link": links })).await?;
    patch(
        attacker,
        &path,
        &json!({ "summary": "😀".repeat(SUMMARY_CHARS), "statusLabel": "l".repeat(1_024) }),
    )
    .await?;
    // One character more is refused.
    let over = attacker
        .send(
            reqwest::Method::PATCH,
            &path,
            Some(&json!({ "summary": "😀".repeat(SUMMARY_CHARS + 1) })),
            &[],
        )
        .await?;
    ensure!(
        over.status == 422 && over.body["error"] == "invalid_request",
        "{} {}",
        over.status,
        over.body
    );
    let stored = attacker.get(&format!("{path}?version=v2")).await?;
    let size = stored.body["run"].to_string().len();
    Ok((run_id, size))
}

async fn patch(attacker: &Api, path: &str, body: &Value) -> Result<()> {
    let answer = attacker
        .send(reqwest::Method::PATCH, path, Some(body), &[])
        .await?;
    ensure!(
        answer.status == 200,
        "PATCH {path}: {} {}",
        answer.status,
        answer.body
    );
    Ok(())
}

/// What the attack saw.
#[derive(Debug, Default)]
struct Outcome {
    opened: usize,
    /// Status and error identifier of each refused stream.
    refused: Vec<(u16, String)>,
    write_statuses: Vec<u16>,
    slowest_write: Duration,
    /// Bytes the read streams got, all together.
    bytes_read: u64,
    victim_stream: u16,
    rss_before_kib: u64,
    rss_peak_kib: u64,
}

/// Samples portd's RSS until stopped; returns the highest figure.
fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0;
        while !stop.load(Ordering::SeqCst) {
            peak = peak.max(rss_kib(pid).unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        peak.max(rss_kib(pid).unwrap_or(0))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_the_largest_run_are_capped_and_cheap_and_leave_the_neighbour_alone() {
    let mut tenants = Tenants::start(TenantsOptions::default()).await.unwrap();
    let (run_id, run_bytes) = largest_legal_run(&tenants.attacker).await.unwrap();
    assert!(
        run_bytes > 2_000_000,
        "the run is {run_bytes} bytes of JSON"
    );
    let pid = tenants.portd.pid();
    let base = tenants.base_url();
    let victim = tenants.victim.clone();
    let stream_path = format!("/v1/actions/runs/{run_id}/logs/stream");
    let rss_before_kib = rss_kib(pid).unwrap();

    let report = tenants
        .under_attack("streams of a 2 MB run", |attacker| async move {
            let stop = Arc::new(AtomicBool::new(false));
            let peak = sample_rss(pid, stop.clone());
            let mut outcome = Outcome {
                rss_before_kib,
                ..Outcome::default()
            };
            // No timeout: these are long-lived streams.
            let http = reqwest::Client::new();
            let url = format!("{base}{stream_path}");
            let mut unread = Vec::new();
            let mut readers = Vec::new();
            let bytes_read = Arc::new(AtomicU64::new(0));
            for _ in 0..STREAMS_PER_ORG + EXTRA_STREAMS {
                let response = http
                    .get(&url)
                    .bearer_auth(&attacker.token)
                    .header("accept", "text/event-stream")
                    .send()
                    .await?;
                let status = response.status().as_u16();
                if status != 200 {
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    let error = body["error"].as_str().unwrap_or_default().to_owned();
                    outcome.refused.push((status, error));
                    continue;
                }
                outcome.opened += 1;
                if readers.len() < READ_STREAMS {
                    let bytes_read = bytes_read.clone();
                    readers.push(tokio::spawn(async move {
                        let mut body = response.bytes_stream();
                        while let Some(Ok(chunk)) = body.next().await {
                            bytes_read.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        }
                    }));
                } else {
                    unread.push(response);
                }
            }

            // Writes to the followed run: lines, and a few changes to the run itself,
            // each of which every reading stream gets whole (the protocol's `status`).
            let logs = format!("/v1/actions/runs/{run_id}/logs");
            for i in 0..LOG_WRITES {
                let started = Instant::now();
                let answer = attacker
                    .post(
                        &logs,
                        &json!({ "message": format!("line {i} {}", "x".repeat(1_000)) }),
                    )
                    .await?;
                outcome.slowest_write = outcome.slowest_write.max(started.elapsed());
                outcome.write_statuses.push(answer.status);
                if i % (LOG_WRITES / PATCHES) == 0 {
                    let started = Instant::now();
                    let answer = attacker
                        .send(
                            reqwest::Method::PATCH,
                            &format!("/v1/actions/runs/{run_id}"),
                            Some(&json!({ "statusLabel": format!("step {i}") })),
                            &[],
                        )
                        .await?;
                    outcome.slowest_write = outcome.slowest_write.max(started.elapsed());
                    outcome.write_statuses.push(answer.status);
                }
            }

            // The victim's own streams are its own.
            let victim_run = victim
                .post(
                    "/v1/actions/probe/runs",
                    &json!({ "properties": { "note": "follow me" } }),
                )
                .await?
                .expect(202, "the victim's run")?;
            let victim_run = victim_run["run"]["id"].as_str().context("a run id")?;
            let mut mine = http
                .get(format!("{base}/v1/actions/runs/{victim_run}/logs/stream"))
                .bearer_auth(&victim.token)
                .send()
                .await?;
            outcome.victim_stream = mine.status().as_u16();
            let first = tokio::time::timeout(Duration::from_secs(5), mine.chunk()).await;
            ensure!(
                matches!(first, Ok(Ok(Some(_)))),
                "the victim's stream sent nothing: {first:?}"
            );

            stop.store(true, Ordering::SeqCst);
            outcome.rss_peak_kib = peak.await?;
            drop(unread);
            for reader in &readers {
                reader.abort();
            }
            outcome.bytes_read = bytes_read.load(Ordering::Relaxed);
            Ok(outcome)
        })
        .await
        .unwrap();

    let outcome = &report.outcome;
    let growth_mib = outcome.rss_peak_kib.saturating_sub(outcome.rss_before_kib) / 1024;
    port_chaos::visible(&format!(
        "isolation streams: a {:.1} MB run; {} streams open, {} refused ({:?}); {} writes, slowest {:.0} ms; \
         {:.0} MB read by {READ_STREAMS} streams; portd RSS {} MiB before, {} MiB at peak (+{growth_mib} MiB)",
        run_bytes as f64 / 1e6,
        outcome.opened,
        outcome.refused.len(),
        outcome.refused.first(),
        outcome.write_statuses.len(),
        outcome.slowest_write.as_secs_f64() * 1000.0,
        outcome.bytes_read as f64 / 1e6,
        outcome.rss_before_kib / 1024,
        outcome.rss_peak_kib / 1024,
    ));
    report.assert_held().unwrap();
    assert_eq!(
        outcome.opened, STREAMS_PER_ORG,
        "the attacker's streams stop at its share"
    );
    assert_eq!(outcome.refused.len(), EXTRA_STREAMS);
    assert!(
        outcome
            .refused
            .iter()
            .all(|(status, error)| *status == 429 && error == "too_many_requests"),
        "{:?}",
        outcome.refused
    );
    assert!(
        outcome
            .write_statuses
            .iter()
            .all(|s| *s == 201 || *s == 200),
        "{:?}",
        outcome.write_statuses
    );
    assert!(
        outcome.slowest_write < Duration::from_secs(2),
        "a write to the followed run took {:?}",
        outcome.slowest_write
    );
    assert!(
        outcome.bytes_read as usize >= READ_STREAMS * run_bytes,
        "the read streams got at least the run each"
    );
    assert_eq!(outcome.victim_stream, 200);
    assert!(
        growth_mib < MAX_RSS_GROWTH_MIB,
        "portd grew by {growth_mib} MiB"
    );
}
