"""The one base of every error a user can fix: :class:`HypertuneError`, and the exit codes of ``python -m lib``.

A fixable error (a bad value, a missing experiment, unusable data, a store that cannot be written) is a
subclass of :class:`HypertuneError` with a message that names the field and the fix; the command line turns
it into one line and the subclass's :attr:`~HypertuneError.exit_code`. Anything else is a bug and keeps its
traceback. What this is not: the mapping of *foreign* errors (OS, SQLite, YAML) to a line, which stays in
``lib.cli.errors``.
"""

from __future__ import annotations

EXIT_OK, EXIT_BUG, EXIT_USAGE, EXIT_ALL_FAILED, EXIT_ENVIRONMENT, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


class HypertuneError(Exception):
    """An error the user can fix; its message is one line naming the field and the fix.

    ``exit_code``: :data:`EXIT_USAGE` (2) for bad input, :data:`EXIT_ENVIRONMENT` (4) for a machine,
    data or store problem. Subclasses set it once; nothing else hard-codes an exit code for them.
    """

    exit_code: int = EXIT_USAGE

# The one line ``python -m lib`` prints on Ctrl-C, wherever it lands (while modules import, while a pool starts,
# mid-training, in a notebook the study runs); the exit code is EXIT_INTERRUPTED.
INTERRUPTED_LINE = (
    "interrupted: trials in flight were marked KILLED; run the same command again to resume "
    "(finished trials are not trained again)."
)
