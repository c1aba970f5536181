//! The HTTP routes. One table of [`Endpoint`]s ([`ENDPOINTS`], in `table/`) from
//! which both the router and the OpenAPI document are built, so the two cannot drift
//! apart; `endpoint` says what an entry is, `render` holds the envelopes every route
//! shares. Each other module is the handlers of one area: they extract the request,
//! call one service of `port_core::service` and render its answer.

mod endpoint;
mod operations;
mod render;
mod table;

pub(crate) mod actions;
pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod blueprints;
pub(crate) mod deliveries;
pub(crate) mod entities;
pub(crate) mod organization;
pub(crate) mod permissions;
pub(crate) mod runs;
pub(crate) mod secrets;
pub(crate) mod stream;
pub(crate) mod teams;
pub(crate) mod users;
pub(crate) mod workflows;

pub use endpoint::{Endpoint, HttpMethod, ParamKind, QueryParam, RUN_ID_PATTERN};
pub(crate) use render::{method_not_allowed, ok, route_not_found};
pub use table::ENDPOINTS;
