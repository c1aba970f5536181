//! People and permissions: users and their teams, sessions, personal credentials, action
//! permissions and the audit trail, one organization's at a time, alike on every backend.

use anyhow::{Context, Result, ensure};
use port_core::access::{
    ActionPermissions, AuditEntry, AuditFilter, AuditResource, Email, PasswordHash, Role, Session,
    Team, TeamName, User, UserStatus,
};
use port_core::error::StoreError;
use port_core::id::{OrgId, RunId};
use port_core::ports::{ClientSecret, Credential, Store};
use port_core::testing::seed::CREATE_MICROSERVICE;
use port_core::time::Timestamp;
use serde_json::json;

use super::{
    HOUR, Shared, act, at, ids, is_already_exists, microservice_blueprint, new_org, seed_action,
    unbound_action,
};

fn email(text: &str) -> Email {
    Email::parse(text).expect("valid address")
}

fn team_name(text: &str) -> TeamName {
    TeamName::parse(text).expect("valid team name")
}

fn user(org: &OrgId, address: &str, role: Role, teams: &[&str], t: Timestamp) -> User {
    User {
        org_id: org.clone(),
        email: email(address),
        first_name: Some("Ada".into()),
        last_name: None,
        role,
        status: UserStatus::Invited,
        teams: teams.iter().map(|t| team_name(t)).collect(),
        created_at: t,
        updated_at: t,
    }
}

fn team(org: &OrgId, name: &str, members: &[&str], t: Timestamp) -> Team {
    Team {
        org_id: org.clone(),
        name: team_name(name),
        description: Some(format!("The {name} team")),
        users: members.iter().map(|m| email(m)).collect(),
        created_at: t,
        updated_at: t,
    }
}

fn is_invalid<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::InvalidInput(_)))
}

fn addresses(users: &[User]) -> Vec<&str> {
    users.iter().map(|u| u.email.as_str()).collect()
}

fn team_names(names: &[TeamName]) -> Vec<&str> {
    names.iter().map(TeamName::as_str).collect()
}

fn members(team: &Team) -> Vec<&str> {
    team.users.iter().map(Email::as_str).collect()
}

async fn teams_of(store: &dyn Store, org: &OrgId, address: &str) -> Result<Vec<String>> {
    let user = store
        .get_user(org, &email(address))
        .await?
        .context("the user exists")?;
    Ok(user.teams.iter().map(|t| t.as_str().to_owned()).collect())
}

