//! Browser tests of the web UI: headless Chromium (over chromedriver) against a real
//! portd, with the test playing the team's backend (see `runner`).
//!
//! Without Chromium these tests print `skipped: chromium not installed` and pass,
//! unless `CI` is set. Screenshots go to `target/ui-screenshots/`. `people` signs
//! people in with passwords (and checks the CSRF protection over plain HTTP); `sso`
//! by single sign-on against a real OpenID Provider under node.

mod automations;
mod browser;
mod people;
mod runner;
mod sso;
mod summary;

use std::panic::AssertUnwindSafe;

use futures::FutureExt as _;
use port_server::testing::TestServer;
use serde_json::{Value, json};

use crate::browser::{Browser, screenshot_dir};
use crate::runner::{Api, EARLY_LINES, LATE_LINES, LINKS, Runner};

/// Wraps the page's `fetch` so that the first log stream ends right after the first
/// chunk holding a `log` event, and records each stream's `Last-Event-ID` header.
const CUT_FIRST_STREAM: &str = r"
    const original = window.fetch;
    window.__streams = [];
    window.fetch = async (url, init) => {
        const response = await original(url, init);
        if (!String(url).includes('/logs/stream')) return response;
        window.__streams.push((init && init.headers && init.headers['last-event-id']) || null);
        if (window.__streams.length > 1) return response;
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        const body = new ReadableStream({
            async pull(controller) {
                const { value, done } = await reader.read();
                if (done) { controller.close(); return; }
                controller.enqueue(value);
                if (decoder.decode(value, { stream: true }).includes('event: log')) {
                    reader.cancel();
                    controller.close();
                }
            },
        });
        return new Response(body, { status: response.status, headers: response.headers });
    };
";

/// A server with a catalog whose actions are delivered to `runner`.
async fn seeded() -> (TestServer, Api, Runner) {
    let server = TestServer::start().await.expect("portd starts");
    let api = Api::new(&server.api_url, server.token().await);
    let runner = Runner::start(api.clone()).await;
    api.post(
        "/blueprints",
        json!({
            "identifier": "service",
            "title": "Service",
            "schema": { "properties": { "version": { "type": "string", "title": "Version" } }, "required": [] },
        }),
    )
    .await;
    api.post(
        "/blueprints/service/entities",
        json!({ "identifier": "checkout", "title": "Checkout", "properties": {} }),
    )
    .await;
    let invocation = json!({ "type": "WEBHOOK", "url": runner.url });
    api.post(
        "/actions",
        json!({
            "identifier": "deploy_service",
            "title": "Deploy service",
            "description": "Rolls a tagged build out to an environment.",
            "trigger": {
                "type": "self-service",
                "operation": "DAY-2",
                "blueprintIdentifier": "service",
                "userInputs": {
                    "properties": {
                        "version": { "type": "string", "title": "Version", "description": "A git tag, like v1.4.2." },
                        "environment": { "type": "string", "title": "Environment", "enum": ["staging", "production"], "default": "staging" },
                        "replicas": { "type": "number", "title": "Replicas", "default": 2 },
                        "canary": { "type": "boolean", "title": "Canary first" },
                        "labels": { "type": "object", "title": "Labels" },
                    },
                    "required": ["version", "environment"],
                    "order": ["version", "environment", "replicas", "canary", "labels"],
                },
            },
            "invocationMethod": invocation,
        }),
    )
    .await;
    api.post(
        "/actions",
        json!({
            "identifier": "restart_service",
            "title": "Restart service",
            "trigger": {
                "type": "self-service",
                "operation": "CREATE",
                "userInputs": { "properties": { "reason": { "type": "string", "title": "Reason" } } },
            },
            "requiredApproval": true,
            "invocationMethod": invocation,
        }),
    )
    .await;
    (server, api, runner)
}

