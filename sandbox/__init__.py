"""A real Asterisk 22 in a Debian sid chroot, for the demo and the integration tests.

Debian bookworm ships no Asterisk, Debian sid ships Asterisk 22.  This package

* ``provision()`` (``rootfs``) builds a minimal sid root filesystem with
  Asterisk once and caches it outside the repository
  (``$CALLPROOF_SANDBOX_CACHE`` or ``~/.cache/callproof/sandbox``);
* ``Sandbox`` (``instance``) runs one throw-away Asterisk from that rootfs, with
  every piece of per-run state (config, spool, logs, astdb, control socket)
  under a host ``run_dir``, ARI and AMI on free loopback ports and random
  credentials; its config files are written by ``asterisk_config``, its mounts
  live in a mount namespace of its own (``namespaces``);
* ``originate_call()`` (``calls``) drives a test/demo call into a dialplan
  context the way a customer's call would arrive, optionally recording what
  the customer hears;
* ``python -m callproof.sandbox`` (``cli``) provisions, starts one by hand and
  reaches its CLI.

Everything is stdlib and synchronous, and needs root (``chroot``, ``mount``).
Each module's docstring holds what was verified against Asterisk 22.10.1 about
its part.
"""

from __future__ import annotations

from .calls import ari_request, originate_call, wait_for_hangup
from .cli import main
from .errors import SandboxError
from .instance import Sandbox
from .ports import free_port as _free_port  # noqa: F401  (the benchmarks import it from here)
from .rootfs import PACKAGES, default_cache_dir, provision

__all__ = [
    "PACKAGES",
    "Sandbox",
    "SandboxError",
    "ari_request",
    "default_cache_dir",
    "main",
    "originate_call",
    "provision",
    "wait_for_hangup",
]
