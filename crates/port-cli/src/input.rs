//! What commands read: `--prop KEY=VALUE` pairs, JSON or YAML files, and secret values.

use std::io::{IsTerminal as _, Read};
use std::path::Path;

use serde::Deserialize as _;
use serde_json::{Map, Value};

use crate::error::CliError;

/// Parses `KEY=VALUE`. The value is JSON when it parses as JSON (`3`, `true`, `null`,
/// `["a","b"]`, `{"k":1}`, `"quoted"`), and the plain string otherwise (`eu-west-1`,
/// `hello world`, or nothing at all: `KEY=` is the empty string).
pub fn parse_prop(text: &str) -> Result<(String, Value), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("empty key in {text:?}"));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((key.to_owned(), value))
}

/// `--prop` pairs as an object; a later pair wins over an earlier one with its key.
pub fn props_object(pairs: &[(String, Value)]) -> Map<String, Value> {
    pairs.iter().cloned().collect()
}

fn invalid(path: &Path, message: impl std::fmt::Display) -> CliError {
    CliError::usage("invalid_file", format!("{}: {message}", path.display()))
}

/// Reads a file (`-` is stdin) of JSON or YAML documents. Each document is one object
/// or an array of them; the objects of every document are returned in order.
pub fn read_objects(path: &Path) -> Result<Vec<Map<String, Value>>, CliError> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| invalid(path, e))?;
        text
    } else {
        std::fs::read_to_string(path).map_err(|e| invalid(path, e))?
    };
    let documents = parse_documents(&text).map_err(|e| invalid(path, e))?;
    let mut objects = Vec::new();
    for document in documents {
        match document {
            Value::Object(object) => objects.push(object),
            Value::Array(items) => {
                for (index, item) in items.into_iter().enumerate() {
                    match item {
                        Value::Object(object) => objects.push(object),
                        other => {
                            return Err(invalid(
                                path,
                                format!("item {index} is {}, not an object", kind(&other)),
                            ));
                        }
                    }
                }
            }
            Value::Null => {}
            other => {
                return Err(invalid(
                    path,
                    format!("expected an object or an array, got {}", kind(&other)),
                ));
            }
        }
    }
    if objects.is_empty() {
        return Err(invalid(path, "no objects in the file"));
    }
    Ok(objects)
}

/// Reads a file holding exactly one JSON or YAML object.
pub fn read_object(path: &Path) -> Result<Map<String, Value>, CliError> {
    let mut objects = read_objects(path)?;
    if objects.len() != 1 {
        return Err(invalid(
            path,
            format!("expected one object, found {}", objects.len()),
        ));
    }
    Ok(objects.remove(0))
}

/// JSON first (one document), else YAML (any number of `---`-separated documents).
pub fn parse_documents(text: &str) -> Result<Vec<Value>, String> {
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return Ok(vec![value]);
    }
    let mut documents = Vec::new();
    for document in serde_norway::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| e.to_string())?;
        documents.push(value);
    }
    Ok(documents)
}

/// The most bytes read for a secret value: portd keeps 65 536 characters (at most 4
/// bytes each in UTF-8) and the trailing newline is dropped. Bounded so that
/// `port secrets set X < /dev/zero` fails instead of filling memory.
pub const MAX_SECRET_VALUE_BYTES: usize = 64 * 1024 * 4 + 2;

fn invalid_value(source: &str, message: impl std::fmt::Display) -> CliError {
    CliError::usage("invalid_value", format!("{source}: {message}"))
}

/// Reads a secret value from `file`, or from stdin when it is `None` or `-`. Refuses a
/// terminal: what is typed there is echoed on the screen.
pub fn read_secret_value(file: Option<&Path>) -> Result<String, CliError> {
    let (source, reader): (String, Box<dyn Read>) = match file {
        Some(path) if path != Path::new("-") => {
            let file = std::fs::File::open(path)
                .map_err(|e| invalid_value(&path.display().to_string(), e))?;
            (path.display().to_string(), Box::new(file))
        }
        _ => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(CliError::usage(
                    "missing_value",
                    "the value is read from stdin, which is a terminal that would show it: \
                     pipe it in (printf %s \"$VALUE\" | port secrets set NAME) or give \
                     --value-file PATH",
                ));
            }
            ("stdin".to_owned(), Box::new(stdin))
        }
    };
    let mut bytes = Vec::new();
    reader
        .take(MAX_SECRET_VALUE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| invalid_value(&source, e))?;
    secret_value(bytes).map_err(|message| invalid_value(&source, message))
}

