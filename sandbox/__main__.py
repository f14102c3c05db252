"""``python -m callproof.sandbox``: start a sandbox Asterisk by hand, reach its CLI."""

import sys

from callproof.sandbox import main

sys.exit(main())
