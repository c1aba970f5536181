//! People signing in, against the in-memory store: the caller a person stands for,
//! password candidates, sessions stored by their token's hash, personal credentials.

use std::sync::Arc;

use futures::executor::block_on;

use port_core::ErrorKind;
use port_core::access::{Email, PasswordHash, Principal, Role, User, UserStatus};
use port_core::id::OrgId;
use port_core::ports::{Clock as _, DirectoryStore, InProcessTemplates, OrgStore, Organization};
use port_core::service::sessions::{
    MAX_PERSONAL_CREDENTIALS, SESSION_LIFETIME_MS, session_token_hash,
};
use port_core::service::{AllowAllDestinations, Caller, Services};
use port_core::testing::{FixedClock, MemoryStore, RecordingNotifier, test_ids};

struct World {
    services: Services,
    store: Arc<MemoryStore>,
    clock: Arc<FixedClock>,
}

const ACME: &str = "org_AcmeAcmeAcmeAcme";
const GLOBEX: &str = "org_GlobexGlobexGlob";

fn org(id: &str) -> OrgId {
    OrgId::parse(id).expect("org id")
}

fn email(text: &str) -> Email {
    Email::parse(text).expect("email")
}

fn world() -> World {
    let clock = Arc::new(FixedClock::at_default());
    let store = Arc::new(MemoryStore::new());
    for (id, name) in [(ACME, "Acme"), (GLOBEX, "Globex")] {
        block_on(store.create_organization(&Organization {
            id: org(id),
            name: name.to_owned(),
            created_at: clock.now(),
        }))
        .expect("organization");
    }
    let services = Services::new(
        store.clone(),
        clock.clone(),
        test_ids(clock.clone()),
        Arc::new(RecordingNotifier::new()),
        Arc::new(AllowAllDestinations),
        Arc::new(InProcessTemplates::default()),
    );
    World {
        services,
        store,
        clock,
    }
}

impl World {
    fn user(&self, org_id: &str, address: &str, role: Role) -> User {
        let now = self.clock.now();
        let user = User {
            org_id: org(org_id),
            email: email(address),
            first_name: Some("Ada".to_owned()),
            last_name: None,
            role,
            status: UserStatus::Invited,
            teams: vec![],
            created_at: now,
            updated_at: now,
        };
        block_on(self.store.create_user(&user)).expect("user");
        // Users made later sort after: candidates are oldest first.
        self.clock.advance(1);
        user
    }

    fn password(&self, org_id: &str, address: &str, phc: &str) {
        assert!(
            block_on(self.store.set_password(
                &org(org_id),
                &email(address),
                Some(&PasswordHash::new(phc))
            ))
            .unwrap()
        );
    }
}

fn machine() -> Caller {
    Caller::machine(org(ACME), "ci-client")
}

#[test]
fn a_person_caller_carries_the_user_as_stored_now() {
    let w = world();
    let mut ada = w.user(ACME, "ada@acme.io", Role::Member);
    let caller = block_on(w.services.person_caller(&org(ACME), &ada.email))
        .unwrap()
        .expect("a user");
    assert_eq!(caller.org_id, org(ACME));
    assert_eq!(caller.user_id(), "ada@acme.io");
    assert!(!caller.principal.is_admin());
    assert!(!caller.principal.is_machine());

    // A promotion applies at once.
    ada.role = Role::Admin;
    assert!(block_on(w.store.update_user(&ada)).unwrap());
    let caller = block_on(w.services.person_caller(&org(ACME), &ada.email))
        .unwrap()
        .unwrap();
    assert!(caller.principal.is_admin());

    // Another organization does not know her; a deleted user stands for nobody.
    assert!(
        block_on(w.services.person_caller(&org(GLOBEX), &ada.email))
            .unwrap()
            .is_none()
    );
    assert!(block_on(w.store.delete_user(&org(ACME), &ada.email)).unwrap());
    assert!(
        block_on(w.services.person_caller(&org(ACME), &ada.email))
            .unwrap()
            .is_none()
    );
}

