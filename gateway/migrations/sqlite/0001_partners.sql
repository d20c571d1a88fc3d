-- Partners and their certificates: the registry the TLS layer consults at every handshake.
CREATE TABLE partners (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    -- region codes of the jurisdiction, comma-separated, sorted
    regions     TEXT NOT NULL,
    industry    TEXT,
    status      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE certificates (
    sha256             TEXT PRIMARY KEY,
    partner_id         TEXT NOT NULL REFERENCES partners (id),
    der                BLOB NOT NULL,
    serial             TEXT NOT NULL,
    not_before         INTEGER NOT NULL,
    not_after          INTEGER NOT NULL,
    key_algorithm      TEXT NOT NULL,
    status             TEXT NOT NULL,
    revoked_at         INTEGER,
    revocation_reason  TEXT,
    created_at         INTEGER NOT NULL
);

CREATE INDEX certificates_by_partner ON certificates (partner_id);
