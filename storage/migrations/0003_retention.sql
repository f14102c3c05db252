-- callproof storage, schema version 3: retention, legal holds, LGPD minimisation.
--
-- * recordings.retention_class: the class chosen when the recording was created
--   (config [retention] rules); retention_until (already in 0001) is computed
--   from it at the same moment and never recomputed.
-- * recordings.sweep_mark: set by the sweeper (run id) in the transaction that
--   decides a recording goes, before the file is unlinked; the deletion is
--   recorded (state 'deleted' + audit entry, one transaction) afterwards.  A
--   marked row that is not 'deleted' is unfinished work of a killed sweeper.
-- * legal_holds: a held recording (and call record) is never deleted nor
--   anonymised.  kind 'protocol' | 'caller' (E.164, matched on calls.caller_number)
--   | 'date_range' (on recordings/calls started_at, [from_at, to_at)).
--   Released holds stay, with who/why/when.
-- * recording_requests: the hook for customer requests (a later issue): a
--   request open on a protocol holds it until closed_at + the grace period.
-- * calls.anonymised_at: personal fields erased after [retention] call_record_days.

ALTER TABLE recordings ADD COLUMN retention_class TEXT;
ALTER TABLE recordings ADD COLUMN sweep_mark TEXT;
CREATE INDEX recordings_sweep_mark ON recordings (sweep_mark) WHERE sweep_mark IS NOT NULL;
CREATE INDEX recordings_started_at ON recordings (started_at);

CREATE TABLE legal_holds (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('protocol', 'caller', 'date_range')),
    protocol        TEXT,
    caller_number   TEXT,
    from_at         TEXT,
    to_at           TEXT,
    reason          TEXT NOT NULL CHECK (reason <> ''),
    placed_by       TEXT NOT NULL CHECK (placed_by <> ''),
    placed_at       TEXT NOT NULL,
    released_by     TEXT,
    released_at     TEXT,
    release_reason  TEXT,
    CHECK (kind <> 'protocol' OR (protocol IS NOT NULL AND length(protocol) = 17
                                  AND protocol NOT GLOB '*[^0-9]*')),
    CHECK (kind <> 'caller' OR (caller_number GLOB '+[1-9]*'
                                AND substr(caller_number, 2) NOT GLOB '*[^0-9]*')),
    CHECK (kind <> 'date_range' OR (from_at IS NOT NULL AND to_at IS NOT NULL
                                    AND from_at < to_at)),
    CHECK ((released_at IS NULL) = (released_by IS NULL))
);
CREATE INDEX legal_holds_active ON legal_holds (kind) WHERE released_at IS NULL;

CREATE TABLE recording_requests (
    id          INTEGER PRIMARY KEY,
    protocol    TEXT NOT NULL CHECK (length(protocol) = 17 AND protocol NOT GLOB '*[^0-9]*'),
    reference   TEXT,
    opened_at   TEXT NOT NULL,
    closed_at   TEXT,
    CHECK (closed_at IS NULL OR closed_at >= opened_at)
);
CREATE INDEX recording_requests_protocol ON recording_requests (protocol, closed_at);

ALTER TABLE calls ADD COLUMN anonymised_at TEXT;
CREATE INDEX calls_not_anonymised ON calls (started_at) WHERE anonymised_at IS NULL;
