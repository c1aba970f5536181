-- Fair claims: each organization's pending deliveries by due time, so a claim reads a
-- bounded number of rows per organization and skips a full organization's backlog.
CREATE INDEX deliveries_due_by_org ON deliveries (mode, org_id, next_attempt_at, id) WHERE state = 'PENDING';
