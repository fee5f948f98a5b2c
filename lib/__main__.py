"""Entry point for ``python -m lib`` (see :mod:`lib.cli`)."""

import sys

from lib.cli import main

sys.exit(main())
