//! Run summaries: the markdown renderer's work grows linearly with its input, and a run
//! page shows the longest summary the API accepts (64 Ki characters) quickly, whatever
//! markdown it half-opens.

use port_server::testing::TestServer;
use serde_json::{Value, json};

use crate::browser::{Browser, visible};
use crate::{seeded, sign_in, with_browser};

/// The longest summary the API keeps (port_core::run::MAX_SUMMARY_CHARS).
const SUMMARY_CHARS: usize = 65_536;

/// How long a run page may take, from navigation to its summary on screen. The renderer
/// this replaced took 1.3 s to 12 s on these inputs (or never finished: a deep quote
/// overflowed its stack); this one takes tens of milliseconds.
const SHOWN_WITHIN_MS: f64 = 2_000.0;

/// `unit` repeated to exactly `SUMMARY_CHARS` characters.
fn filled(unit: &str) -> String {
    unit.chars().cycle().take(SUMMARY_CHARS).collect()
}

/// Backtick runs of every length from 1 up, none ever closed.
fn backtick_stairs() -> String {
    let mut text = String::new();
    let mut k = 1;
    while text.chars().count() < SUMMARY_CHARS {
        text.push_str(&"`".repeat(k));
        text.push('a');
        k += 1;
    }
    text.chars().take(SUMMARY_CHARS).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_markdown_renderer_keeps_its_output_and_does_linear_work() {
    let server = TestServer::start().await.expect("portd starts");
    with_browser(&server, async |b: &Browser| {
        // Any page of the app can import the renderer; nothing here needs a session.
        b.goto("/").await;
        b.find("#client-id").await;
        // WebDriver's script timeout (60 s by default) bounds the whole run of checks.
        let report = b
            .client
            .execute_async(include_str!("markdown_checks.js"), vec![])
            .await
            .expect("the checks run");
        visible(&format!(
            "ui: markdown scanner steps per character and growth when doubled: {}",
            report["figures"]
        ));
        let failures = report["failures"].as_array().cloned().unwrap_or_default();
        assert!(failures.is_empty(), "{:#}", Value::Array(failures));
        assert_eq!(
            report["figures"].as_object().map(serde_json::Map::len),
            Some(16),
            "every pathological input was measured: {report}"
        );
    })
    .await;
    server.shutdown().await.expect("portd stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_page_shows_the_longest_summaries_quickly_whatever_their_markdown() {
    let (server, api, _runner) = seeded().await;
    let summaries = [
        ("brackets", filled("[")),
        ("unclosed strong", filled("**a ")),
        ("nested emphasis", filled("**_*")),
        ("star run", format!("a{}", "*".repeat(SUMMARY_CHARS - 1))),
        ("backtick stairs", backtick_stairs()),
        (
            "long link label",
            format!("x{}]", "[".repeat(SUMMARY_CHARS - 2)),
        ),
        ("unclosed links", filled("[a](")),
        (
            "spaced heading",
            format!("# a{}b", " ".repeat(SUMMARY_CHARS - 4)),
        ),
        ("deep quote", filled("> ")),
    ];
    let mut runs = Vec::new();
    for (name, summary) in summaries {
        assert_eq!(summary.chars().count(), SUMMARY_CHARS, "{name}");
        // A run waiting for approval: nothing else changes it while the page is open.
        let run = api
            .execute("restart_service", json!({ "properties": {} }))
            .await;
        api.patch(
            &format!("/actions/runs/{run}"),
            json!({ "summary": summary }),
        )
        .await;
        runs.push((name, run));
    }
    with_browser(&server, async |b: &Browser| {
        b.goto("/").await;
        sign_in(b, &server).await;
        b.find("#runs-body tr").await;
        for (name, run) in &runs {
            b.goto(&format!("/runs/{run}")).await;
            // `performance.now()` counts from the start of this navigation.
            let shown = b
                .wait_for(
                    &format!("the {name} summary"),
                    "const s = document.querySelector('#run-summary'); \
                     return s && s.hasChildNodes() && performance.now()",
                    vec![],
                )
                .await;
            let ms = shown.as_f64().expect("a time");
            visible(&format!("ui: a 64 Ki-character summary ({name}) shown {ms:.0} ms after navigating"));
            assert!(
                ms < SHOWN_WITHIN_MS,
                "the {name} summary took {ms:.0} ms to show (at most {SHOWN_WITHIN_MS} ms)"
            );
            // Some of them are all markup (nested emphasis leaves no text), none is
            // nothing.
            let html = b
                .js("return document.querySelector('#run-summary').innerHTML.length", vec![])
                .await;
            assert!(html.as_u64().is_some_and(|n| n > 10_000), "{name}: {html}");
        }
        // The brackets are text, all of them.
        b.goto(&format!("/runs/{}", runs[0].1)).await;
        let brackets = b
            .wait_for(
                "the brackets",
                "const s = document.querySelector('#run-summary'); return s && s.textContent.length",
                vec![],
            )
            .await;
        assert_eq!(brackets, json!(SUMMARY_CHARS));
    })
    .await;
    server.shutdown().await.expect("portd stops");
}
