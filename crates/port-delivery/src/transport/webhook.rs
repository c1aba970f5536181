//! The webhook transport (`DeliveryMode::Webhook`): portd sends the request itself.
//! Each attempt rebuilds the request from the evaluated method (method, URL, headers,
//! compact JSON body), signs it over the exact bytes sent (`X-Port-Timestamp`,
//! `X-Port-Signature`, with the organization's client secret), adds `webhook-id`
//! (the delivery's id, the same on every attempt), connects only to addresses the
//! destination policy vetted, and reads what came back (`Retry-After` included).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use port_core::service::Services;
use port_core::signature::sign;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use reqwest::{Method, Url};
use serde_json::Value;

use super::{Job, Transport};
use crate::outcome::{
    Abandoned, Answer, Attempt, Carried, EXCERPT_BYTES, MAX_RESPONSE_BYTES, NoAnswer, Outcome,
};
use crate::resolve::{VettingResolver, refusal_in, refused_literal};

/// Carries webhook deliveries: one signed HTTP request per attempt.
pub struct WebhookTransport {
    services: Services,
    client: reqwest::Client,
    /// How long one attempt may take, answer included.
    timeout: Duration,
}

impl std::fmt::Debug for WebhookTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTransport")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl WebhookTransport {
    /// Sends with the organizations' credentials from `services`, each attempt within
    /// `timeout`, connecting only to what `resolver` vetted.
    pub fn new(
        services: Services,
        timeout: Duration,
        resolver: VettingResolver,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: client(timeout, Arc::new(resolver))?,
            services,
            timeout,
        })
    }
}

#[async_trait]
impl Transport for WebhookTransport {
    async fn carry(&self, job: Job<'_>) -> Result<Carried, Abandoned> {
        let delivery = job.delivery;
        let request = match WebhookRequest::from_method(&job.invocation.request) {
            Ok(request) => request,
            Err(e) => {
                return Ok(Carried::Unsendable(format!(
                    "the evaluated request is unusable: {e}"
                )));
            }
        };
        let Some(credential) = self.services.signing_credential(&delivery.org_id).await? else {
            return Ok(Carried::Unsendable(
                "the organization has no client credential to sign it with".to_owned(),
            ));
        };
        let clock = &self.services.clock;
        if !job.fits_in_lease(clock.now(), self.timeout) {
            // The steps before were slow: the lease might end mid-attempt and let a
            // second worker send too. Hand the delivery back instead.
            return Ok(Carried::Later(clock.now()));
        }

        let started_at = clock.now();
        let started = Instant::now();
        // Names are vetted by the client's resolver as it connects; addresses here.
        let outcome = match refused_literal(&request.url, &*self.services.destinations) {
            Some(refusal) => Outcome::refused(&refusal),
            None => {
                let headers = request.signed_headers(
                    credential.client_secret.expose().as_bytes(),
                    started_at.unix_seconds(),
                    delivery.id.as_str(),
                );
                let limit = if delivery.synchronized {
                    MAX_RESPONSE_BYTES
                } else {
                    EXCERPT_BYTES
                };
                match send(&self.client, &request, headers, self.timeout, limit).await {
                    Ok(answer) => Outcome::Answered(answer),
                    Err(NoAnswer::Refused(refusal)) => Outcome::refused(&refusal),
                    Err(no) => Outcome::NoAnswer(no),
                }
            }
        };
        let duration = started.elapsed();
        let ended_at = clock.now();
        tracing::info!(
            delivery = %delivery.id,
            run = %delivery.run_id,
            host = request.host(),
            attempt = job.attempt,
            status = outcome.answer().map(|a| a.status.as_u16()),
            duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            "webhook attempt"
        );
        Ok(Carried::Attempted(Attempt {
            outcome,
            started_at,
            ended_at,
            duration,
        }))
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
            .map_err(no_answer)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await.map_err(no_answer)? {
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

/// What a failed request (or body read) comes to: the destination policy's refusal,
/// or the error.
fn no_answer(error: reqwest::Error) -> NoAnswer {
    match refusal_in(&error) {
        Some(refused) => NoAnswer::Refused(refused.0.clone()),
        None => NoAnswer::Transport(describe_error(error)),
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
}
