//! When and how long to wait before trying a request again.

use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// How transient failures are retried: capped exponential backoff with jitter, or the
/// server's `Retry-After` when it sends one.
///
/// Which requests are retried at all depends on whether repeating them is safe; see
/// [`crate::PortClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so at most `max_retries + 1` attempts).
    pub max_retries: u32,
    /// The first backoff; each retry doubles it.
    pub base_delay: Duration,
    /// The longest backoff.
    pub max_delay: Duration,
    /// The longest wait a `Retry-After` (or `x-ratelimit-reset`) may impose.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The wait before retry number `retry` (0 for the first retry): `base · 2^retry`,
    /// capped at `max_delay`, then drawn uniformly from its upper half so that clients
    /// failing together do not retry together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(20));
        let ceiling = self.base_delay.saturating_mul(factor).min(self.max_delay);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_micros()).unwrap_or(u64::MAX);
        if spread == 0 {
            return ceiling;
        }
        half + Duration::from_micros(rand::rng().random_range(0..=spread))
    }

    /// The wait the server asked for (`Retry-After`, else on 429 `x-ratelimit-reset`),
    /// capped at `max_retry_after`.
    pub(crate) fn server_delay(&self, status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
        let now = SystemTime::now();
        let asked = header(headers, "retry-after")
            .and_then(|v| parse_retry_after(v, now))
            .or_else(|| {
                (status == StatusCode::TOO_MANY_REQUESTS)
                    .then(|| header(headers, "x-ratelimit-reset"))
                    .flatten()
                    .and_then(|v| parse_ratelimit_reset(v, now))
            })?;
        Some(asked.min(self.max_retry_after))
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3). A date in the past
/// means "now".
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `x-ratelimit-reset`: Port's docs say epoch seconds, Port's Terraform client reads
/// seconds-until-reset; a value too small to be a recent epoch is taken as the latter.
pub(crate) fn parse_ratelimit_reset(value: &str, now: SystemTime) -> Option<Duration> {
    let n = value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)?;
    if n < 1_000_000_000.0 {
        return Some(Duration::from_secs_f64(n));
    }
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(n);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Statuses that mean "not now": rate limited, or a gateway/server briefly unavailable.
pub(crate) fn is_transient(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let first = policy.backoff(0);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.backoff(2);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = policy.backoff(30);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_secs(1));
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn ratelimit_reset_reads_epochs_and_relative_seconds() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_ratelimit_reset("1700000012", now),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            parse_ratelimit_reset("3", now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(parse_ratelimit_reset("-3", now), None);
    }

    #[test]
    fn server_delays_are_capped() {
        let policy = RetryPolicy {
            max_retry_after: Duration::from_secs(5),
            ..RetryPolicy::default()
        };
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "3600".parse().unwrap());
        assert_eq!(
            policy.server_delay(StatusCode::SERVICE_UNAVAILABLE, &headers),
            Some(Duration::from_secs(5))
        );
        let mut reset = HeaderMap::new();
        reset.insert("x-ratelimit-reset", "2".parse().unwrap());
        assert_eq!(
            policy.server_delay(StatusCode::TOO_MANY_REQUESTS, &reset),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            policy.server_delay(StatusCode::SERVICE_UNAVAILABLE, &reset),
            None
        );
    }
}
