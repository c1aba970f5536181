//! port-client against a scripted HTTP server: authentication, retries, error mapping,
//! and following a run's logs.

mod auth;
mod errors;
mod follow;
mod retries;
mod routes;
mod script;
mod secrets;
