-- A stream claims a partner's pending messages oldest first. Found through an index of pending
-- messages only, so acknowledged ones are never read: with `mailbox_pending` (partner, state,
-- cursor), PostgreSQL planned the claim on the primary key whenever its statistics were older
-- than the mailbox's last few minutes (a partner back from an outage, acknowledging its backlog),
-- and read every message the partner had acknowledged at each claim (14 ms at 8,000, growing).
-- The new index answers everything `mailbox_pending` did with state = 'pending'; the admin counts
-- read the partner's rows by the primary key.
CREATE INDEX mailbox_pending_by_cursor ON mailbox (partner_id, cursor) WHERE state = 'pending';
DROP INDEX mailbox_pending;
