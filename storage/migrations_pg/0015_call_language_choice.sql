-- callproof storage: how a call's language was chosen, and the language menu (issue 15).
--
--   * language_source    what chose calls.language: 'dialplan' (CALLPROOF_LANGUAGE), 'did'
--                        ([languages] by_did), 'menu' (the caller's key after the
--                        announcement), 'channel' (CHANNEL(language), when trusted) or
--                        'default'; NULL on calls taken before this migration
--   * language_menu      NULL: no menu was offered; 'chosen' (a key chose calls.language),
--                        'no_input' / 'invalid' (the language stayed), 'caller_left'
--                        (hung up during the menu)
--   * language_chosen_at when the menu ended (its outcome written)
-- A resumed call whose language_menu is chosen / no_input / invalid never hears the menu
-- again (callproof/callflow/flow.py).

ALTER TABLE calls ADD COLUMN language_source TEXT
    CHECK (language_source IS NULL OR language_source IN ('dialplan', 'did', 'menu', 'channel', 'default'));
ALTER TABLE calls ADD COLUMN language_menu TEXT
    CHECK (language_menu IS NULL OR language_menu IN ('chosen', 'no_input', 'invalid', 'caller_left'));
ALTER TABLE calls ADD COLUMN language_chosen_at TEXT;
