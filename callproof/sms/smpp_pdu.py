"""SMPP 3.4 PDUs the SMS backend sends and reads, built and parsed directly.

Only what an ESME sending protocol SMS needs: bind, enquire_link, unbind,
submit_sm (GSM 03.38 or UCS-2, split with a concatenation UDH only when the
text needs more than one part), deliver_sm (delivery receipts) and the
responses.  Kept apart from the session logic (``smpp.py``) so the encoding
rules can be tested without a socket.

Why not a library's PDU classes: building a submit_sm here is a few byte
concatenations (about 3 µs); aiosmpplib's SubmitSm object, its validation and
its codec cost about 100 µs of CPU per message, which capped the sender far
below the rate an SMSC accepts (docs/sms.md, "Throughput").
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

# command ids (SMPP 3.4, 5.1.2.1)
GENERIC_NACK = 0x80000000
BIND_TRANSMITTER, BIND_TRANSMITTER_RESP = 0x00000002, 0x80000002
BIND_TRANSCEIVER, BIND_TRANSCEIVER_RESP = 0x00000009, 0x80000009
SUBMIT_SM, SUBMIT_SM_RESP = 0x00000004, 0x80000004
DELIVER_SM, DELIVER_SM_RESP = 0x00000005, 0x80000005
UNBIND, UNBIND_RESP = 0x00000006, 0x80000006
ENQUIRE_LINK, ENQUIRE_LINK_RESP = 0x00000015, 0x80000015

ESME_ROK = 0x00
ESME_RINVCMDID = 0x03
INTERFACE_VERSION = 0x34
HEADER = struct.Struct(">IIII")  # command_length, command_id, command_status, sequence_number
MAX_PDU = 64 * 1024  # far above any PDU an SMSC sends; a larger length means a broken stream

UDHI = 0x40  # esm_class: the short message starts with a user data header
DC_GSM7, DC_UCS2 = 0x00, 0x08

# GSM 03.38 default alphabet, unpacked (one octet per septet, as SMSCs expect
# on SMPP with data_coding 0); position = code.  0x1B is the escape to the
# extension table.
_GSM_BASIC = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
              "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM_EXTENDED = {"\x0c": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D,
                 "]": 0x3E, "|": 0x40, "€": 0x65}
GSM_CHARS = frozenset(_GSM_BASIC.replace("\x1b", "")) | frozenset(_GSM_EXTENDED)
_GSM_TABLE: dict[int, int | str] = {ord(c): code for code, c in enumerate(_GSM_BASIC) if code != 0x1B}
_GSM_TABLE.update({ord(c): "\x1b" + chr(code) for c, code in _GSM_EXTENDED.items()})

GSM7_SINGLE, GSM7_PART = 160, 153  # septets (an extension character counts two)
UCS2_SINGLE, UCS2_PART = 140, 134  # octets
MAX_PARTS = 255


class PduError(ValueError):
    """A PDU that cannot be built (bad address, text too long) or parsed."""


def pdu(command_id: int, seq: int, body: bytes = b"", status: int = 0) -> bytes:
    return HEADER.pack(16 + len(body), command_id, status, seq) + body


def cstring(value: str, max_octets: int, what: str) -> bytes:
    raw = value.encode("ascii", "strict") if value.isascii() else None
    if raw is None or b"\0" in raw or len(raw) >= max_octets:
        raise PduError(f"{what} must be ASCII, at most {max_octets - 1} characters: {value!r}")
    return raw + b"\0"


def bind_body(system_id: str, password: str, system_type: str) -> bytes:
    return (cstring(system_id, 16, "system_id") + cstring(password, 9, "password")
            + cstring(system_type, 13, "system_type") + bytes([INTERFACE_VERSION, 0, 0]) + b"\0")


def encode_text(text: str) -> tuple[int, list[bytes]]:
    """(data_coding, short_message octets of each part) for ``text``.

    GSM-7 when every character is in the GSM 03.38 alphabet (or its
    extension table), else UCS-2 (UTF-16BE: Portuguese and Spanish accents
    outside GSM, e.g. ç ã õ ê, arrive intact).  One part when it fits (160
    septets / 70 UCS-2 units), else parts of 153 septets / 67 units, each
    behind a 6-octet concatenation UDH added by :func:`submit_sm_parts`; an
    escape sequence or a surrogate pair is never cut in two.
    """
    if not text:
        raise PduError("empty message text")
    if GSM_CHARS.issuperset(text):
        raw = text.translate(_GSM_TABLE).encode("latin-1")
        if len(raw) <= GSM7_SINGLE:
            return DC_GSM7, [raw]
        parts, start = [], 0
        while start < len(raw):
            end = min(start + GSM7_PART, len(raw))
            if end < len(raw) and raw[end - 1] == 0x1B:  # do not split an escape sequence
                end -= 1
            parts.append(raw[start:end])
            start = end
        return DC_GSM7, parts
    raw = text.encode("utf-16-be")
    if len(raw) <= UCS2_SINGLE:
        return DC_UCS2, [raw]
    parts, start = [], 0
    while start < len(raw):
        end = min(start + UCS2_PART, len(raw))
        if end < len(raw) and 0xD8 <= raw[end - 2] <= 0xDB:  # a high surrogate: keep the pair
            end -= 2
        parts.append(raw[start:end])
        start = end
    return DC_UCS2, parts


class SubmitTemplate:
    """The fixed fields of every submit_sm of one bind, encoded once."""

    def __init__(self, source_addr: str, source_ton: int, source_npi: int, registered_delivery: int) -> None:
        self.head = b"\0" + bytes([source_ton, source_npi]) + cstring(source_addr, 21, "source_addr") + b"\x01\x01"
        self.registered_delivery = registered_delivery

    def parts(self, destination: str, text: str, reference: int) -> list[bytes]:
        """submit_sm bodies (no header) for one message; ``reference`` numbers
        the concatenated parts (0..255) when there are several."""
        dest = destination[1:] if destination.startswith("+") else destination
        if not dest.isdigit() or len(dest) > 20:
            raise PduError(f"destination must be digits (E.164), got {destination!r}")
        data_coding, chunks = encode_text(text)
        head = self.head + dest.encode("ascii") + b"\0"
        tail = bytes([self.registered_delivery, 0, data_coding, 0])
        if len(chunks) == 1:
            return [head + b"\0\0\0\0\0" + tail + bytes([len(chunks[0])]) + chunks[0]]
        if len(chunks) > MAX_PARTS:
            raise PduError(f"message text needs {len(chunks)} parts; at most {MAX_PARTS}")
        total, ref = len(chunks), reference & 0xFF
        out = []
        for i, chunk in enumerate(chunks, 1):
            sm = bytes([5, 0, 3, ref, total, i]) + chunk
            out.append(head + bytes([UDHI, 0, 0, 0, 0]) + tail + bytes([len(sm)]) + sm)
        return out


def read_cstring(body: bytes, pos: int) -> tuple[str, int]:
    end = body.find(b"\0", pos)
    if end < 0:
        raise PduError("C-octet string without its terminating NUL")
    return body[pos:end].decode("latin-1"), end + 1


def submit_sm_resp_message_id(body: bytes) -> str:
    if not body:
        return ""  # a refusal may carry no body at all
    return read_cstring(body, 0)[0]


@dataclass(frozen=True)
class DeliverSm:
    esm_class: int
    short_message: bytes
    receipted_message_id: str | None  # TLV 0x001E
    message_state: int | None  # TLV 0x0427

    @property
    def is_receipt(self) -> bool:
        return self.esm_class & 0x3C in (0x04, 0x08, 0x10, 0x20)  # SMSC / SME (manual, user) acks

    def receipt(self) -> tuple[str, str]:
        """(gateway message id, status word) of a delivery receipt: the
        TLVs when present, else the text format of SMPP 3.4 appendix B."""
        text = self.short_message.decode("latin-1")
        fields = dict(_RECEIPT_FIELD.findall(text))
        gw_id = self.receipted_message_id or fields.get("id", "")
        status = fields.get("stat") or _MESSAGE_STATES.get(self.message_state or -1, "UNKNOWN")
        return gw_id, status.upper()


_RECEIPT_FIELD = re.compile(r"(id|stat|err):(\S+)", re.IGNORECASE)
_MESSAGE_STATES = {1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 6: "ACCEPTD",
                   7: "UNKNOWN", 8: "REJECTD"}


def parse_deliver_sm(body: bytes) -> DeliverSm:
    try:
        pos = read_cstring(body, 0)[1]  # service_type
        pos = read_cstring(body, pos + 2)[1]  # source ton, npi, addr
        pos = read_cstring(body, pos + 2)[1]  # destination ton, npi, addr
        esm_class = body[pos]
        pos = read_cstring(body, pos + 3)[1]  # protocol_id, priority_flag, schedule_delivery_time
        pos = read_cstring(body, pos)[1]  # validity_period
        sm_length = body[pos + 4]  # registered_delivery, replace, data_coding, default_msg_id
        pos += 5
        short_message = body[pos:pos + sm_length]
        pos += sm_length
        receipted, state = None, None
        while pos + 4 <= len(body):
            tag, length = struct.unpack_from(">HH", body, pos)
            value = body[pos + 4:pos + 4 + length]
            if tag == 0x001E:
                receipted = value.rstrip(b"\0").decode("latin-1")
            elif tag == 0x0427 and value:
                state = value[0]
            elif tag == 0x0424 and not short_message:  # message_payload instead of short_message
                short_message = value
            pos += 4 + length
    except (IndexError, struct.error) as exc:
        raise PduError(f"truncated deliver_sm: {exc}") from None
    return DeliverSm(esm_class, short_message, receipted or None, state)
