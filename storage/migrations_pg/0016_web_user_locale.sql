-- callproof storage: the language an ops web page account reads the page in
-- (callproof/web/i18n.py).  NULL: none chosen, so the browser's Accept-Language decides,
-- then [web] default_locale.  The web layer checks the value against the shipped locales;
-- the CHECK keeps anything else (a typo in a script, an injected string) out of the row.

ALTER TABLE web_users ADD COLUMN locale TEXT CHECK (locale IS NULL OR locale IN ('en', 'pt_BR', 'es'));
