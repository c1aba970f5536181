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
//! jq has no step limit, so a template can still loop forever or exhaust memory;
//! templates come from action definitions, which only admins write.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};

use jaq_core::box_iter::box_once;
use jaq_core::compile::{Lut, Undefined};
use jaq_core::load::{self, Arena, File, Loader};
use jaq_core::{Bind, Compiler, Ctx, Cv, Error, Exn, Native, RcIter, ValXs};
use jaq_json::Val;
use serde_json::{Map, Number, Value};

/// Renders a JSON template against a context object.
///
/// Strings are rendered with [`render_str`], object keys as described in the module
/// docs, arrays element-wise; numbers, booleans and `null` pass unchanged.
pub fn render(template: &Value, context: &Value) -> Result<Value, TemplateError> {
    Renderer::new(context).value(template)
}

/// Renders a single string (used for url/method values).
///
/// Yields the typed jq result if the string is exactly one template, the
/// interpolated text if it embeds templates, and the string itself otherwise.
pub fn render_str(template: &str, context: &Value) -> Result<Value, TemplateError> {
    Renderer::new(context).string(template)
}

/// Why a template could not be rendered. Each variant names the offending expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
        found: &'static str,
    },
}

impl TemplateError {
    /// The template expression this error is about.
    pub fn expression(&self) -> &str {
        match self {
            Self::Parse { expression, .. }
            | Self::Evaluate { expression, .. }
            | Self::SpreadNotObject { expression, .. } => expression,
        }
    }
}

/// Renders templates against one context, converting it to a jq value only once and
/// only if a template needs it.
struct Renderer<'c> {
    context: &'c Value,
    input: OnceLock<Val>,
}

impl<'c> Renderer<'c> {
    fn new(context: &'c Value) -> Self {
        Self {
            context,
            input: OnceLock::new(),
        }
    }

    fn value(&self, template: &Value) -> Result<Value, TemplateError> {
        match template {
            Value::String(s) => self.string(s),
            Value::Array(items) => items.iter().map(|item| self.value(item)).collect(),
            Value::Object(map) => self.object(map),
            Value::Null | Value::Bool(_) | Value::Number(_) => Ok(template.clone()),
        }
    }

    fn object(&self, map: &Map<String, Value>) -> Result<Value, TemplateError> {
        let mut out = Map::new();
        for (key, value) in map {
            if is_spread_key(key) {
                match self.value(value)? {
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
                            found: type_name(&other),
                        });
                    }
                }
                continue;
            }
            // The key first: a dropped pair does not evaluate (or fail on) its value.
            let key = match self.string(key)? {
                Value::Null => continue,
                Value::String(s) => s,
                other => other.to_string(),
            };
            out.insert(key, self.value(value)?);
        }
        Ok(Value::Object(out))
    }

    fn string(&self, template: &str) -> Result<Value, TemplateError> {
        if let [Segment::Expr(expr)] = segments(template.trim()).as_slice() {
            return self.eval(expr);
        }
        let parts = segments(template);
        if !parts.iter().any(|part| matches!(part, Segment::Expr(_))) {
            return Ok(Value::String(template.to_owned()));
        }
        let mut out = String::with_capacity(template.len());
        for part in parts {
            match part {
                Segment::Text(text) => out.push_str(text),
                Segment::Expr(expr) => match self.eval(expr)? {
                    Value::String(s) => out.push_str(&s),
                    other => out.push_str(&other.to_string()),
                },
            }
        }
        Ok(Value::String(out))
    }

    /// Runs one jq expression (the text between the braces) and returns its first output.
    fn eval(&self, expr: &str) -> Result<Value, TemplateError> {
        let expression = || expr.trim().to_owned();
        let filter = compiled(expr).map_err(|message| TemplateError::Parse {
            expression: expression(),
            message,
        })?;
        let input = self
            .input
            .get_or_init(|| Val::from(self.context.clone()))
            .clone();
        let inputs = RcIter::new(core::iter::empty());
        let first = filter.run((Ctx::new([], &inputs), input)).next();
        match first {
            None => Ok(Value::Null),
            Some(Ok(val)) => Ok(to_json(val)),
            Some(Err(error)) => Err(TemplateError::Evaluate {
                expression: expression(),
                message: redact(&error_message(error), self.context),
            }),
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

type JqFilter = jaq_core::Filter<Native<Val>>;

// The cache below shares compiled filters between threads; jaq keeps only owned
// strings and function pointers in them (values are `Rc`-based, but created per run).
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<JqFilter>();
};

/// Beyond this many distinct expressions the cache starts over, so edited actions
/// cannot grow it without bound.
const CACHE_CAPACITY: usize = 1024;

/// Compiled filters by expression text: the same templates are rendered for every
/// run, and compiling includes parsing jq's whole standard library.
static CACHE: LazyLock<Mutex<HashMap<String, Arc<JqFilter>>>> = LazyLock::new(Default::default);

/// The compiled filter for `code`, or a description of why it does not compile.
fn compiled(code: &str) -> Result<Arc<JqFilter>, String> {
    // A poisoned lock only means another render panicked; the map itself is intact.
    let cached = CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(code)
        .cloned();
    if let Some(filter) = cached {
        return Ok(filter);
    }
    // Compiled outside the lock; a concurrent duplicate compile is harmless.
    let filter = Arc::new(compile(code)?);
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if cache.len() >= CACHE_CAPACITY {
        cache.clear();
    }
    cache.insert(code.to_owned(), Arc::clone(&filter));
    Ok(filter)
}

fn compile(code: &str) -> Result<JqFilter, String> {
    let arena = Arena::default();
    let loader = Loader::new(jaq_std::defs().chain(jaq_json::defs()));
    let modules = loader
        .load(&arena, File { code, path: () })
        .map_err(|errors| describe_load_errors(&errors))?;
    let funs = jaq_std::funs().chain(jaq_json::funs()).map(sandbox);
    Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errors| describe_compile_errors(&errors))
}

