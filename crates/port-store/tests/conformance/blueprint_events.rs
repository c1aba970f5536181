//! Deleting a blueprint deletes its entities as deleting each would: one `DELETE` change
//! event per entity, by the deleter, in the transaction of the deletion, and none for
//! another blueprint's or another organization's entities.

use anyhow::{Result, ensure};
use port_core::catalog::Entity;
use port_core::event::{ChangeEvent, ChangeKind, NewChangeEvent, ResourceType};
use port_core::ports::{EntityWriteMode, Store};
use port_core::time::Timestamp;

use super::{Shared, at, entity, ids, microservice_blueprint, new_org};

/// Claims and completes every pending event: what was recorded since the last drain.
async fn drain(store: &dyn Store, now: Timestamp) -> Result<Vec<ChangeEvent>> {
    let events = store
        .claim_events("drain", now, now.plus_millis(60_000), 1_000, u32::MAX)
        .await?;
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let done = store.complete_events("drain", &seqs).await?;
    ensure!(done == seqs.len() as u64, "completed {done} of {seqs:?}");
    Ok(events)
}

/// The event of `before` deleted by `by` at `at`, as every store must record it.
fn deleted(before: &Entity, by: &str, at: Timestamp) -> NewChangeEvent {
    NewChangeEvent {
        org_id: before.org_id.clone(),
        resource: ResourceType::Entity,
        kind: ChangeKind::Delete,
        scope: before.blueprint.to_string(),
        subject: before.identifier.to_string(),
        timer: None,
        before: Some(before.to_json()),
        after: None,
        by: by.into(),
        depth: 0,
        at,
    }
}

pub async fn blueprint_deletion_records_entity_events(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let other_org = new_org(&*store, &ids, "Globex").await?;
    let micro = microservice_blueprint(&org, at(0));
    store.create_blueprint(&micro).await?;
    store
        .create_blueprint(&microservice_blueprint(&other_org, at(0)))
        .await?;

    // Written out of identifier order, one of them changed by another writer since.
    let mut svc_b = entity(&org, "microservice", "svc-b", at(1));
    let svc_a = entity(&org, "microservice", "svc-a", at(2));
    let kept = entity(&org, "environment", "env", at(3));
    let elsewhere = entity(&other_org, "microservice", "svc-a", at(4));
    for e in [&svc_b, &svc_a, &kept, &elsewhere] {
        store
            .put_entity(e, EntityWriteMode::CreateOnly, None, &[])
            .await?;
    }
    svc_b.title = Some("renamed".into());
    svc_b.stamp.updated_at = at(5);
    svc_b.stamp.updated_by = "editor".into();
    store
        .put_entity(&svc_b, EntityWriteMode::Upsert, None, &[])
        .await?;
    assert_eq!(drain(&*store, at(6)).await?.len(), 5, "the writes' events");

    assert!(
        store
            .delete_blueprint(&org, &micro.identifier, "deleter", at(10))
            .await?
    );
    assert_eq!(store.pending_events().await?, 2);
    let events = drain(&*store, at(11)).await?;
    ensure!(
        events.windows(2).all(|w| w[0].seq < w[1].seq),
        "in sequence: {events:?}"
    );
    assert_eq!(events[0].to_json()["action"], "DELETE");
    let got: Vec<NewChangeEvent> = events.into_iter().map(|e| e.change).collect();
    assert_eq!(
        got,
        vec![
            deleted(&svc_a, "deleter", at(10)),
            deleted(&svc_b, "deleter", at(10)),
        ],
        "one DELETE per entity, in identifier order, each the deleter's"
    );

    // The other blueprint's and the other organization's entities stay, without events.
    assert_eq!(
        store
            .get_entity(&org, &kept.blueprint, &kept.identifier)
            .await?,
        Some(kept)
    );
    assert_eq!(
        store
            .get_entity(&other_org, &elsewhere.blueprint, &elsewhere.identifier)
            .await?,
        Some(elsewhere)
    );

    // Deleting again, or a blueprint without entities, records nothing.
    assert!(
        !store
            .delete_blueprint(&org, &micro.identifier, "deleter", at(20))
            .await?
    );
    let empty = microservice_blueprint(&org, at(21));
    store.create_blueprint(&empty).await?;
    assert!(
        store
            .delete_blueprint(&org, &empty.identifier, "deleter", at(22))
            .await?
    );
    assert_eq!(store.pending_events().await?, 0);
    Ok(())
}
