//! How results are shown: tables and key/value blocks for people, the API's JSON
//! (pretty) or YAML for programs, coloured statuses and a spinner only on a terminal.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use owo_colors::OwoColorize as _;
use port_client::{OffsetDateTime, RunStatus};
use serde::Serialize;
use serde_json::Value;

use crate::error::CliError;

/// `-o table|json|yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    // Plain comments: doc comments would become possible-value help, which switches
    // every `--help` to the long layout.
    // Tables and key/value blocks, for people.
    #[default]
    Table,
    // The API's JSON, pretty-printed.
    Json,
    // The same data as YAML.
    Yaml,
}

/// The terminal side of a command: where output goes and how it looks.
#[derive(Debug, Clone)]
pub struct Ui {
    /// The output format.
    pub format: Format,
    /// Colour statuses.
    pub color: bool,
    /// No spinner and no progress or confirmation messages on stderr.
    pub quiet: bool,
    /// Whether a spinner may be drawn (stdout and stderr are terminals, not quiet).
    pub interactive: bool,
}

impl Ui {
    /// Decides colour and spinner from the flags, `NO_COLOR` and whether stdout is a
    /// terminal.
    pub fn new(format: Format, quiet: bool, no_color: bool) -> Self {
        let stdout_terminal = std::io::stdout().is_terminal();
        let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            format,
            color: stdout_terminal && !no_color && !no_color_env,
            quiet,
            interactive: stdout_terminal && std::io::stderr().is_terminal() && !quiet,
        }
    }

    /// A plain UI (table, no colour, no spinner), for tests.
    pub fn plain(format: Format) -> Self {
        Self {
            format,
            color: false,
            quiet: false,
            interactive: false,
        }
    }

    /// Whether the output is for programs (JSON or YAML).
    pub fn structured(&self) -> bool {
        self.format != Format::Table
    }

    /// Writes `text` and a newline to stdout.
    pub fn line(&self, text: &str) -> Result<(), CliError> {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush())
            .map_err(|e| CliError::output(&e))
    }

    /// Writes `text` as is to stdout (it ends with its own newline).
    pub fn text(&self, text: &str) -> Result<(), CliError> {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| CliError::output(&e))
    }

    /// A progress or confirmation message on stderr, unless `--quiet`.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    /// Prints a value as JSON or YAML, per `-o`.
    pub fn data(&self, value: &impl Serialize) -> Result<(), CliError> {
        let text = render(value, self.format)?;
        self.text(&text)
    }

    /// A status, coloured when colour is on: SUCCESS green, FAILURE and DECLINED red,
    /// IN_PROGRESS yellow, WAITING_FOR_APPROVAL blue.
    pub fn status(&self, status: &RunStatus) -> String {
        paint(status.as_str(), status_color(status), self.color)
    }

    /// A spinner on stderr showing `message`, or `None` when not interactive.
    pub fn spinner(&self, message: String) -> Option<ProgressBar> {
        if !self.interactive {
            return None;
        }
        let spinner = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            spinner.set_style(style);
        }
        spinner.set_message(message);
        spinner.enable_steady_tick(Duration::from_millis(100));
        Some(spinner)
    }
}

/// Colours a status may get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    /// No colour.
    None,
    /// Success.
    Green,
    /// Failure.
    Red,
    /// Running.
    Yellow,
    /// Waiting for a person.
    Blue,
}

/// The colour of a run status.
pub fn status_color(status: &RunStatus) -> Color {
    match status {
        RunStatus::Success => Color::Green,
        RunStatus::Failure | RunStatus::Declined => Color::Red,
        RunStatus::InProgress => Color::Yellow,
        RunStatus::WaitingForApproval => Color::Blue,
        _ => Color::None,
    }
}

fn paint(text: &str, color: Color, enabled: bool) -> String {
    if !enabled {
        return text.to_owned();
    }
    match color {
        Color::None => text.to_owned(),
        Color::Green => text.green().to_string(),
        Color::Red => text.red().to_string(),
        Color::Yellow => text.yellow().to_string(),
        Color::Blue => text.blue().to_string(),
    }
}

/// A value as pretty JSON or YAML (ending with a newline). `Table` renders JSON.
pub fn render(value: &impl Serialize, format: Format) -> Result<String, CliError> {
    let fail = |e: &dyn std::fmt::Display| {
        CliError::new(
            crate::error::exit::API,
            "output_error",
            format!("cannot render the answer: {e}"),
        )
    };
    match format {
        Format::Yaml => serde_norway::to_string(value).map_err(|e| fail(&e)),
        Format::Json | Format::Table => serde_json::to_string_pretty(value)
            .map(|mut text| {
                text.push('\n');
                text
            })
            .map_err(|e| fail(&e)),
    }
}

