//! Compiling jq expressions with the meter threaded through them.
//!
//! jaq has no step limit, so the budget is inserted into the program itself: the
//! expression and jq's standard library (itself written in jq) are parsed here and
//! rewritten before compilation so that
//!
//! - every definition's body and every argument of a call starts with a step:
//!   recursion (`def f: f`, `def f(g): g | f(g)`), and the builtins written as
//!   recursive definitions (`repeat`, `recurse`, `while`, `until`, `walk`, `paths`,
//!   …), cost one step per call, and each step checks how much stack is in use;
//! - every `reduce`/`foreach` update costs a step, and the native generator `range`
//!   a step per value it yields;
//! - every constructed array, object and interpolated string, and every arithmetic
//!   result, is charged its weight, counted through shared parts, so `[., .]`, `. + .`
//!   and `"x" * 1e9` cannot grow values faster than the budget allows (string
//!   repetition and concatenation are refused before they allocate);
//! - `..` becomes `recurse`, and `fromjson` parses with serde_json's nesting limit.
//!
//! What stays outside the meter is work done inside one native call on a value the
//! budget already paid for (sorting, `tojson`, regular expressions); the sandboxed
//! evaluator's wall clock and memory limit bound those.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use jaq_core::box_iter::box_once;
use jaq_core::compile::{Lut, Undefined};
use jaq_core::load::lex::{Lexer, StrPart, Token};
use jaq_core::load::parse::{BinaryOp, Def, Parser, Pattern, Term};
use jaq_core::load::{self, Arena, File, Loader};
use jaq_core::ops::Math;
use jaq_core::path::{Part, Path};
use jaq_core::{Bind, Compiler, Cv, Error, Exn, Native, ValXs};
use jaq_json::Val;

use super::meter;

pub(super) type JqFilter = jaq_core::Filter<Native<Val>>;

// The cache below shares compiled filters between threads; jaq keeps only owned
// strings and function pointers in them (values are `Rc`-based, but created per run).
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<JqFilter>();
};

/// Names of the meter's filters; templates may not use names with this prefix, or a
/// template could define its own `__port_step` and switch the meter off.
pub(super) const RESERVED_PREFIX: &str = "__port_";
const STEP: &str = "__port_step";
const GREW: &str = "__port_grew";
const RANGE: &str = "__port_range";
const MAIN: &str = "__port_main";
const UPDATE_VAR: &str = "$__port_rhs";

/// Beyond this many distinct expressions the cache starts over, so edited actions
/// cannot grow it without bound.
const CACHE_CAPACITY: usize = 1024;

/// Compiled filters by expression text: the same templates are rendered for every
/// run, and compiling includes parsing jq's whole standard library.
static CACHE: LazyLock<Mutex<HashMap<String, Arc<JqFilter>>>> = LazyLock::new(Default::default);

/// The compiled filter for `code`, or a description of why it does not compile.
pub(super) fn compiled(code: &str) -> Result<Arc<JqFilter>, String> {
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
    if code.contains(RESERVED_PREFIX) {
        return Err(format!(
            "names starting with `{RESERVED_PREFIX}` are reserved"
        ));
    }
    let tokens = Lexer::new(code).lex().map_err(|errors| {
        describe_lex_errors(errors.iter().map(|(expected, found)| (expected, *found)))
    })?;
    let term = Parser::new(&tokens).parse(|p| p.term()).map_err(|errors| {
        let messages: Vec<String> = errors
            .iter()
            .map(|(expected, found)| {
                format!(
                    "expected {} {}",
                    expected.as_str(),
                    location(Token::opt_as_str(*found, code))
                )
            })
            .collect();
        messages.join("; ")
    })?;
    let main = Def {
        name: MAIN,
        args: Vec::new(),
        body: metered_body(metered(term)),
    };
    let arena = Arena::default();
    let loader = Loader::new(prelude().map(borrowed).chain(std::iter::once(main)));
    let modules = loader
        .load(
            &arena,
            File {
                code: MAIN,
                path: (),
            },
        )
        .map_err(|errors| describe_load_errors(&errors))?;
    Compiler::default()
        .with_funs(natives())
        .compile(modules)
        .map_err(|errors| describe_compile_errors(&errors))
}

/// jq's standard library, metered, after the meter's own definitions.
fn prelude() -> impl Iterator<Item = Def<&'static str>> {
    let own = load::parse(
        "def range($from; $upto; $by): __port_range($from; $upto; $by) | __port_step;",
        |p| p.defs(),
    )
    .unwrap_or_default();
    let standard = jaq_std::defs().chain(jaq_json::defs());
    own.into_iter().chain(standard).map(metered_def)
}

/// The prelude's definitions with the lifetime of the expression they are loaded with.
fn borrowed<'s>(def: Def<&'static str>) -> Def<&'s str> {
    def
}

