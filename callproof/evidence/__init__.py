"""Evidence that holds against its own operators (docs/evidence.md).

:mod:`.keys` (the Ed25519 signing key, public keys and fingerprints), :mod:`.records` (each
call's signed evidence record), :mod:`.checkpoints` (signed checkpoints of the audit chain's
head, kept outside the database), :mod:`.tsa` (RFC 3161 timestamps through ``openssl ts``)
and :mod:`.cli` (``callproof evidence ...``, ``callproof audit ...``).
"""
