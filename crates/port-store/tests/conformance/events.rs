//! The event outbox: which writes record a change event (in their own transaction, so a
//! refused write records none), what the event says, and the leases claims take on them.

use std::collections::BTreeSet;

use anyhow::{Result, ensure};
use port_core::catalog::{AffectedEntity, Entity, EntityOperation};
use port_core::event::{ChangeEvent, ChangeKind, NewChangeEvent, ResourceType};
use port_core::id::{OrgId, RunId};
use port_core::ports::{
    CreateRunOutcome, DeliveryMode, EntityDeletion, EntityWriteMode, IdGenerator, IdempotencyKey,
    Store,
};
use port_core::run::{Run, RunCommand, RunPatch, transition};
use port_core::time::Timestamp;
use serde_json::json;

use super::{
    Shared, at, create, entity, ids, is_already_exists, is_conflict, log, new_delivery, new_org,
    new_run,
};

/// Claims every pending event (as `owner`, at `now`) and completes them: what was
/// recorded since the last drain, oldest first.
async fn drain(store: &dyn Store, owner: &str, now: Timestamp) -> Result<Vec<ChangeEvent>> {
    let events = store
        .claim_events(owner, now, now.plus_millis(60_000), 1_000, u32::MAX)
        .await?;
    let seqs = seqs(&events);
    let done = store.complete_events(owner, &seqs).await?;
    ensure!(
        done == seqs.len() as u64,
        "completed {done} of {} events",
        seqs.len()
    );
    Ok(events)
}

