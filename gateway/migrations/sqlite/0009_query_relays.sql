-- Account queries that arrived at a replica without a link to the holding bank: a replica that
-- holds such a link takes the row and relays the query; the bank's answer is logged as usual
-- (query_answers), a bank's refusal is written back here for the asking replica.
CREATE TABLE query_relays (
    query_index      INTEGER PRIMARY KEY,
    bank             TEXT NOT NULL,
    asker            TEXT NOT NULL,
    -- Unix seconds after which nobody relays it any more
    deadline         INTEGER NOT NULL,
    taken_by         TEXT,
    refusal_code     INTEGER,
    refusal_message  TEXT,
    created_at       INTEGER NOT NULL
);
CREATE INDEX query_relays_open ON query_relays (bank, taken_by);
