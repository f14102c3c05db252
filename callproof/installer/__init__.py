"""``callproof install``: puts callproof in front of the Asterisk of this machine.

The Debian package's postinst runs it (packaging/deb/, docs/install.md); it can also be
run by hand after a ``pip install`` into ``/opt/callproof``.  Idempotent: a second run
changes nothing an admin wrote and keeps every generated secret.

* :mod:`.layout` -- where everything lives (one ``root`` prefix, so tests install into a folder);
* :mod:`.secrets_file` -- ``/etc/callproof/secrets.env`` with generated strong secrets;
* :mod:`.config_file` -- ``/etc/callproof/callproof.toml`` from the shipped example;
* :mod:`.asterisk_conf` -- the HTTP/ARI/AMI/dialplan snippets and the ``#tryinclude`` lines;
* :mod:`.steps` -- directories, signing key, prompts, AGI script, module reloads;
* :mod:`.cli` -- the command.
"""

from .layout import Layout
from .steps import InstallReport, install

__all__ = ["InstallReport", "Layout", "install"]
