"""A study stopped anywhere leaves nothing RUNNING, no stray process and one line on the terminal.

The analysis run of a notebook (``tracking.analysis_run``) is opened and closed inside each logging
step; ``python -m lib study`` is stopped for real here (Ctrl-C during training and during an analysis
step, ``kill -9`` of its process group, a notebook run half-way and abandoned) on a tiny generated
notebook, and the same command is run again. Try-out profiles write to ``runs/<profile>/``.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from lib import cli, tracking
from lib.paths import PROJECT_ROOT
from lib.study import runner

INTERRUPTED_LINE = "interrupted: trials in flight were marked KILLED"

# The tiny study: two short trials (one trains while the test presses Ctrl-C), an analysis run with three
# steps, a slow step to stop in (TINY_SLEEP seconds), a child process that stands for a trial worker, and
# the kernel's pid, its child's pid and its socket folder written to TINY_PIDS for the test to check.
TINY_CELLS = [
    "import ipykernel, json, os, subprocess, threading, time\nfrom lib import tracking\nfrom lib.data import DataSpec\n"
    "from lib.engine.grid import run_grid\nprofile = os.environ['HYPERTUNE_PROFILE']\n"
    "child = subprocess.Popen(['sleep', '300'])  # stands for a trial worker: it must die with the kernel\n"
    "threading.Thread(target=child.wait, daemon=True).start()  # reaped when it ends, as a pool reaps its workers\n"
    "sockets = os.path.dirname(json.loads(ipykernel.get_connection_info())['ip']) or '-'  # '-': TCP, no files\n"
    "with open(os.environ['TINY_PIDS'], 'a') as f:\n    f.write(f'{os.getpid()} {child.pid} {sockets}\\n')\n"
    "analysis = tracking.analysis_run('tiny', notebook='tiny', profile=profile, params={'lr': [1e-3, 3e-3]})",
    "results = run_grid({'epochs': 3}, {'lr': [1e-3, 3e-3]}, [0], 'tiny',\n"
    "                   DataSpec(train_subset=1000, val_subset=200), workers=1, progress=False)\n"
    "print('cached', int(results['cached'].sum()), 'of', len(results))",
    "analysis.log_metrics({'best': float(results['val_accuracy'].max())})",
    "with analysis as run:  # a slow logging step\n    tracking.set_tags(run, {'slow_step': 'started'})\n"
    "    time.sleep(float(os.environ.get('TINY_SLEEP', '0')))",
    "analysis.complete()\nchild.kill()",
]


def _tiny_notebook(path: Path) -> Path:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in TINY_CELLS])
    notebook.metadata["kernelspec"] = {"name": "hypertune", "display_name": "Python (hypertune)", "language": "python"}
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def tiny(mlflow_store, monkeypatch):
    """The tiny notebook, its command line and the environment the study runs in."""
    notebook = _tiny_notebook(mlflow_store / "tiny.ipynb")
    monkeypatch.setenv("TINY_PIDS", str(mlflow_store / "pids"))
    monkeypatch.setenv("PYTHONPATH", str(PROJECT_ROOT))
    command = [sys.executable, "-m", "lib", "study", "--profile", "smoke", "--notebooks", str(notebook)]
    return mlflow_store, command + ["--output-dir", str(mlflow_store / "out")]


def _rows(store: Path, sql: str) -> list[tuple]:
    try:
        with sqlite3.connect(store / "mlflow.db", timeout=5) as db:
            return db.execute(sql).fetchall()
    except sqlite3.OperationalError:  # busy or not created yet
        return []


def _statuses(store: Path) -> list[tuple[str, str]]:
    return _rows(store, "SELECT name, status FROM runs ORDER BY start_time")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_and_stop(command: list[str], store: Path, when: str, signum: int, sleep: str = "120"):
    """Start ``lib study`` as a terminal would (its own process group), send ``signum`` to the group
    once ``when`` holds, and return (exit code, stdout, stderr)."""
    env = dict(os.environ, TINY_SLEEP=sleep)
    # A terminal's program gets SIGINT's default action; a test started from a background shell inherits
    # SIGINT *ignored* (and Python then installs no KeyboardInterrupt handler), so restore the default.
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, preexec_fn=_default_sigint)  # fmt: skip
    queries = {  # a trial that has logged an epoch (it is training), or the analysis run inside its slow step
        "training": "SELECT r.name FROM runs r JOIN metrics m ON m.run_uuid = r.run_uuid "
        "WHERE r.status = 'RUNNING' AND r.name NOT LIKE 'analysis-%'",
        "analysis": "SELECT r.name FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
        "WHERE r.status = 'RUNNING' AND r.name LIKE 'analysis-%' AND t.key = 'slow_step'",
    }
    deadline = time.monotonic() + 240
    while not _rows(store, queries[when]):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)
    os.killpg(process.pid, signum)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" not in status.read_text()
    except OSError:
        return False


def _assert_nothing_left(store: Path) -> None:
    """The kernels, their stand-in workers and their socket folders are gone (within a few seconds)."""
    entries = [line.split() for line in (store / "pids").read_text().splitlines()]
    pids = [int(pid) for kernel, child, _ in entries for pid in (kernel, child)]
    folders = [folder for *_, folder in entries if folder != "-"]
    deadline = time.monotonic() + 15  # the reaper removes the sockets just after the kernels are gone
    while time.monotonic() < deadline and (any(_alive(p) for p in pids) or any(Path(f).exists() for f in folders)):
        time.sleep(0.2)
    assert [pid for pid in pids if _alive(pid)] == []
    assert [folder for folder in folders if Path(folder).exists()] == []


def _rerun(command: list[str], store: Path) -> str:
    """The same command again: it completes, and afterwards the store has no RUNNING run; the executed notebook."""
    done = subprocess.run(command, env=dict(os.environ, TINY_SLEEP="0"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert [row for row in _statuses(store) if row[1] == "RUNNING"] == []
    _assert_nothing_left(store)
    finished = _rows(store, "SELECT name, count(*) FROM runs WHERE status = 'FINISHED' GROUP BY name")
    assert dict(finished) == {  # nothing trained twice, one complete analysis run
        "2blk-none-do0-block-adamw-lr1e-03-s0": 1,
        "2blk-none-do0-block-adamw-lr3e-03-s0": 1,
        "analysis-tiny-smoke": 1,
    }
    return (store / "out" / "tiny.ipynb").read_text()


def _stop_reasons(store: Path) -> list[str]:
    return [
        value
        for (value,) in _rows(
            store, "SELECT t.value FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid WHERE t.key = 'stop_reason'"
        )
    ]


def test_ctrl_c_during_training_marks_the_trial_killed_prints_one_line_and_the_rerun_resumes(tiny):
    store, command = tiny
    code, out, err = _start_and_stop(command, store, "training", signal.SIGINT)
    assert code == 130
    assert err.strip().splitlines() == [err.strip()] and err.startswith(INTERRUPTED_LINE) and "Traceback" not in out
    # the kernel got the interrupt: the trial in flight ended KILLED before the command returned
    trials = [status for name, status in _statuses(store) if not name.startswith("analysis")]
    assert "KILLED" in trials and "RUNNING" not in trials
    _assert_nothing_left(store)
    assert f"cached {trials.count('FINISHED')} of 2" in _rerun(command, store)  # only the rest is trained


def test_ctrl_c_during_an_analysis_step_closes_the_analysis_run_killed(tiny):
    store, command = tiny
    code, out, err = _start_and_stop(command, store, "analysis", signal.SIGINT)
    assert code == 130 and err.strip().splitlines() == [err.strip()] and err.startswith(INTERRUPTED_LINE)
    assert "Traceback" not in out
    assert ("analysis-tiny-smoke", "KILLED") in _statuses(store)
    assert _stop_reasons(store) == ["interrupted in a logging step"]
    _assert_nothing_left(store)
    assert "cached 2 of 2" in _rerun(command, store)  # the rerun trains nothing: every trial is in the cache


def test_kill_9_of_the_process_group_takes_the_kernel_and_its_children_and_the_rerun_closes_the_stale_run(tiny):
    store, command = tiny
    code, _, _ = _start_and_stop(command, store, "analysis", signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert ("analysis-tiny-smoke", "RUNNING") in _statuses(store)  # killed inside its step: nobody could close it
    _assert_nothing_left(store)  # the reaper killed the kernel's process group and removed the sockets
    assert "cached 2 of 2" in _rerun(command, store)
    assert [reason.split(";")[0] for reason in _stop_reasons(store)] == [
        "its process ended inside a logging step (killed, or its kernel died)"
    ]


def test_a_notebook_run_half_way_and_closed_leaves_no_open_run_and_the_rerun_completes(tiny):
    """As in JupyterLab: run the first cells, then close the notebook (its kernel shuts down)."""
    from nbclient import NotebookClient

    store, command = tiny
    notebook = nbformat.read(command[command.index("--notebooks") + 1], as_version=4)
    client = NotebookClient(notebook, kernel_name="hypertune", resources={"metadata": {"path": str(store)}})
    os.environ["HYPERTUNE_PROFILE"] = "smoke"
    try:
        with client.setup_kernel():
            for index in range(3):  # set-up, training, the first logging step
                client.execute_cell(notebook.cells[index], index)
            half_way = _statuses(store)
    finally:
        del os.environ["HYPERTUNE_PROFILE"]
    assert ("analysis-tiny-smoke", "FINISHED") in half_way  # between two steps nothing is RUNNING
    assert [row for row in half_way if row[1] == "RUNNING"] == []
    # the kernel closed before the last step: its incomplete run was marked on the way out
    assert ("analysis-tiny-smoke", "KILLED") in _statuses(store)
    assert _stop_reasons(store) == ["the kernel ended before the notebook's last logging step"]
    _assert_nothing_left(store)
    assert "cached 2 of 2" in _rerun(command, store)


# --- The analysis run's rules, in one process (no kernel).


def test_each_step_opens_and_closes_the_run_and_a_value_is_logged_once(mlflow_store):
    analysis = tracking.analysis_run("exp", notebook="03", profile="smoke", params={"seeds": [0, 1]})
    assert analysis.run_id is None  # nothing is written before the first step
    with analysis as run_id:
        assert tracking.get_run(run_id).status == tracking.RUNNING
    assert tracking.get_run(run_id).status == tracking.FINISHED
    analysis.log_metrics({"best": 0.5})
    analysis.log_metrics({"best": 0.5}, last=True)  # a cell run twice: not logged twice
    assert [m.value for m in tracking.client().get_metric_history(run_id, "best")] == [0.5]
    run = tracking.get_run(run_id)
    assert run.status == tracking.FINISHED and run.tags["analysis_complete"] == "true"
    assert run.params["seeds"] == "(0,1)" and run.tags["kind"] == "analysis"


def test_a_failing_step_ends_failed_and_an_interrupted_one_killed_with_the_reason(mlflow_store):
    analysis = tracking.analysis_run("exp", notebook="03", profile="smoke")
    with pytest.raises(ValueError), analysis:
        raise ValueError("no such column")
    run = tracking.get_run(analysis.run_id)
    assert (run.status, run.tags["stop_reason"]) == (tracking.FAILED, "ValueError: no such column")
    with pytest.raises(KeyboardInterrupt), analysis.step():
        raise KeyboardInterrupt
    run = tracking.get_run(analysis.run_id)
    assert (run.status, run.tags["stop_reason"]) == (tracking.KILLED, "interrupted in a logging step")


def test_a_new_execution_closes_only_its_own_stale_runs(mlflow_store):
    exp_id = tracking.experiment_id("exp")
    dead = subprocess.Popen(["true"])
    dead.wait()

    def run(notebook: str, status: str, complete: str, pid: int) -> str:
        tags = {"kind": "analysis", "notebook": notebook, "profile": "smoke", "analysis_complete": complete}
        run_id = tracking.start_run(exp_id, {}, tags | {"pid": str(pid)})
        if status != tracking.RUNNING:
            tracking.end_run(run_id, status)
        return run_id

    killed_in_step = run("03", tracking.RUNNING, "false", dead.pid)
    stopped_between_steps = run("03", tracking.FINISHED, "false", dead.pid)
    complete = run("03", tracking.FINISHED, "true", dead.pid)
    live_owner = run("03", tracking.RUNNING, "false", os.getppid())  # another live process is writing it
    other_notebook = run("02", tracking.RUNNING, "false", dead.pid)

    analysis = tracking.analysis_run("exp", notebook="03", profile="smoke")
    assert sorted(analysis.closed) == sorted([killed_in_step, stopped_between_steps])
    status = {run_id: tracking.get_run(run_id).status for run_id in (complete, live_owner, other_notebook)}
    assert status == {complete: tracking.FINISHED, live_owner: tracking.RUNNING, other_notebook: tracking.RUNNING}
    assert tracking.get_run(stopped_between_steps).tags["stop_reason"].startswith("the notebook stopped before")


# --- Try-outs never overwrite the reference.


def test_only_the_named_reference_refresh_writes_the_committed_outputs_and_every_other_run_goes_to_runs(monkeypatch):
    monkeypatch.delenv("HYPERTUNE_FIGURES_DIR")
    root = PROJECT_ROOT
    full = runner.outputs_for("03_conv_blocks", "full", reference=True)
    assert (full.final, full.figures) == (root / "notebooks" / "03_conv_blocks.ipynb", root / "figures")
    assert full.working == root / "runs" / "full" / "notebooks" / "03_conv_blocks.ipynb"  # moved into place at the end
    for name in ("05_budget_and_search", "06_final_model"):  # the deep profile's reference notebooks
        deep = runner.outputs_for(name, "deep", reference=True)
        assert (deep.final, deep.figures) == (root / "notebooks" / f"{name}.ipynb", root / "figures")
    assert runner.outputs_for("06_final_model", "full", reference=True).final is None  # 06 is deep's, not full's
    tries = [("03_conv_blocks", "quick"), ("01_baseline", "smoke"), ("05_budget_and_search", "full")]
    tries += [("03_conv_blocks", "full"), ("05_budget_and_search", "deep")]  # make run PROFILE=full is a try-out too
    tries += [("06_final_model", "deep"), ("06_final_model", "smoke")]
    for name, profile in tries:
        tryout = runner.outputs_for(name, profile)
        assert tryout.final is None
        assert tryout.working == root / "runs" / profile / "notebooks" / f"{name}.ipynb"
        assert tryout.figures == root / "runs" / profile / "figures"
    ignored = subprocess.run(["git", "check-ignore", "-q", "runs/quick/figures/x.png"], cwd=root, check=False)
    assert ignored.returncode == 0, "runs/ must be ignored by git"
    monkeypatch.setenv("HYPERTUNE_FIGURES_DIR", "/tmp/elsewhere")  # nbval's smoke run: an explicit folder wins
    assert runner.outputs_for("01_baseline", "smoke").figures == Path("/tmp/elsewhere")


def _figure_notebook(path: Path) -> None:
    cells = [
        "from lib import plots\nimport matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([0, 1])\n"
        "print(plots.save_figure(fig, 'a_figure', 'a caption'))"
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    notebook.metadata["kernelspec"] = {"name": "hypertune", "display_name": "Python (hypertune)", "language": "python"}
    nbformat.write(notebook, path)


def test_a_try_out_writes_under_runs_and_says_where_and_a_full_run_refreshes_notebooks(tmp_path, monkeypatch, capfd):
    (tmp_path / "notebooks").mkdir()
    _figure_notebook(tmp_path / "notebooks" / "03_conv_blocks.ipynb")
    committed = (tmp_path / "notebooks" / "03_conv_blocks.ipynb").read_text()
    monkeypatch.setattr(runner, "PROJECT_ROOT", tmp_path)
    monkeypatch.delenv("HYPERTUNE_FIGURES_DIR")

    assert cli.main(["study", "--profile", "quick", "--notebooks", "03_conv_blocks"]) == 0
    out = capfd.readouterr().out
    assert (tmp_path / "notebooks" / "03_conv_blocks.ipynb").read_text() == committed  # the reference is untouched
    assert not (tmp_path / "figures").exists()
    assert (tmp_path / "runs" / "quick" / "figures" / "a_figure.png").is_file()
    executed = nbformat.read(tmp_path / "runs" / "quick" / "notebooks" / "03_conv_blocks.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"].strip() == str(tmp_path / "runs" / "quick" / "figures" / "a_figure.png")
    assert "-> runs/quick/notebooks/03_conv_blocks.ipynb, figures in runs/quick/figures/" in out
    assert "outputs are in runs/quick/" in out

    assert cli.main(["study", "--profile", "full", "--notebooks", "03_conv_blocks"]) == 0  # no --reference
    assert (tmp_path / "notebooks" / "03_conv_blocks.ipynb").read_text() == committed
    assert not (tmp_path / "figures").exists()
    assert "outputs are in runs/full/" in capfd.readouterr().out

    assert cli.main(["study", "--profile", "smoke", "--reference", "--notebooks", "03_conv_blocks"]) == 2
    assert "--reference: profile 'smoke' makes no committed outputs" in capfd.readouterr().err

    assert cli.main(["study", "--profile", "full", "--reference", "--notebooks", "03_conv_blocks"]) == 0
    refreshed = nbformat.read(tmp_path / "notebooks" / "03_conv_blocks.ipynb", as_version=4)
    assert refreshed.cells[0].outputs[0]["text"].strip() == str(tmp_path / "figures" / "a_figure.png")
    assert refreshed.metadata["papermill"]["output_path"] == "notebooks/03_conv_blocks.ipynb"
    assert not (tmp_path / "runs" / "full" / "notebooks" / "03_conv_blocks.ipynb").exists()  # moved, not copied
    assert "outputs are in runs/" not in capfd.readouterr().out


def test_a_cell_that_raises_is_one_line_naming_the_cell_and_the_notebook(tmp_path, monkeypatch, capfd):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("1 / 0")])
    notebook.metadata["kernelspec"] = {"name": "hypertune", "display_name": "Python (hypertune)", "language": "python"}
    nbformat.write(notebook, tmp_path / "broken.ipynb")
    code = cli.main(["study", "--profile", "smoke", "--notebooks", str(tmp_path / "broken.ipynb"), "--output-dir",
                     str(tmp_path / "out")])  # fmt: skip
    err = capfd.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [err.strip()]
    assert "broken stopped in cell [2] with ZeroDivisionError: division by zero" in err
    assert str(tmp_path / "out" / "broken.ipynb") in err
    assert json.loads((tmp_path / "out" / "broken.ipynb").read_text())["cells"]  # the executed notebook is kept


def test_while_a_ctrl_c_stops_the_kernel_papermill_echoes_no_cell_output():
    """IPython can fail to format a KeyboardInterrupt raised inside an import and print its own traceback
    to the cell's stderr, which papermill echoes on the terminal: while stopping, nothing is echoed."""
    import logging

    from lib.study import runner

    text = "Traceback (most recent call last):"
    record = logging.LogRecord("papermill", logging.WARNING, __file__, 1, text, None, None)
    assert runner._quiet_kernel_death(record)  # a cell's warning reaches the terminal as usual
    runner._STOPPING.set()
    try:
        assert not runner._quiet_kernel_death(record)
    finally:
        runner._STOPPING.clear()
