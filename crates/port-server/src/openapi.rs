//! Our OpenAPI 3.1 document, built from the route table ([`crate::routes::ENDPOINTS`]
//! plus any routes other crates add), so every served route is documented.

use serde_json::{Map, Value, json};

use port_core::action::InvocationKind;
use port_core::id::{
    ActionIdentifier, BlueprintIdentifier, EntityIdentifier, IntegrationIdentifier, PropertyKey,
};
use port_core::integration::MAX_ORGANIZATION_NAME_CHARS;
use port_core::run::{
    MAX_APPROVAL_DESCRIPTION_CHARS, MAX_EXTERNAL_RUN_ID_CHARS, MAX_LINK_CHARS, MAX_LINKS,
    MAX_STATUS_LABEL_CHARS, MAX_SUMMARY_CHARS,
};
use port_core::secret::{SecretName, SecretValue};
use port_core::service::pull::MAX_EXCLUDED_ACTIONS;
use port_core::service::secrets::MAX_SECRET_DESCRIPTION_CHARS;

use crate::routes::{Endpoint, ParamKind, QueryParam, RUN_ID_PATTERN};

/// Error statuses every authenticated route may answer. A person (a personal token or
/// a signed-in browser) gets 403 for what their role or the action's permissions do not
/// allow; an organization credential never does for that reason.
const AUTHENTICATED_ERRORS: [(u16, &str); 4] = [
    (401, "Missing, invalid or expired access token"),
    (
        403,
        "missing_permissions: the caller is a person whose role or the action's permissions do not allow this",
    ),
    (404, "A resource with the provided identifier was not found"),
    (500, "Internal error"),
];

/// Operations whose request body may be left out.
const OPTIONAL_BODY: [&str; 2] = ["heartbeatRun", "withdrawRun"];

/// Error statuses of routes that take a body.
const BODY_ERRORS: [(u16, &str); 2] = [
    (413, "Request body is too large (limit is 1MiB)"),
    (422, "The JSON provided does not match the route's schema"),
];

/// The 422 of a route with query parameters: any value may be refused for holding NUL
/// (see `extract`), validated ones also outside their enum, range or pattern.
const QUERY_ERROR: (u16, &str) = (
    422,
    "A query parameter is not valid (outside its enum, range or pattern, or holding NUL)",
);

/// The `Idempotency-Key` header: 1 to 255 visible ASCII characters (inner spaces
/// allowed; HTTP strips leading and trailing ones).
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]([ -~]*[!-~])?$";

/// The schema of an identifier (Port's pattern and length).
fn identifier_schema(pattern: &str, max_length: Option<usize>) -> Value {
    let mut schema = json!({ "type": "string", "minLength": 1, "pattern": pattern });
    if let (Some(max), Value::Object(map)) = (max_length, &mut schema) {
        map.insert("maxLength".into(), json!(max));
    }
    schema
}

fn blueprint_identifier() -> Value {
    identifier_schema(BlueprintIdentifier::PATTERN, Some(100))
}

fn entity_identifier() -> Value {
    identifier_schema(EntityIdentifier::PATTERN, Some(1000))
}

fn action_identifier() -> Value {
    identifier_schema(ActionIdentifier::PATTERN, None)
}

fn integration_identifier() -> Value {
    identifier_schema(IntegrationIdentifier::PATTERN, Some(100))
}

fn path_parameter_schema(name: &str) -> Value {
    match name {
        "blueprint_identifier" => blueprint_identifier(),
        "entity_identifier" => entity_identifier(),
        "action_identifier" => action_identifier(),
        "identifier" => integration_identifier(),
        "run_id" => json!({ "type": "string", "pattern": RUN_ID_PATTERN }),
        "name" => team_name(),
        _ => json!({ "type": "string" }),
    }
}

fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": path_parameter_schema(name) }))
        .collect()
}

