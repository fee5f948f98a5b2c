"""Entry point for ``python -m lib`` (see :mod:`lib.cli`).

Ctrl-C is handled before anything heavy is imported: pressed while torch, pandas and MLflow load (the first
seconds), it prints the one interrupted line and exits 130 at once; nothing has been written by then. Once
the command line is loaded, :func:`lib.cli.main` handles it (trials in flight are closed KILLED first).
What this is not: the command line itself.
"""

import os
import signal
import sys

from lib.errors import EXIT_INTERRUPTED, INTERRUPTED_LINE


def _interrupted_while_loading(signum: int, frame: object) -> None:
    os.write(2, (INTERRUPTED_LINE + "\n").encode())
    os._exit(EXIT_INTERRUPTED)  # no traceback, no exit handlers: nothing was started or written yet


_handled = signal.getsignal(signal.SIGINT) is signal.default_int_handler  # SIG_IGN in a background job: keep it
if _handled:
    signal.signal(signal.SIGINT, _interrupted_while_loading)

from lib.cli import main  # noqa: E402  (after the handler: this import takes seconds)

if _handled:
    signal.signal(signal.SIGINT, signal.default_int_handler)
sys.exit(main())
