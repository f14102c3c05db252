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


def _actor(args: argparse.Namespace) -> str:
    from ..actors import cli_actor

    return cli_actor(getattr(args, "by", None))


def _trusted(config: Config):
    from .keys import trusted_from_config
    try:
        return trusted_from_config(config)
    except KeyFileError as exc:
        print(f"callproof: config key 'evidence.signing_key': {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_recording_verify(args: argparse.Namespace, load: Load) -> int:
    config = load(args)
    from callproof.storage import open_sync, utc_now

    from ..integrity import RESULTS, verify_recordings

    if args.protocol and not (len(args.protocol) == 17 and args.protocol.isdigit()):
        print("callproof: PROTOCOL must be 17 digits", file=sys.stderr)
        return 2
    trusted = _trusted(config)
    identities = None
    if getattr(args, "plaintext", False):  # decrypt the encrypted ones too: the private keyring
        from callproof.encryption.keyring import KeyringError, PrivateKeyring
        try:
            identities = PrivateKeyring.load(config).identities()
        except KeyringError as exc:
            print(f"callproof: --plaintext needs the private keyring ([encryption] private_keys_dir): {exc}",
                  file=sys.stderr)
            return 2
    with open_sync(config) as db:
        counts = dict.fromkeys(RESULTS, 0)
        late = 0
        from callproof.store import node_name
        for item in verify_recordings(db, config.recording.root, args.protocol, trusted=trusted,
                                      identities=identities, store=config.recording.store, node=node_name(config)):
            counts[item["result"]] += 1
            late += item["result"] == "ok" and item.get("detail", "").startswith("SEALED LATE")
            if item["result"] != "ok" or args.verbose or item.get("detail"):
                print(f"{item['result'].upper() if item['result'] != 'ok' else 'ok':>10}  recording {item['id']}"
                      f"  {item['protocol']}  {item['path']}  {item.get('detail', '')}")
        db.audit.append("recording.verified", _actor(args), utc_now(), protocol=args.protocol,
                        details={**counts, "sealed_late": late, "via": "cli", "plaintext": identities is not None})
    total = sum(counts.values())
    if args.protocol and total == 0:
        print(f"callproof: no finalised recording for protocol {args.protocol}", file=sys.stderr)
        return 1
    signed = f"signed, {late} sealed late" if late else "signed"
    print(f"recordings verified: {total}; ok {counts['ok']} ({signed}), MISMATCH {counts['mismatch']}, "
          f"FORGED record {counts['forged']}, UNSIGNED {counts['unsigned']}, missing {counts['missing']}, "
          f"unreadable {counts['unreadable']}" + (f", on another node {counts['elsewhere']}"
                                                   if counts["elsewhere"] else ""))
    if counts["unsigned"]:
        print(f"callproof: {counts['unsigned']} recording(s) have no signed evidence record: their files match "
              "only the editable recordings.sha256 column, which proves nothing (docs/evidence.md)", file=sys.stderr)
    bad = total - counts["ok"] - counts["elsewhere"] - (counts["unsigned"] if args.allow_unsigned else 0)
    return 0 if bad == 0 else 1


def cmd_audit_verify(args: argparse.Namespace, load: Load) -> int:
    config = load(args)
    from callproof.storage import open_sync

    from .checkpoints import read_lines, verify

    trusted = _trusted(config)
    path = config.audit.checkpoint_file
    lines: list = []
    if path is not None:
        try:
            lines = read_lines(path)
        except FileNotFoundError:
            lines = []
        except OSError as exc:
            print(f"callproof: cannot read the checkpoint file {path}: {exc.strerror}", file=sys.stderr)
            return 2
    with open_sync(config) as db:
        report = verify(db, lines, trusted, config.audit.tsa_ca_file)
    n, h = report.head if report.head else (0, "-")
    if not report.intact:
        print(f"audit log BROKEN: {report.entries} entries, head {n} {h}")
        for problem in report.problems:
            print(f"  {problem}")
        return 1
    print(f"audit log intact: {report.entries} entries, head {h}")
    if path is None:
        print("NOT ANCHORED: no [audit] checkpoint_file; a rewrite of the whole chain or the removal of its newest "
              "entries would not be detected (docs/evidence.md)")
    elif report.proven_id == 0:
        print(f"NOT ANCHORED yet: no checkpoint in {path} covers an entry (run 'callproof audit checkpoint')")
    else:
        stamp = f", timestamped {report.proven_tsa_time}" if report.proven_tsa_time else ""
        print(f"proven by {report.checkpoints} checkpoint(s): entries 1..{report.proven_id} match the checkpoint "
              f"of {report.proven_at}{stamp}; {report.entries - report.proven_id} newer entries not yet anchored")
    return 0


def cmd_audit_checkpoint(args: argparse.Namespace, load: Load) -> int:
    config = load(args)
    from callproof.storage import open_sync, utc_now
    from callproof.storage.timefmt import to_db_time

    from .checkpoints import write_checkpoint

    if config.audit.checkpoint_file is None:
        print("callproof: config key 'audit.checkpoint_file': required for this command", file=sys.stderr)
        return 2
    try:
        signer = Signer.load(config.evidence.signing_key) if config.evidence.signing_key else None
    except KeyFileError as exc:
        print(f"callproof: config key 'evidence.signing_key': {exc}", file=sys.stderr)
        return 2
    assert signer is not None  # validation: checkpoint_file needs signing_key
    try:
        with open_sync(config) as db:
            line = write_checkpoint(config, db, signer, to_db_time(utc_now()))
    except OSError as exc:
        print(f"callproof: cannot append to {config.audit.checkpoint_file}: {exc.strerror}", file=sys.stderr)
        return 1
    assert line is not None
    body = line["checkpoint"]
    tsa = "timestamped" if "tsa_token" in line else ("TSA FAILED: " + line["tsa_error"] if "tsa_error" in line
                                                     else "no TSA configured")
    print(f"checkpoint: entry {body['head_id']} hash {body['head_hash']} at {body['at']} ({tsa})")
    return 0 if "tsa_error" not in line else 1


def cmd_seal(args: argparse.Namespace, load: Load) -> int:
    """Sign, after the fact, the records of recordings finalised before a key existed."""
    config = load(args)
    from collections import Counter

    from callproof.storage import open_sync, utc_now
    from callproof.storage.timefmt import to_db_time

    from .late_seal import ChainNotTrusted, seal_late, summary

    if config.evidence.signing_key is None:
        print("callproof: config key 'evidence.signing_key': required to seal records", file=sys.stderr)
        return 2
    try:
        signer = Signer.load(config.evidence.signing_key)
    except KeyFileError as exc:
        print(f"callproof: config key 'evidence.signing_key': {exc}", file=sys.stderr)
        return 2
    trusted = _trusted(config)
    counts: Counter[str] = Counter()
    actor = _actor(args)
    try:
        with open_sync(config) as db:
            for item in seal_late(db, config, signer, trusted, actor=actor, now=to_db_time(utc_now())):
                counts[item["result"]] += 1
                if item["result"] != "sealed" or args.verbose:
                    print(f"{item['result'].upper() if item['result'] != 'sealed' else 'sealed':>14}  recording "
                          f"{item['id']}  {item['protocol']}  {item.get('detail', '')}")
            db.audit.append("evidence.seal_run", actor, utc_now(), details={**counts, "key": signer.fingerprint})
    except ChainNotTrusted as exc:
        print(f"callproof: the audit chain does not verify, so its entries cannot vouch for any recording; "
              f"nothing sealed ({exc})", file=sys.stderr)
        return 1
    print(f"recordings without a signed record: {sum(counts.values())}; {summary(counts)}")
    return 0 if sum(counts.values()) == counts["sealed"] else 1


def cmd_export(args: argparse.Namespace, load: Load) -> int:
    config = load(args)
    from callproof.storage import open_sync, utc_now

    from .package import PackageError, build_package

    if not (len(args.protocol) == 17 and args.protocol.isdigit()):
        print("callproof: PROTOCOL must be 17 digits", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        with open_sync(config) as db:
            summary = build_package(db, config, args.protocol, out, chain=args.chain)
            db.audit.append("evidence.exported", _actor(args), utc_now(), protocol=args.protocol,
                            details={"recording_id": summary["recording_id"], "chain": args.chain,
                                     "checkpoint": summary["checkpoint"], "file": out.name})
    except (PackageError, KeyFileError) as exc:
        print(f"callproof: {exc}", file=sys.stderr)
        return 1
    except FileExistsError:
        print(f"callproof: {out} exists already; not overwritten", file=sys.stderr)
        return 1
    print(f"evidence package of {args.protocol} written to {out}: {summary['entries']} audit entries, "
          f"{'a checkpoint' if summary['checkpoint'] else 'NO checkpoint yet'}, key {summary['key']}"
          f"{' (its record was SEALED LATE: see the package README)' if summary['sealed_late'] else ''}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .package import verify_package

    ok, notes = verify_package(Path(args.file), key=args.key)
    for line in notes:
        print(line)
    print("evidence package VERIFIED" if ok else "evidence package DOES NOT VERIFY")
    return 0 if ok else 1


def add_evidence_commands(sub, load: Load) -> None:
    audit = sub.add_parser("audit", help="audit log").add_subparsers(dest="sub", required=True)
    audit.add_parser("verify", help="walk the hash chain and check it against the signed checkpoints"
                     ).set_defaults(func=lambda args: cmd_audit_verify(args, load))
    audit.add_parser("checkpoint", help="append a signed checkpoint of the chain's head to [audit] checkpoint_file"
                     ).set_defaults(func=lambda args: cmd_audit_checkpoint(args, load))

    recording = sub.add_parser("recording", help="recordings").add_subparsers(dest="sub", required=True)
    rv = recording.add_parser("verify", help="re-hash recordings against their signed evidence records")
    rv.add_argument("protocol", nargs="?")
    rv.add_argument("--by", help="who is verifying (audit log; default: the login name)")
    rv.add_argument("--verbose", "-v", action="store_true", help="also list the good ones")
    rv.add_argument("--allow-unsigned", action="store_true",
                    help="exit 0 even if some recordings have no signed record (still listed)")
    rv.add_argument("--plaintext", action="store_true",
                    help="also decrypt encrypted recordings (needs the private keyring) and check the plaintext "
                         "sha256; without it their age payload is checked, no key needed")
    rv.set_defaults(func=lambda args: cmd_recording_verify(args, load))
    from callproof.encryption.migration_cli import add_encrypt_command
    add_encrypt_command(recording, load)
    from callproof.store.cli import add_move_command
    add_move_command(recording, load)

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
    se = ev.add_parser("seal", help="sign, after the fact, the records of recordings finalised without a key "
                       "(hash from the audit chain; the record says it was sealed late)")
    se.add_argument("--by", help="who seals (audit log; default: the login name)")
    se.add_argument("--verbose", "-v", action="store_true", help="also list the recordings sealed")
    se.set_defaults(func=lambda args: cmd_seal(args, load))
    ex = ev.add_parser("export", help="one file with a call's recording, signed record, audit entries, checkpoint")
    ex.add_argument("protocol")
    ex.add_argument("--out", required=True, help="the package file to write (never overwritten)")
    ex.add_argument("--chain", action="store_true",
                    help="also every audit entry up to the checkpoint (other calls' entries too)")
    ex.add_argument("--by", help="who exports it (audit log; default: the login name)")
    ex.set_defaults(func=lambda args: cmd_export(args, load))
    vf = ev.add_parser("verify", help="check an evidence package offline (no database, no configuration)")
    vf.add_argument("file")
    vf.add_argument("--key", help="the fingerprint the record must be signed by")
    vf.set_defaults(func=cmd_verify)


