//! Entity scans and searches: the store's pages in key order, and every search operator,
//! combinator and budget run over them, alike on every backend.

use std::collections::BTreeSet;

use anyhow::{Result, ensure};
use port_core::catalog::{Blueprint, Entity, PathStyle, Projection};
use port_core::id::OrgId;
use port_core::ports::{EntityKey, EntityScan, EntityWriteMode, Store};
use port_core::search::{
    EntityQuery, Matcher, Scope, SearchLimits, SearchRequest, Stopped, search,
};
use serde_json::{Value, json};

use super::{Shared, at, bp, ent, entity, ids, new_org, obj, stamp};

fn key(blueprint: &str, id: &str) -> EntityKey {
    EntityKey {
        blueprint: bp(blueprint),
        identifier: ent(id),
    }
}

fn keys(entities: &[Entity]) -> Vec<String> {
    entities
        .iter()
        .map(|e| format!("{}/{}", e.blueprint, e.identifier))
        .collect()
}

async fn put(store: &dyn Store, entity: &Entity) -> Result<()> {
    store
        .put_entity(entity, EntityWriteMode::Upsert, None, &[])
        .await?;
    Ok(())
}

pub async fn entity_scans(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let other = new_org(&*store, &ids, "Other").await?;
    // Byte order: upper case before lower case, "é" (0xC3…) after "z".
    for (blueprint, id) in [
        ("service", "b"),
        ("service", "a"),
        ("service", "é"),
        ("service", "B"),
        ("service", "z"),
        ("team", "a"),
        ("zeta", "only"),
    ] {
        put(&*store, &entity(&org, blueprint, id, at(0))).await?;
    }
    put(&*store, &entity(&other, "service", "a", at(0))).await?;
    put(&*store, &entity(&other, "service", "c", at(0))).await?;

    let scan = |scan: EntityScan| {
        let store = store.clone();
        let org = org.clone();
        async move { store.scan_entities(&org, &scan).await }
    };
    let all = scan(EntityScan {
        limit: 100,
        ..EntityScan::default()
    })
    .await?;
    ensure!(
        keys(&all.entities)
            == [
                "service/B",
                "service/a",
                "service/b",
                "service/z",
                "service/é",
                "team/a",
                "zeta/only"
            ],
        "key order, only the organization's: {:?}",
        keys(&all.entities)
    );
    ensure!(all.bytes > 0, "a scan says how much it read");
    ensure!(
        all.entities[1] == entity(&org, "service", "a", at(0)),
        "scanned entities are whole"
    );

    // Pages follow each other with `after`.
    let first = scan(EntityScan {
        limit: 3,
        ..EntityScan::default()
    })
    .await?;
    ensure!(keys(&first.entities) == ["service/B", "service/a", "service/b"]);
    let second = scan(EntityScan {
        limit: 3,
        after: Some(key("service", "b")),
        ..EntityScan::default()
    })
    .await?;
    ensure!(
        keys(&second.entities) == ["service/z", "service/é", "team/a"],
        "{:?}",
        keys(&second.entities)
    );
    let last = scan(EntityScan {
        limit: 3,
        after: Some(key("team", "a")),
        ..EntityScan::default()
    })
    .await?;
    ensure!(keys(&last.entities) == ["zeta/only"]);

    // Blueprint and identifier sets narrow the range; an empty set matches nothing.
    let narrowed = scan(EntityScan {
        limit: 100,
        blueprints: Some(BTreeSet::from([bp("team"), bp("zeta")])),
        ..EntityScan::default()
    })
    .await?;
    ensure!(keys(&narrowed.entities) == ["team/a", "zeta/only"]);
    let by_id = scan(EntityScan {
        limit: 100,
        identifiers: Some(BTreeSet::from([ent("a"), ent("z")])),
        ..EntityScan::default()
    })
    .await?;
    ensure!(keys(&by_id.entities) == ["service/a", "service/z", "team/a"]);
    let both = scan(EntityScan {
        limit: 100,
        blueprints: Some(BTreeSet::from([bp("service")])),
        identifiers: Some(BTreeSet::from([ent("a"), ent("c")])),
        after: Some(key("service", "B")),
    })
    .await?;
    ensure!(keys(&both.entities) == ["service/a"]);
    let none = scan(EntityScan {
        limit: 100,
        blueprints: Some(BTreeSet::new()),
        ..EntityScan::default()
    })
    .await?;
    ensure!(none.entities.is_empty() && none.bytes == 0);
    let zero = scan(EntityScan::default()).await?;
    ensure!(zero.entities.is_empty(), "limit 0 reads nothing");
    Ok(())
}

