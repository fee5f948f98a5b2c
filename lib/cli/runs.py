"""``python -m lib runs delete|restore``: take the runs you did not mean out of an experiment, and put them back.

A mistaken command (``--set epochs=1`` into the study's experiment) mixes a second budget into it; the report
copes, a student's own script plots it silently. ``runs delete --experiment first --where epochs=1`` lists the
runs of ``first`` whose param (or tag, or ``status``) ``epochs`` is 1, and with ``--yes`` moves them to MLflow's
trash: the runs stay in the store, lifecycle stage ``deleted``, and every search leaves them out (the package's
cache and report too, and ``mlflow.search_runs`` by default). ``runs restore`` with the same filter takes them
out of the trash again. A sweep's parent run goes with its trials when every one of them goes.

What this is not: a way to erase runs for good (``mlflow gc`` does that, after a delete), or any other command.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

from lib.errors import HypertuneError
from lib.store.schema import TAG_KIND

SHOWN = 20  # runs listed before "... and N more"


class RunsError(HypertuneError):
    """A ``runs`` command that cannot be carried out as given (one line naming the field and the fix)."""


def add_parser(commands, command) -> None:
    """The ``runs`` sub-command and its two actions (``command``: the parser's sub-command factory)."""
    runs = command(
        commands,
        "runs",
        "move runs you did not mean to MLflow's trash (restorable), or restore them",
        "List the runs of --experiment that match every --where NAME=VALUE (a param such as epochs, a tag such "
        "as sweep or kind, or status), then with --yes move them to MLflow's trash: kept in the store, left out "
        "of every search, the cache and the report, until `runs restore` with the same filter takes them back.",
        "python -m lib runs delete --experiment first --where epochs=1",
    )
    runs.add_argument("action", choices=["delete", "restore"], help="delete (to the trash) or restore (from it)")
    runs.add_argument("--experiment", required=True, help="the MLflow experiment whose runs are meant")
    runs.add_argument(
        "--where",
        action="append",
        metavar="NAME=VALUE",
        default=[],
        help="keep only runs with this param, tag or status value, e.g. --where epochs=1 (repeat: all must hold)",
    )
    runs.add_argument("--yes", action="store_true", help="delete: do it (without it the runs are only listed)")


def run(args: argparse.Namespace) -> int:
    from lib import store, tracking

    filters = _filters(args.where)
    exp_id = tracking.find_experiment_id(args.experiment)
    if exp_id is None:
        known = ", ".join(tracking.experiment_names()) or "no experiments"
        raise RunsError(
            f"--experiment {args.experiment!r}: no such experiment in {tracking.tracking_uri()}; the store has: {known}"
        )
    pool = store.stored_runs(exp_id) if args.action == "delete" else store.deleted_runs(exp_id)
    _check_names(filters, pool, args.action)
    chosen = _with_parents(select(pool, filters), pool)
    where = " ".join(f"--where {item}" for item in args.where)
    print(_listing(chosen, filters, args.experiment, args.action))
    if not chosen:
        return 0
    if args.action == "restore":
        for stored in chosen:
            tracking.restore_run(stored.run_id)
        print(f"restored {len(chosen)} runs of {args.experiment!r}: searches, the cache and the report see them again")
        return 0
    if not args.yes:
        print(
            f"nothing deleted yet: run the same command with --yes to move these {len(chosen)} runs to MLflow's "
            f"trash (restorable: python -m lib runs restore --experiment {args.experiment} {where})"
        )
        return 0
    for stored in chosen:
        tracking.delete_run(stored.run_id)
    print(
        f"moved {len(chosen)} runs of {args.experiment!r} to MLflow's trash; to bring them back: "
        f"python -m lib runs restore --experiment {args.experiment} {where}"
    )
    return 0


def _filters(items: Sequence[str]) -> dict[str, str]:
    if not items:
        raise RunsError("--where: give at least one NAME=VALUE, e.g. --where epochs=1 (the runs it matches are listed)")
    filters = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise RunsError(f"--where {item!r} must look like NAME=VALUE, e.g. --where epochs=1")
        filters[name.strip()] = value.strip()
    return filters


def value_of(stored, name: str) -> str | None:
    """A run's value of ``name``: its param, else its tag, else (``status``) its status in lower case."""
    if name in stored.params:
        return stored.params[name]
    if name in stored.tags:
        return stored.tags[name]
    return stored.status.lower() if name == "status" else None


def matches(value: str | None, wanted: str) -> bool:
    """``value`` (as stored) equals ``wanted``: as numbers when both are numbers (``1`` = ``1.0``), else as text."""
    if value is None:
        return False
    try:
        return math.isclose(float(value), float(wanted), rel_tol=1e-9, abs_tol=0.0)
    except ValueError:
        return value.strip().lower() == wanted.lower()


def select(pool: Sequence, filters: dict[str, str]) -> list:
    """The runs of ``pool`` that match every filter."""
    return [run for run in pool if all(matches(value_of(run, name), wanted) for name, wanted in filters.items())]


def _with_parents(chosen: list, pool: Sequence) -> list:
    """``chosen`` and every sweep parent all of whose trials are chosen (it would stand alone otherwise)."""
    ids = {run.run_id for run in chosen}
    children: dict[str, list[str]] = {}
    for run in pool:
        parent = run.tags.get("mlflow.parentRunId")
        if parent:
            children.setdefault(parent, []).append(run.run_id)
    parents = [run for run in pool if run.run_id not in ids and children.get(run.run_id)]
    return chosen + [run for run in parents if set(children[run.run_id]) <= ids]


def _check_names(filters: dict[str, str], pool: Sequence, action: str) -> None:
    """A filter name that no run of the experiment carries is a typo, not an empty selection."""
    for name in filters:
        if pool and name != "status" and not any(value_of(run, name) is not None for run in pool):
            where = "in the trash" if action == "restore" else "in this experiment"
            raise RunsError(
                f"--where {name}=...: no run {where} has a param or tag '{name}'; use a param such "
                "as epochs or lr, a tag such as sweep or kind, or status (docs/store.md lists them)"
            )


def _listing(chosen: list, filters: dict[str, str], experiment: str, action: str) -> str:
    verb = "would move to the trash" if action == "delete" else "in the trash, to restore"
    if not chosen:
        where = ", ".join(f"{k}={v}" for k, v in filters.items())
        return f"no run of {experiment!r} matches {where} ({'active runs' if action == 'delete' else 'the trash'})"
    lines = [f"{len(chosen)} runs of {experiment!r} {verb}:"]
    for stored in chosen[:SHOWN]:
        values = " ".join(f"{name}={value_of(stored, name)}" for name in filters)
        accuracy = stored.metrics.get("val_accuracy")
        score = f" val_accuracy={accuracy:.4f}" if accuracy is not None else ""
        kind = stored.tags.get(TAG_KIND, "?")
        lines.append(
            f"  {stored.tags.get('mlflow.runName', stored.run_id)} [{kind}, {stored.status.lower()}] {values}{score}"
        )
    if len(chosen) > SHOWN:
        lines.append(f"  ... and {len(chosen) - SHOWN} more")
    return "\n".join(lines)
