"""Faults on real stores and real processes: first calls at once, half-migrated stores, explosions,
a store that stops growing mid-grid, stale runs of dead processes (issue 12)."""

from __future__ import annotations

import os
import shlex
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib import cli, tracking
from lib.data import DataSpec
from lib.engine import records
from lib.engine.backend import TrialRequest
from lib.engine.grid import run_grid
from lib.engine.trial import trial_key
from lib.paths import PROJECT_ROOT

DATA = DataSpec(train_subset=200, val_subset=200)
SMALL = ["--train-subset", "200", "--val-subset", "200", "--set", "epochs=1", "--set", "conv_out_channels=8"]

ROUNDS = 3
OPEN_STORE = f"""
import os, sys, time
from pathlib import Path
from lib import tracking
import mlflow  # imported before the barrier, so the processes reach the store together
base = Path(sys.argv[1])
for round_ in range({ROUNDS}):  # one fresh store a round; the client is cached per URI, so each is opened anew
    folder = base / f"round-{{round_}}"
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{{folder}}/mlflow.db"
    (folder / f"ready-{{sys.argv[2]}}").touch()
    while not (folder / "go").exists():
        time.sleep(0.002)
    client = tracking.client()
    client.create_experiment(f"exp-{{sys.argv[2]}}")
    print(f"opened {{round_}}", flush=True)
"""


def _env(**extra: str) -> dict[str, str]:
    return os.environ.copy() | {"PYTHONPATH": str(PROJECT_ROOT)} | extra


def _schema(path: Path) -> tuple[str, list[str]]:
    with sqlite3.connect(path) as db:
        version = db.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return version, tables


def _assert_healthy(path: Path) -> None:
    version, tables = _schema(path)
    head, _ = tracking._schema_revisions()
    assert version == head
    assert not [t for t in tables if t.startswith("_alembic_tmp_")]


@pytest.mark.slow
def test_processes_that_open_a_fresh_store_together_all_succeed(tmp_path, monkeypatch):
    """Three processes open a fresh store at the same instant, three rounds in a row (three fresh stores):
    the processes import MLflow once and meet at a barrier before each round, so the race is the same
    as with new processes and the import is paid once, not once a round."""
    n = 3
    folders = [tmp_path / f"round-{round_}" for round_ in range(ROUNDS)]
    for folder in folders:
        folder.mkdir()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_STORE, str(tmp_path), str(i)],
            cwd=PROJECT_ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    try:
        for folder in folders:
            deadline = time.monotonic() + 120
            while len(list(folder.glob("ready-*"))) < n and time.monotonic() < deadline:
                if any(child.poll() is not None for child in children):
                    break  # one died: its error is reported below
                time.sleep(0.01)
            (folder / "go").touch()
        outputs = [child.communicate(timeout=180) for child in children]
    finally:
        for child in children:
            child.kill()
    for child, (out, err) in zip(children, outputs, strict=True):
        opened = [line for line in out.splitlines() if line.startswith("opened")]
        assert child.returncode == 0 and opened == [f"opened {r}" for r in range(ROUNDS)], err[-3000:]
    for folder in folders:
        store = folder / "mlflow.db"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
        _assert_healthy(store)
        names = {e.name for e in tracking.client().search_experiments()}
        assert {f"exp-{i}" for i in range(n)} <= names
        run_id = tracking.start_run(tracking.experiment_id("after"), {"a": 1}, {})
        tracking.end_run(run_id)


