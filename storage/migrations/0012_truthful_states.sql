-- callproof storage: states that say what really happened (issue "installs like an add-on").
--
-- * sms_outbox.state 'logged': the development ``log`` backend wrote the SMS to the
--   log; nothing reached a gateway, so the row must not say 'sent' (terminal, and never
--   counted as delivered).  The link-redaction trigger of 0010 also fires for it.
-- * recordings.state 'empty': the file holds no audio (a header-only WAV, 0 ms), e.g. a
--   call that hung up at once after hand-off.  Kept apart from 'finalised' so that
--   verification, exports and the metrics do not present it as a recording.
--
-- SQLite cannot change a CHECK constraint, so both tables are rebuilt: each is copied
-- aside, dropped and created again under its own name, then filled back.  The foreign
-- keys of the tables that point at them are deferred for this transaction, so the
-- rows that were orphaned by the DROP are matched again by the refill before COMMIT.
-- Measured (bench/bench_migration.py): 2.2-2.4 s for a database of 100,000 calls, each with its
-- SMS and recording row, on a loaded 2-core machine; the first process to open the database
-- after the upgrade holds the write lock that long (a call meanwhile waits
-- [storage] call_wait_seconds, then is journalled).

PRAGMA defer_foreign_keys = ON;

CREATE TEMP TABLE sms_outbox_copy AS SELECT * FROM sms_outbox;
DROP TABLE sms_outbox;
CREATE TABLE sms_outbox (
    id                  INTEGER PRIMARY KEY,
    protocol            TEXT NOT NULL REFERENCES protocols (protocol),
    call_id             INTEGER REFERENCES calls (id),
    destination         TEXT CHECK (destination IS NULL OR (
                            destination GLOB '+[1-9]*'
                            AND length(destination) BETWEEN 3 AND 16
                            AND substr(destination, 2) NOT GLOB '*[^0-9]*')),
    language            TEXT NOT NULL,
    body                TEXT NOT NULL,
    state               TEXT NOT NULL DEFAULT 'pending' CHECK (state IN (
                            'pending', 'sending', 'sent', 'logged', 'failed', 'dead', 'not_sendable')),
    reason              TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at     TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    gateway_message_id  TEXT,
    lease_owner         TEXT,
    lease_until         TEXT,
    idempotency_key     TEXT,
    throttled           INTEGER NOT NULL DEFAULT 0 CHECK (throttled >= 0),
    dlr_state           TEXT,
    dlr_at              TEXT,
    CHECK (destination IS NOT NULL OR state = 'not_sendable'),
    CHECK (state <> 'not_sendable' OR reason IS NOT NULL),
    CHECK (state <> 'pending' OR next_attempt_at IS NOT NULL),
    CHECK ((state = 'sending') = (lease_owner IS NOT NULL AND lease_until IS NOT NULL))
);
INSERT INTO sms_outbox (id, protocol, call_id, destination, language, body, state, reason, attempts,
                        next_attempt_at, created_at, updated_at, gateway_message_id, lease_owner,
                        lease_until, idempotency_key, throttled, dlr_state, dlr_at)
    SELECT id, protocol, call_id, destination, language, body, state, reason, attempts,
           next_attempt_at, created_at, updated_at, gateway_message_id, lease_owner,
           lease_until, idempotency_key, throttled, dlr_state, dlr_at
    FROM sms_outbox_copy;
DROP TABLE sms_outbox_copy;
CREATE INDEX sms_outbox_protocol ON sms_outbox (protocol);
CREATE INDEX sms_outbox_call_id ON sms_outbox (call_id);
CREATE INDEX sms_outbox_due ON sms_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX sms_outbox_leases ON sms_outbox (lease_until) WHERE state = 'sending';
CREATE INDEX sms_outbox_gateway_id ON sms_outbox (gateway_message_id)
    WHERE gateway_message_id IS NOT NULL;
CREATE INDEX sms_outbox_state ON sms_outbox (state, id);
CREATE INDEX sms_outbox_parts ON sms_outbox (id) WHERE gateway_message_id LIKE '%,%';
CREATE TRIGGER sms_outbox_redact_link_once_sent
AFTER UPDATE OF state ON sms_outbox
WHEN NEW.state IN ('sent', 'logged') AND OLD.state NOT IN ('sent', 'logged')
BEGIN
    UPDATE sms_outbox
       SET body = (SELECT d.redacted_body FROM request_deliveries d
                    WHERE d.outbox_id = NEW.id AND d.redacted_body IS NOT NULL)
     WHERE id = NEW.id
       AND EXISTS (SELECT 1 FROM request_deliveries d
                    WHERE d.outbox_id = NEW.id AND d.redacted_body IS NOT NULL);
END;

CREATE TEMP TABLE recordings_copy AS SELECT * FROM recordings;
DROP TABLE recordings;
CREATE TABLE recordings (
    id               INTEGER PRIMARY KEY,
    call_id          INTEGER NOT NULL REFERENCES calls (id),
    protocol         TEXT REFERENCES protocols (protocol),
    path             TEXT NOT NULL UNIQUE CHECK (path <> ''),
    caller_number    TEXT,
    started_at       TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'recording' CHECK (state IN (
                         'recording', 'finalised', 'empty', 'failed', 'missing', 'deleted')),
    size_bytes       INTEGER CHECK (size_bytes IS NULL OR size_bytes >= 0),
    duration_ms      INTEGER CHECK (duration_ms IS NULL OR duration_ms >= 0),
    sha256           TEXT CHECK (sha256 IS NULL OR (
                         length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*')),
    finalised_at     TEXT,
    error            TEXT,
    retention_until  TEXT,
    retention_class  TEXT,
    sweep_mark       TEXT
);
INSERT INTO recordings (id, call_id, protocol, path, caller_number, started_at, state, size_bytes,
                        duration_ms, sha256, finalised_at, error, retention_until, retention_class,
                        sweep_mark)
    SELECT id, call_id, protocol, path, caller_number, started_at, state, size_bytes,
           duration_ms, sha256, finalised_at, error, retention_until, retention_class, sweep_mark
    FROM recordings_copy;
DROP TABLE recordings_copy;
CREATE INDEX recordings_call_id ON recordings (call_id);
CREATE INDEX recordings_protocol ON recordings (protocol);
CREATE INDEX recordings_caller_number ON recordings (caller_number, started_at);
CREATE INDEX recordings_unfinalised ON recordings (started_at) WHERE state = 'recording';
CREATE INDEX recordings_retention ON recordings (retention_until)
    WHERE retention_until IS NOT NULL;
CREATE INDEX recordings_sweep_mark ON recordings (sweep_mark) WHERE sweep_mark IS NOT NULL;
CREATE INDEX recordings_started_at ON recordings (started_at);
