//! `port`: see the `port_cli` library for what it does.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // Usage errors exit with clap's code 2, `--help` and `--version` with 0.
    let cli = port_cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: runtime_error: cannot start the async runtime: {e}");
            return ExitCode::from(port_cli::exit::API);
        }
    };
    ExitCode::from(runtime.block_on(port_cli::run(cli)))
}
