-- callproof storage: several `callproof run` instances serving one Asterisk (issue 14).
--
-- Each instance registers its own ARI application (`<[ari] app>_<[ari] instance>`); the
-- dialplan's StasisBroadcast() offers each new call to all of them and the first claim wins
-- (docs/scale-out.md#two-applications-per-node).  Which instance drives which in-flight call
-- is kept here, so that when one dies exactly one survivor takes its calls over:
--   * ari_leases     one row per instance's application: who holds it (the instance itself
--                    while it lives; a survivor while it moves a dead one's calls), until when
--                    (renewed by the holder's heartbeat), and whether it is held or released.
--                    A survivor takes an expired lease with one conditional UPDATE (the
--                    generation and the expiry it saw): of two racing survivors one wins.
--   * ari_takeovers  what a survivor did with each channel it found in a dead instance's
--                    application: moved into its own (then resumed from its stored step),
--                    gone (hung up meanwhile), or failed (ARI refused; the reason kept).
--   * calls.ari_app  the application (the instance) whose Stasis holds the call now; NULL
--                    for a call served over AGI, or written before this migration.

CREATE TABLE ari_leases (
    app          TEXT PRIMARY KEY,
    holder       TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('held', 'released')),
    lease_until  TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    generation   INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE ari_takeovers (
    id         INTEGER PRIMARY KEY,
    channel_id TEXT NOT NULL,
    from_app   TEXT NOT NULL,
    to_app     TEXT NOT NULL,
    taken_at   TEXT NOT NULL,
    outcome    TEXT NOT NULL CHECK (outcome IN ('moved', 'gone', 'failed')),
    detail     TEXT
);
CREATE INDEX ari_takeovers_channel ON ari_takeovers (channel_id);

ALTER TABLE calls ADD COLUMN ari_app TEXT;