fn query_parameter(param: &QueryParam) -> Value {
    let mut scalar = Map::new();
    let kind = match param.kind {
        ParamKind::String => "string",
        ParamKind::Boolean => "boolean",
        ParamKind::Integer => "integer",
    };
    scalar.insert("type".into(), json!(kind));
    if !param.values.is_empty() {
        scalar.insert("enum".into(), json!(param.values));
    }
    if let Some(minimum) = param.minimum {
        scalar.insert("minimum".into(), json!(minimum));
    }
    if let Some(maximum) = param.maximum {
        scalar.insert("maximum".into(), json!(maximum));
    }
    if let Some(format) = param.format {
        scalar.insert("format".into(), json!(format));
    }
    match param.pattern {
        Some(pattern) => {
            scalar.insert("pattern".into(), json!(pattern));
        }
        // A formatted value (a date-time) holds no NUL already.
        None if param.format.is_some() => {}
        // Every query value is refused with NUL in it (see `extract`), as body text is.
        None if matches!(param.kind, ParamKind::String) && param.values.is_empty() => {
            scalar.insert("pattern".into(), json!(NUL_FREE_PATTERN));
        }
        None => {}
    }
    let scalar = Value::Object(scalar);
    let schema = if param.repeated {
        json!({ "type": "array", "items": scalar })
    } else {
        scalar
    };
    json!({
        "name": param.name,
        "in": "query",
        "required": param.required,
        "description": param.description,
        "schema": schema,
    })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn operation(endpoint: &Endpoint) -> Value {
    let mut op = Map::new();
    op.insert("operationId".into(), json!(endpoint.operation_id));
    op.insert("summary".into(), json!(endpoint.summary));
    op.insert("tags".into(), json!([endpoint.tag]));
    let mut parameters = path_parameters(endpoint.path);
    parameters.extend(endpoint.query.iter().map(query_parameter));
    if endpoint.operation_id == "executeAction" || endpoint.operation_id == "executeBlueprintAction"
    {
        parameters.push(json!({
            "name": "Idempotency-Key",
            "in": "header",
            "required": false,
            "description": "Requests with the same key within 24 hours return the same run and start nothing new.",
            "schema": { "type": "string", "minLength": 1, "maxLength": 255, "pattern": IDEMPOTENCY_KEY_PATTERN },
        }));
    }
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    if let Some(body) = endpoint.body {
        let required = !OPTIONAL_BODY.contains(&endpoint.operation_id);
        op.insert(
            "requestBody".into(),
            json!({ "required": required, "content": { "application/json": { "schema": schema_ref(body) } } }),
        );
    }
    let mut responses = Map::new();
    let content_type = match endpoint.response {
        "PrometheusText" => "text/plain",
        "EventStream" => "text/event-stream",
        _ => "application/json",
    };
    responses.insert(
        endpoint.success.to_string(),
        json!({ "description": "Success", "content": { content_type: { "schema": schema_ref(endpoint.response) } } }),
    );
    let error = |description: &str| json!({ "description": description, "content": { "application/json": { "schema": schema_ref("Error") } } });
    if endpoint.authenticated {
        for (status, description) in AUTHENTICATED_ERRORS {
            responses.insert(status.to_string(), error(description));
        }
        op.insert("security".into(), json!([{ "bearer": [] }]));
    } else if endpoint.path == "/v1/auth/access_token" {
        responses.insert("401".into(), error("Invalid client id or client secret"));
    } else if endpoint.path == "/readyz" {
        responses.insert("503".into(), error("The database is not reachable"));
    }
    if endpoint.body.is_some() {
        for (status, description) in BODY_ERRORS {
            responses.insert(status.to_string(), error(description));
        }
    }
    if !endpoint.query.is_empty() {
        let (status, description) = QUERY_ERROR;
        responses
            .entry(status.to_string())
            .or_insert_with(|| error(description));
    }
    for (status, description) in endpoint.errors {
        // A status the route answers for more than one reason lists them all.
        let description = match responses.get(&status.to_string()) {
            Some(existing) => format!(
                "{}; {description}",
                existing["description"].as_str().unwrap_or_default()
            ),
            None => (*description).to_owned(),
        };
        responses.insert(status.to_string(), error(&description));
    }
    if endpoint.path == "/v1/blueprints/{blueprint_identifier}/entities/bulk" {
        responses.insert(
            "207".into(),
            json!({ "description": "Some entities failed", "content": { "application/json": { "schema": schema_ref("BulkEntitiesResponse") } } }),
        );
    }
    if endpoint.operation_id == "createEntity" {
        responses.insert(
            "200".into(),
            json!({ "description": "Updated (with upsert=true)", "content": { "application/json": { "schema": schema_ref("EntityResponse") } } }),
        );
    }
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

/// Builds the document for these endpoints.
pub fn document(endpoints: &[Endpoint]) -> Value {
    let mut paths = Map::new();
    for endpoint in endpoints {
        let item = paths
            .entry(endpoint.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(item) = item {
            item.insert(endpoint.method.openapi_key().into(), operation(endpoint));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "portd",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A self-hostable server for Port's self-service actions and action runs API. \
                Paths, bodies and error identifiers follow Port's API (https://api.port.io). \
                portd extensions: `GET /v1/actions/runs` pages with `before`/`next`, filters by `status`; \
                execute routes honour an `Idempotency-Key` header; actions take `timeoutSeconds`; \
                `GET /v1/actions/runs/{run_id}/deliveries` lists how a run's invocation was delivered \
                (every webhook attempt) and `POST …/deliveries/redeliver` sends it again; \
                `GET …/logs/stream` follows a run's log as server-sent events; pull-mode runners \
                extend their claims with `POST …/heartbeat`. Webhooks carry a `webhook-id` header, \
                the same on every attempt of one delivery.",
        },
        "servers": [{ "url": "/" }],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token from POST /v1/auth/access_token.",
                },
            },
            "schemas": schemas(),
        },
    })
}

fn envelope(key: &str, value: Value) -> Value {
    json!({
        "type": "object",
        "required": ["ok", key],
        "properties": { "ok": { "const": true }, key: value },
    })
}

/// Text portd stores: anything but NUL, which PostgreSQL cannot hold and every route
/// refuses with 422 (see `extract`). ECMA and Python regular expressions both read it.
const NUL_FREE_PATTERN: &str = "^[^\\u0000]*$";

/// Any JSON value without NUL in its strings or keys: what free-form parts of bodies
/// (properties, relations, templates) may hold.
fn nul_free_json() -> Value {
    let me = schema_ref("NulFreeJson");
    json!({
        "description": "Any JSON value; strings and keys may not contain NUL (U+0000).",
        "anyOf": [
            { "type": "string", "pattern": NUL_FREE_PATTERN },
            { "type": ["number", "boolean", "null"] },
            { "type": "array", "items": me },
            {
                "type": "object",
                "propertyNames": { "pattern": NUL_FREE_PATTERN },
                "additionalProperties": me,
            },
        ],
    })
}

/// Says in every schema what `extract` enforces on every body: no NUL in strings or
/// keys. Free text gets [`NUL_FREE_PATTERN`], objects a `propertyNames` rule, and
/// free-form values (`{}`, open `additionalProperties`) become [`nul_free_json`].
fn forbid_nul(schema: &mut Value) {
    let Value::Object(map) = schema else {
        return;
    };
    if map.is_empty() {
        *schema = schema_ref("NulFreeJson");
        return;
    }
    if map.contains_key("$ref") {
        return;
    }
    let has_type = |name: &str| match map.get("type") {
        Some(Value::String(t)) => t == name,
        Some(Value::Array(types)) => types.iter().any(|t| t == name),
        _ => false,
    };
    let is_string = has_type("string");
    let is_object = has_type("object");
    if is_string
        && !["pattern", "enum", "const", "format"]
            .iter()
            .any(|k| map.contains_key(*k))
    {
        map.insert("pattern".into(), json!(NUL_FREE_PATTERN));
    }
    if is_object {
        map.entry("propertyNames")
            .or_insert_with(|| json!({ "pattern": NUL_FREE_PATTERN }));
        match map.get("additionalProperties") {
            None | Some(Value::Bool(true)) => {
                map.insert("additionalProperties".into(), schema_ref("NulFreeJson"));
            }
            _ => {}
        }
    }
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        properties.values_mut().for_each(forbid_nul);
    }
    for key in ["items", "additionalProperties", "not", "if", "then", "else"] {
        if let Some(inner @ Value::Object(_)) = map.get_mut(key) {
            forbid_nul(inner);
        }
    }
    for key in ["anyOf", "oneOf", "allOf", "prefixItems"] {
        if let Some(Value::Array(options)) = map.get_mut(key) {
            options.iter_mut().for_each(forbid_nul);
        }
    }
}

fn schemas() -> Value {
    let mut all = nul_checked_schemas();
    if let Value::Object(map) = &mut all {
        map.insert("NulFreeJson".into(), nul_free_json());
    }
    all
}

fn nul_checked_schemas() -> Value {
    let mut all = unchecked_schemas();
    if let Value::Object(map) = &mut all {
        map.values_mut().for_each(forbid_nul);
    }
    all
}

