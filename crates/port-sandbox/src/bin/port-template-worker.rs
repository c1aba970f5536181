//! A template worker on its own, for servers other than portd that use this crate
//! (portd runs the same loop as `portd template-worker`).

fn main() {
    std::process::exit(port_sandbox::worker::run());
}
