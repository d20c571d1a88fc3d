-- Mailbox messages are claimed by the Subscribe stream that sends them, until a moment (Unix
-- milliseconds) after which they may be sent again: several streams of one partner, on one
-- replica or several, share its mailbox without sending a message twice at once.
ALTER TABLE mailbox ADD COLUMN claimed_by TEXT;
ALTER TABLE mailbox ADD COLUMN claimed_until BIGINT;
