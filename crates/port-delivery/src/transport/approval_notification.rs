//! The approval notification transport (`DeliveryMode::ApprovalNotification`): tells an
//! action's approvers that a run waits for them. The delivery's request, written with
//! the run at execute, is `{"url", "format": "json" | "slack", "body"}`; each attempt
//! POSTs `body` as compact JSON to `url`, signed and vetted like a webhook (the same
//! [`SignedSender`]). Both formats are sent the same way: the format only decided what
//! the body says (Slack's incoming webhooks take `{text, blocks}` as JSON, and ignore
//! the signature headers).
//!
//! The outcome never changes the run (the worker sees to that): a success completes
//! the delivery, a failure is retried on the usual schedule, and a final one leaves one
//! line in the run's log.

use std::time::Duration;

use async_trait::async_trait;
use port_core::service::Services;
use serde_json::Value;

use super::signed::SignedSender;
use super::webhook::WebhookRequest;
use super::{Job, Transport};
use crate::outcome::{Abandoned, Carried};
use crate::resolve::VettingResolver;

/// The formats an approval notification's body may have been written in.
const FORMATS: [&str; 2] = ["json", "slack"];

/// Carries approval notifications: one signed POST per attempt.
#[derive(Debug)]
pub struct ApprovalNotificationTransport {
    sender: SignedSender,
}

impl ApprovalNotificationTransport {
    /// Signs with the organizations' credentials from `services`, each attempt within
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

/// The POST a notification's request stands for, or why it cannot be sent.
fn notification(request: &Value) -> Result<WebhookRequest, String> {
    match request.get("format").and_then(Value::as_str) {
        Some(format) if FORMATS.contains(&format) => {}
        Some(format) => return Err(format!("its format {format:?} is not json or slack")),
        None => return Err("it has no format".to_owned()),
    }
    let body = match request.get("body") {
        Some(body @ Value::Object(_)) => body,
        _ => return Err("its body is not an object".to_owned()),
    };
    WebhookRequest::post_json(request, body).map_err(|e| e.to_string())
}

#[async_trait]
impl Transport for ApprovalNotificationTransport {
    async fn carry(&self, job: Job<'_>) -> Result<Carried, Abandoned> {
        match notification(&job.invocation.request) {
            Ok(request) => {
                self.sender
                    .attempt(&job, &request, "approval notification")
                    .await
            }
            Err(e) => Ok(Carried::Unsendable(format!(
                "the notification is unusable: {e}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::Method;
    use serde_json::json;

    use super::*;

    #[test]
    fn posts_the_body_alone_as_compact_json() {
        let request = notification(&json!({
            "url": "https://hooks.example.com/services/T1/B2/secret",
            "format": "slack",
            "body": {"text": "Run r_1 waits", "blocks": []},
            "method": "DELETE",
            "headers": {"Authorization": "ignored"},
        }))
        .unwrap();
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.host(), "hooks.example.com");
        assert!(request.headers.is_empty(), "only portd's headers are sent");
        assert_eq!(request.body, br#"{"text":"Run r_1 waits","blocks":[]}"#);
    }

    #[test]
    fn malformed_requests_say_why_without_the_url() {
        let cases = [
            (json!({"format": "json", "body": {}}), "it has no url"),
            (
                json!({"url": "ftp://x/secret", "format": "json", "body": {}}),
                "its url is not a valid http(s) URL",
            ),
            (json!({"url": "http://x", "body": {}}), "it has no format"),
            (
                json!({"url": "http://x", "format": "teams", "body": {}}),
                r#"its format "teams" is not json or slack"#,
            ),
            (
                json!({"url": "http://x", "format": "json", "body": "hi"}),
                "its body is not an object",
            ),
            (json!("not an object"), "it has no format"),
        ];
        for (request, why) in cases {
            assert_eq!(notification(&request).unwrap_err(), why, "{request}");
        }
    }
}
