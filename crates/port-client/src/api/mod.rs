//! The typed methods of [`crate::PortClient`], one module per area of the API.

mod actions;
mod catalog;
mod people;
mod runs;
mod secrets;
