-- Cases opened from leads, the partners taking part in each, and per-partner mailboxes.
CREATE TABLE cases (
    id              TEXT PRIMARY KEY,
    -- log index of the envelope that opened the case
    opened_index    BIGINT NOT NULL REFERENCES log_entries (idx),
    source          TEXT NOT NULL,
    region          TEXT NOT NULL,
    state           TEXT NOT NULL,
    holder          TEXT NOT NULL,
    -- 1 when under supervision (挂牌督办), 1 when a clock ran out
    supervised      BIGINT NOT NULL,
    overdue         BIGINT NOT NULL,
    -- earliest due instant (Unix seconds) of the clocks that escalate; NULL when none runs
    next_due_at     BIGINT,
    -- region, employer and project of the lead, to link the same lead from another source
    lead_key        TEXT,
    -- the lead's project code ('' when none), for the warning on repeated leads (R8)
    project_code    TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    -- the wagelink.v1.CaseView (lead without the reporter's personal data), as protobuf
    view            BYTEA NOT NULL
);
CREATE INDEX cases_due ON cases (next_due_at);
CREATE INDEX cases_lead_key ON cases (lead_key);
CREATE INDEX cases_project ON cases (project_code, created_at);
CREATE INDEX cases_updated ON cases (updated_at, id);

-- Who may see a case: everyone who ever had a role on it (holder, co-handler, copy, source,
-- forward target, supervisor, letter addressee). Current roles are in the view.
CREATE TABLE case_parties (
    case_id     TEXT NOT NULL REFERENCES cases (id),
    partner_id  TEXT NOT NULL,
    role        TEXT NOT NULL,
    PRIMARY KEY (case_id, partner_id, role)
);
CREATE INDEX case_parties_partner ON case_parties (partner_id);

-- A source's own reference of each lead it submitted (the national platform's lead number…):
-- unique per source, so the same reference cannot name two different leads.
CREATE TABLE lead_refs (
    source            TEXT NOT NULL,
    source_reference  TEXT NOT NULL,
    case_id           TEXT NOT NULL REFERENCES cases (id),
    -- SHA-256 of the lead's payload: the same lead resent under a new message_id is linked
    payload_sha256    BYTEA NOT NULL,
    log_index         BIGINT NOT NULL REFERENCES log_entries (idx),
    PRIMARY KEY (source, source_reference)
);

-- Each partner's durable mailbox: what was delivered to it, by log index, in cursor order.
CREATE TABLE mailbox (
    partner_id    TEXT NOT NULL,
    cursor        BIGINT NOT NULL,
    log_index     BIGINT NOT NULL REFERENCES log_entries (idx),
    -- pending, acknowledged or dead (too many attempts)
    state         TEXT NOT NULL,
    attempts      BIGINT NOT NULL,
    enqueued_at   BIGINT NOT NULL,
    PRIMARY KEY (partner_id, cursor)
);
CREATE INDEX mailbox_pending ON mailbox (partner_id, state, cursor);
