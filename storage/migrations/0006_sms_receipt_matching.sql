-- callproof storage: delivery receipts matched by fact when an SMSC reuses its
-- message ids (after a restart) or sends a receipt before its acceptance is
-- written (storage/outbox_receipts.py has the rules).
--
-- * final: the receipt reports a final state (DELIVRD, UNDELIV, EXPIRED,
--   DELETED, REJECTD, ACCEPTD).  A row that has a final receipt for a
--   gateway id takes no further receipt for that id: the next one with the
--   same id belongs to a later message the SMSC gave the same id.
-- * matched_by: how the receipt found its row: 'gateway_id' (the only row
--   with that id), 'reused_id' (several rows were given that id: the latest
--   accepted one still without a final receipt for it), 'early' (held, then
--   attached when the acceptance was written), 'idempotency_key'; NULL while held.
-- * expired_at: a held receipt (outbox_id NULL) that no acceptance claimed
--   within [sms] receipt_hold_seconds; it is kept as received, never attached.

ALTER TABLE sms_dlrs ADD COLUMN final INTEGER NOT NULL DEFAULT 0 CHECK (final IN (0, 1));
ALTER TABLE sms_dlrs ADD COLUMN matched_by TEXT CHECK (matched_by IS NULL OR matched_by IN (
    'gateway_id', 'reused_id', 'early', 'idempotency_key'));
ALTER TABLE sms_dlrs ADD COLUMN expired_at TEXT;
UPDATE sms_dlrs SET final = 1
    WHERE status IN ('DELIVRD', 'UNDELIV', 'EXPIRED', 'DELETED', 'REJECTD', 'ACCEPTD');
UPDATE sms_dlrs SET matched_by = 'gateway_id' WHERE outbox_id IS NOT NULL;
-- the held receipts, looked at by every acceptance written while there are any
CREATE INDEX sms_dlrs_held ON sms_dlrs (gateway_message_id, received_at)
    WHERE outbox_id IS NULL AND expired_at IS NULL;
-- rows sent in parts (gateway ids joined by commas): the few that a receipt
-- for one part must be looked for in, without reading the whole outbox
CREATE INDEX sms_outbox_parts ON sms_outbox (id) WHERE gateway_message_id LIKE '%,%';