fn unchecked_schemas() -> Value {
    let mut all = core_schemas();
    // PUT takes the identifier from the path: the body may leave it out.
    if let Value::Object(map) = &mut all
        && let Some(mut replace) = map.get("Blueprint").cloned()
    {
        replace["required"] = json!(["title", "schema"]);
        map.insert("BlueprintReplaceRequest".into(), replace);
    }
    for more in [
        delivery_schemas(),
        legacy_action_schemas(),
        definition_schemas(),
        client_schemas(),
        people_schemas(),
    ] {
        if let (Value::Object(all), Value::Object(more)) = (&mut all, more) {
            all.extend(more);
        }
    }
    all
}

fn core_schemas() -> Value {
    let object = json!({ "type": "object" });
    // What a run's backend may write into it (port_core::run's bounds, in characters).
    let status_label = json!({ "type": "string", "maxLength": MAX_STATUS_LABEL_CHARS });
    let link = json!({ "type": "string", "maxLength": MAX_LINK_CHARS });
    let run = json!({
        "type": "object",
        "description": "A run. v2: `action`, `blueprint`, `entity` are objects. v1 (legacy): `action` is the identifier and `relatedEntityExists`/`relatedBlueprintExists` flag references.",
        "required": ["id", "status", "action", "properties", "source"],
        "properties": {
            "id": { "type": "string", "pattern": "^r_[A-Za-z0-9]{16}$" },
            "status": { "type": "string", "enum": ["IN_PROGRESS", "SUCCESS", "FAILURE", "WAITING_FOR_APPROVAL", "DECLINED"] },
            "statusLabel": { "type": ["string", "null"] },
            "action": { "type": ["object", "string"] },
            "blueprint": object,
            "entity": object,
            "properties": object,
            "source": { "type": "string", "enum": ["UI", "API", "AUTOMATION"] },
            "requiredApproval": { "type": ["boolean", "object"] },
            "approval": { "type": ["object", "null"] },
            "link": { "type": "array", "items": { "type": "string" } },
            "summary": { "type": "string" },
            "externalRunId": { "type": "string" },
            "message": object,
            "payload": { "type": ["object", "null"] },
            "response": {},
            "endedAt": { "type": ["string", "null"], "format": "date-time" },
            "createdAt": { "type": "string", "format": "date-time" },
            "updatedAt": { "type": "string", "format": "date-time" },
            "createdBy": { "type": "string" },
            "updatedBy": { "type": "string" },
            "impersonatedBy": { "type": "string", "description": "The organization credential (client id) that executed the run as createdBy (`run_as`)." },
        },
    });
    let run_log = json!({
        "type": "object",
        "required": ["id", "runId", "message", "createdAt", "createdBy"],
        "properties": {
            "id": { "type": "string", "pattern": "^log_[A-Za-z0-9]{16}$" },
            "runId": { "type": "string" },
            "message": { "type": "string" },
            "createdAt": { "type": "string", "format": "date-time" },
            "createdBy": { "type": "string" },
        },
    });
    json!({
        "Error": {
            "type": "object",
            "required": ["ok", "error", "message"],
            "properties": {
                "ok": { "const": false },
                "error": { "type": "string", "description": "Port's error identifier, e.g. not_found, invalid_request, run_exhausted." },
                "message": { "type": "string" },
            },
        },
        "Ok": { "type": "object", "required": ["ok"], "properties": { "ok": { "const": true } } },
        "Object": object,
        "PrometheusText": { "type": "string" },
        "AccessTokenRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["clientId", "clientSecret"],
            "properties": { "clientId": { "type": "string" }, "clientSecret": { "type": "string" } },
        },
        "AccessTokenResponse": {
            "type": "object",
            "required": ["ok", "accessToken", "expiresIn", "tokenType"],
            "properties": {
                "ok": { "const": true },
                "accessToken": { "type": "string" },
                "expiresIn": { "type": "integer", "const": 10800 },
                "tokenType": { "const": "Bearer" },
            },
        },
        "Blueprint": {
            "type": "object",
            "required": ["identifier", "title", "schema"],
            "properties": {
                "identifier": blueprint_identifier(),
                "title": { "type": "string", "minLength": 1 },
                "icon": { "type": ["string", "null"] },
                "description": { "type": ["string", "null"] },
                "schema": {
                    "type": "object",
                    "required": ["properties"],
                    "properties": { "properties": schema_ref("PropertyDefinitions"), "required": { "type": "array", "items": { "type": "string" }, "description": "Keys of `properties`." } },
                },
                "relations": object,
            },
        },
        "BlueprintResponse": envelope("blueprint", schema_ref("Blueprint")),
        "BlueprintsResponse": envelope("blueprints", json!({ "type": "array", "items": schema_ref("Blueprint") })),
        "Entity": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "identifier": entity_identifier(),
                "title": { "type": ["string", "null"] },
                "icon": { "type": ["string", "null"] },
                "team": { "type": ["string", "array", "null"], "items": { "type": "string" } },
                "properties": object,
                "relations": object,
                "blueprint": { "type": "string" },
                "createdAt": { "type": "string" },
                "createdBy": { "type": "string" },
                "updatedAt": { "type": "string" },
                "updatedBy": { "type": "string" },
            },
        },
        "EntityResponse": envelope("entity", schema_ref("Entity")),
        "EntitiesResponse": {
            "type": "object",
            "required": ["ok", "entities"],
            "properties": {
                "ok": { "const": true },
                "entities": { "type": "array", "items": schema_ref("Entity") },
                "next": { "type": "string", "description": "Present when more matches follow: pass it as `from`." },
            },
        },
        "BulkEntitiesRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["entities"],
            "properties": { "entities": { "type": "array", "minItems": 1, "maxItems": 20, "items": schema_ref("Entity") } },
        },
        "BulkEntitiesResponse": {
            "type": "object",
            "required": ["ok", "entities", "errors"],
            "properties": {
                "ok": { "type": "boolean" },
                "entities": { "type": "array", "items": object },
                "errors": { "type": "array", "items": object },
            },
        },
        "EntitySearchRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["query"],
            "properties": {
                "query": schema_ref("SearchQuery"),
                "include": { "type": "array", "maxItems": 100, "items": { "type": "string" } },
                "exclude": { "type": "array", "maxItems": 100, "items": { "type": "string" } },
                "limit": { "type": "integer", "minimum": 1, "maximum": 1000 },
                "from": entity_identifier(),
            },
        },
        "AuditsResponse": envelope("audits", json!({ "type": "array", "items": object })),
        "Action": {
            "type": "object",
            "required": ["identifier", "trigger", "invocationMethod"],
            "properties": {
                "identifier": action_identifier(),
                "title": { "type": "string" },
                "icon": { "type": "string" },
                "description": { "type": "string" },
                "trigger": schema_ref("ActionTrigger"),
                "invocationMethod": schema_ref("InvocationMethod"),
                "requiredApproval": { "type": ["boolean", "object"] },
                "approvalNotification": object,
                "publish": { "type": "boolean" },
                "allowAnyoneToViewRuns": { "type": "boolean" },
                "timeoutSeconds": { "type": "integer", "minimum": 1, "description": "portd extension: IN_PROGRESS runs older than this fail." },
            },
        },
        "ActionResponse": envelope("action", json!({ "anyOf": [schema_ref("Action"), schema_ref("LegacyAction")], "description": "v2, or v1 with version=v1" })),
        "ExecuteRequest": {
            "type": "object",
            "additionalProperties": false,
            "properties": { "properties": object, "entity": { "type": ["string", "null"] } },
        },
        "Run": run,
        "RunResponse": envelope("run", schema_ref("Run")),
        "RunsResponse": {
            "type": "object",
            "required": ["ok", "runs"],
            "properties": {
                "ok": { "const": true },
                "runs": { "type": "array", "items": schema_ref("Run") },
                "next": { "type": "string", "description": "Present when more runs may follow: pass it as `before`." },
            },
        },
        "RunPatch": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "status": { "type": "string", "enum": ["SUCCESS", "FAILURE"] },
                "statusLabel": status_label.clone(),
                "link": { "oneOf": [link.clone(), { "type": "array", "maxItems": MAX_LINKS, "items": link }] },
                "summary": { "type": "string", "maxLength": MAX_SUMMARY_CHARS, "description": "Markdown shown on the run's page; at most 64 Ki characters." },
                "externalRunId": { "type": "string", "maxLength": MAX_EXTERNAL_RUN_ID_CHARS },
                "message": object,
            },
        },
        "ApprovalRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["status"],
            "properties": {
                "status": { "type": "string", "enum": ["APPROVE", "DECLINE"] },
                "description": { "type": "string", "maxLength": MAX_APPROVAL_DESCRIPTION_CHARS },
            },
        },
        "ApproversResponse": envelope("approvers", json!({
            "type": "array",
            "items": {
                "type": "object",
                "required": ["userId", "state"],
                "properties": {
                    "userId": { "type": "string" },
                    "state": { "type": "string" },
                    "description": { "type": ["string", "null"] },
                },
            },
        })),
        "RunLog": run_log,
        "RunLogRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["message"],
            "properties": {
                "message": { "type": "string" },
                "terminationStatus": { "type": "string", "enum": ["SUCCESS", "FAILURE"] },
                "statusLabel": status_label,
            },
        },
        "RunLogResponse": envelope("runLog", schema_ref("RunLog")),
        "RunLogsResponse": envelope("runLogs", json!({ "type": "array", "items": schema_ref("RunLog") })),
    })
}

