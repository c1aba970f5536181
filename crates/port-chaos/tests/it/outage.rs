//! PostgreSQL stopped (`pg_ctl stop -m immediate`) under load, on a private cluster of
//! the test's own: 503 with Retry-After meanwhile, recovery within 10 s of its return,
//! nothing acknowledged lost.

use port_chaos::outage::{self, OutageConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_answers_503_and_recovers() {
    let portd = port_chaos::portd::binary().expect("the portd binary");
    match outage::run(&OutageConfig::new(portd)).await {
        Ok(outage::Outcome::Ran(report)) => crate::visible(&report.to_string()),
        // CI's machine has PostgreSQL's server binaries: there a skip would hide the test.
        Ok(outage::Outcome::Skipped(reason)) if std::env::var_os("CI").is_some() => {
            panic!("the PostgreSQL outage test cannot run under CI: {reason}")
        }
        Ok(outage::Outcome::Skipped(reason)) => crate::visible(&format!("skipped: {reason}")),
        Err(e) => panic!("{e:#}"),
    }
}
