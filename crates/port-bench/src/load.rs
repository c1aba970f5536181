//! Load loops over [`Conn`]s: a closed loop for throughput (each connection sends its
//! next request as soon as the previous answer is in) and an open loop for latency
//! (requests leave on a fixed schedule, whatever the answers do).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

use crate::http::{Call, Conn};
use crate::stats::{Latency, Summary};

/// Builds request number `i` of a loop.
pub type MakeCall = Arc<dyn Fn(u64) -> Call + Send + Sync>;

/// How long a measurement runs: a warm-up whose results are dropped, then
/// `repeats` back-to-back windows of `window` each.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Plan {
    #[serde(serialize_with = "secs")]
    pub warmup: Duration,
    #[serde(serialize_with = "secs")]
    pub window: Duration,
    pub repeats: usize,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Plan {
    pub fn total(&self) -> Duration {
        self.warmup + self.window * u32::try_from(self.repeats).unwrap_or(u32::MAX)
    }

    /// Which measured window `offset` (time since the loop started) falls in; `None`
    /// during the warm-up and after the last window.
    pub fn window_of(&self, offset: Duration) -> Option<usize> {
        let measured = offset.checked_sub(self.warmup)?;
        let index = (measured.as_secs_f64() / self.window.as_secs_f64()).floor() as usize;
        (index < self.repeats).then_some(index)
    }
}

/// One measured window of a closed loop.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// Answers with the expected status per second.
    pub rate: f64,
    pub ok: u64,
    pub errors: u64,
    pub latency: Option<Latency>,
}

/// A closed loop's windows, their summary and the first unexpected answer seen.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub rate: Summary,
    pub windows: Vec<Window>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub connections: usize,
}

struct Record {
    at: Duration,
    latency_us: u32,
    ok: bool,
}

fn describe(status: Option<StatusCode>, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    match status {
        Some(status) => format!("{status}: {text}"),
        None => format!("transport error: {text}"),
    }
}

/// Runs `connections` workers that each send `make(i)` back to back for
/// `plan.total()`, counting answers with status `expect` per window.
pub async fn closed_loop(
    addr: SocketAddr,
    token: Option<&str>,
    connections: usize,
    plan: Plan,
    expect: StatusCode,
    make: MakeCall,
) -> Result<Throughput> {
    let next = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let start = Instant::now();
    let end = start + plan.total();
    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut conn = Conn::new(addr, token)?;
        let (next, make, first_error) = (next.clone(), make.clone(), first_error.clone());
        workers.push(tokio::spawn(async move {
            let mut records = Vec::new();
            while Instant::now() < end {
                let call = make(next.fetch_add(1, Ordering::Relaxed));
                let sent = Instant::now();
                let outcome = conn.send(&call).await;
                let done = Instant::now();
                let ok = matches!(&outcome, Ok((status, _)) if *status == expect);
                if !ok {
                    first_error
                        .lock()
                        .expect("not poisoned")
                        .get_or_insert_with(|| match &outcome {
                            Ok((status, body)) => describe(Some(*status), body),
                            Err(e) => describe(None, format!("{e:#}").as_bytes()),
                        });
                    if outcome.is_err() {
                        // Do not spin on a refused connection.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                records.push(Record {
                    at: done - start,
                    latency_us: u32::try_from((done - sent).as_micros()).unwrap_or(u32::MAX),
                    ok,
                });
            }
            records
        }));
    }
    let mut per_window: Vec<(u64, u64, Vec<f64>)> = vec![(0, 0, Vec::new()); plan.repeats];
    for worker in workers {
        for record in worker.await? {
            if let Some(index) = plan.window_of(record.at) {
                let slot = &mut per_window[index];
                if record.ok {
                    slot.0 += 1;
                    slot.2.push(f64::from(record.latency_us) / 1000.0);
                } else {
                    slot.1 += 1;
                }
            }
        }
    }
    let seconds = plan.window.as_secs_f64();
    let windows: Vec<Window> = per_window
        .into_iter()
        .map(|(ok, errors, latencies)| Window {
            rate: ok as f64 / seconds,
            ok,
            errors,
            latency: Latency::of(latencies),
        })
        .collect();
    let rates: Vec<f64> = windows.iter().map(|w| w.rate).collect();
    let first_error = first_error.lock().expect("not poisoned").take();
    Ok(Throughput {
        rate: Summary::of(&rates).unwrap_or(Summary {
            median: 0.0,
            min: 0.0,
            max: 0.0,
            spread_pct: 0.0,
        }),
        errors: windows.iter().map(|w| w.errors).sum(),
        windows,
        first_error,
        connections,
    })
}

