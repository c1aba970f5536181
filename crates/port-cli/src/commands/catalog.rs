//! `port blueprints`, `port actions` and `port entities`.

use port_client::{
    Action, ActionQuery, Blueprint, ClientError, Entity, EntityDeleteOptions, PortClient,
};
use serde_json::{Map, Value};

use crate::cli::{ActionsCommand, BlueprintsCommand, EntitiesCommand};
use crate::error::{CliError, exit};
use crate::input::{props_object, read_objects};
use crate::output::{Cell, Details, Table, compact, time};

use super::Ctx;

/// Whether an error means "it already exists" (so apply should update instead).
fn already_exists(error: &ClientError) -> bool {
    error.status() == Some(409)
}

fn identifier_of(object: &Map<String, Value>, what: &str) -> Result<String, CliError> {
    match object.get("identifier") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
        _ => Err(CliError::usage(
            "invalid_file",
            format!("every {what} needs a string `identifier`"),
        )),
    }
}

/// Prints what `apply` did: `kind id created|updated` lines.
fn print_applied(ctx: &Ctx, kind: &str, applied: &[(String, &str)]) -> Result<(), CliError> {
    for (id, verb) in applied {
        ctx.ui.line(&format!("{kind} {id} {verb}"))?;
    }
    Ok(())
}

// ---- blueprints ----

pub(crate) async fn blueprints(ctx: &Ctx, command: &BlueprintsCommand) -> Result<u8, CliError> {
    match command {
        BlueprintsCommand::Apply { file } => {
            let mut applied = Vec::new();
            for object in read_objects(file)? {
                let id = identifier_of(&object, "blueprint")?;
                let verb = match ctx.client.create_blueprint(&object).await {
                    Ok(_) => "created",
                    Err(e) if already_exists(&e) => {
                        ctx.client.update_blueprint(&id, &object).await?;
                        "updated"
                    }
                    Err(e) => return Err(e.into()),
                };
                applied.push((id, verb));
            }
            if ctx.ui.structured() {
                let mut objects = Vec::new();
                for (id, _) in &applied {
                    objects.push(ctx.raw(&["blueprints", id], &[], "blueprint").await?);
                }
                return ctx.ui.data(&objects).map(|()| exit::OK);
            }
            print_applied(ctx, "blueprint", &applied)?;
        }
        BlueprintsCommand::List => {
            if ctx.ui.structured() {
                let blueprints = ctx.raw(&["blueprints"], &[], "blueprints").await?;
                return ctx.ui.data(&blueprints).map(|()| exit::OK);
            }
            let blueprints = ctx.client.list_blueprints().await?;
            let mut table = Table::new(&["IDENTIFIER", "TITLE", "PROPERTIES", "RELATIONS"]);
            for blueprint in &blueprints {
                table.row(vec![
                    blueprint.identifier.as_str().into(),
                    Cell::opt(blueprint.title.as_deref()),
                    keys(
                        blueprint
                            .extra
                            .get("schema")
                            .and_then(|s| s.get("properties")),
                    )
                    .into(),
                    keys(blueprint.extra.get("relations")).into(),
                ]);
            }
            ctx.ui.text(&table.render(ctx.ui.color))?;
        }
        BlueprintsCommand::Get { id } => {
            if ctx.ui.structured() {
                let blueprint = ctx.raw(&["blueprints", id], &[], "blueprint").await?;
                return ctx.ui.data(&blueprint).map(|()| exit::OK);
            }
            let blueprint = ctx.client.get_blueprint(id).await?;
            ctx.ui
                .text(&blueprint_details(&blueprint).render(ctx.ui.color))?;
        }
    }
    Ok(exit::OK)
}

/// The keys of an object, comma-separated.
fn keys(value: Option<&Value>) -> String {
    value
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

fn str_at<'a>(value: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn blueprint_details(blueprint: &Blueprint) -> Details {
    let mut details = Details::new();
    details
        .field("Identifier", blueprint.identifier.as_str())
        .field("Title", Cell::opt(blueprint.title.as_deref()))
        .optional("Description", str_at(&blueprint.extra, "description"));
    let properties = blueprint
        .extra
        .get("schema")
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object);
    let lines = properties
        .map(|p| {
            p.iter()
                .map(|(name, schema)| {
                    let kind = schema.get("type").and_then(Value::as_str).unwrap_or("?");
                    format!("{name} ({kind})")
                })
                .collect()
        })
        .unwrap_or_default();
    details.lines("Properties", lines);
    let relations = blueprint
        .extra
        .get("relations")
        .and_then(Value::as_object)
        .map(|r| {
            r.iter()
                .map(|(name, relation)| {
                    let target = relation
                        .get("target")
                        .and_then(Value::as_str)
                        .unwrap_or("?");
                    format!("{name} -> {target}")
                })
                .collect()
        })
        .unwrap_or_default();
    details.lines("Relations", relations);
    details
}

