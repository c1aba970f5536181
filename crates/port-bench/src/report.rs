//! The report: every figure beside its goal, as a table for people and one JSON line
//! for tools.

use std::fmt::Write as _;

use serde::Serialize;

use crate::bench::{Backend, BackendReport, Compared};
use crate::machine::Machine;
use crate::settings::Settings;
use crate::stats::Summary;

/// One goal of docs/benchmarks.md, checked against this run.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub backend: Backend,
    pub goal: String,
    pub value: Option<f64>,
    pub unit: &'static str,
    /// `None` when the figure was not measured.
    pub met: Option<bool>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub bench: &'static str,
    pub mode: &'static str,
    pub machine: Machine,
    /// 4 KiB overwrite + fdatasync rounds per second in the run's directory, before
    /// and after the phases: the price of a durable commit during this run.
    pub fsyncs_per_sec: [Option<f64>; 2],
    pub layout: String,
    pub store: String,
    pub settings: Settings,
    /// `PORTD_*` variables the servers inherited (names only).
    pub portd_env: Vec<String>,
    pub backends: Vec<BackendReport>,
    pub goals: Vec<Goal>,
    pub elapsed_secs: f64,
    pub loadavg_at_end: String,
}

pub const LAYOUT: &str = "separate processes on 127.0.0.1, not pinned: the baseline \
    (`port-bench serve baseline`) and portd (`port-bench serve portd`: port_server::start, the \
    code of the portd binary, same release profile) each in its own process; the load \
    generator and the webhook receiver in the `port-bench run` process; tokio multi-thread \
    runtimes with default worker counts everywhere";

fn goal(
    backend: Backend,
    text: impl Into<String>,
    value: Option<f64>,
    unit: &'static str,
    met: impl Fn(f64) -> bool,
) -> Goal {
    Goal {
        backend,
        goal: text.into(),
        value,
        unit,
        met: value.map(met),
        note: None,
    }
}

/// The goals of the brief (and perf-reliability.md §3), for each backend measured.
pub fn goals(backends: &[BackendReport]) -> Vec<Goal> {
    let mut out = Vec::new();
    for b in backends {
        let backend = b.backend;
        if let Some(create) = &b.create {
            out.push(goal(
                backend,
                "run creation ≥ 0.10 × baseline (durable commits)",
                Some(create.ratio),
                "× baseline",
                |v| v >= 0.10,
            ));
        }
        if let (Some(create), Some(logs)) = (&b.create, &b.logs) {
            let ratio = (create.portd.rate.median > 0.0)
                .then(|| logs.portd.rate.median / create.portd.rate.median);
            out.push(goal(
                backend,
                "log appends ≥ run creation",
                ratio,
                "× run creation",
                |v| v >= 1.0,
            ));
        }
        if let Some(webhook) = &b.webhook {
            let (p50, p99) = match backend {
                Backend::Sqlite => (5.0, 50.0),
                // perf-reliability.md G3: NOTIFY or a ≤ 1 s poll for several replicas.
                Backend::Postgres => (20.0, 1050.0),
            };
            let rate = webhook.rate;
            let mut g = goal(
                backend,
                format!("webhook p50 ≤ {p50} ms at {rate:.0} runs/s"),
                webhook.p50_ms.map(|s| s.median),
                "ms",
                |v| v <= p50,
            );
            if webhook.missing > 0 {
                g.met = Some(false);
                g.note = Some(format!("{} runs never arrived", webhook.missing));
            }
            out.push(g);
            out.push(goal(
                backend,
                format!("webhook p99 ≤ {p99} ms at {rate:.0} runs/s"),
                webhook.p99_ms.map(|s| s.median),
                "ms",
                |v| v <= p99,
            ));
        }
        if let Some(scale) = &b.scale {
            let last = scale.steps.last();
            let runs = last.map_or(0, |s| s.runs_stored);
            let logs = last.map_or(0, |s| s.logs_stored);
            let at = format!("{} runs / {} logs", count(runs), count(logs));
            let mut g = goal(
                backend,
                "memory growth ≤ 32 MiB from 10 k to 1 M runs",
                scale.rss_growth_mib,
                "MiB",
                |v| v <= 32.0,
            );
            g.note = Some(format!("at {at}"));
            out.push(g);
            if let Some(step) = last {
                for (what, latency) in [("GET run", &step.get), ("filtered list", &step.list)] {
                    let mut g = goal(
                        backend,
                        format!("{what} p99 ≤ 10 ms at 1 M runs"),
                        latency.p99_ms.map(|s| s.median),
                        "ms",
                        |v| v <= 10.0,
                    );
                    g.note = Some(format!("at {at}"));
                    if latency.errors > 0 {
                        g.met = Some(false);
                        g.note = Some(format!("at {at}; {} errors", latency.errors));
                    }
                    out.push(g);
                }
            }
        }
    }
    out
}

