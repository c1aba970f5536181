//! `port secrets` against a real portd: values go in from stdin or a file, never from
//! the command line, and never come out.

use port_client::ExecuteRequest;
use serde_json::{Value, json};

use crate::support::{Env, Output};

const FIRST: &str = "tok-Zx8Cv3Bn6Mq1Wf4Jh7Kd0Lp5Rs2Gt9Ya";
const SECOND: &str = "tok-second-Qw2Er4Ty6Ui8Op0As";
const THIRD: &str = "-----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----";

/// Asserts that nothing `port` printed holds a value.
fn assert_clean(output: &Output) {
    for value in [FIRST, SECOND, THIRD, "MIIEvQIBADANBg"] {
        assert!(
            !output.stdout.contains(value) && !output.stderr.contains(value),
            "port printed a secret value: {output:?}"
        );
    }
}

/// An action whose invocation reads `.secrets.API_TOKEN`, claimed by pull-mode runners.
async fn reading_action(env: &Env) {
    env.client
        .create_action(&json!({
            "identifier": "reads_token",
            "title": "Reads the token",
            "trigger": { "type": "self-service", "operation": "CREATE", "userInputs": { "properties": {} } },
            "invocationMethod": {
                "type": "WEBHOOK",
                "agent": true,
                "url": "http://backend.internal/hook",
                "body": { "token": "{{ .secrets.API_TOKEN }}" }
            }
        }))
        .await
        .unwrap();
}

