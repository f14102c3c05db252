-- callproof storage, schema version 4: customer rights (see docs/customer-rights.md).
--
-- * calls.cpf_hash / calls.customer_code_hash: keyed hashes (HMAC-SHA256,
--   key in [rights] identity_key) of a CPF or customer code the deployment
--   captured for the call; matchable, not readable in a dump.
-- * recording_requests grows from the retention hook (0003) into the customer
--   request: its own protocol (a service contact too), state, due time, who
--   asked and how to deliver.  Open = state not in (delivered, refused); the
--   0003 hook columns opened_at/closed_at keep their meaning (closed_at is set
--   when the request reaches delivered or refused) so the retention sweeper's
--   hold rule is unchanged.  Every state change is also an audit entry.
-- * request_exports: an audio file made for a request (pydub), with sha256.
-- * download_links: a signed, expiring link to one export for one recipient;
--   the token carries link_id, the row holds what the token cannot.
-- * request_deliveries: sending a link to the customer (SMS via the outbox,
--   or e-mail over SMTP), with its outcome.
-- * history_requests: a customer's call-history document (5-day deadline).
-- * callbacks / callback_attempts: calls back to customers whose call dropped.
-- * web_users / web_sessions / web_login_failures: the ops web page.

ALTER TABLE calls ADD COLUMN cpf_hash TEXT;
ALTER TABLE calls ADD COLUMN customer_code_hash TEXT;
CREATE INDEX calls_cpf_hash ON calls (cpf_hash, started_at) WHERE cpf_hash IS NOT NULL;
CREATE INDEX calls_customer_code_hash ON calls (customer_code_hash, started_at)
    WHERE customer_code_hash IS NOT NULL;

CREATE TABLE recording_requests_v4 (
    id                  INTEGER PRIMARY KEY,
    protocol            TEXT NOT NULL CHECK (length(protocol) = 17 AND protocol NOT GLOB '*[^0-9]*'),
    reference           TEXT,
    opened_at           TEXT NOT NULL,
    closed_at           TEXT,
    request_protocol    TEXT UNIQUE REFERENCES protocols (protocol),
    state               TEXT NOT NULL DEFAULT 'received' CHECK (state IN (
                            'needs_identity_check', 'received', 'exported', 'delivered', 'refused')),
    channel             TEXT NOT NULL DEFAULT 'cli' CHECK (channel IN ('cli', 'http', 'ivr', 'web')),
    due_at              TEXT,
    requester_number    TEXT CHECK (requester_number IS NULL OR (
                            requester_number GLOB '+[1-9]*'
                            AND substr(requester_number, 2) NOT GLOB '*[^0-9]*')),
    requester_identity_hash TEXT,
    deliver_to          TEXT,
    refused_reason      TEXT,
    created_by          TEXT NOT NULL DEFAULT 'system',
    updated_by          TEXT NOT NULL DEFAULT 'system',
    updated_at          TEXT,
    CHECK (closed_at IS NULL OR closed_at >= opened_at),
    CHECK (state <> 'refused' OR (refused_reason IS NOT NULL AND refused_reason <> ''))
);
INSERT INTO recording_requests_v4 (id, protocol, reference, opened_at, closed_at, state, channel, due_at,
                                   updated_at, created_by, updated_by)
    SELECT id, protocol, 'hook', opened_at, closed_at,
           CASE WHEN closed_at IS NULL THEN 'received' ELSE 'delivered' END,
           'cli', opened_at, coalesce(closed_at, opened_at), 'system', 'system'
    FROM recording_requests;
DROP TABLE recording_requests;
ALTER TABLE recording_requests_v4 RENAME TO recording_requests;
CREATE INDEX recording_requests_protocol ON recording_requests (protocol, closed_at);
CREATE INDEX recording_requests_open_due ON recording_requests (due_at) WHERE closed_at IS NULL;
CREATE INDEX recording_requests_requester ON recording_requests (requester_number);

CREATE TABLE request_exports (
    id          INTEGER PRIMARY KEY,
    request_id  INTEGER NOT NULL REFERENCES recording_requests (id),
    format      TEXT NOT NULL CHECK (format IN ('mp3', 'ogg', 'wav')),
    path        TEXT NOT NULL UNIQUE CHECK (path <> ''),
    sha256      TEXT NOT NULL CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
    size_bytes  INTEGER NOT NULL CHECK (size_bytes >= 0),
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL CHECK (created_by <> ''),
    deleted_at  TEXT
);
CREATE INDEX request_exports_request ON request_exports (request_id);

CREATE TABLE download_links (
    id              INTEGER PRIMARY KEY,
    export_id       INTEGER NOT NULL REFERENCES request_exports (id),
    recipient       TEXT NOT NULL CHECK (recipient <> ''),
    issued_at       TEXT NOT NULL,
    issued_by       TEXT NOT NULL CHECK (issued_by <> ''),
    expires_at      TEXT NOT NULL,
    revoked_at      TEXT,
    max_downloads   INTEGER CHECK (max_downloads IS NULL OR max_downloads >= 1),
    download_count  INTEGER NOT NULL DEFAULT 0 CHECK (download_count >= 0),
    CHECK (expires_at > issued_at)
);
CREATE INDEX download_links_export ON download_links (export_id);

