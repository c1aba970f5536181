//! Property tests of the run state machine: random command sequences against the
//! invariants every adapter relies on.

use port_core::ErrorKind;
use port_core::id::{ActionIdentifier, OrgId, RunId};
use port_core::run::{
    ActionRef, ApprovalPolicy, FinalStatus, NewRun, Run, RunCommand, RunEvent, RunPatch, RunSource,
    RunStatus, start, transition,
};
use port_core::time::Timestamp;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const USERS: [&str; 3] = ["alice", "bob", "carol"];

fn new_run(synchronized: bool, policy: ApprovalPolicy) -> NewRun {
    NewRun {
        id: RunId::parse("r_QOz6WoOB1Q2lmhZZ").unwrap(),
        org_id: OrgId::parse("org_7SDeR821bunhS8es").unwrap(),
        properties: Map::new(),
        source: RunSource::Api,
        required_approval: Value::Bool(policy != ApprovalPolicy::NotRequired),
        approval_policy: policy,
        payload: Some(json!({"type": "WEBHOOK"})),
        action: ActionRef {
            identifier: ActionIdentifier::parse("deploy").unwrap(),
            title: None,
            icon: None,
            deleted: false,
        },
        blueprint: None,
        entity: None,
        synchronized,
        created_by: "creator".into(),
        impersonated_by: None,
        chain_depth: 0,
    }
}

fn policy() -> impl Strategy<Value = ApprovalPolicy> {
    let approvers = proptest::sample::subsequence(USERS.to_vec(), 0..=3)
        .prop_map(|v| v.into_iter().map(str::to_owned).collect::<Vec<_>>());
    prop_oneof![
        Just(ApprovalPolicy::NotRequired),
        approvers
            .clone()
            .prop_map(|approvers| ApprovalPolicy::Any { approvers }),
        approvers.prop_map(|approvers| ApprovalPolicy::All { approvers }),
    ]
}

fn final_status() -> impl Strategy<Value = FinalStatus> {
    prop_oneof![Just(FinalStatus::Success), Just(FinalStatus::Failure)]
}

fn links() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec("https://ci/[a-z]{1,4}", 0..3)
}

fn patch() -> impl Strategy<Value = RunPatch> {
    (
        proptest::option::of(final_status()),
        proptest::option::of("[a-z ]{0,8}"),
        proptest::option::of(links()),
        proptest::option::of("[a-z]{0,8}"),
        proptest::option::of("[a-z0-9]{1,6}"),
    )
        .prop_map(
            |(status, status_label, link, summary, external_run_id)| RunPatch {
                status,
                status_label,
                link,
                summary,
                external_run_id,
                message: None,
            },
        )
}

fn user() -> impl Strategy<Value = String> {
    proptest::sample::select(USERS.to_vec()).prop_map(str::to_owned)
}

fn command() -> impl Strategy<Value = RunCommand> {
    prop_oneof![
        4 => patch().prop_map(RunCommand::Patch),
        3 => ("[a-z ]{0,12}", proptest::option::of(final_status()), proptest::option::of("[a-z]{0,5}"))
            .prop_map(|(message, termination_status, status_label)| RunCommand::AddLog { message, termination_status, status_label }),
        2 => (user(), proptest::option::of("[a-z]{0,5}"), proptest::bool::weighted(0.2)).prop_map(|(user_id, description, by_organization)| RunCommand::Approve { user_id, description, by_organization }),
        1 => (user(), proptest::option::of("[a-z]{0,5}"), proptest::bool::weighted(0.2)).prop_map(|(user_id, description, by_organization)| RunCommand::Decline { user_id, description, by_organization }),
        1 => (user(), proptest::option::of("[a-z]{0,5}")).prop_map(|(by, reason)| RunCommand::Withdraw { by, reason }),
        1 => prop_oneof![Just(200u16), Just(204), Just(400), Just(500)]
            .prop_map(|status_code| RunCommand::SynchronizedResponse { status_code, response: json!({"ok": true}) }),
        1 => "[a-z]{1,8}".prop_map(|reason| RunCommand::DeliveryExhausted { reason }),
        1 => Just(RunCommand::TimedOut),
        1 => "[a-z]{0,4}".prop_map(|text| RunCommand::SetResponse { response: json!({ "text": text }) }),
    ]
}

