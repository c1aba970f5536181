//! The `UPSERT_ENTITY` transport (`DeliveryMode::UpsertEntity`): portd writes the
//! entity itself, in process, from the run's evaluated `{blueprintIdentifier, mapping}`
//! (the action's templates rendered at execute), through the same entity service as
//! `POST …/entities?upsert=true&merge=true`, bound to the run. The write's outcome is
//! the attempt's answer: the run ends `SUCCESS` with the entity as its response, or
//! `FAILURE` with Port's error envelope; a store that is unavailable (503) is retried
//! like a webhook that answered 503.

use std::time::Instant;

use async_trait::async_trait;
use port_core::run::SYSTEM_ACTOR;
use port_core::service::{Caller, EntityWriteKind, EntityWriteOptions, Services};
use port_core::{ErrorKind, PortError};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Job, Transport};
use crate::outcome::{Abandoned, Answer, Attempt, Carried, Outcome};

/// Carries `UPSERT_ENTITY` deliveries: one entity write per attempt.
#[derive(Clone)]
pub struct UpsertEntityTransport {
    services: Services,
}

impl std::fmt::Debug for UpsertEntityTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpsertEntityTransport")
    }
}

impl UpsertEntityTransport {
    pub fn new(services: Services) -> Self {
        Self { services }
    }

    async fn upsert(&self, job: &Job<'_>) -> Result<Value, PortError> {
        let request = &job.invocation.request;
        let blueprint = request
            .get("blueprintIdentifier")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                PortError::invalid("invocationMethod.blueprintIdentifier: must be a string")
            })?;
        let mapping = match request.get("mapping") {
            Some(mapping @ Value::Object(_)) => mapping,
            _ => {
                return Err(PortError::invalid(
                    "invocationMethod.mapping: must evaluate to an object",
                ));
            }
        };
        // The change is the run's, made by portd on its behalf.
        let caller = Caller::machine(job.delivery.org_id.clone(), SYSTEM_ACTOR);
        let options = EntityWriteOptions {
            kind: EntityWriteKind::Create {
                upsert: true,
                merge: true,
            },
            validation_only: false,
            create_missing_related: false,
            run_id: Some(job.delivery.run_id.to_string()),
        };
        let written = self
            .services
            .write_entity(&caller, blueprint, mapping, None, &options)
            .await?;
        Ok(json!({ "ok": true, "entity": written.entity.to_json() }))
    }
}

/// The answer an attempt stands for: 200 and the entity, or the refusal's status and
/// Port's envelope.
fn answer_of(outcome: Result<Value, PortError>) -> Answer {
    let (status, body) = match outcome {
        Ok(body) => (StatusCode::OK, body),
        Err(e) => {
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = if e.kind == ErrorKind::InternalError {
                "internal error".to_owned()
            } else {
                e.message.clone()
            };
            let envelope = json!({ "ok": false, "error": e.kind.identifier(), "message": message });
            (status, envelope)
        }
    };
    Answer {
        status,
        body: body.to_string().into_bytes(),
        truncated: false,
        retry_after: None,
    }
}

#[async_trait]
impl Transport for UpsertEntityTransport {
    async fn carry(&self, job: Job<'_>) -> Result<Carried, Abandoned> {
        let clock = &self.services.clock;
        let started_at = clock.now();
        let started = Instant::now();
        let answer = answer_of(self.upsert(&job).await);
        tracing::info!(
            delivery = %job.delivery.id,
            run = %job.delivery.run_id,
            attempt = job.attempt,
            status = answer.status.as_u16(),
            "entity upsert attempt"
        );
        Ok(Carried::Attempted(Attempt {
            outcome: Outcome::Answered(answer),
            started_at,
            ended_at: clock.now(),
            duration: started.elapsed(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_answer_with_their_status_and_envelope_and_hide_internal_detail() {
        let refused = answer_of(Err(PortError::not_found("blueprint nope")));
        assert_eq!(refused.status, StatusCode::NOT_FOUND);
        assert_eq!(
            refused.response_value(),
            json!({ "ok": false, "error": "not_found", "message": "blueprint nope was not found" })
        );
        let internal = answer_of(Err(PortError::internal("disk on fire")));
        assert_eq!(internal.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(internal.response_value()["message"], "internal error");
        let written = answer_of(Ok(json!({ "ok": true })));
        assert!(written.is_success());
    }
}
