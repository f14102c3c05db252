-- callproof storage: how a request's requester was shown to be the caller, and the
-- one-time codes sent by SMS to a call's number to show it.
--
-- * recording_requests.identity_basis: 'caller_number' (the number given or calling is the
--   call's: caller ID, spoofable, so such a request is delivered only to that number),
--   'cpf', 'customer_code', 'sms_code' (the code sent to the call's number came back),
--   'agent' (an agent checked); NULL while nobody has shown it (needs_identity_check) and
--   for requests stored before this version.
-- * request_codes: one row per code sent; only a salted SHA-256 of the code is kept. A code
--   is spent once used, once expired, or after too many wrong tries.

ALTER TABLE recording_requests ADD COLUMN identity_basis TEXT CHECK (identity_basis IS NULL OR identity_basis IN (
    'caller_number', 'cpf', 'customer_code', 'sms_code', 'agent'));

CREATE TABLE request_codes (
    id          INTEGER PRIMARY KEY,
    request_id  INTEGER NOT NULL REFERENCES recording_requests(id),
    protocol    TEXT NOT NULL,
    destination TEXT NOT NULL CHECK (destination GLOB '+[1-9]*'),
    salt        TEXT NOT NULL CHECK (length(salt) = 32),
    code_hash   TEXT NOT NULL CHECK (length(code_hash) = 64),
    outbox_id   INTEGER REFERENCES sms_outbox(id),
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    used_at     TEXT
);
CREATE INDEX request_codes_by_request ON request_codes(request_id, id);
CREATE INDEX request_codes_by_protocol ON request_codes(protocol, created_at);