/// A command and, when accepted, the status before and after it.
type Outcome = (RunCommand, Result<(RunStatus, RunStatus), ErrorKind>);

/// A whole played sequence: the final run, the creation events, the accepted steps
/// and every command's outcome.
type Played = (Run, Vec<RunEvent>, Vec<Step>, Vec<Outcome>);

/// What the invariants need to know about one accepted step.
struct Step {
    before: Run,
    after: Run,
    events: Vec<RunEvent>,
}

fn play(synchronized: bool, policy: ApprovalPolicy, commands: Vec<RunCommand>) -> Played {
    let started = start(
        new_run(synchronized, policy),
        Timestamp::from_unix_millis(1_000),
    );
    let mut run = started.run;
    let first_events = started.events;
    let mut steps = Vec::new();
    let mut results = Vec::new();
    for (i, command) in commands.into_iter().enumerate() {
        let now = Timestamp::from_unix_millis(2_000 + i64::try_from(i).unwrap() * 10);
        match transition(&run, command.clone(), "actor", now) {
            Ok(t) => {
                results.push((command, Ok((run.status(), t.run.status()))));
                steps.push(Step {
                    before: run.clone(),
                    after: t.run.clone(),
                    events: t.events,
                });
                run = t.run;
            }
            Err(e) => results.push((command, Err(e.kind))),
        }
    }
    (run, first_events, steps, results)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn terminal_is_absorbing_and_ended_at_is_stamped_once(
        synchronized in any::<bool>(), policy in policy(), commands in proptest::collection::vec(command(), 0..40)
    ) {
        let (_, _, steps, _) = play(synchronized, policy, commands);
        for step in &steps {
            prop_assert_eq!(step.after.ended_at().is_some(), step.after.is_terminal());
            if step.before.is_terminal() {
                // Only a no-op patch is accepted after the end.
                prop_assert_eq!(&step.before, &step.after);
                prop_assert!(step.events.is_empty());
            }
            if let Some(ended) = step.before.ended_at() {
                prop_assert_eq!(step.after.ended_at(), Some(ended));
            }
        }
    }

    #[test]
    fn a_run_ends_at_most_once(
        synchronized in any::<bool>(), policy in policy(), commands in proptest::collection::vec(command(), 0..40)
    ) {
        let (_, _, steps, _) = play(synchronized, policy, commands);
        let endings = steps.iter().filter(|s| !s.before.is_terminal() && s.after.is_terminal()).count();
        prop_assert!(endings <= 1);
    }

    #[test]
    fn dispatch_is_emitted_at_most_once_and_only_on_entering_in_progress(
        synchronized in any::<bool>(), policy in policy(), commands in proptest::collection::vec(command(), 0..40)
    ) {
        let (_, first_events, steps, _) = play(synchronized, policy.clone(), commands);
        let mut dispatches = first_events.iter().filter(|e| **e == RunEvent::Dispatch).count();
        prop_assert_eq!(dispatches == 1, policy == ApprovalPolicy::NotRequired);
        for step in &steps {
            let here = step.events.iter().filter(|e| **e == RunEvent::Dispatch).count();
            if here > 0 {
                prop_assert_eq!(step.before.status(), RunStatus::WaitingForApproval);
                prop_assert_eq!(step.after.status(), RunStatus::InProgress);
            }
            dispatches += here;
        }
        prop_assert!(dispatches <= 1);
    }

    #[test]
    fn the_stored_link_list_is_the_last_one_written(
        policy in policy(), commands in proptest::collection::vec(command(), 0..40)
    ) {
        let (run, _, _, results) = play(false, policy, commands);
        let last_written = results
            .iter()
            .rev()
            .find_map(|(command, result)| match (command, result) {
                (RunCommand::Patch(RunPatch { link: Some(link), .. }), Ok(_)) => Some(link.clone()),
                _ => None,
            })
            .unwrap_or_default();
        prop_assert_eq!(run.link, last_written);
    }

    #[test]
    fn a_synchronized_runs_status_never_changes_through_a_patch_or_log(
        policy in policy(), commands in proptest::collection::vec(command(), 0..40)
    ) {
        let (_, _, _, results) = play(true, policy, commands);
        for (command, result) in &results {
            let sets_status = match command {
                RunCommand::Patch(p) => p.status.is_some(),
                RunCommand::AddLog { termination_status, .. } => termination_status.is_some(),
                _ => false,
            };
            if let (true, Ok((before, after))) = (sets_status, result) {
                // Only a no-op retry on an ended run may be accepted.
                prop_assert_eq!(before, after, "{:?} changed a synchronized run's status", command);
            }
        }
    }

    #[test]
    fn updated_at_and_version_move_only_on_change(
        synchronized in any::<bool>(), policy in policy(), commands in proptest::collection::vec(command(), 0..40)
    ) {
        let (_, _, steps, _) = play(synchronized, policy, commands);
        for step in &steps {
            if step.before == step.after {
                continue;
            }
            prop_assert_eq!(step.after.version, step.before.version + 1);
            prop_assert!(step.after.updated_at > step.before.updated_at);
        }
    }
}

