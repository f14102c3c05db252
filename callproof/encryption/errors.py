"""What can be wrong with an age file or key, each saying what and where."""

from __future__ import annotations


class AgeError(ValueError):
    """An age file or key that cannot be used; the message names what was wrong."""


class HeaderError(AgeError):
    """The header is malformed, or its MAC does not match (it was altered)."""


class NoIdentityError(AgeError):
    """None of the given identities opens any of the file's recipient stanzas."""


class PayloadError(AgeError):
    """A payload chunk failed authentication, or the file was truncated or extended."""
