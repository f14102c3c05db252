-- callproof storage, schema version 1.
--
-- Conventions:
--   * timestamps are TEXT, UTC, 'YYYY-MM-DDTHH:MM:SS.ffffffZ' (storage/timefmt.py);
--     fixed width so that TEXT comparison is chronological.
--   * phone numbers in normalised columns are E.164 ('+' and 2..15 digits) or NULL;
--     whatever the network delivered is kept verbatim in calls.caller_number_raw.
--   * every CHECK below is a backstop for the Python API, not a replacement.
-- This file runs inside one BEGIN IMMEDIATE transaction together with its
-- schema_migrations row (storage/db.py); do not put BEGIN/COMMIT in it.

CREATE TABLE protocol_sequences (
    year        INTEGER PRIMARY KEY CHECK (year BETWEEN 2000 AND 9999),
    last_value  INTEGER NOT NULL CHECK (last_value >= 1)
);

CREATE TABLE calls (
    id                          INTEGER PRIMARY KEY,
    channel_id                  TEXT NOT NULL UNIQUE CHECK (channel_id <> ''),
    uniqueid                    TEXT,
    linkedid                    TEXT,
    caller_number_raw           TEXT NOT NULL,
    caller_number               TEXT CHECK (caller_number IS NULL OR (
                                    caller_number GLOB '+[1-9]*'
                                    AND length(caller_number) BETWEEN 3 AND 16
                                    AND substr(caller_number, 2) NOT GLOB '*[^0-9]*')),
    caller_name                 TEXT,
    dialled_number              TEXT,
    language                    TEXT,
    started_at                  TEXT NOT NULL,
    status                      TEXT NOT NULL DEFAULT 'consent_playing' CHECK (status IN (
                                    'consent_playing', 'abandoned_in_consent',
                                    'protocol_reading', 'abandoned_in_protocol',
                                    'protocol_given', 'recording', 'handed_off',
                                    'completed', 'failed')),
    protocol                    TEXT UNIQUE REFERENCES protocols (protocol),
    consent_prompt              TEXT,
    consent_language            TEXT,
    consent_sha256              TEXT CHECK (consent_sha256 IS NULL OR (
                                    length(consent_sha256) = 64
                                    AND consent_sha256 NOT GLOB '*[^0-9a-f]*')),
    consent_started_at          TEXT,
    consent_finished_at         TEXT,
    consent_outcome             TEXT CHECK (consent_outcome IS NULL
                                    OR consent_outcome IN ('finished', 'caller_left')),
    protocol_read_count         INTEGER NOT NULL DEFAULT 0 CHECK (protocol_read_count >= 0),
    protocol_read_finished_at   TEXT,
    recording_started_at        TEXT,
    handed_off_at               TEXT,
    ended_at                    TEXT,
    hangup_cause                TEXT,
    error                       TEXT,
    updated_at                  TEXT NOT NULL
);
CREATE INDEX calls_caller_number ON calls (caller_number, started_at);
CREATE INDEX calls_started_at ON calls (started_at);
CREATE INDEX calls_uniqueid ON calls (uniqueid);
CREATE INDEX calls_linkedid ON calls (linkedid);
CREATE INDEX calls_unfinished ON calls (started_at) WHERE ended_at IS NULL;

-- Protocol numbers: calls now, customer requests later (kind).  The CHECK ties
-- the 17-digit text to (year, sequence) so the two can never disagree.
CREATE TABLE protocols (
    protocol      TEXT PRIMARY KEY CHECK (
                      length(protocol) = 17
                      AND protocol = printf('%04d%013d', year, sequence)),
    year          INTEGER NOT NULL CHECK (year BETWEEN 2000 AND 9999),
    sequence      INTEGER NOT NULL CHECK (sequence BETWEEN 1 AND 9999999999999),
    allocated_at  TEXT NOT NULL,
    kind          TEXT NOT NULL DEFAULT 'call' CHECK (kind <> ''),
    call_id       INTEGER REFERENCES calls (id),
    UNIQUE (year, sequence)
);
CREATE INDEX protocols_call_id ON protocols (call_id);
CREATE INDEX protocols_allocated_at ON protocols (allocated_at);