fn in_progress() -> Run {
    start(
        new_run(false, ApprovalPolicy::NotRequired),
        Timestamp::from_unix_millis(1_000),
    )
    .run
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

#[test]
fn a_label_alone_keeps_the_run_going_and_absent_keys_are_untouched() {
    let run = in_progress();
    let first = RunPatch {
        summary: Some("first".into()),
        link: Some(vec!["https://a".into()]),
        ..RunPatch::default()
    };
    let run = transition(&run, RunCommand::Patch(first), "me", at(2_000))
        .unwrap()
        .run;
    let label = RunPatch {
        status_label: Some("Deploying".into()),
        ..RunPatch::default()
    };
    let run = transition(&run, RunCommand::Patch(label), "me", at(3_000))
        .unwrap()
        .run;
    assert_eq!(run.status(), RunStatus::InProgress);
    assert_eq!(run.summary.as_deref(), Some("first"));
    assert_eq!(run.link, vec!["https://a".to_owned()]);
    assert_eq!(run.status_label.as_deref(), Some("Deploying"));
}

#[test]
fn after_the_end_only_an_identical_patch_is_accepted() {
    let run = in_progress();
    let done = RunPatch {
        status: Some(FinalStatus::Success),
        link: Some(vec!["https://a".into()]),
        ..RunPatch::default()
    };
    let ended = transition(&run, RunCommand::Patch(done.clone()), "me", at(2_000))
        .unwrap()
        .run;
    assert_eq!(ended.ended_at(), Some(at(2_000)));
    let retried = transition(&ended, RunCommand::Patch(done), "me", at(3_000)).unwrap();
    assert_eq!(retried.run, ended);
    let changed = RunPatch {
        summary: Some("late".into()),
        ..RunPatch::default()
    };
    let err = transition(&ended, RunCommand::Patch(changed), "me", at(3_000)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::RunExhausted);
    assert_eq!(err.status(), 422);
    let flip = RunPatch {
        status: Some(FinalStatus::Failure),
        ..RunPatch::default()
    };
    assert_eq!(
        transition(&ended, RunCommand::Patch(flip), "me", at(3_000))
            .unwrap_err()
            .kind,
        ErrorKind::RunExhausted
    );
}

#[test]
fn a_second_termination_log_is_run_exhausted() {
    let run = in_progress();
    let log = |status| RunCommand::AddLog {
        message: "bye".into(),
        termination_status: Some(status),
        status_label: None,
    };
    let ended = transition(&run, log(FinalStatus::Success), "me", at(2_000))
        .unwrap()
        .run;
    assert_eq!(ended.status(), RunStatus::Success);
    let err = transition(&ended, log(FinalStatus::Failure), "me", at(3_000)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::RunExhausted);
}

#[test]
fn all_approval_waits_for_every_designated_approver() {
    let policy = ApprovalPolicy::All {
        approvers: vec!["alice".into(), "bob".into()],
    };
    let run = start(new_run(false, policy), at(1_000));
    assert!(run.events.is_empty());
    let approve = |user: &str| RunCommand::Approve {
        user_id: user.into(),
        description: None,
        by_organization: false,
    };
    let one = transition(&run.run, approve("alice"), "alice", at(2_000)).unwrap();
    assert_eq!(one.run.status(), RunStatus::WaitingForApproval);
    assert!(one.events.is_empty());
    let outsider = transition(&one.run, approve("carol"), "carol", at(2_500)).unwrap_err();
    assert_eq!(outsider.kind, ErrorKind::MissingPermissions);
    let two = transition(&one.run, approve("bob"), "bob", at(3_000)).unwrap();
    assert_eq!(two.run.status(), RunStatus::InProgress);
    assert!(two.events.contains(&RunEvent::Dispatch));
    let again = transition(&two.run, approve("bob"), "bob", at(4_000)).unwrap_err();
    assert_eq!(again.kind, ErrorKind::RunNotWaitingForApproval);
}

#[test]
fn an_organization_credential_decides_alone() {
    let policy = ApprovalPolicy::All {
        approvers: vec!["alice".into(), "bob".into()],
    };
    let run = start(new_run(false, policy), at(1_000)).run;
    let approved = transition(
        &run,
        RunCommand::Approve {
            user_id: "ci".into(),
            description: None,
            by_organization: true,
        },
        "ci",
        at(2_000),
    )
    .unwrap();
    assert_eq!(approved.run.status(), RunStatus::InProgress);
    assert!(approved.events.contains(&RunEvent::Dispatch));
    let declined = transition(
        &run,
        RunCommand::Decline {
            user_id: "ci".into(),
            description: None,
            by_organization: true,
        },
        "ci",
        at(2_000),
    )
    .unwrap();
    assert_eq!(declined.run.status(), RunStatus::Declined);
}

#[test]
fn a_withdrawn_run_fails_and_only_while_it_waits() {
    let run = start(
        new_run(false, ApprovalPolicy::Any { approvers: vec![] }),
        at(1_000),
    )
    .run;
    let withdraw = RunCommand::Withdraw {
        by: "ada@x.io".into(),
        reason: Some("wrong inputs".into()),
    };
    let withdrawn = transition(&run, withdraw.clone(), "ada@x.io", at(2_000))
        .unwrap()
        .run;
    assert_eq!(withdrawn.status(), RunStatus::Failure);
    assert_eq!(
        withdrawn.status_label.as_deref(),
        Some("Withdrawn by ada@x.io")
    );
    assert_eq!(withdrawn.summary.as_deref(), Some("wrong inputs"));
    assert_eq!(withdrawn.ended_at(), Some(at(2_000)));
    let again = transition(&withdrawn, withdraw.clone(), "ada@x.io", at(3_000)).unwrap_err();
    assert_eq!(again.kind, ErrorKind::RunNotWaitingForApproval);
    let err = transition(&in_progress(), withdraw, "ada@x.io", at(3_000)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::RunNotWaitingForApproval);
}

#[test]
fn decline_ends_the_run_and_stamps_ended_at() {
    let run = start(
        new_run(false, ApprovalPolicy::Any { approvers: vec![] }),
        at(1_000),
    )
    .run;
    let declined = transition(
        &run,
        RunCommand::Decline {
            user_id: "bob".into(),
            description: Some("no".into()),
            by_organization: false,
        },
        "bob",
        at(2_000),
    )
    .unwrap()
    .run;
    assert_eq!(declined.status(), RunStatus::Declined);
    assert_eq!(declined.ended_at(), Some(at(2_000)));
    assert_eq!(
        declined.approval().unwrap().description.as_deref(),
        Some("no")
    );
}

#[test]
fn synchronized_answers_decide_the_status() {
    let run = start(new_run(true, ApprovalPolicy::NotRequired), at(1_000)).run;
    let ok = transition(
        &run,
        RunCommand::SynchronizedResponse {
            status_code: 200,
            response: json!({"a": 1}),
        },
        "portd",
        at(2_000),
    )
    .unwrap()
    .run;
    assert_eq!(ok.status(), RunStatus::Success);
    assert_eq!(ok.response, Some(json!({"a": 1})));
    let bad = transition(
        &run,
        RunCommand::SynchronizedResponse {
            status_code: 500,
            response: json!("oops"),
        },
        "portd",
        at(2_000),
    )
    .unwrap()
    .run;
    assert_eq!(bad.status(), RunStatus::Failure);
    assert!(bad.summary.unwrap().contains("500"));
    let manual = RunPatch {
        status: Some(FinalStatus::Success),
        ..RunPatch::default()
    };
    assert_eq!(
        transition(&run, RunCommand::Patch(manual), "me", at(2_000))
            .unwrap_err()
            .kind,
        ErrorKind::RunSynchronizedError
    );
}

#[test]
fn delivery_exhaustion_and_timeouts_fail_the_run_with_a_reason() {
    let run = in_progress();
    let failed = transition(
        &run,
        RunCommand::DeliveryExhausted {
            reason: "HTTP 400".into(),
        },
        "portd",
        at(2_000),
    )
    .unwrap();
    assert_eq!(failed.run.status(), RunStatus::Failure);
    assert_eq!(
        failed.run.summary.as_deref(),
        Some("Webhook delivery failed: HTTP 400")
    );
    assert_eq!(failed.system_logs.len(), 1);
    let timed_out = transition(&run, RunCommand::TimedOut, "portd", at(2_000)).unwrap();
    assert_eq!(timed_out.run.status_label.as_deref(), Some("Timed out"));
    assert_eq!(timed_out.run.status(), RunStatus::Failure);
}

#[test]
fn the_v1_view_has_the_seeds_keys_in_order() {
    let run = in_progress();
    let v1 = run.to_v1_json();
    let keys: Vec<&str> = v1.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "status",
            "action",
            "endedAt",
            "source",
            "relatedEntityExists",
            "relatedBlueprintExists",
            "properties",
            "createdAt",
            "updatedAt",
            "createdBy",
            "updatedBy"
        ]
    );
    assert_eq!(v1["endedAt"], Value::Null);
    assert_eq!(run.to_v2_json()["action"]["identifier"], "deploy");
}

