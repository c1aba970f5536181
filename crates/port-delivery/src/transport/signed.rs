//! One signed HTTP attempt, shared by the transports that post to a URL (webhooks,
//! approval notifications): the request signed over the exact bytes sent with the
//! organization's client secret (`X-Port-Timestamp`, `X-Port-Signature`), `webhook-id`
//! (the delivery's id, the same on every attempt), a client that connects only to
//! addresses the destination policy vetted (no proxy, no redirects), the attempt kept
//! within its timeout and the lease, and the answer read (`Retry-After` included).

use std::sync::Arc;
use std::time::{Duration, Instant};

use port_core::service::Services;
use reqwest::header::HeaderMap;

use super::Job;
use super::webhook::WebhookRequest;
use crate::outcome::{
    Abandoned, Answer, Attempt, Carried, EXCERPT_BYTES, MAX_RESPONSE_BYTES, NoAnswer, Outcome,
};
use crate::resolve::{VettingResolver, refusal_in, refused_literal};

/// Sends signed requests for one worker: the client (and its connection pool) is
/// shared by every transport built from clones of it.
#[derive(Clone)]
pub(crate) struct SignedSender {
    services: Services,
    client: reqwest::Client,
    /// How long one attempt may take, answer included.
    timeout: Duration,
}

impl std::fmt::Debug for SignedSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedSender")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SignedSender {
    /// Signs with the organizations' credentials from `services`, each attempt within
    /// `timeout`, connecting only to what `resolver` vetted.
    pub(crate) fn new(
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

    /// Makes one signed attempt at sending `request` for `job`; `kind` names the
    /// transport in operators' logs.
    pub(crate) async fn attempt(
        &self,
        job: &Job<'_>,
        request: &WebhookRequest,
        kind: &'static str,
    ) -> Result<Carried, Abandoned> {
        let delivery = job.delivery;
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
                match send(&self.client, request, headers, self.timeout, limit).await {
                    Ok(answer) => Outcome::Answered(answer),
                    Err(NoAnswer::Refused(refusal)) => Outcome::refused(&refusal),
                    Err(no) => Outcome::NoAnswer(no),
                }
            }
        };
        let duration = started.elapsed();
        let ended_at = clock.now();
        tracing::info!(
            kind,
            delivery = %delivery.id,
            run = %delivery.run_id,
            host = request.host(),
            attempt = job.attempt,
            status = outcome.answer().map(|a| a.status.as_u16()),
            duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            "delivery attempt"
        );
        Ok(Carried::Attempted(Attempt {
            outcome,
            started_at,
            ended_at,
            duration,
        }))
    }
}

/// The HTTP client deliveries use: names resolved once by `resolver`, which passes on
/// only addresses the destination policy allows; no redirects (a 3xx is the receiver's
/// answer, and following it could reach hosts the policy never saw); no proxy (the
/// address vetted must be the address connected to).
pub(crate) fn client(
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
pub(crate) async fn send(
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