/// The value read: one trailing newline (`\n` or `\r\n`) dropped, so that
/// `echo "$VALUE" |` works. The messages never quote the value.
pub fn secret_value(mut bytes: Vec<u8>) -> Result<String, String> {
    if bytes.len() > MAX_SECRET_VALUE_BYTES {
        return Err(format!(
            "the value is longer than the {MAX_SECRET_VALUE_BYTES} bytes read at most"
        ));
    }
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err("the value is empty (nothing was piped in?)".to_owned());
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "the value is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn prop_values_are_json_when_they_parse_as_json() {
        let cases = [
            ("replicas=3", json!(3)),
            ("ratio=0.5", json!(0.5)),
            ("enabled=true", json!(true)),
            ("nothing=null", json!(null)),
            ("tags=[\"a\",\"b\"]", json!(["a", "b"])),
            ("limits={\"cpu\":2}", json!({ "cpu": 2 })),
            ("version=\"1.0\"", json!("1.0")),
            ("quoted=\"42\"", json!("42")),
        ];
        for (text, expected) in cases {
            let (_, value) = parse_prop(text).unwrap();
            assert_eq!(value, expected, "{text}");
        }
    }

    #[test]
    fn other_prop_values_are_plain_strings() {
        let cases = [
            ("region=eu-west-1", "eu-west-1"),
            ("name=my service", "my service"),
            ("empty=", ""),
            ("version=1.0.0", "1.0.0"),
            ("bad=[1,", "[1,"),
            ("yes=True", "True"),
            ("url=https://x.example/a=b", "https://x.example/a=b"),
        ];
        for (text, expected) in cases {
            let (_, value) = parse_prop(text).unwrap();
            assert_eq!(value, json!(expected), "{text}");
        }
    }

    #[test]
    fn the_key_is_everything_before_the_first_equals_sign() {
        assert_eq!(
            parse_prop(" env =prod").unwrap(),
            ("env".to_owned(), json!("prod"))
        );
        assert_eq!(parse_prop("a=b=c").unwrap(), ("a".to_owned(), json!("b=c")));
        assert!(parse_prop("no-equals").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_prop("=value").unwrap_err().contains("empty key"));
    }

    #[test]
    fn later_props_win() {
        let pairs = [
            parse_prop("a=1").unwrap(),
            parse_prop("b=x").unwrap(),
            parse_prop("a=2").unwrap(),
        ];
        assert_eq!(
            Value::Object(props_object(&pairs)),
            json!({ "a": 2, "b": "x" })
        );
    }

    #[test]
    fn files_may_be_json_or_yaml_with_one_or_many_objects() {
        assert_eq!(
            parse_documents(r#"[{"identifier":"a"},{"identifier":"b"}]"#).unwrap(),
            [json!([{ "identifier": "a" }, { "identifier": "b" }])]
        );
        let yaml = "identifier: a\ntrigger: CREATE\n---\n- identifier: b\n  n: 2\n";
        assert_eq!(
            parse_documents(yaml).unwrap(),
            [
                json!({ "identifier": "a", "trigger": "CREATE" }),
                json!([{ "identifier": "b", "n": 2 }])
            ]
        );
        assert!(parse_documents("a: [1").is_err());
    }

    #[test]
    fn secret_values_lose_one_trailing_newline() {
        let value = |bytes: &[u8]| secret_value(bytes.to_vec());
        assert_eq!(value(b"tok-1\n"), Ok("tok-1".to_owned()));
        assert_eq!(value(b"tok-1\r\n"), Ok("tok-1".to_owned()));
        assert_eq!(value(b"tok-1"), Ok("tok-1".to_owned()));
        assert_eq!(
            value(b"line 1\nline 2\n\n"),
            Ok("line 1\nline 2\n".to_owned())
        );
        assert_eq!(value(b" spaced \n"), Ok(" spaced ".to_owned()));
        assert!(value(b"").is_err());
        assert!(value(b"\n").is_err());
        let not_utf8 = value(b"tok-\xff-secret").unwrap_err();
        assert!(!not_utf8.contains("tok-"), "{not_utf8}");
        assert!(value(&vec![b'x'; MAX_SECRET_VALUE_BYTES + 1]).is_err());
        assert!(value(&vec![b'x'; MAX_SECRET_VALUE_BYTES]).is_ok());
    }

    #[test]
    fn secret_values_come_from_files_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("value");
        std::fs::write(&path, "from-a-file\n").unwrap();
        assert_eq!(read_secret_value(Some(&path)).unwrap(), "from-a-file");
        let missing = read_secret_value(Some(&dir.path().join("nope"))).unwrap_err();
        assert_eq!(
            (missing.code, missing.identifier.as_str()),
            (2, "invalid_value")
        );
    }

    #[test]
    fn read_objects_flattens_documents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("actions.yaml");
        std::fs::write(
            &path,
            "- identifier: a\n- identifier: b\n---\nidentifier: c\n",
        )
        .unwrap();
        let ids: Vec<_> = read_objects(&path)
            .unwrap()
            .into_iter()
            .map(|o| o["identifier"].clone())
            .collect();
        assert_eq!(ids, [json!("a"), json!("b"), json!("c")]);
        std::fs::write(&path, "[1, 2]").unwrap();
        let err = read_objects(&path).unwrap_err();
        assert_eq!(err.identifier, "invalid_file");
        assert!(err.message.contains("item 0 is a number"));
        assert_eq!(
            read_object(&dir.path().join("missing.json"))
                .unwrap_err()
                .identifier,
            "invalid_file"
        );
    }
}
