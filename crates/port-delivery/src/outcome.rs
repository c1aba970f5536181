//! What one attempt at carrying a delivery came to. Transports produce these; the
//! worker records them (the attempt, the run's log, a retry, the run's end) without
//! knowing how the delivery was carried.

use std::time::Duration;

use port_core::error::StoreError;
use port_core::{ErrorKind, PortError, Timestamp};
use reqwest::StatusCode;
use serde_json::Value;

use crate::retry;

/// How much of an answer's body an attempt record keeps.
pub const EXCERPT_BYTES: usize = 1024;
/// How much of a synchronized webhook's answer is kept as the run's `response`
/// (Port's own payload limit).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// What a receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    /// The start of the body, up to the limit the attempt read.
    pub body: Vec<u8>,
    /// The body was longer than what was read.
    pub truncated: bool,
    pub retry_after: Option<String>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// `HTTP 503 Service Unavailable`.
    pub fn describe(&self) -> String {
        match self.status.canonical_reason() {
            Some(reason) => format!("HTTP {} {reason}", self.status.as_u16()),
            None => format!("HTTP {}", self.status.as_u16()),
        }
    }

    /// The first [`EXCERPT_BYTES`] of the body as text, for the attempt record.
    pub fn excerpt(&self) -> Option<String> {
        if self.body.is_empty() {
            return None;
        }
        let prefix = &self.body[..self.body.len().min(EXCERPT_BYTES)];
        Some(match std::str::from_utf8(prefix) {
            Ok(text) => text.to_owned(),
            // Cut inside a character: keep the whole characters before it.
            Err(e) if e.error_len().is_none() => {
                String::from_utf8_lossy(&prefix[..e.valid_up_to()]).into_owned()
            }
            Err(_) => String::from_utf8_lossy(prefix).into_owned(),
        })
    }

    /// The body as a run's `response`: JSON when it parses, else text; nothing is `null`.
    pub fn response_value(&self) -> Value {
        if self.body.is_empty() {
            return Value::Null;
        }
        if !self.truncated
            && let Ok(value) = serde_json::from_slice(&self.body)
        {
            return value;
        }
        let mut text = String::from_utf8_lossy(&self.body).into_owned();
        if self.truncated {
            text.push_str("… [truncated]");
        }
        Value::String(text)
    }
}

/// Why an attempt got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoAnswer {
    TimedOut(Duration),
    Transport(String),
    /// The host resolved to addresses the destination policy refuses (or to none):
    /// nothing was connected to.
    Refused(PortError),
}

impl NoAnswer {
    pub fn describe(&self) -> String {
        match self {
            Self::TimedOut(after) => format!("no answer within {}", human(*after)),
            Self::Transport(e) => e.clone(),
            Self::Refused(e) => format!("{} ({})", e.message, e.kind),
        }
    }
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Answered(Answer),
    NoAnswer(NoAnswer),
    /// The destination policy refused the URL; `retryable` when it may resolve later.
    Refused {
        reason: String,
        retryable: bool,
    },
}

impl Outcome {
    /// A refusal by the destination policy. Its message names the host, never the URL
    /// (which may hold secrets). An address portd does not call stays refused; a name
    /// that resolved to nothing may resolve later.
    pub fn refused(refusal: &PortError) -> Self {
        Self::Refused {
            reason: format!("{} ({})", refusal.message, refusal.kind),
            retryable: refusal.kind == ErrorKind::NotResolvableDestination,
        }
    }

    /// The answer, when there was one.
    pub fn answer(&self) -> Option<&Answer> {
        match self {
            Self::Answered(answer) => Some(answer),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Answered(answer) => answer.describe(),
            Self::NoAnswer(no) => no.describe(),
            Self::Refused { reason, .. } => reason.clone(),
        }
    }

    /// Whether another attempt could go differently. A synchronized run's answer is its
    /// result, so fewer answers are retried there.
    pub fn retryable(&self, synchronized: bool) -> bool {
        match self {
            Self::Answered(answer) if synchronized => {
                retry::retryable_synchronized_status(answer.status.as_u16())
            }
            Self::Answered(answer) => retry::retryable_status(answer.status.as_u16()),
            Self::NoAnswer(_) => true,
            Self::Refused { retryable, .. } => *retryable,
        }
    }
}

/// One attempt made: what it came to and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub outcome: Outcome,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
    /// Measured on a monotonic clock.
    pub duration: Duration,
}

/// What a transport did with a delivery it was handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carried {
    /// One attempt was made. The worker records it, then finishes the delivery (and
    /// ends a synchronized run with the answer), retries it, or fails the run.
    Attempted(Attempt),
    /// Nothing was tried, and no attempt could succeed (the evaluated request is
    /// unusable, nothing to sign it with): the run fails with this reason.
    Unsendable(String),
    /// Nothing was tried: the delivery goes back to the outbox, due at this time (the
    /// lease would have ended mid-attempt; a transport that does not push).
    Later(Timestamp),
}

/// Why a delivery was left to its lease: the store failed, so the worker cannot know
/// (or record) where the delivery stands; whoever claims it next finds out.
#[derive(Debug, thiserror::Error)]
pub enum Abandoned {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Port(#[from] PortError),
}

/// Whole milliseconds, saturating: what timestamps and leases count in.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Seconds for people: `0.05 s`, `30 s`.
pub(crate) fn human(d: Duration) -> String {
    let text = format!("{:.3}", d.as_secs_f64());
    format!("{} s", text.trim_end_matches('0').trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_millis(50)), "0.05 s");
        assert_eq!(human(Duration::from_secs(30)), "30 s");
        assert_eq!(human(Duration::ZERO), "0 s");
        assert_eq!(human(Duration::from_millis(1234)), "1.234 s");
    }

    fn answer(body: &[u8], truncated: bool) -> Answer {
        Answer {
            status: StatusCode::OK,
            body: body.to_vec(),
            truncated,
            retry_after: None,
        }
    }

    #[test]
    fn responses_are_json_when_they_parse() {
        assert_eq!(
            answer(br#"{"ok":true}"#, false).response_value(),
            json!({"ok": true})
        );
        assert_eq!(answer(b"done", false).response_value(), json!("done"));
        assert_eq!(answer(b"", false).response_value(), Value::Null);
        assert_eq!(
            answer(b"[1,", true).response_value(),
            json!("[1,… [truncated]")
        );
    }

    #[test]
    fn excerpts_end_on_a_character() {
        let mut body = vec![b'a'; EXCERPT_BYTES - 1];
        body.extend_from_slice("é".as_bytes());
        let excerpt = answer(&body, false).excerpt().unwrap();
        assert_eq!(excerpt.len(), EXCERPT_BYTES - 1);
        assert_eq!(answer(b"", false).excerpt(), None);
    }
}