/// The schemas of the delivery routes and the log stream (portd extensions).
fn delivery_schemas() -> Value {
    json!({
        "EventStream": {
            "type": "string",
            "description": "text/event-stream. `event: log` (`id:` the line's sequence number, data a RunLog), `event: status` (data the v2 Run), `event: end` (data the final v2 Run; the stream closes). Comments every 15 s keep it alive. Send `Last-Event-ID` to resume after a line.",
        },
        "DeliveryAttempt": {
            "type": "object",
            "required": ["number", "startedAt", "endedAt", "durationMs"],
            "properties": {
                "number": { "type": "integer", "minimum": 1 },
                "startedAt": { "type": "string", "format": "date-time" },
                "endedAt": { "type": "string", "format": "date-time" },
                "statusCode": { "type": ["integer", "null"], "description": "The receiver's HTTP status; null when it did not answer." },
                "error": { "type": ["string", "null"], "description": "Why the attempt got no answer (timeout, connection refused, destination refused)." },
                "responseExcerpt": { "type": ["string", "null"], "description": "The first KiB of the answer's body." },
                "durationMs": { "type": "integer", "minimum": 0 },
            },
        },
        "Delivery": {
            "type": "object",
            "required": ["id", "runId", "mode", "state", "attempts", "attemptCount", "createdAt", "updatedAt"],
            "properties": {
                "id": { "type": "string", "pattern": "^msg_[A-Za-z0-9]{16}$", "description": "Also the `webhook-id` header of every attempt." },
                "runId": { "type": "string" },
                "mode": { "type": "string", "enum": ["WEBHOOK", "AGENT", "UPSERT_ENTITY"] },
                "state": { "type": "string", "enum": ["PENDING", "DELIVERED", "FAILED"] },
                "synchronized": { "type": "boolean" },
                "installationId": { "type": ["string", "null"] },
                "attemptCount": { "type": "integer", "description": "Attempts started (webhook) or claims made (agent)." },
                "attempts": { "type": "array", "items": schema_ref("DeliveryAttempt") },
                "nextAttemptAt": { "type": ["string", "null"], "format": "date-time", "description": "While pending: when it is due." },
                "leasedUntil": { "type": ["string", "null"], "format": "date-time", "description": "While pending: until when a worker or a runner holds it." },
                "createdAt": { "type": "string", "format": "date-time" },
                "updatedAt": { "type": "string", "format": "date-time" },
            },
        },
        "DeliveriesResponse": envelope("deliveries", json!({ "type": "array", "items": schema_ref("Delivery") })),
        "ClaimRequest": {
            "type": "object",
            "properties": {
                "limit": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 1, "description": "At most 100 runs are handed out at once, whatever the limit." },
                "visibilityTimeoutMs": { "type": "integer", "minimum": 1, "maximum": 86_400_000, "default": 60_000, "description": "How long the runs stay claimed without an ack or a heartbeat; below 100 counts as 100." },
                "installationId": { "type": "string", "description": "`_PORT_EXEC_AGENT` (Port's agent): unbound WEBHOOK runs. Another value: only the runs bound to that installation (INTEGRATION_ACTION's installationId). Left out: every unbound run." },
                "invocationMethod": { "type": "string", "enum": InvocationKind::ALL.map(InvocationKind::as_str), "description": "Only runs whose evaluated invocation has this type." },
                "exclude": { "type": "array", "maxItems": MAX_EXCLUDED_ACTIONS, "items": { "type": "string" }, "description": "Action identifiers whose runs are left for a later claim." },
            },
        },
        "ClaimResponse": envelope("runs", json!({
            "type": "array",
            "items": {
                "allOf": [schema_ref("Run")],
                "properties": { "claimedUntil": { "type": "string", "format": "date-time" } },
            },
        })),
        "AckRequest": {
            "type": "object",
            "description": "A JSON object (an array is 422) with either `runIds` (Port's agent, portd's runners) or `runId` (Ocean: 409 when already acknowledged).",
            "properties": {
                "runIds": { "type": "array", "maxItems": 1000, "items": { "type": "string" } },
                "runId": { "type": "string" },
            },
            "oneOf": [{ "required": ["runIds"] }, { "required": ["runId"] }],
        },
        "AckResponse": envelope("ackedCount", json!({ "type": "integer", "minimum": 0 })),
        "HeartbeatRequest": {
            "type": "object",
            "properties": {
                "visibilityTimeoutMs": { "type": "integer", "minimum": 100, "maximum": 86_400_000, "default": 60_000 },
            },
        },
        "HeartbeatResponse": envelope("claimedUntil", json!({ "type": "string", "format": "date-time" })),
    })
}

