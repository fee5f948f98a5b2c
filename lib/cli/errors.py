"""Exit codes and the one-line messages of ``python -m lib``: a fixable error becomes a line, a bug a traceback.

:func:`explain_error` maps an exception a user can fix (a bad config, unusable data, a store that cannot be
written, a full disk) to ``(exit code, message)``; anything else is a bug and keeps its traceback.
``--debug`` or ``HYPERTUNE_DEBUG=1`` shows every traceback.

What this is not: the parser or the commands.
"""

from __future__ import annotations

import os

import yaml

from lib.cli.parser import UsageError
from lib.errors import HypertuneError

EXIT_OK, EXIT_BUG, EXIT_USAGE, EXIT_ALL_FAILED, EXIT_ENVIRONMENT, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


def debug_requested(flag: bool = False) -> bool:
    """``--debug`` was given (``flag``) or ``HYPERTUNE_DEBUG`` is set (to anything but 0/false/no)."""
    return flag or os.environ.get("HYPERTUNE_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def explain_error(exc: BaseException) -> tuple[int, str] | None:
    """``(exit code, one-line message)`` for an error a user can fix; ``None`` for anything else (a bug)."""
    import sqlite3

    from lib.config import ConfigError
    from lib.data import DataError
    from lib.engine.grid import StudyError
    from lib.tracking import StoreError

    if isinstance(exc, HypertuneError):
        return exc.exit_code, one_line(str(exc))
    if isinstance(exc, UsageError | ConfigError | StudyError):
        return EXIT_USAGE, one_line(str(exc))
    if isinstance(exc, DataError | StoreError):
        return EXIT_ENVIRONMENT, one_line(str(exc))
    if isinstance(exc, yaml.YAMLError):
        return EXIT_USAGE, one_line(f"--space: not valid YAML ({exc})")
    if isinstance(exc, sqlite3.Error) or _is_store_error(exc):
        return EXIT_ENVIRONMENT, one_line(store_problem(exc))
    if isinstance(exc, OSError):
        return EXIT_ENVIRONMENT, one_line(_os_problem(exc))
    return None


def _is_store_error(exc: BaseException) -> bool:
    names = {cls.__module__.split(".")[0] + "." + cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"sqlalchemy.SQLAlchemyError", "mlflow.MlflowException"})


def store_problem(exc: BaseException) -> str:
    """A database error as ``store: reason. fix``."""
    from lib.tracking import tracking_uri

    if isinstance(exc, OSError):
        return f"MLflow store {tracking_uri()} cannot be used: {_os_problem(exc)}"
    text = str(getattr(exc, "message", None) or exc)
    reason = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    reason = reason.removeprefix("(sqlite3.OperationalError) ").removeprefix("(sqlite3.DatabaseError) ")
    lowered = reason.lower()
    if "full" in lowered or "disk i/o" in lowered:
        fix = "free disk space, then run the same command again (finished trials are kept, an interrupted one retrains)"
    elif "readonly" in lowered or "read-only" in lowered or "permission" in lowered:
        fix = "make the file and its folder writable, or point MLFLOW_TRACKING_URI at a writable sqlite:/// file"
    elif "unable to open" in lowered:
        fix = "check that its folder exists and is writable, or point MLFLOW_TRACKING_URI at another file"
    elif "locked" in lowered:
        fix = "another process holds the database; wait for it or stop it, then run the same command again"
    elif "not a database" in lowered or "malformed" in lowered:
        fix = "move the file away (a new store is created) or point MLFLOW_TRACKING_URI at another file"
    else:
        fix = "check MLFLOW_TRACKING_URI, then run the same command again (--debug shows the details)"
    return f"MLflow store {tracking_uri()} cannot be used: {reason}. Fix: {fix}."


def _os_problem(exc: OSError) -> str:
    import errno

    where = exc.filename or "a file"
    reason = exc.strerror or str(exc)
    fixes = {
        errno.ENOSPC: "free disk space, then run the same command again",
        errno.EDQUOT: "free disk space, then run the same command again",
        errno.EFBIG: "free disk space or raise the file size limit, then run the same command again",
        errno.EACCES: "make it writable (or readable) for you",
        errno.EPERM: "make it writable (or readable) for you",
        errno.EROFS: "the file system is read-only: point MLFLOW_TRACKING_URI / HYPERTUNE_* at a writable folder",
        errno.ENOENT: "check the path",
        errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
        errno.EEXIST: "a file is in the way of a folder: check the path",
    }
    return f"{where}: {reason}. Fix: {fixes.get(exc.errno, 'check the path and the disk')}."


def one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 1000 else line[:997] + "..."
