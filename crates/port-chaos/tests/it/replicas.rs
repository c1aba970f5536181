//! Three portd replicas (the real binary) on one PostgreSQL database, in a scratch
//! schema of the shared test server, with a webhook receiver on loopback:
//!
//! 1. executes spread over the three: every run's delivery is received exactly once
//!    (one request per run, one per delivery id), none missing;
//! 2. a follower of a run's live log on one replica sees a line posted through another
//!    within 100 ms (the median of several tries; each under 500 ms). The replica bus
//!    (`LISTEN`/`NOTIFY`) carries the change: without it the follower would see it at
//!    its next safety poll, up to two seconds later;
//! 3. `kill -9` of the replica holding the most deliveries in flight (the receiver
//!    holds every request a second): the other two send those deliveries once their
//!    leases expire (the lease shortened to 12 s here), and every other delivery goes
//!    out once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use futures::StreamExt as _;
use port_chaos::api::Api;
use port_chaos::oracle::ACTION;
use port_chaos::portd::{Portd, PortdSettings, make_private};
use port_chaos::receiver::{Mode, Received, Receiver};
use port_store::ScratchSchema;
use serde_json::{Value, json};
use sqlx::Connection as _;
use tokio::sync::mpsc;

const CLIENT_ID: &str = "replicas-client";
const CLIENT_SECRET: &str = "replicas-secret-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHI";
/// The server key of every replica: what one seals, the others open.
const SECRET_KEY: &str = "5f0c6a7e3b2d4c1f9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e";
const NAMES: [&str; 3] = ["a", "b", "c"];

/// Runs executed in the first part, spread over the replicas.
const SPREAD_RUNS: usize = 30;
/// Log lines whose propagation is timed.
const LATENCY_TRIES: usize = 7;
const MEDIAN_LIMIT: Duration = Duration::from_millis(100);
const EACH_LIMIT: Duration = Duration::from_millis(500);
/// Runs executed, spread over the replicas, while the receiver holds every request:
/// the replica holding the most of their deliveries is then killed.
const KILLED_RUNS: usize = 9;
/// How long the receiver holds each request while the replica is killed.
const HOLD: Duration = Duration::from_secs(1);
/// The attempt timeout and the lease (at least the timeout plus 10 s, the worker's
/// margin), shortened so the takeover fits in the test.
const ATTEMPT_TIMEOUT_SECS: &str = "2";
const LEASE: Duration = Duration::from_secs(12);
/// The delivery worker's safety poll (it finds expired leases) plus room for a loaded
/// machine.
const TAKEOVER_SLACK: Duration = Duration::from_secs(4);

struct Replica {
    portd: Portd,
    api: Api,
    worker_id: String,
    _dir: tempfile::TempDir,
}

fn settings(binary: &Path, dir: &Path, url: &str, worker_id: &str) -> Result<PortdSettings> {
    let lease = LEASE.as_secs().to_string();
    Ok(PortdSettings {
        binary: binary.to_path_buf(),
        data_dir: dir.to_path_buf(),
        database_url: Some(url.to_owned()),
        client_id: CLIENT_ID.to_owned(),
        client_secret: CLIENT_SECRET.to_owned(),
        log_filter: "warn".to_owned(),
        log_file: dir.join("portd.log"),
        env: [
            ("PORTD_SECRET_KEY", SECRET_KEY),
            ("PORTD_DELIVERY_WORKER_ID", worker_id),
            ("PORTD_DELIVERY_TIMEOUT_SECS", ATTEMPT_TIMEOUT_SECS),
            ("PORTD_DELIVERY_LEASE_SECS", &lease),
            (
                "PORTD_DELIVERY_RETRY_SCHEDULE",
                "0,0.5,0.5,0.5,0.5,0.5,0.5,0.5",
            ),
            // Three servers and their template workers on two cores: render in process.
            ("PORTD_TEMPLATE_SANDBOX", "in-process"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    })
}

async fn start_replica(binary: &Path, url: &str, name: &str) -> Result<Replica> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("port-chaos-replica-{name}-"))
        .tempdir()?;
    make_private(dir.path())?;
    let worker_id = format!("replica-{name}");
    let mut portd = Portd::spawn(&settings(binary, dir.path(), url, &worker_id)?)?;
    portd.ready(Duration::from_secs(60)).await?;
    let api = Api::login(&portd.base_url(), CLIENT_ID, CLIENT_SECRET).await?;
    Ok(Replica {
        portd,
        api,
        worker_id,
        _dir: dir,
    })
}