/// The value API_TOKEN holds: what a runner claiming a run of `reads_token` gets (the
/// API never answers a value otherwise).
async fn value_sent(env: &Env) -> String {
    let run = env
        .client
        .execute("reads_token", &ExecuteRequest::new())
        .await
        .unwrap();
    let claimed = env
        .client
        .claim_pending(10, 60_000, Some("_PORT_EXEC_AGENT"))
        .await
        .unwrap();
    let claimed = claimed
        .iter()
        .find(|r| r.id == run.id)
        .unwrap_or_else(|| panic!("run {} was not claimed: {claimed:?}", run.id));
    env.client.ack(&[&run.id]).await.unwrap();
    claimed.payload.as_ref().unwrap()["body"]["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Snapshot settings hiding the dates (as the other output snapshots do).
fn filters() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(
        r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
        "[TIMESTAMP]",
    );
    settings.add_filter(
        r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}",
        "YYYY-MM-DD hh:mm:ss",
    );
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_set_from_stdin_updated_listed_and_deleted() {
    let env = Env::start().await;
    reading_action(&env).await;

    // `echo "$VALUE" |`: the newline echo adds is not part of the value.
    let created = env
        .port_with_stdin(
            &["secrets", "set", "API_TOKEN", "--description", "CI deploys"],
            format!("{FIRST}\n").as_bytes(),
        )
        .await;
    assert_eq!(
        (created.code, created.stdout.as_str()),
        (0, "secret API_TOKEN created\n"),
        "{created:?}"
    );
    assert_clean(&created);
    assert_eq!(value_sent(&env).await, FIRST);

    // Again: the value is replaced, the description kept.
    let updated = env
        .port_with_stdin(&["secrets", "set", "API_TOKEN"], SECOND.as_bytes())
        .await;
    assert_eq!(
        (updated.code, updated.stdout.as_str()),
        (0, "secret API_TOKEN updated\n"),
        "{updated:?}"
    );
    assert_clean(&updated);
    assert_eq!(value_sent(&env).await, SECOND);
    let kept = env.client.get_secret("API_TOKEN").await.unwrap();
    assert_eq!(kept.description.as_deref(), Some("CI deploys"));

    // From a file, several lines (one trailing newline dropped), with JSON output.
    let file = env.file("key.pem", &format!("{THIRD}\n"));
    let from_file = env
        .port_with_stdin(
            &[
                "secrets",
                "set",
                "API_TOKEN",
                "--value-file",
                &file,
                "--description",
                "signing key",
                "-o",
                "json",
            ],
            b"ignored: the file is read",
        )
        .await;
    assert_eq!(from_file.code, 0, "{from_file:?}");
    assert_clean(&from_file);
    let shown: Value = serde_json::from_str(&from_file.stdout).unwrap();
    assert_eq!(shown["secretName"], "API_TOKEN");
    assert_eq!(shown["description"], "signing key");
    assert_eq!(value_sent(&env).await, THIRD);

    // A second secret, without a description.
    let other = env
        .port_with_stdin(&["secrets", "set", "OTHER-1"], b"other-value\n")
        .await;
    assert_eq!(other.code, 0, "{other:?}");

    let settings = filters();
    for (name, args) in [
        ("secrets_list_table", vec!["secrets", "list"]),
        ("secrets_list_json", vec!["secrets", "list", "-o", "json"]),
    ] {
        let listed = env.port(&args).await;
        assert_eq!(listed.code, 0, "{listed:?}");
        assert_clean(&listed);
        settings.bind(|| insta::assert_snapshot!(name, listed.stdout));
    }
    // `-o json` is the API's answer as it is.
    let listed: Value =
        serde_json::from_str(&env.ok(&["secrets", "list", "-o", "json"]).await).unwrap();
    let api = env
        .client
        .request_json(port_client::Method::GET, "organization/secrets", &[], None)
        .await
        .unwrap();
    assert_eq!(listed, api["secrets"]);

    assert_eq!(
        env.ok(&["secrets", "delete", "API_TOKEN"]).await,
        "secret API_TOKEN deleted\n"
    );
    let names: Vec<String> = env
        .client
        .list_secrets()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.secret_name)
        .collect();
    assert_eq!(names, ["OTHER-1"]);
    let again = env.port(&["secrets", "delete", "API_TOKEN"]).await;
    assert_eq!(again.code, 3, "{again:?}");
    assert!(again.stderr.starts_with("error: not_found: "), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_on_the_command_line_is_refused_without_being_echoed() {
    let env = Env::start().await;
    for args in [
        vec!["secrets", "set", "API_TOKEN", FIRST],
        vec!["secrets", "set", "API_TOKEN", FIRST, "--description", "CI"],
        vec!["secrets", "set", "API_TOKEN", "--value", FIRST],
        vec!["secrets", "set", "API_TOKEN", &format!("--value={FIRST}")],
        vec!["secrets", "set", "API_TOKEN", "-x", FIRST],
    ] {
        // Refused even with a value on stdin: the argument is a mistake to point out.
        let refused = env.port_with_stdin(&args, SECOND.as_bytes()).await;
        assert_eq!(refused.code, 2, "{args:?}: {refused:?}");
        assert!(
            refused.stderr.starts_with(
                "error: value_in_arguments: secret values are not taken from the command line"
            ),
            "{refused:?}"
        );
        assert!(refused.stderr.contains("--value-file"), "{refused:?}");
        assert!(refused.stdout.is_empty(), "{refused:?}");
        assert_clean(&refused);
    }
    // Nothing on stdin (here /dev/null) is not an empty secret.
    let empty = env.port(&["secrets", "set", "API_TOKEN"]).await;
    assert_eq!(empty.code, 2, "{empty:?}");
    assert!(
        empty
            .stderr
            .starts_with("error: invalid_value: stdin: the value is empty"),
        "{empty:?}"
    );
    let newline_only = env
        .port_with_stdin(&["secrets", "set", "API_TOKEN"], b"\n")
        .await;
    assert_eq!(newline_only.code, 2, "{newline_only:?}");
    assert!(env.client.list_secrets().await.unwrap().is_empty());

    // A name portd refuses is the server's 422, without the value.
    let bad_name = env
        .port_with_stdin(&["secrets", "set", "a.b"], FIRST.as_bytes())
        .await;
    assert_eq!(bad_name.code, 3, "{bad_name:?}");
    assert!(
        bad_name.stderr.starts_with("error: invalid_request: "),
        "{bad_name:?}"
    );
    assert_clean(&bad_name);
}
