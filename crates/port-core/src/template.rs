//! The v2 invocation template engine: Port's "advanced functions" for payloads.
//!
//! Any JSON string containing `{{ <jq> }}` is evaluated with jq (the `jaq` crates)
//! against a context object such as `{inputs, trigger, entity, action, run, secrets}`:
//!
//! - a string that is exactly one template (ignoring surrounding whitespace) becomes
//!   the jq result with its own JSON type;
//! - templates embedded in text are interpolated: strings raw, anything else as
//!   compact JSON text;
//! - object keys may be templates: `null` drops the pair, non-strings use their JSON
//!   text, and the key `{{ spreadValue() }}` merges its (object or `null`) value into
//!   the parent object at that position;
//! - a filter with several outputs yields the first, one with none yields `null`.
//!
//! Templates are only evaluated where they appear in the template; results are
//! never rendered again. A few standard filters are replaced for the sandbox: `env`,
//! `halt` and `halt_error` fail (they would leak the server's environment or exit
//! the process) and `debug`/`stderr` are the identity (they would log secrets).
//!
//! # Budgets
//!
//! Templates are written by tenants, so nothing they ask for is unbounded:
//!
//! - [`check`] refuses, before anything is parsed, expressions longer or more deeply
//!   nested than [`SourceLimits`] allow (jq's parser is recursive), and templates with
//!   too many expressions; actions are checked when they are created or updated, and
//!   again when they are rendered.
//! - [`render_within`] evaluates under a [`Budget`]: a step budget charged for every
//!   definition called, loop iteration and generated value and for the weight of every
//!   constructed value, a bound on value nesting and on recursion (stack use), and a
//!   cap on the rendered output. See `template/jq.rs` for how the budget is threaded
//!   through the jq program.
//!
//! What one native jq operation does on a value the budget already paid for (sorting,
//! `tojson` of a value with many shared parts, a regular expression) is not metered
//! here: a wall clock and a memory limit bound those, which only a separate process
//! can enforce. portd evaluates templates in such a sandbox (`port-sandbox`); the
//! in-process evaluation of this module is what that sandbox runs, and what tests and
//! library users get.

mod jq;
mod meter;

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::OnceLock;

use jaq_core::{Ctx, RcIter};
use jaq_json::Val;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

/// Renders a JSON template against a context object, within the default [`Budget`].
///
/// Strings are rendered with [`render_str`], object keys as described in the module
/// docs, arrays element-wise; numbers, booleans and `null` pass unchanged.
pub fn render(template: &Value, context: &Value) -> Result<Value, TemplateError> {
    render_within(template, context, &Budget::default())
}

/// Renders a single string (used for url/method values), within the default budget.
///
/// Yields the typed jq result if the string is exactly one template, the
/// interpolated text if it embeds templates, and the string itself otherwise.
pub fn render_str(template: &str, context: &Value) -> Result<Value, TemplateError> {
    render_within(
        &Value::String(template.to_owned()),
        context,
        &Budget::default(),
    )
}

/// Renders a JSON template within `budget`: the whole render shares one step budget
/// and one output cap. The template's source is checked against the default
/// [`SourceLimits`] first.
pub fn render_within(
    template: &Value,
    context: &Value,
    budget: &Budget,
) -> Result<Value, TemplateError> {
    check(template, &SourceLimits::default())?;
    let renderer = Renderer::new(context, budget);
    // A panic inside jq (a bug in a native filter) must not take the caller down.
    let (rendered, exceeded) = meter::metered(budget, || {
        panic::catch_unwind(AssertUnwindSafe(|| renderer.value(template)))
    });
    let rendered = rendered.unwrap_or_else(|_| {
        Err(TemplateError::Evaluate {
            expression: String::new(),
            message: "the template engine failed on this template".to_owned(),
        })
    });
    match (rendered, exceeded) {
        // A limit wins over whatever error jq reported for it (a template may have
        // caught the limit's error and raised another).
        (Err(error), Some(limit)) => Err(TemplateError::Limit {
            expression: error.expression().to_owned(),
            limit,
        }),
        (rendered, _) => rendered,
    }
}

/// What one render may use. The defaults suit a request handler's thread (2 MiB of
/// stack); the sandbox raises `stack_bytes` on a thread of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Steps: definitions called, loop iterations, generated values, and about one per
    /// element or 64 bytes of text of every constructed value.
    pub steps: u64,
    /// How deeply constructed values may nest.
    pub depth: usize,
    /// How much stack evaluation may use beyond where it started.
    pub stack_bytes: usize,
    /// The largest rendered result, in bytes of compact JSON.
    pub output_bytes: usize,
}

