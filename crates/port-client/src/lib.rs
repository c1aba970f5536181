//! `port-client`: a typed async client of Port's self-service actions and runs API,
//! as served by portd and by Port's cloud (`https://api.getport.io/v1`).
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use port_client::{ExecuteRequest, LogEvent, PortClient};
//! use futures::StreamExt;
//!
//! # async fn demo() -> Result<(), port_client::ClientError> {
//! // PORT_API_URL (default http://127.0.0.1:3000/v1), PORT_CLIENT_ID, PORT_CLIENT_SECRET.
//! let client = PortClient::from_env()?;
//! let run = client
//!     .execute("create_microservice", &ExecuteRequest::new().property("name", "svc"))
//!     .await?;
//! let mut events = std::pin::pin!(client.follow_logs(&run.id));
//! while let Some(event) = events.next().await {
//!     match event? {
//!         LogEvent::Log(log) => println!("{}", log.message),
//!         LogEvent::Status(run) => println!("status: {}", run.status),
//!         LogEvent::Ended(run) => println!("ended: {}", run.status),
//!     }
//! }
//! let run = client.wait_for_run(&run.id, Duration::from_secs(60)).await?;
//! # let _ = run;
//! # Ok(())
//! # }
//! ```
//!
//! What it does for you, and what Port's own clients leave to their users:
//! - tokens are cached until shortly before they expire, and a 401 refreshes the token
//!   and resends once;
//! - transient failures are retried with backoff, jitter and `Retry-After`, but only
//!   when repeating the request is safe; `execute` sends an `Idempotency-Key` so it is;
//! - identifiers are percent-encoded into paths;
//! - answers are typed, keep unknown keys, and errors carry Port's error identifier;
//! - [`PortClient::wait_for_run`] and [`PortClient::follow_logs`] watch a run to its end;
//! - secrets (client secret, tokens, organization secrets' values) never appear in
//!   `Debug` output, errors or logs.
//!
//! Every route has a method; [`PortClient::request_json`] reaches anything else.

#![deny(missing_docs)]

mod api;
mod client;
mod error;
mod follow;
mod requests;
mod retry;
mod sse;
mod types;
mod wire;

pub use client::{
    DEFAULT_API_URL, ENV_API_URL, ENV_CLIENT_ID, ENV_CLIENT_SECRET, PortClient, PortClientBuilder,
};
pub use error::ClientError;
pub use requests::{
    ActionQuery, AuditQuery, EntityDeleteOptions, EntitySearch, EntityUpdateOptions,
    EntityWriteOptions, ExecuteRequest, RunQuery, RunUpdate, TeamRequest, UserUpdate,
};
pub use reqwest::Method;
pub use retry::RetryPolicy;
pub use time::OffsetDateTime;
pub use types::{
    AccessToken, Action, ActionPermissions, Approval, Approver, AuditEntry, Blueprint,
    BulkEntitiesResult, BulkEntityError, BulkEntityWritten, Delivery, DeliveryAttempt, Entity,
    EntityPage, EntitySearchResult, FinalStatus, Grant, LogEvent, NameRef, PersonalCredentials,
    Reference, Run, RunLog, RunPage, RunStatus, Secret, Team, TeamMember, User,
};
pub use url::Url;
