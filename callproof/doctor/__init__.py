"""``callproof doctor``: checks the whole chain an installation needs, from the
configuration to the running Asterisk, each problem with its fix in one line
(docs/operations.md, "Checking an installation").

* :mod:`.report` -- a check's result (OK / WARN / FAIL) and the exit status;
* :mod:`.access` -- what the service user may read and write (from the files' modes);
* :mod:`.checks_files` -- secret files, prompts and digits, database and recordings folders;
* :mod:`.checks_store` -- the shared recordings store: mounted, writable, hard links, backlog;
* :mod:`.checks_asterisk` -- ARI and AMI logins, the dialplan contexts loaded;
* :mod:`.checks_setup` -- SMS backend, retention timer, web secrets;
* :mod:`.cli` -- the command.
"""