/// The schemas of the routes Port's own clients call besides runs: the organization,
/// Ocean's integrations, a runner's reported response, and the (empty) workflow runs.
fn client_schemas() -> Value {
    let secret_name = json!({
        "type": "string", "minLength": 1, "maxLength": SecretName::MAX_LEN,
        "pattern": "^[A-Za-z0-9_-]+$",
    });
    let secret_value = json!({ "type": "string", "maxLength": SecretValue::MAX_CHARS });
    let object = json!({ "type": "object" });
    let integration = json!({
        "type": "object",
        "description": "An integration: installationId, installationType (OnPrem unless stored), every key its client stored, and who created and changed it when.",
        "required": ["installationId", "installationType", "createdAt", "createdBy", "updatedAt", "updatedBy"],
        "properties": {
            "installationId": integration_identifier(),
            "installationType": { "type": "string" },
            "config": object,
            "createdAt": { "type": "string", "format": "date-time" },
            "createdBy": { "type": "string" },
            "updatedAt": { "type": "string", "format": "date-time" },
            "updatedBy": { "type": "string" },
        },
    });
    json!({
        "RunResponseRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["response"],
            "properties": { "response": { "description": "Any JSON value (1 MiB of JSON at most): what the run's backend answered." } },
        },
        "NodeClaimRequest": {
            "type": "object",
            "properties": {
                "installationId": { "type": "string" },
                "limit": { "type": "integer", "minimum": 1, "maximum": 1000 },
                "visibilityTimeoutMs": { "type": "integer", "minimum": 1, "maximum": 86_400_000 },
                "exclude": { "type": "array", "maxItems": 100, "items": { "type": "string" } },
            },
        },
        "NodeRunsResponse": envelope("nodeRuns", json!({ "type": "array", "maxItems": 0, "items": object, "description": "Always empty: portd has no workflow runs yet." })),
        "Organization": {
            "type": "object",
            "required": ["id", "name", "settings", "featureFlags", "createdAt"],
            "properties": {
                "id": { "type": "string", "pattern": "^org_[A-Za-z0-9]{16}$" },
                "name": { "type": "string" },
                "settings": object,
                "featureFlags": { "type": "array", "items": { "type": "string" } },
                "createdAt": { "type": "string", "format": "date-time" },
            },
        },
        "OrganizationResponse": envelope("organization", schema_ref("Organization")),
        "OrganizationPatch": {
            "type": "object",
            "additionalProperties": false,
            "description": "Both keys optional; settings (64 KiB of JSON at most once merged) merge key by key into the stored ones.",
            "properties": {
                "name": { "type": "string", "minLength": 1, "maxLength": MAX_ORGANIZATION_NAME_CHARS },
                "settings": object,
            },
        },
        "Secret": {
            "type": "object",
            "required": ["secretName", "createdAt", "updatedAt"],
            "description": "A secret's metadata: its value is never answered.",
            "properties": {
                "secretName": secret_name,
                "description": { "type": "string" },
                "createdAt": { "type": "string", "format": "date-time" },
                "updatedAt": { "type": "string", "format": "date-time" },
            },
        },
        "SecretResponse": envelope("secret", schema_ref("Secret")),
        "SecretsResponse": envelope("secrets", json!({ "type": "array", "items": schema_ref("Secret") })),
        "SecretCreateRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["secretName", "secretValue"],
            "properties": {
                "secretName": secret_name,
                "secretValue": secret_value,
                "description": { "type": "string", "maxLength": MAX_SECRET_DESCRIPTION_CHARS },
            },
        },
        "SecretPatch": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "secretValue": secret_value,
                "description": { "type": "string", "maxLength": MAX_SECRET_DESCRIPTION_CHARS },
            },
        },
        "ProvisionEnabledResponse": envelope("integrations", json!({ "type": "array", "items": { "type": "string" } })),
        "IntegrationCreateRequest": {
            "type": "object",
            "required": ["installationId"],
            "description": "Every key but installationId (and createdAt, createdBy, updatedAt, updatedBy, which portd sets) is kept as sent; 256 KiB of JSON at most.",
            "properties": {
                "installationId": integration_identifier(),
                "installationAppType": { "type": "string" },
                "installationType": { "type": "string" },
                "version": { "type": "string" },
                "config": object,
                "changelogDestination": object,
                "actionsProcessingEnabled": { "type": "boolean" },
                "incrementalSyncEnabled": { "type": "boolean" },
                "arePortResourcesInitialized": { "type": "boolean" },
                "processingMode": { "type": "string" },
                "createPortResourcesOrigin": { "type": "string" },
            },
        },
        "IntegrationPatch": {
            "type": "object",
            "description": "The keys to replace (config as a whole); 256 KiB of JSON at most once merged.",
            "properties": {
                "installationAppType": { "type": "string" },
                "installationType": { "type": "string" },
                "version": { "type": "string" },
                "config": object,
                "changelogDestination": object,
                "actionsProcessingEnabled": { "type": "boolean" },
                "incrementalSyncEnabled": { "type": "boolean" },
                "arePortResourcesInitialized": { "type": "boolean" },
                "processingMode": { "type": "string" },
                "createPortResourcesOrigin": { "type": "string" },
            },
        },
        "IntegrationConfigRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["config"],
            "properties": { "config": object },
        },
        "Integration": integration,
        "IntegrationResponse": envelope("integration", schema_ref("Integration")),
    })
}

