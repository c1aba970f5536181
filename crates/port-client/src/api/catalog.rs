//! Blueprints, entities and the audit log (port-api.md §3).

use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};

use crate::client::{PortClient, Repeat};
use crate::error::ClientError;
use crate::requests::{
    EntityDeleteOptions, EntitySearch, EntityUpdateOptions, EntityWriteOptions, Query,
};
use crate::types::{
    AuditEntry, Blueprint, BulkEntitiesResult, Entity, EntityPage, EntitySearchResult,
};

pub(crate) fn to_json(value: &(impl Serialize + ?Sized)) -> Result<Value, ClientError> {
    serde_json::to_value(value)
        .map_err(|e| ClientError::Config(format!("the request body cannot be serialized: {e}")))
}

impl PortClient {
    /// `POST /v1/blueprints`.
    pub async fn create_blueprint(
        &self,
        blueprint: &(impl Serialize + ?Sized),
    ) -> Result<Blueprint, ClientError> {
        let body = to_json(blueprint)?;
        let call = self.call(
            Method::POST,
            &["blueprints"],
            &Query::new(),
            Some(&body),
            Repeat::Unsafe,
        );
        self.send(&call).await?.take("blueprint")
    }

    /// `GET /v1/blueprints/{identifier}`.
    pub async fn get_blueprint(&self, identifier: &str) -> Result<Blueprint, ClientError> {
        let call = self.call(
            Method::GET,
            &["blueprints", identifier],
            &Query::new(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await?.take("blueprint")
    }

    /// `GET /v1/blueprints`.
    pub async fn list_blueprints(&self) -> Result<Vec<Blueprint>, ClientError> {
        let call = self.call(
            Method::GET,
            &["blueprints"],
            &Query::new(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await?.take_or_default("blueprints")
    }

    /// `PUT /v1/blueprints/{identifier}`: replaces the blueprint.
    pub async fn update_blueprint(
        &self,
        identifier: &str,
        blueprint: &(impl Serialize + ?Sized),
    ) -> Result<Blueprint, ClientError> {
        let body = to_json(blueprint)?;
        let call = self.call(
            Method::PUT,
            &["blueprints", identifier],
            &Query::new(),
            Some(&body),
            Repeat::Safe,
        );
        self.send(&call).await?.take("blueprint")
    }

    /// `PATCH /v1/blueprints/{identifier}`: changes the given keys. Repeating the same
    /// patch gives the same blueprint, so it is retried like a PUT.
    pub async fn patch_blueprint(
        &self,
        identifier: &str,
        patch: &(impl Serialize + ?Sized),
    ) -> Result<Blueprint, ClientError> {
        let body = to_json(patch)?;
        let call = self.call(
            Method::PATCH,
            &["blueprints", identifier],
            &Query::new(),
            Some(&body),
            Repeat::Safe,
        );
        self.send(&call).await?.take("blueprint")
    }

    /// `DELETE /v1/blueprints/{identifier}`.
    pub async fn delete_blueprint(&self, identifier: &str) -> Result<(), ClientError> {
        let call = self.call(
            Method::DELETE,
            &["blueprints", identifier],
            &Query::new(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await.map(drop)
    }

    /// `POST /v1/blueprints/{blueprint}/entities`: creates an entity, or with
    /// [`EntityWriteOptions::upsert`] replaces/merges an existing one. With
    /// `run_id` the change is bound to that run.
    ///
    /// Retried only when the server cannot have acted, unless `upsert` is set (a
    /// repeated upsert writes the same entity).
    pub async fn create_entity(
        &self,
        blueprint: &str,
        entity: &(impl Serialize + ?Sized),
        options: &EntityWriteOptions,
    ) -> Result<Entity, ClientError> {
        let body = to_json(entity)?;
        let repeat = if options.upsert {
            Repeat::Safe
        } else {
            Repeat::Unsafe
        };
        let call = self.call(
            Method::POST,
            &["blueprints", blueprint, "entities"],
            &options.query(),
            Some(&body),
            repeat,
        );
        self.send(&call).await?.take("entity")
    }

    /// Creates or merges an entity (`upsert=true&merge=true`), optionally bound to a run:
    /// what a backend reporting its work usually wants.
    pub async fn upsert_entity(
        &self,
        blueprint: &str,
        entity: &(impl Serialize + ?Sized),
        run_id: Option<&str>,
    ) -> Result<Entity, ClientError> {
        let options = EntityWriteOptions {
            run_id: run_id.map(str::to_owned),
            ..EntityWriteOptions::upsert_merge()
        };
        self.create_entity(blueprint, entity, &options).await
    }

    /// `GET /v1/blueprints/{blueprint}/entities/{identifier}`.
    pub async fn get_entity(
        &self,
        blueprint: &str,
        identifier: &str,
    ) -> Result<Entity, ClientError> {
        let call = self.call(
            Method::GET,
            &["blueprints", blueprint, "entities", identifier],
            &Query::new(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await?.take("entity")
    }

    /// `GET /v1/blueprints/{blueprint}/entities`.
    pub async fn list_entities(&self, blueprint: &str) -> Result<Vec<Entity>, ClientError> {
        let call = self.call(
            Method::GET,
            &["blueprints", blueprint, "entities"],
            &Query::new(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await?.take_or_default("entities")
    }

    /// `PUT /v1/blueprints/{blueprint}/entities/{identifier}`: replaces the entity.
    pub async fn update_entity(
        &self,
        blueprint: &str,
        identifier: &str,
        entity: &(impl Serialize + ?Sized),
        options: &EntityUpdateOptions,
    ) -> Result<Entity, ClientError> {
        let body = to_json(entity)?;
        let call = self.call(
            Method::PUT,
            &["blueprints", blueprint, "entities", identifier],
            &options.query(),
            Some(&body),
            Repeat::Safe,
        );
        self.send(&call).await?.take("entity")
    }

    /// `PATCH /v1/blueprints/{blueprint}/entities/{identifier}`: changes the given keys
    /// (properties and relations merge). Retried like a PUT: repeating it gives the same
    /// entity.
    pub async fn patch_entity(
        &self,
        blueprint: &str,
        identifier: &str,
        patch: &(impl Serialize + ?Sized),
        options: &EntityUpdateOptions,
    ) -> Result<Entity, ClientError> {
        let body = to_json(patch)?;
        let call = self.call(
            Method::PATCH,
            &["blueprints", blueprint, "entities", identifier],
            &options.query(),
            Some(&body),
            Repeat::Safe,
        );
        self.send(&call).await?.take("entity")
    }

    /// `DELETE /v1/blueprints/{blueprint}/entities/{identifier}`.
    pub async fn delete_entity(
        &self,
        blueprint: &str,
        identifier: &str,
        options: &EntityDeleteOptions,
    ) -> Result<(), ClientError> {
        let call = self.call(
            Method::DELETE,
            &["blueprints", blueprint, "entities", identifier],
            &options.query(),
            None,
            Repeat::Safe,
        );
        self.send(&call).await.map(drop)
    }

    /// `POST /v1/blueprints/{blueprint}/entities/bulk` (1–20 entities). A partial
    /// failure (207) is a success here: look at [`BulkEntitiesResult::errors`].
    pub async fn bulk_create_entities(
        &self,
        blueprint: &str,
        entities: &[Value],
        options: &EntityWriteOptions,
    ) -> Result<BulkEntitiesResult, ClientError> {
        let body = json!({ "entities": entities });
        let repeat = if options.upsert {
            Repeat::Safe
        } else {
            Repeat::Unsafe
        };
        let call = self.call(
            Method::POST,
            &["blueprints", blueprint, "entities", "bulk"],
            &options.query(),
            Some(&body),
            repeat,
        );
        self.send(&call).await?.decode()
    }

    /// `POST /v1/blueprints/{blueprint}/entities/search`: one page; pass
    /// [`EntityPage::next`] as [`EntitySearch::from`] for the next.
    pub async fn search_entities(
        &self,
        blueprint: &str,
        search: &EntitySearch,
    ) -> Result<EntityPage, ClientError> {
        let body = to_json(search)?;
        // A search changes nothing.
        let call = self.call(
            Method::POST,
            &["blueprints", blueprint, "entities", "search"],
            &Query::new(),
            Some(&body),
            Repeat::Safe,
        );
        self.send(&call).await?.decode()
    }

    /// `POST /v1/entities/search`: a `{combinator, rules}` query across blueprints.
    pub async fn search_all_entities(
        &self,
        query: &Value,
    ) -> Result<EntitySearchResult, ClientError> {
        let call = self.call(
            Method::POST,
            &["entities", "search"],
            &Query::new(),
            Some(query),
            Repeat::Safe,
        );
        self.send(&call).await?.decode()
    }

    /// `GET /v1/audit-log?resources=entity&run_id=`: the entity changes bound to a run,
    /// oldest first. [`Self::audit`] asks for anything else.
    pub async fn audit_log(&self, run_id: &str) -> Result<Vec<AuditEntry>, ClientError> {
        let query = vec![
            ("resources".to_owned(), "entity".to_owned()),
            ("run_id".to_owned(), run_id.to_owned()),
        ];
        let call = self.call(Method::GET, &["audit-log"], &query, None, Repeat::Safe);
        self.send(&call).await?.take_or_default("audits")
    }
}
