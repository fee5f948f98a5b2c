"""``python -m lib check``: the rubric on a student's own experiment, on hand-ins, or on a class server's users.

Three sources of studies, one table: ``--experiment NAME`` (the current store: a student before handing in),
``--handin PATH`` (a hand-in .zip or a folder of them: each imported into a store of its own, a temporary one
unless ``--stores DIR`` keeps them) and ``--server URL --users a,b,c`` (or ``--roster FILE``: every
experiment named ``<user>-...`` on a class server, read with the login in ``MLFLOW_TRACKING_USERNAME`` and
``MLFLOW_TRACKING_PASSWORD``). It prints one row per study (who, experiment, a 0/1/2 score per criterion,
``-`` for the criteria a teacher judges by reading), then the evidence of every score, and ``--csv FILE``
writes the same for the class. All input is checked before anything is imported or written.

What this is not: the criteria themselves (``lib.assignment.rubric``) or a grade.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lib import tracking
from lib.assignment import handin as handins
from lib.assignment.records import AssignmentError, _runs
from lib.assignment.rubric import CRITERIA, Score, Study, score

SHORT = {
    "hypothesis_first": "first",
    "controlled_comparison": "control",
    "nuisance": "nuisance",
    "seeds_paired": "seeds",
    "plot": "plot",
    "test_set_once": "test",
    "conclusions": "concl",
    "hygiene": "hygiene",
}
Row = tuple[Study, list[Score]]


def from_store(experiments: list[str], who: str | None = None) -> list[Study]:
    """Studies of experiments in the current store (a student's own, or the teacher's imported store)."""
    who = who or os.environ.get("MLFLOW_TRACKING_USERNAME") or "you"
    return [Study(who, name, _runs(name)) for name in experiments]


def handin_files(paths: list[Path]) -> list[Path]:
    """Every hand-in named: a file as given, a folder as its ``*.zip`` files."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.glob("*.zip"))
            if not found:
                raise AssignmentError(f"{path} holds no .zip hand-in: give a hand-in file or a folder of them")
            files += found
        else:
            files.append(path)
    return files


def from_handins(paths: list[Path], stores: Path | None = None) -> list[Study]:
    """Studies of every hand-in in ``paths``: all are read and checked first, then each is imported into a store
    of its own (``stores/<file name>/``, else a temporary folder removed afterwards)."""
    read = [handins.read(path) for path in handin_files(paths)]
    if stores is not None:
        taken = [stores / h.path.stem for h in read if (stores / h.path.stem / "mlflow.db").exists()]
        if taken:
            raise AssignmentError(f"{taken[0]} already holds an imported store: choose another --stores folder")
    studies = []
    for handin in read:
        folder = Path(tempfile.mkdtemp(prefix="hypertune-handin-")) if stores is None else stores / handin.path.stem
        try:
            with tracking.using_store(handins.import_into(handin, folder)):
                studies += [Study(handin.student, name, _runs(name), handin.notebooks) for name in handin.experiments]
        finally:
            if stores is None:
                shutil.rmtree(folder, ignore_errors=True)
    return studies


def roster_users(path: Path) -> list[str]:
    """Usernames of a class roster (``username`` or ``username,password`` per line, ``#`` comments)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise AssignmentError(f"--roster {path}: {exc.strerror or exc}") from None
    users = [line.split("#", 1)[0].split(",", 1)[0].strip() for line in lines]
    return [u for u in users if u]


def _answers(url: str) -> None:
    """Any HTTP answer at ``url`` (even 401) means a server runs there; no answer is one line."""
    try:
        urllib.request.urlopen(url.rstrip("/") + "/health", timeout=10)
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AssignmentError(
            f"class server {url} does not answer ({reason}): start it (make class-server) or give the right --server"
        ) from None


def from_server(url: str, users: list[str]) -> list[Study]:
    """Studies of every experiment named ``<user>-...`` of each user on the class server at ``url``."""
    if not users:
        raise AssignmentError("--server needs --users a,b,c or --roster FILE (who to check)")
    _answers(url)
    with tracking.using_store(url):
        try:
            names = tracking.experiment_names()
        except Exception as exc:  # MLflow's own error for a refused login or a broken server
            raise AssignmentError(
                f"class server {url} refused the listing ({str(exc).splitlines()[0][:120]}): set "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a login"
            ) from None
        studies = []
        for user in users:
            mine = [name for name in names if name.startswith(f"{user}-")]
            studies += [Study(user, name, _runs(name)) for name in mine] or [
                Study(user, f"(no {user}-... experiment)", [])
            ]
    return studies


def rows(studies: list[Study]) -> list[Row]:
    return [(study, score(study)) for study in studies]


def _mark(points: int | None) -> str:
    return "-" if points is None else str(points)


def machine(scores: list[Score]) -> tuple[int, int]:
    """Points on the machine-checked criteria and their maximum."""
    checked = [s.points for s in scores if s.points is not None]
    return sum(checked), 2 * len(checked)


def table(results: list[Row]) -> str:
    """The terminal table: one line per study, then the evidence of every score."""
    head = ["who", "experiment", *[SHORT[key] for key, _, _ in CRITERIA], "points"]
    body = [[s.who, s.experiment, *[_mark(x.points) for x in sc], "{}/{}".format(*machine(sc))] for s, sc in results]
    widths = [max(len(str(r[i])) for r in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in [head, *body]]
    lines.append("(- : judged by reading the report; columns in the rubric's order: docs/teaching.md)")
    for study, scores in results:
        lines.append(f"\n{study.who} · {study.experiment}: {'{}/{}'.format(*machine(scores))} on the checked criteria")
        lines += [f"  {_mark(s.points)}  {s.title}: {s.evidence}" for s in scores]
    return "\n".join(lines)


def write_csv(results: list[Row], path: Path) -> None:
    """One row per study: who, experiment, each criterion's score and evidence, the machine points."""
    partial = Path(path).with_name(f".{Path(path).name}.partial-{os.getpid()}")
    with partial.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "who",
                "experiment",
                *[c for key, _, _ in CRITERIA for c in (key, f"{key}_evidence")],
                "machine_points",
                "machine_max",
            ]
        )
        for study, scores in results:
            cells = [c for s in scores for c in (_mark(s.points), s.evidence)]
            writer.writerow([study.who, study.experiment, *cells, *machine(scores)])
    os.replace(partial, path)


@contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's own log lines off while reading (a check prints one table)."""
    import logging

    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def check(experiment: str) -> list[Score]:
    """The notebook's call: print the rubric of ``experiment`` (the current store) and return its scores."""
    with _quiet():
        results = rows(from_store([experiment]))
    print(table(results))
    return results[0][1]
