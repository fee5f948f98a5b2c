"""A student's hand-in: one zip with their notebooks and every run of their experiments, and its import.

:func:`pack` (``python -m lib handin``) writes ``handin.json`` (what is inside, who, when), one
``runs/<n>.json`` per experiment (every run: params, every metric's history per step, tags, start and end
times, status) and ``notebooks/<name>.ipynb``. No data set, no venv, no artifacts (model files, figures as
files): a hand-in of a study is some hundred kilobytes. :func:`read` checks an archive completely before
anything uses it (a file that is not a hand-in, a truncated or corrupt zip, a missing part: one line, exit
code 2); :func:`import_into` recreates its runs, with their own times, in a new store of their own, never the
teacher's.

What this is not: proof against forgery (the times come from the student's machine, like every MLflow run's),
or the rubric check (``lib.assignment.class_check``).
"""

from __future__ import annotations

import datetime
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from lib import tracking
from lib.assignment.records import AssignmentError, _runs
from lib.assignment.stubs import TODO_TAG, HandoutError, read_notebook, tags

FORMAT, VERSION, MANIFEST = "hypertune-handin", 1, "handin.json"
RUN_KEYS = {"run_id", "run_name", "status", "start_time", "end_time", "params", "tags", "metrics"}


@dataclass(frozen=True)
class Handin:
    """A hand-in read and checked: its file, the student, runs per experiment and notebooks by name."""

    path: Path
    student: str
    experiments: dict[str, list[dict]]
    notebooks: dict[str, NotebookNode]


def _notebooks(paths: list[Path]) -> dict[str, NotebookNode]:
    found: dict[str, NotebookNode] = {}
    for path in paths:
        try:
            found[Path(path).name] = read_notebook(Path(path))
        except HandoutError as exc:
            raise AssignmentError(f"--notebook {exc}") from None
    return found


def pack(experiments: list[str], notebooks: list[Path], out: Path, student: str | None = None) -> list[str]:
    """Write the hand-in ``out`` (a .zip); returns notes for the student (e.g. TODO cells left). Everything is
    read and checked before the file is written; the file appears whole or not at all."""
    out = Path(out)
    if out.suffix != ".zip":
        raise AssignmentError(f"--out {out}: name the hand-in file NAME.zip, e.g. --out alice.zip")
    if not out.parent.is_dir():
        raise AssignmentError(f"--out {out}: the folder {out.parent} does not exist")
    if not experiments or not notebooks:
        raise AssignmentError("give at least one --experiment and one --notebook (your report)")
    nbs = _notebooks(notebooks)
    for name in experiments:
        _runs(name)  # an unknown experiment is one line naming the ones that exist
    runs = {name: tracking.export_runs(name) for name in experiments}
    who = student or os.environ.get("MLFLOW_TRACKING_USERNAME") or out.stem
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "student": who,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "store": "server" if tracking.tracking_uri().startswith("http") else "local",
        "experiments": [{"name": n, "file": f"runs/{i}.json", "runs": len(runs[n])} for i, n in enumerate(runs)],
        "notebooks": [f"notebooks/{n}" for n in nbs],
    }
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, json.dumps(manifest, indent=1))
        for item in manifest["experiments"]:
            zf.writestr(item["file"], json.dumps({"experiment": item["name"], "runs": runs[item["name"]]}))
        for name, nb in nbs.items():
            zf.writestr(f"notebooks/{name}", nbformat.writes(nb))
    os.replace(partial, out)
    left = [
        f"{name} still has {n} TODO cell{'s' * (n != 1)}"
        for name, nb in nbs.items()
        if (n := sum(TODO_TAG in tags(c) for c in nb.cells))
    ]
    return left


def _bad(path: Path, why: str) -> AssignmentError:
    return AssignmentError(f"{path} is not a usable hand-in ({why}): ask for the .zip that python -m lib handin wrote")


def _member(zf: zipfile.ZipFile, path: Path, name: str) -> bytes:
    try:
        return zf.read(name)
    except KeyError:
        raise _bad(path, f"{name} is missing: a partial archive") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _bad(path, f"{name} is corrupt: {exc}") from None


def _json(zf: zipfile.ZipFile, path: Path, name: str) -> dict:
    try:
        data = json.loads(_member(zf, path, name))
    except ValueError as exc:
        raise _bad(path, f"{name} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _bad(path, f"{name} is not a JSON object")
    return data


def _experiment(zf: zipfile.ZipFile, path: Path, item: object) -> tuple[str, list[dict]]:
    if not isinstance(item, dict) or not {"name", "file"} <= set(item):
        raise _bad(path, "handin.json lists an experiment without name and file")
    data = _json(zf, path, str(item["file"]))
    runs = data.get("runs")
    if not isinstance(runs, list) or any(not isinstance(r, dict) or not set(r) >= RUN_KEYS for r in runs):
        raise _bad(path, f"{item['file']} does not hold the runs of '{item['name']}'")
    if len(runs) != item.get("runs", len(runs)):
        raise _bad(path, f"{item['file']} holds {len(runs)} runs, handin.json says {item.get('runs')}: partial")
    return str(item["name"]), runs


def read(path: Path) -> Handin:
    """Open and check the hand-in ``path`` entirely (manifest, every runs file, every notebook)."""
    path = Path(path)
    if not path.is_file():
        raise AssignmentError(f"{path} does not exist: give the path of a hand-in .zip, or a folder of them")
    if not zipfile.is_zipfile(path):
        raise _bad(path, "not a zip archive, or a truncated one")
    try:
        with zipfile.ZipFile(path) as zf:
            broken = zf.testzip()
            if broken is not None:
                raise _bad(path, f"{broken} fails its checksum: a corrupt archive")
            manifest = _json(zf, path, MANIFEST)
            if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
                raise _bad(path, f"{MANIFEST} is not a hypertune hand-in of version {VERSION}")
            experiments = dict(_experiment(zf, path, item) for item in manifest.get("experiments") or [])
            notebooks = {}
            for name in manifest.get("notebooks") or []:
                try:
                    notebooks[Path(name).name] = nbformat.reads(_member(zf, path, name).decode(), as_version=4)
                except (ValueError, UnicodeDecodeError) as exc:
                    raise _bad(path, f"{name} is not a readable notebook: {str(exc)[:100]}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _bad(path, f"a corrupt archive: {exc}") from None
    if not experiments:
        raise _bad(path, "it holds no experiment")
    return Handin(path, str(manifest.get("student") or path.stem), experiments, notebooks)


def store_uri(folder: Path) -> str:
    """The SQLite store of one imported hand-in: ``folder/mlflow.db``."""
    return f"sqlite:///{Path(folder).resolve()}/mlflow.db"


def import_into(handin: Handin, folder: Path) -> str:
    """Recreate the hand-in's experiments in a new store in ``folder`` (which must not hold one); its URI."""
    folder = Path(folder)
    if (folder / "mlflow.db").exists():
        raise AssignmentError(f"{folder} already holds a store: import each hand-in into a folder of its own")
    folder.mkdir(parents=True, exist_ok=True)
    uri = store_uri(folder)
    with tracking.using_store(uri):
        for name, runs in handin.experiments.items():
            tracking.import_runs(name, runs)
    return uri
