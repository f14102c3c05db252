"""CPF / customer-code validation and the keyed identity hash."""

from __future__ import annotations

import pytest

from callproof.config import ConfigError, load_config
from callproof.rights.identity import identity_hash, identity_hash_for, mask_cpf, normalise_cpf, normalise_customer_code

KEY = "k" * 16 + "another-32-char-random-secret!!"
VALID = "52998224725"


@pytest.mark.parametrize("spelling", ["529.982.247-25", "52998224725", " 529 982 247 25 ", "529982247-25"])
def test_cpf_accepts_punctuated_and_plain(spelling):
    assert normalise_cpf(spelling) == VALID


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("   ", "empty"),
    ("529.982.247-24", "check digits"),
    ("5299822472", "11 digits, got 10"),
    ("529982247255", "11 digits, got 12"),
    ("111.111.111-11", "all digits equal"),
    ("000.000.000-00", "all digits equal"),
    ("529a982247-25", "only digits"),
    ("529/982/247-25", "only digits"),
    ("٥٢٩٩٨٢٢٤٧٢٥", "only digits"),  # Arabic-Indic digits are not read as a CPF
    ("1" * 40, "only digits"),
])
def test_cpf_errors_name_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        normalise_cpf(text)


def test_mask_cpf_hides_prefix_and_check_digits():
    assert mask_cpf(VALID) == "***.982.247-**"


def test_customer_code_trimmed_bounded_printable():
    assert normalise_customer_code("  AB-123 ") == "AB-123"
    assert normalise_customer_code("Cliente Açaí 7") == "Cliente Açaí 7"
    with pytest.raises(ValueError, match="empty"):
        normalise_customer_code("  ")
    with pytest.raises(ValueError, match="longer than 64"):
        normalise_customer_code("x" * 65)
    with pytest.raises(ValueError, match="non-printable"):
        normalise_customer_code("AB\x00123")
    with pytest.raises(ValueError, match="non-printable"):
        normalise_customer_code("AB\n123")


def test_identity_hash_is_keyed_normalised_and_domain_separated():
    h = identity_hash(KEY, "cpf", "529.982.247-25")
    assert len(h) == 64 and h == identity_hash(KEY, "cpf", VALID)
    assert VALID not in h
    assert identity_hash("x" * 32 + KEY, "cpf", VALID) != h          # another key, another hash
    assert identity_hash(KEY, "customer_code", VALID) != h           # same text, other kind
    with pytest.raises(ValueError, match="identity kind"):
        identity_hash(KEY, "rg", VALID)
    with pytest.raises(ValueError, match="identity_key"):
        identity_hash("", "cpf", VALID)
    with pytest.raises(ValueError, match="check digits"):
        identity_hash(KEY, "cpf", "52998224724")


def test_identity_hash_for_requires_the_configured_key():
    config = load_config(env={}, require_asterisk_apis=False)
    with pytest.raises(ConfigError, match=r"rights\.identity_key"):
        identity_hash_for(config, "cpf", VALID)
    config = load_config(env={"CALLPROOF_RIGHTS_IDENTITY_KEY": KEY}, require_asterisk_apis=False)
    assert identity_hash_for(config, "cpf", VALID) == identity_hash(KEY, "cpf", VALID)
