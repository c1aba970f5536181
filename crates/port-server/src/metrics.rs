//! Prometheus metrics, hand-rolled: request counts by route and status, a latency
//! histogram per route, and runs created. Routes are labelled by their pattern
//! (`/v1/actions/runs/{run_id}`), never by the concrete path, so label sets stay small.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The route label of requests no route matched.
const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Debug, Default, Clone)]
struct Latency {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

#[derive(Debug, Default)]
struct Tables {
    /// (method, route, status) → count.
    requests: BTreeMap<(String, String, u16), u64>,
    /// (method, route) → latency histogram.
    latency: BTreeMap<(String, String), Latency>,
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    tables: Mutex<Tables>,
    runs_created: AtomicU64,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        *tables
            .requests
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
        let latency = tables
            .latency
            .entry((method.to_owned(), route.to_owned()))
            .or_default();
        let seconds = elapsed.as_secs_f64();
        for (bucket, bound) in latency.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        latency.count += 1;
        latency.sum_seconds += seconds;
    }

    pub fn record_run_created(&self) {
        self.runs_created.fetch_add(1, Ordering::Relaxed);
    }

    pub fn runs_created(&self) -> u64 {
        self.runs_created.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        out.push_str("# HELP portd_http_requests_total HTTP requests answered, by method, route and status.\n");
        out.push_str("# TYPE portd_http_requests_total counter\n");
        for ((method, route, status), count) in &tables.requests {
            let _ = writeln!(
                out,
                "portd_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {count}",
                escape(method),
                escape(route)
            );
        }
        out.push_str("# HELP portd_http_request_duration_seconds Time to answer HTTP requests, by method and route.\n");
        out.push_str("# TYPE portd_http_request_duration_seconds histogram\n");
        for ((method, route), latency) in &tables.latency {
            let labels = format!("method=\"{}\",route=\"{}\"", escape(method), escape(route));
            for (bound, count) in LATENCY_BUCKETS.iter().zip(latency.buckets) {
                let _ = writeln!(
                    out,
                    "portd_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "portd_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                latency.count
            );
            let _ = writeln!(
                out,
                "portd_http_request_duration_seconds_sum{{{labels}}} {}",
                latency.sum_seconds
            );
            let _ = writeln!(
                out,
                "portd_http_request_duration_seconds_count{{{labels}}} {}",
                latency.count
            );
        }
        out.push_str("# HELP portd_runs_created_total Action runs created.\n");
        out.push_str("# TYPE portd_runs_created_total counter\n");
        let _ = writeln!(out, "portd_runs_created_total {}", self.runs_created());
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware: counts every request under its route pattern.
pub async fn track_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    state.metrics().record_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_buckets() {
        let metrics = Metrics::new();
        metrics.record_request(
            "GET",
            "/v1/actions/runs/{run_id}",
            200,
            Duration::from_millis(3),
        );
        metrics.record_request(
            "GET",
            "/v1/actions/runs/{run_id}",
            404,
            Duration::from_millis(30),
        );
        metrics.record_run_created();
        let text = metrics.render();
        assert!(text.contains(r#"portd_http_requests_total{method="GET",route="/v1/actions/runs/{run_id}",status="200"} 1"#));
        assert!(text.contains(
            r#"portd_http_request_duration_seconds_bucket{method="GET",route="/v1/actions/runs/{run_id}",le="0.005"} 1"#
        ));
        assert!(text.contains(
            r#"portd_http_request_duration_seconds_bucket{method="GET",route="/v1/actions/runs/{run_id}",le="+Inf"} 2"#
        ));
        assert!(text.contains("portd_runs_created_total 1"));
    }
}
