-- Port's own clients (port-agent, Ocean): organization settings, Ocean's integrations,
-- and agent claims routed by installation and invocation type.

-- `PATCH /v1/organization`'s settings, a JSON object kept verbatim.
ALTER TABLE organizations ADD COLUMN settings TEXT COLLATE "C" NOT NULL DEFAULT '{}';

-- Ocean's integrations (`/v1/integration/{identifier}`): what the client stored, as JSON.
CREATE TABLE integrations (
    org_id     TEXT COLLATE "C" NOT NULL REFERENCES organizations (org_id) ON DELETE CASCADE,
    identifier TEXT COLLATE "C" NOT NULL,
    document   TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (org_id, identifier)
);

-- The evaluated invocation's `type` (WEBHOOK, INTEGRATION_ACTION, ...): Port's agent
-- claims WEBHOOK runs only.
ALTER TABLE deliveries ADD COLUMN invocation_type TEXT COLLATE "C";
UPDATE deliveries SET invocation_type = (request::json ->> 'type');
-- The run's action, so that a claim's `exclude` is a filter on the delivery itself: a
-- join to runs lets a planner with stale statistics go quadratic.
ALTER TABLE deliveries ADD COLUMN action_identifier TEXT COLLATE "C" NOT NULL DEFAULT '';
UPDATE deliveries SET action_identifier = (
    SELECT r.action_identifier FROM runs r WHERE r.org_id = deliveries.org_id AND r.id = deliveries.run_id
);
-- Agent claims: an organization's pending deliveries of one installation (or none) and
-- one invocation type, by due time, so a claim reads no other route's backlog.
CREATE INDEX deliveries_agent_route ON deliveries
    (mode, org_id, installation_id, invocation_type, next_attempt_at, id) WHERE state = 'PENDING';
