"""Entry point for ``python -m lib.class_server`` (see :mod:`lib.class_server.server`)."""

import sys

from lib.class_server.server import main

sys.exit(main())