// ---- actions ----

/// A legacy (v1) action: its `trigger` is a string such as `CREATE`.
fn is_v1(object: &Map<String, Value>) -> bool {
    matches!(object.get("trigger"), Some(Value::String(_)))
}

pub(crate) async fn actions(ctx: &Ctx, command: &ActionsCommand) -> Result<u8, CliError> {
    match command {
        ActionsCommand::Apply { file, blueprint } => {
            let mut applied = Vec::new();
            let mut objects = Vec::new();
            for object in read_objects(file)? {
                let id = identifier_of(&object, "action")?;
                let (action, verb) = if is_v1(&object) {
                    apply_v1(&ctx.client, object, &id, blueprint.as_deref()).await?
                } else {
                    match ctx.client.create_action(&object).await {
                        Ok(action) => (action, "created"),
                        Err(e) if already_exists(&e) => {
                            (ctx.client.update_action(&id, &object).await?, "updated")
                        }
                        Err(e) => return Err(e.into()),
                    }
                };
                applied.push((id, verb));
                objects.push(action.into_json());
            }
            if ctx.ui.structured() {
                return ctx.ui.data(&objects).map(|()| exit::OK);
            }
            print_applied(ctx, "action", &applied)?;
        }
        ActionsCommand::List { blueprint } => {
            let query = ActionQuery {
                blueprint_identifier: blueprint.iter().cloned().collect(),
                ..ActionQuery::default()
            };
            let actions = ctx.client.list_actions(&query).await?;
            if ctx.ui.structured() {
                return ctx.ui.data(&actions).map(|()| exit::OK);
            }
            let mut table = Table::new(&[
                "IDENTIFIER",
                "TITLE",
                "TRIGGER",
                "OPERATION",
                "BLUEPRINT",
                "INVOCATION",
            ]);
            for action in &actions {
                let json = action.as_json();
                let at = |pointer: &str| json.pointer(pointer).and_then(Value::as_str);
                table.row(vec![
                    Cell::opt(action.identifier()),
                    Cell::opt(action.title()),
                    Cell::opt(at("/trigger/type")),
                    Cell::opt(at("/trigger/operation")),
                    Cell::opt(action.blueprint()),
                    Cell::opt(at("/invocationMethod/type")),
                ]);
            }
            ctx.ui.text(&table.render(ctx.ui.color))?;
        }
        ActionsCommand::Get { id } => {
            let action = ctx.client.get_action(id).await?;
            if ctx.ui.structured() {
                return ctx.ui.data(&action).map(|()| exit::OK);
            }
            ctx.ui.text(&action_details(&action).render(ctx.ui.color))?;
        }
        ActionsCommand::Delete { id } => {
            ctx.client.delete_action(id).await?;
            if !ctx.ui.structured() {
                ctx.ui.line(&format!("action {id} deleted"))?;
            }
        }
        ActionsCommand::Permissions(command) => {
            return super::people::permissions(ctx, command).await;
        }
    }
    Ok(exit::OK)
}

/// Creates a v1 action under its blueprint, or replaces it when it exists.
async fn apply_v1(
    client: &PortClient,
    mut object: Map<String, Value>,
    id: &str,
    blueprint_flag: Option<&str>,
) -> Result<(Action, &'static str), CliError> {
    let blueprint = match object.remove("blueprint") {
        Some(Value::String(blueprint)) => blueprint,
        _ => blueprint_flag.map(str::to_owned).ok_or_else(|| {
            CliError::usage(
                "missing_blueprint",
                format!(
                    "action {id} is a v1 action (its trigger is a string): give --blueprint or a `blueprint` key"
                ),
            )
        })?,
    };
    match client.create_blueprint_actions(&blueprint, &object).await {
        Ok(mut created) if !created.is_empty() => Ok((created.remove(0), "created")),
        Ok(_) => Err(CliError::new(
            exit::API,
            "unexpected_response",
            format!("creating action {id} answered no action"),
        )),
        Err(e) if already_exists(&e) => Ok((
            client
                .update_blueprint_action(&blueprint, id, &object)
                .await?,
            "updated",
        )),
        Err(e) => Err(e.into()),
    }
}

