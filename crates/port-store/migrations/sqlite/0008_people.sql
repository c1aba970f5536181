-- People of each organization: users (role, password), teams and their members,
-- browser sessions, personal credentials, action permissions and the audit trail.

-- One row per person and organization: the same address in two organizations is two
-- users. `password_hash` is a PHC string (argon2id), NULL for single sign-on only.
CREATE TABLE users (
    org_id        TEXT    NOT NULL REFERENCES organizations (org_id) ON DELETE CASCADE,
    email         TEXT    NOT NULL,
    first_name    TEXT,
    last_name     TEXT,
    role          TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    password_hash TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (org_id, email)
) STRICT;
-- Sign-in starts from an address, in whichever organization holds it.
CREATE INDEX users_by_email ON users (email, created_at);

-- `id` is internal and stable, so a rename keeps the team's members; (org_id, id) is
-- unique so that memberships name their organization in their foreign key.
CREATE TABLE teams (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    org_id      TEXT    NOT NULL REFERENCES organizations (org_id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    description TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (org_id, name),
    UNIQUE (org_id, id)
) STRICT;

-- A membership goes with its team and with its user.
CREATE TABLE team_members (
    org_id  TEXT    NOT NULL,
    team_id INTEGER NOT NULL,
    email   TEXT    NOT NULL,
    PRIMARY KEY (org_id, team_id, email),
    FOREIGN KEY (org_id, team_id) REFERENCES teams (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, email) REFERENCES users (org_id, email) ON DELETE CASCADE
) STRICT;
-- A user's teams (and the cascade from users).
CREATE INDEX team_members_by_user ON team_members (org_id, email);

-- Browser sessions, by the hash of the cookie's token (never the token itself).
CREATE TABLE sessions (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    org_id     TEXT    NOT NULL,
    email      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    FOREIGN KEY (org_id, email) REFERENCES users (org_id, email) ON DELETE CASCADE
) STRICT;
-- A user's sessions: the cascade, and the expired ones dropped at each sign-in.
CREATE INDEX sessions_by_user ON sessions (org_id, email, expires_at);

-- An action's permissions once set (Port's `execute` / `approve` document, as JSON);
-- deleted with the action, by itself or with its blueprint.
CREATE TABLE action_permissions (
    org_id            TEXT NOT NULL,
    action_identifier TEXT NOT NULL,
    document          TEXT NOT NULL,
    PRIMARY KEY (org_id, action_identifier),
    FOREIGN KEY (org_id, action_identifier) REFERENCES actions (org_id, identifier) ON DELETE CASCADE
) STRICT;

-- The audit trail: append-only, outliving what it names. `seq` orders it;
-- AUTOINCREMENT never hands out a number twice. `by_user` is an e-mail or a client id.
CREATE TABLE audit_log (
    seq          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    org_id       TEXT    NOT NULL,
    at           INTEGER NOT NULL,
    resource     TEXT    NOT NULL,
    identifier   TEXT    NOT NULL,
    operation    TEXT    NOT NULL,
    run_id       TEXT,
    by_user      TEXT    NOT NULL,
    by_machine   INTEGER NOT NULL,
    on_behalf_of TEXT,
    diff         TEXT    NOT NULL
) STRICT;
-- Newest first, the organization's whole trail or one run's or one resource's.
CREATE INDEX audit_log_by_org        ON audit_log (org_id, seq DESC);
CREATE INDEX audit_log_by_run        ON audit_log (org_id, run_id, seq);
CREATE INDEX audit_log_by_identifier ON audit_log (org_id, identifier, seq);

-- Personal credentials name their user; NULL for organization (machine) credentials.
-- No foreign key (SQLite cannot add a composite one): `delete_user` deletes them.
ALTER TABLE credentials ADD COLUMN user_email TEXT;
CREATE INDEX credentials_by_user ON credentials (org_id, user_email) WHERE user_email IS NOT NULL;
