//! port-webhook against a real portd: deliveries signed as portd signs them, handlers
//! reporting to the real API.

mod deliveries;
mod outcomes;
mod pull;
mod secrets;
mod shutdown;
mod support;
