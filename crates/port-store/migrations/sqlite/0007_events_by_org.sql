-- Event claims take each organization's oldest events, a few per organization, so one
-- organization's backlog never holds another's events up: an index to list the
-- organizations with events (a skip scan) and read each one's oldest.
CREATE INDEX events_by_org ON events (org_id, seq);
