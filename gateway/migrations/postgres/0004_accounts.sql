-- Dedicated wage accounts (专用账户) and guarantee deposits (工资保证金) as banks report them,
-- the events reported on them, the projects they belong to, and the warnings raised on them.
CREATE TABLE accounts (
    account_number   TEXT PRIMARY KEY,
    -- the partner id of the bank holding it: only it may report on the account
    bank             TEXT NOT NULL,
    -- wage-account or guarantee-deposit
    kind             TEXT NOT NULL,
    project_code     TEXT NOT NULL,
    contractor_uscc  TEXT NOT NULL,
    region           TEXT NOT NULL,
    -- open or closed
    status           TEXT NOT NULL,
    opened_on        TEXT NOT NULL,
    -- log index of the first event reported on it
    first_index      BIGINT NOT NULL REFERENCES log_entries (idx),
    last_event_at    BIGINT NOT NULL
);
CREATE INDEX accounts_bank ON accounts (bank);

-- Each event once, per bank and event id, with where its signed envelope is in the log; for an
-- event of a batch, its position and the RFC 9162 audit path to the batch's signed root.
CREATE TABLE account_events (
    bank            TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    event_sha256    BYTEA NOT NULL,
    log_index       BIGINT NOT NULL REFERENCES log_entries (idx),
    batch_index     BIGINT NOT NULL,
    batch_size      BIGINT NOT NULL,
    audit_path      BYTEA NOT NULL,
    account_number  TEXT NOT NULL,
    kind            TEXT NOT NULL,
    occurred_at     BIGINT NOT NULL,
    amount_fen      BIGINT NOT NULL,
    -- YYYY-MM for payroll events, empty otherwise
    payroll_month   TEXT NOT NULL,
    event           BYTEA NOT NULL,
    PRIMARY KEY (bank, event_id)
);
CREATE INDEX account_events_account ON account_events (account_number, kind, payroll_month);

-- Projects as leads and project records name them: the industry decides the co-handling
-- authority that receives account events.
CREATE TABLE projects (
    project_code  TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    industry      TEXT NOT NULL,
    region        TEXT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- One warning lead per rule, subject (account or project) and period.
CREATE TABLE warnings (
    rule        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    period      TEXT NOT NULL,
    case_id     TEXT NOT NULL,
    raised_at   BIGINT NOT NULL,
    PRIMARY KEY (rule, subject, period)
);

-- Which logged bank answer answers which logged account query (a resent query gets it again).
CREATE TABLE query_answers (
    query_index   BIGINT PRIMARY KEY REFERENCES log_entries (idx),
    answer_index  BIGINT NOT NULL REFERENCES log_entries (idx)
);
