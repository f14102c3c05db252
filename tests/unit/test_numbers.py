"""Tests for callproof.numbers.normalise_caller."""

from __future__ import annotations

import random

import pytest

from callproof.numbers import NormalisedNumber, normalise_caller

MOBILE_SP = "+5511912345678"


@pytest.mark.parametrize(
    ("raw", "region", "e164", "sendable", "reason"),
    [
        # Brazilian spellings of the same mobile number
        ("+55 11 91234-5678", "BR", MOBILE_SP, True, None),
        ("+5511912345678", "BR", MOBILE_SP, True, None),
        ("5511912345678", "BR", MOBILE_SP, True, None),
        ("011912345678", "BR", MOBILE_SP, True, None),  # trunk prefix 0 + area
        ("0xx11 91234-5678", "BR", MOBILE_SP, True, None),
        ("015 11 91234-5678", "BR", MOBILE_SP, True, None),  # 0 + carrier code 15 + area
        ("(11) 91234-5678", "BR", MOBILE_SP, True, None),
        ("11912345678", "BR", MOBILE_SP, True, None),
        ("11 9.1234.5678", "BR", MOBILE_SP, True, None),
        ("  +55 (11) 91234-5678\t", "BR", MOBILE_SP, True, None),
        # no area code: not a usable number
        ("912345678", "BR", None, False, "invalid"),
        ("91234-5678", "BR", None, False, "invalid"),
        # fixed lines: valid, recorded, but no SMS
        ("(11) 3333-4444", "BR", "+551133334444", False, "fixed_line"),
        ("+55 21 2222-3333", "BR", "+552122223333", False, "fixed_line"),
        ("01133334444", "BR", "+551133334444", False, "fixed_line"),
        # other non-SMS types
        ("0800 123 4567", "BR", "+558001234567", False, "toll_free"),
        # Spain
        ("+34 612 345 678", "BR", "+34612345678", True, None),
        ("612 345 678", "ES", "+34612345678", True, None),
        ("+34 912 345 678", "BR", "+34912345678", False, "fixed_line"),
        # too short
        ("12345", "BR", None, False, "too_short"),
        ("+55 11", "BR", None, False, "too_short"),
        ("1", "BR", None, False, "too_short"),
        # withheld
        (None, "BR", None, False, "withheld"),
        ("", "BR", None, False, "withheld"),
        ("   ", "BR", None, False, "withheld"),
        ("anonymous", "BR", None, False, "withheld"),
        ("Anonymous", "BR", None, False, "withheld"),
        ("restricted", "BR", None, False, "withheld"),
        ("unknown", "BR", None, False, "withheld"),
        ("withheld", "BR", None, False, "withheld"),
        ("Private", "BR", None, False, "withheld"),
        # garbage / hostile
        ("abc", "BR", None, False, "invalid"),
        ("+", "BR", None, False, "invalid"),
        ("---", "BR", None, False, "invalid"),
        ("11912345678;rm -rf /", "BR", None, False, "invalid"),
        ("$(reboot)", "BR", None, False, "invalid"),
        ("../../etc/passwd", "BR", None, False, "invalid"),
        ("1191234567\n8", "BR", None, False, "invalid"),
        ("11912345678\x00", "BR", None, False, "invalid"),
        ("١١٩١٢٣٤٥٦٧٨", "BR", None, False, "invalid"),  # Arabic-Indic digits are not accepted
        ("1-800-FLOWERS", "US", None, False, "invalid"),  # no vanity letters
        ("sip:+5511912345678@host", "BR", None, False, "invalid"),
        ("5" * 500, "BR", None, False, "invalid"),
        ("++5511912345678", "BR", None, False, "invalid"),
        ("11+912345678", "BR", None, False, "invalid"),
        ("+999 1234 5678", "BR", None, False, "invalid"),  # no such country code
        ("+55 11 91234-56789012", "BR", None, False, "invalid"),  # too long
        ("11912345678", "XX", None, False, "invalid"),  # no region to read it in
    ],
)
def test_normalise_table(raw, region, e164, sendable, reason):
    assert normalise_caller(raw, region) == NormalisedNumber(e164, sendable, reason)


def test_default_region_is_brazil():
    assert normalise_caller("(11) 91234-5678") == NormalisedNumber(MOBILE_SP, True, None)


def test_region_case_insensitive():
    assert normalise_caller("612345678", "es").e164 == "+34612345678"


def test_result_is_frozen():
    n = normalise_caller(MOBILE_SP)
    with pytest.raises(AttributeError):
        n.sendable = False  # type: ignore[misc]
    assert (n.e164, n.sendable, n.reason) == (MOBILE_SP, True, None)


def test_non_string_rejected():
    with pytest.raises(TypeError):
        normalise_caller(5511912345678)  # type: ignore[arg-type]


def test_invariants_on_random_input():
    rng = random.Random(7)
    alphabet = "0123456789+-() ./xX;$`\n\x00a٣"
    for _ in range(2000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 25)))
        n = normalise_caller(raw)
        assert n.sendable == (n.reason is None)
        if n.e164 is not None:
            assert n.e164.startswith("+") and n.e164[1:].isascii() and n.e164[1:].isdigit()
            assert 8 <= len(n.e164) <= 16
        else:
            assert n.reason in {"withheld", "invalid", "too_short"}