fn metered_def(def: Def<&str>) -> Def<&str> {
    Def {
        name: def.name,
        args: def.args,
        body: metered_body(metered(def.body)),
    }
}

/// `STEP | body`: one step per call (STEP passes its input through), keeping calls in
/// `body` in tail position so jaq still runs tail recursion as a loop.
fn metered_body(body: Term<&str>) -> Term<&str> {
    Term::Pipe(Box::new(Term::Call(STEP, Vec::new())), None, Box::new(body))
}

/// `term | GREW`: charges the constructed value's weight.
fn charged(term: Term<&str>) -> Term<&str> {
    Term::Pipe(Box::new(term), None, Box::new(Term::Call(GREW, Vec::new())))
}

/// Rewrites a term so that the meter sees it (see the module docs).
fn metered<'s>(term: Term<&'s str>) -> Term<&'s str> {
    let m = |t: Box<Term<&'s str>>| Box::new(metered(*t));
    match term {
        Term::Id | Term::Num(_) | Term::Var(_) | Term::Break(_) => term,
        Term::Recurse => Term::Call("recurse", Vec::new()),
        Term::Str(format, parts) => {
            let interpolated = parts.iter().any(|p| matches!(p, StrPart::Term(_)));
            let parts = parts
                .into_iter()
                .map(|part| match part {
                    StrPart::Term(t) => StrPart::Term(metered(t)),
                    StrPart::Str(s) => StrPart::Str(s),
                    StrPart::Char(c) => StrPart::Char(c),
                })
                .collect();
            let term = Term::Str(format, parts);
            if interpolated { charged(term) } else { term }
        }
        Term::Arr(inner) => charged(Term::Arr(inner.map(m))),
        Term::Obj(pairs) => charged(Term::Obj(
            pairs
                .into_iter()
                .map(|(k, v)| (metered(k), v.map(metered)))
                .collect(),
        )),
        Term::Neg(t) => Term::Neg(m(t)),
        Term::Pipe(l, pattern, r) => Term::Pipe(m(l), pattern.map(metered_pattern), m(r)),
        Term::BinOp(l, BinaryOp::Math(op), r) => math(op, metered(*l), metered(*r)),
        Term::BinOp(l, BinaryOp::UpdateMath(op), r) => {
            // `l op= r` is `r as $x | l |= . op $x`, so the arithmetic is checked too.
            let update = math(op, Term::Id, Term::Var(UPDATE_VAR));
            Term::Pipe(
                m(r),
                Some(Pattern::Var(UPDATE_VAR)),
                Box::new(Term::BinOp(m(l), BinaryOp::Update, Box::new(update))),
            )
        }
        Term::BinOp(l, op, r) => Term::BinOp(m(l), op, m(r)),
        Term::Label(name, t) => Term::Label(name, m(t)),
        Term::Fold(kind, xs, pattern, args) => {
            let mut args: Vec<Term<&'s str>> = args.into_iter().map(metered).collect();
            if let Some(update) = args.get_mut(1) {
                *update = metered_body(std::mem::take(update));
            }
            Term::Fold(kind, m(xs), metered_pattern(pattern), args)
        }
        Term::TryCatch(t, catch) => Term::TryCatch(m(t), catch.map(m)),
        Term::IfThenElse(branches, otherwise) => Term::IfThenElse(
            branches
                .into_iter()
                .map(|(cond, then)| (metered(cond), metered(then)))
                .collect(),
            otherwise.map(m),
        ),
        Term::Def(defs, rest) => Term::Def(
            defs.into_iter()
                .map(|def| Def {
                    name: def.name,
                    args: def.args,
                    body: metered_body(metered(def.body)),
                })
                .collect(),
            m(rest),
        ),
        // Arguments too: a filter argument passed down a recursion is a chain of
        // closures, and calling it at depth n walks the chain without entering a
        // definition; a step per link keeps the recursion bound in force.
        Term::Call(name, args) => Term::Call(
            name,
            args.into_iter()
                .map(|arg| metered_body(metered(arg)))
                .collect(),
        ),
        Term::Path(t, Path(parts)) => Term::Path(
            m(t),
            Path(
                parts
                    .into_iter()
                    .map(|(part, opt)| {
                        let part = match part {
                            Part::Index(i) => Part::Index(metered(i)),
                            Part::Range(from, upto) => {
                                Part::Range(from.map(metered), upto.map(metered))
                            }
                        };
                        (part, opt)
                    })
                    .collect(),
            ),
        ),
    }
}

