"""The command line, ``python -m lib``: data, grid, sweep, study, report, links (``--help`` explains each).

Command line for people who prefer scripts to notebooks: ``python -m lib --help``.

Sub-commands: ``data`` (fetch and verify Fashion-MNIST), ``grid`` (a controlled grid), ``sweep``
(a hyperopt TPE sweep), ``study`` (execute the numbered notebooks with papermill into ``runs/<profile>/``),
``report`` (figures, a table of the best configurations and report.md for any experiments),
``links`` (MLflow UI links that open each experiment's runs table).
Each option is explained in ``--help``; values are parsed as YAML scalars (``0.25``, ``none``,
``true``, ``[128, 64]``).

A mistake (a misspelt hyperparameter, a bad value, unreadable data, a store that cannot be written)
prints one or two lines on stderr that name the problem and the fix, and nothing is written; add
``--debug`` (or set ``HYPERTUNE_DEBUG=1``) to see the traceback. Exit codes: 0 done (failed trials
are listed with their reason), 1 an unexpected error (a bug: the traceback is shown), 2 a bad
command line or config, 3 every trial failed, 4 the data or the MLflow store cannot be used,
130 interrupted (Ctrl-C; run the same command again to resume). See docs/troubleshooting.md.

Rooms: ``lib.cli.parser`` (arguments), ``lib.cli.commands`` (what each sub-command does),
``lib.cli.errors`` (exit codes and one-line messages). What this is not: the engine, the study or the
report; it only parses, dispatches and explains errors.
"""

from __future__ import annotations

import sys

from lib.cli.commands import run
from lib.cli.errors import EXIT_INTERRUPTED, debug_requested, explain_error
from lib.cli.parser import build_parser
from lib.errors import INTERRUPTED_LINE


def quiet_interrupts(unraisable: sys.UnraisableHookArgs) -> None:
    """``sys.unraisablehook`` that drops a Ctrl-C landing in a finalizer or garbage-collector callback
    (Python would print "Exception ignored in ..." and a traceback); anything else is reported as usual."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        return
    sys.__unraisablehook__(unraisable)


def main(argv: list[str] | None = None) -> int:
    """Run a sub-command behind one error boundary: known errors become one or two lines on stderr."""
    debug = debug_requested("--debug" in (sys.argv[1:] if argv is None else argv))
    if not debug:
        sys.unraisablehook = quiet_interrupts
    try:
        args = build_parser().parse_args(argv)
        debug = debug_requested(bool(getattr(args, "debug", False)))
        return run(args, debug)
    except KeyboardInterrupt:
        if debug:
            raise
        print(INTERRUPTED_LINE, file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        explained = None if debug else explain_error(exc)
        if explained is None:
            raise  # a bug (or --debug): the traceback is the useful message
        code, message = explained
        print(f"error: {message}", file=sys.stderr)
        return code


__all__ = ["build_parser", "explain_error", "main"]
