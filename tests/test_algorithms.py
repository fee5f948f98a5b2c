"""lib.engine.algorithms: a search algorithm is one file; the registry finds it, and the command line offers it.

The end-to-end test writes a toy algorithm (the corners of the space, one per step) as one new file into
lib/engine/algorithms/, finds it in ``--help``, runs ``python -m lib sweep --algo`` with it as a real process,
checks the runs it logged, and removes the file again.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import sys
import uuid

import pytest

from lib import tracking
from lib.engine import algorithms
from lib.engine.backend import StudyError
from lib.paths import PROJECT_ROOT

TOY = '''"""A toy search algorithm written by tests/test_algorithms.py, and removed by it: the corners of the space."""

from lib.engine.algorithms.base import SearchAlgorithm


class Corners(SearchAlgorithm):
    name = "{name}"
    help = "a test's toy: the corners of the space, one per step"

    def suggest(self, new_ids, domain, trials, seed):
        points = []
        for offset in range(len(new_ids)):
            step = len(trials.trials) + offset
            point = {{}}
            for bit, name in enumerate(self.setup.searched):
                value, high = self.setup.spec[name], (step >> bit) & 1
                if isinstance(value, list):
                    point[name] = high * (len(value) - 1)  # a choice by its index
                else:
                    ((_, bounds),) = value.items()
                    point[name] = float(bounds[high])
            points.append(point)
        return self.documents(new_ids, domain, trials, points)
'''


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYPERTUNE_DEBUG"} | {"PYTHONPATH": str(PROJECT_ROOT)}
    command = [sys.executable, "-m", "lib", *args]
    return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)


def _words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.slow
def test_a_search_algorithm_added_as_one_file_runs_a_sweep_from_the_command_line(mlflow_store):
    tag = uuid.uuid4().hex[:8]
    name = f"corners-{tag}"
    path = PROJECT_ROOT / "lib" / "engine" / "algorithms" / f"toy_corners_{tag}.py"
    space = mlflow_store / "space.yaml"
    space.write_text("lr: {loguniform: [0.001, 0.01]}\nnorm_type: [none, batch]\npool_kernel_size: [2]\n")
    try:
        path.write_text(TOY.format(name=name))
        importlib.reload(algorithms)  # this process finds it too: the registry and the parser's --help
        assert f"{name}: a test's toy: the corners of the space, one per step" in _words(_sweep_help())
        args = ["sweep", "--experiment", "toy", "--name", "c", "--algo", name, "--max-evals", "4"]
        args += ["--space", str(space), "--dataset", "digits", "--set", "epochs=1", "--set", "conv_out_channels=4"]
        done = _cli(*args)
    finally:
        path.unlink(missing_ok=True)
        for cached in (path.parent / "__pycache__").glob(f"{path.stem}.*"):
            cached.unlink()
        sys.modules.pop(f"lib.engine.algorithms.{path.stem}", None)
        importlib.reload(algorithms)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    runs = tracking.search("toy")
    (parent,) = [run for run in runs if run.data.tags.get("sweep_parent") == "c"]
    assert parent.data.params["algo"] == name and parent.info.status == tracking.FINISHED
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert all(run.info.status == tracking.FINISHED for run in children)
    corners = sorted((float(run.data.params["lr"]), run.data.params["norm_type"]) for run in children)
    assert corners == [(0.001, "batch"), (0.001, "none"), (0.01, "batch"), (0.01, "none")]
    assert not path.exists() and name not in algorithms.names()  # the tree is as it was


def _sweep_help() -> str:
    from lib import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        cli.main(["sweep", "--help"])
    assert exited.value.code == 0
    return out.getvalue()


def test_help_lists_every_registered_algorithm_with_its_help_line():
    text = _words(_sweep_help())
    assert f"--algo {{{','.join(algorithms.names())}}}" in text
    for name, cls in algorithms.registry().items():
        assert f"{name}: {_words(cls.help)}" in text, name
    assert {"tpe", "random", "quasirandom"} <= set(algorithms.names()) and algorithms.names()[0] == algorithms.DEFAULT


def test_an_unknown_algorithm_or_an_option_it_does_not_take_is_a_one_line_study_error():
    from lib.engine.search import DEFAULT_SPACE, algorithm_for

    with pytest.raises(StudyError, match=r"algo='grid': must be one of \['tpe', "):
        algorithm_for("grid", DEFAULT_SPACE, 30, 0)
    with pytest.raises(StudyError, match="n_startup=5: .* algo='random' has no start-up phase"):
        algorithm_for("random", DEFAULT_SPACE, 30, 0, n_startup=5)
    assert algorithm_for("tpe", DEFAULT_SPACE, 30, 0).settings() == {"n_startup": 10}
    assert algorithm_for("tpe", DEFAULT_SPACE, 6, 0, n_startup=2).settings() == {"n_startup": 2}