/// The legacy (v1) action shapes of the blueprint-scoped action routes.
fn legacy_action_schemas() -> Value {
    let object = json!({ "type": "object" });
    json!({
        "LegacyActionRequest": {
            "type": "object",
            "description": "A legacy (v1) action: `trigger` is the operation and `userInputs` sits at the top; the blueprint is the route's.",
            "required": ["identifier", "trigger", "userInputs", "invocationMethod"],
            "properties": {
                "identifier": action_identifier(),
                "title": { "type": "string" },
                "icon": { "type": "string" },
                "description": { "type": "string" },
                "trigger": { "type": "string", "enum": ["CREATE", "DAY-2", "DELETE"] },
                "userInputs": object,
                "invocationMethod": object,
                "blueprint": { "type": "string", "description": "The route's blueprint (another is 422)." },
                "requiredApproval": { "type": ["boolean", "object"] },
                "approvalNotification": object,
                "publish": { "type": "boolean" },
                "allowAnyoneToViewRuns": { "type": "boolean" },
                "timeoutSeconds": { "type": "integer", "minimum": 1 },
            },
        },
        "LegacyActionsRequest": { "type": "array", "items": schema_ref("LegacyActionRequest") },
        "LegacyActionOrActions": {
            "oneOf": [schema_ref("LegacyActionRequest"), schema_ref("LegacyActionsRequest")],
        },
        "LegacyAction": {
            "type": "object",
            "description": "An action in the legacy (v1) shape: `trigger` is the operation (CREATE, DAY-2, DELETE). An action without a v1 form is shown in the v2 shape.",
            "required": ["identifier", "trigger", "invocationMethod"],
            "properties": {
                "id": { "type": "string" },
                "identifier": { "type": "string" },
                "title": { "type": "string" },
                "trigger": { "anyOf": [{ "type": "string", "enum": ["CREATE", "DAY-2", "DELETE"] }, object] },
                "userInputs": object,
                "invocationMethod": object,
                "blueprint": { "type": "string" },
            },
        },
        "LegacyActionResponse": envelope("action", schema_ref("LegacyAction")),
        "LegacyActionsResponse": envelope("actions", json!({ "type": "array", "items": schema_ref("LegacyAction") })),
        "LegacyActionsCreatedResponse": {
            "oneOf": [schema_ref("LegacyActionResponse"), schema_ref("LegacyActionsResponse")],
        },
        "ActionsResponse": envelope("actions", json!({ "type": "array", "items": { "anyOf": [schema_ref("Action"), schema_ref("LegacyAction")] }, "description": "v2, or v1 with version=v1" })),
    })
}

/// Property keys: Port's pattern, at most 100 characters.
fn property_names() -> Value {
    json!({ "pattern": PropertyKey::PATTERN, "maxLength": 100 })
}

