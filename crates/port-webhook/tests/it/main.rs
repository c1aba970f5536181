//! port-webhook against a real portd: deliveries signed as portd signs them, handlers
//! reporting to the real API.

mod deliveries;
mod outcomes;
mod pull;
mod shutdown;
mod support;
