"""The 'sip' backend against the sandbox's real ARI: the request reaches
Asterisk with our credentials and Asterisk's refusal (the sandbox loads no
PJSIP stack, so there is no MESSAGE-capable endpoint) becomes a permanent,
explained rejection rather than retries."""

from __future__ import annotations

import pytest

from callproof.config import SmsSipConfig
from callproof.sms.sip import SipMessageBackend

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_sendmessage_reaches_asterisk(sandbox):
    backend = SipMessageBackend(SmsSipConfig(to_template="pjsip:sms-trunk/sip:{number}@127.0.0.1"),
                                sandbox.ari_url, sandbox.ari_username, sandbox.ari_password)
    try:
        result = await backend.send({"id": 1, "destination": "+5511912345678", "body": "Protocolo 1"})
        assert not result.accepted and result.permanent, result
        assert result.reason.startswith(("ARI 404", "ARI 400")), result.reason
        bad = SipMessageBackend(SmsSipConfig(), sandbox.ari_url, sandbox.ari_username, "wrong-password-x")
        denied = await bad.send({"id": 2, "destination": "+5511912345678", "body": "x"})
        await bad.close()
        assert denied.reason.startswith("ARI 401") and denied.permanent
    finally:
        await backend.close()
