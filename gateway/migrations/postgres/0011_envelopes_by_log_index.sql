-- A delivery sends each message with the receipt of the envelope its log entry accepted, found by
-- the entry's index: without this index every such lookup read the whole table.
CREATE INDEX envelopes_by_log_index ON envelopes (log_index);
