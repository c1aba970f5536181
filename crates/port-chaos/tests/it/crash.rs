//! `kill -9` cycles against the real portd binary (the controller of
//! `cargo xtask crash-test`, with 5 cycles): SQLite, and PostgreSQL when
//! `PORT_TEST_DATABASE_URL` names a server (in a schema of its own, dropped afterwards).

use port_chaos::crash::{self, CrashConfig};
use port_chaos::pg::ENV_TEST_DATABASE_URL;

/// Cycles per backend in `cargo test`.
const CYCLES: u32 = 5;

fn config(database_url: Option<String>) -> CrashConfig {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(crash::random_seed);
    let portd = port_chaos::portd::binary().expect("the portd binary");
    let mut config = CrashConfig::new(portd, CYCLES, seed);
    config.database_url = database_url;
    config.verbose = false;
    config
}

async fn run(config: CrashConfig) {
    let seed = config.seed;
    let replay = match &config.database_url {
        Some(_) => format!(
            "CHAOS_SEED={seed} with {ENV_TEST_DATABASE_URL}, or `cargo xtask crash-test --cycles {CYCLES} --seed {seed} --database-url URL`"
        ),
        None => format!(
            "CHAOS_SEED={seed}, or `cargo xtask crash-test --cycles {CYCLES} --seed {seed}`"
        ),
    };
    match crash::run(&config).await {
        Ok(report) => crate::visible(&report.to_string()),
        Err(e) => panic!("crash test failed with seed {seed} (replay: {replay}):\n{e:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_kill_9_cycles() {
    run(config(None)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_kill_9_cycles() {
    let Ok(url) = std::env::var(ENV_TEST_DATABASE_URL) else {
        crate::visible(&format!("skipped: {ENV_TEST_DATABASE_URL} not set"));
        return;
    };
    run(config(Some(url))).await;
}
