-- callproof storage: recordings from every node in one shared store (issue 14, item 5).
--
-- Each node records locally (MixMonitor writes under its own [recording] root); once a
-- recording is finalised (and encrypted, when [encryption] is on), the node's mover copies
-- its file into the shared store ([recording] store, a shared file system mounted on every
-- node) and then says so here.  Where a recording's file lives is read from these columns:
--   * node        the node that recorded it ([recording] node, default the host name): while
--                 store_path is NULL the file is under that node's own root, at `path` (or
--                 `age_path` when encrypted), and only that node can read or delete it.
--   * store_path  set once the file is in the store: its path relative to the store's root
--                 (date / protocol / id: never a caller-controlled string); the store's copy
--                 is the recording's file from then on, the node's copy is removed.
--   * moved_at    when the row was switched to the store.
--   * move_error  why the last attempt to move it failed (the file stays local, retried);
--                 cleared by the move.
-- `path` keeps the name the recording was made under: the evidence record binds it.

ALTER TABLE recordings ADD COLUMN node TEXT;
ALTER TABLE recordings ADD COLUMN store_path TEXT CHECK (store_path IS NULL OR (store_path <> '' AND substr(store_path, 1, 1) <> '/'));
ALTER TABLE recordings ADD COLUMN moved_at TEXT;
ALTER TABLE recordings ADD COLUMN move_error TEXT;
CREATE UNIQUE INDEX recordings_store_path ON recordings (store_path) WHERE store_path IS NOT NULL;
CREATE INDEX recordings_to_move ON recordings (node, id) WHERE store_path IS NULL AND state IN ('finalised', 'empty');
