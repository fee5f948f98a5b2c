"""lib.engine: cached, resumable (Ctrl-C and kill -9), fail-safe and parallel grids of real trials."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import torch

from lib import data as data_module
from lib import tracking
from lib.config import TrialConfig
from lib.data import DataSpec
from lib.engine import local_backend
from lib.engine.grid import StudyError, run_grid, run_trials
from lib.engine.trial import execute_trial
from lib.paths import PROJECT_ROOT

pytestmark = pytest.mark.usefixtures("mlflow_store")

DATA = DataSpec(train_subset=400, val_subset=200)
BASE = {"epochs": 1, "conv_out_channels": 8}


def _statuses(experiment: str) -> Counter:
    return Counter(run.info.status for run in tracking.search(experiment))


def _finished_keys(experiment: str) -> list[str]:
    return [run.data.tags["trial_key"] for run in tracking.search(experiment) if run.info.status == tracking.FINISHED]


def _forbid_training(monkeypatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("execute_trial must not be called here")

    monkeypatch.setattr(local_backend, "execute_trial", forbidden)


def _interrupt_on_call(monkeypatch, n: int) -> list[int]:
    """Patch the local back-end's execute_trial: real trials, but Ctrl-C on call ``n`` (before it trains)."""
    calls: list[int] = []

    def wrapper(config, data, progress=False, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return execute_trial(config, data, progress=progress, **kwargs)

    monkeypatch.setattr(local_backend, "execute_trial", wrapper)
    return calls


@pytest.mark.slow
def test_cache_hit_skips_training(monkeypatch):
    first = run_grid(BASE, {"lr": [1e-3, 2e-3]}, [0], "cache", DATA, workers=1, progress=False)
    assert list(first["status"]) == ["finished", "finished"]
    assert not first["cached"].any()
    assert _statuses("cache") == {tracking.FINISHED: 2}

    _forbid_training(monkeypatch)
    second = run_grid(BASE, {"lr": [1e-3, 2e-3]}, [0], "cache", DATA, workers=1, progress=False)
    assert second["cached"].all()
    assert list(second["val_accuracy"]) == list(first["val_accuracy"])
    assert list(second["val_loss"]) == list(first["val_loss"])
    assert list(second["run_id"]) == list(first["run_id"])
    assert list(second["tag.trial_key"]) == list(first["tag.trial_key"])
    assert _statuses("cache") == {tracking.FINISHED: 2}
    assert len(tracking.runs_frame("cache")) == 2


@pytest.mark.slow
def test_ctrl_c_marks_the_trial_killed_and_a_rerun_resumes(monkeypatch):
    factors = {"lr": [1e-3, 2e-3, 3e-3, 4e-3]}
    calls = _interrupt_on_call(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run_grid(BASE, factors, [0], "ctrlc", DATA, workers=1, progress=False)
    assert len(calls) == 3
    assert _statuses("ctrlc") == {tracking.FINISHED: 2, tracking.KILLED: 1}
    (killed,) = [run for run in tracking.search("ctrlc") if run.info.status == tracking.KILLED]
    assert killed.data.tags["failure_reason"] == "interrupted"

    monkeypatch.setattr(local_backend, "execute_trial", execute_trial)
    frame = run_grid(BASE, factors, [0], "ctrlc", DATA, workers=1, progress=False)
    assert list(frame["status"]) == ["finished"] * 4
    assert list(frame["cached"]) == [True, True, False, False]
    assert _statuses("ctrlc") == {tracking.FINISHED: 4, tracking.KILLED: 1}
    keys = _finished_keys("ctrlc")
    assert len(keys) == 4 and set(keys) == set(frame["tag.trial_key"])
    assert killed.data.tags["trial_key"] in keys  # the interrupted trial was trained again


@pytest.mark.slow
def test_kill_9_leaves_a_running_run_that_the_next_call_marks_killed_and_retrains(mlflow_store):
    # trials of a second or two, so the kill lands inside one, not in the instant between two
    base = {"epochs": 3, "conv_out_channels": 8}
    factors = {"lr": [1e-3, 2e-3, 3e-3]}
    data = DataSpec(train_subset=1500, val_subset=200)
    tracking.client()  # the store exists before the child opens it
    code = (
        "from lib.engine.grid import run_grid\n"
        "from lib.data import DataSpec\n"
        f"run_grid({base!r}, {factors!r}, [0], 'kill9', DataSpec(train_subset=1500, val_subset=200), "
        "workers=1, progress=False)\n"
    )
    with open(mlflow_store / "child.log", "w") as log:
        child = subprocess.Popen(
            [sys.executable, "-c", code], cwd=PROJECT_ROOT, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            counts = _statuses("kill9")
            if counts[tracking.FINISHED] >= 1 and counts[tracking.RUNNING] >= 1:
                break
            if child.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        exit_code = child.poll()
        if exit_code is None:
            os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()  # reap it: a zombie would still answer os.kill(pid, 0)
    if exit_code is not None:
        counts = _statuses("kill9")
        if exit_code == 0 and counts[tracking.FINISHED] == 3:
            pytest.skip("the child finished all trials before it could be killed")
        pytest.fail(f"child exited with {exit_code} ({dict(counts)}):\n{(mlflow_store / 'child.log').read_text()}")
    assert counts[tracking.FINISHED] >= 1, f"no trial finished within 60 s: {dict(counts)}"

    stale = [run for run in tracking.search("kill9") if run.info.status == tracking.RUNNING]
    assert len(stale) == 1
    assert stale[0].data.tags["pid"] == str(child.pid)
    finished_before = set(_finished_keys("kill9"))

    frame = run_grid(base, factors, [0], "kill9", data, workers=1, progress=False)
    killed = tracking.client().get_run(stale[0].info.run_id)
    assert killed.info.status == tracking.KILLED
    assert killed.data.tags["failure_reason"] == "interrupted (owner process gone)"
    keys = _finished_keys("kill9")
    assert len(keys) == 3 and set(keys) == set(frame["tag.trial_key"])
    assert set(frame.loc[frame["cached"], "tag.trial_key"]) == finished_before
    assert stale[0].data.tags["trial_key"] in keys
    assert _statuses("kill9")[tracking.RUNNING] == 0


@pytest.mark.slow
def test_failed_trials_are_logged_and_the_grid_goes_on(monkeypatch):
    base = BASE | {"optimizer": "sgd", "norm_type": "none"}
    factors = {"lr": [10.0, 0.01], "num_conv_blocks": [2, 5]}  # (10, 2) diverges, 5 blocks vanish on 28x28
    frame = run_grid(base, factors, [0], "failing", DATA, workers=1, progress=False)
    assert list(zip(frame["lr"], frame["num_conv_blocks"], strict=True)) == [(10.0, 2), (10.0, 5), (0.01, 2), (0.01, 5)]
    assert list(frame["status"]) == ["failed", "failed", "finished", "failed"]
    assert list(frame["failure_kind"]) == ["diverged", "invalid_config", "", "invalid_config"]
    assert not frame["cached"].any()
    assert frame.loc[2, "val_accuracy"] > 0.1  # better than chance on 10 classes

    mlflow_client = tracking.client()
    for row in frame.itertuples():
        run = mlflow_client.get_run(row.run_id)
        if row.status == "finished":
            assert run.info.status == tracking.FINISHED
            assert "failure_kind" not in run.data.tags
        else:
            assert run.info.status == tracking.FAILED
            assert run.data.tags["failure_kind"] == row.failure_kind
            assert run.data.tags["failure_reason"]
    diverged = mlflow_client.get_run(frame.loc[0, "run_id"]).data.tags["failure_reason"]
    invalid = mlflow_client.get_run(frame.loc[1, "run_id"]).data.tags["failure_reason"]
    assert "nan" in diverged.lower() or "inf" in diverged.lower()
    assert "num_conv_blocks=5" in invalid
    assert _statuses("failing") == {tracking.FAILED: 3, tracking.FINISHED: 1}

    _forbid_training(monkeypatch)  # deterministic failures are cached like successes
    again = run_grid(base, factors, [0], "failing", DATA, workers=1, progress=False)
    assert again["cached"].all()
    assert list(again["status"]) == list(frame["status"])
    assert list(again["failure_kind"]) == list(frame["failure_kind"])
    assert list(again["run_id"]) == list(frame["run_id"])
    assert _statuses("failing") == {tracking.FAILED: 3, tracking.FINISHED: 1}


@pytest.mark.slow
def test_parallel_workers_give_exactly_the_sequential_results():
    factors, seeds = {"lr": [1e-3, 3e-3]}, [0, 1]
    sequential = run_grid(BASE, factors, seeds, "sequential", DATA, workers=1, threads_per_trial=1, progress=False)
    parallel = run_grid(BASE, factors, seeds, "parallel", DATA, workers=2, threads_per_trial=1, progress=False)
    assert len(sequential) == len(parallel) == 4
    assert (sequential["status"] == "finished").all() and (parallel["status"] == "finished").all()
    assert not parallel["cached"].any()
    columns = ["lr", "seed", "tag.trial_key", "val_accuracy", "val_loss", "epochs_run", "n_parameters"]
    left = sequential[columns].sort_values(["lr", "seed"]).reset_index(drop=True)
    right = parallel[columns].sort_values(["lr", "seed"]).reset_index(drop=True)
    assert left.to_dict("records") == right.to_dict("records")
    assert left["val_loss"].nunique() == 4  # the seeds and learning rates really differ
    assert _statuses("parallel") == {tracking.FINISHED: 4}


def test_trial_results_do_not_depend_on_the_thread_count_at_data_load_time():
    config = TrialConfig.from_flat(BASE)
    means, losses = [], []
    try:
        for threads in (2, 1):
            data_module._load.cache_clear()
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                means.append(DATA.load().mean)
            finally:
                torch.set_num_threads(previous)
            losses.append(local_backend._in_process(config, DATA, 1, progress=False).val_loss)
    finally:
        data_module._load.cache_clear()
    assert means[0] == means[1]
    assert losses[0] == losses[1]


@pytest.mark.parametrize(
    ("factors", "seeds", "message"),
    [
        ({"learningrate": [0.1]}, [0], "learningrate"),
        ({"lr": []}, [0], "no values"),
        ({"lr": [1e-3]}, [], "seeds"),
        ({"seed": [0, 1]}, [0], "seeds"),
        ({"norm_type": ["bogus"]}, [0], "norm_type"),
        ([("lr", [1e-3])], [0], "dict"),
    ],
)
def test_invalid_study_definitions_raise_before_training(monkeypatch, factors, seeds, message):
    _forbid_training(monkeypatch)
    with pytest.raises(StudyError, match=message):
        run_grid(BASE, factors, seeds, "invalid", DATA, workers=1, progress=False)
    assert tracking.search("invalid") == []


@pytest.mark.parametrize("workers", [0, -1, "two"])
def test_bad_workers_value_raises_study_error_before_training(monkeypatch, workers):
    _forbid_training(monkeypatch)
    with pytest.raises(StudyError, match="workers"):
        run_grid(BASE, {"lr": [1e-3]}, [0], "workers", DATA, workers=workers, progress=False)
    assert tracking.search("workers") == []


def test_empty_study_raises_study_error(monkeypatch):
    _forbid_training(monkeypatch)
    with pytest.raises(StudyError, match="empty"):
        run_trials([], "empty", DATA, workers=1, progress=False)


@pytest.mark.slow
def test_duplicate_canonical_configs_train_once():
    base = BASE | {"dropout_p": 0.0}
    frame = run_grid(base, {"dropout_placement": ["block", "head"]}, [0], "dupes", DATA, workers=1, progress=False)
    assert len(frame) == 2
    assert frame["run_id"].nunique() == 1 and frame["tag.trial_key"].nunique() == 1
    assert (frame["status"] == "finished").all()
    assert _statuses("dupes") == {tracking.FINISHED: 1}
