-- callproof storage, schema version 5: which path served each call.
--
-- * calls.served_by: 'ari' (callproof run), 'agi' (classic AGI script), 'fastagi'
--   (callproof fastagi), or 'agi_fallback' / 'fastagi_fallback' when the shipped dialplan
--   ran that AGI path because Stasis() failed (the ARI application was not connected:
--   down, restarting, reconnecting, being upgraded). NULL for calls stored before this
--   version (the path is not known). Ops count fallbacks with
--   SELECT served_by, count(*) FROM calls GROUP BY served_by.

ALTER TABLE calls ADD COLUMN served_by TEXT CHECK (served_by IS NULL OR served_by IN (
    'ari', 'agi', 'fastagi', 'agi_fallback', 'fastagi_fallback'));