pub async fn users_and_teams(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    assert!(store.list_users(&org).await?.is_empty());
    assert!(store.list_teams(&org).await?.is_empty());

    store
        .create_team(&team(&org, "Platform", &[], at(0)))
        .await?;
    store
        .create_team(&team(&org, "Backend", &[], at(0)))
        .await?;
    assert!(is_already_exists(
        &store.create_team(&team(&org, "Platform", &[], at(1))).await
    ));

    // Teams in any order (and repeated) come back sorted, once.
    let ada = user(
        &org,
        "Ada@Example.io",
        Role::Admin,
        &["Platform", "Backend", "Platform"],
        at(1),
    );
    store.create_user(&ada).await?;
    let got = store
        .get_user(&org, &email("ada@example.io"))
        .await?
        .context("stored")?;
    assert_eq!(got.email.as_str(), "ada@example.io");
    assert_eq!(team_names(&got.teams), ["Backend", "Platform"]);
    assert_eq!(got.role, Role::Admin);
    assert_eq!(got.status, UserStatus::Invited);
    assert_eq!(got.first_name.as_deref(), Some("Ada"));
    assert_eq!(got.last_name, None);
    assert_eq!((got.created_at, got.updated_at), (at(1), at(1)));

    // The same address again is taken, whatever else differs.
    let again = user(&org, "ada@example.io", Role::Member, &[], at(2));
    assert!(is_already_exists(&store.create_user(&again).await));
    // A team that does not exist refuses the whole user.
    let ghost = user(
        &org,
        "bob@example.io",
        Role::Member,
        &["Backend", "Ghosts"],
        at(2),
    );
    let refused = store.create_user(&ghost).await;
    assert!(is_invalid(&refused), "{refused:?}");
    assert_eq!(store.get_user(&org, &ghost.email).await?, None);
    assert_eq!(
        members(
            &store
                .get_team(&org, &team_name("Backend"))
                .await?
                .context("team")?
        ),
        ["ada@example.io"]
    );

    let bob = user(&org, "bob@example.io", Role::Member, &[], at(3));
    store.create_user(&bob).await?;
    let carol = user(&org, "carol@example.io", Role::Member, &["Backend"], at(4));
    store.create_user(&carol).await?;
    let listed = store.list_users(&org).await?;
    assert_eq!(
        addresses(&listed),
        ["ada@example.io", "bob@example.io", "carol@example.io"],
        "by address"
    );
    assert_eq!(team_names(&listed[0].teams), ["Backend", "Platform"]);
    assert!(listed[1].teams.is_empty());
    assert_eq!(team_names(&listed[2].teams), ["Backend"]);

    let teams = store.list_teams(&org).await?;
    let shown: Vec<(&str, Vec<&str>)> = teams
        .iter()
        .map(|t| (t.name.as_str(), members(t)))
        .collect();
    assert_eq!(
        shown,
        [
            ("Backend", vec!["ada@example.io", "carol@example.io"]),
            ("Platform", vec!["ada@example.io"]),
        ],
        "by name, members by address"
    );
    assert_eq!(teams[1], team(&org, "Platform", &["ada@example.io"], at(0)));

    // An update replaces names, role, status, updated_at and the memberships; never the creation.
    let mut changed = bob.clone();
    changed.first_name = Some("Robert".into());
    changed.last_name = Some("Tables".into());
    changed.role = Role::Admin;
    changed.status = UserStatus::Active;
    changed.teams = vec![team_name("Platform")];
    changed.created_at = at(99);
    changed.updated_at = at(5);
    assert!(store.update_user(&changed).await?);
    let got = store.get_user(&org, &bob.email).await?.context("stored")?;
    assert_eq!(
        got,
        User {
            created_at: at(3),
            ..changed.clone()
        }
    );
    let mut moved = changed.clone();
    moved.teams = vec![team_name("Backend")];
    assert!(store.update_user(&moved).await?);
    assert_eq!(
        teams_of(&*store, &org, "bob@example.io").await?,
        ["Backend"]
    );
    // An unknown team changes nothing.
    let mut wrong = moved.clone();
    wrong.teams = vec![team_name("Platform"), team_name("Ghosts")];
    wrong.role = Role::Member;
    let refused = store.update_user(&wrong).await;
    assert!(is_invalid(&refused), "{refused:?}");
    let kept = store.get_user(&org, &bob.email).await?.context("stored")?;
    assert_eq!(
        (kept.role, team_names(&kept.teams)),
        (Role::Admin, vec!["Backend"])
    );
    // No such user: nothing written.
    assert!(
        !store
            .update_user(&user(&org, "nobody@example.io", Role::Member, &[], at(6)))
            .await?
    );
    assert_eq!(
        store.get_user(&org, &email("nobody@example.io")).await?,
        None
    );

    // Deleting a team ends its memberships, not its members.
    assert!(store.delete_team(&org, &team_name("Backend")).await?);
    assert!(!store.delete_team(&org, &team_name("Backend")).await?);
    assert_eq!(store.get_team(&org, &team_name("Backend")).await?, None);
    assert_eq!(
        teams_of(&*store, &org, "ada@example.io").await?,
        ["Platform"]
    );
    assert!(teams_of(&*store, &org, "bob@example.io").await?.is_empty());
    assert_eq!(store.list_users(&org).await?.len(), 3);
    // A team of the same name later starts empty.
    store
        .create_team(&team(&org, "Backend", &[], at(7)))
        .await?;
    assert!(
        members(
            &store
                .get_team(&org, &team_name("Backend"))
                .await?
                .context("team")?
        )
        .is_empty()
    );

    assert!(store.delete_user(&org, &email("carol@example.io")).await?);
    assert!(!store.delete_user(&org, &email("carol@example.io")).await?);
    assert_eq!(
        addresses(&store.list_users(&org).await?),
        ["ada@example.io", "bob@example.io"]
    );
    Ok(())
}

