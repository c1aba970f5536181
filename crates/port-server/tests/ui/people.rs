//! People in the web UI: signing in with a password, the session cookie and its CSRF
//! token, what a person is offered (the actions they may run, approve and decline to
//! approvers only) and the admin pages.

use port_core::access::{Email, Role, TeamName};
use port_core::id::OrgId;
use port_core::service::Caller;
use port_core::service::access::NewUser;
use port_server::testing::TestServer;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::runner::Api;
use crate::{seeded, strings, with_browser};

pub const PASSWORD: &str = "correct horse battery staple";

/// The organization's own credential, as a caller of the services.
pub fn machine(server: &TestServer) -> Caller {
    Caller::machine(
        OrgId::parse(&server.org_id).expect("the org id"),
        &server.client_id,
    )
}

/// Adds a user to the server's organization, with [`PASSWORD`] unless `password` is
/// false (a single sign-on user).
pub async fn add_person(server: &TestServer, email: &str, role: Role, password: bool) {
    let services = server.state().services();
    services
        .create_user(
            &machine(server),
            NewUser {
                email: Email::parse(email).expect("an address"),
                role,
                first_name: None,
                last_name: None,
                teams: Vec::<TeamName>::new(),
            },
        )
        .await
        .expect("the user is created");
    if password {
        let hash = port_server::password::hash_password(PASSWORD);
        services
            .set_password(&machine(server), email, Some(&hash))
            .await
            .expect("the password is set");
    }
}

/// Signs in on the page's person form.
pub async fn sign_in_as(b: &Browser, email: &str) {
    b.find("#email").await;
    b.fill("#email", email).await;
    b.fill("#password", PASSWORD).await;
    b.click("#password-submit").await;
    b.wait_for(
        "the signed-in header",
        "const e = document.querySelector('#identity'); return e && !e.hidden && e.textContent === arguments[0]",
        vec![json!(email)],
    )
    .await;
}

pub async fn sign_out(b: &Browser) {
    b.click("#sign-out").await;
    b.find("#email").await;
}

struct Answer {
    status: u16,
    body: Value,
    set_cookie: Option<String>,
}

async fn call(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("portd answers");
    let status = response.status().as_u16();
    let set_cookie = response
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().expect("ASCII").to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        body,
        set_cookie,
    }
}