/// Applies `command` to a fresh run (waiting for approval by alice when `waiting`).
fn apply_to_fresh(waiting: bool, command: RunCommand) -> Result<Run, port_core::PortError> {
    let run = if waiting {
        let policy = ApprovalPolicy::Any {
            approvers: vec!["alice".into()],
        };
        start(new_run(false, policy), at(1_000)).run
    } else {
        in_progress()
    };
    transition(&run, command, "me", at(2_000)).map(|t| t.run)
}

/// Makes the command to check from a text; `true` when it needs a run waiting for approval.
type BoundedCommand = fn(String) -> (bool, RunCommand);

fn patch_of(patch: RunPatch) -> RunCommand {
    RunCommand::Patch(patch)
}

/// `Ok` or the refusal's message, which must be Port's 422 `invalid_request`.
fn refusal(outcome: Result<Run, port_core::PortError>) -> Option<String> {
    outcome.err().map(|e| {
        assert_eq!(
            (e.kind, e.status()),
            (ErrorKind::InvalidRequest, 422),
            "{e}"
        );
        e.message
    })
}

#[test]
fn text_fields_are_bounded_in_characters_at_exactly_their_limit() {
    use port_core::run::{
        MAX_APPROVAL_DESCRIPTION_CHARS, MAX_EXTERNAL_RUN_ID_CHARS, MAX_LINK_CHARS, MAX_LINKS,
        MAX_STATUS_LABEL_CHARS, MAX_SUMMARY_CHARS,
    };
    assert_eq!(
        MAX_SUMMARY_CHARS, 65_536,
        "a summary holds 64 Ki characters"
    );
    // Each field at its bound is kept; one character more is refused, naming the field
    // and the bound. Characters, not bytes: `é` is two bytes and counts once.
    let cases: [(&str, usize, BoundedCommand); 7] = [
        ("summary", MAX_SUMMARY_CHARS, |s| {
            (
                false,
                patch_of(RunPatch {
                    summary: Some(s),
                    ..RunPatch::default()
                }),
            )
        }),
        ("statusLabel", MAX_STATUS_LABEL_CHARS, |s| {
            (
                false,
                patch_of(RunPatch {
                    status_label: Some(s),
                    ..RunPatch::default()
                }),
            )
        }),
        ("statusLabel", MAX_STATUS_LABEL_CHARS, |s| {
            (
                false,
                RunCommand::AddLog {
                    message: "m".into(),
                    termination_status: None,
                    status_label: Some(s),
                },
            )
        }),
        ("link[1]", MAX_LINK_CHARS, |s| {
            (
                false,
                patch_of(RunPatch {
                    link: Some(vec!["https://a".into(), s]),
                    ..RunPatch::default()
                }),
            )
        }),
        ("externalRunId", MAX_EXTERNAL_RUN_ID_CHARS, |s| {
            (
                false,
                patch_of(RunPatch {
                    external_run_id: Some(s),
                    ..RunPatch::default()
                }),
            )
        }),
        ("description", MAX_APPROVAL_DESCRIPTION_CHARS, |s| {
            (
                true,
                RunCommand::Approve {
                    user_id: "alice".into(),
                    description: Some(s),
                    by_organization: false,
                },
            )
        }),
        ("description", MAX_APPROVAL_DESCRIPTION_CHARS, |s| {
            (
                true,
                RunCommand::Decline {
                    user_id: "alice".into(),
                    description: Some(s),
                    by_organization: false,
                },
            )
        }),
    ];
    for (field, max, command) in cases {
        for unit in ["a", "é"] {
            let (waiting, at_bound) = command(unit.repeat(max));
            assert_eq!(
                refusal(apply_to_fresh(waiting, at_bound)),
                None,
                "{field} at {max}"
            );
            let (waiting, beyond) = command(unit.repeat(max + 1));
            let message = refusal(apply_to_fresh(waiting, beyond)).expect("refused");
            assert_eq!(
                message,
                format!(
                    "{field}: must be at most {max} characters; this one has {}",
                    max + 1
                )
            );
        }
    }

    let links = |n: usize| {
        patch_of(RunPatch {
            link: Some(vec!["https://a".into(); n]),
            ..RunPatch::default()
        })
    };
    assert_eq!(refusal(apply_to_fresh(false, links(MAX_LINKS))), None);
    assert_eq!(
        refusal(apply_to_fresh(false, links(MAX_LINKS + 1))).as_deref(),
        Some("link: at most 100 links; this list has 101")
    );
}

