"""Reading a rendered page as its reader does: the text without the markup that keeps
exact values (``<time datetime>``, ``<data value>``) or styles a word."""

from __future__ import annotations

import html as html_lib
import re

_TAG = re.compile(r"<[^>]+>")


def visible(page: str) -> str:
    """The page's text, tags removed and entities decoded (whitespace kept)."""
    return html_lib.unescape(_TAG.sub("", page))
