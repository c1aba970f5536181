//! The checks of portd's fuzz targets, one function per target. Each takes the raw
//! fuzzer input, feeds it to a port-core parser, and panics only when a property
//! fails: a parser must never panic, whatever the input. The same functions run over
//! the committed corpus in `crates/port-chaos/tests/fuzz_corpus.rs` on stable.

use port_core::action::ActionDefinition;
use port_core::id::BlueprintIdentifier;
use port_core::signature::{self, SignatureError};
use port_core::template::{self, TemplateError};
use serde_json::{Value, json};

/// The longest input tried.
pub const MAX_INPUT: usize = 4096;

/// The template target's budget: every looping and value-growing builtin is in play
/// (`repeat`, `range`, `recurse`, `until`, `while`, `limit`, `def`, `*`, `getpath`,
/// `paths`, `walk`, …), so each input must end at a value or a named limit; a small
/// step budget keeps each input quick.
fn budget() -> template::Budget {
    template::Budget {
        steps: 20_000,
        ..template::Budget::default()
    }
}

/// A secret the template context carries; it must never show in an error message.
pub const SECRET: &str = "fuzz-secret-Zq3vX9";

fn context() -> Value {
    json!({
        "inputs": { "name": "svc", "count": 2, "flag": true, "tags": ["a", "b"] },
        "trigger": { "by": { "user": { "email": "dev@example.com" } }, "operation": "CREATE" },
        "event": null,
        "entity": { "identifier": "svc", "properties": { "region": "eu" } },
        "action": { "identifier": "deploy", "encryptedProperties": [] },
        "run": { "id": "r_fuzz" },
        "secrets": { "token": SECRET },
    })
}

fn check_template_error(error: &TemplateError) {
    let shown = error.to_string();
    assert!(
        !shown.contains(SECRET),
        "a template error shows a secret value: {shown}"
    );
}

/// `port_core::template`: the input as a JSON template, as a template string, and as
/// a jq expression inside `{{ }}`. Rendering never panics, yields JSON that
/// serializes, leaves strings without `{{` unchanged, and never puts a secret value
/// in an error message.
pub fn template(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let context = context();
    let mut results = Vec::new();
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        results.push(template::render_within(&value, &context, &budget()));
    }
    let plain = template::render_within(&Value::String(text.to_owned()), &context, &budget());
    if !text.contains("{{") {
        assert_eq!(
            plain.as_ref().ok(),
            Some(&Value::String(text.to_owned())),
            "a string without templates must render as itself"
        );
    }
    results.push(plain);
    results.push(template::render_within(
        &Value::String(format!("{{{{ {text} }}}}")),
        &context,
        &budget(),
    ));
    for result in results {
        match result {
            Ok(value) => {
                serde_json::to_string(&value).expect("a rendered value serializes");
            }
            Err(error) => check_template_error(&error),
        }
    }
}

/// `ActionDefinition::from_v2` / `from_v1`: never panic, and what parses survives a
/// round trip through the shape it came in (and v1 through v2) unchanged.
pub fn action(data: &[u8]) {
    if data.len() > MAX_INPUT * 4 {
        return;
    }
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(definition) = ActionDefinition::from_v2(&value) {
        let written = Value::Object(definition.to_v2());
        let again = ActionDefinition::from_v2(&written)
            .unwrap_or_else(|e| panic!("the v2 form of an action does not parse: {e}\n{written}"));
        assert_eq!(
            again.to_v2(),
            definition.to_v2(),
            "v2 round trip changed the action"
        );
    }
    let blueprint = BlueprintIdentifier::parse("microservice").expect("a valid identifier");
    if let Ok(definition) = ActionDefinition::from_v1(&value, &blueprint) {
        let v1 = Value::Object(
            definition
                .to_v1()
                .expect("an action parsed from v1 has a v1 form"),
        );
        let again = ActionDefinition::from_v1(&v1, &blueprint)
            .unwrap_or_else(|e| panic!("the v1 form of an action does not parse: {e}\n{v1}"));
        assert_eq!(
            again.to_v1(),
            definition.to_v1(),
            "v1 round trip changed the action"
        );
        let v2 = Value::Object(definition.to_v2());
        ActionDefinition::from_v2(&v2)
            .unwrap_or_else(|e| panic!("the v2 form of a v1 action does not parse: {e}\n{v2}"));
    }
}

/// The clock of the signature target.
const NOW: i64 = 1_700_000_000;

/// `port_core::signature::verify`. Input: one byte giving the secret's length (mod
/// 64), the secret, then `<signature header>\n<timestamp header>\n<body>`. Verifying
/// never panics; a fresh signature of the body verifies, also after the fuzzed
/// header's entries (one match is enough), and not for another body.
pub fn signature(data: &[u8]) {
    let Some((&length, rest)) = data.split_first() else {
        return;
    };
    let length = usize::from(length % 64).min(rest.len());
    let (secret, rest) = rest.split_at(length);
    let mut parts = rest.splitn(3, |b| *b == b'\n');
    let header = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let timestamp = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default();

    let _ = signature::verify(
        secret,
        &header,
        &timestamp,
        body,
        NOW,
        signature::DEFAULT_TOLERANCE_SECS,
    );

    let valid = signature::sign(secret, NOW, body);
    let now = NOW.to_string();
    let tolerance = signature::DEFAULT_TOLERANCE_SECS;
    assert_eq!(
        signature::verify(secret, &valid, &now, body, NOW, tolerance),
        Ok(())
    );
    let both = format!("{header} {valid}");
    assert_eq!(
        signature::verify(secret, &both, &now, body, NOW, tolerance),
        Ok(()),
        "one matching entry is enough: {both:?}"
    );
    let mut other = body.to_vec();
    other.push(b'!');
    assert_eq!(
        signature::verify(secret, &valid, &now, &other, NOW, tolerance),
        Err(SignatureError::NoMatchingSignature),
        "a signature must not verify another body"
    );
}
