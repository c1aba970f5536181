//! A webhook receiver on loopback: records every request portd sends (run id,
//! `webhook-id`, whether the signature verifies, when a 2xx answer was handed back) and
//! answers either at once with 200 ([`Mode::Healthy`]), after a fixed hold
//! ([`Mode::Slow`]) or, seeded, with a mix of 200s, 500s, 429s and requests held for up
//! to 2.5 s ([`Mode::Chaotic`]) so that deliveries are failing, backing off or in
//! flight when portd is killed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::task::JoinHandle;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 at once.
    Healthy,
    /// 55 % 200 at once, 15 % 500, 5 % 429 with `Retry-After: 1`, 25 % 200 after a
    /// hold of 0.2–2.5 s.
    Chaotic,
    /// 200 after holding every request this long (deliveries stay in flight).
    Slow(Duration),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    /// `context.runId` of Port's default body.
    pub run_id: Option<String>,
    pub webhook_id: String,
    pub signature_ok: bool,
    /// The status handed back, once it was (never, if portd hung up first).
    pub status: Option<u16>,
    /// When a 2xx answer was handed back.
    pub ok_at: Option<Instant>,
}

struct State {
    mode: Mode,
    rng: StdRng,
    received: Vec<Received>,
}

struct Shared {
    secret: Vec<u8>,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The receiver; its server stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn header<'a>(request: &'a Request<Incoming>, name: &str) -> &'a str {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// What to answer, and after how long.
fn choose(state: &mut State) -> (u16, Duration) {
    match state.mode {
        Mode::Healthy => (200, Duration::ZERO),
        Mode::Slow(hold) => (200, hold),
        Mode::Chaotic => {
            let roll: u32 = state.rng.random_range(0..100);
            match roll {
                0..55 => (200, Duration::ZERO),
                55..70 => (500, Duration::ZERO),
                70..75 => (429, Duration::ZERO),
                _ => (
                    200,
                    Duration::from_millis(state.rng.random_range(200..2_500)),
                ),
            }
        }
    }
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let signature = header(&request, port_core::signature::SIGNATURE_HEADER).to_owned();
    let timestamp = header(&request, port_core::signature::TIMESTAMP_HEADER).to_owned();
    let webhook_id = header(&request, "webhook-id").to_owned();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let signature_ok = port_core::signature::verify(
        &shared.secret,
        &signature,
        &timestamp,
        &body,
        unix_now(),
        port_core::signature::DEFAULT_TOLERANCE_SECS,
    )
    .is_ok();
    let run_id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["context"]["runId"].as_str().map(str::to_owned));
    let (index, (status, delay)) = {
        let mut state = shared.state();
        let answer = choose(&mut state);
        state.received.push(Received {
            at: Instant::now(),
            run_id,
            webhook_id,
            signature_ok,
            status: None,
            ok_at: None,
        });
        (state.received.len() - 1, answer)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    {
        let mut state = shared.state();
        let received = &mut state.received[index];
        received.status = Some(status);
        if (200..300).contains(&status) {
            received.ok_at = Some(Instant::now());
        }
    }
    let mut response = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if status == 429 {
        response
            .headers_mut()
            .insert("retry-after", hyper::header::HeaderValue::from_static("1"));
    }
    response
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1 that checks signatures against `secret`.
    pub async fn start(secret: &str, seed: u64) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the webhook receiver")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            secret: secret.as_bytes().to_vec(),
            state: Mutex::new(State {
                mode: Mode::Healthy,
                rng: StdRng::seed_from_u64(seed),
                received: Vec::new(),
            }),
        });
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(shared, request).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// The URL to put in an action's webhook invocation.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.state().mode = mode;
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.state().received.clone()
    }

    /// How many requests arrived so far.
    pub fn count(&self) -> usize {
        self.shared.state().received.len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
