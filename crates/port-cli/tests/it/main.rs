//! `port` end to end: the real binary, against a real in-process portd where a server
//! is needed.

mod exit_codes;
mod help;
mod output;
mod people;
mod profiles;
#[cfg(unix)]
mod quickstart;
mod secrets;
mod support;
mod workflow;