/// A time as `2024-08-15 12:30:00` (UTC, whole seconds), or `-`.
pub fn time(value: Option<&OffsetDateTime>) -> String {
    let Some(value) = value else {
        return "-".to_owned();
    };
    let t = value.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A JSON value as one line: strings bare, anything else compact JSON.
pub fn compact(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One cell of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    text: String,
    color: Color,
}

impl Cell {
    /// A plain cell; empty text shows as `-`.
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        Self {
            text: if text.is_empty() {
                "-".to_owned()
            } else {
                text
            },
            color: Color::None,
        }
    }

    /// A cell from an optional text.
    pub fn opt(text: Option<&str>) -> Self {
        Self::new(text.unwrap_or_default())
    }

    /// A run status, coloured like [`Ui::status`].
    pub fn status(status: &RunStatus) -> Self {
        Self {
            color: status_color(status),
            ..Self::new(status.as_str())
        }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

/// A table: a header row and aligned columns separated by two spaces, no borders,
/// no trailing spaces.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells show as `-`).
    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, each ending with a newline.
    pub fn render(&self, color: bool) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().take(columns).enumerate() {
                widths[i] = widths[i].max(cell.text.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<Cell> = self.headers.iter().map(|h| Cell::new(*h)).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let dash = Cell::new("");
                let cell = row.get(i).unwrap_or(&dash);
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(&paint(&cell.text, cell.color, color));
                if i + 1 < columns {
                    let pad = width - cell.text.chars().count();
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A key/value block: `Key:` labels aligned, values that span several lines indented
/// under the first.
#[derive(Debug, Clone, Default)]
pub struct Details {
    entries: Vec<(&'static str, Vec<Cell>)>,
}

impl Details {
    /// An empty block.
    pub fn new() -> Self {
        Self::default()
    }

    /// A one-line entry.
    pub fn field(&mut self, label: &'static str, value: impl Into<Cell>) -> &mut Self {
        self.entries.push((label, vec![value.into()]));
        self
    }

    /// An entry shown only when `value` is present.
    pub fn optional(&mut self, label: &'static str, value: Option<&str>) -> &mut Self {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            self.field(label, value);
        }
        self
    }

    /// An entry of several lines, shown only when there is at least one.
    pub fn lines(&mut self, label: &'static str, values: Vec<String>) -> &mut Self {
        if !values.is_empty() {
            self.entries
                .push((label, values.into_iter().map(Cell::new).collect()));
        }
        self
    }

    /// The block as text.
    pub fn render(&self, color: bool) -> String {
        let width = self
            .entries
            .iter()
            .map(|(label, _)| label.chars().count() + 1)
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (label, values) in &self.entries {
            for (i, value) in values.iter().enumerate() {
                let head = if i == 0 {
                    format!("{label}:")
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "{head:<width$}  {}",
                    paint(&value.text, value.color, color)
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let mut table = Table::new(&["ID", "STATUS", "LABEL"]);
        table.row(vec![
            "r_1".into(),
            Cell::status(&RunStatus::Success),
            Cell::new(""),
        ]);
        table.row(vec!["r_22222".into(), Cell::status(&RunStatus::InProgress)]);
        assert_eq!(
            table.render(false),
            "ID       STATUS       LABEL\nr_1      SUCCESS      -\nr_22222  IN_PROGRESS  -\n"
        );
        let coloured = table.render(true);
        assert!(coloured.contains("\u{1b}[32mSUCCESS\u{1b}[39m      -"));
    }

    #[test]
    fn details_align_labels_and_indent_continuations() {
        let mut details = Details::new();
        details
            .field("Status", Cell::status(&RunStatus::Failure))
            .optional("Label", None)
            .lines("Links", vec!["https://a".into(), "https://b".into()]);
        assert_eq!(
            details.render(false),
            "Status:  FAILURE\nLinks:   https://a\n         https://b\n"
        );
    }

    #[test]
    fn yaml_and_json_render_the_same_data() {
        let value = json!({ "identifier": "svc", "n": 2, "tags": ["a"] });
        assert_eq!(
            render(&value, Format::Json).unwrap(),
            "{\n  \"identifier\": \"svc\",\n  \"n\": 2,\n  \"tags\": [\n    \"a\"\n  ]\n}\n"
        );
        assert_eq!(
            render(&value, Format::Yaml).unwrap(),
            "identifier: svc\nn: 2\ntags:\n- a\n"
        );
    }

    #[test]
    fn statuses_are_coloured_only_when_asked() {
        let mut ui = Ui::plain(Format::Table);
        assert_eq!(ui.status(&RunStatus::Declined), "DECLINED");
        ui.color = true;
        assert_eq!(
            ui.status(&RunStatus::WaitingForApproval),
            "\u{1b}[34mWAITING_FOR_APPROVAL\u{1b}[39m"
        );
        assert_eq!(
            ui.status(&RunStatus::Other("CANCELLED".into())),
            "CANCELLED"
        );
    }

    #[test]
    fn times_show_utc_seconds() {
        let t = OffsetDateTime::from_unix_timestamp(1_723_725_000).unwrap();
        assert_eq!(time(Some(&t)), "2024-08-15 12:30:00");
        assert_eq!(time(None), "-");
    }
}
