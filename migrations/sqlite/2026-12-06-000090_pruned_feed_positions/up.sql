-- Where each event a retention run deleted stood in the change feed (GET /v1/events): a feed
-- reader's cursor is the `seq` of the last event it read, found again by its position
-- (tx_id, seq); once retention deleted that event, the cursor was refused ("is not a cursor from
-- next_cursor") and its reader could only start again from the beginning (found by a trial: an
-- import of historical events, read, then pruned). Positions only: no identifier, no decision.
CREATE TABLE pruned_feed_positions (
    tenant_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    tx_id BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
