-- Timer properties (`format: "timer"`): one row per entity and timer property still to
-- fire, written with the entity, deleted in the transaction that records its expiry.

-- The expired timer property of a `TIMER_PROPERTY_EXPIRED` event (NULL for changes).
ALTER TABLE events ADD COLUMN property TEXT COLLATE "C";

CREATE TABLE timers (
    org_id     TEXT COLLATE "C" NOT NULL,
    blueprint  TEXT COLLATE "C" NOT NULL,
    entity     TEXT COLLATE "C" NOT NULL,
    property   TEXT COLLATE "C" NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, blueprint, entity, property)
);
-- What firing reads: the earliest due first.
CREATE INDEX timers_due ON timers (expires_at);
