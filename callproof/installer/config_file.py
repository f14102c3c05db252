"""``/etc/callproof/callproof.toml``: written once from the shipped example, then the admin's.

The example (deploy/callproof.toml.example, shipped as
``/usr/share/callproof/callproof.toml.example``) is what every key's documentation points
at; the install changes only what it set up itself: the ARI and AMI addresses when the
admin's Asterisk already listens elsewhere, and the evidence signing key it generated.
Secrets stay out of this file (they are in ``secrets.env``), so the AGI script, which reads
only this file, sees the same database, recordings and prompts as the services.
"""

from __future__ import annotations

import re
from pathlib import Path

from .files import write_file

_SIGNING_KEY = re.compile(r'^#\s*signing_key\s*=.*$', re.MULTILINE)
_ARI_URL = re.compile(r'^url\s*=\s*"http://127\.0\.0\.1:8088/"', re.MULTILINE)
_AMI_PORT = re.compile(r'^port\s*=\s*5038\b', re.MULTILINE)


def render(template: str, *, signing_key: str, ari_url: str, ami_port: int) -> str:
    """The example with the install's own choices filled in."""
    header = ("# Written by `callproof install` from the shipped example; yours from now on: an upgrade\n"
              "# never changes it. Passwords and keys are in secrets.env next to it.\n")
    text, found = _SIGNING_KEY.subn(f'signing_key = "{signing_key}"', template, count=1)
    if not found:
        raise ValueError("the configuration template has no '# signing_key = ...' line in [evidence]")
    text, found = _ARI_URL.subn(f'url = "{ari_url}"', text, count=1)
    if not found:
        raise ValueError("the configuration template has no [ari] url line")
    text, found = _AMI_PORT.subn(f"port = {ami_port}", text, count=1)
    if not found:
        raise ValueError("the configuration template has no [ami] port line")
    return header + text


def ensure_config(path: Path, template: Path, *, signing_key: str, ari_url: str, ami_port: int,
                  group_id: int | None) -> bool:
    """Write ``path`` (0640 root:<group>) unless it exists; True when it was written."""
    if path.exists():
        return False
    text = render(template.read_text(), signing_key=signing_key, ari_url=ari_url, ami_port=ami_port)
    write_file(path, text, mode=0o640, group_id=group_id)
    return True