#[test]
fn password_candidates_are_the_accounts_with_a_password_oldest_first() {
    let w = world();
    w.user(GLOBEX, "ada@acme.io", Role::Member);
    w.user(ACME, "ada@acme.io", Role::Admin);
    w.user(ACME, "sso-only@acme.io", Role::Member);
    w.password(ACME, "ada@acme.io", "$argon2id$acme");
    w.password(GLOBEX, "ada@acme.io", "$argon2id$globex");

    let found = block_on(w.services.password_candidates(&email("ADA@acme.io"))).unwrap();
    let orgs: Vec<_> = found.iter().map(|(u, _)| u.org_id.clone()).collect();
    assert_eq!(orgs, [org(GLOBEX), org(ACME)]);
    assert_eq!(found[0].1.as_str(), "$argon2id$globex");
    assert!(
        block_on(w.services.password_candidates(&email("sso-only@acme.io")))
            .unwrap()
            .is_empty(),
        "a user without a password cannot sign in with one"
    );
    assert!(
        block_on(w.services.password_candidates(&email("nobody@acme.io")))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        block_on(w.services.users_with_email(&email("sso-only@acme.io")))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn passwords_are_set_by_their_owner_admins_and_machines_only() {
    let w = world();
    let ada = w.user(ACME, "ada@acme.io", Role::Member);
    let bob = w.user(ACME, "bob@acme.io", Role::Member);
    let root = w.user(ACME, "root@acme.io", Role::Admin);
    let hash = PasswordHash::new("$argon2id$x");
    let as_ada = Caller::person(&ada);

    block_on(w.services.set_password(&as_ada, "Ada@acme.io", Some(&hash))).unwrap();
    let err = block_on(w.services.set_password(&as_ada, "bob@acme.io", Some(&hash))).unwrap_err();
    assert_eq!(err.kind, ErrorKind::MissingPermissions);
    block_on(
        w.services
            .set_password(&Caller::person(&root), "bob@acme.io", Some(&hash)),
    )
    .unwrap();
    block_on(
        w.services
            .set_password(&machine(), "root@acme.io", Some(&hash)),
    )
    .unwrap();
    let err = block_on(
        w.services
            .set_password(&machine(), "ghost@acme.io", Some(&hash)),
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    // Not across organizations: Globex's machine does not find Acme's users.
    let err = block_on(w.services.set_password(
        &Caller::machine(org(GLOBEX), "globex-ci"),
        "ada@acme.io",
        Some(&hash),
    ))
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);

    for user in [&ada, &bob, &root] {
        assert_eq!(
            block_on(w.services.password_candidates(&user.email))
                .unwrap()
                .len(),
            1,
            "{}",
            user.email
        );
    }
    // Removing a password.
    block_on(w.services.set_password(&as_ada, "ada@acme.io", None)).unwrap();
    assert!(
        block_on(w.services.password_candidates(&ada.email))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn sessions_are_stored_by_hash_and_end_with_time_sign_out_or_their_user() {
    let w = world();
    let ada = w.user(ACME, "ada@acme.io", Role::Member);
    let started = block_on(w.services.start_session(&ada)).unwrap();
    assert!(started.token.len() >= 43, "256 random bits");
    assert_eq!(
        started.session.token_hash,
        session_token_hash(&started.token)
    );
    assert_ne!(started.session.token_hash, started.token);
    assert_eq!(
        started.session.expires_at.unix_millis() - started.session.created_at.unix_millis(),
        SESSION_LIFETIME_MS
    );

    // Signing in makes an invited user active.
    let stored = block_on(w.store.get_user(&org(ACME), &ada.email))
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, UserStatus::Active);

    let hash = session_token_hash(&started.token);
    let caller = block_on(w.services.session_caller(&hash))
        .unwrap()
        .expect("a live session");
    assert_eq!(caller.user_id(), "ada@acme.io");
    assert!(matches!(caller.principal, Principal::Person(_)));
    // The token itself is no key: only its hash is.
    assert!(
        block_on(w.services.session_caller(&started.token))
            .unwrap()
            .is_none()
    );

    // Two sessions are independent; signing one out leaves the other.
    let other = block_on(w.services.start_session(&ada)).unwrap();
    assert_ne!(other.token, started.token);
    assert!(block_on(w.services.end_session(&hash)).unwrap());
    assert!(!block_on(w.services.end_session(&hash)).unwrap());
    assert!(
        block_on(w.services.session_caller(&hash))
            .unwrap()
            .is_none()
    );
    let other_hash = session_token_hash(&other.token);
    assert!(
        block_on(w.services.session_caller(&other_hash))
            .unwrap()
            .is_some()
    );

    // Expiry.
    w.clock.advance(SESSION_LIFETIME_MS);
    assert!(
        block_on(w.services.session_caller(&other_hash))
            .unwrap()
            .is_none()
    );

    // A deleted user's session stands for nobody.
    let bob = w.user(ACME, "bob@acme.io", Role::Member);
    let bobs = block_on(w.services.start_session(&bob)).unwrap();
    assert!(block_on(w.store.delete_user(&org(ACME), &bob.email)).unwrap());
    assert!(
        block_on(w.services.session_caller(&session_token_hash(&bobs.token)))
            .unwrap()
            .is_none()
    );
}

#[test]
fn personal_credentials_belong_to_people_and_are_bounded() {
    let w = world();
    let ada = w.user(ACME, "ada@acme.io", Role::Member);
    let bob = w.user(ACME, "bob@acme.io", Role::Admin);
    let as_ada = Caller::person(&ada);

    let first = block_on(w.services.create_personal_credential(&as_ada)).unwrap();
    assert_eq!(first.user, Some(ada.email.clone()));
    assert_eq!(first.org_id, org(ACME));
    assert_eq!(first.client_id.len(), 32);
    assert_eq!(first.client_secret.expose().len(), 64);
    assert!(
        first
            .client_id
            .chars()
            .chain(first.client_secret.expose().chars())
            .all(|c| c.is_ascii_alphanumeric())
    );
    let second = block_on(w.services.create_personal_credential(&as_ada)).unwrap();
    assert_ne!(first.client_id, second.client_id);
    assert_ne!(first.client_secret.expose(), second.client_secret.expose());
    // The store finds it by client id, like any credential.
    let found = block_on(w.store.find_credential(&first.client_id))
        .unwrap()
        .unwrap();
    assert_eq!(found.user, Some(ada.email.clone()));

    // Each person lists their own only.
    block_on(w.services.create_personal_credential(&Caller::person(&bob))).unwrap();
    let mine = block_on(w.services.list_personal_credentials(&as_ada)).unwrap();
    let ids: Vec<_> = mine.iter().map(|c| c.client_id.clone()).collect();
    assert_eq!(ids, [first.client_id.clone(), second.client_id.clone()]);

    // Machines have none to make.
    let err = block_on(w.services.create_personal_credential(&machine())).unwrap_err();
    assert_eq!(err.kind, ErrorKind::MissingPermissions);
    assert_eq!(
        block_on(w.services.list_personal_credentials(&machine()))
            .unwrap_err()
            .kind,
        ErrorKind::MissingPermissions
    );

    // Bounded.
    for _ in 2..MAX_PERSONAL_CREDENTIALS {
        block_on(w.services.create_personal_credential(&as_ada)).unwrap();
    }
    let err = block_on(w.services.create_personal_credential(&as_ada)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest);

    // Deleting one frees a place; a Member deletes only their own, Admins and machines
    // anyone's of their organization.
    let cyd = w.user(ACME, "cyd@acme.io", Role::Member);
    let err = block_on(
        w.services
            .delete_personal_credential(&Caller::person(&cyd), &first.client_id),
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "not Cyd's");
    let err = block_on(
        w.services
            .delete_personal_credential(&Caller::machine(org(GLOBEX), "other"), &first.client_id),
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "another organization's");
    block_on(
        w.services
            .delete_personal_credential(&Caller::person(&bob), &second.client_id),
    )
    .unwrap();
    block_on(
        w.services
            .delete_personal_credential(&as_ada, &first.client_id),
    )
    .unwrap();
    assert!(
        block_on(w.store.find_credential(&first.client_id))
            .unwrap()
            .is_none()
    );
    let err = block_on(
        w.services
            .delete_personal_credential(&as_ada, &first.client_id),
    )
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "gone");
    let fresh = block_on(w.services.create_personal_credential(&as_ada)).unwrap();
    block_on(
        w.services
            .delete_personal_credential(&machine(), &fresh.client_id),
    )
    .unwrap();
}

#[test]
fn a_personal_credential_never_signs_webhooks_however_old() {
    let w = world();
    let ada = w.user(ACME, "ada@acme.io", Role::Admin);
    // Ada's credential is the organization's oldest: the machine one comes later.
    let personal = block_on(w.services.create_personal_credential(&Caller::person(&ada))).unwrap();
    assert_eq!(
        block_on(w.services.signing_credential(&org(ACME))).unwrap(),
        None,
        "no organization credential yet"
    );
    w.clock.advance(1_000);
    let machine = port_core::ports::Credential {
        org_id: org(ACME),
        client_id: "ci-client".to_owned(),
        client_secret: port_core::ports::ClientSecret::new("s".repeat(40)),
        created_at: w.clock.now(),
        user: None,
    };
    block_on(w.store.add_credential(&machine)).unwrap();
    let signing = block_on(w.services.signing_credential(&org(ACME)))
        .unwrap()
        .expect("the organization credential");
    assert_eq!(signing.client_id, machine.client_id);
    assert_ne!(signing.client_id, personal.client_id);
}
