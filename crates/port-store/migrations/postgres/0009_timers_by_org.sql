-- Timers fire a few per organization at a time, so one organization's mass expiry never
-- holds another's timers back: an index to list the organizations with timers (a skip
-- scan) and read each one's earliest.
CREATE INDEX timers_by_org ON timers (org_id, expires_at);
