-- portd schema, SQLite flavour. Kept column-for-column equal to migrations/postgres.
-- Timestamps are Unix milliseconds; JSON documents are text, so key order survives.

CREATE TABLE organizations (
    org_id     TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE credentials (
    client_id     TEXT    NOT NULL PRIMARY KEY,
    org_id        TEXT    NOT NULL REFERENCES organizations (org_id) ON DELETE CASCADE,
    client_secret TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX credentials_by_org ON credentials (org_id, created_at, client_id);

CREATE TABLE blueprints (
    org_id     TEXT    NOT NULL,
    identifier TEXT    NOT NULL,
    title      TEXT,
    definition TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT    NOT NULL,
    PRIMARY KEY (org_id, identifier)
) STRICT;

CREATE TABLE entities (
    org_id     TEXT    NOT NULL,
    blueprint  TEXT    NOT NULL,
    identifier TEXT    NOT NULL,
    document   TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT    NOT NULL,
    PRIMARY KEY (org_id, blueprint, identifier)
) STRICT;

CREATE TABLE affected_entities (
    id         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    org_id     TEXT    NOT NULL,
    run_id     TEXT    NOT NULL,
    blueprint  TEXT    NOT NULL,
    entity     TEXT    NOT NULL,
    operation  TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    by_user    TEXT    NOT NULL,
    snapshot   TEXT    NOT NULL
) STRICT;
CREATE INDEX affected_entities_by_run ON affected_entities (org_id, run_id, at, id);

CREATE TABLE actions (
    org_id     TEXT    NOT NULL,
    identifier TEXT    NOT NULL,
    action_id  TEXT    NOT NULL,
    blueprint  TEXT,
    definition TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT    NOT NULL,
    PRIMARY KEY (org_id, identifier)
) STRICT;
CREATE INDEX actions_by_blueprint ON actions (org_id, blueprint);

CREATE TABLE runs (
    org_id               TEXT    NOT NULL,
    id                   TEXT    NOT NULL,
    status               TEXT    NOT NULL,
    action_identifier    TEXT    NOT NULL,
    blueprint_identifier TEXT,
    entity_identifier    TEXT,
    created_by           TEXT    NOT NULL,
    source               TEXT    NOT NULL,
    external_run_id      TEXT,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    version              INTEGER NOT NULL,
    document             TEXT    NOT NULL,
    PRIMARY KEY (org_id, id)
) STRICT;
-- One index per list filter; `id` last so each serves `ORDER BY id DESC` and `id < ?`.
CREATE INDEX runs_by_entity    ON runs (org_id, entity_identifier, id);
CREATE INDEX runs_by_blueprint ON runs (org_id, blueprint_identifier, id);
CREATE INDEX runs_by_action    ON runs (org_id, action_identifier, id);
CREATE INDEX runs_by_status    ON runs (org_id, status, id);
CREATE INDEX runs_by_creator   ON runs (org_id, created_by, id);
CREATE INDEX runs_by_source    ON runs (org_id, source, id);
CREATE INDEX runs_by_external  ON runs (org_id, external_run_id, id);
-- The reaper's cross-organization scan of stale IN_PROGRESS runs.
CREATE INDEX runs_by_age       ON runs (status, created_at, id);

CREATE TABLE run_logs (
    org_id     TEXT    NOT NULL,
    run_id     TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    id         TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL,
    PRIMARY KEY (org_id, run_id, seq),
    FOREIGN KEY (org_id, run_id) REFERENCES runs (org_id, id) ON DELETE CASCADE
) STRICT;

CREATE TABLE idempotency_keys (
    org_id     TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL,
    run_id     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, idempotency_key)
) STRICT;

CREATE TABLE deliveries (
    id              TEXT    NOT NULL PRIMARY KEY,
    org_id          TEXT    NOT NULL,
    run_id          TEXT    NOT NULL,
    mode            TEXT    NOT NULL,
    request         TEXT    NOT NULL,
    synchronized    INTEGER NOT NULL,
    installation_id TEXT,
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    FOREIGN KEY (org_id, run_id) REFERENCES runs (org_id, id) ON DELETE CASCADE
) STRICT;
-- The worker's scan: pending deliveries by due time; finished ones drop out.
CREATE INDEX deliveries_due ON deliveries (mode, next_attempt_at, id) WHERE state = 'PENDING';
CREATE INDEX deliveries_by_run ON deliveries (org_id, run_id, created_at, id);

CREATE TABLE delivery_attempts (
    delivery_id      TEXT    NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    number           INTEGER NOT NULL,
    org_id           TEXT    NOT NULL,
    run_id           TEXT    NOT NULL,
    started_at       INTEGER NOT NULL,
    ended_at         INTEGER NOT NULL,
    status_code      INTEGER,
    error            TEXT,
    response_excerpt TEXT,
    duration_ms      INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, number)
) STRICT;