impl Budget {
    /// Default step budget: a hundred times what Port's documented templates use,
    /// about 0.1 s of one core in a release build.
    pub const DEFAULT_STEPS: u64 = 1_000_000;
    /// Default cap of an evaluated invocation (`PORTD_MAX_INVOCATION_BYTES`).
    pub const DEFAULT_OUTPUT_BYTES: usize = 256 * 1024;
    /// Rendered values deeper than this could not be stored and read back (serde_json
    /// refuses documents nested deeper than 128, and a run's payload wraps the body).
    pub const MAX_OUTPUT_DEPTH: usize = 100;
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            steps: Self::DEFAULT_STEPS,
            depth: 256,
            stack_bytes: 512 * 1024,
            output_bytes: Self::DEFAULT_OUTPUT_BYTES,
        }
    }
}

/// Bounds on a template's source, checked before jq parses anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLimits {
    /// Bytes of one `{{ … }}` expression.
    pub expression_bytes: usize,
    /// Brackets (`(`, `[`, `{`, `\(`) and block keywords (`if`, `reduce`, `foreach`,
    /// `try`, `def`, `label`) open at once in one expression.
    pub nesting: usize,
    /// Expressions in one template.
    pub expressions: usize,
}

impl Default for SourceLimits {
    fn default() -> Self {
        Self {
            expression_bytes: 4096,
            nesting: 32,
            expressions: 256,
        }
    }
}

/// A limit a template exceeded. Its text completes "template expression `…` …".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "limit", content = "value", rename_all = "camelCase")]
pub enum Limit {
    /// The step budget ran out.
    Steps(u64),
    /// A constructed or rendered value nested deeper than this.
    Depth(usize),
    /// Evaluation recursed deeper than the stack allows.
    Recursion,
    /// The rendered result is larger than this many bytes.
    Output(usize),
    /// Evaluation took longer than this many milliseconds (the sandbox's wall clock).
    Time(u64),
    /// Evaluation needed more than this many bytes of memory (the sandbox's limit).
    Memory(u64),
    /// The expression is longer than this many bytes.
    ExpressionSize(usize),
    /// The expression nests deeper than this.
    Nesting(usize),
    /// The template has more expressions than this.
    Expressions(usize),
    /// One operation would have built a string or collection larger than this.
    ValueSize(u64),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Steps(n) => write!(f, "exceeded its budget of {n} evaluation steps"),
            Self::Depth(n) => write!(f, "built a value nested deeper than {n} levels"),
            Self::Recursion => f.write_str("recursed deeper than the evaluator's stack allows"),
            Self::Output(n) => write!(f, "rendered more than {n} bytes"),
            Self::Time(ms) => write!(f, "ran longer than the time limit of {ms} ms"),
            Self::Memory(bytes) => write!(
                f,
                "needed more than the memory limit of {} MiB",
                bytes / (1024 * 1024)
            ),
            Self::ExpressionSize(n) => write!(f, "is longer than {n} bytes"),
            Self::Nesting(n) => write!(f, "nests deeper than {n} levels"),
            Self::Expressions(n) => {
                write!(f, "is one of more than {n} expressions in the template")
            }
            Self::ValueSize(n) => {
                write!(f, "would build a value of more than {n} bytes or elements")
            }
        }
    }
}

/// Why a template could not be rendered. Each variant names the offending expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum TemplateError {
    /// The jq expression does not parse or refers to an undefined filter or variable.
    #[error("invalid template expression `{expression}`: {message}")]
    Parse { expression: String, message: String },
    /// The jq expression failed while running. Secret values are redacted from the
    /// message, since it ends up in run logs.
    #[error("template expression `{expression}` failed: {message}")]
    Evaluate { expression: String, message: String },
    /// The value under a `{{ spreadValue() }}` key rendered to neither an object nor
    /// `null`. `expression` is the value as written in the template.
    #[error("spreadValue() needs an object or null, but `{expression}` rendered to {found}")]
    SpreadNotObject {
        expression: String,
        /// The JSON type it rendered to ("array", "string", "number" or "boolean").
        found: String,
    },
    /// A budget was exceeded (see [`Budget`] and [`SourceLimits`]). `expression` is
    /// empty when the limit is the whole template's (its output, its time).
    #[error("{}", limit_message(.expression, .limit))]
    Limit { expression: String, limit: Limit },
    /// The engine could not take the template now: the organization has as many
    /// renders waiting as it may (a 429), or the sandbox could not be started (a 503).
    #[error("{message}")]
    Unavailable { busy: bool, message: String },
}

