//! The worker process: renders templates it reads from stdin and writes the results to
//! stdout, under operating-system limits that hold whatever jq does.
//!
//! `portd template-worker` runs [`run`]. It limits its own address space (so a value
//! that grows past the memory limit ends this process, not the server), forbids core
//! dumps and file writes, and renders on a thread with a large stack whose use the
//! template budget bounds (so deep recursion is a named limit, and only an overflow
//! the budget cannot see ends the process). The server kills a worker that outlives
//! its wall clock.

use std::io::{self, BufReader, BufWriter};

use port_core::template::{self, Budget};
use rustix::process::{Resource, Rlimit, setrlimit};

use crate::protocol::{self, Answer, Request};

/// Environment variables the server starts a worker with (its environment is
/// otherwise empty, so nothing of the server's reaches a worker).
pub const ENV_MEMORY_BYTES: &str = "PORT_SANDBOX_MEMORY_BYTES";
pub const ENV_STACK_BYTES: &str = "PORT_SANDBOX_STACK_BYTES";

/// Stack kept free below the template budget's recursion bound, for the frames between
/// two checks of it.
const STACK_MARGIN: usize = 4 * 1024 * 1024;

/// Runs a worker until its input ends; returns the process exit code.
pub fn run() -> i32 {
    let memory = env_number(ENV_MEMORY_BYTES).unwrap_or(crate::Limits::default().memory_bytes);
    let stack = env_number(ENV_STACK_BYTES)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(crate::Limits::default().stack_bytes);
    if let Err(error) = limit_self(memory, stack) {
        eprintln!("template worker: cannot set resource limits: {error}");
        return 71;
    }
    let worker = std::thread::Builder::new()
        .name("template-render".to_owned())
        .stack_size(stack)
        .spawn(move || serve(stack));
    match worker.map(std::thread::JoinHandle::join) {
        Ok(Ok(Ok(()))) => 0,
        Ok(Ok(Err(error))) => {
            eprintln!("template worker: {error}");
            74
        }
        Ok(Err(_)) => 70,
        Err(error) => {
            eprintln!("template worker: cannot start the render thread: {error}");
            71
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// Reads requests and answers them until stdin closes.
fn serve(stack: usize) -> io::Result<()> {
    let mut input = BufReader::new(io::stdin().lock());
    let mut output = BufWriter::new(io::stdout().lock());
    while let Some(request) = protocol::read_frame::<Request>(&mut input)? {
        let budget = Budget {
            stack_bytes: stack.saturating_sub(STACK_MARGIN),
            ..request.budget
        };
        let answer = match template::render_within(&request.template, &request.context, &budget) {
            Ok(value) => Answer::Rendered(value),
            Err(error) => Answer::Failed(error),
        };
        // The request is dropped before answering, so its memory is free for the next.
        drop(request.template);
        drop(request.context);
        protocol::write_frame(&mut output, &answer)?;
    }
    Ok(())
}

/// The limits a worker puts on itself. The address-space limit counts what is mapped
/// now (the executable, the libraries) plus the render thread's stack and `memory`.
fn limit_self(memory: u64, stack: usize) -> io::Result<()> {
    let mapped = mapped_bytes().unwrap_or(256 * 1024 * 1024);
    let address_space = mapped.saturating_add(stack as u64).saturating_add(memory);
    let set = |resource, limit: u64| {
        setrlimit(
            resource,
            Rlimit {
                current: Some(limit),
                maximum: Some(limit),
            },
        )
    };
    // A crash must not leave a core file with secrets in it; jq never writes files.
    set(Resource::Core, 0)?;
    set(Resource::Fsize, 0)?;
    set(Resource::As, address_space)?;
    Ok(())
}

/// `VmSize` of this process, in bytes.
fn mapped_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmSize:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
