"""POST /api/requests and the one-time code: the attack of finding 6 over HTTP (protocol + the
call's phone number + deliver_to an attacker's address) and the way back for the real caller."""

from __future__ import annotations

import pytest

from .test_app import API_TOKEN, CALLER, make_site

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
async def api_site(tmp_path):
    s = await make_site(tmp_path, api_token=API_TOKEN)
    yield s
    await s.client.close()
    s.pool.close()
    s.conn.close()


async def test_the_call_number_with_an_attackers_address_is_not_received(api_site):
    protocol = api_site.call["protocol"]
    resp = await api_site.client.post("/api/requests", headers=AUTH, json={
        "protocol": protocol, "phone": CALLER, "deliver_to": "email:attacker@evil.example"})
    assert resp.status == 201
    body = await resp.json()
    assert (body["state"], body["identity"]) == ("needs_identity_check", "code_sent")  # before: 'received'
    [(destination, sms)] = api_site.conn.execute(
        "SELECT destination, body FROM sms_outbox WHERE protocol = ?", (body["request_protocol"],)).fetchall()
    assert destination == CALLER  # the code goes to the call's phone, not to the requester
    code = next(w for w in sms.split() if w.isdigit() and len(w) == 6)

    url = f"/api/requests/{body['request_protocol']}/code"
    wrong = await api_site.client.post(url, headers={**AUTH, "Accept-Language": "es"},
                                       json={"code": f"{(int(code) + 1) % 10**6:06d}"})
    assert wrong.status == 400 and (await wrong.json())["outcome"] == "wrong"
    assert (await wrong.json())["message"] == "El código es incorrecto."  # the outcome stays the machine's word
    assert (await api_site.client.post(url, json={"code": code})).status == 401
    assert (await api_site.client.post(url, headers=AUTH, json={"code": 123456})).status == 400
    ok = await api_site.client.post(url, headers=AUTH, json={"code": code})
    assert ok.status == 200 and await ok.json() == {
        "outcome": "verified", "message": "The code is right: the request is accepted.", "state": "received",
        "tries_left": 4}
    again = await api_site.client.post(url, headers=AUTH, json={"code": code})
    assert again.status == 409
    missing = await api_site.client.post("/api/requests/20269999999999999/code", headers=AUTH, json={"code": code})
    assert missing.status == 404


async def test_the_call_number_alone_is_accepted_for_its_own_number(api_site):
    resp = await api_site.client.post("/api/requests", headers=AUTH, json={
        "protocol": api_site.call["protocol"], "phone": CALLER})
    body = await resp.json()
    assert (body["state"], body["identity"]) == ("received", "accepted")
    basis = api_site.conn.execute("SELECT identity_basis FROM recording_requests").fetchone()[0]
    assert basis == "caller_number"
