//! Timer properties: what an entity write arms, keeps and disarms, and how due timers
//! fire: once each, as events of the entity as it is, earliest first, however many
//! firers race.

use anyhow::{Result, ensure};
use port_core::event::{ChangeKind, ResourceType, TIMER_ACTOR};
use port_core::id::OrgId;
use port_core::ports::{EntityDeletion, EntityWriteMode};
use port_core::time::Timestamp;
use serde_json::json;

use super::{Shared, at, entity, ids, new_org};

fn ttl() -> Vec<String> {
    vec!["ttl".to_owned()]
}

/// An environment whose `ttl` expires at `expires` (none when `None`).
fn environment(
    org: &OrgId,
    id: &str,
    expires: Option<Timestamp>,
    written: Timestamp,
) -> port_core::catalog::Entity {
    let mut e = entity(org, "environment", id, written);
    if let Some(t) = expires {
        e.properties.insert("ttl".into(), json!(t.to_string()));
    }
    e
}

/// Claims and completes every pending event; their (subject, timer) pairs.
async fn drain(store: &Shared, now: Timestamp) -> Result<Vec<(String, Option<String>)>> {
    let events = store
        .claim_events("drain", now, now.plus_millis(60_000), 1_000, u32::MAX)
        .await?;
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    store.complete_events("drain", &seqs).await?;
    Ok(events
        .into_iter()
        .map(|e| (e.change.subject, e.change.timer))
        .collect())
}

pub async fn entity_timers(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let put = |e: port_core::catalog::Entity, mode| {
        let store = store.clone();
        async move { store.put_entity(&e, mode, None, &ttl()).await }
    };

    // Armed by the write that sets it; nothing is due before its time.
    let first = environment(&org, "env-1", Some(at(5_000)), at(0));
    put(first.clone(), EntityWriteMode::CreateOnly).await?;
    assert_eq!(store.next_timer().await?, Some(at(5_000)));
    assert_eq!(store.fire_due_timers(at(4_999), 10).await?, 0);

    // A new value moves it; a value kept (the same instant) leaves it.
    let mut moved = environment(&org, "env-1", Some(at(8_000)), at(10));
    moved.title = Some("moved".into());
    put(moved.clone(), EntityWriteMode::Upsert).await?;
    assert_eq!(store.next_timer().await?, Some(at(8_000)));

    // A timer already past fires at the next look; one cleared or deleted never fires.
    put(
        environment(&org, "env-past", Some(at(1_000)), at(20)),
        EntityWriteMode::CreateOnly,
    )
    .await?;
    put(
        environment(&org, "env-cleared", Some(at(2_000)), at(20)),
        EntityWriteMode::CreateOnly,
    )
    .await?;
    put(
        environment(&org, "env-cleared", None, at(30)),
        EntityWriteMode::Upsert,
    )
    .await?;
    put(
        environment(&org, "env-deleted", Some(at(3_000)), at(20)),
        EntityWriteMode::CreateOnly,
    )
    .await?;
    let deletion = EntityDeletion {
        by: "someone",
        at: at(40),
        affected: None,
    };
    ensure!(
        store
            .delete_entity(
                &org,
                &"environment".parse()?,
                &"env-deleted".parse()?,
                &deletion
            )
            .await?
    );
    // A blueprint without the timer property arms nothing.
    store
        .put_entity(
            &environment(&org, "no-timer", Some(at(1_000)), at(20)),
            EntityWriteMode::CreateOnly,
            None,
            &[],
        )
        .await?;
    drain(&store, at(50)).await?;

    assert_eq!(store.fire_due_timers(at(8_000), 10).await?, 2);
    let fired = store
        .claim_events("automations", at(8_000), at(9_000), 10, u32::MAX)
        .await?;
    let seen: Vec<_> = fired
        .iter()
        .map(|e| (e.change.subject.as_str(), e.change.timer.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [("env-past", Some("ttl")), ("env-1", Some("ttl"))],
        "earliest first"
    );
    let expiry = &fired[1].change;
    assert_eq!(expiry.resource, ResourceType::Entity);
    assert_eq!(expiry.kind, ChangeKind::Update);
    assert_eq!(expiry.scope, "environment");
    assert_eq!(expiry.by, TIMER_ACTOR);
    assert_eq!(expiry.depth, 0);
    assert_eq!(expiry.at, at(8_000));
    assert_eq!(expiry.after, Some(moved.to_json()), "the entity as it is");
    assert_eq!(expiry.before, expiry.after);
    let json = fired[1].to_json();
    assert_eq!(json["action"], "TIMER_EXPIRED");
    assert_eq!(json["context"]["propertyIdentifier"], "ttl");

    // Fired once: nothing is left to fire, and a write that keeps the value does not
    // arm it again; a new value does.
    assert_eq!(store.fire_due_timers(at(100_000), 10).await?, 0);
    assert_eq!(store.next_timer().await?, None);
    let mut kept = moved.clone();
    kept.title = Some("kept".into());
    put(kept, EntityWriteMode::Upsert).await?;
    assert_eq!(store.next_timer().await?, None);
    put(
        environment(&org, "env-1", Some(at(200_000)), at(60)),
        EntityWriteMode::Upsert,
    )
    .await?;
    assert_eq!(store.next_timer().await?, Some(at(200_000)));

    // Deleting the blueprint takes its timers with it.
    store
        .delete_blueprint(&org, &"environment".parse()?, "deleter", at(300_000))
        .await?;
    assert_eq!(store.next_timer().await?, None);
    Ok(())
}

pub async fn concurrent_timer_firers(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    const TIMERS: u32 = 30;
    for i in 0..TIMERS {
        let e = environment(
            &org,
            &format!("env-{i:03}"),
            Some(at(1_000 + i64::from(i))),
            at(0),
        );
        store
            .put_entity(&e, EntityWriteMode::CreateOnly, None, &ttl())
            .await?;
    }
    drain(&store, at(0)).await?;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut fired = 0;
            loop {
                let n = store.fire_due_timers(at(5_000), 4).await?;
                if n == 0 {
                    break;
                }
                fired += n;
            }
            anyhow::Ok(fired)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    assert_eq!(total, TIMERS, "each timer fired once");
    let events = drain(&store, at(5_000)).await?;
    assert_eq!(events.len(), TIMERS as usize, "one event per timer");
    let mut subjects: Vec<_> = events.into_iter().map(|(s, _)| s).collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), TIMERS as usize, "no timer fired twice");
    Ok(())
}

