-- The event outbox: every change to an entity or a run, written in the transaction
-- that makes the change, read (leased, then deleted) by whoever reacts to it.

-- How many automations led to a run (0 for a person's or a client's run); an entity
-- written for the run records its changes at this depth, which bounds chains.
ALTER TABLE runs ADD COLUMN chain_depth BIGINT NOT NULL DEFAULT 0;

-- `seq` is the order of events; an identity never hands out a deleted event's number
-- again, so event ids (derived from it) stay unique after events are completed.
-- `before` / `after` are the resource's JSON (absent on create / delete).
CREATE TABLE events (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id        TEXT COLLATE "C" NOT NULL,
    resource_type TEXT COLLATE "C" NOT NULL,
    kind          TEXT COLLATE "C" NOT NULL,
    scope         TEXT COLLATE "C" NOT NULL,
    subject       TEXT COLLATE "C" NOT NULL,
    before        TEXT COLLATE "C",
    after         TEXT COLLATE "C",
    by_user       TEXT COLLATE "C" NOT NULL,
    depth         BIGINT NOT NULL,
    at            BIGINT NOT NULL,
    lease_owner   TEXT COLLATE "C",
    lease_until   BIGINT
);
-- No other index: a claim (`ORDER BY seq LIMIT n … FOR UPDATE SKIP LOCKED`, skipping
-- leased rows) walks the primary key, and the rows it passes over are only those in flight.
