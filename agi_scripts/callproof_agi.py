#!/usr/bin/env python3
"""Classic AGI script (pyst2): the callproof flow on the current channel.

Install it into Asterisk's agi-bin with ``python -m callproof.agi_scripts.install`` (a small
wrapper naming this Python and the configuration), then in the dialplan::

    same => n,AGI(callproof-agi,all,${CALLPROOF_DID},${CHANNEL(linkedid)},${CALLPROOF_LANGUAGE})

First argument: the step (``all``, ``consent``, ``protocol``, ``read``, ``record``,
``handoff``, ``finalise``; see ``agi_scripts/flow.py`` and ``callproof/callflow/``).  The configuration file is
``--config FILE`` (the wrapper passes it) or ``$CALLPROOF_CONFIG``.  Whatever
happens, the script answers Asterisk with ``CALLPROOF_STATUS`` (and
``CALLPROOF_REASON``) and exits 0, so the dialplan goes on and routes the caller.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys


def _quiet_agi():
    """pyst2's AGI object, reading the environment; its debug chatter goes nowhere."""
    from asterisk.agi import AGI

    return AGI(stdin=sys.stdin, stdout=sys.stdout, stderr=open(os.devnull, "w"))


async def _run(agi, config_path: str | None) -> str:
    from callproof.callflow.reasons import Reason
    from callproof.config import ConfigError, load_config
    from callproof.prompts import PromptCatalogue
    from callproof.storage.opening import open_for_one_call

    from .channel import PystChannel
    from .flow import AgiFlow

    channel = PystChannel(agi)
    try:
        config = load_config(config_path, require_asterisk_apis=False)
    except (ConfigError, OSError) as exc:
        await _fail_without_config(channel, str(exc))
        return "failed"
    prompts = PromptCatalogue(config.prompts.directory, default_language=config.general.default_language,
                              languages=config.general.languages, custom_dir=config.prompts.custom_directory)
    from callproof.evidence import records as evidence_records

    evidence_records.configure(config, strict=False)  # a bad key: logged, the call goes on unsigned
    from callproof import store as recordings_store

    recordings_store.configure(config)  # the node named in the recording's row (moved later by `recording move`)
    _configure_encryption(config)  # a keyring that cannot be read: logged, recordings kept for 'recording encrypt'
    db = None
    flow = AgiFlow(config, None, prompts, channel)
    try:
        db = await open_for_one_call(config)
    except Exception as exc:
        await flow.fail(Reason.STORAGE_UNAVAILABLE, f"{type(exc).__name__}: {exc}")
        return "failed"
    flow.db = db
    try:
        return await flow.run()
    finally:
        await db.close()


def _configure_encryption(config) -> None:
    """The public keyring for this call's recording; never fails the call (not strict)."""
    if not config.encryption.enabled:
        return
    try:
        from callproof.encryption import atrest
    except ImportError as exc:  # no cryptography on this Python: the recording stays plaintext, pending
        logging.getLogger("callproof.encryption").error("cannot encrypt here: %s", exc)
        return
    atrest.configure(config, strict=False)


async def _fail_without_config(channel, message: str) -> None:
    from callproof.callflow.reasons import REASON_VARIABLE, STATUS_VARIABLE, DialplanStatus, Reason

    from .channel import AgiCommandError, AgiHangup, quote

    logging.getLogger("callproof.agi").error("configuration error: %s", message)
    try:
        await channel.command(f"SET VARIABLE {STATUS_VARIABLE} {quote(DialplanStatus.FAILED)}")
        await channel.command(f"SET VARIABLE {REASON_VARIABLE} {quote(Reason.CONFIG_ERROR)}")
    except (AgiHangup, AgiCommandError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.environ.get("CALLPROOF_CONFIG"))
    parser.add_argument("agi_args", nargs="*", help="passed by Asterisk (also in the AGI environment)")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="callproof-agi: %(message)s")
    try:
        agi = _quiet_agi()
    except Exception as exc:  # not started by Asterisk
        print(f"callproof-agi: not an AGI session ({exc}); run it from the dialplan with AGI()", file=sys.stderr)
        return 2
    try:
        asyncio.run(_run(agi, args.config))
    except BaseException:  # never crash the AGI pipe: log, answer, exit 0
        logging.getLogger("callproof.agi").exception("callproof AGI crashed")
        try:
            agi.send_command('SET VARIABLE CALLPROOF_STATUS "failed"')
            agi.stdin.readline()
            agi.send_command('SET VARIABLE CALLPROOF_REASON "internal_error"')
            agi.stdin.readline()
        except Exception:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
