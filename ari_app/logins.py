"""Logins Asterisk refused: an error naming the account and what to check, and a bound.

A wrong ARI or AMI password is not a network fault: retrying it for ever (every 3 s for
AMI, every second for ARI) only fills the log while no call is recorded.  Each refusal
is logged as an error naming the account and the Asterisk file that defines it; after
``[ari]/[ami] max_login_failures`` refusals in a row ``callproof run`` stops with
:data:`EXIT_LOGIN_REFUSED`.  A login that succeeds resets the count; connection errors
(Asterisk restarting, a refused TCP connection) are not refusals and keep retrying.
"""

from __future__ import annotations

import logging

from callproof.logs import event

log = logging.getLogger("callproof.app")

#: ``callproof run``'s exit status when Asterisk keeps refusing its ARI or AMI login.
EXIT_LOGIN_REFUSED = 3

_WHERE = {
    "ARI": ("ari.conf (or an ari_custom.conf it includes)", "[ari] username/password",
            "asterisk -rx 'module reload res_ari.so'"),
    "AMI": ("manager.conf (or a manager_custom.conf it includes)", "[ami] username/password",
            "asterisk -rx 'manager reload'"),
}


def refusal_hint(api: str, username: str) -> str:
    """One line: which account was refused and what to check."""
    conf, keys, reload = _WHERE[api]
    return (f"Asterisk refused the {api} login of account {username!r}: check that {conf} defines "
            f"[{username}] with the same password as callproof's {keys}, then {reload}")


class LoginRefused(Exception):
    """Asterisk refused our ARI/AMI login too many times in a row."""

    def __init__(self, api: str, username: str, failures: int):
        self.api, self.username, self.failures = api, username, failures
        super().__init__(f"{refusal_hint(api, username)} ({failures} refusals in a row; giving up)")


class LoginFailures:
    """Consecutive refusals of one API's login."""

    def __init__(self, api: str, username: str, limit: int):
        self.api, self.username, self.limit = api, username, limit
        self.count = 0

    def refused(self, detail: str = "") -> LoginRefused | None:
        """Count one refusal (logged as an error); the exception to stop with once the limit is reached."""
        self.count += 1
        event(log, f"{self.api.lower()}.login_refused", logging.ERROR, account=self.username,
              failures=self.count, limit=self.limit, detail=detail[:200],
              hint=refusal_hint(self.api, self.username))
        if self.count >= self.limit:
            return LoginRefused(self.api, self.username, self.count)
        return None

    def succeeded(self) -> None:
        self.count = 0


def is_unauthorised(exc: BaseException) -> bool:
    """Whether an exception from the ARI client is Asterisk's 401 (wrong user or password)."""
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    return status == 401
