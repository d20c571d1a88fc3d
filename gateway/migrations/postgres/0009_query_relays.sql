-- Account queries that arrived at a replica without a link to the holding bank: a replica that
-- holds such a link takes the row and relays the query; the bank's answer is logged as usual
-- (query_answers), a bank's refusal is written back here for the asking replica.
CREATE TABLE query_relays (
    query_index      BIGINT PRIMARY KEY,
    bank             TEXT NOT NULL,
    asker            TEXT NOT NULL,
    -- Unix seconds after which nobody relays it any more
    deadline         BIGINT NOT NULL,
    taken_by         TEXT,
    refusal_code     BIGINT,
    refusal_message  TEXT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX query_relays_open ON query_relays (bank, taken_by);