async fn execute(api: &Api, note: &str) -> Result<String> {
    let body = api
        .post(
            &format!("/v1/actions/{ACTION}/runs"),
            &json!({ "properties": { "note": note } }),
        )
        .await?
        .expect(202, "execute")?;
    body["run"]["id"]
        .as_str()
        .map(str::to_owned)
        .context("the execute answer has no run id")
}

/// Executes `notes`, each through `replicas[i % replicas.len()]`, all at once.
async fn execute_spread(replicas: &[&Api], notes: &[String]) -> Result<Vec<String>> {
    let executes = notes
        .iter()
        .enumerate()
        .map(|(i, note)| execute(replicas[i % replicas.len()], note));
    futures::future::try_join_all(executes).await
}

/// Waits until `done` holds for what the receiver got, or fails after `within`.
async fn until_received(
    receiver: &Receiver,
    within: Duration,
    what: &str,
    done: impl Fn(&[Received]) -> bool,
) -> Result<Vec<Received>> {
    let deadline = Instant::now() + within;
    loop {
        let received = receiver.received();
        if done(&received) {
            return Ok(received);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn by_run(received: &[Received]) -> BTreeMap<&str, Vec<&Received>> {
    let mut runs: BTreeMap<&str, Vec<&Received>> = BTreeMap::new();
    for r in received {
        runs.entry(r.run_id.as_deref().unwrap_or(""))
            .or_default()
            .push(r);
    }
    runs
}

/// Part 1: executes spread over the replicas; every delivery received exactly once.
async fn deliveries_go_out_once(replicas: &[Replica], receiver: &Receiver) -> Result<usize> {
    let apis: Vec<&Api> = replicas.iter().map(|r| &r.api).collect();
    let notes: Vec<String> = (0..SPREAD_RUNS).map(|i| format!("spread {i}")).collect();
    let runs = execute_spread(&apis, &notes).await?;
    let wanted: BTreeSet<&str> = runs.iter().map(String::as_str).collect();
    until_received(receiver, Duration::from_secs(15), "every delivery", |got| {
        let seen: BTreeSet<&str> = got.iter().filter_map(|r| r.run_id.as_deref()).collect();
        wanted.is_subset(&seen)
    })
    .await?;
    // Room for a second sending of any of them, which must not come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received();
    let runs_received = by_run(&received);
    for run in &wanted {
        let got = &runs_received[run];
        ensure!(
            got.len() == 1,
            "run {run}'s delivery was received {} times (webhook ids {:?})",
            got.len(),
            got.iter().map(|r| &r.webhook_id).collect::<Vec<_>>()
        );
        ensure!(
            got[0].signature_ok,
            "run {run}'s delivery is not signed right"
        );
        ensure!(got[0].status == Some(200), "run {run}: {:?}", got[0].status);
    }
    let delivery_ids: BTreeSet<&str> = received.iter().map(|r| r.webhook_id.as_str()).collect();
    ensure!(
        delivery_ids.len() == received.len() && received.len() == SPREAD_RUNS,
        "{} requests for {SPREAD_RUNS} runs, {} delivery ids",
        received.len(),
        delivery_ids.len()
    );
    Ok(received.len())
}

/// A server-sent event as it arrived.
struct Event {
    name: String,
    data: String,
    at: Instant,
}

/// Follows `run`'s live log on `api`'s server; events arrive on the channel, stamped.
async fn follow(api: &Api, run: &str) -> Result<mpsc::UnboundedReceiver<Event>> {
    let response = reqwest::Client::new()
        .get(format!(
            "{}/v1/actions/runs/{run}/logs/stream",
            api.base_url
        ))
        .bearer_auth(&api.token)
        .send()
        .await?;
    ensure!(
        response.status() == 200,
        "the log stream answered {}",
        response.status()
    );
    let (events, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            let at = Instant::now();
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut event = Event {
                    name: String::new(),
                    data: String::new(),
                    at,
                };
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event: ") {
                        event.name = name.to_owned();
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        event.data.push_str(data);
                    }
                }
                if !event.name.is_empty() && events.send(event).is_err() {
                    return;
                }
            }
        }
    });
    Ok(received)
}

