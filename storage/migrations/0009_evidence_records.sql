-- callproof storage: signed evidence records (callproof/evidence/records.py, docs/evidence.md).
--
-- One row per finalised recording, written by the process that finalised it: the record
-- (canonical JSON: protocol, call and consent times, the recording's size, duration and
-- sha256), its Ed25519 signature (base64) and the fingerprint of the key that made it.
-- signature and key_fingerprint are NULL when no signing key was configured: such a record
-- proves nothing and `callproof recording verify` says so. The signing key is not in the
-- database, so whoever can write it can delete or replace a record but cannot forge one.
-- Append-only like audit_log.

CREATE TABLE evidence_records (
    id               INTEGER PRIMARY KEY,
    recording_id     INTEGER NOT NULL UNIQUE REFERENCES recordings (id),
    protocol         TEXT,
    record           TEXT NOT NULL CHECK (record <> ''),
    record_sha256    TEXT NOT NULL CHECK (length(record_sha256) = 64),
    signature        TEXT,
    key_fingerprint  TEXT CHECK (key_fingerprint IS NULL OR length(key_fingerprint) = 64),
    created_at       TEXT NOT NULL,
    CHECK ((signature IS NULL) = (key_fingerprint IS NULL))
);
CREATE INDEX evidence_records_protocol ON evidence_records (protocol);

CREATE TRIGGER evidence_records_no_update BEFORE UPDATE ON evidence_records
BEGIN
    SELECT RAISE(ABORT, 'evidence_records is append-only: UPDATE refused');
END;

CREATE TRIGGER evidence_records_no_delete BEFORE DELETE ON evidence_records
BEGIN
    SELECT RAISE(ABORT, 'evidence_records is append-only: DELETE refused');
END;
