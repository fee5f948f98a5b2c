"""The command line under user errors: one or two lines on stderr, a non-zero exit, nothing written.

Cases run the real ``python -m lib`` in a subprocess on a temporary store, as a user would; the
table of bad inputs goes through the same error boundary (``lib.cli.main``) in this process, with two of
its cases also as real processes, so the exit code and the missing traceback are proven end to end.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lib.paths import PROJECT_ROOT

SMALL = ["--train-subset", "200", "--val-subset", "200", "--set", "epochs=1", "--set", "conv_out_channels=8"]
GRID = ["grid", "--experiment", "cli", "--workers", "1", *SMALL]


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "HYPERTUNE_DEBUG"}
    environ |= {"PYTHONPATH": str(PROJECT_ROOT)} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "lib", *args],
        cwd=PROJECT_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_cli_in_process(args: list[str]) -> subprocess.CompletedProcess:
    """``python -m lib ARGS`` through ``lib.cli.main`` in this process (a bug's traceback fails the test)."""
    from lib import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(args)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def store_file() -> Path:
    return Path(os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///"))


def assert_short_error(done: subprocess.CompletedProcess, *names: str, code: int | None = None) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0, done.stdout
    if code is not None:
        assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert 1 <= len(lines) <= 2, done.stderr
    for name in names:
        assert name in done.stderr, done.stderr


BAD_INPUTS = {
    "misspelt hyperparameter": ([*GRID, "--set", "learningrate=0.1", "--factor", "lr=0.1"], ["learningrate"]),
    "value out of range": ([*GRID, "--set", "dropout_p=1.5", "--factor", "lr=0.1"], ["dropout_p", "1.5"]),
    "empty factor": ([*GRID, "--factor", "dropout_p="], ["dropout_p"]),
    "factor without =": ([*GRID, "--factor", "dropout_p"], ["--factor", "dropout_p"]),
    "factor value out of range": ([*GRID, "--factor", "dropout_p=0,1.5"], ["dropout_p"]),
    "unknown factor": ([*GRID, "--factor", "dropoutp=0,0.5"], ["dropoutp"]),
    "negative seed": ([*GRID, "--factor", "lr=0.1", "--seeds", "-1"], ["--seeds"]),
    "seed not a number": ([*GRID, "--factor", "lr=0.1", "--seeds", "a"], ["--seeds"]),
    "workers not a number": ([*GRID, "--factor", "lr=0.1", "--workers", "x"], ["--workers"]),
    "subset of zero": ([*GRID, "--factor", "lr=0.1", "--train-subset", "0"], ["--train-subset"]),
    "missing required option": (["grid", "--experiment", "cli"], ["--factor"]),
    "unknown engine": ([*GRID, "--factor", "lr=0.1", "--engine", "spark"], ["--engine"]),
    "zero sweep evaluations": (
        ["sweep", "--experiment", "cli", "--name", "s", "--max-evals", "0", *SMALL],
        ["--max-evals"],
    ),
    "negative sweep seed": (
        ["sweep", "--experiment", "cli", "--name", "s", "--max-evals", "2", "--seed", "-1", *SMALL],
        ["--seed"],
    ),
    "missing space file": (
        ["sweep", "--experiment", "cli", "--name", "s", "--max-evals", "2", "--space", "nope.yaml", *SMALL],
        ["--space", "nope.yaml"],
    ),
    "sweep with a misspelt --set": (
        ["sweep", "--experiment", "cli", "--name", "s", "--max-evals", "2", "--set", "learningrate=0.1"],
        ["learningrate"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_a_bad_input_is_one_or_two_lines_with_a_non_zero_exit_and_nothing_written(case, isolated_outputs, monkeypatch):
    monkeypatch.delenv("HYPERTUNE_DEBUG", raising=False)
    args, names = BAD_INPUTS[case]
    done = run_cli_in_process(args)
    assert_short_error(done, *names, code=2)
    assert not store_file().exists(), "the store was created for a command that could not run"


@pytest.mark.parametrize("case", ["misspelt hyperparameter", "missing required option"])
def test_a_bad_input_in_a_real_process_is_one_or_two_lines_and_nothing_written(case, isolated_outputs):
    args, names = BAD_INPUTS[case]
    done = run_cli(args)
    assert_short_error(done, *names, code=2)
    assert not store_file().exists(), "the store was created for a command that could not run"


def test_a_bad_space_file_names_the_problem(isolated_outputs):
    space = isolated_outputs / "space.yaml"
    space.write_text("lr: {loguniform: [0.1, 0.001]}\n")  # low > high
    done = run_cli_in_process(
        ["sweep", "--experiment", "cli", "--name", "s", "--max-evals", "2", "--space", str(space), *SMALL]
    )
    assert_short_error(done, "lr", code=2)
    space.write_text("lr: [unclosed\n")
    done = run_cli_in_process(
        ["sweep", "--experiment", "cli", "--name", "s", "--max-evals", "2", "--space", str(space), *SMALL]
    )
    assert_short_error(done, "--space", code=2)
    assert not store_file().exists()


def test_debug_flag_and_environment_variable_show_the_traceback(isolated_outputs, monkeypatch):
    """The error boundary lets the exception through (Python then prints its traceback) for ``--debug`` in
    either place and for ``HYPERTUNE_DEBUG``; one real process shows the traceback end to end."""
    from lib import cli
    from lib.cli.parser import UsageError

    args = [*GRID, "--set", "learningrate=0.1", "--factor", "lr=0.1"]
    monkeypatch.delenv("HYPERTUNE_DEBUG", raising=False)
    for debug_args in (["--debug", *args], [*args, "--debug"]):
        with pytest.raises(UsageError, match="learningrate"):
            cli.main(debug_args)
    assert "Traceback" in run_cli(args, env={"HYPERTUNE_DEBUG": "1"}).stderr
    assert "Traceback" not in run_cli_in_process(args).stderr  # and without either: the one line


def test_a_data_folder_that_cannot_be_used_is_one_line_and_nothing_written(isolated_outputs):
    blocker = isolated_outputs / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    done = run_cli([*GRID, "--factor", "lr=0.001"], env={"HYPERTUNE_DATA_DIR": str(blocker)})
    assert_short_error(done, "HYPERTUNE_DATA_DIR", code=4)
    assert not store_file().exists()


def test_a_store_that_is_not_a_database_is_one_line(isolated_outputs):
    store_file().write_text("not an sqlite file")
    done = run_cli([*GRID, "--factor", "lr=0.001"])
    assert_short_error(done, str(store_file()), "move it away", code=4)
    assert store_file().read_text() == "not an sqlite file"


def test_a_store_that_cannot_be_created_is_one_line(isolated_outputs):
    blocker = isolated_outputs / "blocker"
    blocker.write_text("a file where the store's folder should be")
    done = run_cli([*GRID, "--factor", "lr=0.001"], env={"MLFLOW_TRACKING_URI": f"sqlite:///{blocker}/mlflow.db"})
    assert_short_error(done, "MLflow store", str(blocker), code=4)


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder that nobody may write: a read-only tmpfs for root (root ignores file modes), else chmod."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    if os.geteuid() != 0:
        yield folder, lambda: folder.chmod(0o555)
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"running as root and cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield folder, lambda: subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_store_that_cannot_be_written_is_one_line(read_only_folder, mlflow_store):
    folder, make_read_only = read_only_folder
    existing = folder / "mlflow.db"
    existing.write_bytes((mlflow_store / "mlflow.db").read_bytes())
    (folder / "mlflow.db").chmod(0o444)
    make_read_only()
    before = existing.read_bytes()
    done = run_cli([*GRID, "--factor", "lr=0.001"], env={"MLFLOW_TRACKING_URI": f"sqlite:///{existing}"})
    assert_short_error(done, "MLflow store", "writable", code=4)
    assert existing.read_bytes() == before
    new = run_cli([*GRID, "--factor", "lr=0.001"], env={"MLFLOW_TRACKING_URI": f"sqlite:///{folder}/sub/mlflow.db"})
    assert_short_error(new, "MLflow store", code=4)


def test_failed_trials_are_listed_with_their_reason_and_a_summary(mlflow_store):
    mixed = run_cli([*GRID, "--factor", "num_conv_blocks=2,6", "--seeds", "0"])
    assert mixed.returncode == 0, mixed.stderr
    assert "failed num_conv_blocks=6 seed=0: invalid_config: num_conv_blocks=6" in mixed.stdout
    assert "2 trials: 1 finished, 1 failed (invalid config)" in mixed.stdout

    every = run_cli([*GRID, "--factor", "num_conv_blocks=6,7", "--seeds", "0"])
    assert every.returncode == 3, every.stderr
    assert "2 trials: 0 finished, 2 failed (invalid config)" in every.stdout
    assert "Traceback" not in every.stderr


def test_a_sweep_whose_every_trial_diverges_exits_3_with_the_reason(mlflow_store):
    space = mlflow_store / "space.yaml"
    space.write_text("lr: [10.0]\noptimizer: [adam]\n")
    done = run_cli(
        ["sweep", "--experiment", "cli", "--name", "boom", "--max-evals", "2", "--space", str(space), *SMALL]
    )
    assert done.returncode == 3, done.stderr[-3000:]
    assert "failed lr=10.0 optimizer=adam" in done.stdout and "diverged: training loss" in done.stdout
    assert "2 trials: 0 finished, 2 failed (diverged)" in done.stdout
    assert "Traceback" not in done.stderr


SWEEP = ["sweep", "--experiment", "cli", "--name", "s", "--max-evals", "2", *SMALL]
ROLE_INPUTS = {
    "a factor that is also tuned": ([*GRID, "--factor", "lr=0.1", "--tune", "lr=0.01,0.1"], ["lr", "tuned"]),
    "an empty tuned range": ([*GRID, "--factor", "dropout_p=0,0.5", "--tune", "lr="], ["--tune", "lr"]),
    "overlapping tune and re-measure seeds": (
        [*GRID, "--factor", "dropout_p=0,0.5", "--tune", "lr=1e-3,1e-2", "--tune-seeds", "0,5", "--seeds", "0,1"],
        ["seeds", "[0]", "fresh"],
    ),
    "tune seeds without --tune": ([*GRID, "--factor", "dropout_p=0,0.5", "--tune-seeds", "5"], ["--tune"]),
    "a tuned value out of range": ([*GRID, "--factor", "dropout_p=0,0.5", "--tune", "lr=-1"], ["lr"]),
    "an unknown role": ([*SWEEP, "--role", "lr=boss"], ["--role", "boss"]),
    "a role for a dimension not searched": ([*SWEEP, "--role", "epochs=scientific"], ["--role", "epochs"]),
    "quasirandom with an unknown dimension type": (
        [*SWEEP, "--algo", "quasirandom", "--space", "{space}"],
        ["lr", "normal"],
    ),
    "start-up points below one": ([*SWEEP, "--startup", "0"], ["--startup"]),
    "start-up points for random search": ([*SWEEP, "--algo", "random", "--startup", "3"], ["--startup"]),
}


@pytest.mark.parametrize("case", list(ROLE_INPUTS))
def test_a_bad_role_seed_or_search_option_is_one_line_and_nothing_is_written(case, isolated_outputs, monkeypatch):
    """Through the error boundary in this process, as the table above (its real-process cases prove the exit
    code and the missing traceback end to end); a process per case cost some 3.5 s each."""
    monkeypatch.delenv("HYPERTUNE_DEBUG", raising=False)
    args, names = ROLE_INPUTS[case]
    space = isolated_outputs / "space.yaml"
    space.write_text("lr: {normal: [0.001, 0.01]}\n")
    done = run_cli_in_process([str(space) if a == "{space}" else a for a in args])
    assert_short_error(done, *names, code=2)
    assert not store_file().exists(), "the store was created for a command that could not run"


def test_a_ctrl_c_inside_a_finalizer_prints_nothing_and_other_unraisables_are_reported(capsys, monkeypatch):
    """Ctrl-C can land in a garbage-collector callback (SQLAlchemy's), where Python prints "Exception
    ignored in ..." with a traceback; the command line's hook drops exactly that case."""
    import sys

    from lib.cli import quiet_interrupts

    class RaisesOnCollect:
        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

        def __del__(self) -> None:
            raise self.exc

    monkeypatch.setattr(sys, "unraisablehook", quiet_interrupts)
    RaisesOnCollect(KeyboardInterrupt())  # collected at once: its __del__ raises inside the finalizer
    assert capsys.readouterr().err == ""
    RaisesOnCollect(ValueError("a real problem"))
    assert "a real problem" in capsys.readouterr().err
