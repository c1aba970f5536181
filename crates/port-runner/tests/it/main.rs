//! port-runner end to end: the real binary, real shell scripts, and portd in process
//! with its delivery worker.

mod e2e;
mod support;