fn metered_pattern(pattern: Pattern<&str>) -> Pattern<&str> {
    match pattern {
        Pattern::Var(v) => Pattern::Var(v),
        Pattern::Arr(items) => Pattern::Arr(items.into_iter().map(metered_pattern).collect()),
        Pattern::Obj(pairs) => Pattern::Obj(
            pairs
                .into_iter()
                .map(|(k, p)| (metered(k), metered_pattern(p)))
                .collect(),
        ),
    }
}

/// `l op r` as a call of the checked arithmetic native for `op`.
fn math<'s>(op: Math, l: Term<&'s str>, r: Term<&'s str>) -> Term<&'s str> {
    let name = match op {
        Math::Add => "__port_add",
        Math::Sub => "__port_sub",
        Math::Mul => "__port_mul",
        Math::Div => "__port_div",
        Math::Rem => "__port_rem",
    };
    Term::Call(name, vec![l, r])
}

type NativeFilter = (&'static str, Box<[Bind]>, Native<Val>);

fn vars(n: usize) -> Box<[Bind]> {
    std::iter::repeat_n(Bind::Var(()), n).collect()
}

/// jq's native filters, sandboxed, and the meter's.
fn natives() -> impl Iterator<Item = NativeFilter> {
    let own: [NativeFilter; 8] = [
        // A step is the identity, so it may sit in a path expression (`getpath(p) = x`
        // and `paths` run through definitions): updating through it updates its input.
        (
            STEP,
            vars(0),
            Native::new(step).with_update(|_, (_, input), update| match meter::step() {
                Ok(()) => update(input),
                Err(limit) => limit_error(&limit),
            }),
        ),
        (GREW, vars(0), Native::new(grew)),
        ("__port_add", vars(2), Native::new(add)),
        ("__port_sub", vars(2), Native::new(sub)),
        ("__port_mul", vars(2), Native::new(mul)),
        ("__port_div", vars(2), Native::new(div)),
        ("__port_rem", vars(2), Native::new(rem)),
        ("fromjson", vars(0), Native::new(from_json)),
    ];
    jaq_std::funs()
        .chain(jaq_json::funs())
        .filter(|(name, _, _)| *name != "fromjson")
        .map(sandbox)
        .chain(own)
}

/// Replaces the standard filters that reach outside the template, and renames the
/// native `range` so the metered definition of the prelude wraps it.
fn sandbox((name, args, native): NativeFilter) -> NativeFilter {
    match name {
        "env" | "halt" | "halt_error" => (name, args, Native::new(unavailable)),
        "debug" | "stderr" => (name, args, Native::new(identity)),
        "range" => (RANGE, args, native),
        _ => (name, args, native),
    }
}

fn fail<'a>(message: impl std::fmt::Display) -> ValXs<'a, Val> {
    box_once(Err(Exn::from(Error::str(message))))
}

fn limit_error<'a>(limit: &super::Limit) -> ValXs<'a, Val> {
    fail(format!("template {limit}"))
}

fn unavailable<'a>(_: &'a Lut<Native<Val>>, _: Cv<'a, Val>) -> ValXs<'a, Val> {
    fail("this filter is not available in templates")
}

fn identity<'a>(_: &'a Lut<Native<Val>>, (_, input): Cv<'a, Val>) -> ValXs<'a, Val> {
    box_once(Ok(input))
}

fn step<'a>(_: &'a Lut<Native<Val>>, (_, input): Cv<'a, Val>) -> ValXs<'a, Val> {
    match meter::step() {
        Ok(()) => box_once(Ok(input)),
        Err(limit) => limit_error(&limit),
    }
}

fn grew<'a>(_: &'a Lut<Native<Val>>, (_, input): Cv<'a, Val>) -> ValXs<'a, Val> {
    match meter::grew(&input) {
        Ok(()) => box_once(Ok(input)),
        Err(limit) => limit_error(&limit),
    }
}

/// Pops the two operands of an arithmetic native (pushed left first).
fn operands(cv: Cv<'_, Val>) -> (Val, Val) {
    let mut ctx = cv.0;
    let r = ctx.pop_var();
    let l = ctx.pop_var();
    (l, r)
}

/// The length of text or of a collection, for the checks before an operation.
fn len(value: &Val) -> u64 {
    match value {
        Val::Str(s) => s.len() as u64,
        Val::Arr(items) => items.len() as u64,
        Val::Obj(map) => map.len() as u64,
        _ => 0,
    }
}

/// Bytes a string may have or elements a collection may have after one operation:
/// the render's whole output is capped far below this anyway.
const MAX_OPERATION_RESULT: u64 = 16 * 1024 * 1024;

fn checked<'a>(result: Result<Val, Error<Val>>) -> ValXs<'a, Val> {
    match result {
        Ok(value) => match meter::grew(&value) {
            Ok(()) => box_once(Ok(value)),
            Err(limit) => limit_error(&limit),
        },
        Err(error) => box_once(Err(Exn::from(error))),
    }
}

fn too_large<'a>(_size: u64) -> ValXs<'a, Val> {
    match meter::refuse(super::Limit::ValueSize(MAX_OPERATION_RESULT)) {
        Ok(()) => box_once(Ok(Val::Null)),
        Err(limit) => limit_error(&limit),
    }
}

fn add<'a>(_: &'a Lut<Native<Val>>, cv: Cv<'a, Val>) -> ValXs<'a, Val> {
    let (l, r) = operands(cv);
    match (&l, &r) {
        (Val::Int(x), Val::Int(y)) => {
            let sum = x
                .checked_add(*y)
                .map_or_else(|| Val::Float(*x as f64 + *y as f64), Val::Int);
            return box_once(Ok(sum));
        }
        _ if len(&l) + len(&r) > MAX_OPERATION_RESULT => return too_large(len(&l) + len(&r)),
        _ => {}
    }
    checked(l + r)
}

fn sub<'a>(_: &'a Lut<Native<Val>>, cv: Cv<'a, Val>) -> ValXs<'a, Val> {
    let (l, r) = operands(cv);
    if let (Val::Int(x), Val::Int(y)) = (&l, &r) {
        let difference = x
            .checked_sub(*y)
            .map_or_else(|| Val::Float(*x as f64 - *y as f64), Val::Int);
        return box_once(Ok(difference));
    }
    checked(l - r)
}

fn mul<'a>(_: &'a Lut<Native<Val>>, cv: Cv<'a, Val>) -> ValXs<'a, Val> {
    let (l, r) = operands(cv);
    match (&l, &r) {
        (Val::Int(x), Val::Int(y)) => {
            let product = x
                .checked_mul(*y)
                .map_or_else(|| Val::Float(*x as f64 * *y as f64), Val::Int);
            return box_once(Ok(product));
        }
        (Val::Str(s), n) | (n, Val::Str(s)) if number(n).is_some() => {
            let times = number(n).unwrap_or(0.0);
            let size = (s.len() as f64) * times.max(0.0);
            if size > MAX_OPERATION_RESULT as f64 {
                return too_large(size as u64);
            }
        }
        _ => {}
    }
    checked(l * r)
}

fn number(value: &Val) -> Option<f64> {
    match value {
        Val::Int(i) => Some(*i as f64),
        Val::Float(f) => Some(*f),
        Val::Num(n) => n.parse().ok(),
        _ => None,
    }
}

fn div<'a>(_: &'a Lut<Native<Val>>, cv: Cv<'a, Val>) -> ValXs<'a, Val> {
    let (l, r) = operands(cv);
    if matches!((&l, &r), (Val::Int(_), Val::Int(0))) {
        return fail(format!("cannot divide {l} by zero"));
    }
    checked(l / r)
}

fn rem<'a>(_: &'a Lut<Native<Val>>, cv: Cv<'a, Val>) -> ValXs<'a, Val> {
    let (l, r) = operands(cv);
    match (&l, &r) {
        (Val::Int(_), Val::Int(0)) => fail(format!("cannot divide {l} by zero")),
        // `isize::MIN % -1` overflows.
        (Val::Int(x), Val::Int(y)) => box_once(Ok(Val::Int(x.checked_rem(*y).unwrap_or(0)))),
        _ => checked(l % r),
    }
}

/// `fromjson` with serde_json's parser, whose nesting limit keeps a deep document from
/// exhausting the stack.
fn from_json<'a>(_: &'a Lut<Native<Val>>, (_, input): Cv<'a, Val>) -> ValXs<'a, Val> {
    let Val::Str(text) = &input else {
        return fail(format!("cannot parse {input} as JSON: not a string"));
    };
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => checked(Ok(Val::from(value))),
        Err(error) => fail(format!("cannot parse {input} as JSON: {error}")),
    }
}

fn describe_lex_errors<'e>(
    errors: impl Iterator<Item = (&'e load::lex::Expect<&'e str>, &'e str)>,
) -> String {
    let messages: Vec<String> = errors
        .map(|(expected, found)| {
            // `as_str` panics on delimiters other than the four it knows.
            let expected = match expected {
                load::lex::Expect::Delim(open) => format!("closing delimiter for `{open}`"),
                other => other.as_str().to_owned(),
            };
            format!("expected {expected} {}", location(found))
        })
        .collect();
    messages.join("; ")
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
            load::Error::Lex(errors) => messages.push(describe_lex_errors(
                errors.iter().map(|(expected, found)| (expected, *found)),
            )),
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
pub(super) fn error_message(error: Error<Val>) -> String {
    match error.into_val() {
        Val::Str(s) => Rc::unwrap_or_clone(s),
        other => other.to_string(),
    }
}
