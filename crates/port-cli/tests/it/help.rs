//! `--help` of the top level and of each command group, as snapshots.

use crate::support::run_in;

async fn help(args: &[&str]) -> String {
    let home = tempfile::tempdir().unwrap();
    let mut all = args.to_vec();
    all.push("--help");
    let output = run_in(home.path(), &all).await;
    assert_eq!(output.code, 0, "{output:?}");
    assert!(output.stderr.is_empty(), "{output:?}");
    output.stdout
}

#[tokio::test]
async fn top_level_help_lists_the_commands_and_the_exit_codes() {
    let text = help(&[]).await;
    for code in [
        "0  Success",
        "1  The run",
        "2  Usage",
        "3  API error",
        "4  Authentication",
    ] {
        assert!(text.contains(code), "{code} missing from:\n{text}");
    }
    insta::assert_snapshot!("help_port", text);
}

#[tokio::test]
async fn command_group_help() {
    for group in [
        "login",
        "blueprints",
        "actions",
        "run",
        "runs",
        "entities",
        "secrets",
        "users",
        "teams",
        "audit",
    ] {
        insta::assert_snapshot!(format!("help_{group}"), help(&[group]).await);
    }
}

#[tokio::test]
async fn run_command_help() {
    for command in [
        ["runs", "list"],
        ["runs", "logs"],
        ["runs", "patch"],
        ["actions", "apply"],
        ["entities", "upsert"],
        ["secrets", "set"],
        ["users", "invite"],
        ["actions", "permissions"],
    ] {
        insta::assert_snapshot!(
            format!("help_{}_{}", command[0], command[1]),
            help(&command).await
        );
    }
}

#[tokio::test]
async fn secrets_from_the_environment_never_show_in_help() {
    let home = tempfile::tempdir().unwrap();
    let output = crate::support::command(home.path())
        .env("PORT_CLIENT_SECRET", "do-not-show-me")
        .args(["run", "--help"])
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    assert!(!String::from_utf8_lossy(&output.stdout).contains("do-not-show-me"));
}
