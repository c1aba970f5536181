-- Timer properties (`format: "timer"`): one row per entity and timer property still to
-- fire, written with the entity, deleted in the transaction that records its expiry.

-- The expired timer property of a `TIMER_PROPERTY_EXPIRED` event (NULL for changes).
ALTER TABLE events ADD COLUMN property TEXT;

CREATE TABLE timers (
    org_id     TEXT    NOT NULL,
    blueprint  TEXT    NOT NULL,
    entity     TEXT    NOT NULL,
    property   TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, blueprint, entity, property)
) STRICT;
-- What firing reads: the earliest due first.
CREATE INDEX timers_due ON timers (expires_at);