/// The parts of actions, blueprints and searches the server parses key by key.
fn definition_schemas() -> Value {
    let object = json!({ "type": "object" });
    let user_inputs = json!({
        "type": "object",
        "required": ["properties"],
        "properties": {
            "properties": schema_ref("PropertyDefinitions"),
            "required": { "type": "array", "items": { "type": "string" }, "description": "Keys of `properties`." },
        },
    });
    json!({
        "PropertyDefinitions": {
            "type": "object",
            "description": "JSON Schema definitions of properties (or user inputs) by key.",
            "propertyNames": property_names(),
            "additionalProperties": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": { "type": "string", "enum": ["string", "number", "integer", "boolean", "object", "array"] },
                },
            },
        },
        "ActionTrigger": {
            "anyOf": [
                {
                    "title": "Self-service",
                    "type": "object",
                    "required": ["type", "operation", "userInputs"],
                    "properties": {
                        "type": { "const": "self-service" },
                        "operation": { "type": "string", "enum": ["CREATE", "DAY-2", "DELETE"] },
                        "blueprintIdentifier": blueprint_identifier(),
                        "userInputs": user_inputs,
                        "condition": object,
                    },
                },
                {
                    "title": "Automation",
                    "type": "object",
                    "required": ["type", "event"],
                    "properties": {
                        "type": { "const": "automation" },
                        "event": {
                            "description": "Entity events name a blueprint (timers also its timer property); run events an action.",
                            "type": "object",
                            "required": ["type"],
                            "properties": {
                                "type": { "type": "string", "enum": [
                                    "ENTITY_CREATED", "ENTITY_UPDATED", "ENTITY_DELETED", "ANY_ENTITY_CHANGE",
                                    "TIMER_PROPERTY_EXPIRED", "RUN_CREATED", "RUN_UPDATED", "ANY_RUN_CHANGE",
                                ] },
                                "blueprintIdentifier": blueprint_identifier(),
                                "actionIdentifier": action_identifier(),
                                "propertyIdentifier": { "type": "string" },
                            },
                        },
                        "condition": {
                            "description": "jq expressions over the event (`.diff.before`, `.diff.after`, `.context`, `.trigger`), combined with `and` (the default) or `or`.",
                            "type": "object",
                            "required": ["type", "expressions"],
                            "properties": {
                                "type": { "const": "JQ" },
                                "expressions": { "type": "array", "maxItems": 32, "items": { "type": "string", "minLength": 1 } },
                                "combinator": { "type": "string", "enum": ["and", "or"] },
                            },
                        },
                    },
                },
            ],
        },
        "InvocationMethod": {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": { "type": "string", "enum": ["WEBHOOK", "KAFKA", "GITHUB", "GITLAB", "AZURE_DEVOPS", "INTEGRATION_ACTION", "UPSERT_ENTITY"] },
            },
            "allOf": [
                invocation_kind("WEBHOOK", &[("url", "string")], json!({
                    "url": { "type": "string" },
                    "agent": { "type": ["boolean", "string"] },
                    "synchronized": { "type": ["boolean", "string"] },
                    "method": { "type": "string", "enum": ["POST", "PUT", "PATCH", "DELETE", "GET"] },
                    "headers": { "type": "object", "additionalProperties": { "type": "string" } },
                    "body": { "type": ["object", "array"] },
                })),
                invocation_kind("GITHUB", &[("org", "string"), ("repo", "string"), ("workflow", "string")], json!({})),
                invocation_kind("GITLAB", &[("projectName", "string"), ("groupName", "string")], json!({})),
                invocation_kind("AZURE_DEVOPS", &[("webhook", "string"), ("org", "string")], json!({})),
                invocation_kind("INTEGRATION_ACTION", &[("installationId", "string"), ("integrationActionType", "string"), ("integrationActionExecutionProperties", "object")], json!({})),
                invocation_kind("UPSERT_ENTITY", &[("blueprintIdentifier", "string"), ("mapping", "object")], json!({})),
            ],
        },
        "SearchQuery": {
            "description": "{combinator: and|or, rules: [rule | nested query]}. A rule is {property, operator, value} where property is a property or relation key or one of $identifier, $title, $icon, $team, $blueprint, $createdAt, $updatedAt, $createdBy, $updatedBy, $datasource (portd records no data source: always empty); or {operator: relatedTo, blueprint, value, direction?} for entities one relation away from the given ones. Queries nest at most 16 levels deep and hold at most 100 rules, 100 groups (of at most 100 rules each) and 1000 values.",
            "anyOf": [
                {
                    "title": "Group",
                    "type": "object",
                    "required": ["combinator", "rules"],
                    "properties": {
                        "combinator": { "type": "string", "enum": ["and", "or"] },
                        "rules": { "type": "array", "maxItems": 100, "items": schema_ref("SearchQuery") },
                    },
                },
                schema_ref("SearchRule"),
                schema_ref("SearchRelatedToRule"),
            ],
        },
        "SearchRule": {
            "title": "Rule",
            "type": "object",
            "required": ["property", "operator"],
            "not": { "anyOf": [{ "required": ["rules"] }, { "required": ["combinator"] }] },
            "properties": {
                "property": { "type": "string", "pattern": SEARCH_PROPERTY_PATTERN },
                "operator": { "type": "string", "enum": [
                    "=", "!=", "in", "notIn", "containsAny", "contains", "doesNotContains", "beginsWith",
                    "doesNotBeginsWith", "endsWith", "doesNotEndsWith", ">", ">=", "<", "<=", "between",
                    "notBetween", "isEmpty", "isNotEmpty", "isExpired", "isNotExpired",
                ] },
            },
            "allOf": [
                {
                    "if": { "properties": { "operator": { "enum": ["in", "notIn"] } } },
                    "then": { "required": ["value"], "properties": { "value": { "type": "array", "maxItems": 1000 } } },
                },
                {
                    "if": { "properties": { "operator": { "enum": [">", ">=", "<", "<="] } } },
                    "then": { "required": ["value"], "properties": { "value": { "anyOf": [{ "type": "number" }, { "type": "string", "format": "date-time" }] } } },
                },
                {
                    "if": { "properties": { "operator": { "enum": ["between", "notBetween"] } } },
                    "then": { "required": ["value"], "properties": { "value": schema_ref("SearchDateRange") } },
                },
                {
                    "if": { "properties": { "operator": { "const": "=" } } },
                    "then": { "required": ["value"], "properties": { "value": { "anyOf": [{ "type": ["string", "number", "boolean", "null", "array"] }, schema_ref("SearchDateRange")] } } },
                },
                {
                    "if": { "properties": { "operator": { "enum": ["!=", "containsAny", "contains", "doesNotContains", "beginsWith", "doesNotBeginsWith", "endsWith", "doesNotEndsWith"] } } },
                    "then": { "required": ["value"], "properties": { "value": { "type": ["string", "number", "boolean", "null", "array"], "maxItems": 1000 } } },
                },
            ],
        },
        "SearchRelatedToRule": {
            "title": "Related-to rule (direct relations only)",
            "type": "object",
            "additionalProperties": false,
            "required": ["operator", "blueprint", "value"],
            "properties": {
                "operator": { "const": "relatedTo" },
                "blueprint": { "type": "string" },
                "value": { "anyOf": [{ "type": "string" }, { "type": "array", "maxItems": 1000, "items": { "type": "string" } }] },
                "direction": { "type": "string", "enum": ["upstream", "downstream"] },
                "required": { "type": "boolean" },
            },
        },
        "SearchDateRange": {
            "anyOf": [
                {
                    "type": "object",
                    "required": ["preset"],
                    "properties": { "preset": { "type": "string", "enum": ["today", "tomorrow", "yesterday", "lastDay", "lastWeek", "last2Weeks", "lastMonth", "last3Months", "last6Months", "last12Months"] } },
                },
                {
                    "type": "object",
                    "required": ["from", "to"],
                    "not": { "required": ["preset"] },
                    "properties": { "from": { "type": "string", "format": "date-time" }, "to": { "type": "string", "format": "date-time" } },
                },
            ],
        },
        "EntitySearchResponse": {
            "type": "object",
            "required": ["ok", "entities"],
            "properties": {
                "ok": { "const": true },
                "matchingBlueprints": { "type": "array", "items": { "type": "string" }, "description": "The blueprints of the entities found." },
                "failedBlueprints": { "type": "array", "items": { "type": "string" }, "description": "Always empty: portd searches every blueprint or refuses the search." },
                "entities": { "type": "array", "items": schema_ref("Entity") },
            },
        },
    })
}

/// A search rule's `property`: any key, or one of the meta-properties portd knows.
const SEARCH_PROPERTY_PATTERN: &str = "^(?:[^$][\\s\\S]*|\\$(?:identifier|title|icon|team|blueprint|createdAt|updatedAt|createdBy|updatedBy|datasource))?$";

