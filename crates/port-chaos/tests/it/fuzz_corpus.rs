//! The fuzz targets' checks (fuzz/src/lib.rs) on stable: over the committed corpus,
//! over mutations of it, and over random inputs, so CI exercises them without nightly.

use std::path::PathBuf;

use proptest::prelude::*;

use crate::fuzz_logic;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{}: a few seeds expected", dir.display());
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// Each seed, then each seed with one byte replaced.
fn run_corpus(target: &str, check: fn(&[u8])) {
    let seeds = corpus(target);
    for seed in &seeds {
        check(seed);
    }
    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let strategy = (0..seeds.len(), any::<usize>(), any::<u8>());
    runner
        .run(&strategy, |(which, at, byte)| {
            let mut input = seeds[which].clone();
            if !input.is_empty() {
                let at = at % input.len();
                input[at] = byte;
            }
            check(&input);
            Ok(())
        })
        .unwrap();
}

#[test]
fn template_target_over_its_corpus() {
    run_corpus("template", fuzz_logic::template);
}

#[test]
fn action_target_over_its_corpus() {
    run_corpus("action", fuzz_logic::action);
}

#[test]
fn signature_target_over_its_corpus() {
    run_corpus("signature", fuzz_logic::signature);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn template_target_on_random_input(text in "[ .a-z|{}\\[\\]\"0-9+,:()$?/*;-]{0,40}") {
        fuzz_logic::template(text.as_bytes());
    }

    /// Sequences of jq's looping and value-growing words: with the step budget, every
    /// combination ends (issue 14: the target no longer skips them).
    #[test]
    fn template_target_on_loops_and_growth(words in prop::collection::vec(prop::sample::select(vec![
        "def f: f;", "def f: [f];", "def f(g): g | f(g);", "f", "f(.)", "repeat(.)", "range(1e9)",
        "range(0; 10; 0)", "recurse", "recurse(. + 1)", "until(false; .)", "while(true; .)",
        "limit(100000; repeat(1))", "[", "]", "(", ")", "|", ",", ". + .", ". * 1e9", "\"x\"",
        "[., .]", "reduce range(64) as $i (.; [., .])", "tojson", "..", "paths", "walk(.)",
        "getpath([\"a\"])", "try", "catch", "?", "1", ".", "{a: .}", ";", "as $x |", "$x",
    ]), 0..12)) {
        fuzz_logic::template(words.join(" ").as_bytes());
    }

    #[test]
    fn signature_target_on_random_input(data in prop::collection::vec(any::<u8>(), 0..128)) {
        fuzz_logic::signature(&data);
    }
}