#[test]
fn an_oversized_field_is_refused_before_the_run_is_looked_at() {
    // Even an ended run answers with the bound, not `run_exhausted`: the request itself
    // is wrong, whatever the run's state.
    let ended = transition(
        &in_progress(),
        patch_of(RunPatch {
            status: Some(FinalStatus::Success),
            ..RunPatch::default()
        }),
        "me",
        at(2_000),
    )
    .unwrap()
    .run;
    let huge = RunPatch {
        summary: Some("[".repeat(70_000)),
        ..RunPatch::default()
    };
    let err = transition(&ended, patch_of(huge), "me", at(3_000)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
    assert!(
        err.message
            .starts_with("summary: must be at most 65536 characters"),
        "{}",
        err.message
    );
}

#[test]
fn a_reported_response_is_stored_and_leaves_the_status_alone() {
    let run = in_progress();
    let report = |response: Value| RunCommand::SetResponse { response };
    let reported = transition(&run, report(json!({"ok": true})), "agent", at(2_000))
        .unwrap()
        .run;
    assert_eq!(reported.status(), RunStatus::InProgress);
    assert_eq!(reported.response, Some(json!({"ok": true})));
    // Port's agent reports any JSON value, or the answer's text.
    let text = transition(&reported, report(json!("plain text")), "agent", at(2_500))
        .unwrap()
        .run;
    assert_eq!(text.response, Some(json!("plain text")));

    let done = RunPatch {
        status: Some(FinalStatus::Success),
        ..RunPatch::default()
    };
    let ended = transition(&text, RunCommand::Patch(done), "agent", at(3_000))
        .unwrap()
        .run;
    let retried = transition(&ended, report(json!("plain text")), "agent", at(4_000)).unwrap();
    assert_eq!(retried.run, ended, "a retried report changes nothing");
    let late = transition(&ended, report(json!("other")), "agent", at(4_000)).unwrap_err();
    assert_eq!(late.kind, ErrorKind::RunExhausted);

    let huge = json!("x".repeat(port_core::run::MAX_RESPONSE_BYTES));
    let err = transition(&run, report(huge), "agent", at(2_000)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
    assert!(err.message.starts_with("response:"), "{}", err.message);

    let waiting = start(
        new_run(false, ApprovalPolicy::Any { approvers: vec![] }),
        at(1_000),
    )
    .run;
    let early = transition(&waiting, report(json!(1)), "agent", at(2_000)).unwrap_err();
    assert_eq!(early.kind, ErrorKind::InvalidRequest);
}