/// One organization's mass expiry does not hold another's timers back: every
/// organization with due timers gets a share of each batch.
pub async fn timers_fire_fairly_across_organizations(store: Shared) -> Result<()> {
    let ids = ids();
    let busy = new_org(&*store, &ids, "Busy").await?;
    let quiet = new_org(&*store, &ids, "Quiet").await?;
    for i in 0..40 {
        let e = environment(&busy, &format!("busy-{i:03}"), Some(at(1_000 + i)), at(0));
        store
            .put_entity(&e, EntityWriteMode::CreateOnly, None, &ttl())
            .await?;
    }
    let late = environment(&quiet, "quiet-1", Some(at(2_000)), at(0));
    store
        .put_entity(&late, EntityWriteMode::CreateOnly, None, &ttl())
        .await?;
    drain(&store, at(0)).await?;

    // Each organization's share of the batch is half of it; the quiet one needs one.
    assert_eq!(store.fire_due_timers(at(5_000), 10).await?, 6);
    let first: Vec<String> = drain(&store, at(5_000))
        .await?
        .into_iter()
        .map(|(subject, _)| subject)
        .collect();
    ensure!(
        first.iter().any(|s| s.contains("quiet-1")),
        "the quiet organization's timer fires in the first batch, though 40 of another's expired earlier: {first:?}"
    );
    let mut total = first.len();
    loop {
        let n = store.fire_due_timers(at(5_000), 10).await?;
        if n == 0 {
            break;
        }
        total += n as usize;
    }
    assert_eq!(total, 41, "every timer fires once");
    Ok(())
}
