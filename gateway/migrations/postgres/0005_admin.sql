-- Administration: revocation reasons for the CRL, routing-rules versions, and the
-- certificate-expiry warnings already given (so each is given once, whichever replica runs).

-- RFC 5280 CRLReason code of a revocation; NULL when revoked without a reason.
ALTER TABLE certificates ADD COLUMN revocation_code BIGINT;

CREATE TABLE rules_versions (
    version      BIGINT PRIMARY KEY,
    -- lowercase hex SHA-256 of rules_text; one version per text
    sha256       TEXT NOT NULL UNIQUE,
    rules_text   TEXT NOT NULL,
    comment      TEXT NOT NULL,
    -- the admin partner id, or "configuration" for the version seeded from the config file
    uploaded_by  TEXT NOT NULL,
    uploaded_at  BIGINT NOT NULL,
    rule_count   BIGINT NOT NULL,
    -- log index of the upload's admin entry; NULL for the seeded version
    log_index    BIGINT
);

-- The active version: one row.
CREATE TABLE rules_active (
    id       BIGINT PRIMARY KEY CHECK (id = 1),
    version  BIGINT NOT NULL REFERENCES rules_versions (version)
);

CREATE TABLE certificate_expiry_warnings (
    sha256          TEXT NOT NULL,
    threshold_days  BIGINT NOT NULL,
    warned_at       BIGINT NOT NULL,
    PRIMARY KEY (sha256, threshold_days)
);
