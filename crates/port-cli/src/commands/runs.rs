//! `port run` and `port runs`: executing actions and watching, listing and deciding on
//! runs.

use std::pin::pin;
use std::time::Duration;

use futures::StreamExt as _;
use indicatif::ProgressBar;
use port_client::{
    ClientError, ExecuteRequest, LogEvent, Run, RunLog, RunQuery, RunStatus, RunUpdate,
};
use serde_json::Value;

use crate::cli::{RunArgs, RunsCommand};
use crate::error::{CliError, exit};
use crate::input::{props_object, read_object};
use crate::output::{Cell, Details, Table, Ui, compact, time};

use super::Ctx;

/// "No --timeout": long enough to mean forever, short enough for `Instant` arithmetic.
const FOREVER: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// How often the spinner's label is refreshed while `--wait` waits.
const LABEL_REFRESH: Duration = Duration::from_secs(2);
/// `GET …/logs` page size (the route's maximum).
const LOG_PAGE: u32 = 50;

/// The exit code a finished run gives: 0 for `SUCCESS`, 1 otherwise, with the reason
/// on stderr.
fn outcome(run: &Run) -> Result<u8, CliError> {
    match &run.status {
        RunStatus::Success => Ok(exit::OK),
        RunStatus::Declined => Err(CliError::run(
            "run_declined",
            format!("run {} was declined", run.id),
        )),
        status => Err(CliError::run(
            "run_failed",
            format!("run {} ended {status}", run.id),
        )),
    }
}

fn timed_out(run_id: &str, timeout: Duration, last: Option<&RunStatus>) -> CliError {
    let last = last
        .map(|s| format!(" (last status {s})"))
        .unwrap_or_default();
    CliError::run(
        "timeout",
        format!(
            "run {run_id} did not end within {}{last}",
            humantime::format_duration(timeout)
        ),
    )
}

/// `r_… IN_PROGRESS: label`, for the spinner.
fn progress(ui: &Ui, run: &Run) -> String {
    let status = ui.status(&run.status);
    match run.status_label.as_deref().filter(|l| !l.is_empty()) {
        Some(label) => format!("{} {status}: {label}", run.id),
        None => format!("{} {status}", run.id),
    }
}

pub(crate) async fn run(ctx: &Ctx, args: &RunArgs) -> Result<u8, CliError> {
    let mut properties = match &args.props_file {
        Some(path) => read_object(path)?,
        None => serde_json::Map::new(),
    };
    properties.extend(props_object(&args.props));
    let request = ExecuteRequest {
        properties,
        entity: args.entity.clone(),
        idempotency_key: args.idempotency_key.clone(),
        run_as: args.run_as.clone(),
    };
    let run = ctx.client.execute(&args.action, &request).await?;
    if !args.wait && !args.follow {
        return if ctx.ui.structured() {
            ctx.ui.data(&raw_run(ctx, &run.id).await?)
        } else {
            ctx.ui.line(&run.id)
        }
        .map(|()| exit::OK);
    }
    if !ctx.ui.structured() {
        ctx.ui.line(&run.id)?;
    }
    let timeout = args.timeout.unwrap_or(FOREVER);
    let ended = if args.follow {
        follow(ctx, &run.id, timeout, !ctx.ui.structured()).await?
    } else {
        wait(ctx, &run, timeout).await?
    };
    if ctx.ui.structured() {
        ctx.ui.data(&raw_run(ctx, &ended.id).await?)?;
    } else {
        ctx.ui.text(&summary(&ended).render(ctx.ui.color))?;
    }
    outcome(&ended)
}

/// The run as the API sends it (`GET /actions/runs/{id}?version=v2`).
async fn raw_run(ctx: &Ctx, run_id: &str) -> Result<Value, CliError> {
    ctx.raw(&["actions", "runs", run_id], &[("version", "v2")], "run")
        .await
}

/// Waits for the run to end with `wait_for_run`; on a terminal, a spinner shows the
/// status and label meanwhile.
async fn wait(ctx: &Ctx, run: &Run, timeout: Duration) -> Result<Run, CliError> {
    let spinner = ctx.ui.spinner(progress(&ctx.ui, run));
    let waiting = ctx.client.wait_for_run(&run.id, timeout);
    let result = match &spinner {
        None => waiting.await,
        Some(spinner) => {
            let mut waiting = pin!(waiting);
            let mut refresh = tokio::time::interval(LABEL_REFRESH);
            refresh.tick().await;
            loop {
                tokio::select! {
                    result = &mut waiting => break result,
                    _ = refresh.tick() => {
                        if let Ok(current) = ctx.client.get_run(&run.id).await {
                            spinner.set_message(progress(&ctx.ui, &current));
                        }
                    }
                }
            }
        }
    };
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    result.map_err(|e| match e {
        ClientError::Timeout { last_status, .. } => {
            timed_out(&run.id, timeout, last_status.as_ref())
        }
        other => other.into(),
    })
}

