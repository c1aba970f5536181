//! When a failed attempt is tried again, and how long after.

use std::time::Duration;

use port_core::Timestamp;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;
use time::macros::format_description;

/// Scheduled delays vary by this fraction either way, so that deliveries failed
/// together (a receiver restarting) do not all come back at the same instant.
const JITTER: f64 = 0.2;

/// Whether an HTTP answer is worth another attempt: the receiver timed out (408),
/// asked to slow down (429) or failed (5xx). Other answers, redirects included, will
/// not change by asking again.
pub fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// Whether a synchronized webhook's answer is worth another attempt. There the answer
/// *is* the run's result, so a handler's own failure (500) ends the run at once; only
/// answers saying the handler was never reached (timeout, throttling, a gateway or an
/// unavailable service in front of it) are retried.
pub fn retryable_synchronized_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 502 | 503 | 504)
}

/// `delay` ±20 %, uniformly; a zero delay stays zero.
pub fn jittered(delay: Duration) -> Duration {
    if delay.is_zero() {
        return delay;
    }
    let factor = 1.0 + rand::random_range(-JITTER..=JITTER);
    delay.mul_f64(factor)
}

/// The delay before the next attempt: the scheduled one (jittered), or what the
/// receiver asked for with `Retry-After` (at most `cap`) when that is longer.
pub fn next_delay(scheduled: Duration, retry_after: Option<Duration>, cap: Duration) -> Duration {
    let scheduled = jittered(scheduled);
    match retry_after {
        Some(asked) => scheduled.max(asked.min(cap)),
        None => scheduled,
    }
}

/// Reads a `Retry-After` value: delta seconds, or an HTTP date (relative to `now`;
/// a date in the past means no wait).
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let imf_fixdate = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = OffsetDateTime::parse(value, &imf_fixdate)
        .or_else(|_| OffsetDateTime::parse(value, &Rfc2822))
        .ok()?;
    let at_ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()?;
    let wait_ms = at_ms.saturating_sub(now.unix_millis()).max(0);
    Some(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_worth_retrying() {
        for status in [408, 429, 500, 502, 503, 504, 599] {
            assert!(retryable_status(status), "{status}");
        }
        for status in [200, 301, 302, 400, 401, 403, 404, 410, 422] {
            assert!(!retryable_status(status), "{status}");
        }
    }

    #[test]
    fn a_synchronized_handlers_own_failure_is_final() {
        for status in [408, 429, 502, 503, 504] {
            assert!(retryable_synchronized_status(status), "{status}");
        }
        for status in [200, 400, 404, 500, 501, 599] {
            assert!(!retryable_synchronized_status(status), "{status}");
        }
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        assert_eq!(jittered(Duration::ZERO), Duration::ZERO);
        let base = Duration::from_secs(10);
        for _ in 0..1000 {
            let d = jittered(base);
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(12),
                "{d:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_capped_and_never_shortens_the_schedule() {
        let cap = Duration::from_secs(600);
        let d = next_delay(Duration::from_millis(50), Some(Duration::from_secs(1)), cap);
        assert_eq!(d, Duration::from_secs(1));
        let d = next_delay(
            Duration::from_millis(50),
            Some(Duration::from_secs(86_400)),
            cap,
        );
        assert_eq!(d, cap);
        let d = next_delay(Duration::from_secs(100), Some(Duration::from_secs(1)), cap);
        assert!(d >= Duration::from_secs(80), "{d:?}");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        // 2015-10-21T07:28:00Z
        let now = Timestamp::from_unix_millis(1_445_412_480_000);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