fn blueprint(org: &OrgId, id: &str, relations: Value) -> Blueprint {
    Blueprint {
        org_id: org.clone(),
        identifier: bp(id),
        title: Some(id.into()),
        definition: obj(
            json!({ "title": id, "schema": { "properties": {} }, "relations": relations }),
        ),
        stamp: stamp(at(0), "u"),
    }
}

fn catalog_entity(org: &OrgId, blueprint: &str, id: &str, body: Value) -> Entity {
    let mut e = entity(org, blueprint, id, at(0));
    e.title = body["title"].as_str().map(str::to_owned);
    e.team = body.get("team").cloned();
    e.properties = obj(body["properties"].clone());
    e.relations = obj(body["relations"].clone());
    let day = 24 * 60 * 60 * 1000;
    let created = body["createdDaysAgo"].as_i64().unwrap_or(0);
    e.stamp.created_at = at(-created * day);
    e.stamp.updated_at = at(-created * day);
    e
}

/// The catalog the search cases run on. "Now" is `at(0)`.
async fn search_catalog(store: &dyn Store, org: &OrgId) -> Result<()> {
    store
        .create_blueprint(&blueprint(org, "team", json!({})))
        .await?;
    store
        .create_blueprint(&blueprint(
            org,
            "service",
            json!({ "owner": { "target": "team", "many": false }, "deps": { "target": "service", "many": true } }),
        ))
        .await?;
    let entities = [
        catalog_entity(
            org,
            "team",
            "platform",
            json!({ "title": "Platform", "properties": {}, "relations": {} }),
        ),
        catalog_entity(
            org,
            "team",
            "data",
            json!({ "title": "Data", "properties": {}, "relations": {} }),
        ),
        catalog_entity(
            org,
            "service",
            "api",
            json!({
                "title": "API gateway", "team": ["platform"], "createdDaysAgo": 1,
                "properties": { "language": "go", "replicas": 3, "tags": ["edge", "public"], "expires": "2023-11-14T00:00:00.000Z", "deployedAt": "2023-11-10T12:00:00.000Z" },
                "relations": { "owner": "platform", "deps": ["db", "cache"] }
            }),
        ),
        catalog_entity(
            org,
            "service",
            "db",
            json!({
                "title": "Database", "team": "data", "createdDaysAgo": 20,
                "properties": { "language": "rust", "replicas": 1.0, "tags": [], "expires": "2023-12-01T00:00:00.000Z" },
                "relations": { "owner": "data", "deps": [] }
            }),
        ),
        catalog_entity(
            org,
            "service",
            "cache",
            json!({
                "title": "Cache", "createdDaysAgo": 200,
                "properties": { "language": "", "replicas": 10 },
                "relations": { "owner": null }
            }),
        ),
    ];
    for e in &entities {
        put(store, e).await?;
    }
    Ok(())
}

/// Identifiers (`blueprint/identifier`) matching `query` across blueprints.
async fn found(store: &dyn Store, org: &OrgId, query: Value) -> Result<Vec<String>> {
    let query = EntityQuery::parse(&query, "body")?;
    let matcher = Matcher::resolve(&query, store, org, at(0)).await?;
    let page = search(
        store,
        SearchRequest {
            org,
            matcher: &matcher,
            scope: query.scope(),
            after: None,
            limit: 1000,
        },
        SearchLimits::default(),
    )
    .await?;
    ensure!(page.stopped.is_none(), "the search finished");
    Ok(keys(&page.entities))
}