/// Prints a log line: above the spinner if there is one; on stdout, or on stderr when
/// stdout carries JSON or YAML.
fn print_log(
    ctx: &Ctx,
    spinner: Option<&ProgressBar>,
    log: &RunLog,
    to_stdout: bool,
) -> Result<(), CliError> {
    let line = format!("{}  {}", time(log.created_at.as_ref()), log.message);
    let print = || {
        if to_stdout {
            ctx.ui.line(&line)
        } else {
            ctx.ui.note(&line);
            Ok(())
        }
    };
    match spinner {
        Some(spinner) => spinner.suspend(print),
        None => print(),
    }
}

/// Streams the run's logs until it ends (`follow_logs`) and returns the ended run.
async fn follow(
    ctx: &Ctx,
    run_id: &str,
    timeout: Duration,
    logs_to_stdout: bool,
) -> Result<Run, CliError> {
    let spinner = ctx.ui.spinner(format!("{run_id} following"));
    let result = follow_inner(ctx, run_id, timeout, logs_to_stdout, spinner.as_ref()).await;
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    result
}

async fn follow_inner(
    ctx: &Ctx,
    run_id: &str,
    timeout: Duration,
    logs_to_stdout: bool,
    spinner: Option<&ProgressBar>,
) -> Result<Run, CliError> {
    let mut events = pin!(ctx.client.follow_logs(run_id));
    let deadline = pin!(tokio::time::sleep(timeout));
    let mut deadline = deadline;
    let mut last_status: Option<RunStatus> = None;
    loop {
        let event = tokio::select! {
            () = &mut deadline => return Err(timed_out(run_id, timeout, last_status.as_ref())),
            event = events.next() => event,
        };
        match event {
            Some(Ok(LogEvent::Log(log))) => print_log(ctx, spinner, &log, logs_to_stdout)?,
            Some(Ok(LogEvent::Status(run))) => {
                if let Some(spinner) = spinner {
                    spinner.set_message(progress(&ctx.ui, &run));
                }
                last_status = Some(run.status.clone());
            }
            Some(Ok(LogEvent::Ended(run))) => return Ok(*run),
            Some(Err(e)) => return Err(e.into()),
            None => {
                // The stream ends with `Ended`; if it stopped short, ask once.
                let run = ctx.client.get_run(run_id).await?;
                if run.has_ended() {
                    return Ok(run);
                }
                return Err(CliError::new(
                    exit::API,
                    "log_stream_error",
                    format!("the log stream of run {run_id} ended before the run did"),
                ));
            }
        }
    }
}

/// The end of a run, as `--wait` and `--follow` print it.
fn summary(run: &Run) -> Details {
    let mut details = Details::new();
    details
        .field("Status", Cell::status(&run.status))
        .optional("Label", run.status_label.as_deref())
        .lines("Links", run.link.clone())
        .optional("Summary", run.summary.as_deref());
    details
}

fn run_details(run: &Run) -> Details {
    let mut details = Details::new();
    details
        .field("ID", run.id.as_str())
        .field("Action", run.action.identifier.as_str())
        .optional(
            "Blueprint",
            run.blueprint.as_ref().map(|b| b.identifier.as_str()),
        )
        .optional("Entity", run.entity.as_ref().map(|e| e.identifier.as_str()))
        .field("Status", Cell::status(&run.status))
        .optional("Label", run.status_label.as_deref())
        .optional("Source", run.source_name())
        .optional("Created by", run.created_by.as_deref())
        .field("Created", time(run.created_at.as_ref()))
        .field("Updated", time(run.updated_at.as_ref()))
        .field("Ended", time(run.ended_at.as_ref()))
        .optional("External id", run.external_run_id.as_deref())
        .lines("Links", run.link.clone())
        .optional("Summary", run.summary.as_deref())
        .lines(
            "Inputs",
            run.properties
                .iter()
                .map(|(k, v)| format!("{k}={}", compact(v)))
                .collect(),
        );
    if let Some(approval) = &run.approval {
        let state = approval.state.as_deref().unwrap_or("?");
        let text = match approval.description.as_deref() {
            Some(reason) if !reason.is_empty() => format!("{state}: {reason}"),
            _ => state.to_owned(),
        };
        details.field("Approval", text);
    }
    details
}