pub async fn users_are_per_organization(store: Shared) -> Result<()> {
    let ids = ids();
    let acme = new_org(&*store, &ids, "Acme").await?;
    let globex = new_org(&*store, &ids, "Globex").await?;
    let before = store.count_users().await?;

    store
        .create_team(&team(&acme, "Platform", &[], at(0)))
        .await?;
    // Globex is the older of the two users of this address.
    store
        .create_user(&user(&globex, "ada@example.io", Role::Member, &[], at(1)))
        .await?;
    store
        .create_user(&user(
            &acme,
            "ada@example.io",
            Role::Admin,
            &["Platform"],
            at(2),
        ))
        .await?;
    // A team is its organization's: Globex has no Platform.
    let refused = store
        .create_user(&user(
            &globex,
            "bob@example.io",
            Role::Member,
            &["Platform"],
            at(3),
        ))
        .await;
    assert!(is_invalid(&refused), "{refused:?}");
    // Nor may a team of Acme name a user of Globex only.
    store
        .create_user(&user(&globex, "carol@example.io", Role::Member, &[], at(3)))
        .await?;
    let refused = store
        .create_team(&team(&acme, "Backend", &["carol@example.io"], at(3)))
        .await;
    assert!(is_invalid(&refused), "{refused:?}");
    assert_eq!(store.get_team(&acme, &team_name("Backend")).await?, None);
    assert_eq!(store.count_users().await?, before + 3);

    let ada = email("ada@example.io");
    assert!(
        store
            .set_password(&acme, &ada, Some(&PasswordHash::new("$argon2id$acme")))
            .await?
    );
    assert!(
        !store
            .set_password(
                &acme,
                &email("nobody@example.io"),
                Some(&PasswordHash::new("$argon2id$x"))
            )
            .await?
    );
    let found = store.users_by_email(&ada).await?;
    let shown: Vec<(&OrgId, Role, Option<&str>, Vec<&str>)> = found
        .iter()
        .map(|(u, h)| {
            (
                &u.org_id,
                u.role,
                h.as_ref().map(PasswordHash::as_str),
                team_names(&u.teams),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (&globex, Role::Member, None, vec![]),
            (&acme, Role::Admin, Some("$argon2id$acme"), vec!["Platform"]),
        ],
        "every organization's user of the address, oldest first"
    );
    assert!(
        store
            .users_by_email(&email("nobody@example.io"))
            .await?
            .is_empty()
    );
    // A password set to none is gone.
    assert!(store.set_password(&acme, &ada, None).await?);
    assert!(
        store
            .users_by_email(&ada)
            .await?
            .iter()
            .all(|(_, h)| h.is_none())
    );

    // Each organization sees, changes and deletes its own.
    assert_eq!(
        addresses(&store.list_users(&acme).await?),
        ["ada@example.io"]
    );
    assert_eq!(
        addresses(&store.list_users(&globex).await?),
        ["ada@example.io", "carol@example.io"]
    );
    assert!(store.list_teams(&globex).await?.is_empty());
    assert_eq!(store.get_team(&globex, &team_name("Platform")).await?, None);
    assert!(!store.delete_team(&globex, &team_name("Platform")).await?);
    assert!(store.delete_user(&globex, &ada).await?);
    let left = store
        .get_user(&acme, &ada)
        .await?
        .context("Acme's Ada stays")?;
    assert_eq!(team_names(&left.teams), ["Platform"]);
    assert_eq!(store.users_by_email(&ada).await?.len(), 1);
    Ok(())
}

pub async fn team_rename_keeps_members(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    for address in ["ada@example.io", "bob@example.io", "carol@example.io"] {
        store
            .create_user(&user(&org, address, Role::Member, &[], at(0)))
            .await?;
    }
    store
        .create_team(&team(
            &org,
            "Platform",
            &["bob@example.io", "ada@example.io", "bob@example.io"],
            at(1),
        ))
        .await?;
    store
        .create_team(&team(&org, "Backend", &["carol@example.io"], at(1)))
        .await?;
    assert_eq!(
        members(
            &store
                .get_team(&org, &team_name("Platform"))
                .await?
                .context("team")?
        ),
        ["ada@example.io", "bob@example.io"]
    );

    // Renamed (with a new description): the members follow, the old name is free.
    let renamed = team(
        &org,
        "Infrastructure",
        &["ada@example.io", "bob@example.io"],
        at(1),
    );
    let renamed = Team {
        description: None,
        updated_at: at(2),
        ..renamed
    };
    assert!(store.update_team(&team_name("Platform"), &renamed).await?);
    assert_eq!(store.get_team(&org, &team_name("Platform")).await?, None);
    assert_eq!(
        store.get_team(&org, &team_name("Infrastructure")).await?,
        Some(renamed.clone())
    );
    assert_eq!(
        teams_of(&*store, &org, "ada@example.io").await?,
        ["Infrastructure"]
    );
    store
        .create_team(&team(&org, "Platform", &[], at(3)))
        .await?;

    // Renaming onto a taken name, or naming a stranger, changes nothing.
    let onto = Team {
        name: team_name("Backend"),
        ..renamed.clone()
    };
    assert!(is_already_exists(
        &store.update_team(&team_name("Infrastructure"), &onto).await
    ));
    let stranger = Team {
        users: vec![email("ada@example.io"), email("zed@example.io")],
        ..renamed.clone()
    };
    let refused = store
        .update_team(&team_name("Infrastructure"), &stranger)
        .await;
    assert!(is_invalid(&refused), "{refused:?}");
    assert_eq!(
        store.get_team(&org, &team_name("Infrastructure")).await?,
        Some(renamed.clone())
    );
    assert_eq!(
        members(
            &store
                .get_team(&org, &team_name("Backend"))
                .await?
                .context("team")?
        ),
        ["carol@example.io"]
    );

    // Members replaced, the name kept.
    let swapped = Team {
        users: vec![email("carol@example.io")],
        updated_at: at(4),
        ..renamed.clone()
    };
    assert!(
        store
            .update_team(&team_name("Infrastructure"), &swapped)
            .await?
    );
    assert!(teams_of(&*store, &org, "ada@example.io").await?.is_empty());
    assert_eq!(
        teams_of(&*store, &org, "carol@example.io").await?,
        ["Backend", "Infrastructure"]
    );
    assert!(!store.update_team(&team_name("Ghosts"), &swapped).await?);
    assert_eq!(store.get_team(&org, &team_name("Ghosts")).await?, None);
    Ok(())
}

fn credential(org: &OrgId, client_id: &str, user: Option<&str>, t: Timestamp) -> Credential {
    Credential {
        org_id: org.clone(),
        client_id: client_id.into(),
        client_secret: ClientSecret::new(format!("{client_id}-secret")),
        created_at: t,
        user: user.map(email),
    }
}

fn session(
    org: &OrgId,
    token_hash: &str,
    address: &str,
    created: Timestamp,
    expires: Timestamp,
) -> Session {
    Session {
        token_hash: token_hash.into(),
        org_id: org.clone(),
        email: email(address),
        created_at: created,
        expires_at: expires,
    }
}

pub async fn deleting_a_user_removes_what_is_theirs(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let other = new_org(&*store, &ids, "Globex").await?;
    store
        .create_team(&team(&org, "Platform", &[], at(0)))
        .await?;
    for (o, address) in [
        (&org, "ada@example.io"),
        (&org, "bob@example.io"),
        (&other, "ada@example.io"),
    ] {
        let teams: &[&str] = if o == &org { &["Platform"] } else { &[] };
        store
            .create_user(&user(o, address, Role::Member, teams, at(0)))
            .await?;
        store
            .set_password(o, &email(address), Some(&PasswordHash::new("$argon2id$h")))
            .await?;
    }
    store
        .add_credential(&credential(&org, "machine", None, at(1)))
        .await?;
    store
        .add_credential(&credential(
            &org,
            "ada-laptop",
            Some("ada@example.io"),
            at(2),
        ))
        .await?;
    store
        .add_credential(&credential(
            &org,
            "bob-laptop",
            Some("bob@example.io"),
            at(3),
        ))
        .await?;
    store
        .add_credential(&credential(
            &other,
            "ada-globex",
            Some("ada@example.io"),
            at(4),
        ))
        .await?;
    // A personal credential needs its user.
    let orphan = store
        .add_credential(&credential(&org, "ghost", Some("nobody@example.io"), at(5)))
        .await;
    assert!(is_invalid(&orphan), "{orphan:?}");
    assert_eq!(store.find_credential("ghost").await?, None);
    let read = store
        .find_credential("ada-laptop")
        .await?
        .context("stored")?;
    assert_eq!(read.user, Some(email("ada@example.io")));
    assert_eq!(read.client_secret.expose(), "ada-laptop-secret");
    assert_eq!(
        store
            .find_credential("machine")
            .await?
            .context("stored")?
            .user,
        None
    );
    let listed: Vec<(String, Option<String>)> = store
        .credentials(&org)
        .await?
        .into_iter()
        .map(|c| (c.client_id, c.user.map(|u| u.as_str().to_owned())))
        .collect();
    assert_eq!(
        listed,
        [
            ("machine".to_owned(), None),
            ("ada-laptop".to_owned(), Some("ada@example.io".to_owned())),
            ("bob-laptop".to_owned(), Some("bob@example.io".to_owned())),
        ]
    );

    for (o, hash, address) in [
        (&org, "s-ada", "ada@example.io"),
        (&org, "s-bob", "bob@example.io"),
        (&other, "s-ada-globex", "ada@example.io"),
    ] {
        store
            .create_session(&session(o, hash, address, at(0), at(HOUR)))
            .await?;
    }

    assert!(store.delete_user(&org, &email("ada@example.io")).await?);
    assert_eq!(store.get_session("s-ada", at(1)).await?, None);
    assert_eq!(store.find_credential("ada-laptop").await?, None);
    assert_eq!(
        members(
            &store
                .get_team(&org, &team_name("Platform"))
                .await?
                .context("team")?
        ),
        ["bob@example.io"]
    );
    // Nobody else's: Bob's, the machine's and Globex's Ada's stay.
    assert!(store.get_session("s-bob", at(1)).await?.is_some());
    assert!(store.get_session("s-ada-globex", at(1)).await?.is_some());
    for kept in ["machine", "bob-laptop", "ada-globex"] {
        ensure!(store.find_credential(kept).await?.is_some(), "{kept} kept");
    }
    let found = store.users_by_email(&email("ada@example.io")).await?;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0.org_id, other);

    // The same address again is a new user: no password, session, team or credential.
    store
        .create_user(&user(&org, "ada@example.io", Role::Member, &[], at(10)))
        .await?;
    let again = store.users_by_email(&email("ada@example.io")).await?;
    let acme = again
        .iter()
        .find(|(u, _)| u.org_id == org)
        .context("Acme's Ada")?;
    assert_eq!((acme.1.as_ref(), acme.0.teams.len()), (None, 0));
    assert_eq!(store.get_session("s-ada", at(11)).await?, None);
    assert_eq!(store.find_credential("ada-laptop").await?, None);
    Ok(())
}

