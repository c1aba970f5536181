//! One attempt at a webhook: the request rebuilt from the stored method, signed over
//! the exact bytes sent, and what came back.

use std::sync::Arc;
use std::time::Duration;

use port_core::PortError;
use port_core::signature::sign;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::resolve::{VettingResolver, refusal_in};

/// Sent on every attempt of one delivery, so receivers can deduplicate (as in
/// Standard Webhooks).
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";
/// `portd/<version>`.
pub const USER_AGENT_VALUE: &str = concat!("portd/", env!("CARGO_PKG_VERSION"));

/// How much of an answer's body an attempt record keeps.
pub const EXCERPT_BYTES: usize = 1024;
/// How much of a synchronized webhook's answer is kept as the run's `response`
/// (Port's own payload limit).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Headers a template may not set: portd computes them, or the HTTP stack does.
const RESERVED: [&str; 9] = [
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "host",
    "user-agent",
    "webhook-id",
    "x-port-signature",
    "x-port-timestamp",
];

/// Why a stored request cannot be sent; no attempt will fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    #[error("it has no url")]
    MissingUrl,
    // The URL itself is left out: templates may put secrets in it.
    #[error("its url is not a valid http(s) URL")]
    BadUrl,
    #[error("its method {0:?} is not an HTTP method")]
    BadMethod(String),
    #[error("its header {0:?} has an invalid name or value")]
    BadHeader(String),
    #[error("its body cannot be serialized: {0}")]
    Body(String),
}

/// A webhook request as rebuilt from a delivery's evaluated method
/// (`{url, method, headers, body, …}`).
#[derive(Clone)]
pub struct WebhookRequest {
    pub url: Url,
    pub method: Method,
    /// The template's headers, reserved ones dropped.
    pub headers: HeaderMap,
    /// The compact JSON of `body`: exactly what is signed and sent.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for WebhookRequest {
    // Templates may put secrets in the URL and headers: show neither.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRequest")
            .field("method", &self.method)
            .field("host", &self.host())
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl WebhookRequest {
    pub fn from_method(request: &Value) -> Result<Self, InvalidRequest> {
        let url = request
            .get("url")
            .and_then(Value::as_str)
            .ok_or(InvalidRequest::MissingUrl)?;
        let url = Url::parse(url).map_err(|_| InvalidRequest::BadUrl)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(InvalidRequest::BadUrl);
        }
        let method = match request.get("method").and_then(Value::as_str) {
            None => Method::POST,
            Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .map_err(|_| InvalidRequest::BadMethod(m.to_owned()))?,
        };
        let mut headers = HeaderMap::new();
        for (name, value) in request
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let text = match value {
                Value::Null => continue,
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let bad = || InvalidRequest::BadHeader(name.clone());
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
            if RESERVED.contains(&header.as_str()) {
                continue;
            }
            let mut value = HeaderValue::from_str(&text).map_err(|_| bad())?;
            // Header values often carry tokens from `.secrets`.
            value.set_sensitive(true);
            headers.append(header, value);
        }
        let body = serde_json::to_vec(request.get("body").unwrap_or(&Value::Null))
            .map_err(|e| InvalidRequest::Body(e.to_string()))?;
        Ok(Self {
            url,
            method,
            headers,
            body,
        })
    }

    /// The host, for operators' logs (the full URL may hold secrets).
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or("")
    }

    /// The headers of one attempt: the template's, then portd's, signed at `timestamp`.
    pub fn signed_headers(&self, secret: &[u8], timestamp: i64, webhook_id: &str) -> HeaderMap {
        let mut headers = self.headers.clone();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        let id = HeaderValue::from_str(webhook_id).unwrap_or_else(|_| HeaderValue::from_static(""));
        headers.insert(HeaderName::from_static(WEBHOOK_ID_HEADER), id);
        headers.insert(
            HeaderName::from_static("x-port-timestamp"),
            HeaderValue::from(timestamp),
        );
        let signature = HeaderValue::from_str(&sign(secret, timestamp, &self.body));
        if let Ok(mut signature) = signature {
            signature.set_sensitive(true);
            headers.insert(HeaderName::from_static("x-port-signature"), signature);
        }
        headers
    }
}

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
            Self::TimedOut(after) => format!("no answer within {}", crate::worker::human(*after)),
            Self::Transport(e) => e.clone(),
            Self::Refused(e) => format!("{} ({})", e.message, e.kind),
        }
    }

    fn of(error: reqwest::Error) -> Self {
        match refusal_in(&error) {
            Some(refused) => Self::Refused(refused.0.clone()),
            None => Self::Transport(describe_error(error)),
        }
    }
}

