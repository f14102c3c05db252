"""The web server's access log, without personal data or credentials.

aiohttp's default line carries the request line as sent (``%r``): the query
string (a search's CPF, phone, customer code, a notice naming a number), the
download token of ``/d/<token>``, and the Referer and User-Agent.  Ours logs
the method, the path with every value that is not ours replaced (``/d/<token>``
-> ``/d/[token]``; no query string, only how many parameters it had), the
status, the size and the time taken, and the client address (the one
throttling uses).  A protocol in ``/calls/<protocol>`` stays: it is the
call's reference, not the caller's data.
"""

from __future__ import annotations

import re

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

ACCESS_LOG_NAME = "callproof.web.access"
# Paths whose every segment is ours (fixed words, 17-digit protocols, request ids).
_SAFE_PATH = re.compile(r"(/(?:[a-z_]+|[0-9]{1,17}|style\.css))*/?")


def loggable_path(path: str) -> str:
    """The path as the log may show it."""
    if path.startswith("/d/"):
        return "/d/[token]"
    if path.startswith("/static/"):
        return "/static/" + ("style.css" if path == "/static/style.css" else "[file]")
    return path if _SAFE_PATH.fullmatch(path) else "[path]"


class AccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        from .auth import client_remote

        try:
            remote = client_remote(request)  # type: ignore[arg-type]
        except Exception:  # a request refused before routing has no application
            remote = request.remote
        query = f" ?[{len(request.query)} parameters]" if request.query_string else ""
        self.logger.info("%s %s %s%s %s %s %.3fs", remote, request.method, loggable_path(request.path), query,
                         response.status, response.body_length, time)
