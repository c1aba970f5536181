-- portd schema, PostgreSQL flavour. Kept column-for-column equal to migrations/sqlite.
-- Timestamps are Unix milliseconds; JSON documents are text, so key order survives
-- (jsonb would reorder keys). Text columns use the "C" collation so that ids sort by
-- bytes, as in SQLite and Rust: ids are time-ordered only in byte order.

CREATE TABLE organizations (
    org_id     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE credentials (
    client_id     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    org_id        TEXT COLLATE "C" NOT NULL REFERENCES organizations (org_id) ON DELETE CASCADE,
    client_secret TEXT COLLATE "C" NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX credentials_by_org ON credentials (org_id, created_at, client_id);

CREATE TABLE blueprints (
    org_id     TEXT COLLATE "C" NOT NULL,
    identifier TEXT COLLATE "C" NOT NULL,
    title      TEXT COLLATE "C",
    definition TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (org_id, identifier)
);

CREATE TABLE entities (
    org_id     TEXT COLLATE "C" NOT NULL,
    blueprint  TEXT COLLATE "C" NOT NULL,
    identifier TEXT COLLATE "C" NOT NULL,
    document   TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (org_id, blueprint, identifier)
);

CREATE TABLE affected_entities (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id     TEXT COLLATE "C" NOT NULL,
    run_id     TEXT COLLATE "C" NOT NULL,
    blueprint  TEXT COLLATE "C" NOT NULL,
    entity     TEXT COLLATE "C" NOT NULL,
    operation  TEXT COLLATE "C" NOT NULL,
    at         BIGINT NOT NULL,
    by_user    TEXT COLLATE "C" NOT NULL,
    snapshot   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX affected_entities_by_run ON affected_entities (org_id, run_id, at, id);

CREATE TABLE actions (
    org_id     TEXT COLLATE "C" NOT NULL,
    identifier TEXT COLLATE "C" NOT NULL,
    action_id  TEXT COLLATE "C" NOT NULL,
    blueprint  TEXT COLLATE "C",
    definition TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (org_id, identifier)
);
CREATE INDEX actions_by_blueprint ON actions (org_id, blueprint);

CREATE TABLE runs (
    org_id               TEXT COLLATE "C" NOT NULL,
    id                   TEXT COLLATE "C" NOT NULL,
    status               TEXT COLLATE "C" NOT NULL,
    action_identifier    TEXT COLLATE "C" NOT NULL,
    blueprint_identifier TEXT COLLATE "C",
    entity_identifier    TEXT COLLATE "C",
    created_by           TEXT COLLATE "C" NOT NULL,
    source               TEXT COLLATE "C" NOT NULL,
    external_run_id      TEXT COLLATE "C",
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    version              BIGINT NOT NULL,
    document             TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (org_id, id)
);
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
    org_id     TEXT COLLATE "C" NOT NULL,
    run_id     TEXT COLLATE "C" NOT NULL,
    seq        BIGINT NOT NULL,
    id         TEXT COLLATE "C" NOT NULL,
    message    TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (org_id, run_id, seq),
    FOREIGN KEY (org_id, run_id) REFERENCES runs (org_id, id) ON DELETE CASCADE
);

CREATE TABLE idempotency_keys (
    org_id     TEXT COLLATE "C" NOT NULL,
    idempotency_key TEXT COLLATE "C" NOT NULL,
    run_id     TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, idempotency_key)
);

CREATE TABLE deliveries (
    id              TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    org_id          TEXT COLLATE "C" NOT NULL,
    run_id          TEXT COLLATE "C" NOT NULL,
    mode            TEXT COLLATE "C" NOT NULL,
    request         TEXT COLLATE "C" NOT NULL,
    synchronized    BOOLEAN NOT NULL,
    installation_id TEXT COLLATE "C",
    state           TEXT COLLATE "C" NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_owner     TEXT COLLATE "C",
    lease_until     BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    FOREIGN KEY (org_id, run_id) REFERENCES runs (org_id, id) ON DELETE CASCADE
);
-- The worker's scan: pending deliveries by due time; finished ones drop out.
CREATE INDEX deliveries_due ON deliveries (mode, next_attempt_at, id) WHERE state = 'PENDING';
CREATE INDEX deliveries_by_run ON deliveries (org_id, run_id, created_at, id);

CREATE TABLE delivery_attempts (
    delivery_id      TEXT COLLATE "C" NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    number           BIGINT NOT NULL,
    org_id           TEXT COLLATE "C" NOT NULL,
    run_id           TEXT COLLATE "C" NOT NULL,
    started_at       BIGINT NOT NULL,
    ended_at         BIGINT NOT NULL,
    status_code      BIGINT,
    error            TEXT COLLATE "C",
    response_excerpt TEXT COLLATE "C",
    duration_ms      BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, number)
);
