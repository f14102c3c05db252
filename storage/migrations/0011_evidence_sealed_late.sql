-- callproof storage: a recording may get a signed evidence record after the fact
-- (`callproof evidence seal`, docs/evidence.md#sealing-late).
--
-- A recording finalised while no signing key was configured has an unsigned record; sealing
-- it late adds a second, signed one next to it (the table is append-only: the unsigned one
-- stays). So a recording now has at most one unsigned and at most one signed record, and
-- readers take the signed one. SQLite cannot drop the column's UNIQUE constraint in place:
-- the table is rebuilt with the same rows (DROP TABLE fires no trigger) and its triggers
-- recreated.

CREATE TABLE evidence_records_new (
    id               INTEGER PRIMARY KEY,
    recording_id     INTEGER NOT NULL REFERENCES recordings (id),
    protocol         TEXT,
    record           TEXT NOT NULL CHECK (record <> ''),
    record_sha256    TEXT NOT NULL CHECK (length(record_sha256) = 64),
    signature        TEXT,
    key_fingerprint  TEXT CHECK (key_fingerprint IS NULL OR length(key_fingerprint) = 64),
    created_at       TEXT NOT NULL,
    CHECK ((signature IS NULL) = (key_fingerprint IS NULL))
);
INSERT INTO evidence_records_new (id, recording_id, protocol, record, record_sha256, signature, key_fingerprint,
                                  created_at)
    SELECT id, recording_id, protocol, record, record_sha256, signature, key_fingerprint, created_at
    FROM evidence_records;
DROP TABLE evidence_records;
ALTER TABLE evidence_records_new RENAME TO evidence_records;

CREATE INDEX evidence_records_protocol ON evidence_records (protocol);
CREATE UNIQUE INDEX evidence_records_one_signed ON evidence_records (recording_id) WHERE signature IS NOT NULL;
CREATE UNIQUE INDEX evidence_records_one_unsigned ON evidence_records (recording_id) WHERE signature IS NULL;

CREATE TRIGGER evidence_records_no_update BEFORE UPDATE ON evidence_records
BEGIN
    SELECT RAISE(ABORT, 'evidence_records is append-only: UPDATE refused');
END;

CREATE TRIGGER evidence_records_no_delete BEFORE DELETE ON evidence_records
BEGIN
    SELECT RAISE(ABORT, 'evidence_records is append-only: DELETE refused');
END;