/// `1234567` → `1.23 M`, `12000` → `12 k`.
pub fn count(n: u64) -> String {
    let n = n as f64;
    if n >= 1e6 {
        format!("{:.2} M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.0} k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

fn range(s: &Summary, digits: usize) -> String {
    format!(
        "{:.d$} [{:.d$}–{:.d$}]{}",
        s.median,
        s.min,
        s.max,
        if s.noisy() { " noisy" } else { "" },
        d = digits
    )
}

fn opt_range(s: Option<&Summary>, digits: usize) -> String {
    s.map_or_else(|| "–".to_owned(), |s| range(s, digits))
}

fn compared_rows(rows: &mut Vec<[String; 4]>, name: &str, unit: &str, c: &Compared) {
    rows.push([
        name.to_owned(),
        format!("{} {unit}", range(&c.portd.rate, 0)),
        format!("{} req/s", range(&c.baseline.rate, 0)),
        format!("{:.3} ×", c.ratio),
    ]);
}

fn table(out: &mut String, header: [&str; 4], rows: &[[String; 4]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: [&str; 4]| {
        let mut text = String::new();
        for (cell, w) in cells.iter().zip(widths) {
            let pad = w.saturating_sub(cell.chars().count());
            let _ = write!(text, "{cell}{}  ", " ".repeat(pad));
        }
        let _ = writeln!(out, "  {}", text.trim_end());
    };
    line(out, header);
    for row in rows {
        line(out, [&row[0], &row[1], &row[2], &row[3]]);
    }
}

/// The human-readable table.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let m = &report.machine;
    let s = &report.settings;
    let _ = writeln!(
        out,
        "port-bench ({}) on {} × {} (nproc {}), {} MiB, Linux {}; load average at start {}, at end {}",
        report.mode,
        m.cpus,
        m.model,
        m.nproc,
        m.mem_total_mib.unwrap_or(0),
        m.kernel,
        m.loadavg_at_start,
        report.loadavg_at_end
    );
    let _ = writeln!(
        out,
        "closed loops: {} connections, warm-up {:.1} s + {} × {:.1} s; webhook {} runs/s open loop; \
         {} lifecycles in flight; reads {:.0}/s open loop; portd log filter `{}`",
        s.connections,
        s.plan.warmup.as_secs_f64(),
        s.plan.repeats,
        s.plan.window.as_secs_f64(),
        s.webhook_rate,
        s.lifecycles_in_flight,
        s.read_rate,
        s.portd_log
    );
    let fsync = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), |v| format!("{v:.0}"));
    let _ = writeln!(
        out,
        "disk: {} fdatasync/s before the phases, {} after (4 KiB overwrites in the run's directory)",
        fsync(report.fsyncs_per_sec[0]),
        fsync(report.fsyncs_per_sec[1])
    );
    let _ = writeln!(out, "store: {}", report.store);
    let _ = writeln!(out, "layout: {}", report.layout);
    for b in &report.backends {
        let _ = writeln!(
            out,
            "\nportd on {} (median [min–max] of the windows)",
            b.backend.name()
        );
        let mut rows: Vec<[String; 4]> = Vec::new();
        if let Some(c) = &b.create {
            compared_rows(&mut rows, "run creation", "runs/s", c);
        }
        if let Some(c) = &b.logs {
            compared_rows(&mut rows, "log appends", "logs/s", c);
        }
        if let Some(w) = &b.webhook {
            rows.push([
                format!("webhook latency at {:.0}/s", w.rate),
                format!("p50 {} ms", opt_range(w.p50_ms.as_ref(), 2)),
                format!("p99 {} ms", opt_range(w.p99_ms.as_ref(), 2)),
                format!("{}/{} received", w.received, w.accepted),
            ]);
            if let (Some(execute), Some(after)) = (w.execute, w.after_answer) {
                rows.push([
                    "  of which: execute → 202, then 202 → receipt".into(),
                    format!("p50 {:.2} ms, p99 {:.2} ms", execute.p50_ms, execute.p99_ms),
                    format!("p50 {:.2} ms, p99 {:.2} ms", after.p50_ms, after.p99_ms),
                    format!("send lag ≤ {:.0} ms", w.max_send_lag_ms),
                ]);
            }
        }
        if let Some(l) = &b.lifecycle {
            rows.push([
                "whole lifecycles".into(),
                format!("{} /s", opt_range(l.rate.as_ref(), 1)),
                l.latency.map_or_else(
                    || "–".into(),
                    |x| format!("p50 {:.1} ms, p99 {:.1} ms", x.p50_ms, x.p99_ms),
                ),
                format!("{} ended", l.ended),
            ]);
        }
        for m in &b.memory_after_load {
            if let Some(memory) = m.memory {
                rows.push([
                    format!("RSS after the {} phase", m.phase.name()),
                    format!("{:.1} MiB", memory.rss_mib()),
                    format!("peak {:.1} MiB", memory.hwm_kib as f64 / 1024.0),
                    String::new(),
                ]);
            }
        }
        if let Some(scale) = &b.scale {
            for step in &scale.steps {
                let at = format!(
                    "at {} runs / {} logs",
                    count(step.runs_stored),
                    count(step.logs_stored)
                );
                rows.push([
                    format!("GET run {at}"),
                    format!("p50 {} ms", opt_range(step.get.p50_ms.as_ref(), 2)),
                    format!("p99 {} ms", opt_range(step.get.p99_ms.as_ref(), 2)),
                    format!(
                        "{} errors; baseline GET p50 {:.2} / p99 {:.2} ms",
                        step.get.errors,
                        step.baseline_get.p50_ms.map_or(f64::NAN, |s| s.median),
                        step.baseline_get.p99_ms.map_or(f64::NAN, |s| s.median)
                    ),
                ]);
                rows.push([
                    format!("filtered list {at}"),
                    format!("p50 {} ms", opt_range(step.list.p50_ms.as_ref(), 2)),
                    format!("p99 {} ms", opt_range(step.list.p99_ms.as_ref(), 2)),
                    format!("{} errors", step.list.errors),
                ]);
                rows.push([
                    format!("RSS {at}"),
                    step.memory_after_reads
                        .map_or_else(|| "–".into(), |m| format!("{:.1} MiB", m.rss_mib())),
                    step.memory_after_reads.map_or_else(
                        || "–".into(),
                        |m| format!("peak {:.1} MiB", m.hwm_kib as f64 / 1024.0),
                    ),
                    format!(
                        "seeded {:.0} runs/s{}{}",
                        step.seed_runs_per_sec,
                        step.db_bytes
                            .map(|b| format!(", db {:.0} MiB", b as f64 / 1048576.0))
                            .unwrap_or_default(),
                        if step.seed_complete {
                            ""
                        } else {
                            ", budget hit"
                        }
                    ),
                ]);
            }
        }
        table(
            &mut out,
            ["figure", "portd", "baseline / p99", "ratio / notes"],
            &rows,
        );
    }
    let _ = writeln!(out, "\ngoals");
    let rows: Vec<[String; 4]> = report
        .goals
        .iter()
        .map(|g| {
            [
                format!("{}: {}", g.backend.name(), g.goal),
                g.value
                    .map_or_else(|| "–".into(), |v| format!("{v:.3} {}", g.unit)),
                match g.met {
                    Some(true) => "met".into(),
                    Some(false) => "MISSED".into(),
                    None => "not measured".into(),
                },
                g.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&mut out, ["goal", "value", "verdict", "note"], &rows);
    let _ = writeln!(out, "\nelapsed {:.0} s", report.elapsed_secs);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_well() {
        assert_eq!(count(999), "999");
        assert_eq!(count(10_000), "10 k");
        assert_eq!(count(100_001), "100 k");
        assert_eq!(count(1_000_000), "1.00 M");
        assert_eq!(count(5_250_000), "5.25 M");
    }

    #[test]
    fn ranges_flag_noise() {
        let calm = Summary::of(&[100.0, 101.0, 99.0]).unwrap();
        assert_eq!(range(&calm, 0), "100 [99–101]");
        let noisy = Summary::of(&[50.0, 100.0, 150.0]).unwrap();
        assert!(range(&noisy, 0).ends_with("noisy"));
    }
}
