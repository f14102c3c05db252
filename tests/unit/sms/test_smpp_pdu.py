"""SMPP PDUs built and read by callproof.sms.smpp_pdu: the encoding rules a
handset depends on (GSM-7 vs UCS-2, parts and their UDH), checked against an
independent GSM 03.38 decoder (aiosmpplib's)."""

from __future__ import annotations

import struct

import pytest
from aiosmpplib import GSM7BitCodec

from callproof.sms import smpp_pdu as P


def gsm_decode(raw: bytes) -> str:
    return GSM7BitCodec().decode(raw)[0]


def fields(body: bytes) -> dict:
    """submit_sm body -> the fields the tests look at."""
    out, pos = {}, 0

    def cstr():
        nonlocal pos
        end = body.index(b"\0", pos)
        value, pos = body[pos:end].decode(), end + 1
        return value

    out["service_type"] = cstr()
    out["source_ton"], out["source_npi"] = body[pos], body[pos + 1]
    pos += 2
    out["source"] = cstr()
    out["dest_ton"], out["dest_npi"] = body[pos], body[pos + 1]
    pos += 2
    out["destination"] = cstr()
    out["esm_class"] = body[pos]
    pos += 3
    cstr(), cstr()
    out["registered_delivery"], out["data_coding"] = body[pos], body[pos + 2]
    length = body[pos + 4]
    out["short_message"] = body[pos + 5:pos + 5 + length]
    assert pos + 5 + length == len(body)
    return out


@pytest.fixture
def template():
    return P.SubmitTemplate("ACME", 5, 0, 1)


def test_plain_text_is_one_gsm7_part(template):
    text = "ACME: protocolo 20260000000000001 em 10/03/2026 14:00 @ $5_"
    [body] = template.parts("+5511912345678", text, 1)
    f = fields(body)
    assert (f["source"], f["source_ton"], f["destination"], f["dest_ton"], f["dest_npi"]) == (
        "ACME", 5, "5511912345678", 1, 1)
    assert f["esm_class"] == 0 and f["data_coding"] == 0 and f["registered_delivery"] == 1
    assert gsm_decode(f["short_message"]) == text
    assert f["short_message"][text.index("@")] == 0x00  # GSM 03.38, not ASCII


def test_extension_characters_are_escaped():
    dc, [raw] = P.encode_text("a€[b]")
    assert dc == P.DC_GSM7 and raw == b"a\x1b\x65\x1b\x3cb\x1b\x3e" and gsm_decode(raw) == "a€[b]"


def test_accents_outside_gsm_choose_ucs2(template):
    text = "ACME: protocolo às 14h, informações: ç ã õ ê."
    [body] = template.parts("+5511912345678", text, 1)
    f = fields(body)
    assert f["data_coding"] == 8 and f["short_message"].decode("utf-16-be") == text


def test_160_septets_fit_one_part_161_need_two_with_udh(template):
    assert len(template.parts("+5511912345678", "x" * 160, 1)) == 1
    assert len(template.parts("+5511912345678", "x" * 159 + "€", 1)) == 2  # € counts two septets
    bodies = template.parts("+5511912345678", "y" * 161, 7)
    parts = [fields(b) for b in bodies]
    assert [p["esm_class"] for p in parts] == [0x40, 0x40]
    assert [p["short_message"][:6] for p in parts] == [bytes([5, 0, 3, 7, 2, 1]), bytes([5, 0, 3, 7, 2, 2])]
    assert "".join(gsm_decode(p["short_message"][6:]) for p in parts) == "y" * 161
    assert len(parts[0]["short_message"]) == 6 + 153


def test_a_split_never_cuts_an_escape_or_a_surrogate_pair():
    text = "z" * 152 + "€" + "z" * 10
    _, chunks = P.encode_text(text)
    assert chunks[0][-1] != 0x1B and "".join(gsm_decode(c) for c in chunks) == text
    emoji = "ç" + "😀" * 40  # UCS-2 with surrogate pairs
    dc, chunks = P.encode_text(emoji)
    assert dc == P.DC_UCS2 and all(len(c) <= 134 for c in chunks)
    assert "".join(c.decode("utf-16-be") for c in chunks) == emoji  # each part decodes alone


def test_bad_destination_or_text_is_refused(template):
    for dest in ("+55 11 9", "abc", "+" + "1" * 21):
        with pytest.raises(P.PduError):
            template.parts(dest, "x", 1)
    with pytest.raises(P.PduError):
        template.parts("+5511912345678", "", 1)
    with pytest.raises(P.PduError):
        P.SubmitTemplate("A" * 21, 5, 0, 1)
    with pytest.raises(P.PduError):
        P.bind_body("system-id-too-long", "pw", "")


def deliver_sm(short_message: bytes, esm_class: int = 0x04, tlvs: bytes = b"") -> bytes:
    return (b"\0" + b"\1\1" + b"5511912345678\0" + b"\5\0" + b"ACME\0" + bytes([esm_class, 0, 0])
            + b"\0\0" + bytes([0, 0, 0, 0, len(short_message)]) + short_message + tlvs)


def test_receipt_text_and_tlvs():
    text = b"id:perl000007 sub:001 dlvrd:001 submit date:2603101400 done date:2603101400 stat:DELIVRD err:000 text:"
    dsm = P.parse_deliver_sm(deliver_sm(text))
    assert dsm.is_receipt and dsm.receipt() == ("perl000007", "DELIVRD")
    tlvs = struct.pack(">HH", 0x001E, 7) + b"abc123\0" + struct.pack(">HHB", 0x0427, 1, 5)
    dsm = P.parse_deliver_sm(deliver_sm(b"", tlvs=tlvs))
    assert dsm.receipt() == ("abc123", "UNDELIV")
    assert not P.parse_deliver_sm(deliver_sm(b"hello", esm_class=0)).is_receipt  # a mobile-originated SMS
    with pytest.raises(P.PduError):
        P.parse_deliver_sm(b"\0\1")