fn limit_message(expression: &str, limit: &Limit) -> String {
    if expression.is_empty() {
        format!("template {limit}")
    } else {
        format!("template expression `{expression}` {limit}")
    }
}

impl TemplateError {
    /// The template expression this error is about.
    pub fn expression(&self) -> &str {
        match self {
            Self::Parse { expression, .. }
            | Self::Evaluate { expression, .. }
            | Self::SpreadNotObject { expression, .. }
            | Self::Limit { expression, .. } => expression,
            Self::Unavailable { .. } => "",
        }
    }

    /// The limit this error reports, if it is one.
    pub fn limit(&self) -> Option<&Limit> {
        match self {
            Self::Limit { limit, .. } => Some(limit),
            _ => None,
        }
    }
}

/// Checks a template's source against `limits` without evaluating anything: every
/// string and object key is scanned for `{{ … }}` expressions.
pub fn check(template: &Value, limits: &SourceLimits) -> Result<(), TemplateError> {
    let mut expressions = 0;
    let mut pending = vec![template];
    while let Some(value) = pending.pop() {
        match value {
            Value::String(s) => check_string(s, limits, &mut expressions)?,
            Value::Array(items) => pending.extend(items),
            Value::Object(map) => {
                for (key, value) in map {
                    check_string(key, limits, &mut expressions)?;
                    pending.push(value);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    Ok(())
}

fn check_string(
    text: &str,
    limits: &SourceLimits,
    expressions: &mut usize,
) -> Result<(), TemplateError> {
    if !text.contains("{{") {
        return Ok(());
    }
    for segment in segments(text) {
        let Segment::Expr(code) = segment else {
            continue;
        };
        *expressions += 1;
        let too_far = |limit| TemplateError::Limit {
            expression: shortened(code.trim()),
            limit,
        };
        if *expressions > limits.expressions {
            return Err(too_far(Limit::Expressions(limits.expressions)));
        }
        if nesting(code) > limits.nesting {
            return Err(too_far(Limit::Nesting(limits.nesting)));
        }
        if code.len() > limits.expression_bytes {
            return Err(too_far(Limit::ExpressionSize(limits.expression_bytes)));
        }
    }
    Ok(())
}

/// An expression as error messages show it: at most 80 characters.
fn shortened(code: &str) -> String {
    match code.char_indices().nth(80) {
        Some((end, _)) => format!("{}…", &code[..end]),
        None => code.to_owned(),
    }
}

/// The deepest nesting of brackets, string interpolations, block keywords and unary
/// minus signs in jq code. Approximate on purpose: keywords that jq closes implicitly
/// (`reduce`, `try`, `def`, `as`) stay counted to the end, so it over-counts; it only
/// has to be at least the depth of jq's recursive lexer and parser, which it is, since
/// every construct they recurse on opens with one of these.
fn nesting(code: &str) -> usize {
    // Byte-wise is fine: every delimiter is ASCII, and UTF-8 continuation bytes never are.
    let bytes = code.as_bytes();
    // One entry per open string: the bracket depth at which its `\(…)` closes.
    let mut strings: Vec<Option<usize>> = Vec::new();
    let mut depth: usize = 0;
    let mut deepest = 0;
    // Whether the last token could end an operand (then `-` is binary).
    let mut after_operand = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(None) = strings.last() {
            // Inside a string literal.
            match b {
                b'\\' if bytes.get(i + 1) == Some(&b'(') => {
                    depth += 1;
                    if let Some(open) = strings.last_mut() {
                        *open = Some(depth);
                    }
                    i += 2;
                    after_operand = false;
                    deepest = deepest.max(depth);
                    continue;
                }
                b'\\' => i += 1,
                b'"' => {
                    strings.pop();
                    after_operand = true;
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => strings.push(None),
            b'(' | b'[' | b'{' => {
                depth += 1;
                after_operand = false;
            }
            b')' if strings.last() == Some(&Some(depth)) => {
                // The end of an interpolation: back inside its string.
                if let Some(open) = strings.last_mut() {
                    *open = None;
                }
                depth = depth.saturating_sub(1);
            }
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                after_operand = true;
            }
            b'-' if !after_operand => depth += 1,
            _ if b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'.' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'$' | b'.'))
                {
                    i += 1;
                }
                match &code[start..i] {
                    "if" | "reduce" | "foreach" | "try" | "def" | "label" | "as" => {
                        depth += 1;
                        after_operand = false;
                    }
                    "end" => {
                        depth = depth.saturating_sub(1);
                        after_operand = true;
                    }
                    "then" | "elif" | "else" | "and" | "or" | "catch" => after_operand = false,
                    _ => after_operand = true,
                }
                deepest = deepest.max(depth);
                continue;
            }
            b if b.is_ascii_whitespace() => {}
            _ => after_operand = false,
        }
        deepest = deepest.max(depth);
        i += 1;
    }
    deepest
}

/// Renders templates against one context, converting it to a jq value only once and
/// only if a template needs it.
struct Renderer<'c> {
    context: &'c Value,
    budget: &'c Budget,
    input: OnceLock<Val>,
}