fn runs_table(runs: &[Run]) -> Table {
    let mut table = Table::new(&["ID", "ACTION", "ENTITY", "STATUS", "LABEL", "CREATED"]);
    for run in runs {
        table.row(vec![
            run.id.as_str().into(),
            run.action.identifier.as_str().into(),
            Cell::opt(run.entity.as_ref().map(|e| e.identifier.as_str())),
            Cell::status(&run.status),
            Cell::opt(run.status_label.as_deref()),
            time(run.created_at.as_ref()).into(),
        ]);
    }
    table
}

/// Prints a run: its details, or the API's JSON of it.
async fn show_run(ctx: &Ctx, run: &Run) -> Result<(), CliError> {
    if ctx.ui.structured() {
        ctx.ui.data(&raw_run(ctx, &run.id).await?)
    } else {
        ctx.ui.text(&run_details(run).render(ctx.ui.color))
    }
}

pub(crate) async fn runs(ctx: &Ctx, command: &RunsCommand) -> Result<u8, CliError> {
    match command {
        RunsCommand::List {
            action,
            entity,
            blueprint,
            active,
            status,
            limit,
        } => {
            let query = RunQuery {
                action: action.clone(),
                entity: entity.clone(),
                blueprint: blueprint.clone(),
                active: active.then_some(true),
                status: status
                    .as_deref()
                    .map(|s| RunStatus::parse(&s.trim().to_ascii_uppercase())),
                limit: *limit,
                ..RunQuery::default()
            };
            if ctx.ui.structured() {
                let pairs = run_query_pairs(&query);
                let pairs: Vec<(&str, &str)> =
                    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let runs = ctx.raw(&["actions", "runs"], &pairs, "runs").await?;
                return ctx.ui.data(&runs).map(|()| exit::OK);
            }
            let page = ctx.client.list_runs(&query).await?;
            ctx.ui.text(&runs_table(&page.runs).render(ctx.ui.color))?;
        }
        RunsCommand::Get { id } => {
            if ctx.ui.structured() {
                return ctx.ui.data(&raw_run(ctx, id).await?).map(|()| exit::OK);
            }
            let run = ctx.client.get_run(id).await?;
            show_run(ctx, &run).await?;
        }
        RunsCommand::Logs {
            id,
            follow: following,
            timeout,
        } => {
            if *following {
                return follow_logs_command(ctx, id, timeout.unwrap_or(FOREVER)).await;
            }
            if ctx.ui.structured() {
                return ctx
                    .ui
                    .data(&all_raw_logs(ctx, id).await?)
                    .map(|()| exit::OK);
            }
            let logs = all_logs(ctx, id).await?;
            for log in &logs {
                print_log(ctx, None, log, true)?;
            }
        }
        RunsCommand::Log {
            id,
            message,
            termination_status,
            label,
        } => {
            let log = ctx
                .client
                .add_log(
                    id,
                    message,
                    termination_status.map(Into::into),
                    label.as_deref(),
                )
                .await?;
            if ctx.ui.structured() {
                ctx.ui.data(&log)?;
            } else if let Some(status) = termination_status {
                ctx.ui.note(&format!(
                    "logged to run {id}, which ended {}",
                    port_client::FinalStatus::from(*status)
                ));
            } else {
                ctx.ui.note(&format!("logged to run {id}"));
            }
        }
        RunsCommand::Patch {
            id,
            status,
            label,
            links,
            summary: text,
            external_run_id,
        } => {
            let update = RunUpdate {
                status: status.map(Into::into),
                status_label: label.clone(),
                link: (!links.is_empty()).then(|| links.clone()),
                summary: text.clone(),
                external_run_id: external_run_id.clone(),
                ..RunUpdate::default()
            };
            if update == RunUpdate::default() {
                return Err(CliError::usage(
                    "nothing_to_update",
                    "give at least one of --status, --label, --link, --summary, --external-run-id",
                ));
            }
            let run = ctx.client.patch_run(id, &update).await?;
            show_run(ctx, &run).await?;
        }
        RunsCommand::Approve { id, reason } => {
            let run = ctx.client.approve(id, reason.as_deref()).await?;
            show_run(ctx, &run).await?;
        }
        RunsCommand::Decline { id, reason } => {
            let run = ctx.client.decline(id, reason.as_deref()).await?;
            show_run(ctx, &run).await?;
        }
        RunsCommand::Withdraw { id, reason } => {
            let run = ctx.client.withdraw(id, reason.as_deref()).await?;
            show_run(ctx, &run).await?;
        }
        RunsCommand::Deliveries { id } => {
            if ctx.ui.structured() {
                let deliveries = ctx
                    .raw(&["actions", "runs", id, "deliveries"], &[], "deliveries")
                    .await?;
                return ctx.ui.data(&deliveries).map(|()| exit::OK);
            }
            let deliveries = ctx.client.deliveries(id).await?;
            let mut table = Table::new(&[
                "ID",
                "MODE",
                "STATE",
                "ATTEMPTS",
                "LAST RESULT",
                "NEXT ATTEMPT",
            ]);
            for delivery in &deliveries {
                let last = delivery.attempts.last().map(|attempt| {
                    match (attempt.status_code, attempt.error.as_deref()) {
                        (Some(code), _) => format!("HTTP {code}"),
                        (None, Some(error)) => error.to_owned(),
                        (None, None) => String::new(),
                    }
                });
                table.row(vec![
                    delivery.id.as_str().into(),
                    Cell::opt(delivery.mode.as_deref()),
                    Cell::opt(delivery.state.as_deref()),
                    delivery
                        .attempt_count
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                        .into(),
                    Cell::opt(last.as_deref()),
                    if delivery.next_attempt_at.is_some() {
                        time(delivery.next_attempt_at.as_ref()).into()
                    } else {
                        Cell::new("")
                    },
                ]);
            }
            ctx.ui.text(&table.render(ctx.ui.color))?;
        }
    }
    Ok(exit::OK)
}