/// `if type is kind then these fields are required, with these shapes`.
fn invocation_kind(kind: &str, required: &[(&str, &str)], extra: Value) -> Value {
    let mut properties = match extra {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    for (key, ty) in required {
        properties
            .entry((*key).to_owned())
            .or_insert_with(|| json!({ "type": ty }));
    }
    json!({
        "if": { "properties": { "type": { "const": kind } } },
        "then": {
            "required": required.iter().map(|(key, _)| *key).collect::<Vec<_>>(),
            "properties": properties,
        },
    })
}

/// A user's e-mail address as the server reads one: surrounding whitespace is
/// trimmed, then one `@` between a local part and a domain, none of `;#/?`, no
/// whitespace at either end (Port's invitee pattern).
const EMAIL_PATTERN: &str = "^\\s*[^;#/?\\s@][^;#/?@]*@[^;#/?@]*[^;#/?\\s@]\\s*$";

/// A role as the server reads one: Admin or Member, in any case.
const ROLE_PATTERN: &str = "^([Aa][Dd][Mm][Ii][Nn]|[Mm][Ee][Mm][Bb][Ee][Rr])$";

/// A team's name: Port's pattern, at most 100 characters.
fn team_name() -> Value {
    json!({ "type": "string", "minLength": 2, "maxLength": 100, "pattern": "^[^;#/?\\s][^;#/?]*[^;#/?\\s]$" })
}

fn email() -> Value {
    json!({ "type": "string", "pattern": EMAIL_PATTERN })
}

/// The users, teams, permissions, audit and personal credentials schemas.
fn people_schemas() -> Value {
    use port_core::access::{MAX_CONDITION_BYTES, MAX_NAMES_PER_LIST, MAX_POLICY_PARTS};
    use port_core::service::access::MAX_TEAM_DESCRIPTION_CHARS;
    let emails = json!({ "type": "array", "maxItems": MAX_NAMES_PER_LIST, "items": email() });
    let roles = json!({ "type": "array", "maxItems": MAX_NAMES_PER_LIST, "items": { "type": "string", "pattern": ROLE_PATTERN } });
    let team_names =
        json!({ "type": "array", "maxItems": MAX_NAMES_PER_LIST, "items": team_name() });
    let policy = json!({
        "description": "Who else is admitted: the named catalog queries (search queries) are run, then any jq condition that gives true over {user, action, inputs, entity, results} admits.",
        "anyOf": [
            { "type": "null" },
            {
                "type": "object",
                "additionalProperties": false,
                "required": ["queries", "conditions"],
                "properties": {
                    "queries": { "type": "object", "minProperties": 1, "maxProperties": MAX_POLICY_PARTS, "additionalProperties": schema_ref("SearchQuery") },
                    "conditions": { "type": "array", "minItems": 1, "maxItems": MAX_POLICY_PARTS, "items": { "type": "string", "pattern": "\\S", "maxLength": MAX_CONDITION_BYTES } },
                },
            },
        ],
    });
    let grant = |extra: Value| {
        let mut properties = json!({
            "users": emails.clone(),
            "roles": roles.clone(),
            "teams": team_names.clone(),
            "policy": policy.clone(),
        });
        if let (Value::Object(properties), Value::Object(extra)) = (&mut properties, extra) {
            properties.extend(extra);
        }
        json!({ "type": "object", "additionalProperties": false, "properties": properties })
    };
    let grant_answer = json!({
        "type": "object",
        "required": ["users", "roles", "teams", "policy"],
        "properties": {
            "users": { "type": "array", "items": { "type": "string" } },
            "roles": { "type": "array", "items": { "type": "string", "enum": ["Admin", "Member"] } },
            "teams": { "type": "array", "items": { "type": "string" } },
            "ownedByTeam": { "type": "boolean" },
            "policy": { "type": ["object", "null"] },
        },
    });
    let user = json!({
        "type": "object",
        "required": ["email", "status", "roles", "teams", "createdAt", "updatedAt"],
        "properties": {
            "email": { "type": "string" },
            "firstName": { "type": "string" },
            "lastName": { "type": "string" },
            "status": { "type": "string", "enum": ["Invited", "Active"] },
            "type": { "type": "string" },
            "providers": { "type": "array", "items": { "type": "string" } },
            "createdAt": { "type": "string", "format": "date-time" },
            "updatedAt": { "type": "string", "format": "date-time" },
            "orgs": { "type": "array", "items": { "type": "object", "required": ["id"], "properties": { "id": { "type": "string" } } } },
            "roles": { "type": "array", "items": { "type": "object", "required": ["name"], "properties": { "name": { "type": "string", "enum": ["Admin", "Member"] } } } },
            "teams": { "type": "array", "items": { "type": "object", "required": ["name"], "properties": { "name": { "type": "string" } } } },
        },
    });
    let mut user_patch_response = user.clone();
    user_patch_response["properties"]["ok"] = json!({ "const": true });
    user_patch_response["required"] = json!(["ok", "email", "roles", "teams"]);
    json!({
        "User": user,
        "UserResponse": envelope("user", schema_ref("User")),
        "UsersResponse": envelope("users", json!({ "type": "array", "items": schema_ref("User") })),
        "UserPatchResponse": user_patch_response,
        "InviteRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["invitee"],
            "properties": {
                "invitee": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["email"],
                    "properties": {
                        "email": email(),
                        "roles": roles.clone(),
                        "teams": team_names.clone(),
                    },
                },
            },
        },
        "UserPatch": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "roles": { "type": "array", "minItems": 1, "maxItems": MAX_NAMES_PER_LIST, "items": { "type": "string", "pattern": ROLE_PATTERN }, "description": "The first is the user's role." },
                "teams": team_names.clone(),
            },
        },
        "Team": {
            "type": "object",
            "required": ["name", "users", "createdAt", "updatedAt"],
            "properties": {
                "name": { "type": "string" },
                "provider": { "type": "string" },
                "description": { "type": "string" },
                "users": { "type": "array", "items": { "type": "object", "required": ["email"], "properties": { "email": { "type": "string" } } } },
                "createdAt": { "type": "string", "format": "date-time" },
                "updatedAt": { "type": "string", "format": "date-time" },
            },
        },
        "TeamResponse": envelope("team", schema_ref("Team")),
        "TeamsResponse": envelope("teams", json!({ "type": "array", "items": schema_ref("Team") })),
        "TeamRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["name"],
            "properties": {
                "name": team_name(),
                "users": emails.clone(),
                "description": { "type": ["string", "null"], "maxLength": MAX_TEAM_DESCRIPTION_CHARS },
            },
        },
        "TeamPatch": {
            "type": "object",
            "additionalProperties": false,
            "description": "PATCH: the keys given replace, the others stay. PUT: the team becomes the body (a missing name keeps it; a missing description or member list empties it).",
            "properties": {
                "name": team_name(),
                "users": emails.clone(),
                "description": { "type": ["string", "null"], "maxLength": MAX_TEAM_DESCRIPTION_CHARS },
            },
        },
        "ActionPermissions": {
            "type": "object",
            "required": ["execute", "approve"],
            "properties": {
                "execute": grant_answer.clone(),
                "approve": grant_answer,
            },
        },
        "ActionPermissionsResponse": envelope("permissions", schema_ref("ActionPermissions")),
        "ActionPermissionsPatch": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "execute": grant(json!({ "ownedByTeam": { "type": "boolean", "description": "For actions run on an entity: members of one of the entity's teams may execute too." } })),
                "approve": grant(json!({})),
            },
        },
        "WithdrawRequest": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "reason": { "type": "string", "maxLength": MAX_APPROVAL_DESCRIPTION_CHARS },
            },
        },
        "PersonalCredentialsResponse": envelope("credentials", json!({
            "type": "object",
            "required": ["clientId", "clientSecret"],
            "properties": {
                "clientId": { "type": "string" },
                "clientSecret": { "type": "string", "description": "Shown this once." },
                "createdAt": { "type": "string", "format": "date-time" },
            },
        })),
        "PersonalCredentialsListResponse": envelope("credentials", json!({
            "type": "array",
            "items": {
                "type": "object",
                "required": ["clientId", "createdAt"],
                "properties": {
                    "clientId": { "type": "string" },
                    "createdAt": { "type": "string", "format": "date-time" },
                },
            },
        })),
    })
}