/// One request of an open loop.
#[derive(Debug, Clone)]
pub struct Sample {
    pub index: u64,
    /// When the schedule wanted it sent.
    pub scheduled: Instant,
    pub sent: Instant,
    pub done: Instant,
    /// `None` on a transport error.
    pub status: Option<StatusCode>,
    pub body: Bytes,
}

impl Sample {
    /// How late the request left: its connection was still busy, or the timer fired
    /// late.
    pub fn lag(&self) -> Duration {
        self.sent.saturating_duration_since(self.scheduled)
    }
}

/// Sends `make(i)` for `i` in `0..count`, request `i` at `start + i / rate`, spread
/// over `connections` connections (connection `k` sends `k`, `k + connections`, …).
/// A connection still waiting for an answer sends its next request late; the lag
/// is kept in each sample.
pub async fn open_loop(
    addr: SocketAddr,
    token: Option<&str>,
    rate: f64,
    count: u64,
    connections: usize,
    make: MakeCall,
) -> Result<(Instant, Vec<Sample>)> {
    let start = Instant::now() + Duration::from_millis(20);
    let step = Duration::from_secs_f64(1.0 / rate);
    let stride = connections as u64;
    let mut workers = Vec::with_capacity(connections);
    for k in 0..stride.min(count) {
        let mut conn = Conn::new(addr, token)?;
        let make = make.clone();
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut index = k;
            while index < count {
                let scheduled = start + step * u32::try_from(index).unwrap_or(u32::MAX);
                tokio::time::sleep_until(scheduled.into()).await;
                let call = make(index);
                let sent = Instant::now();
                let outcome = conn.send(&call).await;
                let done = Instant::now();
                let (status, body) = match outcome {
                    Ok((status, body)) => (Some(status), body),
                    Err(e) => (None, Bytes::from(format!("{e:#}"))),
                };
                samples.push(Sample {
                    index,
                    scheduled,
                    sent,
                    done,
                    status,
                    body,
                });
                index += stride;
            }
            samples
        }));
    }
    let mut samples = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for worker in workers {
        samples.extend(worker.await?);
    }
    samples.sort_by_key(|s| s.index);
    Ok((start, samples))
}

/// The first unexpected answer among `samples`, described.
pub fn first_unexpected(samples: &[Sample], expect: StatusCode) -> Option<String> {
    samples
        .iter()
        .find(|s| s.status != Some(expect))
        .map(|s| describe(s.status, &s.body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_the_warm_up() {
        let plan = Plan {
            warmup: Duration::from_secs(1),
            window: Duration::from_secs(2),
            repeats: 3,
        };
        assert_eq!(plan.total(), Duration::from_secs(7));
        assert_eq!(plan.window_of(Duration::from_millis(999)), None);
        assert_eq!(plan.window_of(Duration::from_secs(1)), Some(0));
        assert_eq!(plan.window_of(Duration::from_millis(2999)), Some(0));
        assert_eq!(plan.window_of(Duration::from_secs(3)), Some(1));
        assert_eq!(plan.window_of(Duration::from_millis(6999)), Some(2));
        assert_eq!(plan.window_of(Duration::from_secs(7)), None);
    }
}