async fn next_event(
    events: &mut mpsc::UnboundedReceiver<Event>,
    within: Duration,
    matches: impl Fn(&Event) -> bool,
) -> Option<Event> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) if matches(&event) => return Some(event),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return None,
        }
    }
}

fn median(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() / 2]
}

/// Part 2: a follower on replica A sees lines posted through B and C; returns each
/// line's time from the POST being sent to the event reaching the follower, sorted.
async fn log_lines_cross_replicas(replicas: &[Replica]) -> Result<Vec<Duration>> {
    let run = execute(&replicas[1].api, "followed").await?;
    let mut events = follow(&replicas[0].api, &run).await?;
    next_event(&mut events, Duration::from_secs(10), |e| e.name == "status")
        .await
        .context("the follower on replica a never got the run's status")?;
    let mut latencies = Vec::new();
    for i in 0..LATENCY_TRIES {
        let message = format!("crossing replicas {i}");
        let writer = &replicas[1 + i % 2];
        let sent = Instant::now();
        writer
            .api
            .post(
                &format!("/v1/actions/runs/{run}/logs"),
                &json!({ "message": message }),
            )
            .await?
            .expect(201, "posting a log line")?;
        let Some(event) = next_event(&mut events, Duration::from_secs(5), |e| {
            e.name == "log" && e.data.contains(&message)
        })
        .await
        else {
            bail!(
                "the follower on replica a never saw {message:?} posted through replica {} (earlier lines took {latencies:?})",
                NAMES[1 + i % 2]
            );
        };
        let line: Value = serde_json::from_str(&event.data)?;
        ensure!(line["message"] == message.as_str(), "{}", event.data);
        latencies.push(event.at - sent);
        // Apart, so each line is timed alone.
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    latencies.sort();
    Ok(latencies)
}

/// The runs whose deliveries are leased right now, by lease owner (worker id).
async fn leases(url: &str) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT lease_owner, run_id FROM deliveries \
         WHERE lease_owner IS NOT NULL AND state = 'PENDING'",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    let mut by_owner: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (owner, run) in rows {
        by_owner.entry(owner).or_default().insert(run);
    }
    Ok(by_owner)
}

struct Takeover {
    victim: &'static str,
    held: usize,
    /// From the kill to the last of the dead replica's deliveries answered 200.
    slowest: Duration,
    fastest: Duration,
}