/// Runs `body` with a browser, closing the session whatever happens.
async fn with_browser<F>(server: &TestServer, body: F)
where
    F: AsyncFnOnce(&Browser),
{
    let Some(browser) = Browser::launch(&server.base_url).await else {
        return;
    };
    let outcome = AssertUnwindSafe(body(&browser)).catch_unwind().await;
    browser.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn sign_in(browser: &Browser, server: &TestServer) {
    browser.find("#client-id").await;
    browser.fill("#client-id", &server.client_id).await;
    browser.fill("#client-secret", &server.client_secret).await;
    browser.click("form.signin button[type=submit]").await;
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_from_the_form_is_watched_live_to_success() {
    let (server, api, runner) = seeded().await;
    with_browser(&server, async |b: &Browser| {
        // Signing in: a wrong secret is refused on the page, the right one lands on the
        // page that was asked for, and the token lives in session storage only.
        b.goto("/actions").await;
        b.find("#client-id").await;
        b.fill("#client-id", &server.client_id).await;
        b.fill("#client-secret", "not-the-secret").await;
        b.click("form.signin button[type=submit]").await;
        assert!(b.wait_text("#sign-in-error").await.contains("Wrong"));
        sign_in(b, &server).await;
        let title = b.wait_text("a.action-link").await;
        assert_eq!(title, "Deploy service");
        let stored = b
            .js(
                "return [sessionStorage.length, localStorage.length, document.cookie]",
                vec![],
            )
            .await;
        assert_eq!(stored, json!([1, 0, ""]), "the token is in sessionStorage only");

        // The generated form: labels, required marks, help, one control per type.
        b.click("a.action-link").await;
        b.find("#action-form").await;
        let form = b
            .js(
                "const q = (s) => document.querySelector(s); return {
                   entity: q('#run-entity') && q('#run-entity').getAttribute('aria-required'),
                   version: q('label[for=input-version]').innerText,
                   versionHelp: q('#' + q('#input-version').getAttribute('aria-describedby')).innerText,
                   environment: q('#input-environment').tagName + ':' + [...q('#input-environment').options].map(o => o.text).join(','),
                   replicas: q('#input-replicas').type + ':' + q('#input-replicas').value,
                   canary: q('#input-canary').type,
                   labels: q('#input-labels').tagName,
                   order: [...document.querySelectorAll('#action-form :is(input, select, textarea)')].map(e => e.id),
                 }",
                vec![],
            )
            .await;
        assert_eq!(form["entity"], "true", "{form}");
        assert!(form["version"].as_str().unwrap().contains("Version"), "{form}");
        assert_eq!(form["versionHelp"], "A git tag, like v1.4.2.", "{form}");
        assert_eq!(form["environment"], "SELECT:staging,production", "{form}");
        assert_eq!(form["replicas"], "number:2", "{form}");
        assert_eq!(form["canary"], "checkbox", "{form}");
        assert_eq!(form["labels"], "TEXTAREA", "{form}");
        assert_eq!(
            strings(&form["order"]),
            [
                "run-entity",
                "input-version",
                "input-environment",
                "input-replicas",
                "input-canary",
                "input-labels"
            ]
        );

        // A refused execution shows the API's message next to the form.
        b.fill("#run-entity", "checkout").await;
        b.click("#execute").await;
        let error = b.wait_text("#form-error").await;
        assert!(error.contains("version"), "{error}");
        assert_eq!(b.path().await, "/actions/deploy_service");
        let dir = screenshot_dir();
        b.screenshot_page(1280, &dir.join("action-form.png")).await;

        // The page's first log stream will be cut after its first log event, as a flaky
        // network would; the page must resume it with Last-Event-ID.
        b.js(CUT_FIRST_STREAM, vec![]).await;

        // Executing opens the new run's page.
        b.fill("#input-version", "v1.4.2").await;
        b.find("#input-environment")
            .await
            .select_by_label("production")
            .await
            .expect("choosing an environment");
        b.fill("#input-replicas", "3").await;
        b.click("#execute").await;
        let path = b
            .wait_for(
                "the run page",
                "return location.pathname.startsWith('/runs/') && location.pathname",
                vec![],
            )
            .await;
        let run_id = path.as_str().unwrap().trim_start_matches("/runs/").to_owned();

        // The first lines arrive while the run is still in progress...
        b.wait_for(
            "the early log lines",
            "return document.querySelectorAll('#log-lines li').length >= arguments[0]",
            vec![json!(EARLY_LINES.len())],
        )
        .await;
        let label = b.wait_text("#run-status-label").await;
        assert_eq!(label, "Rolling out");
        assert_eq!(
            b.wait_text("#run-status .badge").await,
            "In progress",
            "the run has not ended yet"
        );
        assert_eq!(b.wait_text("#log-state").await, "Live");
        let inputs = b.wait_text("#run-inputs").await;
        assert!(
            inputs.contains("v1.4.2") && inputs.contains("production"),
            "{inputs}"
        );
        // ...and the rest appear on the same page, without a reload, once the runner
        // goes on.
        b.js("window.__samePage = true", vec![]).await;
        runner.gate.notify_one();
        b.wait_for(
            "the final status",
            "return document.querySelector('#run-status [data-status=SUCCESS]')",
            vec![],
        )
        .await;
        b.wait_for(
            "every log line",
            "return document.querySelectorAll('#log-lines li').length === arguments[0]",
            vec![json!(EARLY_LINES.len() + LATE_LINES.len())],
        )
        .await;
        assert_eq!(b.js("return window.__samePage === true", vec![]).await, true);
        let resumed = b.js("return window.__streams", vec![]).await;
        let resumed = resumed.as_array().expect("the streams opened");
        assert!(resumed.len() >= 2, "the cut stream was reopened: {resumed:?}");
        assert_eq!(resumed[0], Value::Null, "the first stream starts afresh");
        assert!(
            resumed[1].as_str().is_some_and(|id| id.parse::<u64>().is_ok_and(|id| id >= 1)),
            "the second resumes after the last line seen: {resumed:?}"
        );
        let lines = b
            .js(
                "return [...document.querySelectorAll('#log-lines .log-message')].map(e => e.textContent)",
                vec![],
            )
            .await;
        let expected: Vec<&str> = EARLY_LINES.iter().chain(&LATE_LINES).copied().collect();
        assert_eq!(strings(&lines), expected);
        assert_eq!(b.wait_text("#run-status").await, "Success\nDeployed");
        assert_eq!(b.wait_text("#log-state").await, "Complete");

        // Links and the summary, rendered as markdown with the markup attempts as text.
        let links = b
            .js(
                "return [...document.querySelectorAll('#run-links a')].map(a => a.href)",
                vec![],
            )
            .await;
        assert_eq!(strings(&links), LINKS);
        let summary = b
            .js(
                "const s = document.querySelector('#run-summary'); return {
                   heading: s.querySelector('h4') && s.querySelector('h4').textContent,
                   strong: s.querySelector('strong') && s.querySelector('strong').textContent,
                   code: s.querySelector('code') && s.querySelector('code').textContent,
                   items: s.querySelectorAll('li').length,
                   links: [...s.querySelectorAll('a')].map(a => a.getAttribute('href')),
                   images: document.querySelectorAll('img:not(.brand img)').length,
                   scriptLinks: document.querySelectorAll('a[href^=\"javascript\" i]').length,
                   text: s.textContent,
                 }",
                vec![],
            )
            .await;
        assert_eq!(summary["heading"], "Deployed", "{summary}");
        assert_eq!(summary["strong"], "checkout", "{summary}");
        assert_eq!(summary["code"], "v1.4.2", "{summary}");
        assert_eq!(summary["items"], 2, "{summary}");
        assert_eq!(
            summary["links"],
            json!(["https://example.com/releases/v1.4.2"]),
            "{summary}"
        );
        assert_eq!(summary["images"], 0, "no image element: {summary}");
        assert_eq!(summary["scriptLinks"], 0, "no javascript: link: {summary}");
        let text = summary["text"].as_str().unwrap();
        assert!(
            text.contains("<img src=x onerror=alert(1)>") && text.contains("a bad link"),
            "the markup shows as text: {text}"
        );
        assert!(
            b.client.get_alert_text().await.is_err(),
            "no script ran an alert"
        );

        // Affected entities and delivery attempts.
        b.wait_for(
            "the affected entity",
            "const t = document.querySelector('#run-entities'); return t && t.innerText.includes('checkout') && t.innerText.includes('UPDATE')",
            vec![],
        )
        .await;
        let attempt = b
            .wait_for(
                "a delivery attempt",
                "const s = document.querySelector('#run-deliveries .delivery-status'); \
                 const l = document.querySelector('#run-deliveries .delivery-latency'); \
                 return s && l && [s.innerText, l.innerText]",
                vec![],
            )
            .await;
        assert_eq!(attempt[0], "200", "{attempt}");
        assert!(
            attempt[1].as_str().unwrap().ends_with(" ms"),
            "{attempt}"
        );
        let timings = b.wait_text("#run-details-list").await;
        assert!(
            timings.contains("Created") && timings.contains("Ended") && timings.contains("Duration"),
            "{timings}"
        );
        assert!(b.wait_text("#run-duration").await.ends_with('s'));

        b.screenshot_page(1280, &dir.join("run-page.png")).await;
        b.screenshot_page(390, &dir.join("run-page-phone.png")).await;

        // The runs list links to the run, and filters.
        api.execute("restart_service", json!({ "properties": { "reason": "memory leak" } }))
            .await;
        b.click("#nav a[data-nav=runs]").await;
        b.wait_for(
            "the run in the list",
            "return document.querySelector(`#runs-body tr[data-run='${arguments[0]}'] [data-status=SUCCESS]`)",
            vec![json!(run_id)],
        )
        .await;
        b.screenshot_page(1280, &dir.join("runs.png")).await;
        b.find("#filter-status")
            .await
            .select_by_label("Failure")
            .await
            .expect("choosing a status");
        b.click("form.filters button[type=submit]").await;
        assert!(
            b.wait_text("#runs-empty")
                .await
                .contains("No runs match")
        );
        assert_eq!(b.path().await, "/?status=FAILURE");
        b.click("form.filters button[type=button]").await;
        b.click(&format!("#runs-body tr[data-run='{run_id}'] a")).await;
        b.wait_for(
            "the run page again",
            "return location.pathname === '/runs/' + arguments[0] && document.querySelectorAll('#log-lines li').length === 7",
            vec![json!(run_id)],
        )
        .await;
    })
    .await;
    drop(runner);
    server.shutdown().await.expect("portd stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_waiting_for_approval_are_approved_or_declined_from_their_page() {
    let (server, api, _runner) = seeded().await;
    let body = json!({ "properties": { "reason": "memory leak" } });
    let approved = api.execute("restart_service", body.clone()).await;
    let declined = api.execute("restart_service", body).await;
    with_browser(&server, async |b: &Browser| {
        // A deep link survives signing in.
        b.goto(&format!("/runs/{approved}")).await;
        sign_in(b, &server).await;
        assert_eq!(b.wait_text("#run-status .badge").await, "Waiting for approval");
        b.find("#approval-reason").await;
        b.fill("#approval-reason", "Looks right").await;
        // Keyboard order: the reason, then approve, then decline.
        b.js("document.querySelector('#approval-reason').focus()", vec![])
            .await;
        b.find("#approval-reason")
            .await
            .send_keys("\u{e004}")
            .await
            .expect("pressing tab");
        assert_eq!(b.focused_id().await, "approve");
        b.screenshot_page(1280, &screenshot_dir().join("run-approval.png"))
            .await;
        // The approval's answer is held back until the log stream has seen the run
        // end, the order a quick backend makes likely: the older answer must not take
        // the page back to "In progress".
        b.js(
            "const original = window.fetch; \
             window.fetch = async (...args) => { \
               const response = await original(...args); \
               if (String(args[0]).includes('/approval')) { \
                 const until = Date.now() + 10000; \
                 while (Date.now() < until \
                        && !document.querySelector('#log-state[data-state=ended]')) { \
                   await new Promise((resolve) => setTimeout(resolve, 20)); \
                 } \
                 window.approvalHeldUntilEnd = true; \
               } \
               return response; \
             };",
            vec![],
        )
        .await;
        b.click("#approve").await;
        b.wait_for(
            "the approval's late answer",
            "return window.approvalHeldUntilEnd === true",
            vec![],
        )
        .await;
        b.wait_for(
            "the approved run to finish",
            "return document.querySelector('#run-status [data-status=SUCCESS]')",
            vec![],
        )
        .await;
        assert!(b.js("return document.querySelector('#run-approval').hidden", vec![]).await == true);
        b.wait_for(
            "its log line",
            "return document.querySelector('#log-lines li') && document.querySelector('#log-lines li').innerText.includes('Restarting')",
            vec![],
        )
        .await;

        b.goto(&format!("/runs/{declined}")).await;
        b.wait_text("#run-approval").await;
        b.fill("#approval-reason", "Not during the freeze").await;
        b.click("#decline").await;
        b.wait_for(
            "the declined status",
            "return document.querySelector('#run-status [data-status=DECLINED]')",
            vec![],
        )
        .await;
        let run = api
            .send(
                reqwest::Method::GET,
                &format!("/actions/runs/{declined}?version=v2"),
                None,
            )
            .await;
        assert_eq!(run["run"]["status"], "DECLINED");

        // The runs list is live: a run started elsewhere shows up without a reload.
        b.click("#nav a[data-nav=runs]").await;
        b.wait_for(
            "the list",
            "return document.querySelectorAll('#runs-body tr').length === 2",
            vec![],
        )
        .await;
        let third = api
            .execute("restart_service", json!({ "properties": {} }))
            .await;
        b.wait_for(
            "the new run at the top",
            "const first = document.querySelector('#runs-body tr'); return first && first.dataset.run === arguments[0]",
            vec![json!(third)],
        )
        .await;

        // Paging, two runs a page: "Older" follows the API's `next`, "Newer" comes back.
        let rows = "return [...document.querySelectorAll('#runs-body tr')].map(r => r.dataset.run).join(',')";
        b.goto("/?limit=2").await;
        b.wait_for(
            "the first page",
            &format!("{rows} === arguments[0]"),
            vec![json!(format!("{third},{declined}"))],
        )
        .await;
        b.click("#runs-older").await;
        b.wait_for(
            "the second page",
            &format!("{rows} === arguments[0]"),
            vec![json!(approved)],
        )
        .await;
        assert!(b.path().await.starts_with("/?limit=2&before="));
        assert_eq!(
            b.js("return document.querySelector('#runs-older').disabled", vec![])
                .await,
            true
        );
        b.click("#runs-newer").await;
        b.wait_for(
            "the first page again",
            &format!("{rows} === arguments[0]"),
            vec![json!(format!("{third},{declined}"))],
        )
        .await;
        assert_eq!(b.path().await, "/?limit=2");

        // Signing out forgets the token and shows the sign-in form.
        b.click("#sign-out").await;
        b.find("#client-id").await;
        assert_eq!(b.js("return sessionStorage.length", vec![]).await, 0);
    })
    .await;
    server.shutdown().await.expect("portd stops");
}