/// Over plain HTTP (no browser needed): the cookie authenticates, but nothing changes
/// without the session's CSRF token; bearer tokens need none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cookie_changes_nothing_without_its_csrf_token() {
    let server = TestServer::start().await.expect("portd starts");
    add_person(&server, "ada@acme.io", Role::Admin, true).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.base_url);

    // A wrong password and an unknown address get the same answer.
    let wrong = call(
        http.post(url("/ui/session"))
            .json(&json!({"email": "ada@acme.io", "password": "wrong"})),
    )
    .await;
    let unknown = call(
        http.post(url("/ui/session"))
            .json(&json!({"email": "nobody@acme.io", "password": "wrong"})),
    )
    .await;
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.body["error"], "unauthorized");
    assert!(wrong.set_cookie.is_none());

    // A form post signs in (the address in any case) and sets the cookie.
    let signed_in = call(
        http.post(url("/ui/session"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "email=ADA%40acme.io&password={}",
                PASSWORD.replace(' ', "+")
            )),
    )
    .await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    assert_eq!(signed_in.body["user"]["email"], "ada@acme.io");
    let csrf = signed_in.body["csrfToken"]
        .as_str()
        .expect("a CSRF token")
        .to_owned();
    let set_cookie = signed_in.set_cookie.expect("a session cookie");
    assert!(set_cookie.starts_with("portd_session="), "{set_cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain http: {set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert!(
        !cookie.contains(&csrf),
        "the CSRF token is not the session's"
    );

    // Reading needs no CSRF token.
    let read = call(http.get(url("/v1/actions")).header(COOKIE, &cookie)).await;
    assert_eq!(read.status, 200, "{}", read.body);
    let session = call(http.get(url("/ui/session")).header(COOKIE, &cookie)).await;
    assert_eq!(session.status, 200);
    assert_eq!(session.body["csrfToken"], csrf.as_str());

    // Changing something does: refused without it, or with another.
    let blueprint =
        json!({"identifier": "service", "title": "Service", "schema": {"properties": {}}});
    for header in [None, Some("not-the-token")] {
        let mut request = http
            .post(url("/v1/blueprints"))
            .header(COOKIE, &cookie)
            .json(&blueprint);
        if let Some(value) = header {
            request = request.header("x-csrf-token", value);
        }
        let refused = call(request).await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert_eq!(refused.body["ok"], false);
        assert_eq!(refused.body["error"], "csrf_failed");
    }
    let created = call(
        http.post(url("/v1/blueprints"))
            .header(COOKIE, &cookie)
            .header("x-csrf-token", &csrf)
            .json(&blueprint),
    )
    .await;
    assert!(created.status < 300, "{} {}", created.status, created.body);
    // A bearer token needs none: browsers never add one by themselves.
    let api = Api::new(&server.api_url, server.token().await);
    api.post(
        "/blueprints",
        json!({"identifier": "team", "title": "Team", "schema": {"properties": {}}}),
    )
    .await;

    // Another site cannot sign a browser in (login CSRF).
    let cross_site = call(
        http.post(url("/ui/session"))
            .header("origin", "https://evil.example")
            .json(&json!({"email": "ada@acme.io", "password": PASSWORD})),
    )
    .await;
    assert_eq!(cross_site.status, 403);
    assert_eq!(cross_site.body["error"], "csrf_failed");

    // Signing out needs the token too, then the cookie is worth nothing.
    let refused = call(http.delete(url("/ui/session")).header(COOKIE, &cookie)).await;
    assert_eq!(refused.body["error"], "csrf_failed");
    let out = call(
        http.delete(url("/ui/session"))
            .header(COOKIE, &cookie)
            .header("x-csrf-token", &csrf),
    )
    .await;
    assert_eq!(out.status, 200);
    assert!(out.set_cookie.unwrap().contains("Max-Age=0"));
    let after = call(http.get(url("/v1/actions")).header(COOKIE, &cookie)).await;
    assert_eq!(after.status, 401);
    let after = call(http.get(url("/ui/session")).header(COOKIE, &cookie)).await;
    assert_eq!(after.status, 401);

    // Guessing is throttled, before the password is even checked.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let answer = call(
            http.post(url("/ui/session"))
                .json(&json!({"email": "ada@acme.io", "password": "guess"})),
        )
        .await;
        statuses.push(answer.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let throttled = call(
        http.post(url("/ui/session"))
            .json(&json!({"email": "ada@acme.io", "password": PASSWORD})),
    )
    .await;
    assert_eq!(throttled.status, 429, "even the right password waits");
    server.shutdown().await.expect("portd stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_with_a_password_and_is_offered_what_they_may_do() {
    let (server, api, _runner) = seeded().await;
    add_person(&server, "ada@acme.io", Role::Admin, true).await;
    add_person(&server, "bob@acme.io", Role::Member, true).await;
    // Bob may run the deploy; the restart keeps the default (Admins only).
    api.patch(
        "/actions/deploy_service/permissions",
        json!({"execute": {"users": ["bob@acme.io"]}}),
    )
    .await;
    with_browser(&server, async |b: &Browser| {
        b.goto("/actions").await;
        b.find("#email").await;
        b.fill("#email", "bob@acme.io").await;
        b.fill("#password", "not the password").await;
        b.click("#password-submit").await;
        assert!(b.wait_text("#password-error").await.contains("Wrong"));
        assert!(
            b.js("return document.querySelector('#sso').hidden", vec![]).await == true,
            "no single sign-on configured"
        );
        sign_in_as(b, "bob@acme.io").await;

        // Only the action he may run, and no admin pages.
        b.wait_text("a.action-link").await;
        let titles = b
            .js(
                "return [...document.querySelectorAll('a.action-link')].map(a => a.textContent)",
                vec![],
            )
            .await;
        assert_eq!(strings(&titles), ["Deploy service"]);
        let admin_links = b
            .js(
                "return [...document.querySelectorAll('#nav [data-admin]')].filter(a => !a.hidden).length",
                vec![],
            )
            .await;
        assert_eq!(admin_links, 0);
        // The session is an HttpOnly cookie: nothing for scripts to read or steal.
        let stored = b
            .js(
                "return [sessionStorage.length, localStorage.length, document.cookie]",
                vec![],
            )
            .await;
        assert_eq!(stored, json!([0, 0, ""]));

        // A reload keeps him signed in; an action he may not run offers no form.
        b.goto("/actions/restart_service").await;
        assert!(
            b.wait_text("#not-permitted")
                .await
                .contains("may not run")
        );
        assert!(b.js("return !document.querySelector('#action-form')", vec![]).await == true);

        // The form executes through the cookie and the CSRF token.
        b.goto("/actions/deploy_service").await;
        b.fill("#run-entity", "checkout").await;
        b.fill("#input-version", "v2.0.0").await;
        b.click("#execute").await;
        let path = b
            .wait_for(
                "the run page",
                "return location.pathname.startsWith('/runs/') && location.pathname",
                vec![],
            )
            .await;
        let run_id = path.as_str().unwrap().trim_start_matches("/runs/").to_owned();
        let run = api
            .send(
                reqwest::Method::GET,
                &format!("/actions/runs/{run_id}?version=v2"),
                None,
            )
            .await;
        assert_eq!(run["run"]["createdBy"], "bob@acme.io");

        // Signing out ends the session on the server too.
        sign_out(b).await;
        let status = b
            .js(
                "return fetch('/ui/session', {credentials: 'same-origin'}).then(r => r.status)",
                vec![],
            )
            .await;
        assert_eq!(status, 401);

        // An Admin manages teams and permissions from their pages.
        sign_in_as(b, "ada@acme.io").await;
        b.click("#nav a[data-nav=teams]").await;
        b.fill("#team-name", "Platform").await;
        b.fill("#team-members", "bob@acme.io").await;
        b.click("#team-submit").await;
        b.wait_for(
            "the new team",
            "const r = document.querySelector('#teams-table tr[data-team=Platform]'); return r && r.innerText.includes('Platform')",
            vec![],
        )
        .await;
        b.click("#nav a[data-nav=users]").await;
        let users = b
            .wait_for(
                "the users",
                "const rows = [...document.querySelectorAll('#users-table tbody tr')]; return rows.length === 2 && rows.map(r => r.dataset.email)",
                vec![],
            )
            .await;
        assert_eq!(strings(&users), ["ada@acme.io", "bob@acme.io"]);
        assert_eq!(
            b.js("return document.querySelector('#teams-bob_acme_io').value", vec![])
                .await,
            "Platform"
        );
        b.goto("/actions/deploy_service").await;
        b.click("#permissions-link").await;
        b.wait_for(
            "the permissions form",
            "const u = document.querySelector('#execute-users'); return u && u.value === 'bob@acme.io'",
            vec![],
        )
        .await;
        b.fill("#approve-teams", "Platform").await;
        b.click("#permissions-save").await;
        b.wait_for(
            "the saved permissions",
            "return document.querySelector('#permissions-save').textContent === 'Saved'",
            vec![],
        )
        .await;
        let permissions = api
            .send(
                reqwest::Method::GET,
                "/actions/deploy_service/permissions",
                None,
            )
            .await;
        assert_eq!(permissions["permissions"]["approve"]["teams"], json!(["Platform"]));
        assert_eq!(permissions["permissions"]["approve"]["roles"], json!(["Admin"]));
        assert_eq!(permissions["permissions"]["execute"]["users"], json!(["bob@acme.io"]));
    })
    .await;
    server.shutdown().await.expect("portd stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_approves_from_the_run_page_and_the_requester_is_not_offered_to() {
    let (server, api, _runner) = seeded().await;
    add_person(&server, "bob@acme.io", Role::Member, true).await;
    add_person(&server, "carol@acme.io", Role::Member, true).await;
    api.patch(
        "/actions/restart_service/permissions",
        json!({
            "execute": {"roles": ["Member"]},
            "approve": {"roles": [], "users": ["carol@acme.io"]},
        }),
    )
    .await;
    with_browser(&server, async |b: &Browser| {
        // Bob asks for a restart from the form: it waits, and he is not its approver.
        b.goto("/actions/restart_service").await;
        sign_in_as(b, "bob@acme.io").await;
        b.fill("#input-reason", "memory leak").await;
        b.click("#execute").await;
        let path = b
            .wait_for(
                "the run page",
                "return location.pathname.startsWith('/runs/') && location.pathname",
                vec![],
            )
            .await;
        let run_id = path
            .as_str()
            .unwrap()
            .trim_start_matches("/runs/")
            .to_owned();
        assert_eq!(
            b.wait_text("#run-status .badge").await,
            "Waiting for approval"
        );
        b.wait_for(
            "the approver check",
            "return document.querySelector('#run-approval').dataset.checked === 'true'",
            vec![],
        )
        .await;
        assert!(
            b.js(
                "return document.querySelector('#run-approval').hidden",
                vec![]
            )
            .await
                == true,
            "the requester is offered no approval"
        );
        sign_out(b).await;

        // Carol, the approver, approves it from the same page.
        b.goto(&format!("/runs/{run_id}")).await;
        sign_in_as(b, "carol@acme.io").await;
        b.wait_text("#run-approval").await;
        b.fill("#approval-reason", "Go ahead").await;
        b.click("#approve").await;
        b.wait_for(
            "the approved run to finish",
            "return document.querySelector('#run-status [data-status=SUCCESS]')",
            vec![],
        )
        .await;
        let approvers = api
            .send(
                reqwest::Method::GET,
                &format!("/actions/runs/{run_id}/approvers"),
                None,
            )
            .await;
        assert_eq!(approvers["approvers"][0]["userId"], "carol@acme.io");
        assert_eq!(approvers["approvers"][0]["state"], "APPROVED");
    })
    .await;
    server.shutdown().await.expect("portd stops");
}

/// A page of another origin (here another port of the same host: the same *site*, so
/// `SameSite=Strict` still sends the cookie) makes the signed-in browser post to
/// portd. Without the session's CSRF token the change is refused, so nothing is made.
#[tokio::test]
async fn a_forged_request_from_another_origin_changes_nothing() {
    let (server, api, _runner) = seeded().await;
    add_person(&server, "ada@acme.io", Role::Admin, true).await;
    let attacker = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let attacker_url = format!("http://{}/", attacker.local_addr().expect("its address"));
    let page = format!(
        "<!doctype html><title>attacker</title><script>\
         fetch({portd:?} + '/v1/teams', {{method: 'POST', mode: 'no-cors', credentials: 'include', \
         headers: {{'Content-Type': 'text/plain'}}, body: JSON.stringify({{name: 'Pwned'}})}})\
         .then(() => {{ document.title = 'sent'; }}, () => {{ document.title = 'sent'; }});\
         </script>",
        portd = server.base_url,
    );
    let serving = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        loop {
            let Ok((mut socket, _)) = attacker.accept().await else {
                return;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    with_browser(&server, async |b: &Browser| {
        b.goto("/").await;
        sign_in_as(b, "ada@acme.io").await;
        b.js("location.href = arguments[0]", vec![json!(attacker_url)])
            .await;
        b.wait_for(
            "the forged request",
            "return document.title === 'sent'",
            vec![],
        )
        .await;
        let teams = api.send(reqwest::Method::GET, "/teams", None).await;
        assert!(
            !teams.to_string().contains("Pwned"),
            "a forged request made a team: {teams}"
        );
        // Back on portd's own page, the same change with the session's token is made:
        // the cookie was live all along, only the token was missing.
        b.goto("/").await;
        b.js(
            "window.madeStatus = null; \
             fetch('/ui/session').then(r => r.json()).then(s => fetch('/v1/teams', {method: 'POST', \
               headers: {'Content-Type': 'text/plain', 'X-CSRF-Token': s.csrfToken}, \
               body: JSON.stringify({name: 'Made here'})})).then(r => { window.madeStatus = r.status; });",
            vec![],
        )
        .await;
        let status = b
            .wait_for("the same-origin change", "return window.madeStatus", vec![])
            .await;
        assert_eq!(status, json!(200));
        let teams = api.send(reqwest::Method::GET, "/teams", None).await;
        assert!(teams.to_string().contains("Made here"), "{teams}");
        assert!(!teams.to_string().contains("Pwned"), "{teams}");
    })
    .await;
    serving.abort();
    server.shutdown().await.expect("portd stops");
}
