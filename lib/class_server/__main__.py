"""Entry point for ``python -m lib.class_server`` (see :mod:`lib.class_server.cli`)."""

import sys

from lib.class_server.cli import main

sys.exit(main())
