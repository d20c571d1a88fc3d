-- The evidence log: entry bytes exactly as hashed into the Merkle tree, in index order.
CREATE TABLE log_entries (
    idx          BIGINT PRIMARY KEY,
    entry        BYTEA NOT NULL,
    leaf_hash    BYTEA NOT NULL,
    appended_at  BIGINT NOT NULL
);

-- Payloads beside the log, linked to their entry and by digest; erasable when their retention
-- ends without breaking the log (the entry holds only the digest).
CREATE TABLE payloads (
    log_index  BIGINT PRIMARY KEY REFERENCES log_entries (idx),
    sha256     BYTEA NOT NULL,
    payload    BYTEA,
    erased_at  BIGINT
);

-- Every accepted envelope by (sender, message_id): idempotent resubmission returns its receipt.
CREATE TABLE envelopes (
    sender         TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    header_sha256  BYTEA NOT NULL,
    payload_type   TEXT NOT NULL,
    log_index      BIGINT NOT NULL REFERENCES log_entries (idx),
    receipt        BYTEA NOT NULL,
    accepted_at    BIGINT NOT NULL,
    PRIMARY KEY (sender, message_id)
);

-- Signed checkpoints (C2SP signed notes), one per published tree size.
CREATE TABLE checkpoints (
    tree_size  BIGINT PRIMARY KEY,
    root_hash  BYTEA NOT NULL,
    note       TEXT NOT NULL,
    signed_at  BIGINT NOT NULL
);
