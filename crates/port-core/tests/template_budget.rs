//! Templates are tenant input: whatever they ask for, rendering ends with a value or a
//! named limit, in bounded steps, depth, stack and output (issue 14). Each case here
//! crashed, hung or exhausted memory before the budget existed.

use port_core::template::{self, Budget, Limit, SourceLimits, TemplateError};
use serde_json::{Value, json};

fn context() -> Value {
    json!({
        "inputs": { "name": "svc", "tags": ["a", "b"], "n": 3 },
        "run": { "id": "r_1" },
        "secrets": { "token": "s3cr3t-value" }
    })
}

/// Renders one expression with a tenth of the default step budget, so the cases that
/// exhaust it stay quick in debug builds (the default budget's own test is below).
fn render(expression: &str) -> Result<Value, TemplateError> {
    let budget = Budget {
        steps: Budget::DEFAULT_STEPS / 10,
        ..Budget::default()
    };
    template::render_within(
        &json!(format!("{{{{ {expression} }}}}")),
        &context(),
        &budget,
    )
}

/// The limit a render stopped at, failing the test with what happened otherwise.
fn limit_of(expression: &str) -> Limit {
    match render(expression) {
        Err(TemplateError::Limit { limit, .. }) => limit,
        other => panic!("`{expression}` should hit a limit, got {other:?}"),
    }
}

#[test]
fn recursion_and_loops_end_at_a_limit() {
    // Each of these ran forever or overflowed the stack of the thread that rendered it.
    let cases = [
        "def f: [f]; f",
        "def f: 1 + f; f",
        "def f: f; f",
        "def f: try f catch f; f",
        "try (def f: f; f) catch (def g: g; g)",
        "[repeat(1)]",
        "[limit(1000000000; repeat(1))]",
        "until(false; .)",
        "[while(true; .)]",
        "0 | [recurse(. + 1)]",
        "[range(1e9)] | length",
        "[range(2000000)]",
        "last(range(1e9))",
        "[range(0; 10; 0)]",
        "[.[]?, range(1e9) | tostring]",
        "reduce range(1e9) as $i (0; . + 1)",
        "[foreach range(1e9) as $i (0; . + 1)]",
        "[paths] | until(false; .)",
        "def f(g): g | f(g); f(.)",
        "[label $out | repeat(1)]",
    ];
    for expression in cases {
        let limit = limit_of(expression);
        assert!(
            matches!(limit, Limit::Steps(_) | Limit::Recursion | Limit::Depth(_)),
            "`{expression}`: {limit:?}"
        );
    }
}

#[test]
fn growth_ends_at_a_limit_before_the_memory_is_used() {
    let cases = [
        // Doubling: a few steps, an exponential value.
        r#"reduce range(64) as $i ("x"; . + .)"#,
        "reduce range(64) as $i ([1]; . + .)",
        "reduce range(64) as $i ({}; {a: ., b: .})",
        // Shared parts: cheap to build, exponential to print.
        "reduce range(64) as $i (1; [., .]) | tojson",
        "reduce range(64) as $i (1; [., .]) | [..] | length",
        r#""x" * 1e9"#,
        r#"1e9 * "x""#,
        r#"reduce range(40) as $i ("ab"; . * 2)"#,
        r#". as $x | reduce range(40) as $i ($x; .inputs.tags += .inputs.tags)"#,
        r#"[range(100) | "\(.)" * 1000000]"#,
    ];
    for expression in cases {
        let limit = limit_of(expression);
        assert!(
            matches!(
                limit,
                Limit::Steps(_) | Limit::ValueSize(_) | Limit::Output(_)
            ),
            "`{expression}`: {limit:?}"
        );
    }
}

