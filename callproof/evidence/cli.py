"""CLI: ``callproof evidence keygen | public-key | rotate`` (docs/evidence.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ..config import Config
from .keys import KeyFileError, Signer, generate_key_file, public_pem

Load = Callable[[argparse.Namespace], Config]


def _key_path(args: argparse.Namespace, load: Load) -> Path | None:
    if getattr(args, "key", None):
        return Path(args.key)
    return load(args).evidence.signing_key


def cmd_keygen(args: argparse.Namespace, load: Load) -> int:
    path = _key_path(args, load)
    if path is None:
        print("callproof: give --key PATH or set [evidence] signing_key", file=sys.stderr)
        return 2
    try:
        fp = generate_key_file(path)
    except KeyFileError as exc:
        print(f"callproof: {exc}", file=sys.stderr)
        return 1
    print(f"signing key written to {path} (mode 0600)\nfingerprint {fp}")
    return 0


def cmd_public_key(args: argparse.Namespace, load: Load) -> int:
    path = _key_path(args, load)
    if path is None:
        print("callproof: give --key PATH or set [evidence] signing_key", file=sys.stderr)
        return 2
    try:
        signer = Signer.load(path)
    except KeyFileError as exc:
        print(f"callproof: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(public_pem(signer.public_key))
    print(f"fingerprint {signer.fingerprint}")
    return 0


def cmd_rotate(args: argparse.Namespace, load: Load) -> int:
    """Keep the current public key in ``trusted_keys``, retire the private key, make a new one."""
    config = load(args)
    path, folder = config.evidence.signing_key, config.evidence.trusted_keys
    if path is None or folder is None:
        print("callproof: rotation needs [evidence] signing_key and trusted_keys", file=sys.stderr)
        return 2
    try:
        old = Signer.load(path)
        folder.mkdir(mode=0o755, parents=True, exist_ok=True)
        kept = folder / f"{old.fingerprint}.pem"
        kept.write_text(public_pem(old.public_key), encoding="ascii")
        retired = path.with_name(f"{path.name}.{old.fingerprint[:16]}.retired")
        path.rename(retired)
        new_fp = generate_key_file(path)
    except (KeyFileError, OSError) as exc:
        print(f"callproof: {exc}", file=sys.stderr)
        return 1
    print(f"old key {old.fingerprint}: public key kept in {kept}, private key moved to {retired} "
          f"(destroy it once no process uses it)\nnew key {new_fp} in {path}")
    return 0


def add_evidence_commands(sub, load: Load) -> None:
    ev = sub.add_parser("evidence", help="signed evidence: keys, records, packages").add_subparsers(
        dest="sub", required=True)
    kg = ev.add_parser("keygen", help="create the signing key (Ed25519, PEM, mode 0600)")
    kg.add_argument("--key", help="where (default: [evidence] signing_key)")
    kg.set_defaults(func=lambda args: cmd_keygen(args, load))
    pk = ev.add_parser("public-key", help="print the signing key's public key (PEM) and fingerprint")
    pk.add_argument("--key", help="private key file (default: [evidence] signing_key)")
    pk.set_defaults(func=lambda args: cmd_public_key(args, load))
    ev.add_parser("rotate", help="new signing key; the old public key stays trusted").set_defaults(
        func=lambda args: cmd_rotate(args, load))