type NativeFilter = (&'static str, Box<[Bind]>, Native<Val>);

/// Replaces the standard filters that reach outside the template (see module docs).
fn sandbox((name, args, native): NativeFilter) -> NativeFilter {
    let native = match name {
        "env" | "halt" | "halt_error" => Native::new(unavailable),
        "debug" | "stderr" => Native::new(identity),
        _ => native,
    };
    (name, args, native)
}

fn unavailable<'a>(_: &'a Lut<Native<Val>>, _: Cv<'a, Val>) -> ValXs<'a, Val> {
    box_once(Err(Exn::from(Error::str(
        "this filter is not available in templates",
    ))))
}

fn identity<'a>(_: &'a Lut<Native<Val>>, (_, input): Cv<'a, Val>) -> ValXs<'a, Val> {
    box_once(Ok(input))
}

fn describe_load_errors(errors: &load::Errors<&str, ()>) -> String {
    let mut messages = Vec::new();
    for (_, error) in errors {
        match error {
            load::Error::Io(errors) => messages.extend(
                errors
                    .iter()
                    .map(|(path, message)| format!("cannot load module `{path}`: {message}")),
            ),
            load::Error::Lex(errors) => {
                messages.extend(errors.iter().map(|(expected, found)| {
                    // `as_str` panics on delimiters other than the four it knows.
                    let expected = match expected {
                        load::lex::Expect::Delim(open) => format!("closing delimiter for `{open}`"),
                        other => other.as_str().to_owned(),
                    };
                    format!("expected {expected} {}", location(found))
                }));
            }
            load::Error::Parse(errors) => {
                messages.extend(errors.iter().map(|(expected, found)| {
                    format!("expected {} {}", expected.as_str(), location(found))
                }));
            }
        }
    }
    messages.join("; ")
}

fn describe_compile_errors(errors: &jaq_core::compile::Errors<&str, ()>) -> String {
    let mut messages = Vec::new();
    for (_, errors) in errors {
        messages.extend(errors.iter().map(|(name, undefined)| match undefined {
            Undefined::Filter(arity) => format!("undefined filter `{name}/{arity}`"),
            other => format!("undefined {} `{name}`", other.as_str()),
        }));
    }
    messages.join("; ")
}

/// Where a lex or parse error happened: jaq gives the rest of the input from there.
fn location(rest: &str) -> String {
    const SHOWN: usize = 20;
    let rest = rest.trim_end();
    if rest.is_empty() {
        return "at end of input".to_owned();
    }
    match rest.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("at `{}…`", &rest[..end]),
        None => format!("at `{rest}`"),
    }
}

/// jq's text for a runtime error: `error("boom")` says `boom`, not `"boom"`.
fn error_message(error: Error<Val>) -> String {
    match error.into_val() {
        Val::Str(s) => Rc::unwrap_or_clone(s),
        other => to_json(other).to_string(),
    }
}

/// Replaces the context's secret values in an error message (`{{ .secrets.k + 1 }}`
/// would otherwise print the secret into the run log).
fn redact(message: &str, context: &Value) -> String {
    fn collect<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
        match value {
            Value::String(s) if !s.is_empty() => out.push(s),
            Value::Array(items) => items.iter().for_each(|item| collect(item, out)),
            Value::Object(map) => map.values().for_each(|item| collect(item, out)),
            _ => {}
        }
    }
    let mut secrets = Vec::new();
    if let Some(value) = context.get("secrets") {
        collect(value, &mut secrets);
    }
    // Longest first, so a secret containing another is hidden whole.
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    let mut message = message.to_owned();
    for secret in secrets {
        if message.contains(secret) {
            message = message.replace(secret, "[REDACTED]");
        }
    }
    message
}

/// Converts a jq value to JSON. Unlike jaq-json's `From<Val>`, it does not panic on
/// numbers serde_json cannot hold (`1e1000`); those become `null`, like NaN does.
fn to_json(val: Val) -> Value {
    match val {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(b),
        Val::Int(i) => Value::Number(i.into()),
        Val::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        Val::Num(n) => n
            .parse::<Number>()
            .ok()
            .or_else(|| n.parse::<f64>().ok().and_then(Number::from_f64))
            .map_or(Value::Null, Value::Number),
        Val::Str(s) => Value::String(Rc::unwrap_or_clone(s)),
        Val::Arr(items) => Rc::unwrap_or_clone(items)
            .into_iter()
            .map(to_json)
            .collect(),
        Val::Obj(map) => Value::Object(
            Rc::unwrap_or_clone(map)
                .into_iter()
                .map(|(key, value)| (Rc::unwrap_or_clone(key), to_json(value)))
                .collect(),
        ),
    }
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
                &|e: &TemplateError| {
                    matches!(e, TemplateError::SpreadNotObject { found: "array", .. })
                },
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
