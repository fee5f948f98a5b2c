"""The one base of every error a user can fix: :class:`HypertuneError`, and the exit codes of ``python -m lib``.

A fixable error (a bad value, a missing experiment, unusable data, a store that cannot be written) is a
subclass of :class:`HypertuneError` with a message that names the field and the fix; the command line turns
it into one line and the subclass's :attr:`~HypertuneError.exit_code` (:func:`exit_code_of`). Anything else is
a bug and keeps its traceback. What this is not: the mapping of *foreign* errors (OS, SQLite, YAML) to a line,
which stays in ``lib.cli.errors``.

Two errors live in files whose bytes are the training cache key (``lib/config.py``: ``ConfigError``;
``lib/datasets.py``: ``DataError``; see ``lib.engine.trial.code_version``): naming this base in their source
would make every cached trial train again. They are subclasses by name instead (:data:`BY_NAME`): ``isinstance``
and ``issubclass`` hold and :func:`exit_code_of` knows their codes, but ``except HypertuneError`` does not catch
them (Python's ``except`` ignores registered subclasses), so test with ``isinstance``.
"""

from __future__ import annotations

from abc import ABCMeta

EXIT_OK, EXIT_BUG, EXIT_USAGE, EXIT_ALL_FAILED, EXIT_ENVIRONMENT, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_NOTEBOOK_FAILED = 1  # ``python -m lib study``: a notebook stopped (a failing cell or a dead kernel)

# Errors that are subclasses by name (module docstring), with their exit codes.
BY_NAME = {"lib.config.ConfigError": EXIT_USAGE, "lib.datasets.DataError": EXIT_ENVIRONMENT}


class HypertuneError(Exception, metaclass=ABCMeta):
    """An error the user can fix; its message is one line naming the field and the fix.

    ``exit_code``: :data:`EXIT_USAGE` (2) for bad input, :data:`EXIT_ENVIRONMENT` (4) for a machine,
    data or store problem. Subclasses set it once; nothing else hard-codes an exit code for them.
    """

    exit_code: int = EXIT_USAGE

    @classmethod
    def __subclasshook__(cls, other: type) -> bool:
        if cls is HypertuneError and _code_by_name(other) is not None:
            return True
        return NotImplemented


def _code_by_name(kind: type) -> int | None:
    for klass in getattr(kind, "__mro__", ()):
        code = BY_NAME.get(f"{klass.__module__}.{klass.__qualname__}")
        if code is not None:
            return code
    return None


def exit_code_of(exc: BaseException) -> int:
    """The exit code of a fixable error (its class's ``exit_code``, or :data:`BY_NAME`'s); :data:`EXIT_BUG`
    for anything else."""
    if isinstance(exc, HypertuneError) and HypertuneError in type(exc).__mro__:
        return exc.exit_code
    code = _code_by_name(type(exc))
    return EXIT_BUG if code is None else code


# The one line ``python -m lib`` prints on Ctrl-C, wherever it lands (while modules import, while a pool starts,
# mid-training, in a notebook the study runs); the exit code is EXIT_INTERRUPTED.
INTERRUPTED_LINE = (
    "interrupted: trials in flight were marked KILLED; run the same command again to resume "
    "(finished trials are not trained again)."
)
