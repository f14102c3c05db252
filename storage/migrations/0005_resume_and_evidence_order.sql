-- callproof storage, schema version 5: exact resume after an ARI drop, and the
-- evidence timestamps of a call kept in order (docs/architecture.md).
--
-- * calls.consent_playback_id: the announcement's ARI playback id, written once
--   Asterisk accepted the play request.  A resumed call with an id asks Asterisk
--   about that playback (still playing: wait for it; gone while the channel is
--   up: it ended while we were away); without one the announcement is played again.
-- * calls.protocol_playback_id: the same for the reading in progress (reading
--   number protocol_read_count + 1); cleared when that reading is counted.
-- * calls.protocol_replays: the replays the caller earned with the replay key,
--   so a resumed reading still gives them.
-- * Triggers: an update that would put a call's evidence out of order is refused:
--   consent started <= consent finished <= protocol allocated <= reading finished
--   <= recording started (equal times are allowed: a coarse clock).  A protocol is
--   never linked to a call whose announcement started and did not finish.  Only
--   updates that write one of these columns are checked, so rows written before
--   this version can still be closed.

ALTER TABLE calls ADD COLUMN consent_playback_id TEXT;
ALTER TABLE calls ADD COLUMN protocol_playback_id TEXT;
ALTER TABLE calls ADD COLUMN protocol_replays INTEGER NOT NULL DEFAULT 0 CHECK (protocol_replays >= 0);

CREATE TRIGGER calls_evidence_consent_order
BEFORE UPDATE OF consent_started_at, consent_finished_at ON calls
WHEN NEW.consent_finished_at < NEW.consent_started_at
BEGIN
    SELECT RAISE(ABORT, 'evidence order: consent_finished_at is before consent_started_at');
END;

CREATE TRIGGER calls_evidence_consent_before_protocol
BEFORE UPDATE OF consent_started_at, consent_finished_at, protocol ON calls
WHEN NEW.protocol IS NOT NULL AND (
    NEW.consent_started_at > (SELECT allocated_at FROM protocols WHERE protocol = NEW.protocol)
    OR NEW.consent_finished_at > (SELECT allocated_at FROM protocols WHERE protocol = NEW.protocol)
    OR (NEW.consent_started_at IS NOT NULL AND NEW.consent_finished_at IS NULL))
BEGIN
    SELECT RAISE(ABORT, 'evidence order: the consent must have finished before the protocol was allocated');
END;

CREATE TRIGGER calls_evidence_reading_after_protocol
BEFORE UPDATE OF protocol_read_finished_at, protocol ON calls
WHEN NEW.protocol_read_finished_at IS NOT NULL AND (
    NEW.protocol IS NULL
    OR NEW.protocol_read_finished_at < (SELECT allocated_at FROM protocols WHERE protocol = NEW.protocol))
BEGIN
    SELECT RAISE(ABORT, 'evidence order: protocol_read_finished_at is before the protocol was allocated');
END;

CREATE TRIGGER calls_evidence_recording_after_reading
BEFORE UPDATE OF recording_started_at, protocol_read_finished_at ON calls
WHEN NEW.recording_started_at < NEW.protocol_read_finished_at
BEGIN
    SELECT RAISE(ABORT, 'evidence order: recording_started_at is before protocol_read_finished_at');
END;
