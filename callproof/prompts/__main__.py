"""``python -m callproof.prompts DEST``: see :mod:`callproof.prompts.cli`."""

import sys

from .cli import main

sys.exit(main())
