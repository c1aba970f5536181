-- People of each organization: users (role, password), teams and their members,
-- browser sessions, personal credentials, action permissions and the audit trail.

-- One row per person and organization: the same address in two organizations is two
-- users. `password_hash` is a PHC string (argon2id), NULL for single sign-on only.
CREATE TABLE users (
    org_id        TEXT COLLATE "C" NOT NULL REFERENCES organizations (org_id) ON DELETE CASCADE,
    email         TEXT COLLATE "C" NOT NULL,
    first_name    TEXT COLLATE "C",
    last_name     TEXT COLLATE "C",
    role          TEXT COLLATE "C" NOT NULL,
    status        TEXT COLLATE "C" NOT NULL,
    password_hash TEXT COLLATE "C",
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (org_id, email)
);
-- Sign-in starts from an address, in whichever organization holds it.
CREATE INDEX users_by_email ON users (email, created_at);

-- `id` is internal and stable, so a rename keeps the team's members; (org_id, id) is
-- unique so that memberships name their organization in their foreign key.
CREATE TABLE teams (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      TEXT COLLATE "C" NOT NULL REFERENCES organizations (org_id) ON DELETE CASCADE,
    name        TEXT COLLATE "C" NOT NULL,
    description TEXT COLLATE "C",
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (org_id, name),
    UNIQUE (org_id, id)
);

-- A membership goes with its team and with its user.
CREATE TABLE team_members (
    org_id  TEXT COLLATE "C" NOT NULL,
    team_id BIGINT NOT NULL,
    email   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (org_id, team_id, email),
    FOREIGN KEY (org_id, team_id) REFERENCES teams (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, email) REFERENCES users (org_id, email) ON DELETE CASCADE
);
-- A user's teams (and the cascade from users).
CREATE INDEX team_members_by_user ON team_members (org_id, email);

-- Browser sessions, by the hash of the cookie's token (never the token itself).
CREATE TABLE sessions (
    token_hash TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    org_id     TEXT COLLATE "C" NOT NULL,
    email      TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    FOREIGN KEY (org_id, email) REFERENCES users (org_id, email) ON DELETE CASCADE
);
-- A user's sessions: the cascade, and the expired ones dropped at each sign-in.
CREATE INDEX sessions_by_user ON sessions (org_id, email, expires_at);

-- An action's permissions once set (Port's `execute` / `approve` document, as JSON);
-- deleted with the action, by itself or with its blueprint.
CREATE TABLE action_permissions (
    org_id            TEXT COLLATE "C" NOT NULL,
    action_identifier TEXT COLLATE "C" NOT NULL,
    document          TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (org_id, action_identifier),
    FOREIGN KEY (org_id, action_identifier) REFERENCES actions (org_id, identifier) ON DELETE CASCADE
);

-- The audit trail: append-only, outliving what it names. `seq` orders it; an
-- identity never hands out a number twice. `by_user` is an e-mail or a client id.
CREATE TABLE audit_log (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id       TEXT COLLATE "C" NOT NULL,
    at           BIGINT NOT NULL,
    resource     TEXT COLLATE "C" NOT NULL,
    identifier   TEXT COLLATE "C" NOT NULL,
    operation    TEXT COLLATE "C" NOT NULL,
    run_id       TEXT COLLATE "C",
    by_user      TEXT COLLATE "C" NOT NULL,
    by_machine   BOOLEAN NOT NULL,
    on_behalf_of TEXT COLLATE "C",
    diff         TEXT COLLATE "C" NOT NULL
);
-- Newest first, the organization's whole trail or one run's or one resource's.
CREATE INDEX audit_log_by_org        ON audit_log (org_id, seq DESC);
CREATE INDEX audit_log_by_run        ON audit_log (org_id, run_id, seq);
CREATE INDEX audit_log_by_identifier ON audit_log (org_id, identifier, seq);

-- Personal credentials name their user; NULL for organization (machine) credentials.
-- No foreign key, as in SQLite (which cannot add a composite one): `delete_user`
-- deletes them.
ALTER TABLE credentials ADD COLUMN user_email TEXT COLLATE "C";
CREATE INDEX credentials_by_user ON credentials (org_id, user_email) WHERE user_email IS NOT NULL;
