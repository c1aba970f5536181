//! `port-webhook`: write handlers for Port self-service action runs (served by portd or
//! by Port's cloud) as plain async functions, and let this crate do the rest:
//! signature checks, duplicate deliveries, routing, concurrency limits, timeouts,
//! panics, graceful shutdown, and, above all, ending every run.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use port_client::PortClient;
//! use port_webhook::{ActionOptions, HandlerError, Invocation, Outcome, Receiver, RunContext};
//! use serde_json::json;
//!
//! async fn create_service(inv: Invocation, ctx: RunContext) -> Result<Outcome, HandlerError> {
//!     let name = inv
//!         .property_str("name")
//!         .ok_or_else(|| HandlerError::new("the `name` input is required"))?;
//!     ctx.log(format!("creating {name}")).await?;
//!     ctx.add_link(format!("https://ci.example.com/{name}")).await?;
//!     ctx.upsert_entity("microservice", &json!({ "identifier": name, "properties": {} }))
//!         .await?;
//!     Ok(Outcome::with_summary(format!("{name} is ready")))
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // PORT_API_URL, PORT_CLIENT_ID, PORT_CLIENT_SECRET.
//! let client = PortClient::from_env()?;
//! let secret = std::env::var("PORT_CLIENT_SECRET")?;
//! let receiver = Receiver::builder(client, secret)
//!     .action(
//!         "create_microservice",
//!         ActionOptions::new().timeout(Duration::from_secs(300)).concurrency(4),
//!         create_service,
//!     )
//!     .build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! receiver
//!     .serve_with_shutdown(listener, async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees
//! - A delivery is handled only if its `X-Port-Signature` is valid for its raw bytes
//!   and its `X-Port-Timestamp` is within the tolerance (default 5 minutes).
//! - A repeated `webhook-id` never runs a handler twice.
//! - Every run a handler was started for ends: `SUCCESS` when the handler returns
//!   `Ok` (unless it ended the run itself), `FAILURE` with the reason when it returns
//!   an error, panics, exceeds its action's timeout, or is still running when the
//!   shutdown grace period is over ("runner shutting down").
//! - Synchronized actions are never PATCHed to a status: their handler's outcome is
//!   the HTTP answer, from which the server sets the status.
//! - Secret inputs (`"encryption": "aes256-gcm"`) arrive encrypted, as Port and portd
//!   send them; handlers get their clear values in [`Invocation::properties`],
//!   decrypted with the client secret (the receiver's signing secret). A run whose
//!   secret input does not decrypt ends `FAILURE` with a reason naming the input, and
//!   its handler does not run: it never sees ciphertext in place of a value.
//! - Secret inputs and the client secret are masked (`***`) in everything a
//!   [`RunContext`] sends.
//!
//! # Concurrency: excess deliveries wait
//! Each action has a limit ([`ActionOptions::concurrency`]). A delivery beyond it is
//! still accepted (200) and waits in-process for a free slot; its timeout starts when
//! its handler starts. This keeps long jobs from burning through portd's retry
//! schedule, which is what answering 503 would do. The cost: runs waiting for a slot
//! live in this process only. At shutdown they are failed at once ("runner shutting
//! down") instead of being started late. Synchronized deliveries wait the same way,
//! with their request held open.
//!
//! # Pull mode
//! [`Receiver::pull`] runs the same handlers for runs claimed with `claim-pending`,
//! for runners the server cannot reach (see [`PullOptions`]).

#![deny(missing_docs)]

mod context;
mod dedupe;
mod dispatch;
mod handler;
mod invocation;
mod pull;
mod receiver;

pub use context::{MASK, MIN_MASKED_LEN, RunContext};
pub use dedupe::{DEFAULT_DEDUPE_CAPACITY, DEFAULT_DEDUPE_TTL};
pub use dispatch::SHUTDOWN_REASON;
pub use futures::future::BoxFuture;
pub use handler::{
    ActionOptions, DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT, Handler, HandlerError, Outcome,
    human_duration,
};
pub use invocation::{BodyFormat, Invocation, InvocationError, PORT_CONTEXT_KEY, SecretInputError};
pub use pull::{
    AckMode, DEFAULT_POLL_INTERVAL, DEFAULT_VISIBILITY_TIMEOUT, PullOptions, invocation_from_run,
};
pub use receiver::{
    ACTION_HEADER, DEFAULT_GRACE, DEFAULT_TOLERANCE, RUN_ID_HEADER, Receiver, ReceiverBuilder,
    SIGNATURE_HEADER, ServeError, TIMESTAMP_HEADER, WEBHOOK_ID_HEADER,
};
pub use tokio_util::sync::CancellationToken;
