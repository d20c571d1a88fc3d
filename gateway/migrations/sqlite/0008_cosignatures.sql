-- Witness cosignatures of checkpoints (Audit.AddWitnessSignature): one per witness and tree
-- size, with the C2SP tlog-cosignature line when the witness gave one (else empty), and the log
-- index of the witness's envelope.
CREATE TABLE cosignatures (
    tree_size  INTEGER NOT NULL,
    witness    TEXT NOT NULL,
    line       TEXT NOT NULL,
    log_index  INTEGER NOT NULL,
    PRIMARY KEY (tree_size, witness)
);
