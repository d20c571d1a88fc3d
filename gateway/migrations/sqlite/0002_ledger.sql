-- The evidence log: entry bytes exactly as hashed into the Merkle tree, in index order.
CREATE TABLE log_entries (
    idx          INTEGER PRIMARY KEY,
    entry        BLOB NOT NULL,
    leaf_hash    BLOB NOT NULL,
    appended_at  INTEGER NOT NULL
);

-- Payloads beside the log, linked to their entry and by digest; erasable when their retention
-- ends without breaking the log (the entry holds only the digest).
CREATE TABLE payloads (
    log_index  INTEGER PRIMARY KEY REFERENCES log_entries (idx),
    sha256     BLOB NOT NULL,
    payload    BLOB,
    erased_at  INTEGER
);

-- Every accepted envelope by (sender, message_id): idempotent resubmission returns its receipt.
CREATE TABLE envelopes (
    sender         TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    header_sha256  BLOB NOT NULL,
    payload_type   TEXT NOT NULL,
    log_index      INTEGER NOT NULL REFERENCES log_entries (idx),
    receipt        BLOB NOT NULL,
    accepted_at    INTEGER NOT NULL,
    PRIMARY KEY (sender, message_id)
);

-- Signed checkpoints (C2SP signed notes), one per published tree size.
CREATE TABLE checkpoints (
    tree_size  INTEGER PRIMARY KEY,
    root_hash  BLOB NOT NULL,
    note       TEXT NOT NULL,
    signed_at  INTEGER NOT NULL
);
