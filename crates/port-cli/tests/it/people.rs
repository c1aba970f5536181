//! `port users`, `port teams`, `port actions permissions`, `port run --run-as`,
//! `port runs withdraw` and `port audit` against a real portd, with the
//! organization's credentials.

use serde_json::Value;

use crate::support::{Env, seed};

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_teams_permissions_and_the_audit_log() {
    let env = Env::start().await;
    seed(&env).await;

    assert_eq!(
        env.ok(&["users", "invite", "Ada@Example.io", "--role", "admin"])
            .await,
        "user Ada@Example.io invited\n"
    );
    env.ok(&["users", "invite", "bob@example.io"]).await;
    let listed = env.ok(&["users", "list"]).await;
    let lines: Vec<&str> = listed.lines().collect();
    assert!(lines[0].starts_with("EMAIL"), "{listed}");
    assert!(
        lines[1].starts_with("ada@example.io") && lines[1].contains("Admin"),
        "{listed}"
    );
    assert!(lines[2].contains("Member") && lines[2].contains("Invited"));
    let again = env.port(&["users", "invite", "bob@example.io"]).await;
    assert_eq!(again.code, 3, "{again:?}");
    assert!(
        again.stderr.starts_with("error: identifier_taken: "),
        "{again:?}"
    );

    let team = env
        .ok(&["teams", "create", "Platform", "--user", "bob@example.io"])
        .await;
    assert!(
        team.contains("Members:") && team.contains("bob@example.io"),
        "{team}"
    );
    let bob = env
        .ok(&[
            "users",
            "update",
            "bob@example.io",
            "--role",
            "admin",
            "--no-teams",
        ])
        .await;
    assert!(bob.contains("Role:") && bob.contains("Admin"), "{bob}");
    assert!(!bob.contains("Platform"), "{bob}");
    let renamed = json_of(
        &env.ok(&[
            "teams", "update", "Platform", "--rename", "Core", "-o", "json",
        ])
        .await,
    );
    assert_eq!(renamed["name"], "Core");
    assert_eq!(
        env.ok(&["teams", "delete", "Core"]).await,
        "team Core deleted\n"
    );

    // Permissions: Members execute the action; Ada approves it.
    let patch = env.file(
        "permissions.yaml",
        "execute:\n  roles: [Member]\napprove:\n  users: [ada@example.io]\n",
    );
    let set = env
        .ok(&[
            "actions",
            "permissions",
            "set",
            "nightly_report",
            "-f",
            &patch,
        ])
        .await;
    assert!(set.contains("roles: Member"), "{set}");
    assert!(set.contains("users: ada@example.io"), "{set}");
    let got = json_of(
        &env.ok(&[
            "actions",
            "permissions",
            "get",
            "nightly_report",
            "-o",
            "json",
        ])
        .await,
    );
    assert_eq!(got["execute"]["roles"], serde_json::json!(["Member"]));

    // Run as a Member, then the trail says who did it and for whom.
    env.ok(&["users", "update", "bob@example.io", "--role", "member"])
        .await;
    let run_id = env
        .ok(&["run", "nightly_report", "--run-as", "bob@example.io"])
        .await
        .trim()
        .to_owned();
    let run = env.client.get_run(&run_id).await.unwrap();
    assert_eq!(run.created_by.as_deref(), Some("bob@example.io"));
    assert_eq!(
        run.impersonated_by.as_deref(),
        Some(env.server.client_id.as_str())
    );
    let audit = env.ok(&["audit", "--resource", "run"]).await;
    assert!(audit.starts_with("AT"), "{audit}");
    assert!(
        audit.contains(&run_id) && audit.contains("CREATE"),
        "{audit}"
    );
    let trail = json_of(
        &env.ok(&["audit", "--resource", "permissions", "-o", "json"])
            .await,
    );
    assert_eq!(trail[0]["identifier"], "nightly_report");
    assert_eq!(
        env.ok(&["users", "delete", "bob@example.io"]).await,
        "user bob@example.io deleted\n"
    );
    env.server.shutdown().await.unwrap();
}
