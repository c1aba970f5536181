//! A command's output: lines read from its pipes, workflow commands recognised on
//! stdout, and everything shipped to the run in order, in small batches.

use std::collections::VecDeque;
use std::time::Duration;

use port_webhook::RunContext;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What starts a workflow command on stdout.
pub const COMMAND_PREFIX: &str = "::port::";
/// Lines are sent at most this long after they were read...
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// ...or as soon as this many are waiting.
pub const BATCH_LINES: usize = 20;
/// Longer lines are cut into pieces of this many bytes.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// How many of the last output lines a failure's summary quotes.
pub const TAIL_LINES: usize = 5;

/// A workflow command: a stdout line the runner acts on instead of logging it.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkflowCommand {
    /// `::port::link URL`: adds a link to the run.
    Link(String),
    /// `::port::summary TEXT`: sets the summary.
    Summary(String),
    /// `::port::status-label TEXT`: sets the status label.
    StatusLabel(String),
    /// `::port::external-run-id ID`: sets the external run id.
    ExternalRunId(String),
    /// `::port::entity BLUEPRINT JSON`: upserts an entity bound to the run.
    Entity { blueprint: String, entity: Value },
}

/// What the shipper receives, in the order it was read.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A plain output line, to log.
    Line(String),
    /// A workflow command, to apply.
    Command(WorkflowCommand),
    /// A malformed workflow command: its complaint is logged.
    Invalid(String),
}

fn required(name: &str, argument: &str) -> Result<String, String> {
    if argument.is_empty() {
        Err(format!("{COMMAND_PREFIX}{name} needs an argument"))
    } else {
        Ok(argument.to_owned())
    }
}

/// Reads a workflow command; `None` for a plain line.
pub fn parse_command(line: &str) -> Option<Result<WorkflowCommand, String>> {
    let rest = line.trim_start().strip_prefix(COMMAND_PREFIX)?;
    let (name, argument) = rest
        .split_once(char::is_whitespace)
        .map_or((rest, ""), |(name, argument)| (name, argument.trim()));
    Some(match name {
        "link" => required(name, argument).map(WorkflowCommand::Link),
        "summary" => required(name, argument).map(WorkflowCommand::Summary),
        "status-label" => required(name, argument).map(WorkflowCommand::StatusLabel),
        "external-run-id" => required(name, argument).map(WorkflowCommand::ExternalRunId),
        "entity" => match argument.split_once(char::is_whitespace) {
            None => Err(format!(
                "{COMMAND_PREFIX}entity needs a blueprint and a JSON object"
            )),
            Some((blueprint, json)) => match serde_json::from_str::<Value>(json.trim()) {
                Ok(entity @ Value::Object(_)) => Ok(WorkflowCommand::Entity {
                    blueprint: blueprint.to_owned(),
                    entity,
                }),
                Ok(_) => Err(format!(
                    "{COMMAND_PREFIX}entity {blueprint}: the entity must be a JSON object"
                )),
                Err(e) => Err(format!(
                    "{COMMAND_PREFIX}entity {blueprint}: invalid JSON: {e}"
                )),
            },
        },
        other => Err(format!("unknown workflow command {COMMAND_PREFIX}{other}")),
    })
}

fn event_of(bytes: &[u8], commands: bool) -> Option<Event> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return None;
    }
    if commands && let Some(parsed) = parse_command(line) {
        return Some(match parsed {
            Ok(command) => Event::Command(command),
            Err(complaint) => Event::Invalid(complaint),
        });
    }
    Some(Event::Line(line.to_owned()))
}

/// Reads `pipe` to its end, sending each non-blank line (workflow commands too when
/// `commands`) to `events`. Lines longer than [`MAX_LINE_BYTES`] are cut.
pub async fn read_lines(
    mut pipe: impl AsyncRead + Unpin,
    commands: bool,
    events: mpsc::Sender<Event>,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 8192];
    loop {
        let read = match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        pending.extend_from_slice(&chunk[..read]);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
            let line = &pending[start..start + end];
            start += end + 1;
            if let Some(event) = event_of(line, commands)
                && events.send(event).await.is_err()
            {
                return;
            }
        }
        pending.drain(..start);
        while pending.len() >= MAX_LINE_BYTES {
            let piece: Vec<u8> = pending.drain(..MAX_LINE_BYTES).collect();
            if let Some(event) = event_of(&piece, false)
                && events.send(event).await.is_err()
            {
                return;
            }
        }
    }
    if let Some(event) = event_of(&pending, commands) {
        let _ = events.send(event).await;
    }
}