pub async fn sessions_expire(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    store
        .create_user(&user(&org, "ada@example.io", Role::Member, &[], at(0)))
        .await?;
    let first = session(&org, "hash-1", "ada@example.io", at(0), at(HOUR));
    store.create_session(&first).await?;
    assert_eq!(
        store.get_session("hash-1", at(0)).await?,
        Some(first.clone())
    );
    assert_eq!(
        store.get_session("hash-1", at(HOUR - 1)).await?,
        Some(first.clone())
    );
    assert_eq!(
        store.get_session("hash-1", at(HOUR)).await?,
        None,
        "expired at expires_at"
    );
    assert_eq!(store.get_session("hash-2", at(0)).await?, None);

    // A later sign-in starts another session; the old one stays expired.
    let second = session(&org, "hash-2", "ada@example.io", at(2 * HOUR), at(3 * HOUR));
    store.create_session(&second).await?;
    assert_eq!(
        store.get_session("hash-2", at(2 * HOUR)).await?,
        Some(second)
    );
    assert_eq!(store.get_session("hash-1", at(2 * HOUR)).await?, None);

    assert!(store.delete_session("hash-2").await?);
    assert!(!store.delete_session("hash-2").await?);
    assert_eq!(store.get_session("hash-2", at(2 * HOUR)).await?, None);

    // Only users have sessions, in their own organization.
    let other = new_org(&*store, &ids, "Globex").await?;
    for (o, address) in [(&org, "nobody@example.io"), (&other, "ada@example.io")] {
        let refused = store
            .create_session(&session(o, "hash-3", address, at(0), at(HOUR)))
            .await;
        assert!(is_invalid(&refused), "{refused:?}");
    }
    assert_eq!(store.get_session("hash-3", at(0)).await?, None);
    Ok(())
}

