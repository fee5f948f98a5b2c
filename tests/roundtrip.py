"""The round trip, executed once per test session: the student edition with every TODO filled in from the masters.

:func:`executed_edition` builds the edition, puts each master's solution back into its TODO cells
(``lib.assignment.stubs.fill_in``) and executes the notebooks in order, in the smoke profile, with the
edition's own ``lib`` (``PYTHONPATH`` is the edition's folder) and a temporary MLflow store, figure folder and
state. It is the one execution of ``00_by_hand`` in ``make test``: ``tests/test_by_hand.py`` compares its
outputs with the package's report and ``tests/test_handout.py`` checks the round trip and the rubric on its
store. Under pytest-xdist the first worker to ask executes it (a file lock in the folder the workers share) and
the others wait and read the same folder; a failed execution is recorded and reported to every caller.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from lib.assignment import edition, stubs

ORDER = ("00_by_hand.ipynb", "01_hypothesis.ipynb")
CLEARED = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "HYPERTUNE_EXPERIMENT_PREFIX")


def _shared_root(factory: pytest.TempPathFactory) -> Path:
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def environment(folder: Path, code: Path) -> dict[str, str]:
    """The smoke profile, a store, figures and state under ``folder``, and ``import lib`` from ``code``."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    return env | {
        "HYPERTUNE_PROFILE": "smoke",
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db",
        "HYPERTUNE_FIGURES_DIR": str(folder / "figures"),
        "HYPERTUNE_STATE_DIR": str(folder / "state"),
        "HYPERTUNE_PROGRESS_BARS": "0",
        "PYTHONPATH": str(code),
    }


def _execute(folder: Path) -> dict[str, float]:
    from nbclient import NotebookClient

    built = edition.build_edition(folder / "edition", log=None)
    seconds = {}
    with pytest.MonkeyPatch.context() as patch:
        for name in CLEARED:
            patch.delenv(name, raising=False)
        for name, value in environment(folder, built.folder).items():
            patch.setenv(name, value)
        for name in ORDER:
            student = nbformat.read(built.folder / "notebooks" / name, as_version=4)
            filled = stubs.fill_in(student, nbformat.read(edition.ASSIGNMENT_DIR / name, as_version=4))
            started = time.perf_counter()
            client = NotebookClient(
                filled,
                kernel_name="hypertune",
                timeout=600,
                resources={"metadata": {"path": str(built.folder / "notebooks")}},
            )
            try:
                client.execute()
            finally:
                (folder / "executed").mkdir(exist_ok=True)
                nbformat.write(filled, folder / "executed" / name)
            seconds[name] = round(time.perf_counter() - started, 1)
    return seconds


def imported_lib(folder: Path, code: Path) -> str:
    """Where ``import lib`` leads with the kernels' environment (the edition's own ``lib``, not the project's)."""
    probe = [sys.executable, "-c", "import lib; print(lib.__file__)"]
    return subprocess.run(
        probe,
        env=environment(folder, code),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=code / "notebooks",
        check=True,
    ).stdout.strip()


def executed_edition(factory: pytest.TempPathFactory) -> Path:
    """The folder of the one round-trip execution: ``edition/``, ``mlflow.db``, ``figures/``, ``executed/``."""
    root = _shared_root(factory)
    folder = root / "edition-roundtrip"
    with open(root / "edition-roundtrip.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder / "done.json"
        if not done.exists():
            folder.mkdir(exist_ok=True)
            try:
                result = {"ok": True, "seconds": _execute(folder)}
                result["lib"] = imported_lib(folder, folder / "edition")
            except Exception as exc:  # recorded, so a second worker reports it instead of running it again
                result = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[-3000:]}"}
            done.write_text(json.dumps(result))
        result = json.loads(done.read_text())
    if not result["ok"]:
        pytest.fail(f"the filled-in edition did not run to the end: {result['error']}")
    return folder


def result_of(folder: Path) -> dict:
    """What the execution recorded: seconds per notebook and the ``lib`` the kernels imported."""
    return json.loads((folder / "done.json").read_text())
