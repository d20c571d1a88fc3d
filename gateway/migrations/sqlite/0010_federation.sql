-- Federation with peer gateways. Certificates of another federation's partners whose envelopes a
-- peer relayed here, checked against that peer's CA and kept so the offline audit verifies
-- their signatures; and the mapping between a peer's case ids and this gateway's for the leads
-- relayed either way.
CREATE TABLE foreign_certificates (
    sha256        TEXT PRIMARY KEY,
    partner_id    TEXT NOT NULL,
    trust_domain  TEXT NOT NULL,
    peer          TEXT NOT NULL,
    der           BLOB NOT NULL,
    first_seen    INTEGER NOT NULL
);
CREATE TABLE federated_cases (
    peer            TEXT NOT NULL,
    remote_case_id  TEXT NOT NULL,
    local_case_id   TEXT NOT NULL,
    PRIMARY KEY (peer, remote_case_id)
);
CREATE INDEX federated_cases_local ON federated_cases (local_case_id);