fn audit(
    org: &OrgId,
    resource: AuditResource,
    identifier: &str,
    action: &str,
    t: Timestamp,
) -> AuditEntry {
    AuditEntry {
        org_id: org.clone(),
        seq: 0,
        at: t,
        resource,
        identifier: identifier.into(),
        action: action.into(),
        run_id: None,
        by: "ada@example.io".into(),
        by_machine: false,
        on_behalf_of: None,
        diff: json!({}),
    }
}

pub async fn action_permissions(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let other = new_org(&*store, &ids, "Globex").await?;
    let on_create = act("on_create");
    store
        .create_action(&org, &unbound_action(&ids, "on_create", at(0))?)
        .await?;
    store
        .create_action(&other, &unbound_action(&ids, "on_create", at(0))?)
        .await?;
    assert_eq!(
        store.get_permissions(&org, &on_create).await?,
        None,
        "unset"
    );

    let mut permissions = ActionPermissions::default();
    permissions
        .patch(&json!({
            "execute": {
                "users": ["ada@example.io"],
                "roles": ["Member"],
                "teams": ["Platform"],
                "ownedByTeam": true,
                "policy": {
                    "queries": {"mine": {"combinator": "and", "rules": [{"property": "$team", "operator": "containsAny", "value": ["Platform"]}]}},
                    "conditions": [".results.mine | length > 0"]
                }
            },
            "approve": {"roles": [], "users": ["bob@example.io"]}
        }))
        .context("a valid document")?;
    let entry = AuditEntry {
        diff: json!({"before": null, "after": permissions.to_json()}),
        ..audit(
            &org,
            AuditResource::Permissions,
            "on_create",
            "UPDATE",
            at(1),
        )
    };
    assert!(
        store
            .put_permissions(&org, &on_create, &permissions, &entry)
            .await?
    );
    assert_eq!(
        store.get_permissions(&org, &on_create).await?,
        Some(permissions.clone())
    );
    assert_eq!(
        store.get_permissions(&other, &on_create).await?,
        None,
        "per organization"
    );
    let trail = store
        .list_audit(
            &org,
            &AuditFilter {
                limit: 10,
                ..AuditFilter::default()
            },
        )
        .await?;
    assert_eq!(trail.len(), 1, "written with the permissions");
    assert_eq!(
        AuditEntry {
            seq: 0,
            ..trail[0].clone()
        },
        entry
    );

    // Put again: replaced.
    let admins_only = ActionPermissions::default();
    assert!(
        store
            .put_permissions(
                &org,
                &on_create,
                &admins_only,
                &audit(
                    &org,
                    AuditResource::Permissions,
                    "on_create",
                    "UPDATE",
                    at(2)
                )
            )
            .await?
    );
    assert_eq!(
        store.get_permissions(&org, &on_create).await?,
        Some(admins_only)
    );

    // No such action: nothing written, not even the audit entry.
    let ghost = act("ghost");
    assert!(
        !store
            .put_permissions(
                &org,
                &ghost,
                &permissions,
                &audit(&org, AuditResource::Permissions, "ghost", "UPDATE", at(3))
            )
            .await?
    );
    assert_eq!(store.get_permissions(&org, &ghost).await?, None);
    let filter = AuditFilter {
        limit: 10,
        ..AuditFilter::default()
    };
    assert_eq!(store.list_audit(&org, &filter).await?.len(), 2);

    // Gone with the action; a new action of the same identifier starts unset.
    assert!(store.delete_action(&org, &on_create).await?);
    assert_eq!(store.get_permissions(&org, &on_create).await?, None);
    store
        .create_action(&org, &unbound_action(&ids, "on_create", at(4))?)
        .await?;
    assert_eq!(store.get_permissions(&org, &on_create).await?, None);
    // Deleting a blueprint deletes its actions, and their permissions with them; an
    // action of no blueprint keeps its own.
    let create = seed_action(
        CREATE_MICROSERVICE,
        "action_ed2B0O9CbEYkuqvN",
        "2022-12-07T09:48:28.659Z",
    )?;
    let create_id = create.definition.identifier.clone();
    let blueprint = microservice_blueprint(&org, at(0));
    store.create_blueprint(&blueprint).await?;
    store.create_action(&org, &create).await?;
    assert!(
        store
            .put_permissions(
                &org,
                &create_id,
                &permissions,
                &audit(
                    &org,
                    AuditResource::Permissions,
                    "create_microservice",
                    "UPDATE",
                    at(5)
                )
            )
            .await?
    );
    assert!(
        store
            .put_permissions(
                &org,
                &on_create,
                &permissions,
                &audit(
                    &org,
                    AuditResource::Permissions,
                    "on_create",
                    "UPDATE",
                    at(5)
                )
            )
            .await?
    );
    assert!(
        store
            .delete_blueprint(&org, &blueprint.identifier, "ada@example.io", at(6))
            .await?
    );
    assert_eq!(store.get_action(&org, &create_id).await?, None);
    assert_eq!(store.get_permissions(&org, &create_id).await?, None);
    assert_eq!(
        store.get_permissions(&org, &on_create).await?,
        Some(permissions),
        "an action of no blueprint keeps its permissions"
    );
    Ok(())
}

