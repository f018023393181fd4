-- The retention run's scan (issue 11 review): per tenant and purpose kept for a limited time,
-- the events that occurred before the cutoff, in (occurred_at, seq) order, a page at a time
-- (keyset on both), and the count of those kept in force. Without it each page read every
-- event of the tenant by `consent_events_subject` or the table and sorted them.
CREATE INDEX consent_events_retention ON consent_events (tenant_id, purpose_key, occurred_at, seq);