fn seqs(events: &[ChangeEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

fn changes(events: Vec<ChangeEvent>) -> Vec<NewChangeEvent> {
    events.into_iter().map(|e| e.change).collect()
}

fn increasing(events: &[ChangeEvent]) -> bool {
    events.windows(2).all(|w| w[0].seq < w[1].seq)
}

fn bound_to(run: &RunId, e: &Entity, operation: EntityOperation) -> AffectedEntity {
    AffectedEntity {
        org_id: e.org_id.clone(),
        run_id: run.clone(),
        blueprint: e.blueprint.clone(),
        entity: e.identifier.clone(),
        operation,
        at: e.stamp.updated_at,
        by: e.stamp.updated_by.clone(),
        snapshot: e.to_json(),
    }
}

/// The event of `before` becoming `after` (`None`: absent), as every store must record it.
fn entity_change(
    kind: ChangeKind,
    before: Option<&Entity>,
    after: Option<&Entity>,
    by: &str,
    depth: u32,
    at: Timestamp,
) -> NewChangeEvent {
    let current = after.or(before).expect("an entity before or after");
    NewChangeEvent {
        org_id: current.org_id.clone(),
        resource: ResourceType::Entity,
        kind,
        scope: current.blueprint.to_string(),
        subject: current.identifier.to_string(),
        timer: None,
        before: before.map(Entity::to_json),
        after: after.map(Entity::to_json),
        by: by.into(),
        depth,
        at,
    }
}

fn run_change(kind: ChangeKind, before: Option<&Run>, after: &Run) -> NewChangeEvent {
    NewChangeEvent {
        org_id: after.org_id.clone(),
        resource: ResourceType::Run,
        kind,
        scope: after.action.identifier.to_string(),
        subject: after.id.to_string(),
        timer: None,
        before: before.map(Run::to_v2_json),
        after: Some(after.to_v2_json()),
        by: after.updated_by.clone(),
        depth: after.chain_depth,
        at: after.updated_at,
    }
}

/// A run an automation started, `depth` automations deep, stored (its own event drained).
async fn automation_run(
    store: &dyn Store,
    ids: &IdGenerator,
    org: &OrgId,
    depth: u32,
) -> Result<Run> {
    let mut run = new_run(ids, org, "create_microservice", at(0));
    run.chain_depth = depth;
    create(store, &run, None).await?;
    let events = drain(store, "setup", at(0)).await?;
    ensure!(events.len() == 1, "one event for the run: {events:?}");
    Ok(run)
}

pub async fn entity_change_events(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let run = automation_run(&*store, &ids, &org, 2).await?;
    assert_eq!(store.pending_events().await?, 0);

    // Created by a client, bound to no run: depth 0.
    let e = entity(&org, "microservice", "svc", at(1));
    assert!(
        store
            .put_entity(&e, EntityWriteMode::CreateOnly, None, &[])
            .await?
    );
    // A refused create records nothing.
    let refused = bound_to(&run.id, &e, EntityOperation::Create);
    assert!(is_already_exists(
        &store
            .put_entity(&e, EntityWriteMode::CreateOnly, Some(&refused), &[])
            .await
    ));

    // Changed for the run: at the run's chain depth, by the entity's writer.
    let mut changed = e.clone();
    changed
        .properties
        .insert("region".into(), json!("us-east-1"));
    changed.stamp.updated_at = at(2);
    changed.stamp.updated_by = "editor".into();
    let update = bound_to(&run.id, &changed, EntityOperation::Update);
    assert!(
        !store
            .put_entity(&changed, EntityWriteMode::Upsert, Some(&update), &[])
            .await?
    );

    // The same content written again (an integration's resync) is no change, though
    // the write itself is stored.
    let mut resynced = changed.clone();
    resynced.stamp.updated_at = at(3);
    resynced.stamp.updated_by = "ocean".into();
    let resync = bound_to(&run.id, &resynced, EntityOperation::Update);
    assert!(
        !store
            .put_entity(&resynced, EntityWriteMode::Upsert, Some(&resync), &[])
            .await?
    );
    assert_eq!(
        store.get_entity(&org, &e.blueprint, &e.identifier).await?,
        Some(resynced.clone())
    );

    // Created by an upsert, bound to a run the store does not hold: depth 0.
    let other = entity(&org, "microservice", "other", at(4));
    let unknown_run: RunId = ids.next();
    let orphan = bound_to(&unknown_run, &other, EntityOperation::Create);
    assert!(
        store
            .put_entity(&other, EntityWriteMode::Upsert, Some(&orphan), &[])
            .await?
    );

    // Deleted for the run: by the deleter, at the deletion's time, `after` absent.
    let deleted = bound_to(&run.id, &resynced, EntityOperation::Delete);
    let deletion = EntityDeletion {
        by: "deleter",
        at: at(5),
        affected: Some(&deleted),
    };
    assert!(
        store
            .delete_entity(&org, &e.blueprint, &e.identifier, &deletion)
            .await?
    );
    assert!(
        !store
            .delete_entity(&org, &e.blueprint, &e.identifier, &deletion)
            .await?,
        "deleting a missing entity records nothing"
    );

    assert_eq!(store.pending_events().await?, 4);
    let events = drain(&*store, "reader", at(10)).await?;
    assert!(increasing(&events), "{:?}", seqs(&events));
    let expected = vec![
        entity_change(
            ChangeKind::Create,
            None,
            Some(&e),
            "KZ5zDPudPshQMShUb4cLopBEE1fNSJGE",
            0,
            at(1),
        ),
        entity_change(
            ChangeKind::Update,
            Some(&e),
            Some(&changed),
            "editor",
            2,
            at(2),
        ),
        entity_change(
            ChangeKind::Create,
            None,
            Some(&other),
            "KZ5zDPudPshQMShUb4cLopBEE1fNSJGE",
            0,
            at(4),
        ),
        entity_change(
            ChangeKind::Delete,
            Some(&resynced),
            None,
            "deleter",
            2,
            at(5),
        ),
    ];
    let got = changes(events);
    assert_eq!(got, expected);
    assert_eq!(
        (got[3].scope.as_str(), got[3].subject.as_str()),
        ("microservice", "svc"),
        "an entity's event is scoped by its blueprint"
    );
    assert_eq!(store.pending_events().await?, 0);
    Ok(())
}

pub async fn run_change_events(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;

    let mut run = new_run(&ids, &org, "create_microservice", at(0));
    run.chain_depth = 1;
    let first = new_delivery(&ids, &run, DeliveryMode::Webhook, at(0));
    create(&*store, &run, Some(&first)).await?;
    assert!(
        is_already_exists(&store.create_run(&run, None, None).await),
        "the same run twice records nothing"
    );

    // Log lines alone change no field of the run: no event.
    let line = transition(
        &run,
        RunCommand::AddLog {
            message: "hello".into(),
            termination_status: None,
            status_label: None,
        },
        "runner",
        at(1),
    )?;
    assert_eq!(line.run.version, run.version);
    store
        .save_transition(&line.run, 1, &[log(&ids, &run, "hello", at(1))], None)
        .await?;

    let patch = |from: &Run, summary: &str, t: Timestamp| {
        transition(
            from,
            RunCommand::Patch(RunPatch {
                summary: Some(summary.into()),
                ..Default::default()
            }),
            "patcher",
            t,
        )
    };
    let v2 = patch(&run, "first", at(2))?.run;
    store
        .save_transition(&v2, 1, &[log(&ids, &run, "with a change", at(2))], None)
        .await?;
    // A transition decided on a stale version is refused and records nothing.
    let stale = patch(&run, "lost", at(3))?.run;
    assert!(is_conflict(
        &store.save_transition(&stale, 1, &[], None).await
    ));
    let v3 = patch(&v2, "second", at(4))?.run;
    store.save_transition(&v3, 2, &[], None).await?;

    // An idempotency key's replay creates nothing and records nothing.
    let key = IdempotencyKey {
        org_id: org.clone(),
        key: "once".into(),
        created_at: at(5),
    };
    let keyed = new_run(&ids, &org, "deploy_microservice", at(5));
    assert_eq!(
        store.create_run(&keyed, None, Some(&key)).await?,
        CreateRunOutcome::Created
    );
    let replay = new_run(&ids, &org, "deploy_microservice", at(6));
    assert_eq!(
        store.create_run(&replay, None, Some(&key)).await?,
        CreateRunOutcome::Existing(keyed.id.clone())
    );

    let events = drain(&*store, "reader", at(10)).await?;
    assert!(increasing(&events), "{:?}", seqs(&events));
    let expected = vec![
        run_change(ChangeKind::Create, None, &run),
        // `before` is the run stored at the version the transition was decided on.
        run_change(ChangeKind::Update, Some(&run), &v2),
        run_change(ChangeKind::Update, Some(&v2), &v3),
        run_change(ChangeKind::Create, None, &keyed),
    ];
    let got = changes(events);
    assert_eq!(got, expected);
    assert_eq!(got[1].depth, 1, "the run's chain depth");
    assert_eq!(got[1].by, "patcher");
    assert_eq!(
        got[2].before.as_ref().and_then(|b| b.get("summary")),
        Some(&json!("first"))
    );
    assert_eq!(store.pending_events().await?, 0);
    Ok(())
}

/// Writes `n` entities, one event each, and returns the events' subjects in order.
async fn entity_events(store: &dyn Store, org: &OrgId, n: usize) -> Result<Vec<String>> {
    let mut subjects = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("e{i:03}");
        store
            .put_entity(
                &entity(org, "microservice", &id, at(0)),
                EntityWriteMode::Upsert,
                None,
                &[],
            )
            .await?;
        subjects.push(id);
    }
    Ok(subjects)
}

fn subjects(events: &[ChangeEvent]) -> Vec<&str> {
    events.iter().map(|e| e.change.subject.as_str()).collect()
}

pub async fn event_leases(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    entity_events(&*store, &org, 5).await?;
    assert_eq!(store.pending_events().await?, 5);
    assert!(
        store
            .claim_events("a", at(0), at(1_000), 0, u32::MAX)
            .await?
            .is_empty(),
        "limit 0"
    );

    // Oldest first, within the limit.
    let a = store
        .claim_events("a", at(0), at(1_000), 2, u32::MAX)
        .await?;
    assert_eq!(subjects(&a), ["e000", "e001"]);
    assert!(increasing(&a));
    let b = store
        .claim_events("b", at(10), at(2_000), 10, u32::MAX)
        .await?;
    assert_eq!(subjects(&b), ["e002", "e003", "e004"]);
    assert!(a[1].seq < b[0].seq, "seq order across claims");
    assert!(
        store
            .claim_events("c", at(20), at(3_000), 10, u32::MAX)
            .await?
            .is_empty(),
        "every event is leased"
    );
    // What an owner holds it gets again (a restarted worker under its stable id), with
    // the new lease.
    let again = store
        .claim_events("a", at(30), at(1_000), 10, u32::MAX)
        .await?;
    assert_eq!(seqs(&again), seqs(&a));

    // Only the holder completes; completing leaves the others pending.
    assert_eq!(store.complete_events("c", &seqs(&a)).await?, 0);
    assert_eq!(store.pending_events().await?, 5);
    assert_eq!(store.complete_events("a", &[]).await?, 0);
    let mine_and_b = [a[0].seq, a[1].seq, b[0].seq];
    assert_eq!(store.complete_events("a", &mine_and_b).await?, 2);
    assert_eq!(store.pending_events().await?, 3);
    assert_eq!(
        store.complete_events("a", &seqs(&a)).await?,
        0,
        "already completed"
    );

    // A new event is free at once, and comes after the leased ones.
    let late = entity(&org, "microservice", "late", at(30));
    store
        .put_entity(&late, EntityWriteMode::CreateOnly, None, &[])
        .await?;
    let c = store
        .claim_events("c", at(1_500), at(5_000), 10, u32::MAX)
        .await?;
    assert_eq!(subjects(&c), ["late"], "b's lease still holds");
    assert!(c[0].seq > b[2].seq);

    // A lease held until `t` is free at `t`: it goes to the next claimer, whose
    // lease it then is.
    let d = store
        .claim_events("d", at(2_000), at(6_000), 2, u32::MAX)
        .await?;
    assert_eq!(subjects(&d), ["e002", "e003"]);
    assert_eq!(seqs(&d), seqs(&b[..2]));
    let back = store
        .claim_events("b", at(2_500), at(7_000), 10, u32::MAX)
        .await?;
    assert_eq!(
        subjects(&back),
        ["e004"],
        "b gets back only the event no one took over"
    );
    assert_eq!(store.complete_events("b", &seqs(&b)).await?, 1);
    assert_eq!(store.complete_events("d", &seqs(&d)).await?, 2);
    assert_eq!(store.complete_events("c", &seqs(&c)).await?, 1);
    assert_eq!(store.pending_events().await?, 0);
    assert!(
        store
            .claim_events("e", at(10_000), at(20_000), 10, u32::MAX)
            .await?
            .is_empty()
    );
    Ok(())
}

pub async fn concurrent_event_claimers(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let written = entity_events(&*store, &org, 60).await?;
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // An owner per claim: an owner is given back what it holds, and every lease
            // is kept to the end, so an event handed out twice would be counted twice.
            let mut claims = Vec::new();
            for round in 0.. {
                let owner = format!("worker-{worker}-{round}");
                let claimed = store
                    .claim_events(&owner, at(0), at(60_000), 7, u32::MAX)
                    .await?;
                if claimed.is_empty() {
                    break;
                }
                ensure!(increasing(&claimed), "a claim is in seq order");
                claims.push((owner, seqs(&claimed)));
            }
            anyhow::Ok(claims)
        }));
    }
    let mut all = BTreeSet::new();
    let mut total = 0;
    for task in tasks {
        for (owner, mine) in task.await?? {
            total += mine.len();
            all.extend(mine.iter().copied());
            assert_eq!(
                store.complete_events(&owner, &mine).await?,
                mine.len() as u64
            );
        }
    }
    assert_eq!(total, written.len(), "no event leased twice");
    assert_eq!(all.len(), written.len(), "every event leased");
    assert_eq!(store.pending_events().await?, 0);
    Ok(())
}

