"""Files encrypted at rest beside their plaintext: ``<name>.age`` next to ``<name>``.

Used by the recordings' finalisation (callproof/callflow/recording_files.py), the migration
of plaintext recordings (``callproof recording encrypt``) and the exports and history
documents (callproof/rights/).  An age file is created only where nothing is (O_CREAT |
O_EXCL, never through a symbolic link: O_NOFOLLOW), with mode 0640 whatever the umask,
fsynced with its directory before the plaintext may be removed; a half-written one is
removed, so a crash leaves either the plaintext alone or both (the migration then checks
the age file against the plaintext before it removes anything).

The process's keyring (``[encryption]``) is registered per database like the evidence
signer (callproof/evidence/records.py): one process may hold several configurations.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, BinaryIO

from callproof.logs import event

from .keys import Recipient
from .stream import Digests, encrypt

log = logging.getLogger("callproof.encryption")

AGE_SUFFIX = ".age"
AGE_FILE_MODE = 0o640
#: the first line of every age v1 file (C2SP age): how a file is told encrypted by its bytes
AGE_MAGIC = b"age-encryption.org/v1\n"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


#: database -> the PublicKeyring of its configuration, or the reason it could not be loaded
_by_database: dict[str, Any] = {}


def use_keyring(keyring: Any, database: str | os.PathLike[str]) -> None:
    """The public keyring finalisation encrypts with for ``database`` (None: encryption off;
    a string: encryption on but the keyring could not be loaded, the reason)."""
    _by_database[os.fspath(database)] = keyring


def keyring_for(database: str | os.PathLike[str]) -> Any:
    return _by_database.get(os.fspath(database))


def configure(config: Any, *, strict: bool = True) -> Any:
    """Load ``[encryption]``'s public keyring for this process.  ``strict`` (``callproof run``,
    ``callproof fastagi``): a keyring that cannot be read raises KeyringError, naming it,
    before any call is taken.  Not strict (the classic AGI script, where a call must go on):
    logged, and this process's recordings stay plaintext with ``encryption pending``."""
    from .keyring import KeyringError, PublicKeyring

    try:
        keyring: Any = PublicKeyring.load(config)
    except KeyringError as exc:
        if strict:
            raise
        event(log, "encryption.keyring_unusable", logging.ERROR, error=str(exc))
        keyring = f"the public keyring cannot be read: {exc}"
    use_keyring(keyring, config.storage.target)
    return keyring


def is_age_file(fd: int) -> bool:
    """Whether the file open at ``fd`` starts like an age v1 file (its offset is kept)."""
    return os.pread(fd, len(AGE_MAGIC), 0) == AGE_MAGIC


def fsync_dir(dir_fd: int) -> None:
    os.fsync(dir_fd)


def encrypt_beside(src: BinaryIO, dir_fd: int, name: str, recipients: Sequence[Recipient]) -> Digests:
    """Encrypt ``src`` (from where it stands to its end) into ``name`` + ``.age`` in the
    directory ``dir_fd``: created new (FileExistsError when something is there), 0640,
    fsynced with its directory.  On any failure the partial file is removed."""
    target = name + AGE_SUFFIX
    fd = os.open(target, _CREATE, AGE_FILE_MODE, dir_fd=dir_fd)
    try:
        os.fchmod(fd, AGE_FILE_MODE)  # the umask may have taken the group's read
        with open(fd, "wb", buffering=1024 * 1024, closefd=False) as out:
            digests = encrypt(src, out, recipients)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(target, dir_fd=dir_fd)
        except OSError:
            pass
        raise
    os.close(fd)
    fsync_dir(dir_fd)
    return digests


def remove_plaintext(dir_fd: int, name: str) -> None:
    """Unlink the plaintext ``name`` (its age file is in place and recorded); fsync the directory."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    fsync_dir(dir_fd)


def open_dir(path: str | os.PathLike[str]) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))


def hold_recipients(config: Any) -> Any:
    """The newest hold key's public half (``public_keys_dir``): what exports' and history
    documents' at-rest copies are encrypted to.  KeyringError naming what is missing."""
    from .keyring import HOLD_KEY_ID, KeyringError, PublicKeyring, RecipientSet

    keyring = PublicKeyring.from_dir(config.encryption.public_keys_dir)
    holds = sorted((int(m["number"]), k) for k in keyring.key_ids() if (m := HOLD_KEY_ID.fullmatch(k)))
    if not holds:
        raise KeyringError(f"{config.encryption.public_keys_dir}: no hold key (hold-1.pub); run 'callproof keys "
                           "init' or 'callproof keys export-public' on the key host")
    key_id = holds[-1][1]
    return RecipientSet((keyring.recipient(key_id),), (key_id,))


def encrypt_bytes(data: bytes, recipients: Sequence[Recipient]) -> bytes:
    """A small document (a history) as an age file's bytes."""
    import io

    out = io.BytesIO()
    encrypt(io.BytesIO(data), out, recipients)
    return out.getvalue()