CREATE TABLE recordings (
    id               INTEGER PRIMARY KEY,
    call_id          INTEGER NOT NULL REFERENCES calls (id),
    protocol         TEXT REFERENCES protocols (protocol),
    path             TEXT NOT NULL UNIQUE CHECK (path <> ''),
    caller_number    TEXT,
    started_at       TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'recording' CHECK (state IN (
                         'recording', 'finalised', 'failed', 'missing', 'deleted')),
    size_bytes       INTEGER CHECK (size_bytes IS NULL OR size_bytes >= 0),
    duration_ms      INTEGER CHECK (duration_ms IS NULL OR duration_ms >= 0),
    sha256           TEXT CHECK (sha256 IS NULL OR (
                         length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*')),
    finalised_at     TEXT,
    error            TEXT,
    retention_until  TEXT
);
CREATE INDEX recordings_call_id ON recordings (call_id);
CREATE INDEX recordings_protocol ON recordings (protocol);
CREATE INDEX recordings_caller_number ON recordings (caller_number, started_at);
CREATE INDEX recordings_unfinalised ON recordings (started_at) WHERE state = 'recording';
CREATE INDEX recordings_retention ON recordings (retention_until)
    WHERE retention_until IS NOT NULL;

-- SMS outbox, delivered at least once by lease-holding workers.  Nothing here
-- is specific to a gateway; backends (SMPP/HTTP) only see rows and report a
-- gateway_message_id.  State rules:
--   pending      -> waiting for next_attempt_at (always set)
--   sending      -> leased (lease_owner and lease_until set, and only then)
--   not_sendable -> never attempted (no destination / not an SMS number); reason says why
--   sent / dead  -> terminal;  'failed' is reserved for backends that need it
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
                            'pending', 'sending', 'sent', 'failed', 'dead', 'not_sendable')),
    reason              TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at     TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    gateway_message_id  TEXT,
    lease_owner         TEXT,
    lease_until         TEXT,
    CHECK (destination IS NOT NULL OR state = 'not_sendable'),
    CHECK (state <> 'not_sendable' OR reason IS NOT NULL),
    CHECK (state <> 'pending' OR next_attempt_at IS NOT NULL),
    CHECK ((state = 'sending') = (lease_owner IS NOT NULL AND lease_until IS NOT NULL))
);
CREATE INDEX sms_outbox_protocol ON sms_outbox (protocol);
CREATE INDEX sms_outbox_call_id ON sms_outbox (call_id);
CREATE INDEX sms_outbox_due ON sms_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX sms_outbox_leases ON sms_outbox (lease_until) WHERE state = 'sending';

-- Append-only, hash-chained audit log (storage/audit.py computes the hashes).
-- The triggers stop accidents and casual edits; the chain makes deliberate
-- edits (which must first drop a trigger) detectable by verify_chain().
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL CHECK (actor <> ''),
    action     TEXT NOT NULL CHECK (action <> ''),
    protocol   TEXT,
    subject    TEXT,
    details    TEXT,
    prev_hash  TEXT NOT NULL CHECK (length(prev_hash) = 64),
    hash       TEXT NOT NULL UNIQUE CHECK (length(hash) = 64)
);
CREATE INDEX audit_log_protocol ON audit_log (protocol, id);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
END;

-- A new entry must link to the current head (genesis: 64 zeros).
CREATE TRIGGER audit_log_chain_link BEFORE INSERT ON audit_log
WHEN NEW.prev_hash IS NOT coalesce(
        (SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1),
        '0000000000000000000000000000000000000000000000000000000000000000')
BEGIN
    SELECT RAISE(ABORT, 'audit_log: prev_hash does not link to the last entry');
END;
