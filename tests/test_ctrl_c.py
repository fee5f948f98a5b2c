"""Ctrl-C anywhere in ``grid`` and ``sweep`` prints the one interrupted line and nothing else, and the rerun resumes.

A real ``python -m lib`` process in its own process group (as a terminal runs it) gets SIGINT on the whole group
(as a terminal sends it): while torch imports, right after the worker pool's fork server starts, and while a
trial trains. Before, these printed a 40-line import traceback, the fork server's ``KeyboardInterrupt`` or a
worker's traceback, or a "leaked semaphore" warning under the line. ``study`` and a notebook it runs:
``test_stop_anywhere.py``. Progress bars are off (``HYPERTUNE_PROGRESS_BARS=0``): a bar erases itself.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib.errors import EXIT_INTERRUPTED, INTERRUPTED_LINE
from lib.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow

GRID = ["grid", "--experiment", "c", "--dataset", "digits", "--set", "epochs=3", "--factor", "dropout_p=0,0.5",
        "--seeds", "0", "--workers", "2"]  # fmt: skip
SWEEP = ["sweep", "--experiment", "c", "--dataset", "digits", "--set", "epochs=3", "--name", "s", "--max-evals", "2"]
SPACE = "lr: {loguniform: [1.0e-3, 1.0e-2]}\n"  # one searched knob: two trials are enough (no budget warning)


def _env(store: Path) -> dict[str, str]:
    return dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{store}/mlflow.db", HYPERTUNE_STATE_DIR=str(store / "st"),
                PYTHONPATH=str(PROJECT_ROOT), HYPERTUNE_PROGRESS_BARS="0")  # fmt: skip


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a test run from a background shell inherits it ignored


def _training(store: Path) -> bool:
    query = "SELECT 1 FROM runs r JOIN metrics m ON m.run_uuid = r.run_uuid WHERE r.status = 'RUNNING'"
    try:
        with sqlite3.connect(store / "mlflow.db", timeout=5) as db:
            return bool(db.execute(query).fetchall())
    except sqlite3.OperationalError:
        return False


def _importing_torch(pid: int) -> bool:
    try:
        return "libtorch_cpu" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _forkserver_started(group: int) -> bool:
    found = subprocess.run(["pgrep", "-g", str(group), "-f", "forkserver"], capture_output=True, text=True)
    return bool(found.stdout.strip())


def _interrupt(words: list[str], store: Path, when) -> tuple[int, str]:
    """Start ``python -m lib WORDS``, SIGINT its process group once ``when(pid)`` holds; (exit code, stderr)."""
    process = subprocess.Popen([sys.executable, "-m", "lib", *words], env=_env(store), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=_default_sigint)  # fmt: skip
    deadline = time.monotonic() + 240
    while not when(process.pid):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=120)
    time.sleep(1.0)  # a leaked-semaphore warning comes from the resource tracker, just after the process ends
    return process.returncode, err


def _one_line(code: int, err: str) -> None:
    assert code == EXIT_INTERRUPTED, err
    assert err == INTERRUPTED_LINE + "\n", err


@pytest.mark.parametrize("moment", ["while torch imports", "as the fork server starts"])
def test_ctrl_c_while_a_grid_starts_is_one_line(tmp_path, moment):
    when = _importing_torch if moment == "while torch imports" else _forkserver_started
    _one_line(*_interrupt(GRID, tmp_path, when))


def test_ctrl_c_while_a_grid_trains_is_one_line_and_the_rerun_resumes(tmp_path):
    _one_line(*_interrupt(GRID, tmp_path, lambda pid: _training(tmp_path)))
    done = subprocess.run([sys.executable, "-m", "lib", *GRID], env=_env(tmp_path), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2 trials: 2 finished" in done.stdout and "Traceback" not in done.stderr


def test_ctrl_c_while_a_sweep_trains_is_one_line_and_the_rerun_resumes(tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    sweep = [*SWEEP, "--space", str(tmp_path / "space.yaml")]
    _one_line(*_interrupt(sweep, tmp_path, lambda pid: _training(tmp_path)))
    done = subprocess.run([sys.executable, "-m", "lib", *sweep], env=_env(tmp_path), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2 trials; best validation accuracy" in done.stdout
    assert "Traceback" not in done.stderr