impl<'c> Renderer<'c> {
    fn new(context: &'c Value, budget: &'c Budget) -> Self {
        Self {
            context,
            budget,
            input: OnceLock::new(),
        }
    }

    fn value(&self, template: &Value) -> Result<Value, TemplateError> {
        let mut output = OutputBudget {
            remaining: self.budget.output_bytes,
            cap: self.budget.output_bytes,
        };
        let rendered = self.value_within(template, &mut output, 0)?;
        Ok(rendered)
    }

    fn value_within(
        &self,
        template: &Value,
        output: &mut OutputBudget,
        depth: usize,
    ) -> Result<Value, TemplateError> {
        match template {
            Value::String(s) => self.string(s, output, depth),
            Value::Array(items) => {
                output.take("", 2)?;
                items
                    .iter()
                    .map(|item| self.value_within(item, output, depth + 1))
                    .collect()
            }
            Value::Object(map) => self.object(map, output, depth),
            Value::Null | Value::Bool(_) | Value::Number(_) => {
                output.take("", template.to_string().len())?;
                Ok(template.clone())
            }
        }
    }

    fn object(
        &self,
        map: &Map<String, Value>,
        output: &mut OutputBudget,
        depth: usize,
    ) -> Result<Value, TemplateError> {
        output.take("", 2)?;
        let mut out = Map::new();
        for (key, value) in map {
            if is_spread_key(key) {
                match self.value_within(value, output, depth + 1)? {
                    Value::Null => {}
                    // `insert` keeps an existing key's position and takes the new value,
                    // like a JavaScript object spread.
                    Value::Object(spread) => out.extend(spread),
                    other => {
                        return Err(TemplateError::SpreadNotObject {
                            expression: match value {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            },
                            found: type_name(&other).to_owned(),
                        });
                    }
                }
                continue;
            }
            // The key first: a dropped pair does not evaluate (or fail on) its value.
            let key = match self.string(key, output, depth)? {
                Value::Null => continue,
                Value::String(s) => s,
                other => other.to_string(),
            };
            out.insert(key, self.value_within(value, output, depth + 1)?);
        }
        Ok(Value::Object(out))
    }

    fn string(
        &self,
        template: &str,
        output: &mut OutputBudget,
        depth: usize,
    ) -> Result<Value, TemplateError> {
        if let [Segment::Expr(expr)] = segments(template.trim()).as_slice() {
            return self.eval(expr, output, depth);
        }
        let parts = segments(template);
        if !parts.iter().any(|part| matches!(part, Segment::Expr(_))) {
            output.take("", template.len() + 2)?;
            return Ok(Value::String(template.to_owned()));
        }
        let mut out = String::with_capacity(template.len());
        for part in parts {
            match part {
                Segment::Text(text) => {
                    output.take("", text.len())?;
                    out.push_str(text);
                }
                Segment::Expr(expr) => match self.eval(expr, output, depth)? {
                    Value::String(s) => out.push_str(&s),
                    other => out.push_str(&other.to_string()),
                },
            }
        }
        Ok(Value::String(out))
    }