pub async fn audit_trail(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let other = new_org(&*store, &ids, "Globex").await?;
    let run: RunId = ids.next();
    let created = AuditEntry {
        run_id: Some(run.clone()),
        by: "ci-client".into(),
        by_machine: true,
        on_behalf_of: Some(email("ada@example.io")),
        diff: json!({"after": {"status": "IN_PROGRESS", "ü": "✓"}}),
        ..audit(&org, AuditResource::Run, run.as_str(), "CREATE", at(1))
    };
    let entries = [
        created.clone(),
        audit(&org, AuditResource::Action, "deploy", "CREATE", at(2)),
        audit(&org, AuditResource::User, "bob@example.io", "CREATE", at(3)),
        AuditEntry {
            run_id: Some(run.clone()),
            ..audit(&org, AuditResource::Run, run.as_str(), "APPROVE", at(4))
        },
        audit(&other, AuditResource::Action, "deploy", "DELETE", at(4)),
        audit(&org, AuditResource::Action, "deploy", "UPDATE", at(5)),
        audit(&org, AuditResource::Team, "Platform", "DELETE", at(5)),
    ];
    for entry in &entries {
        store.record_audit(entry).await?;
    }
    let shown = |trail: &[AuditEntry]| -> Vec<(String, String)> {
        trail
            .iter()
            .map(|e| (e.identifier.clone(), e.action.clone()))
            .collect()
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(i, a)| ((*i).to_owned(), (*a).to_owned()))
            .collect()
    };
    let all = AuditFilter {
        limit: 100,
        ..AuditFilter::default()
    };
    let trail = store.list_audit(&org, &all).await?;
    assert_eq!(
        shown(&trail),
        pairs(&[
            ("Platform", "DELETE"),
            ("deploy", "UPDATE"),
            (run.as_str(), "APPROVE"),
            ("bob@example.io", "CREATE"),
            ("deploy", "CREATE"),
            (run.as_str(), "CREATE"),
        ]),
        "newest first, this organization's only"
    );
    ensure!(
        trail
            .windows(2)
            .all(|w| w[0].seq > w[1].seq && w[1].seq > 0),
        "the store numbers entries in order: {:?}",
        trail.iter().map(|e| e.seq).collect::<Vec<_>>()
    );
    let oldest = trail.last().context("entries")?;
    assert_eq!(
        AuditEntry {
            seq: 0,
            ..oldest.clone()
        },
        created,
        "every field round-trips"
    );
    assert_eq!(
        shown(&store.list_audit(&other, &all).await?),
        pairs(&[("deploy", "DELETE")])
    );

    let filtered = |filter: AuditFilter| {
        let store = store.clone();
        let org = org.clone();
        async move { store.list_audit(&org, &filter).await }
    };
    let runs = filtered(AuditFilter {
        resources: vec![AuditResource::Run, AuditResource::Team, AuditResource::Run],
        limit: 100,
        ..AuditFilter::default()
    })
    .await?;
    assert_eq!(
        shown(&runs),
        pairs(&[
            ("Platform", "DELETE"),
            (run.as_str(), "APPROVE"),
            (run.as_str(), "CREATE")
        ])
    );
    let deploy = filtered(AuditFilter {
        identifier: Some("deploy".into()),
        limit: 100,
        ..AuditFilter::default()
    })
    .await?;
    assert_eq!(
        shown(&deploy),
        pairs(&[("deploy", "UPDATE"), ("deploy", "CREATE")])
    );
    let of_run = filtered(AuditFilter {
        run_id: Some(run.clone()),
        limit: 100,
        ..AuditFilter::default()
    })
    .await?;
    assert_eq!(
        shown(&of_run),
        pairs(&[(run.as_str(), "APPROVE"), (run.as_str(), "CREATE")])
    );
    let window = filtered(AuditFilter {
        from: Some(at(2)),
        to: Some(at(4)),
        limit: 100,
        ..AuditFilter::default()
    })
    .await?;
    assert_eq!(
        shown(&window),
        pairs(&[
            (run.as_str(), "APPROVE"),
            ("bob@example.io", "CREATE"),
            ("deploy", "CREATE")
        ]),
        "from and to inclusive"
    );
    let newest_two = filtered(AuditFilter {
        limit: 2,
        ..AuditFilter::default()
    })
    .await?;
    assert_eq!(
        shown(&newest_two),
        pairs(&[("Platform", "DELETE"), ("deploy", "UPDATE")])
    );
    let combined = filtered(AuditFilter {
        resources: vec![AuditResource::Action],
        identifier: Some("deploy".into()),
        to: Some(at(4)),
        limit: 100,
        ..AuditFilter::default()
    })
    .await?;
    assert_eq!(shown(&combined), pairs(&[("deploy", "CREATE")]));
    let none = filtered(AuditFilter {
        identifier: Some("deploy".into()),
        run_id: Some(run.clone()),
        limit: 100,
        ..AuditFilter::default()
    })
    .await?;
    assert!(none.is_empty());
    Ok(())
}
