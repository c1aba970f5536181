//! Organization secrets: names, descriptions and values, one organization's at a time,
//! alike on every backend (whether or not values are sealed at rest).

use anyhow::{Context, Result, ensure};
use port_core::error::StoreError;
use port_core::id::OrgId;
use port_core::ports::{OrgSecret, Store};
use port_core::secret::{SecretName, SecretValue};
use port_core::time::Timestamp;

use super::{Shared, at, ids, is_already_exists, new_org};

fn name(text: &str) -> SecretName {
    SecretName::parse(text).expect("valid secret name")
}

fn value(text: &str) -> SecretValue {
    SecretValue::new(text).expect("valid secret value")
}

fn secret(org: &OrgId, secret_name: &str, description: Option<&str>, t: Timestamp) -> OrgSecret {
    OrgSecret {
        org_id: org.clone(),
        name: name(secret_name),
        description: description.map(str::to_owned),
        created_at: t,
        updated_at: t,
    }
}

/// The organization's values, as `(name, value)` text pairs in the store's order.
async fn values(store: &dyn Store, org: &OrgId) -> Result<Vec<(String, String)>> {
    Ok(store
        .secret_values(org)
        .await?
        .into_iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.expose().to_owned()))
        .collect())
}

fn names(secrets: &[OrgSecret]) -> Vec<&str> {
    secrets.iter().map(|s| s.name.as_str()).collect()
}

pub async fn organization_secrets(store: Shared) -> Result<()> {
    let ids = ids();
    let org = new_org(&*store, &ids, "Acme").await?;
    assert!(store.list_secrets(&org).await?.is_empty());
    assert!(store.secret_values(&org).await?.is_empty());

    let token = secret(&org, "b_token", Some("GitHub"), at(0));
    store
        .create_secret(&token, &value("ghp-never-in-messages"))
        .await?;
    // Byte order, as names are compared everywhere else: upper case, then '_', then lower case.
    for (n, v) in [("a-token", "pässwörd ✓"), ("Z9", ""), ("A_TOKEN", "x")] {
        store
            .create_secret(&secret(&org, n, None, at(1)), &value(v))
            .await?;
    }
    let dup = store
        .create_secret(&token, &value("another-never-in-messages"))
        .await;
    assert!(is_already_exists(&dup), "{dup:?}");
    let shown = format!("{dup:?}");
    ensure!(
        !shown.contains("never-in-messages"),
        "no value in errors: {shown}"
    );
    let orphan = store
        .create_secret(&secret(&ids.next(), "X", None, at(0)), &value("v"))
        .await;
    assert!(matches!(orphan, Err(StoreError::Other(_))), "{orphan:?}");

    assert_eq!(
        store.get_secret(&org, &token.name).await?,
        Some(token.clone())
    );
    assert_eq!(store.get_secret(&org, &name("missing")).await?, None);
    let listed = store.list_secrets(&org).await?;
    assert_eq!(names(&listed), ["A_TOKEN", "Z9", "a-token", "b_token"]);
    assert_eq!(listed[3], token);
    assert_eq!(
        values(&*store, &org).await?,
        [
            ("A_TOKEN", "x"),
            ("Z9", ""),
            ("a-token", "pässwörd ✓"),
            ("b_token", "ghp-never-in-messages"),
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
    );

    // A new value keeps the description and the creation time.
    let updated = store
        .update_secret(&org, &token.name, Some(&value("ghp-rotated")), None, at(5))
        .await?
        .context("updated")?;
    assert_eq!(
        updated,
        OrgSecret {
            updated_at: at(5),
            ..token.clone()
        }
    );
    assert_eq!(store.get_secret(&org, &token.name).await?, Some(updated));
    // A new description keeps the value.
    let described = store
        .update_secret(&org, &token.name, None, Some("GitHub, rotated"), at(7))
        .await?
        .context("updated")?;
    assert_eq!(described.description.as_deref(), Some("GitHub, rotated"));
    assert_eq!((described.created_at, described.updated_at), (at(0), at(7)));
    let both = store
        .update_secret(&org, &name("Z9"), Some(&value("z")), Some("zed"), at(9))
        .await?
        .context("updated")?;
    assert_eq!(
        (
            both.description.as_deref(),
            both.created_at,
            both.updated_at
        ),
        (Some("zed"), at(1), at(9))
    );
    assert_eq!(
        store
            .update_secret(&org, &name("missing"), Some(&value("v")), None, at(9))
            .await?,
        None
    );
    let after: Vec<(String, String)> = values(&*store, &org).await?;
    assert_eq!(after[1], ("Z9".to_owned(), "z".to_owned()));
    assert_eq!(after[3], ("b_token".to_owned(), "ghp-rotated".to_owned()));

    assert!(store.delete_secret(&org, &name("a-token")).await?);
    assert!(!store.delete_secret(&org, &name("a-token")).await?);
    assert_eq!(store.get_secret(&org, &name("a-token")).await?, None);
    assert_eq!(
        names(&store.list_secrets(&org).await?),
        ["A_TOKEN", "Z9", "b_token"]
    );
    assert_eq!(values(&*store, &org).await?.len(), 3);
    // The name is free again.
    store
        .create_secret(&secret(&org, "a-token", None, at(10)), &value("again"))
        .await?;
    assert_eq!(values(&*store, &org).await?[2].1, "again");
    Ok(())
}

pub async fn organization_secrets_are_isolated(store: Shared) -> Result<()> {
    let ids = ids();
    let a = new_org(&*store, &ids, "A").await?;
    let b = new_org(&*store, &ids, "B").await?;
    let token = secret(&a, "TOKEN", Some("a's"), at(0));
    store.create_secret(&token, &value("a-value")).await?;

    assert_eq!(store.get_secret(&b, &token.name).await?, None);
    assert!(store.list_secrets(&b).await?.is_empty());
    assert!(store.secret_values(&b).await?.is_empty());
    assert_eq!(
        store
            .update_secret(&b, &token.name, Some(&value("hijack")), Some("b's"), at(1))
            .await?,
        None
    );
    assert!(!store.delete_secret(&b, &token.name).await?);

    // Names are per organization.
    let theirs = secret(&b, "TOKEN", None, at(2));
    store.create_secret(&theirs, &value("b-value")).await?;
    assert_eq!(store.get_secret(&b, &token.name).await?, Some(theirs));
    assert_eq!(
        values(&*store, &b).await?,
        [("TOKEN".to_owned(), "b-value".to_owned())]
    );
    assert!(store.delete_secret(&b, &token.name).await?);

    // a's secret is untouched.
    assert_eq!(store.get_secret(&a, &token.name).await?, Some(token));
    assert_eq!(
        values(&*store, &a).await?,
        [("TOKEN".to_owned(), "a-value".to_owned())]
    );
    Ok(())
}
