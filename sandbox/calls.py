"""Driving calls through a running sandbox: ARI requests, a "customer" call, waiting for hang-up.

Behaviour verified against Asterisk 22.10.1 (Debian sid)
-------------------------------------------------------
* Originating ``Local/s@X`` with ``context=callproof-sandbox-caller`` gives
  ``;1`` (returned by ARI; runs ``callproof-sandbox-caller``, the customer)
  and ``;2`` (runs ``s@X``, what a real inbound call would run).  Plain
  channel variables given at originate time are set on ``;1`` and copied to
  ``;2`` by the Local driver; function-style ones (``CALLERID(num)``) act on
  ``;1`` only.
* Caller ID: ``;2``'s caller ID is ``;1``'s *connected line*, which ARI fills
  from the ``callerId`` query parameter parsed as ``"name" <number>``
  (``ast_callerid_parse``).  So ``callerId=abc`` gives name ``abc`` and an
  empty number, ``"x" <123>`` gives name ``x`` / number ``123``, ``+55 11
  9999-0000`` becomes ``+551199990000``, backslashes vanish, ``<>`` gives
  nothing and 500 digits are cut to ~256.  ``CALLERID(num)`` as an originate
  variable sets ``;1`` only: ``;2`` sees an empty number.  Hence
  ``originate_call`` enters through ``[callproof-sandbox-entry]``, which
  ``Set()``s ``CALLERID(num)`` from a copied channel variable: the entry
  context then sees the caller ID byte for byte (quotes, ``;``, ``,``,
  ``$(...)``, ``${...}``, ``$[...]``, ``../``, newlines, unicode, 500 chars,
  empty) -- substituted values are not evaluated again.
* ARI events: an app connected with ``subscribeAll=true`` receives
  ``PlaybackStarted``/``PlaybackFinished`` of playbacks another app started on
  a channel it owns, in order, plus ``ChannelUserevent``, ``ChannelVarset``,
  ``ChannelDialplan``, ``ChannelCallerId``, ``Dial``, ``ChannelHangupRequest``,
  ``ChannelDestroyed`` of every channel; not ``StasisStart``/``StasisEnd``,
  which stay with the owning app.  Without ``subscribeAll`` it receives
  nothing of those channels.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SandboxError

if TYPE_CHECKING:
    from .instance import Sandbox


def ari_request(
    sandbox: Sandbox,
    method: str,
    path: str,
    params: Mapping[str, Any] | None = None,
    body: Any = None,
    timeout: float = 10,
) -> Any:
    """Call ARI (``/ari/<path>``) with the sandbox's credentials; return the decoded JSON (or None).

    Query parameters are URL-encoded, ``body`` is sent as JSON; an HTTP error
    raises ``SandboxError`` carrying Asterisk's message.
    """
    url = urllib.parse.urljoin(sandbox.ari_url, "ari/" + path.lstrip("/"))
    if params:
        url += "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    token = base64.b64encode(f"{sandbox.ari_username}:{sandbox.ari_password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise SandboxError(f"ARI {method} {path} failed: HTTP {exc.code} {detail}") from exc
    except urllib.error.URLError as exc:
        raise SandboxError(f"ARI {method} {path} failed: {exc.reason}") from exc
    return json.loads(payload) if payload.strip() else None


def originate_call(
    sandbox: Sandbox,
    caller_id: str,
    *,
    entry_context: str = "callproof-entry",
    record_path: str | None = None,
    max_seconds: int = 60,
    variables: Mapping[str, str] | None = None,
    caller_name: str = "",
    extension: str = "s",
    formats: str | None = None,
) -> dict:
    """Start a "customer" call into ``entry_context`` and return the ARI channel JSON of its ``;1`` side.

    The ``;2`` side runs ``s@entry_context`` with ``CALLERID(num)`` equal to
    ``caller_id`` byte for byte, whatever it contains (see the module
    docstring for why the ``callerId`` parameter cannot do that).  The ``;1``
    side runs ``callproof-sandbox-caller``: it records what the customer hears
    into ``record_path`` (an absolute path with a format extension, e.g.
    ``.wav``, under ``run_dir`` or a ``bind_paths`` entry) or just listens, and
    hangs up after ``max_seconds``.  ``variables`` are set on the call (both
    sides).  ``formats`` (e.g. ``"ulaw"``) is ARI's originate parameter: without
    it the Local channels are created with every audio format and run at
    slin192, so every 8 kHz frame played is resampled to 192 kHz (about 3/4 of
    Asterisk's CPU in a call of bench/bench_calls.py); a trunk call is ulaw/alaw.
    """
    channel_vars = dict(variables or {})
    channel_vars.update(
        SANDBOX_CALLER_NUM=caller_id,
        SANDBOX_CALLER_NAME=caller_name,
        SANDBOX_ENTRY_CONTEXT=entry_context,
        SANDBOX_ENTRY_EXTEN=extension,
        SANDBOX_MAX_SECONDS=str(int(max_seconds)),
    )
    if record_path is not None:
        target = Path(record_path)
        if not target.is_absolute() or not target.suffix:
            raise ValueError(f"record_path must be absolute and end in a format extension: {record_path!r}")
        shared = [sandbox.run_dir, *sandbox.bind_paths]
        if not any(root == target.parent or root in target.parents for root in shared):
            raise ValueError(f"record_path {record_path!r} is not under run_dir or a bind_paths entry")
        target.parent.mkdir(parents=True, exist_ok=True)
        channel_vars["SANDBOX_RECORD"] = str(target)
    params = {
        "endpoint": "Local/s@callproof-sandbox-entry",
        "context": "callproof-sandbox-caller",
        "extension": "s",
        "priority": "1",
        "timeout": "30",
    }
    if formats:
        params["formats"] = formats
    return ari_request(sandbox, "POST", "channels", params=params, body={"variables": channel_vars})


def wait_for_hangup(sandbox: Sandbox, channel_id: str, timeout: float = 60) -> None:
    """Wait until ARI no longer knows ``channel_id`` (the channel hung up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ari_request(sandbox, "GET", f"channels/{urllib.parse.quote(channel_id, safe='')}")
        except SandboxError as exc:
            if "HTTP 404" in str(exc):
                return
            raise
        time.sleep(0.1)
    raise SandboxError(f"channel {channel_id} still up after {timeout} s")

