"""Tests for callproof.naming: hostile caller IDs must never shape a path."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import PurePosixPath
from zoneinfo import ZoneInfo

import pytest

from callproof.naming import (
    CALLER_PART_RE,
    recording_path,
    recording_relpath,
    safe_caller_part,
)

SAFE = re.compile(r"^[0-9]{1,32}$|^anonymous$")
PROTOCOL = "20260000000000042"
SP = ZoneInfo("America/Sao_Paulo")
T0 = datetime(2026, 3, 5, 14, 7, 9, tzinfo=UTC)  # 11:07:09 in São Paulo


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("5511912345678", "5511912345678"),
        ("+55 11 91234-5678", "5511912345678"),
        ("(11) 91234-5678", "11912345678"),
        ("+", "anonymous"),
        ("../../etc/passwd", "anonymous"),
        ("/", "anonymous"),
        (";rm -rf /", "anonymous"),
        ("$(reboot)", "anonymous"),
        ("`id`", "anonymous"),
        ("../../1234/../", "1234"),
        ("12;rm -rf /34", "1234"),
        ("$(echo 99)", "99"),
        ("`sleep 5`", "5"),
        ("11 9 1234 5678", "11912345678"),
        ("   ", "anonymous"),
        ("\t\n", "anonymous"),
        ("٣", "anonymous"),  # Arabic-Indic three: not an ASCII digit
        ("١٢٣٤٥", "anonymous"),
        ("12٣4", "124"),
        ("１２３", "anonymous"),  # full-width digits
        ("²³", "anonymous"),  # superscripts (str.isdigit() is True for these)
        ("123\n456", "123456"),
        ("123\x00456", "123456"),
        ("123\r\nX-Header: evil", "123"),
        ("anonymous", "anonymous"),
        ("Anonymous", "anonymous"),
        (" ANONYMOUS ", "anonymous"),
        ("restricted", "anonymous"),
        ("unknown", "anonymous"),
        ("withheld", "anonymous"),
        ("Private", "anonymous"),
        ("unavailable", "anonymous"),
        ("", "anonymous"),
        (None, "anonymous"),
        ("sip:1001@10.0.0.1", "100110001"),
        ("anonymous1", "1"),
    ],
)
def test_safe_caller_part_table(raw, expected):
    got = safe_caller_part(raw)
    assert got == expected
    assert SAFE.match(got) and CALLER_PART_RE.fullmatch(got)


def test_long_input_truncated():
    assert safe_caller_part("7" * 500) == "7" * 32
    assert safe_caller_part("x" * 500) == "anonymous"
    assert safe_caller_part("1234567890" * 50, max_len=15) == "123456789012345"
    assert safe_caller_part("a1" * 250) == "1" * 32
    assert safe_caller_part("9" * 1_000_000) == "9" * 32


@pytest.mark.parametrize("bad", [0, 33, -1, True, 3.0, "32"])
def test_max_len_bounds(bad):
    with pytest.raises(ValueError):
        safe_caller_part("123", max_len=bad)


def test_non_string_rejected():
    with pytest.raises(TypeError):
        safe_caller_part(b"123")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        safe_caller_part(123)  # type: ignore[arg-type]


def test_recording_relpath_layout():
    rel = recording_relpath(PROTOCOL, "+55 (11) 91234-5678", T0, tz=SP)
    assert rel == PurePosixPath("2026/03/05/20260000000000042_5511912345678_20260305-110709.wav")
    assert isinstance(rel, PurePosixPath)


def test_recording_relpath_uses_deployment_timezone():
    # 01:30 UTC on 1 Jan is still 31 Dec in São Paulo (UTC-3)
    t = datetime(2027, 1, 1, 1, 30, 0, tzinfo=UTC)
    assert str(recording_relpath(PROTOCOL, None, t, tz=SP)) == (
        "2026/12/31/20260000000000042_anonymous_20261231-223000.wav"
    )
    assert str(recording_relpath(PROTOCOL, None, t, tz=ZoneInfo("UTC"))) == (
        "2027/01/01/20260000000000042_anonymous_20270101-013000.wav"
    )
    # same instant expressed in another offset gives the same path
    other = t.astimezone(timezone(timedelta(hours=9)))
    assert recording_relpath(PROTOCOL, None, other, tz=SP) == recording_relpath(PROTOCOL, None, t, tz=SP)


def test_recording_relpath_hostile_caller():
    rel = recording_relpath(PROTOCOL, "../../etc/passwd", T0, tz=SP)
    assert rel.name == "20260000000000042_anonymous_20260305-110709.wav"
    assert len(rel.parts) == 4 and ".." not in rel.parts


@pytest.mark.parametrize(
    "protocol",
    ["2026000000000004", "202600000000000420", "2026000000000004a", "../0000000000000",
     "٢٠٢٦0000000000042", "20260000000000042\n", " 20260000000000042", "", None, 20260000000000042],
)
def test_recording_relpath_rejects_bad_protocol(protocol):
    with pytest.raises(ValueError):
        recording_relpath(protocol, "123", T0, tz=SP)


def test_recording_relpath_requires_aware_datetime():
    with pytest.raises(ValueError, match="timezone-aware"):
        recording_relpath(PROTOCOL, "123", datetime(2026, 3, 5, 14, 7, 9), tz=SP)  # noqa: DTZ001 -- naive on purpose
    with pytest.raises(TypeError):
        recording_relpath(PROTOCOL, "123", T0, tz="America/Sao_Paulo")  # type: ignore[arg-type]


def test_recording_path_inside_root(tmp_path):
    rel = recording_relpath(PROTOCOL, "123", T0, tz=SP)
    path = recording_path(tmp_path, rel)
    assert path == tmp_path.resolve() / "2026" / "03" / "05" / rel.name
    assert path.is_relative_to(tmp_path.resolve())
    assert recording_path(tmp_path, str(rel)) == path


@pytest.mark.parametrize(
    "rel",
    ["../x.wav", "2026/../../x.wav", "/etc/passwd", "/", "", ".", "a/./../..", "2026/03/../../../x", "a\x00b"],
)
def test_recording_path_rejects_escapes(tmp_path, rel):
    with pytest.raises(ValueError):
        recording_path(tmp_path / "root", rel)


def test_recording_path_rejects_symlink_escape(tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "2026").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="escapes"):
        recording_path(root, "2026/03/05/x.wav")


def test_recording_path_root_may_be_a_symlink(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert recording_path(link, "2026/x.wav") == real.resolve() / "2026" / "x.wav"


ALPHABET = (
    [chr(c) for c in range(0, 128)]  # all ASCII incl. control chars, NUL, / . \ $ ` ; etc.
    + list("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹०१२३४५६७८९０１２３４５６７８９²³¹½")  # non-ASCII digits
    + list("\u202e\u200b\ufeff\u2028éñçã€/∕⁄／．")  # RTL override, zero-width, look-alike slashes/dots
    + ["..", "../", "/", "+", "anonymous", "$(", "`", "\n", "\x00"]
)


def test_fuzz_random_caller_ids(tmp_path):
    rng = random.Random(20260305)
    root = tmp_path / "recordings"
    root.mkdir()
    base = root.resolve()
    for i in range(5000):
        n = rng.choice((0, 1, 2, 5, 10, 20, 40, 100, 600))
        raw = "".join(rng.choice(ALPHABET) for _ in range(n))
        if rng.random() < 0.1:
            raw = None if rng.random() < 0.2 else rng.choice(["anonymous", "RESTRICTED", " unknown ", "+"]) + raw
        part = safe_caller_part(raw)
        assert SAFE.match(part), (i, raw, part)
        assert part.isascii()
        started = datetime.fromtimestamp(rng.randrange(0, 4_102_444_800), tz=UTC)
        rel = recording_relpath(PROTOCOL, raw, started, tz=SP)
        assert len(rel.parts) == 4, (i, raw, rel)
        assert re.fullmatch(r"[0-9]{4}/[0-9]{2}/[0-9]{2}/[0-9]{17}_([0-9]{1,32}|anonymous)_[0-9]{8}-[0-9]{6}\.wav",
                            str(rel)), (i, raw, rel)
        assert rel.name.split("_")[1] == part
        path = recording_path(root, rel)
        assert path.is_relative_to(base) and path != base, (i, raw, path)
        assert path.parent.parent.parent.parent == base
