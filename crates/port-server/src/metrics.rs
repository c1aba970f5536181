//! Prometheus metrics, hand-rolled: request counts by route and status, a latency
//! histogram per route, and runs created.
//!
//! Every label comes from a closed set, so no client can grow the exposition: routes
//! are labelled by their template in the route table (`/v1/actions/runs/{run_id}`) or
//! `unmatched`, never by the concrete path, and methods by their standard name or
//! `other` (HTTP lets a client invent any token as a method).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The route label of requests no route matched.
const UNMATCHED_ROUTE: &str = "unmatched";

/// The method label of requests whose method is not one of RFC 9110's (and PATCH).
const OTHER_METHOD: &str = "other";

/// The method label: a standard method's name, else [`OTHER_METHOD`].
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    STANDARD
        .iter()
        .find(|standard| *standard == method)
        .map_or(OTHER_METHOD, Method::as_str)
}

#[derive(Debug, Default, Clone)]
struct Latency {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

#[derive(Debug, Default)]
struct Tables {
    /// (method, route, status) → count. The method comes from [`method_label`]; the
    /// route is a template the router matched (it has no other kind) or
    /// [`UNMATCHED_ROUTE`].
    requests: BTreeMap<(&'static str, String, u16), u64>,
    /// (method, route) → latency histogram.
    latency: BTreeMap<(&'static str, String), Latency>,
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    tables: Mutex<Tables>,
    runs_created: AtomicU64,
    connections_open: AtomicU64,
    connections_refused: AtomicU64,
    header_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one answered request. `method` is a [`method_label`]; `route` a matched
    /// route template or `unmatched`.
    pub fn record_request(
        &self,
        method: &'static str,
        route: &str,
        status: u16,
        elapsed: Duration,
    ) {
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        *tables
            .requests
            .entry((method, route.to_owned(), status))
            .or_default() += 1;
        let latency = tables
            .latency
            .entry((method, route.to_owned()))
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

    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A connection over the cap (answered 503, or closed when too many were).
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection closed by the header read timeout (`head`) or the idle timeout.
    pub fn connection_timed_out(&self, head: bool) {
        let counter = if head {
            &self.header_timeouts
        } else {
            &self.idle_timeouts
        };
        counter.fetch_add(1, Ordering::Relaxed);
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
        out.push_str("# HELP portd_connections_open Connections being served.\n");
        out.push_str("# TYPE portd_connections_open gauge\n");
        let _ = writeln!(
            out,
            "portd_connections_open {}",
            self.connections_open.load(Ordering::Relaxed)
        );
        out.push_str("# HELP portd_connections_refused_total Connections over the cap, answered 503 and closed.\n");
        out.push_str("# TYPE portd_connections_refused_total counter\n");
        let _ = writeln!(
            out,
            "portd_connections_refused_total {}",
            self.connections_refused.load(Ordering::Relaxed)
        );
        out.push_str("# HELP portd_connections_timed_out_total Connections closed by the header read or idle timeout.\n");
        out.push_str("# TYPE portd_connections_timed_out_total counter\n");
        for (reason, counter) in [
            ("header", &self.header_timeouts),
            ("idle", &self.idle_timeouts),
        ] {
            let _ = writeln!(
                out,
                "portd_connections_timed_out_total{{reason=\"{reason}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware: counts every request under its route pattern. It takes the metrics out
/// of whatever state it is layered with (`Arc<Metrics>: FromRef<S>`; the server's
/// `AppState` gives its own).
pub async fn track_requests(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    // Only the router sets `MatchedPath`, and only to a template it was built with.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    metrics.record_request(
        method,
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

    #[test]
    fn invented_methods_share_one_label() {
        use axum::http::Method;
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let metrics = Metrics::new();
        for n in 0..1000 {
            let invented = Method::from_bytes(format!("INVENTED{n}").as_bytes()).unwrap();
            assert_eq!(method_label(&invented), "other");
            metrics.record_request(
                method_label(&invented),
                UNMATCHED_ROUTE,
                405,
                Duration::ZERO,
            );
        }
        let text = metrics.render();
        assert!(!text.contains("INVENTED"), "{text}");
        assert!(text.contains(
            r#"portd_http_requests_total{method="other",route="unmatched",status="405"} 1000"#
        ));
        // One counter line and one histogram (11 buckets, +Inf, sum, count), besides
        // the unlabelled runs and connection counters.
        let lines = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(lines, 1 + 14 + 1 + 4, "{text}");
    }
}