/// The query of `GET /actions/runs` for the filters `port runs list` takes.
fn run_query_pairs(query: &RunQuery) -> Vec<(&'static str, String)> {
    let mut pairs = vec![("version", "v2".to_owned())];
    let mut push = |key: &'static str, value: Option<String>| {
        if let Some(value) = value {
            pairs.push((key, value));
        }
    };
    push("action", query.action.clone());
    push("entity", query.entity.clone());
    push("blueprint", query.blueprint.clone());
    push("active", query.active.map(|a| a.to_string()));
    push(
        "status",
        query.status.as_ref().map(|s| s.as_str().to_owned()),
    );
    push("limit", query.limit.map(|l| l.to_string()));
    pairs
}

/// Every log line of a run, as the API sends them.
async fn all_raw_logs(ctx: &Ctx, run_id: &str) -> Result<Vec<Value>, CliError> {
    let mut logs = Vec::new();
    loop {
        let offset = logs.len().to_string();
        let limit = LOG_PAGE.to_string();
        let page = ctx
            .raw(
                &["actions", "runs", run_id, "logs"],
                &[("offset", &offset), ("limit", &limit)],
                "runLogs",
            )
            .await?;
        let page = match page {
            Value::Array(page) => page,
            Value::Null => Vec::new(),
            other => {
                return Err(CliError::new(
                    exit::API,
                    "unexpected_response",
                    format!("`runLogs` is not a list: {other}"),
                ));
            }
        };
        let short = page.len() < LOG_PAGE as usize;
        logs.extend(page);
        if short {
            return Ok(logs);
        }
    }
}

async fn all_logs(ctx: &Ctx, run_id: &str) -> Result<Vec<RunLog>, CliError> {
    let mut logs = Vec::new();
    loop {
        let page = ctx.client.logs(run_id, logs.len() as u64, LOG_PAGE).await?;
        let short = page.len() < LOG_PAGE as usize;
        logs.extend(page);
        if short {
            return Ok(logs);
        }
    }
}

/// `port runs logs ID -f`: the lines (or, with `-o json|yaml`, each line as one JSON
/// object per line) until the run ends; then its status and links. Exits like `--wait`.
async fn follow_logs_command(ctx: &Ctx, run_id: &str, timeout: Duration) -> Result<u8, CliError> {
    if ctx.ui.structured() {
        // One compact JSON object per line, so that each line can be read at once.
        let mut events = pin!(ctx.client.follow_logs(run_id));
        let deadline = tokio::time::sleep(timeout);
        let mut deadline = pin!(deadline);
        loop {
            let event = tokio::select! {
                () = &mut deadline => return Err(timed_out(run_id, timeout, None)),
                event = events.next() => event,
            };
            match event {
                Some(Ok(LogEvent::Log(log))) => {
                    let value = serde_json::to_value(&log).unwrap_or(Value::Null);
                    ctx.ui.line(&value.to_string())?;
                }
                Some(Ok(LogEvent::Status(_))) => {}
                Some(Ok(LogEvent::Ended(run))) => return outcome(&run),
                Some(Err(e)) => return Err(e.into()),
                None => return outcome(&ctx.client.get_run(run_id).await?),
            }
        }
    }
    let ended = follow(ctx, run_id, timeout, true).await?;
    ctx.ui.text(&summary(&ended).render(ctx.ui.color))?;
    outcome(&ended)
}
