-- The metrics count each partner's pending and dead-lettered messages at every scrape. They read
-- the whole mailbox, every message ever delivered, to do it; now the pending ones are counted
-- through `mailbox_pending_by_cursor` and the dead-lettered ones (rare) through this index.
CREATE INDEX mailbox_dead ON mailbox (partner_id) WHERE state = 'dead';
