//! [`ClientError`]: everything a call can fail with.

use std::time::Duration;

use serde_json::Value;

use crate::types::RunStatus;

/// Why a call failed.
///
/// Port answers failures with `{"ok": false, "error": "<identifier>", "message": "…"}`;
/// the identifier (e.g. `run_exhausted`, `not_found`) is what programs should match on,
/// through [`ClientError::identifier`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server refused the request (any non-2xx answer except 401).
    #[error("{}", api_display(*status, error, message))]
    Api {
        /// The HTTP status.
        status: u16,
        /// Port's error identifier, e.g. `not_found`; empty when the body was not Port's
        /// error envelope (a proxy's HTML page, for instance).
        error: String,
        /// The human-readable message (or the start of a non-JSON body).
        message: String,
        /// The whole body as JSON; a non-JSON body becomes a JSON string.
        body: Box<Value>,
    },
    /// The credentials or the token were refused, after one token refresh and resend.
    #[error("{}", api_display(401, error, message))]
    Unauthorized {
        /// Port's error identifier, usually `unauthorized`; may be empty.
        error: String,
        /// The server's message.
        message: String,
        /// The whole body as JSON.
        body: Box<Value>,
    },
    /// The request could not be sent or its answer could not be read (connection
    /// refused, DNS, TLS, request timeout), after the configured retries.
    #[error("transport error: {0}")]
    Transport(#[source] reqwest::Error),
    /// A 2xx answer did not have the expected shape.
    #[error("unexpected response to {context}: {message}")]
    Decode {
        /// Which call and which part of its answer.
        context: String,
        /// What was wrong.
        message: String,
    },
    /// The client is misconfigured (bad base URL, missing credentials, bad header).
    #[error("configuration error: {0}")]
    Config(String),
    /// A wait ran out of time ([`crate::PortClient::wait_for_run`]).
    #[error("timed out after {waited:?} waiting for {what}{}", last_status.as_ref().map(|s| format!(" (last status {s})")).unwrap_or_default())]
    Timeout {
        /// What was awaited, e.g. `run r_… to end`.
        what: String,
        /// How long the caller waited.
        waited: Duration,
        /// The run's status at the last poll, when one succeeded.
        last_status: Option<RunStatus>,
    },
    /// A log stream broke in a way reconnecting could not repair.
    #[error("log stream of run {run_id}: {message}")]
    Stream {
        /// The followed run.
        run_id: String,
        /// What went wrong.
        message: String,
    },
}

/// What a masked secret value is replaced with (portd's word for it too).
const REDACTED: &str = "[REDACTED]";
/// Shorter values are not masked; see [`ClientError::masking`].
const MIN_MASKED_LEN: usize = 4;

/// Replaces `value` in every string (and key) of a JSON value.
fn mask_json(json: &mut Value, value: &str) {
    match json {
        Value::String(text) if text.contains(value) => *text = text.replace(value, REDACTED),
        Value::Array(items) => items.iter_mut().for_each(|item| mask_json(item, value)),
        Value::Object(map) => {
            let masked = std::mem::take(map)
                .into_iter()
                .map(|(key, mut item)| {
                    mask_json(&mut item, value);
                    (key.replace(value, REDACTED), item)
                })
                .collect();
            *map = masked;
        }
        _ => {}
    }
}

fn api_display(status: u16, error: &str, message: &str) -> String {
    match (error.is_empty(), message.is_empty()) {
        (false, false) => format!("HTTP {status} {error}: {message}"),
        (false, true) => format!("HTTP {status} {error}"),
        (true, false) => format!("HTTP {status}: {message}"),
        (true, true) => format!("HTTP {status}"),
    }
}

impl ClientError {
    /// Port's error identifier (`not_found`, `run_exhausted`, …) when the server sent one.
    pub fn identifier(&self) -> Option<&str> {
        match self {
            Self::Api { error, .. } | Self::Unauthorized { error, .. } if !error.is_empty() => {
                Some(error)
            }
            _ => None,
        }
    }

    /// The HTTP status, for errors the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            Self::Unauthorized { .. } => Some(401),
            _ => None,
        }
    }

    /// Whether the server answered 404 (the run, entity, action… does not exist).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// This error with every occurrence of `value` replaced by `[REDACTED]`, for calls
    /// that send a secret value: portd never quotes one back, but a proxy or another
    /// server might, and errors get printed and logged. Values shorter than 4 bytes are
    /// left alone (as portd does when masking): they would hide ordinary words, not
    /// the value.
    pub(crate) fn masking(self, value: &str) -> Self {
        if value.len() < MIN_MASKED_LEN {
            return self;
        }
        let mask = |text: String| {
            if text.contains(value) {
                text.replace(value, REDACTED)
            } else {
                text
            }
        };
        match self {
            Self::Api {
                status,
                error,
                message,
                mut body,
            } => {
                mask_json(&mut body, value);
                Self::Api {
                    status,
                    error: mask(error),
                    message: mask(message),
                    body,
                }
            }
            Self::Unauthorized {
                error,
                message,
                mut body,
            } => {
                mask_json(&mut body, value);
                Self::Unauthorized {
                    error: mask(error),
                    message: mask(message),
                    body,
                }
            }
            Self::Decode { context, message } => Self::Decode {
                context: mask(context),
                message: mask(message),
            },
            Self::Config(message) => Self::Config(mask(message)),
            // A transport error names the URL (never the body); the rest carry no
            // server text.
            other => other,
        }
    }

    pub(crate) fn decode(context: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self::Decode {
            context: context.into(),
            message: message.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_comes_from_the_envelope_only() {
        let api = ClientError::Api {
            status: 422,
            error: "run_exhausted".into(),
            message: "run r_x has already ended".into(),
            body: Box::new(Value::Null),
        };
        assert_eq!(api.identifier(), Some("run_exhausted"));
        assert_eq!(api.status(), Some(422));
        assert_eq!(
            api.to_string(),
            "HTTP 422 run_exhausted: run r_x has already ended"
        );
        let bare = ClientError::Api {
            status: 502,
            error: String::new(),
            message: "Bad Gateway".into(),
            body: Box::new(Value::Null),
        };
        assert_eq!(bare.identifier(), None);
        assert_eq!(bare.to_string(), "HTTP 502: Bad Gateway");
        assert_eq!(ClientError::Config("x".into()).identifier(), None);
    }

    #[test]
    fn errors_can_mask_a_value_they_quote() {
        let value = "tok-Zx8Cv3Bn";
        let quoted = ClientError::Api {
            status: 422,
            error: "invalid_request".into(),
            message: format!("body.secretValue: {value:?} is not allowed"),
            body: Box::new(serde_json::json!({
                "ok": false,
                "details": [{ "value": value, value: 1 }]
            })),
        }
        .masking(value);
        let shown = format!("{quoted} {quoted:?}");
        assert!(!shown.contains(value), "{shown}");
        assert!(shown.contains("[REDACTED]"), "{shown}");
        assert_eq!(quoted.identifier(), Some("invalid_request"));
        let decode = ClientError::decode("POST /v1/x", format!("bad {value}")).masking(value);
        assert!(!format!("{decode:?}").contains(value));
        // Too short to mask without garbling the message.
        let short = ClientError::Config("abc".into()).masking("ab");
        assert_eq!(short.to_string(), "configuration error: abc");
    }

    #[test]
    fn errors_stay_small() {
        // Every call returns Result<_, ClientError>; a large error slows the happy path.
        assert!(std::mem::size_of::<ClientError>() <= 80);
    }
}