CREATE TABLE request_deliveries (
    id          INTEGER PRIMARY KEY,
    request_id  INTEGER NOT NULL REFERENCES recording_requests (id),
    link_id     INTEGER NOT NULL REFERENCES download_links (id),
    channel     TEXT NOT NULL CHECK (channel IN ('sms', 'email')),
    recipient   TEXT NOT NULL CHECK (recipient <> ''),
    state       TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'failed')),
    outbox_id   INTEGER REFERENCES sms_outbox (id),
    error       TEXT,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL CHECK (created_by <> ''),
    sent_at     TEXT
);
CREATE INDEX request_deliveries_request ON request_deliveries (request_id);

CREATE TABLE history_requests (
    id                  INTEGER PRIMARY KEY,
    subject_kind        TEXT NOT NULL CHECK (subject_kind IN ('phone', 'cpf', 'customer_code')),
    subject_hash        TEXT NOT NULL,   -- E.164 for phone, keyed hash otherwise
    received_at         TEXT NOT NULL,
    due_at              TEXT NOT NULL,
    produced_at         TEXT,
    format              TEXT CHECK (format IS NULL OR format IN ('pdf', 'html')),
    path                TEXT,
    sha256              TEXT,
    created_by          TEXT NOT NULL CHECK (created_by <> '')
);

CREATE TABLE callbacks (
    id                  INTEGER PRIMARY KEY,
    call_id             INTEGER NOT NULL UNIQUE REFERENCES calls (id),
    protocol            TEXT NOT NULL REFERENCES protocols (protocol),
    destination         TEXT NOT NULL CHECK (destination GLOB '+[1-9]*'
                            AND substr(destination, 2) NOT GLOB '*[^0-9]*'),
    language            TEXT NOT NULL,
    reason              TEXT NOT NULL,   -- why it was scheduled (hang-up cause etc.)
    state               TEXT NOT NULL CHECK (state IN (
                            'scheduled', 'dialling', 'completed', 'failed', 'cancelled')),
    attempts            INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts        INTEGER NOT NULL CHECK (max_attempts >= 1),
    next_attempt_at     TEXT,
    lease_owner         TEXT,
    lease_until         TEXT,
    outcome             TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    completed_at        TEXT,
    CHECK (state <> 'scheduled' OR next_attempt_at IS NOT NULL)
);
CREATE INDEX callbacks_due ON callbacks (next_attempt_at) WHERE state = 'scheduled';

CREATE TABLE callback_attempts (
    id              INTEGER PRIMARY KEY,
    callback_id     INTEGER NOT NULL REFERENCES callbacks (id),
    attempt         INTEGER NOT NULL CHECK (attempt >= 1),
    channel_id      TEXT,
    started_at      TEXT NOT NULL,
    answered_at     TEXT,
    ended_at        TEXT,
    hangup_cause    INTEGER,
    outcome         TEXT,   -- answered_played | no_answer | busy | failed | caller_left
    UNIQUE (callback_id, attempt)
);

CREATE TABLE web_users (
    id              INTEGER PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE CHECK (username <> ''),
    password_hash   TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    created_at      TEXT NOT NULL,
    disabled_at     TEXT
);

CREATE TABLE web_sessions (
    id_hash         TEXT PRIMARY KEY,   -- sha256 of the cookie value
    user_id         INTEGER NOT NULL REFERENCES web_users (id),
    csrf_token      TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    ended_at        TEXT
);

CREATE TABLE web_login_failures (
    id          INTEGER PRIMARY KEY,
    username    TEXT NOT NULL,
    remote      TEXT,
    at          TEXT NOT NULL
);
CREATE INDEX web_login_failures_user ON web_login_failures (username, at);

-- The phone entry for recording requests (ari_app/ivr_request.py, docs/ivr.md):
-- one row per IVR call, written step by step so a hang-up at any point leaves a
-- truthful record.  Only the accepted protocol (17 digits of an existing call) is
-- kept of what the caller typed; request_id is set only once a request was filed.
CREATE TABLE ivr_request_calls (
    id                  INTEGER PRIMARY KEY,
    channel_id          TEXT NOT NULL UNIQUE CHECK (channel_id <> ''),
    caller_number       TEXT CHECK (caller_number IS NULL OR (
                            caller_number GLOB '+[1-9]*'
                            AND substr(caller_number, 2) NOT GLOB '*[^0-9]*')),
    language            TEXT NOT NULL,
    started_at          TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN (
                            'consent_playing', 'abandoned_in_consent', 'collecting',
                            'abandoned_in_entry', 'not_found', 'filed', 'completed', 'failed')),
    consent_prompt      TEXT,
    consent_sha256      TEXT CHECK (consent_sha256 IS NULL OR (
                            length(consent_sha256) = 64 AND consent_sha256 NOT GLOB '*[^0-9a-f]*')),
    consent_started_at  TEXT,
    consent_finished_at TEXT,
    consent_outcome     TEXT CHECK (consent_outcome IS NULL OR consent_outcome IN ('finished', 'caller_left')),
    attempts            INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_problem        TEXT CHECK (last_problem IS NULL OR last_problem IN (
                            'no_digits', 'wrong_length', 'unknown_protocol')),
    call_protocol       TEXT CHECK (call_protocol IS NULL OR (
                            length(call_protocol) = 17 AND call_protocol NOT GLOB '*[^0-9]*')),
    request_id          INTEGER REFERENCES recording_requests (id),
    request_read_count  INTEGER NOT NULL DEFAULT 0 CHECK (request_read_count >= 0),
    ended_at            TEXT,
    hangup_cause        TEXT,
    error               TEXT,
    updated_at          TEXT NOT NULL,
    CHECK (request_id IS NULL OR call_protocol IS NOT NULL)
);
CREATE INDEX ivr_request_calls_unfinished ON ivr_request_calls (started_at) WHERE ended_at IS NULL;
