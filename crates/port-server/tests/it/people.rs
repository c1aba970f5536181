//! Users, teams and personal credentials over a real portd: Port's shapes, who may
//! manage them, what a personal token says and who it acts as, and `portd users`
//! through the real binary.

use std::io::Write as _;
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use port_core::access::Email;
use port_core::id::OrgId;
use port_core::ports::{ClientSecret, Credential};
use port_server::bootstrap::random_alphanumeric;
use port_server::testing::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

/// A real portd with its organization credential, and people's tokens made on demand.
pub struct Org {
    pub server: TestServer,
    pub http: reqwest::Client,
    /// The organization credential's token (a machine: may do everything).
    pub machine: String,
}

/// An answer: status and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected status: {:#}", self.body);
        self.body
    }

    #[track_caller]
    pub fn expect_error(self, status: u16, error: &str) -> Value {
        let body = self.expect(status);
        assert_eq!(body["ok"], json!(false), "{body:#}");
        assert_eq!(body["error"], json!(error), "{body:#}");
        body
    }
}

impl Org {
    pub async fn start() -> Self {
        let server = TestServer::start().await.expect("portd starts");
        let machine = server.token().await;
        Self {
            server,
            http: reqwest::Client::new(),
            machine,
        }
    }

    pub async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.server.base_url))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("portd answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer { status, body }
    }

    pub async fn get(&self, token: &str, path: &str) -> Answer {
        self.call(token, Method::GET, path, None).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> Answer {
        self.call(token, Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, token: &str, path: &str, body: Value) -> Answer {
        self.call(token, Method::PATCH, path, Some(body)).await
    }

    /// Invites a user with a role (the organization credential invites).
    pub async fn invite(&self, email: &str, role: &str, teams: &[&str]) {
        self.post(
            &self.machine,
            "/v1/users/invite",
            json!({ "invitee": { "email": email, "roles": [role], "teams": teams } }),
        )
        .await
        .expect(200);
    }

    /// A personal credential of `email`, as `POST /v1/auth/credentials` would make
    /// (written to the store: a person's first token has to come from somewhere; the
    /// route itself is tested below), traded for a token through the token route.
    pub async fn token_of(&self, email: &str) -> String {
        let credential = Credential {
            org_id: OrgId::parse(&self.server.org_id).unwrap(),
            client_id: random_alphanumeric(32),
            client_secret: ClientSecret::new(random_alphanumeric(64)),
            created_at: self.server.state().clock().now(),
            user: Some(Email::parse(email).unwrap()),
        };
        self.server
            .state()
            .store()
            .add_credential(&credential)
            .await
            .unwrap();
        self.trade(&credential.client_id, credential.client_secret.expose())
            .await
    }

    /// `POST /v1/auth/access_token`.
    pub async fn trade(&self, client_id: &str, client_secret: &str) -> String {
        let answer = self
            .http
            .post(format!("{}/v1/auth/access_token", self.server.base_url))
            .json(&json!({ "clientId": client_id, "clientSecret": client_secret }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let body: Value = answer.json().await.unwrap();
        body["accessToken"].as_str().unwrap().to_owned()
    }

    /// An Admin and a Member with their tokens.
    pub async fn admin_and_member(&self) -> (String, String) {
        self.invite("admin@example.io", "Admin", &[]).await;
        self.invite("member@example.io", "Member", &[]).await;
        (
            self.token_of("admin@example.io").await,
            self.token_of("member@example.io").await,
        )
    }
}

/// The claims of a JWT, read without checking it.
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn users_and_teams_answer_in_ports_shapes() {
    let org = Org::start().await;
    let m = &org.machine;
    assert_eq!(
        org.post(
            m,
            "/v1/users/invite?notify=false",
            json!({ "invitee": { "email": "Ada@Example.io", "roles": ["Admin"] } }),
        )
        .await
        .expect(200),
        json!({ "ok": true })
    );
    org.post(
        m,
        "/v1/users/invite",
        json!({ "invitee": { "email": "ada@example.io" } }),
    )
    .await
    .expect_error(409, "identifier_taken");
    org.invite("bob@example.io", "Member", &[]).await;

    let user = org.get(m, "/v1/users/ADA@example.io").await.expect(200);
    assert_eq!(
        user["user"]["email"], "ada@example.io",
        "addresses are lower-cased"
    );
    assert_eq!(user["user"]["roles"], json!([{ "name": "Admin" }]));
    assert_eq!(user["user"]["status"], "Invited");
    assert_eq!(user["user"]["orgs"], json!([{ "id": org.server.org_id }]));
    org.get(m, "/v1/users/nobody@example.io")
        .await
        .expect_error(404, "not_found");
    org.get(m, "/v1/users/not-an-address")
        .await
        .expect_error(404, "not_found");

    let team = org
        .post(
            m,
            "/v1/teams",
            json!({ "name": "Platform", "users": ["bob@example.io"], "description": "Runs the platform" }),
        )
        .await
        .expect(200);
    assert_eq!(team["team"]["name"], "Platform");
    assert_eq!(
        team["team"]["users"],
        json!([{ "email": "bob@example.io" }])
    );
    org.post(m, "/v1/teams", json!({ "name": "Platform" }))
        .await
        .expect_error(409, "identifier_taken");
    org.post(
        m,
        "/v1/teams",
        json!({ "name": "Ghosts", "users": ["nobody@example.io"] }),
    )
    .await
    .expect_error(422, "invalid_request");

    // PATCH answers the user's fields beside `ok`, as Port does.
    let patched = org
        .patch(
            m,
            "/v1/users/ada@example.io",
            json!({ "roles": ["Member"], "teams": ["Platform"] }),
        )
        .await;
    // Ada is the only Admin: she may not be demoted.
    patched.expect_error(422, "invalid_request");
    org.invite("carol@example.io", "Admin", &[]).await;
    let patched = org
        .patch(
            m,
            "/v1/users/ada@example.io",
            json!({ "roles": ["Member"], "teams": ["Platform"] }),
        )
        .await
        .expect(200);
    assert_eq!(patched["ok"], true);
    assert_eq!(patched["email"], "ada@example.io");
    assert_eq!(patched["roles"], json!([{ "name": "Member" }]));
    assert_eq!(patched["teams"], json!([{ "name": "Platform" }]));

    let listed = org.get(m, "/v1/users").await.expect(200);
    let emails: Vec<&str> = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        emails,
        ["ada@example.io", "bob@example.io", "carol@example.io"]
    );

    let renamed = org
        .patch(m, "/v1/teams/Platform", json!({ "name": "Platform Team" }))
        .await
        .expect(200);
    assert_eq!(renamed["team"]["name"], "Platform Team");
    assert_eq!(
        renamed["team"]["users"],
        json!([{ "email": "ada@example.io" }, { "email": "bob@example.io" }]),
        "a rename keeps the members"
    );
    let replaced = org
        .call(
            m,
            Method::PUT,
            "/v1/teams/Platform%20Team",
            Some(json!({ "name": "Platform Team", "users": ["carol@example.io"] })),
        )
        .await
        .expect(200);
    assert_eq!(
        replaced["team"]["users"],
        json!([{ "email": "carol@example.io" }])
    );
    assert!(
        replaced["team"].get("description").is_none(),
        "PUT empties what it leaves out"
    );
    let teams = org.get(m, "/v1/teams").await.expect(200);
    assert_eq!(teams["teams"].as_array().unwrap().len(), 1);
    let carol = org.get(m, "/v1/users/carol@example.io").await.expect(200);
    assert_eq!(carol["user"]["teams"], json!([{ "name": "Platform Team" }]));

    org.call(m, Method::DELETE, "/v1/teams/Platform%20Team", None)
        .await
        .expect(200);
    org.get(m, "/v1/teams/Platform%20Team")
        .await
        .expect_error(404, "not_found");
    org.call(m, Method::DELETE, "/v1/users/bob@example.io", None)
        .await
        .expect(200);
    org.get(m, "/v1/users/bob@example.io")
        .await
        .expect_error(404, "not_found");
    org.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn personal_tokens_are_people_and_members_may_not_manage() {
    let org = Org::start().await;
    let (admin, member) = org.admin_and_member().await;

    let machine = claims(&org.machine);
    assert_eq!(machine["isMachine"], true);
    assert!(machine.get("personalToken").is_none() && machine.get("email").is_none());
    let person = claims(&member);
    assert_eq!(person["isMachine"], false);
    assert_eq!(person["personalToken"], true);
    assert_eq!(person["email"], "member@example.io");

    // A Member reads the directory and actions...
    org.get(&member, "/v1/users").await.expect(200);
    org.get(&member, "/v1/teams").await.expect(200);
    org.get(&member, "/v1/actions").await.expect(200);
    // ...and manages nothing.
    let refusals = [
        (
            Method::POST,
            "/v1/users/invite",
            Some(json!({ "invitee": { "email": "eve@example.io", "roles": ["Admin"] } })),
        ),
        (
            Method::PATCH,
            "/v1/users/member@example.io",
            Some(json!({ "roles": ["Admin"] })),
        ),
        (Method::DELETE, "/v1/users/admin@example.io", None),
        (Method::POST, "/v1/teams", Some(json!({ "name": "Mine" }))),
        (
            Method::POST,
            "/v1/blueprints",
            Some(json!({ "identifier": "svc", "title": "Svc", "schema": { "properties": {} } })),
        ),
        (Method::GET, "/v1/audit-log", None),
    ];
    for (method, path, body) in refusals {
        let answer = org.call(&member, method.clone(), path, body.clone()).await;
        assert_eq!(
            (answer.status, answer.body["error"].as_str()),
            (403, Some("missing_permissions")),
            "{method} {path}: {:#}",
            answer.body
        );
        // What the Member may not do, the Admin may (but the Admin's own demotion, below).
        if path != "/v1/users/member@example.io" && path != "/v1/users/admin@example.io" {
            let answer = org.call(&admin, method.clone(), path, body).await;
            assert!(
                answer.status < 300,
                "{method} {path} as Admin: {} {:#}",
                answer.status,
                answer.body
            );
        }
    }
    org.get(&member, "/v1/users/member@example.io")
        .await
        .expect(200);
    assert_eq!(
        org.get(&admin, "/v1/users/member@example.io")
            .await
            .expect(200)["user"]["roles"],
        json!([{ "name": "Member" }]),
        "the Member did not promote themselves"
    );
    org.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_personal_token_acts_as_the_person_as_they_are_now() {
    let org = Org::start().await;
    let (_, member) = org.admin_and_member().await;
    org.post(&member, "/v1/teams", json!({ "name": "Ops" }))
        .await
        .expect_error(403, "missing_permissions");
    // Promoted: the same token may at once.
    org.patch(
        &org.machine,
        "/v1/users/member@example.io",
        json!({ "roles": ["Admin"] }),
    )
    .await
    .expect(200);
    org.post(&member, "/v1/teams", json!({ "name": "Ops" }))
        .await
        .expect(200);
    // Deleted: the same token stops at once.
    org.call(
        &org.machine,
        Method::DELETE,
        "/v1/users/member@example.io",
        None,
    )
    .await
    .expect(200);
    org.get(&member, "/v1/users")
        .await
        .expect_error(401, "unauthorized");
    org.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn people_create_their_own_credentials() {
    let org = Org::start().await;
    let (_, member) = org.admin_and_member().await;
    let created = org
        .call(&member, Method::POST, "/v1/auth/credentials", None)
        .await
        .expect(201);
    let client_id = created["credentials"]["clientId"].as_str().unwrap();
    let secret = created["credentials"]["clientSecret"].as_str().unwrap();
    assert_eq!((client_id.len(), secret.len()), (32, 64));
    let listed = org.get(&member, "/v1/auth/credentials").await.expect(200);
    let ids: Vec<&str> = listed["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["clientId"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&client_id), "{listed}");
    assert!(
        !listed.to_string().contains(secret),
        "secrets are shown once"
    );

    let token = org.trade(client_id, secret).await;
    assert_eq!(claims(&token)["isMachine"], false);
    assert_eq!(claims(&token)["email"], "member@example.io");
    org.post(&token, "/v1/teams", json!({ "name": "Mine" }))
        .await
        .expect_error(403, "missing_permissions");

    // The organization's credentials are the organization's already.
    org.call(&org.machine, Method::POST, "/v1/auth/credentials", None)
        .await
        .expect_error(403, "missing_permissions");

    // Deleted, its tokens stop working.
    let path = format!("/v1/auth/credentials/{client_id}");
    org.call(&member, Method::DELETE, &path, None)
        .await
        .expect(200);
    org.get(&token, "/v1/users")
        .await
        .expect_error(401, "unauthorized");
    org.call(&member, Method::DELETE, &path, None)
        .await
        .expect_error(404, "not_found");
    org.server.shutdown().await.unwrap();
}

fn portd(data_dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portd"))
        .args(args)
        .env("PORTD_DATA_DIR", data_dir)
        .env_remove("PORTD_DATABASE_URL")
        .env_remove("PORTD_SECRET_KEY")
        .env("PORTD_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn portd_users_create_makes_the_first_admin() {
    let org = Org::start().await;
    let dir = org.server.data_dir().to_path_buf();
    let created = tokio::task::spawn_blocking(move || {
        portd(
            &dir,
            &[
                "users",
                "create",
                "--email",
                "Root@Example.io",
                "--admin",
                "--first-name",
                "Ada",
                "--password-stdin",
            ],
            Some("correct horse battery\n"),
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&created.stdout);
    assert!(
        created.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert!(stdout.contains("root@example.io"), "{stdout}");
    assert!(!stdout.contains("correct horse"), "{stdout}");

    let user = org
        .get(&org.machine, "/v1/users/root@example.io")
        .await
        .expect(200);
    assert_eq!(user["user"]["roles"], json!([{ "name": "Admin" }]));
    assert_eq!(user["user"]["firstName"], "Ada");
    let email = Email::parse("root@example.io").unwrap();
    let hash = org
        .server
        .state()
        .store()
        .users_by_email(&email)
        .await
        .unwrap()
        .into_iter()
        .find_map(|(_, hash)| hash)
        .expect("a password hash is stored");
    assert!(hash.as_str().starts_with("$argon2id$"), "{hash:?}");
    assert!(port_server::password::verify_password(
        "correct horse battery",
        &hash
    ));

    // The password changes; a short one, or one given as an argument, is refused.
    let dir = org.server.data_dir().to_path_buf();
    let (changed, short, as_argument, again) = tokio::task::spawn_blocking(move || {
        let set = [
            "users",
            "set-password",
            "--email",
            "root@example.io",
            "--password-stdin",
        ];
        (
            portd(&dir, &set, Some("another good one\n")),
            portd(&dir, &set, Some("short\n")),
            portd(
                &dir,
                &[
                    "users",
                    "set-password",
                    "--email",
                    "root@example.io",
                    "hunter22",
                ],
                None,
            ),
            portd(
                &dir,
                &["users", "create", "--email", "root@example.io"],
                None,
            ),
        )
    })
    .await
    .unwrap();
    assert!(changed.status.success(), "{changed:?}");
    assert!(!short.status.success());
    assert!(!as_argument.status.success());
    assert!(!again.status.success(), "the address is taken");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already"),
        "{again:?}"
    );
    let hash = org
        .server
        .state()
        .store()
        .users_by_email(&email)
        .await
        .unwrap()
        .into_iter()
        .find_map(|(_, hash)| hash)
        .unwrap();
    assert!(port_server::password::verify_password(
        "another good one",
        &hash
    ));

    // The trail says the command line did it.
    let audits = org
        .get(&org.machine, "/v1/audit-log?resources=user")
        .await
        .expect(200);
    let entry = audits["audits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["identifier"] == "root@example.io" && a["action"] == "CREATE")
        .expect("the creation is audited");
    assert_eq!(entry["trigger"]["by"]["userId"], "portd");
    org.server.shutdown().await.unwrap();
}