fn rule(property: &str, operator: &str, value: Value) -> Value {
    json!({ "property": property, "operator": operator, "value": value })
}

fn and(rules: Vec<Value>) -> Value {
    json!({ "combinator": "and", "rules": rules })
}

pub async fn entity_search_semantics(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    let other = new_org(&*store, &ids, "Other").await?;
    search_catalog(&*store, &org).await?;
    search_catalog(&*store, &other).await?;
    let store: &dyn Store = &*store;
    let check = |query: Value, expected: &'static [&'static str]| {
        let org = org.clone();
        async move {
            let got = found(store, &org, query.clone()).await?;
            ensure!(
                got == expected,
                "{query}: expected {expected:?}, got {got:?}"
            );
            Ok::<(), anyhow::Error>(())
        }
    };
    let one = |r: Value| and(vec![r]);

    // Across blueprints, in key order; only the caller's organization.
    check(
        and(vec![]),
        &[
            "service/api",
            "service/cache",
            "service/db",
            "team/data",
            "team/platform",
        ],
    )
    .await?;
    check(
        one(rule("$blueprint", "=", json!("team"))),
        &["team/data", "team/platform"],
    )
    .await?;
    check(
        one(rule(
            "$blueprint",
            "in",
            json!(["team", "nope", "not a blueprint!"]),
        )),
        &["team/data", "team/platform"],
    )
    .await?;
    check(
        one(rule("$identifier", "in", json!(["api", "data"]))),
        &["service/api", "team/data"],
    )
    .await?;
    // Meta-properties.
    check(
        one(rule("$title", "contains", json!("a"))),
        &[
            "service/api",
            "service/cache",
            "service/db",
            "team/data",
            "team/platform",
        ],
    )
    .await?;
    check(
        one(rule("$title", "beginsWith", json!("Data"))),
        &["service/db", "team/data"],
    )
    .await?;
    check(one(rule("$team", "=", json!("data"))), &["service/db"]).await?;
    check(
        one(rule("$team", "in", json!(["platform"]))),
        &["service/api"],
    )
    .await?;
    check(
        one(rule("$createdAt", ">", json!("2023-11-01T00:00:00.000Z"))),
        &["service/api", "team/data", "team/platform"],
    )
    .await?;
    check(
        one(rule(
            "$updatedAt",
            "between",
            json!({ "preset": "lastWeek" }),
        )),
        &["service/api", "team/data", "team/platform"],
    )
    .await?;
    check(
        one(rule(
            "$createdAt",
            "notBetween",
            json!({ "preset": "lastMonth" }),
        )),
        &["service/cache"],
    )
    .await?;
    check(
        one(rule(
            "$createdAt",
            "=",
            json!({ "from": "2023-10-01T00:00:00.000Z", "to": "2023-11-14T00:00:00.000Z" }),
        )),
        &["service/api", "service/db"],
    )
    .await?;
    check(
        one(rule("$createdAt", "between", json!({ "preset": "today" }))),
        &["team/data", "team/platform"],
    )
    .await?;
    check(
        one(rule(
            "$createdAt",
            "between",
            json!({ "preset": "yesterday" }),
        )),
        &["service/api"],
    )
    .await?;
    check(one(rule("$createdBy", "=", json!("nobody"))), &[]).await?;
    // String operators on properties.
    check(one(rule("language", "=", json!("go"))), &["service/api"]).await?;
    check(
        one(rule("language", "!=", json!("go"))),
        &["service/cache", "service/db", "team/data", "team/platform"],
    )
    .await?;
    check(
        one(rule("language", "in", json!(["go", "rust"]))),
        &["service/api", "service/db"],
    )
    .await?;
    check(
        and(vec![
            rule("$blueprint", "=", json!("service")),
            rule("language", "notIn", json!(["go", "rust"])),
        ]),
        &["service/cache"],
    )
    .await?;
    check(
        one(rule("language", "contains", json!("us"))),
        &["service/db"],
    )
    .await?;
    check(
        and(vec![
            rule("$blueprint", "=", json!("service")),
            rule("language", "doesNotContains", json!("o")),
        ]),
        &["service/cache", "service/db"],
    )
    .await?;
    check(
        one(rule("language", "beginsWith", json!("ru"))),
        &["service/db"],
    )
    .await?;
    check(
        and(vec![
            rule("$blueprint", "=", json!("service")),
            rule("language", "doesNotBeginsWith", json!("ru")),
        ]),
        &["service/api", "service/cache"],
    )
    .await?;
    check(
        one(rule("language", "endsWith", json!("st"))),
        &["service/db"],
    )
    .await?;
    check(
        and(vec![
            rule("$blueprint", "=", json!("service")),
            rule("language", "doesNotEndsWith", json!("st")),
        ]),
        &["service/api", "service/cache"],
    )
    .await?;
    // Arrays.
    check(
        one(rule("tags", "contains", json!("edge"))),
        &["service/api"],
    )
    .await?;
    check(
        one(rule("tags", "containsAny", json!(["public", "internal"]))),
        &["service/api"],
    )
    .await?;
    // Numbers compare as numbers (1.0 = 1).
    check(one(rule("replicas", "=", json!(1))), &["service/db"]).await?;
    check(one(rule("replicas", ">", json!(3))), &["service/cache"]).await?;
    check(
        one(rule("replicas", ">=", json!(3))),
        &["service/api", "service/cache"],
    )
    .await?;
    check(one(rule("replicas", "<", json!(3))), &["service/db"]).await?;
    check(
        one(rule("replicas", "<=", json!(3))),
        &["service/api", "service/db"],
    )
    .await?;
    // Dates in properties, and expiry of timers (now is 2023-11-14T22:13:20Z).
    check(
        one(rule("deployedAt", "<", json!("2023-11-11T00:00:00.000Z"))),
        &["service/api"],
    )
    .await?;
    check(
        one(rule("expires", "isExpired", Value::Null)),
        &["service/api"],
    )
    .await?;
    check(
        one(rule("expires", "isNotExpired", Value::Null)),
        &["service/db"],
    )
    .await?;
    // Empty values: missing, null, "", [].
    check(
        and(vec![
            rule("$blueprint", "=", json!("service")),
            json!({ "property": "language", "operator": "isEmpty" }),
        ]),
        &["service/cache"],
    )
    .await?;
    check(
        one(json!({ "property": "tags", "operator": "isNotEmpty" })),
        &["service/api"],
    )
    .await?;
    check(
        and(vec![
            rule("$blueprint", "=", json!("service")),
            json!({ "property": "owner", "operator": "isEmpty" }),
        ]),
        &["service/cache"],
    )
    .await?;
    // Relations by value, and relatedTo one hop either way.
    check(one(rule("owner", "=", json!("platform"))), &["service/api"]).await?;
    check(one(rule("deps", "in", json!(["db"]))), &["service/api"]).await?;
    check(
        one(json!({ "operator": "relatedTo", "blueprint": "service", "value": "api", "direction": "upstream" })),
        &["service/cache", "service/db", "team/platform"],
    )
    .await?;
    check(
        one(json!({ "operator": "relatedTo", "blueprint": "team", "value": ["platform", "data"], "direction": "downstream" })),
        &["service/api", "service/db"],
    )
    .await?;
    check(
        one(json!({ "operator": "relatedTo", "blueprint": "service", "value": "db" })),
        &["service/api", "team/data"],
    )
    .await?;
    check(
        one(json!({ "operator": "relatedTo", "blueprint": "nope", "value": "db" })),
        &[],
    )
    .await?;
    // Combinators nest.
    check(
        json!({ "combinator": "or", "rules": [
            rule("language", "=", json!("rust")),
            and(vec![rule("$blueprint", "=", json!("team")), rule("$title", "endsWith", json!("form"))]),
        ] }),
        &["service/db", "team/platform"],
    )
    .await?;
    check(
        and(vec![
            rule("$blueprint", "=", json!("service")),
            json!({ "combinator": "or", "rules": [] }),
        ]),
        &[],
    )
    .await?;
    check(
        and(vec![
            rule("$blueprint", "=", json!("service")),
            rule("$blueprint", "=", json!("team")),
        ]),
        &[],
    )
    .await?;
    Ok(())
}