fn action_details(action: &Action) -> Details {
    let json = action.as_json();
    let at = |pointer: &str| json.pointer(pointer).and_then(Value::as_str);
    let mut details = Details::new();
    details
        .field("Identifier", Cell::opt(action.identifier()))
        .field("Title", Cell::opt(action.title()))
        .optional("Description", at("/description"))
        .field("Trigger", Cell::opt(at("/trigger/type")))
        .optional("Operation", at("/trigger/operation"))
        .optional("Blueprint", action.blueprint())
        .field("Invocation", Cell::opt(at("/invocationMethod/type")));
    let approval = json
        .get("requiredApproval")
        .map(compact)
        .unwrap_or_else(|| "false".to_owned());
    details.field("Approval", approval);
    let inputs = json
        .pointer("/trigger/userInputs/properties")
        .and_then(Value::as_object)
        .map(|p| {
            p.iter()
                .map(|(name, schema)| {
                    let kind = schema.get("type").and_then(Value::as_str).unwrap_or("?");
                    format!("{name} ({kind})")
                })
                .collect()
        })
        .unwrap_or_default();
    details.lines("Inputs", inputs);
    details
}

// ---- entities ----

pub(crate) async fn entities(ctx: &Ctx, command: &EntitiesCommand) -> Result<u8, CliError> {
    match command {
        EntitiesCommand::Upsert {
            blueprint,
            file,
            id,
            props,
            title,
            run_id,
        } => {
            let objects = match (file, id) {
                (Some(file), _) => read_objects(file)?,
                (None, Some(id)) => {
                    let mut object = Map::new();
                    object.insert("identifier".into(), Value::String(id.clone()));
                    if let Some(title) = title {
                        object.insert("title".into(), Value::String(title.clone()));
                    }
                    object.insert("properties".into(), Value::Object(props_object(props)));
                    vec![object]
                }
                (None, None) => {
                    return Err(CliError::usage("missing_entity", "give -f FILE or --id ID"));
                }
            };
            let mut written = Vec::new();
            for object in &objects {
                let entity = ctx
                    .client
                    .upsert_entity(blueprint, object, run_id.as_deref())
                    .await?;
                written.push(entity);
            }
            if ctx.ui.structured() {
                let mut objects = Vec::new();
                for entity in &written {
                    objects.push(
                        ctx.raw(
                            &["blueprints", blueprint, "entities", &entity.identifier],
                            &[],
                            "entity",
                        )
                        .await?,
                    );
                }
                return match (file, objects.as_slice()) {
                    (None, [one]) => ctx.ui.data(one),
                    _ => ctx.ui.data(&objects),
                }
                .map(|()| exit::OK);
            }
            for entity in &written {
                ctx.ui.line(&format!(
                    "entity {blueprint}/{} upserted",
                    entity.identifier
                ))?;
            }
        }
        EntitiesCommand::Get { blueprint, id } => {
            if ctx.ui.structured() {
                let entity = ctx
                    .raw(&["blueprints", blueprint, "entities", id], &[], "entity")
                    .await?;
                return ctx.ui.data(&entity).map(|()| exit::OK);
            }
            let entity = ctx.client.get_entity(blueprint, id).await?;
            ctx.ui.text(&entity_details(&entity).render(ctx.ui.color))?;
        }
        EntitiesCommand::Delete {
            blueprint,
            id,
            run_id,
        } => {
            let options = EntityDeleteOptions {
                run_id: run_id.clone(),
                ..EntityDeleteOptions::default()
            };
            ctx.client.delete_entity(blueprint, id, &options).await?;
            if !ctx.ui.structured() {
                ctx.ui.line(&format!("entity {blueprint}/{id} deleted"))?;
            }
        }
    }
    Ok(exit::OK)
}

fn entity_details(entity: &Entity) -> Details {
    let mut details = Details::new();
    details
        .field("Identifier", entity.identifier.as_str())
        .field("Title", Cell::opt(entity.title.as_deref()))
        .optional("Blueprint", entity.blueprint.as_deref());
    if let Some(team) = &entity.team {
        details.field("Team", compact(team));
    }
    details.lines(
        "Properties",
        entity
            .properties
            .iter()
            .map(|(k, v)| format!("{k}={}", compact(v)))
            .collect(),
    );
    details.lines(
        "Relations",
        entity
            .relations
            .iter()
            .map(|(k, v)| format!("{k}={}", compact(v)))
            .collect(),
    );
    details
        .field("Created", time(entity.created_at.as_ref()))
        .field("Updated", time(entity.updated_at.as_ref()));
    details
}
