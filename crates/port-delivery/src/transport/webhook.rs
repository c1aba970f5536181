//! The webhook transport (`DeliveryMode::Webhook`): portd sends the request itself.
//! Each attempt rebuilds the request from the evaluated method (method, URL, headers,
//! compact JSON body) and sends it signed through the [`SignedSender`] it shares with
//! the other transports that post (`X-Port-Timestamp`, `X-Port-Signature` over the
//! exact bytes sent, `webhook-id`, vetted addresses only, `Retry-After` read).

use std::time::Duration;

use async_trait::async_trait;
use port_core::service::Services;
use port_core::signature::sign;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use reqwest::{Method, Url};
use serde_json::Value;

use super::signed::SignedSender;
use super::{Job, Transport};
use crate::outcome::{Abandoned, Carried};
use crate::resolve::VettingResolver;

/// Carries webhook deliveries: one signed HTTP request per attempt.
#[derive(Debug)]
pub struct WebhookTransport {
    sender: SignedSender,
}

impl WebhookTransport {
    /// Sends with the organizations' credentials from `services`, each attempt within
    /// `timeout`, connecting only to what `resolver` vetted.
    pub fn new(
        services: Services,
        timeout: Duration,
        resolver: VettingResolver,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self::with_sender(SignedSender::new(
            services, timeout, resolver,
        )?))
    }

    pub(crate) fn with_sender(sender: SignedSender) -> Self {
        Self { sender }
    }
}

#[async_trait]
impl Transport for WebhookTransport {
    async fn carry(&self, job: Job<'_>) -> Result<Carried, Abandoned> {
        match WebhookRequest::from_method(&job.invocation.request) {
            Ok(request) => self.sender.attempt(&job, &request, "webhook").await,
            Err(e) => Ok(Carried::Unsendable(format!(
                "the evaluated request is unusable: {e}"
            ))),
        }
    }
}

/// Sent on every attempt of one delivery, so receivers can deduplicate (as in
/// Standard Webhooks).
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";
/// `portd/<version>`.
pub const USER_AGENT_VALUE: &str = concat!("portd/", env!("CARGO_PKG_VERSION"));

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
        let url = http_url(request)?;
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
        Ok(Self {
            url,
            method,
            headers,
            body: compact(request.get("body").unwrap_or(&Value::Null))?,
        })
    }

    /// A POST of `body` as compact JSON to the `url` of `request`, with no headers but
    /// portd's (what other transports than webhooks send).
    pub fn post_json(request: &Value, body: &Value) -> Result<Self, InvalidRequest> {
        Ok(Self {
            url: http_url(request)?,
            method: Method::POST,
            headers: HeaderMap::new(),
            body: compact(body)?,
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

/// The `url` of `request`, which must be an http(s) URL.
fn http_url(request: &Value) -> Result<Url, InvalidRequest> {
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .ok_or(InvalidRequest::MissingUrl)?;
    let url = Url::parse(url).map_err(|_| InvalidRequest::BadUrl)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(InvalidRequest::BadUrl);
    }
    Ok(url)
}

/// The compact JSON of `body`: exactly what is signed and sent.
fn compact(body: &Value) -> Result<Vec<u8>, InvalidRequest> {
    serde_json::to_vec(body).map_err(|e| InvalidRequest::Body(e.to_string()))
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
}
