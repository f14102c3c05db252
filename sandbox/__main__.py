"""``python -m callproof.sandbox``: start a sandbox Asterisk by hand, reach its CLI."""

import sys

from callproof.sandbox.cli import main

sys.exit(main())