#[test]
fn deep_values_end_at_the_depth_limit() {
    for expression in [
        "reduce range(100000) as $i (null; [.])",
        "reduce range(100000) as $i (null; {a: .})",
    ] {
        let budget = Budget::default();
        assert_eq!(
            limit_of(expression),
            Limit::Depth(budget.depth),
            "{expression}"
        );
    }
    // A document nested too deeply to parse is an ordinary error, not a crash.
    let nested = render(r#""[" * 100000 | fromjson"#).unwrap_err();
    assert!(
        matches!(nested, TemplateError::Evaluate { ref message, .. } if message.contains("recursion limit")),
        "{nested:?}"
    );
}

#[test]
fn output_is_capped() {
    assert_eq!(
        limit_of("[range(40000)]"),
        Limit::Output(Budget::DEFAULT_OUTPUT_BYTES)
    );
    assert_eq!(
        limit_of(r#""0123456789" * 30000"#),
        Limit::Output(Budget::DEFAULT_OUTPUT_BYTES)
    );
    // The cap is on the whole template, not each expression.
    let many = json!({
        "a": "{{ [range(20000)] }}",
        "b": "{{ [range(20000)] }}",
        "c": "{{ [range(20000)] }}",
    });
    let error = template::render(&many, &context()).unwrap_err();
    assert_eq!(
        error.limit(),
        Some(&Limit::Output(Budget::DEFAULT_OUTPUT_BYTES))
    );
    // Rendered values deeper than the store can read back are refused.
    let deep = "reduce range(150) as $i (1; [.])";
    assert_eq!(limit_of(deep), Limit::Depth(Budget::MAX_OUTPUT_DEPTH));
}

#[test]
fn arithmetic_never_panics() {
    assert_eq!(
        render("9223372036854775807 + 1").unwrap(),
        json!(9.223372036854776e18)
    );
    assert_eq!(
        render("-9223372036854775807 - 10").unwrap(),
        json!(-9.223372036854776e18)
    );
    assert_eq!(
        render("9223372036854775807 * 3").unwrap(),
        json!(2.7670116110564327e19)
    );
    assert!(render("1 % 0").is_err());
    assert!(render("1 / 0").is_err() || render("1 / 0").is_ok());
    assert_eq!(
        render("-9223372036854775807 - 1 | . % -1").unwrap(),
        json!(0)
    );
}

#[test]
fn the_meter_cannot_be_switched_off() {
    for expression in [
        "def __port_step: .; def f: f; f",
        "__port_range(0; 10; 1)",
        "$__port_rhs",
    ] {
        let error = render(expression).unwrap_err();
        assert!(
            matches!(&error, TemplateError::Parse { message, .. } if message.contains("reserved")),
            "`{expression}`: {error:?}"
        );
    }
}

#[test]
fn ordinary_templates_fit_the_budget_easily() {
    let context = json!({
        "inputs": { "items": (0..2000).map(|i| json!({"name": format!("item-{i}"), "n": i})).collect::<Vec<_>>() }
    });
    let template = json!({
        "names": "{{ .inputs.items | map(.name) | join(\",\") | length }}",
        "sum": "{{ [.inputs.items[].n] | add }}",
        "big": "{{ .inputs.items | map(select(.n % 2 == 0)) | length }}",
        "sorted": "{{ .inputs.items | sort_by(-.n) | .[0].name }}",
        "grouped": "{{ .inputs.items | group_by(.n % 10) | map(length) }}",
        "paths": "{{ [paths] | length }}",
        "walk": "{{ .inputs.items[:3] | walk(if type == \"number\" then . + 1 else . end) }}",
        "update": "{{ .inputs.items[:2] | map(.n += 1) }}",
        "interpolated": "{{ \"\\(.inputs.items[0].name)-\\(.inputs.items | length)\" }}",
        "range": "{{ [range(1000)] | add }}",
        "reduce": "{{ reduce range(10000) as $i (0; . + $i) }}",
        "until": "{{ 1 | until(. > 100000; . * 2) }}",
        "strings": "{{ \"ab\" * 1000 | length }}"
    });
    let rendered = template::render(&template, &context).unwrap();
    assert_eq!(rendered["sum"], json!(1999 * 2000 / 2));
    assert_eq!(rendered["big"], json!(1000));
    assert_eq!(rendered["sorted"], json!("item-1999"));
    assert_eq!(rendered["range"], json!(499_500));
    assert_eq!(rendered["reduce"], json!(49_995_000));
    assert_eq!(rendered["until"], json!(131_072));
    assert_eq!(rendered["strings"], json!(2000));
    assert_eq!(rendered["interpolated"], json!("item-0-2000"));
    assert_eq!(
        rendered["update"],
        json!([{"name": "item-0", "n": 1}, {"name": "item-1", "n": 2}])
    );
}

#[test]
fn the_default_budget_stops_a_loop() {
    let error = template::render(&json!("{{ def f: f; f }}"), &context()).unwrap_err();
    assert_eq!(error.limit(), Some(&Limit::Steps(Budget::DEFAULT_STEPS)));
}

#[test]
fn a_smaller_budget_is_respected_exactly() {
    let budget = Budget {
        steps: 1000,
        ..Budget::default()
    };
    let error =
        template::render_within(&json!("{{ [range(5000)] }}"), &context(), &budget).unwrap_err();
    assert_eq!(error.limit(), Some(&Limit::Steps(1000)));
    assert_eq!(
        error.to_string(),
        "template expression `[range(5000)]` exceeded its budget of 1000 evaluation steps"
    );
    assert!(template::render_within(&json!("{{ [range(100)] }}"), &context(), &budget).is_ok());
}

#[test]
fn source_limits_are_checked_before_parsing() {
    let limits = SourceLimits::default();
    let deep = format!("{{{{ {}1{} }}}}", "(".repeat(20_000), ")".repeat(20_000));
    let error = template::check(&json!({ "x": deep }), &limits).unwrap_err();
    assert_eq!(error.limit(), Some(&Limit::Nesting(limits.nesting)));
    // Rendering checks too, so an action stored before the limits existed is safe.
    let error = template::render(&json!(deep), &context()).unwrap_err();
    assert_eq!(error.limit(), Some(&Limit::Nesting(limits.nesting)));

    for (what, code) in [
        (
            "if",
            "if . then ".repeat(100) + "1" + &" else 2 end".repeat(100),
        ),
        ("unary minus", "-".repeat(1000) + "1"),
        ("arrays", "[".repeat(100) + &"]".repeat(100)),
        (
            "interpolation",
            "\"\\(".repeat(100) + "1" + &")\"".repeat(100),
        ),
        (
            "reduce",
            "reduce . as $x (".repeat(50) + "." + &")".repeat(50),
        ),
    ] {
        let error = template::check(&json!(format!("{{{{ {code} }}}}")), &limits).unwrap_err();
        assert_eq!(
            error.limit(),
            Some(&Limit::Nesting(limits.nesting)),
            "{what}"
        );
    }
    let long = format!("{{{{ {} }}}}", ".a | ".repeat(1000) + ".");
    let error = template::check(&json!(long), &limits).unwrap_err();
    assert_eq!(
        error.limit(),
        Some(&Limit::ExpressionSize(limits.expression_bytes))
    );

    let many: serde_json::Map<String, Value> = (0..300)
        .map(|i| (format!("k{i}"), json!(format!("{{{{ {i} }}}}"))))
        .collect();
    let error = template::check(&Value::Object(many), &limits).unwrap_err();
    assert_eq!(error.limit(), Some(&Limit::Expressions(limits.expressions)));

    // Ordinary templates pass: dashes in strings, binary minus, several blocks.
    for ok in [
        r#"{{ .inputs.name | split("----------------------------------------") }}"#,
        "{{ .a - .b - .c - .d - .e - .f - .g - .h - .i - .j - .k - .l - .m - .n - .o - .p - .q - .r - .s - .t - .u - .v - .w - .x - .y - .z - .a - .b - .c - .d - .e - .f - .g }}",
        "{{ if .a then 1 elif .b then 2 else 3 end | if . then . end }}",
        r#"{{ "\(.a)-\(.b)-\("x\("y")")" }}"#,
    ] {
        template::check(&json!(ok), &limits).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}
