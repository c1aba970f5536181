-- The event outbox: every change to an entity or a run, written in the transaction
-- that makes the change, read (leased, then deleted) by whoever reacts to it.

-- How many automations led to a run (0 for a person's or a client's run); an entity
-- written for the run records its changes at this depth, which bounds chains.
ALTER TABLE runs ADD COLUMN chain_depth INTEGER NOT NULL DEFAULT 0;

-- `seq` is the order of events; AUTOINCREMENT never hands out a deleted event's number
-- again, so event ids (derived from it) stay unique after events are completed.
-- `before` / `after` are the resource's JSON (absent on create / delete).
CREATE TABLE events (
    seq           INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    org_id        TEXT    NOT NULL,
    resource_type TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    scope         TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    before        TEXT,
    after         TEXT,
    by_user       TEXT    NOT NULL,
    depth         INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    lease_owner   TEXT,
    lease_until   INTEGER
) STRICT;
-- No other index: a claim (`ORDER BY seq LIMIT n`, skipping leased rows) walks the
-- rowid itself, and the rows it passes over are only those in flight.