/// The HTTP client deliveries use: names resolved once by `resolver`, which passes on
/// only addresses the destination policy allows; no redirects (a 3xx is the receiver's
/// answer, and following it could reach hosts the policy never saw); no proxy (the
/// address vetted must be the address connected to).
pub fn client(
    timeout: Duration,
    resolver: Arc<VettingResolver>,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(resolver)
        .connect_timeout(timeout)
        .build()
}

/// Sends one attempt and reads up to `body_limit` bytes of the answer, all within
/// `timeout`.
pub async fn send(
    client: &reqwest::Client,
    request: &WebhookRequest,
    headers: HeaderMap,
    timeout: Duration,
    body_limit: usize,
) -> Result<Answer, NoAnswer> {
    let attempt = async {
        let mut response = client
            .request(request.method.clone(), request.url.clone())
            .headers(headers)
            .body(request.body.clone())
            .send()
            .await
            .map_err(NoAnswer::of)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await.map_err(NoAnswer::of)? {
            let room = body_limit - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            body,
            truncated,
            retry_after,
        })
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(NoAnswer::TimedOut(timeout)),
    }
}

/// The error and its causes, without the URL (templates may put secrets in it).
fn describe_error(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut parts = vec![error.to_string()];
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use port_core::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, verify};
    use serde_json::json;

    use super::*;

    #[test]
    fn rebuilds_the_stored_method() {
        let request = WebhookRequest::from_method(&json!({
            "type": "WEBHOOK",
            "url": "http://example.com/hook?x=1",
            "method": "put",
            "headers": {"RUN_ID": "r_1", "Content-Type": "text/plain", "N": 3, "Gone": null},
            "body": {"b": 1, "a": [true, null]},
        }))
        .unwrap();
        assert_eq!(request.method, Method::PUT);
        assert_eq!(request.host(), "example.com");
        assert_eq!(request.body, br#"{"b":1,"a":[true,null]}"#);
        assert_eq!(request.headers.get("run_id").unwrap(), "r_1");
        assert_eq!(request.headers.get("n").unwrap(), "3");
        assert!(
            request.headers.get("content-type").is_none(),
            "portd sets it"
        );
        assert!(request.headers.get("gone").is_none());
    }

    #[test]
    fn defaults_to_post_and_refuses_broken_methods() {
        let ok = WebhookRequest::from_method(&json!({"url": "https://example.com", "body": null}))
            .unwrap();
        assert_eq!(ok.method, Method::POST);
        assert_eq!(ok.body, b"null");
        let missing = WebhookRequest::from_method(&json!({"body": {}}));
        assert_eq!(missing.unwrap_err(), InvalidRequest::MissingUrl);
        let scheme = WebhookRequest::from_method(&json!({"url": "ftp://example.com/secret"}));
        assert_eq!(scheme.unwrap_err(), InvalidRequest::BadUrl);
        let header = WebhookRequest::from_method(
            &json!({"url": "http://a.b", "headers": {"bad name": "x"}}),
        );
        assert!(matches!(header.unwrap_err(), InvalidRequest::BadHeader(_)));
    }

    #[test]
    fn signs_the_exact_body() {
        let request =
            WebhookRequest::from_method(&json!({"url": "http://a.b/", "body": {"é": "ü"}}))
                .unwrap();
        let headers = request.signed_headers(b"s3cret", 1_700_000_000, "dlv_x");
        let signature = headers.get(SIGNATURE_HEADER).unwrap().to_str().unwrap();
        let timestamp = headers.get(TIMESTAMP_HEADER).unwrap().to_str().unwrap();
        assert_eq!(timestamp, "1700000000");
        verify(
            b"s3cret",
            signature,
            timestamp,
            &request.body,
            1_700_000_000,
            300,
        )
        .unwrap();
        assert_eq!(headers.get(WEBHOOK_ID_HEADER).unwrap(), "dlv_x");
        assert_eq!(headers.get(CONTENT_TYPE).unwrap(), "application/json");
        assert!(
            headers
                .get(USER_AGENT)
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("portd/")
        );
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