/// A claim takes each organization's oldest events, at most `per_org` of any one, so
/// an organization with a backlog does not keep another's events waiting behind it.
pub async fn event_claims_are_fair_across_organizations(store: Shared) -> Result<()> {
    let ids = ids();
    let flood = new_org(&*store, &ids, "Flood").await?;
    let quiet = new_org(&*store, &ids, "Quiet").await?;
    let flooded = entity_events(&*store, &flood, 40).await?;
    let late = entity(&quiet, "microservice", "quiet-1", at(50));
    store
        .put_entity(&late, EntityWriteMode::CreateOnly, None, &[])
        .await?;
    let claimed = store.claim_events("w", at(0), at(1_000), 10, 4).await?;
    assert!(increasing(&claimed), "oldest first");
    let of = |org: &OrgId| claimed.iter().filter(|e| &e.change.org_id == org).count();
    assert_eq!(of(&flood), 4, "at most per_org of the flood");
    assert_eq!(
        of(&quiet),
        1,
        "the quiet organization's event is not behind the flood"
    );
    assert_eq!(subjects(&claimed[..4]), flooded[..4], "the flood's oldest");
    // The next claimer gets the flood's next ones (and nothing leased twice).
    let next = store.claim_events("v", at(0), at(1_000), 10, 4).await?;
    assert_eq!(subjects(&next), flooded[4..8]);
    // Nothing past the overall limit, and nothing with a zero share.
    assert!(
        store
            .claim_events("u", at(0), at(1_000), 10, 0)
            .await?
            .is_empty()
    );
    let small = store.claim_events("t", at(0), at(1_000), 2, 4).await?;
    assert_eq!(subjects(&small), flooded[8..10]);
    Ok(())
}
