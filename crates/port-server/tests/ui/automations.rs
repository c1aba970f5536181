//! The Automations view: the organization's automations with what starts them, none of
//! them offered as a form to execute, and each one's runs, live, linking to the run page.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::browser::{Browser, screenshot_dir};
use crate::runner::{AUTOMATION, AUTOMATION_LABEL, Api};
use crate::{seeded, sign_in, strings, with_browser};

/// The automation's condition: it holds for every new service but the seeded one, whose
/// creation may still be in the outbox when the automation is saved.
const CONDITION: &str = ".diff.after.identifier != \"checkout\"";

/// The runs of `action` the API lists, newest first.
async fn runs_of(api: &Api, action: &str) -> Vec<Value> {
    let answer = api
        .send(
            reqwest::Method::GET,
            &format!("/actions/runs?version=v2&action={action}"),
            None,
        )
        .await;
    answer["runs"].as_array().cloned().unwrap_or_default()
}

/// Waits until `action` has `count` runs, all ended; returns them, newest first.
async fn ended_runs(api: &Api, action: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let runs = runs_of(api, action).await;
        if runs.len() == count && runs.iter().all(|r| r["status"] == "SUCCESS") {
            return runs;
        }
        assert!(
            Instant::now() < deadline,
            "{action}: expected {count} successful runs, the API lists {runs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automations_are_listed_with_their_events_and_their_runs_link_to_the_run_page() {
    let (server, api, runner) = seeded().await;
    api.post(
        "/actions",
        json!({
            "identifier": AUTOMATION,
            "title": "Announce new services",
            "description": "Tells the team about every service added to the catalog.",
            "trigger": {
                "type": "automation",
                "event": { "type": "ENTITY_CREATED", "blueprintIdentifier": "service" },
                "condition": { "type": "JQ", "expressions": [CONDITION], "combinator": "and" },
            },
            "invocationMethod": {
                "type": "WEBHOOK",
                "url": runner.url,
                "body": {
                    "action": { "identifier": "{{ .action.identifier }}" },
                    "context": { "runId": "{{ .run.id }}" },
                    "service": "{{ .event.diff.after.identifier }}",
                },
            },
            "publish": true,
        }),
    )
    .await;
    api.post(
        "/actions",
        json!({
            "identifier": "audit_deploys",
            "title": "Audit deploys",
            "trigger": {
                "type": "automation",
                "event": { "type": "RUN_UPDATED", "actionIdentifier": "deploy_service" },
            },
            "invocationMethod": { "type": "WEBHOOK", "url": runner.url },
            "publish": false,
        }),
    )
    .await;
    api.post(
        "/blueprints/service/entities",
        json!({ "identifier": "payments", "title": "Payments", "properties": {} }),
    )
    .await;
    let first = ended_runs(&api, AUTOMATION, 1).await;
    assert_eq!(first[0]["source"], "AUTOMATION", "{first:#?}");
    let first = first[0]["id"].as_str().expect("the run's id").to_owned();

    with_browser(&server, async |b: &Browser| {
        b.goto("/automations").await;
        sign_in(b, &server).await;

        // The list: each automation with its event, what it watches, whether it is
        // published and its condition.
        let item = format!("li[data-automation='{AUTOMATION}']");
        assert_eq!(
            b.wait_text(&format!("{item} a.automation-link")).await,
            "Announce new services"
        );
        let listed = b
            .js(
                "const item = (id) => document.querySelector(`li[data-automation='${id}']`); \
                 const read = (id) => { const i = item(id); return {
                   event: i.querySelector('.tag-event').textContent,
                   published: i.querySelector('.tag-published, .tag-unpublished').textContent,
                   watches: i.querySelector('.automation-watches').textContent,
                   conditions: [...i.querySelectorAll('.condition-list code')].map(c => c.textContent),
                   noCondition: Boolean(i.querySelector('.condition-none')),
                   runs: i.querySelector('a.automation-runs-link').getAttribute('href'),
                   runsName: i.querySelector('a.automation-runs-link').textContent,
                 }; };
                 return {
                   ids: [...document.querySelectorAll('li[data-automation]')].map(i => i.dataset.automation),
                   announce: read(arguments[0]),
                   audit: read('audit_deploys'),
                   current: document.querySelector('#nav a[aria-current=page]').dataset.nav,
                 }",
                vec![json!(AUTOMATION)],
            )
            .await;
        assert_eq!(
            strings(&listed["ids"]),
            ["announce_service", "audit_deploys"],
            "automations only, by title: {listed:#}"
        );
        let announce = &listed["announce"];
        assert_eq!(announce["event"], "ENTITY_CREATED", "{listed:#}");
        assert_eq!(announce["published"], "Published", "{listed:#}");
        assert_eq!(
            announce["watches"], "announce_service · blueprint service",
            "{listed:#}"
        );
        assert_eq!(strings(&announce["conditions"]), [CONDITION], "{listed:#}");
        assert_eq!(announce["runs"], "/automations/announce_service", "{listed:#}");
        assert_eq!(
            announce["runsName"], "Runs of Announce new services →",
            "the runs link names its automation: {listed:#}"
        );
        let audit = &listed["audit"];
        assert_eq!(audit["event"], "RUN_UPDATED", "{listed:#}");
        assert_eq!(audit["published"], "Unpublished", "{listed:#}");
        assert_eq!(
            audit["watches"], "audit_deploys · action deploy_service",
            "{listed:#}"
        );
        assert_eq!(audit["noCondition"], true, "{listed:#}");
        assert_eq!(listed["current"], "automations", "{listed:#}");
        let dir = screenshot_dir();
        b.screenshot_page(1280, &dir.join("automations.png")).await;

        // Automations are not offered as actions to execute.
        b.click("#nav a[data-nav=actions]").await;
        b.wait_text("a.action-link").await;
        let actions = b
            .js(
                "return [...document.querySelectorAll('#actions-list a')].map(a => a.getAttribute('href'))",
                vec![],
            )
            .await;
        assert_eq!(
            strings(&actions),
            ["/actions/deploy_service", "/actions/restart_service"],
            "self-service actions only"
        );
        // An automation's address under /actions leads to its page, not to a form.
        b.goto(&format!("/actions/{AUTOMATION}")).await;
        b.wait_for(
            "the automation's page",
            "return location.pathname === '/automations/' + arguments[0] \
             && document.querySelector('#automation-trigger dd')",
            vec![json!(AUTOMATION)],
        )
        .await;
        assert_eq!(
            b.js("return document.querySelector('#action-form')", vec![])
                .await,
            Value::Null
        );

        // From the list to the automation's runs, by its link; the heading takes focus.
        b.goto("/automations").await;
        b.click(&format!("{item} a.automation-runs-link")).await;
        b.wait_for(
            "the run in the automation's runs",
            "return document.querySelector(`#automation-runs-body tr[data-run='${arguments[0]}'] [data-status=SUCCESS]`)",
            vec![json!(first)],
        )
        .await;
        assert_eq!(b.path().await, "/automations/announce_service");
        assert_eq!(b.wait_text("h1").await, "Announce new services");
        assert_eq!(
            b.js("return document.activeElement.tagName", vec![]).await,
            "H1"
        );
        let trigger = b.wait_text("#automation-trigger").await;
        assert!(
            trigger.contains("ENTITY_CREATED")
                && trigger.contains("When a service entity is created")
                && trigger.contains(CONDITION),
            "{trigger}"
        );
        let row = b
            .js(
                "const r = document.querySelector(`#automation-runs-body tr[data-run='${arguments[0]}']`); return {
                   status: r.querySelector('.badge').textContent,
                   label: r.querySelector('.run-status-label').textContent,
                   created: r.querySelector('.col-created time').getAttribute('datetime'),
                   link: r.querySelector('a.run-link').getAttribute('href'),
                   headers: [...document.querySelectorAll('#automation-runs-table th')].map(t => t.textContent),
                 }",
                vec![json!(first)],
            )
            .await;
        assert_eq!(row["status"], "Success", "{row:#}");
        assert_eq!(row["label"], AUTOMATION_LABEL, "{row:#}");
        assert!(
            row["created"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{row:#}"
        );
        assert_eq!(row["link"], format!("/runs/{first}"), "{row:#}");
        assert_eq!(
            strings(&row["headers"]),
            ["Status", "Run", "Created", "Duration"],
            "{row:#}"
        );

        // The list is live: the next service's run shows up at the top without a reload.
        b.js("window.__samePage = true", vec![]).await;
        api.post(
            "/blueprints/service/entities",
            json!({ "identifier": "search", "title": "Search", "properties": {} }),
        )
        .await;
        let second = ended_runs(&api, AUTOMATION, 2).await;
        let second = second[0]["id"].as_str().expect("the run's id").to_owned();
        assert_ne!(second, first);
        b.wait_for(
            "the new run at the top, ended",
            "const rows = [...document.querySelectorAll('#automation-runs-body tr')]; \
             return rows.length === 2 && rows[0].dataset.run === arguments[0] \
               && rows[0].dataset.status === 'SUCCESS' && rows[1].dataset.run === arguments[1]",
            vec![json!(second), json!(first)],
        )
        .await;
        assert_eq!(b.js("return window.__samePage === true", vec![]).await, true);
        b.screenshot_page(1280, &dir.join("automation.png")).await;
        b.screenshot_page(390, &dir.join("automation-phone.png"))
            .await;

        // Each run links to the run page, which links back to the automation.
        b.click(&format!("#automation-runs-body tr[data-run='{first}'] a.run-link"))
            .await;
        b.wait_for(
            "the run page",
            "return location.pathname === '/runs/' + arguments[0] \
             && document.querySelector('#run-status [data-status=SUCCESS]')",
            vec![json!(first)],
        )
        .await;
        let details = b.wait_text("#run-details-list").await;
        assert!(details.contains("AUTOMATION"), "{details}");
        let back = b
            .js(
                "const a = [...document.querySelectorAll('#run-details-list a')] \
                   .find(a => a.textContent === 'Announce new services'); \
                 return a && a.getAttribute('href')",
                vec![],
            )
            .await;
        assert_eq!(back, "/automations/announce_service");
    })
    .await;
    drop(runner);
    server.shutdown().await.expect("portd stops");
}