    /// Runs one jq expression (the text between the braces) and returns its first
    /// output, charged to the output budget.
    fn eval(
        &self,
        expr: &str,
        output: &mut OutputBudget,
        depth: usize,
    ) -> Result<Value, TemplateError> {
        let expression = || shortened(expr.trim());
        let filter = jq::compiled(expr).map_err(|message| TemplateError::Parse {
            expression: expression(),
            message,
        })?;
        let input = self
            .input
            .get_or_init(|| Val::from(self.context.clone()))
            .clone();
        meter::anchor_stack();
        let inputs = RcIter::new(core::iter::empty());
        let first = filter.run((Ctx::new([], &inputs), input)).next();
        if let Some(limit) = meter::exceeded() {
            return Err(TemplateError::Limit {
                expression: expression(),
                limit,
            });
        }
        match first {
            None => {
                output.take(&expression(), 4)?;
                Ok(Value::Null)
            }
            Some(Ok(val)) => to_json(
                val,
                output,
                depth,
                self.budget.depth.min(Budget::MAX_OUTPUT_DEPTH),
            )
            .map_err(|limit| TemplateError::Limit {
                expression: expression(),
                limit,
            }),
            Some(Err(error)) => Err(TemplateError::Evaluate {
                expression: expression(),
                message: redact(&jq::error_message(error), self.context),
            }),
        }
    }
}

/// Bytes of compact JSON the render may still produce.
struct OutputBudget {
    remaining: usize,
    cap: usize,
}

impl OutputBudget {
    fn take(&mut self, expression: &str, bytes: usize) -> Result<(), TemplateError> {
        self.charge(bytes).map_err(|limit| TemplateError::Limit {
            expression: expression.to_owned(),
            limit,
        })
    }

    fn charge(&mut self, bytes: usize) -> Result<(), Limit> {
        match self.remaining.checked_sub(bytes) {
            Some(left) => {
                self.remaining = left;
                Ok(())
            }
            None => {
                self.remaining = 0;
                Err(Limit::Output(self.cap))
            }
        }
    }
}

/// A piece of a template string.
#[derive(Debug, PartialEq, Eq)]
enum Segment<'a> {
    Text(&'a str),
    /// The jq code between `{{` and `}}`.
    Expr(&'a str),
}

/// Splits a string into literal text and `{{ … }}` expressions. An opening `{{`
/// without its closing `}}` is literal text.
fn segments(s: &str) -> Vec<Segment<'_>> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        let Some(close) = find_close(&rest[open + 2..]) else {
            break;
        };
        if open > 0 {
            parts.push(Segment::Text(&rest[..open]));
        }
        let code = &rest[open + 2..];
        parts.push(Segment::Expr(&code[..close]));
        rest = &code[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(Segment::Text(rest));
    }
    parts
}