@pytest.mark.slow
def test_two_cli_grids_started_together_on_a_fresh_store_both_finish(isolated_outputs):
    args = [sys.executable, "-m", "lib", "grid", "--experiment", "race", "--workers", "1", "--seeds", "0", *SMALL]
    children = [
        subprocess.Popen(
            [*args, "--factor", f"lr={lr}"],
            cwd=PROJECT_ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for lr in (0.001, 0.002)
    ]
    outputs = [child.communicate(timeout=300) for child in children]
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err.decode()[-3000:]
    _assert_healthy(isolated_outputs / "mlflow.db")
    assert sorted(run.info.status for run in tracking.search("race")) == [tracking.FINISHED] * 2


def _store_at(path: Path, revision: str) -> None:
    """A store created the way MLflow does, but stopped at ``revision`` (as an interrupted migration leaves it)."""
    import sqlalchemy
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.dbmodels.initial_models import Base

    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    config = _get_alembic_config(str(engine.url))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    engine.dispose()


@pytest.mark.slow
def test_a_store_left_half_created_is_moved_aside_and_created_again(isolated_outputs):
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    revisions = [r.revision for r in ScriptDirectory.from_config(_get_alembic_config("")).walk_revisions()]
    store = isolated_outputs / "mlflow.db"
    _store_at(store, revisions[len(revisions) // 2])
    with sqlite3.connect(store) as db:
        db.execute("CREATE TABLE _alembic_tmp_experiments AS SELECT * FROM experiments")
    version, tables = _schema(store)
    assert version != revisions[0] and "_alembic_tmp_experiments" in tables

    run_id = tracking.start_run(tracking.experiment_id("repaired"), {"a": 1}, {})
    tracking.end_run(run_id)
    _assert_healthy(store)
    assert len(list(isolated_outputs.glob("mlflow.db.broken-*"))) == 1
    assert [r.info.status for r in tracking.search("repaired")] == [tracking.FINISHED]


def test_a_store_with_runs_and_leftover_migration_tables_is_repaired_and_keeps_its_runs(mlflow_store):
    run_id = tracking.start_run(tracking.experiment_id("kept"), {"a": 1}, {"note": "before"})
    tracking.end_run(run_id)
    store = mlflow_store / "mlflow.db"
    with sqlite3.connect(store) as db:
        db.execute("CREATE TABLE _alembic_tmp_runs AS SELECT * FROM runs")
    tracking._client.cache_clear()  # a new process
    assert tracking.client().get_run(run_id).data.tags["note"] == "before"
    _assert_healthy(store)
    assert len(list(mlflow_store.glob("mlflow.db.bak-*"))) == 1


def test_a_store_whose_only_copy_of_a_table_is_a_leftover_stops_with_the_fix(mlflow_store):
    run_id = tracking.start_run(tracking.experiment_id("kept"), {"a": 1}, {})
    tracking.end_run(run_id)
    store = mlflow_store / "mlflow.db"
    with sqlite3.connect(store) as db:
        db.execute("CREATE TABLE _alembic_tmp_notes AS SELECT 1 AS x")
    tracking._client.cache_clear()
    with pytest.raises(tracking.StoreError, match=r"mlflow\.db.*_alembic_tmp_notes.*move it away"):
        tracking.client()
    assert "_alembic_tmp_notes" in _schema(store)[1]  # nothing dropped


KILLED_WRITER = """
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA cache_size=1")  # spill pages into the file mid-transaction: the journal holds the originals
db.execute("BEGIN")
db.execute("UPDATE runs SET status = 'KILLED'")  # undone by the rollback
db.execute("CREATE TABLE half_written (x)")
db.executemany("INSERT INTO half_written VALUES (?)", [(b"x" * 1000,)] * 2000)
os.kill(os.getpid(), 9)
"""


@pytest.mark.slow
def test_a_writer_killed_inside_a_transaction_leaves_a_store_the_next_call_rolls_back(mlflow_store):
    """kill -9 inside a write leaves a hot journal; a read-only look cannot roll it back (SQLite says "attempt
    to write a readonly database"): the store is usable, the half-done write is undone, the runs are kept."""
    run_id = tracking.start_run(tracking.experiment_id("kept"), {"a": 1}, {"note": "before"})
    tracking.end_run(run_id)
    store = mlflow_store / "mlflow.db"
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(store)], capture_output=True, timeout=60)
    assert killed.returncode == -9 and store.with_name("mlflow.db-journal").stat().st_size > 0
    tracking._client.cache_clear()  # a new process
    run = tracking.client().get_run(run_id)
    assert (run.info.status, run.data.tags["note"]) == (tracking.FINISHED, "before")
    assert "half_written" not in _schema(store)[1]
    _assert_healthy(store)


def test_a_file_that_is_not_a_database_stops_with_the_fix(isolated_outputs):
    (isolated_outputs / "mlflow.db").write_text("hello")
    with pytest.raises(tracking.StoreError, match="not a readable SQLite database.*move it away"):
        tracking.client()


@pytest.mark.slow
def test_adam_at_lr_10_explodes_without_nan_and_is_recorded_diverged(mlflow_store):
    base = {"optimizer": "adam", "epochs": 1, "conv_out_channels": 8}
    frame = run_grid(base, {"lr": [1e-3, 10.0]}, [0], "explode", DATA, workers=1, progress=False)
    assert list(frame["status"]) == ["finished", "failed"]
    assert list(frame["failure_kind"]) == ["", "diverged"]
    assert "exploded" in frame["failure_reason"].iloc[1]
    runs = {run.data.params["lr"]: run for run in tracking.search("explode")}
    assert runs["10.0"].info.status == tracking.FAILED
    assert runs["10.0"].data.tags["failure_kind"] == "diverged"
    assert runs["0.001"].info.status == tracking.FINISHED


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.slow
def test_a_running_run_of_a_dead_process_is_closed_by_the_next_cli_call(mlflow_store):
    from lib.config import TrialConfig

    config = TrialConfig.from_flat({"epochs": 1, "conv_out_channels": 8, "lr": 0.001}).canonical()
    key = trial_key(config, DATA)
    exp_id = tracking.experiment_id("stale")
    progress = records.Progress("stale", 1, 0, enabled=False)
    recorder = records.Recorder(exp_id, DATA, records.trial_tags("stale", DATA, {}), None, progress)
    stale = recorder.open(TrialRequest(key, config))
    tracking.set_tags(stale, {"pid": str(_dead_pid())})  # as a process that died with the disk full leaves it

    args = ["grid", "--experiment", "stale", "--workers", "1", "--seeds", "0", "--factor", "lr=0.001", *SMALL]
    assert cli.main(args) == 0  # in this process: the owner's pid is another's, and that process is gone
    closed = tracking.client().get_run(stale)
    assert closed.info.status == tracking.KILLED
    assert closed.data.tags["failure_reason"] == "interrupted (owner process gone)"
    statuses = sorted(run.info.status for run in tracking.search("stale"))
    assert statuses == [tracking.FINISHED, tracking.KILLED]


@pytest.mark.slow
def test_a_store_that_stops_growing_mid_grid_is_one_line_and_the_next_call_completes(mlflow_store):
    """The file-size limit (``ulimit -f``) stands in for a full disk: SQLite's writes fail mid-grid."""
    store = mlflow_store / "mlflow.db"
    args = ["grid", "--experiment", "full", "--workers", "1", "--seeds", "0", *SMALL]
    args += ["--factor", "lr=0.001,0.002,0.003,0.004,0.005,0.006"]
    tracking.client().search_experiments()
    limit_kib = (store.stat().st_size + 40_000) // 1024
    command = f"ulimit -f {limit_kib}; exec {shlex.join([sys.executable, '-m', 'lib', *args])}"
    full = subprocess.run(
        ["bash", "-c", command], cwd=PROJECT_ROOT, env=_env(), capture_output=True, text=True, timeout=300
    )
    lines = full.stderr.strip().splitlines()
    assert full.returncode == 4, full.stderr[-3000:]
    assert "Traceback" not in full.stderr
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "MLflow store" in errors[0] and "free disk space" in errors[0]
    finished_before = [r for r in tracking.search("full") if r.info.status == tracking.FINISHED]
    assert 0 < len(finished_before) < 6  # it stopped mid-grid

    done = subprocess.run([sys.executable, "-m", "lib", *args], cwd=PROJECT_ROOT, env=_env(), capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    runs = tracking.search("full")
    assert not [r for r in runs if r.info.status == tracking.RUNNING]
    assert sum(r.info.status == tracking.FINISHED for r in runs) == 6
