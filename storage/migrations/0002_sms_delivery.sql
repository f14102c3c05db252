-- callproof storage, schema version 2: SMS delivery bookkeeping.
--
-- * sms_attempts: one row per try, written BEFORE the message is handed to the
--   gateway (outcome 'in_flight') and finished with the gateway's answer in the
--   same transaction that moves the outbox row on.  An 'in_flight' attempt found
--   when a row is claimed again means a sender died mid-send: its outcome is
--   'unknown' (see README, "what remains at-least-once").
-- * idempotency_key: stable for a row across attempts; the HTTP backend passes
--   it on so a gateway that honours it drops a repeat.
-- * sms_dlrs: delivery receipts as received, matched to the row by the
--   gateway's message id; the row keeps the latest receipt state.
-- * throttled: 'pending' rows put back because the gateway asked us to slow
--   down; such answers do not count as attempts.

ALTER TABLE sms_outbox ADD COLUMN idempotency_key TEXT;
ALTER TABLE sms_outbox ADD COLUMN throttled INTEGER NOT NULL DEFAULT 0 CHECK (throttled >= 0);
ALTER TABLE sms_outbox ADD COLUMN dlr_state TEXT;
ALTER TABLE sms_outbox ADD COLUMN dlr_at TEXT;
UPDATE sms_outbox SET idempotency_key = 'cp-' || protocol || '-' || id;
CREATE INDEX sms_outbox_gateway_id ON sms_outbox (gateway_message_id)
    WHERE gateway_message_id IS NOT NULL;
CREATE INDEX sms_outbox_state ON sms_outbox (state, id);

CREATE TABLE sms_attempts (
    id                  INTEGER PRIMARY KEY,
    outbox_id           INTEGER NOT NULL REFERENCES sms_outbox (id),
    attempt_no          INTEGER NOT NULL CHECK (attempt_no >= 1),
    idempotency_key     TEXT NOT NULL CHECK (idempotency_key <> ''),
    backend             TEXT NOT NULL,
    owner               TEXT NOT NULL,
    started_at          TEXT NOT NULL,
    finished_at         TEXT,
    outcome             TEXT NOT NULL DEFAULT 'in_flight' CHECK (outcome IN (
                            'in_flight', 'accepted', 'transient', 'throttled',
                            'rejected', 'unknown')),
    gateway_message_id  TEXT,
    reason              TEXT,
    CHECK ((outcome = 'in_flight') = (finished_at IS NULL))
);
CREATE INDEX sms_attempts_outbox ON sms_attempts (outbox_id, id);
CREATE INDEX sms_attempts_in_flight ON sms_attempts (outbox_id) WHERE outcome = 'in_flight';

CREATE TABLE sms_dlrs (
    id                  INTEGER PRIMARY KEY,
    outbox_id           INTEGER REFERENCES sms_outbox (id),
    gateway_message_id  TEXT NOT NULL,
    status              TEXT NOT NULL,
    received_at         TEXT NOT NULL,
    detail              TEXT
);
CREATE INDEX sms_dlrs_outbox ON sms_dlrs (outbox_id, id);
