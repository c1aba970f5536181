//! The evaluation meter: the step budget, the value depth bound and the recursion bound
//! of one render, charged by the natives that [`super::jq`] threads through every
//! template (see its docs for where they are inserted).
//!
//! The meter lives in a thread-local for the duration of one render, because jq's
//! native filters are plain function pointers and cannot carry state. Exhaustion is
//! sticky: once a limit is hit every later charge fails too, so `try … catch` in a
//! template cannot swallow the error and keep looping.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use jaq_json::Val;

use super::{Budget, Limit};

thread_local! {
    static METER: RefCell<Option<Meter>> = const { RefCell::new(None) };
}

/// Copying this much text costs about as much as one evaluation step.
const TEXT_BYTES_PER_STEP: u64 = 64;

/// What a charge found: nothing, or the limit that is now exceeded.
pub(super) type Charge = Result<(), Limit>;

struct Meter {
    budget: Budget,
    remaining: u64,
    /// The stack address where evaluation began (the stack grows down).
    stack_base: usize,
    exceeded: Option<Limit>,
    /// Weight and depth of arrays and objects already weighed, by allocation address.
    weighed: HashMap<usize, (u64, usize)>,
    /// Keeps every weighed allocation alive, so its address cannot be reused for another
    /// value while the render runs. Bounded by the budget: each was charged its weight.
    pinned: Vec<Val>,
}

/// Runs `f` with a fresh meter installed on this thread, and reports which limit (if
/// any) was exceeded while it ran. Nested calls share the outer meter.
pub(super) fn metered<T>(budget: &Budget, f: impl FnOnce() -> T) -> (T, Option<Limit>) {
    let installed = METER.with(|meter| {
        let mut meter = meter.borrow_mut();
        if meter.is_some() {
            return false;
        }
        *meter = Some(Meter {
            budget: budget.clone(),
            remaining: budget.steps,
            stack_base: stack_address(),
            exceeded: None,
            weighed: HashMap::new(),
            pinned: Vec::new(),
        });
        true
    });
    let out = f();
    let exceeded = METER.with(|meter| {
        let mut meter = meter.borrow_mut();
        if installed {
            meter.take().and_then(|m| m.exceeded)
        } else {
            meter.as_ref().and_then(|m| m.exceeded.clone())
        }
    });
    (out, exceeded)
}

/// The limit exceeded so far in this thread's render, if any.
pub(super) fn exceeded() -> Option<Limit> {
    METER.with(|meter| meter.borrow().as_ref().and_then(|m| m.exceeded.clone()))
}

/// Re-anchors the recursion bound at the current stack depth (each expression is
/// evaluated from about the same depth, so this only matters for the first).
pub(super) fn anchor_stack() {
    METER.with(|meter| {
        if let Some(meter) = meter.borrow_mut().as_mut() {
            meter.stack_base = meter.stack_base.max(stack_address());
        }
    });
}

/// One evaluation step: a definition called, a reduction step, a generated value.
pub(super) fn step() -> Charge {
    charge(1)
}

/// A value was constructed: charges its weight (its size counted through shared parts,
/// so `[., .]` nested twenty times costs a million) and bounds its nesting.
pub(super) fn grew(value: &Val) -> Charge {
    METER.with(|meter| {
        let mut meter = meter.borrow_mut();
        let Some(meter) = meter.as_mut() else {
            return Ok(());
        };
        if let Some(limit) = &meter.exceeded {
            return Err(limit.clone());
        }
        let (weight, depth) = meter.weigh(value);
        if depth > meter.budget.depth {
            return meter.exceed(Limit::Depth(meter.budget.depth));
        }
        meter.take(weight)
    })
}

/// One operation would build a value too large to be worth building: the render stops.
pub(super) fn refuse(limit: Limit) -> Charge {
    METER.with(|meter| match meter.borrow_mut().as_mut() {
        Some(meter) => meter.exceed(limit),
        None => Err(limit),
    })
}

fn charge(units: u64) -> Charge {
    METER.with(|meter| match meter.borrow_mut().as_mut() {
        Some(meter) => meter.take(units),
        None => Ok(()),
    })
}

/// The address of a local: how deep the stack is right now. Never dereferenced.
fn stack_address() -> usize {
    let marker = 0_u8;
    std::ptr::from_ref(std::hint::black_box(&marker)) as usize
}

impl Meter {
    fn exceed(&mut self, limit: Limit) -> Charge {
        self.exceeded = Some(limit.clone());
        Err(limit)
    }

    fn take(&mut self, units: u64) -> Charge {
        if let Some(limit) = &self.exceeded {
            return Err(limit.clone());
        }
        let used = self.stack_base.saturating_sub(stack_address());
        if used > self.budget.stack_bytes {
            return self.exceed(Limit::Recursion);
        }
        match self.remaining.checked_sub(units) {
            Some(left) => {
                self.remaining = left;
                Ok(())
            }
            None => {
                self.remaining = 0;
                self.exceed(Limit::Steps(self.budget.steps))
            }
        }
    }

    /// Weight (one unit per value or [`TEXT_BYTES_PER_STEP`] bytes of text) and depth of `value`,
    /// remembering arrays and objects so shared parts are counted in O(1) next time.
    /// Iterative, so a deep value cannot exhaust the stack here.
    fn weigh(&mut self, value: &Val) -> (u64, usize) {
        enum Visit<'v> {
            Enter(&'v Val),
            Exit(&'v Val),
        }
        let mut results: Vec<(u64, usize)> = Vec::new();
        let mut work = vec![Visit::Enter(value)];
        while let Some(visit) = work.pop() {
            match visit {
                Visit::Enter(v) => match (address(v), v) {
                    (Some(addr), _) if self.weighed.contains_key(&addr) => {
                        results.push(self.weighed[&addr]);
                    }
                    (Some(_), Val::Arr(items)) => {
                        work.push(Visit::Exit(v));
                        work.extend(items.iter().map(Visit::Enter));
                        results.push((0, 0)); // a marker for where this value's parts begin
                    }
                    (Some(_), Val::Obj(map)) => {
                        work.push(Visit::Exit(v));
                        work.extend(map.values().map(Visit::Enter));
                        results.push((0, 0));
                    }
                    (_, Val::Str(s)) => results.push((1 + s.len() as u64 / TEXT_BYTES_PER_STEP, 0)),
                    _ => results.push((1, 0)),
                },
                Visit::Exit(v) => {
                    let parts = match v {
                        Val::Arr(items) => items.len(),
                        Val::Obj(map) => map.len(),
                        _ => 0,
                    };
                    let start = results.len() - parts - 1;
                    let mut weight = 1 + match v {
                        // Keys are text too.
                        Val::Obj(map) => map
                            .keys()
                            .map(|k| k.len() as u64 / TEXT_BYTES_PER_STEP)
                            .sum(),
                        _ => 0,
                    };
                    let mut depth = 0;
                    for (w, d) in results.drain(start + 1..) {
                        weight = weight.saturating_add(w);
                        depth = depth.max(d);
                    }
                    results.pop();
                    let entry = (weight, depth + 1);
                    if let Some(addr) = address(v) {
                        self.weighed.insert(addr, entry);
                        self.pinned.push(v.clone());
                    }
                    results.push(entry);
                }
            }
        }
        results.pop().unwrap_or((1, 0))
    }
}

/// The allocation an array or object lives in.
fn address(value: &Val) -> Option<usize> {
    match value {
        Val::Arr(items) => Some(Rc::as_ptr(items).cast::<u8>() as usize),
        Val::Obj(map) => Some(Rc::as_ptr(map).cast::<u8>() as usize),
        _ => None,
    }
}