/// Part 3: kill -9 of the replica holding the most deliveries in flight: the others
/// send them once their leases expire.
async fn a_dead_replicas_deliveries_go_out(
    replicas: &mut [Replica],
    receiver: &Receiver,
    url: &str,
) -> Result<Takeover> {
    let already = receiver.count();
    receiver.set_mode(Mode::Slow(HOLD));
    let apis: Vec<&Api> = replicas.iter().map(|r| &r.api).collect();
    let notes: Vec<String> = (0..KILLED_RUNS).map(|i| format!("in flight {i}")).collect();
    let runs = execute_spread(&apis, &notes).await?;
    let wanted: BTreeSet<&str> = runs.iter().map(String::as_str).collect();
    // Every delivery is in flight (the receiver holds each for a second)...
    until_received(
        receiver,
        Duration::from_secs(5),
        "the deliveries in flight",
        |got| {
            let seen: BTreeSet<&str> = got[already..]
                .iter()
                .filter_map(|r| r.run_id.as_deref())
                .collect();
            wanted.is_subset(&seen)
        },
    )
    .await?;
    // ... leased to whichever replica claimed each. The one holding the most dies, and
    // its leases stay until they expire.
    let mut leases = leases(url).await?;
    let (victim, replica) = replicas
        .iter_mut()
        .enumerate()
        .max_by_key(|(_, r)| leases.get(&r.worker_id).map_or(0, BTreeSet::len))
        .context("no replicas")?;
    let held = leases.remove(&replica.worker_id).unwrap_or_default();
    ensure!(
        !held.is_empty(),
        "no replica holds a delivery in flight: {leases:?}"
    );
    replica.portd.kill()?;
    let killed_at = Instant::now();
    receiver.set_mode(Mode::Healthy);
    ensure!(
        held.iter().all(|run| wanted.contains(run.as_str())),
        "replica {} held deliveries of other runs: {held:?}",
        NAMES[victim]
    );

    let limit = LEASE + TAKEOVER_SLACK;
    let answered_after_kill = |got: &[Received], run: &str| {
        got.iter()
            .filter(|r| r.run_id.as_deref() == Some(run) && r.at > killed_at)
            .find_map(|r| r.ok_at.map(|ok| ok - killed_at))
    };
    let received = until_received(
        receiver,
        limit,
        "the dead replica's deliveries sent by the others",
        |got| {
            held.iter()
                .all(|run| answered_after_kill(got, run).is_some())
        },
    )
    .await?;
    let times: Vec<Duration> = held
        .iter()
        .filter_map(|run| answered_after_kill(&received, run))
        .collect();
    // The others' deliveries, answered after the hold, are never sent again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received();
    let runs_received = by_run(&received[already..]);
    for run in &wanted {
        let got = runs_received.get(run).map_or(&[][..], Vec::as_slice);
        ensure!(
            got.iter().any(|r| r.status == Some(200) && r.signature_ok),
            "run {run} was never delivered"
        );
        let expected = if held.contains(*run) { 2 } else { 1 };
        ensure!(
            got.len() == expected,
            "run {run} (held by the dead replica: {}) was received {} times",
            held.contains(*run),
            got.len()
        );
    }
    Ok(Takeover {
        victim: NAMES[victim],
        held: held.len(),
        slowest: times.iter().copied().max().unwrap_or_default(),
        fastest: times.iter().copied().min().unwrap_or_default(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_deliveries_live_logs_and_a_dead_ones_leases() {
    let Some(base) = port_chaos::pg::test_database_url("replicas").unwrap() else {
        return;
    };
    // Found (or built) first, so the test's time is the scenario's.
    let binary = port_chaos::portd::binary().unwrap();
    let started = Instant::now();
    let schema = ScratchSchema::create(&base, "replicas").await.unwrap();
    let url = schema.url();
    let outcome = scenario(&binary, &url).await;
    schema.drop_now().await.unwrap();
    let report = outcome.unwrap();
    crate::visible(&format!("{report} (whole test {:.1?})", started.elapsed()));
}

async fn scenario(binary: &Path, url: &str) -> Result<String> {
    let receiver = Receiver::start(CLIENT_SECRET, 19).await?;
    // The first replica bootstraps the database; the others find it done.
    let first = start_replica(binary, url, NAMES[0]).await?;
    let (second, third) = tokio::try_join!(
        start_replica(binary, url, NAMES[1]),
        start_replica(binary, url, NAMES[2])
    )?;
    let mut replicas = vec![first, second, third];
    port_chaos::crash::setup(&replicas[0].api, &receiver.url()).await?;

    let outcome: Result<String> = async {
        let part = Instant::now();
        let delivered = deliveries_go_out_once(&replicas, &receiver).await?;
        let spread_took = part.elapsed();
        let part = Instant::now();
        let latencies = log_lines_cross_replicas(&replicas).await?;
        let logs_took = part.elapsed();
        let (middle, slowest) = (median(&latencies), latencies[latencies.len() - 1]);
        ensure!(
            middle < MEDIAN_LIMIT && slowest < EACH_LIMIT,
            "log lines crossed replicas in {latencies:?}: median {middle:?} (limit {MEDIAN_LIMIT:?}), slowest {slowest:?} (limit {EACH_LIMIT:?})"
        );
        let part = Instant::now();
        let takeover = a_dead_replicas_deliveries_go_out(&mut replicas, &receiver, url).await?;
        let takeover_took = part.elapsed();
        Ok(format!(
            "replicas: {delivered} deliveries of runs spread over 3 replicas, each received once ({spread_took:.1?}); \
             log lines across replicas in {latencies:.1?}, median {middle:.1?} ({logs_took:.1?}); \
             kill -9 of replica {} with {} deliveries in flight: sent by the others {:.1?}–{:.1?} after (lease {LEASE:?}) ({takeover_took:.1?})",
            takeover.victim, takeover.held, takeover.fastest, takeover.slowest
        ))
    }
    .await;
    let outcome = outcome.map_err(|e| {
        let logs: Vec<String> = replicas
            .iter()
            .zip(NAMES)
            .map(|(r, name)| format!("replica {name}'s log:\n{}", r.portd.log_tail(15)))
            .collect();
        anyhow::anyhow!("{e:#}\n{}", logs.join("\n"))
    });
    for replica in &mut replicas {
        if replica.portd.alive() {
            replica.portd.terminate(Duration::from_secs(20))?;
        }
    }
    outcome
}