pub async fn entity_search_budget(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    for i in 0..30 {
        let mut e = entity(&org, "service", &format!("svc-{i:02}"), at(0));
        e.properties = obj(json!({ "even": i % 2 == 0 }));
        put(&*store, &e).await?;
    }
    let query = EntityQuery::parse(&and(vec![rule("even", "=", json!(true))]), "body")?;
    let matcher = Matcher::new(&query, at(0));
    let limits = SearchLimits {
        max_examined: 7,
        max_examined_bytes: u64::MAX,
        max_work: u64::MAX,
        max_batch: 3,
        batch_work: 1,
    };
    // Each request examines at most 7 entities and says where it stopped; following
    // the cursor finds every match once.
    let mut after = None;
    let mut all = Vec::new();
    let mut requests = 0;
    loop {
        requests += 1;
        ensure!(requests <= 10, "the pages end");
        let page = search(
            &*store,
            SearchRequest {
                org: &org,
                matcher: &matcher,
                scope: Scope::default(),
                after: after.clone(),
                limit: 100,
            },
            limits,
        )
        .await?;
        ensure!(page.examined <= 7, "examined {}", page.examined);
        all.extend(keys(&page.entities));
        match page.stopped {
            Some(Stopped::Budget) => after = page.resume_after,
            None => break,
            Some(Stopped::PageFull) => anyhow::bail!("no page fills here"),
        }
    }
    let expected: Vec<String> = (0..30)
        .step_by(2)
        .map(|i| format!("service/svc-{i:02}"))
        .collect();
    ensure!(all == expected, "{all:?}");
    ensure!(requests == 5, "30 entities at 7 a request: {requests}");

    // Byte and work budgets stop a search too, before the entity that would overrun
    // them; one that alone would is not examined, and the search is stuck.
    let one_entity = store
        .scan_entities(
            &org,
            &EntityScan {
                limit: 1,
                ..EntityScan::default()
            },
        )
        .await?
        .bytes;
    let weight = query.weight as u64;
    for (bytes, work) in [
        (one_entity, u64::MAX),
        (u64::MAX, one_entity * weight),
        (one_entity - 1, u64::MAX),
        (u64::MAX, one_entity * weight - 1),
    ] {
        let page = search(
            &*store,
            SearchRequest {
                org: &org,
                matcher: &matcher,
                scope: Scope::default(),
                after: None,
                limit: 100,
            },
            SearchLimits {
                max_examined: 1000,
                max_examined_bytes: bytes,
                max_work: work,
                max_batch: 2,
                batch_work: 1,
            },
        )
        .await?;
        let fits = bytes >= one_entity && work >= one_entity * weight;
        ensure!(
            page.stopped == Some(Stopped::Budget) && page.examined == u64::from(fits),
            "{:?} after {}",
            page.stopped,
            page.examined
        );
        ensure!(page.stuck() == !fits);
        let resume = fits.then(|| key("service", "svc-00"));
        ensure!(page.resume_after == resume, "{:?}", page.resume_after);
    }

    // A full page says where the next one starts.
    let page = search(
        &*store,
        SearchRequest {
            org: &org,
            matcher: &matcher,
            scope: Scope::default().within(&bp("service")),
            after: None,
            limit: 2,
        },
        SearchLimits::default(),
    )
    .await?;
    ensure!(page.stopped == Some(Stopped::PageFull));
    ensure!(keys(&page.entities) == ["service/svc-00", "service/svc-02"]);
    ensure!(page.resume_after == Some(key("service", "svc-02")));

    // Projections shape what a search found.
    let projection = Projection::parse(
        &["identifier".into(), "properties.even".into()],
        &["properties.even".into()],
        PathStyle::EntityJson,
    )?;
    ensure!(
        projection.apply(page.entities[0].to_json())
            == json!({ "identifier": "svc-00", "properties": {} })
    );
    Ok(())
}
