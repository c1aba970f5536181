-- Organization secrets (`/v1/organization/secrets`), read by templates as
-- `{{ .secrets.NAME }}`. `value` holds `pds1:<key id>:<data>`, sealed with the server
-- key and bound to (org_id, name); a store opened without a key writes it in clear.
CREATE TABLE org_secrets (
    org_id      TEXT COLLATE "C" NOT NULL REFERENCES organizations (org_id) ON DELETE CASCADE,
    name        TEXT COLLATE "C" NOT NULL,
    description TEXT COLLATE "C",
    value       TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, name)
);
