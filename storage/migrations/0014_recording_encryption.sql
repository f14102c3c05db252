-- callproof storage: recordings encrypted at rest (docs/keys.md, docs/evidence.md).
--
-- A finalised recording is encrypted (age v1) to its period key right after it is measured:
-- * encryption: NULL (plaintext: encryption was off), 'encrypted' (the file at age_path is
--   the recording; the plaintext at path was removed) or 'pending' (encryption failed or no
--   key fitted: the plaintext at path is kept, encryption_error says why, and
--   'callproof recording encrypt' encrypts it later).
-- * age_path: the .age file; ciphertext_sha256 / ciphertext_size: the whole file;
--   payload_sha256: everything after the age header (a re-wrap to other keys keeps it);
--   key_ids: the keys its header is wrapped to, comma-separated ("consumer-2027-03").
-- recordings.path stays the recording's name (the .wav the row was created with).

ALTER TABLE recordings ADD COLUMN encryption TEXT CHECK (encryption IN ('encrypted', 'pending'));
ALTER TABLE recordings ADD COLUMN encryption_error TEXT;
ALTER TABLE recordings ADD COLUMN age_path TEXT;
ALTER TABLE recordings ADD COLUMN ciphertext_sha256 TEXT CHECK (ciphertext_sha256 IS NULL OR length(ciphertext_sha256) = 64);
ALTER TABLE recordings ADD COLUMN ciphertext_size INTEGER;
ALTER TABLE recordings ADD COLUMN payload_sha256 TEXT CHECK (payload_sha256 IS NULL OR length(payload_sha256) = 64);
ALTER TABLE recordings ADD COLUMN key_ids TEXT;
CREATE UNIQUE INDEX recordings_age_path ON recordings (age_path) WHERE age_path IS NOT NULL;
CREATE INDEX recordings_encryption ON recordings (encryption) WHERE encryption IS NOT NULL;