/// Finds the `}}` that ends the jq code at the start of `code`, skipping braces that
/// belong to the code itself (`{{ {a: {b: 1}} }}`) and string literals, including
/// `\(…)` interpolations inside them (`{{ "}}\(.x)" }}`).
fn find_close(code: &str) -> Option<usize> {
    enum Frame {
        /// jq code; `interpolation` is set inside a string's `\(…)`.
        Code {
            depth: usize,
            interpolation: bool,
        },
        Str,
    }
    // Byte-wise is fine: every delimiter is ASCII, and UTF-8 continuation bytes never are.
    let bytes = code.as_bytes();
    let mut stack = vec![Frame::Code {
        depth: 0,
        interpolation: false,
    }];
    let mut i = 0;
    while i < bytes.len() {
        match stack.last_mut()? {
            Frame::Str => match bytes[i] {
                b'\\' if bytes.get(i + 1) == Some(&b'(') => {
                    stack.push(Frame::Code {
                        depth: 0,
                        interpolation: true,
                    });
                    i += 1;
                }
                // Skips the escaped character, so `\"` does not end the string.
                b'\\' => i += 1,
                b'"' => {
                    stack.pop();
                }
                _ => {}
            },
            Frame::Code {
                depth,
                interpolation,
            } => match bytes[i] {
                b'"' => stack.push(Frame::Str),
                b'(' | b'[' | b'{' => *depth += 1,
                b')' if *interpolation && *depth == 0 => {
                    stack.pop();
                }
                b'}' if !*interpolation && *depth == 0 && bytes.get(i + 1) == Some(&b'}') => {
                    return Some(i);
                }
                // Unbalanced closers are left for jq to report.
                b')' | b']' | b'}' => *depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        i += 1;
    }
    None
}

/// Whether an object key is `{{ spreadValue() }}`, with any whitespace.
fn is_spread_key(key: &str) -> bool {
    key.trim()
        .strip_prefix("{{")
        .and_then(|key| key.strip_suffix("}}"))
        .is_some_and(|inner| {
            inner
                .chars()
                .filter(|c| !c.is_whitespace())
                .eq("spreadValue()".chars())
        })
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Replaces the context's secret values in an error message (`{{ .secrets.k + 1 }}`
/// would otherwise print the secret into the run log).
fn redact(message: &str, context: &Value) -> String {
    fn collect<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
        match value {
            Value::String(s) => out.push(s),
            Value::Array(items) => items.iter().for_each(|item| collect(item, out)),
            Value::Object(map) => map.values().for_each(|item| collect(item, out)),
            _ => {}
        }
    }
    let mut secrets = Vec::new();
    if let Some(value) = context.get("secrets") {
        collect(value, &mut secrets);
    }
    crate::secret::Masker::new(secrets, 1, "[REDACTED]")
        .mask(message)
        .into_owned()
}

/// Converts a jq value to JSON, charging `output` for it and refusing values nested
/// deeper than `max_depth` (counting from `depth`, where the value sits in the
/// template). Unlike jaq-json's `From<Val>`, it does not panic on numbers serde_json
/// cannot hold (`1e1000`); those become `null`, like NaN does.
fn to_json(
    val: Val,
    output: &mut OutputBudget,
    depth: usize,
    max_depth: usize,
) -> Result<Value, Limit> {
    if depth > max_depth {
        return Err(Limit::Depth(max_depth));
    }
    Ok(match val {
        Val::Null => {
            output.charge(4)?;
            Value::Null
        }
        Val::Bool(b) => {
            output.charge(5)?;
            Value::Bool(b)
        }
        Val::Int(i) => {
            output.charge(20)?;
            Value::Number(i.into())
        }
        Val::Float(f) => {
            output.charge(24)?;
            Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
        Val::Num(n) => {
            output.charge(n.len())?;
            n.parse::<Number>()
                .ok()
                .or_else(|| n.parse::<f64>().ok().and_then(Number::from_f64))
                .map_or(Value::Null, Value::Number)
        }
        Val::Str(s) => {
            output.charge(s.len() + 2)?;
            Value::String(Rc::unwrap_or_clone(s))
        }
        Val::Arr(items) => {
            output.charge(2 + items.len())?;
            let mut out = Vec::with_capacity(items.len());
            for item in Rc::unwrap_or_clone(items) {
                out.push(to_json(item, output, depth + 1, max_depth)?);
            }
            Value::Array(out)
        }
        Val::Obj(map) => {
            output.charge(2)?;
            let mut out = Map::new();
            for (key, value) in Rc::unwrap_or_clone(map) {
                output.charge(key.len() + 4)?;
                out.insert(
                    Rc::unwrap_or_clone(key),
                    to_json(value, output, depth + 1, max_depth)?,
                );
            }
            Value::Object(out)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn context() -> Value {
        json!({
            "inputs": {"name": "Alice", "n": 3, "a": 1, "flag": true, "tags": ["x", "y"]},
            "trigger": {
                "by": {"userId": "u_1", "orgId": "o_1"},
                "origin": "UI",
                "at": "2024-05-01T10:00:00.000Z",
                "operation": "DAY-2"
            },
            "entity": {},
            "action": {"identifier": "deploy", "blueprint": "service"},
            "run": {"id": "r_123"},
            "secrets": {"tok": "s3cr3t-token", "db-password": "hunter2"}
        })
    }

    #[test]
    fn renders() {
        let cases = [
            (
                "object keeps its type",
                json!("{{ .inputs }}"),
                context()["inputs"].clone(),
            ),
            ("number keeps its type", json!("{{ .inputs.n }}"), json!(3)),
            (
                "null keeps its type",
                json!("{{ .inputs.missing }}"),
                json!(null),
            ),
            (
                "bool keeps its type",
                json!(" {{.inputs.flag}} "),
                json!(true),
            ),
            (
                "array keeps its type",
                json!("{{ .inputs.tags }}"),
                json!(["x", "y"]),
            ),
            ("string", json!("{{ .run.id }}"), json!("r_123")),
            ("float", json!("{{ .inputs.n / 2 }}"), json!(1.5)),
            (
                "huge number becomes null",
                json!("{{ 1e1000 }}"),
                json!(null),
            ),
            (
                "interpolation",
                json!("run {{ .run.id }} of {{ .inputs.n }}"),
                json!("run r_123 of 3"),
            ),
            (
                "interpolation writes non-strings as compact JSON",
                json!("tags={{ .inputs.tags }} none={{ null }}"),
                json!(r#"tags=["x","y"] none=null"#),
            ),
            (
                "secret in a header",
                json!("Bearer {{ .secrets.tok }}"),
                json!("Bearer s3cr3t-token"),
            ),
            (
                "secret in a url",
                json!("https://api.example.com/{{ .secrets[\"db-password\"] }}/x?run={{.run.id}}"),
                json!("https://api.example.com/hunter2/x?run=r_123"),
            ),
            (
                "standard library",
                json!("{{ .inputs.name | ascii_downcase }}"),
                json!("alice"),
            ),
            (
                "more standard library",
                json!("{{ .inputs.tags | map(ascii_upcase) | join(\",\") }}"),
                json!("X,Y"),
            ),
            (
                "keys",
                json!("{{ .inputs | keys }}"),
                json!(["a", "flag", "n", "name", "tags"]),
            ),
            (
                "has/select",
                json!("{{ [.inputs.tags[] | select(. == \"y\")] }}"),
                json!(["y"]),
            ),
            (
                "split/test",
                json!("{{ \"a-b\" | split(\"-\") | map(test(\"a\")) }}"),
                json!([true, false]),
            ),
            ("tostring", json!("{{ .inputs.n | tostring }}"), json!("3")),
            (
                "alternative",
                json!("{{ .inputs.missing // \"dflt\" }}"),
                json!("dflt"),
            ),
            (
                "first of several outputs",
                json!("{{ .inputs.tags[] }}"),
                json!("x"),
            ),
            ("no output is null", json!("{{ empty }}"), json!(null)),
            (
                "braces inside the code",
                json!("{{ {a: {b: .inputs.n}} }}"),
                json!({"a": {"b": 3}}),
            ),
            (
                "closing braces in a string literal",
                json!(r#"{{ "}}" }}"#),
                json!("}}"),
            ),
            (
                "string interpolation inside the code",
                json!(r#"{{ "id=\(.run.id | "<\(.)>")}}" }}"#),
                json!("id=<r_123>}}"),
            ),
            (
                "unterminated is literal",
                json!("a {{ .run.id"),
                json!("a {{ .run.id"),
            ),
            (
                "single braces are literal",
                json!("{ .run.id }"),
                json!("{ .run.id }"),
            ),
            (
                "debug is the identity",
                json!("{{ .run.id | debug }}"),
                json!("r_123"),
            ),
            (
                "key templates",
                json!({
                    "{{ .action.identifier }}": 1,
                    "n_{{ .inputs.n }}": 2,
                    "{{ .inputs.n }}": 3,
                    "{{ .inputs.missing }}": "{{ error(\"not evaluated\") }}",
                    "plain": "{{ .inputs.flag }}"
                }),
                json!({"deploy": 1, "n_3": 2, "3": 3, "plain": true}),
            ),
            (
                "spreadValue merges next to other keys",
                json!({
                    "port_context": {"runId": "{{ .run.id }}"},
                    "{{ spreadValue() }}": "{{ .inputs }}"
                }),
                json!({
                    "port_context": {"runId": "r_123"},
                    "name": "Alice", "n": 3, "a": 1, "flag": true, "tags": ["x", "y"]
                }),
            ),
            (
                "later keys override a spread",
                json!({
                    "{{spreadValue()}}": {"name": "{{ .inputs.name }}", "x": 1},
                    "x": 2,
                    "{{ spreadValue( ) }}": null
                }),
                json!({"name": "Alice", "x": 2}),
            ),
            (
                "nested objects and arrays",
                json!({"a": [1, "{{ .inputs.n }}", {"b": ["{{ .run.id }}", null, false]}]}),
                json!({"a": [1, 3, {"b": ["r_123", null, false]}]}),
            ),
            (
                "Port's legacy message reproduction",
                json!({
                    "action": "{{ .action.identifier }}",
                    "resourceType": "run",
                    "status": "TRIGGERED",
                    "trigger": "{{ .trigger | {by, origin, at} }}",
                    "context": {
                        "entity": "{{.entity.identifier}}",
                        "blueprint": "{{.action.blueprint}}",
                        "runId": "{{.run.id}}"
                    },
                    "payload": {
                        "entity": "{{ (if .entity == {} then null else .entity end) }}",
                        "properties": "{{ .inputs }}"
                    }
                }),
                json!({
                    "action": "deploy",
                    "resourceType": "run",
                    "status": "TRIGGERED",
                    "trigger": {
                        "by": {"userId": "u_1", "orgId": "o_1"},
                        "origin": "UI",
                        "at": "2024-05-01T10:00:00.000Z"
                    },
                    "context": {"entity": null, "blueprint": "service", "runId": "r_123"},
                    "payload": {"entity": null, "properties": context()["inputs"].clone()}
                }),
            ),
        ];
        for (name, template, expected) in cases {
            let rendered = render(&template, &context());
            assert_eq!(rendered, Ok(expected), "{name}");
        }
    }

    #[test]
    fn keeps_key_order() {
        let rendered = render(
            &json!({"z": 1, "{{ spreadValue() }}": {"m": 2, "z": 3}, "a": 4}),
            &context(),
        )
        .unwrap();
        let keys: Vec<_> = rendered.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["z", "m", "a"]);
        assert_eq!(rendered["z"], json!(3));
    }

    #[test]
    fn render_str_renders_one_string() {
        let ctx = context();
        assert_eq!(
            render_str("https://x/{{ .run.id }}", &ctx),
            Ok(json!("https://x/r_123"))
        );
        assert_eq!(render_str("{{ .inputs.n }}", &ctx), Ok(json!(3)));
        assert_eq!(render_str("  POST ", &ctx), Ok(json!("  POST ")));
    }

    #[test]
    fn fails() {
        let parse = |e: &TemplateError| matches!(e, TemplateError::Parse { .. });
        let evaluate = |message: &'static str| move |e: &TemplateError| matches!(e, TemplateError::Evaluate { message: m, .. } if m == message);
        type Check<'a> = &'a dyn Fn(&TemplateError) -> bool;
        let cases: [(&str, Value, &str, Check<'_>); 9] = [
            (
                "syntax error",
                json!("{{ .inputs | }}"),
                ".inputs |",
                &parse,
            ),
            ("empty expression", json!("x {{ }}"), "", &parse),
            (
                "undefined filter",
                json!("{{ nope(1) }}"),
                "nope(1)",
                &parse,
            ),
            (
                "spreadValue is no jq filter",
                json!("{{ spreadValue() }}"),
                "spreadValue()",
                &parse,
            ),
            (
                "error()",
                json!({"k": ["{{ error(\"boom\") }}"]}),
                "error(\"boom\")",
                &evaluate("boom"),
            ),
            (
                "type error",
                json!("{{ .inputs.a + \"x\" }}"),
                ".inputs.a + \"x\"",
                &evaluate("cannot calculate 1 + \"x\""),
            ),
            (
                "secrets are redacted",
                json!("{{ .secrets.tok + 1 }}"),
                ".secrets.tok + 1",
                &evaluate("cannot calculate \"[REDACTED]\" + 1"),
            ),
            (
                "env is not available",
                json!("{{ env }}"),
                "env",
                &evaluate("this filter is not available in templates"),
            ),
            (
                "spreadValue on a non-object",
                json!({"a": 1, "{{ spreadValue() }}": "{{ .inputs.tags }}"}),
                "{{ .inputs.tags }}",
                &|e: &TemplateError| matches!(e, TemplateError::SpreadNotObject { found, .. } if found == "array"),
            ),
        ];
        for (name, template, expression, check) in cases {
            let error = render(&template, &context()).unwrap_err();
            assert_eq!(error.expression(), expression, "{name}: {error:?}");
            assert!(check(&error), "{name}: {error:?}");
        }
    }

    #[test]
    fn parse_errors_say_what_was_expected() {
        let error = render_str("{{ .inputs | }}", &context()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid template expression `.inputs |`: expected term at end of input"
        );
        let error = render_str("{{ nope(1) }}", &context()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid template expression `nope(1)`: undefined filter `nope/1`"
        );
    }

    #[test]
    fn segments_split_text_and_code() {
        assert_eq!(
            segments("a{{.b}}c{{ {d: 1} }}"),
            [
                Segment::Text("a"),
                Segment::Expr(".b"),
                Segment::Text("c"),
                Segment::Expr(" {d: 1} ")
            ]
        );
        assert_eq!(segments(r#"{{ "\"}}" }}"#), [Segment::Expr(r#" "\"}}" "#)]);
        assert_eq!(segments("{{ .a ) }}"), [Segment::Expr(" .a ) ")]);
    }

    fn template_free_text() -> impl Strategy<Value = String> {
        "\\PC{0,12}".prop_filter("no templates", |s| !s.contains("{{"))
    }

    fn template_free_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            template_free_text().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((template_free_text(), inner), 0..8)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn template_free_json_is_unchanged(value in template_free_json()) {
            prop_assert_eq!(render(&value, &context()), Ok(value));
        }
    }
}
