-- Cases opened from leads, the partners taking part in each, and per-partner mailboxes.
CREATE TABLE cases (
    id              TEXT PRIMARY KEY,
    -- log index of the envelope that opened the case
    opened_index    BIGINT NOT NULL REFERENCES log_entries (idx),
    source          TEXT NOT NULL,
    region          TEXT NOT NULL,
    state           TEXT NOT NULL,
    holder          TEXT NOT NULL,
    rule_id         TEXT NOT NULL,
    rule_version    BIGINT NOT NULL,
    -- clocks: the last day (YYYY-MM-DD, China time) of each period
    sign_for_due    TEXT NOT NULL,
    handle_due      TEXT NOT NULL,
    feed_back_due   TEXT NOT NULL,
    opened_at       BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE case_parties (
    case_id     TEXT NOT NULL REFERENCES cases (id),
    partner_id  TEXT NOT NULL,
    role        TEXT NOT NULL,
    PRIMARY KEY (case_id, partner_id)
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