/// Sends events to the run as they come, in order: lines as separate log lines,
/// flushed every [`FLUSH_EVERY`] or [`BATCH_LINES`] lines; workflow commands applied
/// in their place. Returns the last [`TAIL_LINES`] plain lines once `events` closes.
pub async fn ship(context: RunContext, mut events: mpsc::Receiver<Event>) -> Vec<String> {
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    let mut batch = Vec::with_capacity(BATCH_LINES);
    let mut logging = true;
    while let Some(first) = events.recv().await {
        batch.push(first);
        let deadline = Instant::now() + FLUSH_EVERY;
        while batch.len() < BATCH_LINES {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(event)) => batch.push(event),
                Ok(None) | Err(_) => break,
            }
        }
        for event in batch.drain(..) {
            match event {
                Event::Line(line) => {
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line.clone());
                    if logging {
                        logging = log(&context, &line).await;
                    }
                }
                Event::Invalid(complaint) => {
                    tracing::warn!(run = %context.run_id(), %complaint, "malformed workflow command");
                    if logging {
                        logging = log(&context, &format!("port-runner: {complaint}")).await;
                    }
                }
                Event::Command(command) => apply(&context, command).await,
            }
        }
    }
    tail.into_iter().collect()
}

/// Logs a line; false once the run refuses lines (it has ended).
async fn log(context: &RunContext, line: &str) -> bool {
    match context.log(line).await {
        Ok(_) => true,
        Err(e) if e.identifier() == Some("run_exhausted") => {
            tracing::info!(run = %context.run_id(), "the run has ended; dropping further output");
            false
        }
        Err(e) => {
            tracing::warn!(run = %context.run_id(), error = %e, "could not send a log line");
            true
        }
    }
}

async fn apply(context: &RunContext, command: WorkflowCommand) {
    let (what, result) = match command {
        WorkflowCommand::Link(url) => ("link", context.add_link(url).await),
        WorkflowCommand::Summary(text) => ("summary", context.summary(text).await),
        WorkflowCommand::StatusLabel(text) => ("status-label", context.status_label(text).await),
        WorkflowCommand::ExternalRunId(id) => {
            ("external-run-id", context.external_run_id(id).await)
        }
        WorkflowCommand::Entity { blueprint, entity } => (
            "entity",
            context.upsert_entity(&blueprint, &entity).await.map(drop),
        ),
    };
    if let Err(e) = result {
        tracing::warn!(run = %context.run_id(), command = what, error = %e, "a workflow command failed");
        let _ = context
            .log(format!("port-runner: {COMMAND_PREFIX}{what} failed: {e}"))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn workflow_commands_are_recognised() {
        assert_eq!(parse_command("plain output"), None);
        assert_eq!(
            parse_command("::port::link https://ci/1"),
            Some(Ok(WorkflowCommand::Link("https://ci/1".into())))
        );
        assert_eq!(
            parse_command("::port::summary  Deployed to eu  "),
            Some(Ok(WorkflowCommand::Summary("Deployed to eu".into())))
        );
        assert_eq!(
            parse_command("::port::status-label building"),
            Some(Ok(WorkflowCommand::StatusLabel("building".into())))
        );
        assert_eq!(
            parse_command("::port::external-run-id gh-7"),
            Some(Ok(WorkflowCommand::ExternalRunId("gh-7".into())))
        );
        assert_eq!(
            parse_command(r#"::port::entity microservice {"identifier": "a b", "properties": {}}"#),
            Some(Ok(WorkflowCommand::Entity {
                blueprint: "microservice".into(),
                entity: json!({ "identifier": "a b", "properties": {} })
            }))
        );
        for bad in [
            "::port::link",
            "::port::entity microservice",
            "::port::entity microservice [1]",
            "::port::entity microservice {oops",
            "::port::explode now",
        ] {
            assert!(matches!(parse_command(bad), Some(Err(_))), "{bad}");
        }
    }

    async fn events_of(input: &[u8], commands: bool) -> Vec<Event> {
        let (tx, mut rx) = mpsc::channel(100);
        read_lines(input, commands, tx).await;
        let mut events = Vec::new();
        while let Some(event) = rx.recv().await {
            events.push(event);
        }
        events
    }

    #[tokio::test]
    async fn lines_are_split_trimmed_and_capped() {
        let events = events_of(b"one\r\n\n  \n::port::link u\nlast without newline", true).await;
        assert_eq!(
            events,
            [
                Event::Line("one".into()),
                Event::Command(WorkflowCommand::Link("u".into())),
                Event::Line("last without newline".into()),
            ]
        );
        // On stderr, workflow commands are plain lines.
        let events = events_of(b"::port::link u\n", false).await;
        assert_eq!(events, [Event::Line("::port::link u".into())]);
        let long = vec![b'x'; MAX_LINE_BYTES * 2 + 10];
        let events = events_of(&long, false).await;
        assert_eq!(events.len(), 3);
    }
}
