"""A keyring in memory with the keyring's interface (callproof/encryption/keyring.py), for the
pipeline's unit tests: what matters there is which recipients a file is encrypted to and
who can open it, not how keys are kept on disk (tests/unit/encryption/test_keyring.py)."""

from __future__ import annotations

from datetime import datetime

from callproof.encryption import Identity
from callproof.encryption.keyring import KeyringError, RecipientSet


class FakeKeyring:
    """Period keys made on demand (or refused, for ``missing`` classes) and a hold key."""

    def __init__(self, missing: frozenset[str] = frozenset()) -> None:
        self.periods: dict[str, Identity] = {}
        self.hold = Identity.generate()
        self.missing = missing

    def recipients_for(self, retention_class: str, expires_at: datetime) -> RecipientSet:
        key_id = f"{retention_class or 'default'}-{expires_at:%Y-%m}"
        if retention_class in self.missing:
            raise KeyringError(f"no period key {key_id}: run 'callproof keys rotate'")
        identity = self.periods.setdefault(key_id, Identity.generate())
        return RecipientSet((identity.recipient,), (key_id,))

    def identities(self) -> list[Identity]:
        return [*self.periods.values(), self.hold]

    def hold_recipients(self) -> RecipientSet:
        return RecipientSet((self.hold.recipient,), ("hold",))
