//! Integration tests of portd: the router in process, a real socket, and the binary.

mod actions;
mod auth;
mod binary;
mod blueprints;
mod clients;
mod connections;
mod crash;
mod delivery;
mod entities;
mod errors;
mod files;
mod github_action;
mod github_action_bundle;
mod hooks;
mod log_stream;
mod openapi_doc;
mod port_schemas;
mod runs;
mod secret_key;
mod secrets;
mod seed_replay;
mod socket;
mod support;
mod tenancy;
mod ui;
