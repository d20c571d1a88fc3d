-- What a stream holds (`held_by`, and giving it back when the stream ends) is found by the
-- stream's id among the partner's pending messages; without this index each of a stream's loops
-- read every pending message of the partner (25 ms for 200,000, a partner long offline).
-- Pending messages only: a message acknowledged leaves the index.
CREATE INDEX mailbox_claims ON mailbox (partner_id, claimed_by) WHERE state = 'pending';
