"""lib.engine.ray_backend: Ray Tune sweeps and grids that land the same MLflow records as the local engine.

Skipped without Ray (``pip install -r requirements-ray.txt``), except the install-hint test. Ray runs
with token auth and a token from the environment (no ``~/.ray/auth_token`` is written), and every Ray
process is gone at the end of the module.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from lib import tracking
from lib.config import TrialConfig
from lib.data import DataSpec
from lib.engine import ray_backend
from lib.engine.grid import run_grid, run_trials
from lib.engine.search import run_sweep
from lib.study import analysis

pytestmark = [pytest.mark.usefixtures("mlflow_store"), pytest.mark.slow]

DATA = DataSpec(train_subset=400, val_subset=200)
BASE = {"epochs": 1, "conv_out_channels": 8}
SPACE = {
    "lr": {"loguniform": [1e-3, 3e-3]},
    "dropout_p": {"uniform": [0.0, 0.5]},
    "norm_type": ["none", "batch"],
    "pool_kernel_size": [2],
}
RAY_PROCESSES = ("raylet", "gcs_server", "ray::", "default_worker.py", "dashboard/agent.py", "mlflow server")
HAS_RAY = subprocess.run([sys.executable, "-c", "import ray.tune"], capture_output=True).returncode == 0
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="Ray is not installed (pip install -r requirements-ray.txt)")


def _ray_processes(token: str) -> list[str]:
    """Ray (or MLflow server) processes of this module still alive: those whose environment holds this
    module's token. Every process Ray starts inherits it; a Ray or MLflow server of another test beside this
    one (the browser's, the class server's two-node cluster, another checkout's) does not, and is not counted."""
    found = []
    for pattern in RAY_PROCESSES:
        out = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if "pgrep" in line or "pytest" in line:
                continue
            try:
                environ = Path(f"/proc/{line.split()[0]}/environ").read_bytes().split(b"\0")
            except OSError:  # it ended meanwhile
                continue
            if f"RAY_AUTH_TOKEN={token}".encode() in environ:
                found.append(line)
    return found


@pytest.fixture(scope="module", autouse=True)
def ray_environment():
    """Token auth with a throw-away token for this module; afterwards no Ray process may be left."""
    token = secrets.token_hex(16)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "token")
        patch.setenv("RAY_AUTH_TOKEN", token)
        patch.delenv("RAY_ADDRESS", raising=False)
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        yield
    deadline = time.monotonic() + 20
    while _ray_processes(token) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _ray_processes(token) == [], "Ray or MLflow processes were left behind"


def _children(experiment: str, parent_run_id: str) -> list:
    return [run for run in tracking.search(experiment) if run.data.tags.get("mlflow.parentRunId") == parent_run_id]


def _fields(run) -> tuple[set, set, set]:
    volatile = {"mlflow.parentRunId", "mlflow.runName"}
    return set(run.data.params), set(run.data.metrics), set(run.data.tags) - volatile


def _no_ray_allowed(monkeypatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("everything is cached: Ray must not be started")

    monkeypatch.setattr(ray_backend, "ray_cluster", forbidden)


def test_asking_for_ray_without_it_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ray_backend.RayNotInstalledError, match=r"pip install -r requirements-ray\.txt") as caught:
        run_sweep(SPACE, "noray", "s", 2, base=BASE, data=DATA, progress=False, engine="ray")
    assert "pip install -e .[ray]" in str(caught.value)
    assert isinstance(caught.value, ImportError)
    with pytest.raises(ray_backend.RayNotInstalledError):
        run_grid(BASE, {"lr": [1e-3]}, [0], "noray", DATA, progress=False, engine="ray")
    assert tracking.search("noray") == []  # nothing logged before the error


@needs_ray
def test_ray_sweep_lands_the_same_records_as_local_runs(monkeypatch):
    result = run_sweep(SPACE, "ray", "tpe", 4, base=BASE, data=DATA, progress=False, engine="ray")
    assert len(result.trials) == 4 and all(trial.ok for trial in result.trials)
    children = _children("ray", result.parent_run_id)
    assert Counter(run.info.status for run in children) == {tracking.FINISHED: 4}
    assert tracking.client().get_run(result.parent_run_id).info.status == tracking.FINISHED
    starts_ends = sorted((run.info.start_time, run.info.end_time) for run in children)
    assert any(b[0] < a[1] for a, b in zip(starts_ends, starts_ends[1:], strict=False)), "no two trials overlapped"
    assert not ray_backend.import_ray().is_initialized()  # the local Ray started for the sweep is shut down

    # the same configs through the local engine (1 thread, like a Ray trial) land the same fields and key
    configs = [TrialConfig.from_flat(trial.config) for trial in result.trials]
    local = run_trials(configs, "local", DATA, {"sweep": "tpe"}, workers=1, threads_per_trial=1, progress=False)
    local_runs = {run.data.tags["trial_key"]: run for run in tracking.search("local")}
    ray_runs = {run.data.tags["trial_key"]: run for run in children}
    assert set(local_runs) == set(ray_runs) == {trial.key for trial in result.trials}
    for key, ray_run in ray_runs.items():
        local_run = local_runs[key]
        assert _fields(ray_run) == _fields(local_run)
        assert ray_run.data.params == local_run.data.params
        for tag in ("trial_key", "code_version", "split", "seed", "sweep"):
            assert ray_run.data.tags[tag] == local_run.data.tags[tag]
        assert ray_run.data.metrics["val_accuracy"] == local_run.data.metrics["val_accuracy"]
        history = tracking.metric_history(ray_run.info.run_id)
        assert history.equals(tracking.metric_history(local_run.info.run_id))
    assert [t.val_accuracy for t in local] == [t.val_accuracy for t in result.trials]
    frame = analysis.trial_runs("ray")
    assert len(frame) == 4 and set(frame["status"]) == {tracking.ROW_FINISHED}

    # cached: the same points as a Ray grid, and the complete sweep again, train nothing and start no Ray
    _no_ray_allowed(monkeypatch)
    grid = run_trials(configs, "ray", DATA, progress=False, engine="ray")
    assert all(t.cached for t in grid) and {t.run_id for t in grid} == {r.info.run_id for r in children}
    again = run_sweep(SPACE, "ray", "tpe", 4, base=BASE, data=DATA, progress=False, engine="ray")
    assert [t.run_id for t in again.trials] == [t.run_id for t in result.trials]
    assert len(_children("ray", result.parent_run_id)) == 4


@needs_ray
def test_a_ray_grid_of_trials_that_fail_at_once_records_each_once_and_returns(ray_head):
    frame = run_grid(BASE, {"num_conv_blocks": [5, 6]}, [0, 1], "rayimp", DATA, workers=2, progress=False, engine="ray")
    assert list(frame["status"]) == ["failed"] * 4 and set(frame["failure_kind"]) == {"invalid_config"}
    runs = tracking.search("rayimp")
    assert Counter(run.info.status for run in runs) == {tracking.FAILED: 4}
    assert sorted(run.data.tags["trial_key"] for run in runs) == sorted(frame["tag.trial_key"])


def _trial_actors() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "ray::ImplicitFunc"], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


@needs_ray
def test_a_ray_trial_whose_actor_is_killed_fails_with_a_reason_and_the_grid_goes_on(ray_head):
    import signal
    import threading

    long = {"epochs": 10, "conv_out_channels": 16}  # the kill (2 s in) must come before either ends
    configs = [TrialConfig.from_flat(long | {"seed": seed}) for seed in (0, 1)]
    configs.append(TrialConfig.from_flat(BASE | {"seed": 2}))
    killed: list[int] = []

    def kill_one_actor() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            running = [run for run in tracking.search("raykill") if run.info.status == tracking.RUNNING]
            actors = _trial_actors()
            if len(running) == 2 and actors:
                time.sleep(2.0)
                os.kill(actors[0], signal.SIGKILL)
                killed.append(actors[0])
            time.sleep(0.2)

    killer = threading.Thread(target=kill_one_actor, daemon=True)
    killer.start()
    data = DataSpec(train_subset=2000, val_subset=200)
    results = run_trials(configs, "raykill", data, workers=2, progress=False, engine="ray")
    killer.join()
    assert killed, "no trial actor was killed: the two long trials did not run together"
    failed = [r for r in results if not r.ok]
    assert len(failed) >= 1 and all("Ray trial error" in r.failure_reason for r in failed)
    assert results[2].ok  # the rest of the grid went on
    statuses = Counter(run.info.status for run in tracking.search("raykill"))
    assert tracking.RUNNING not in statuses and statuses[tracking.FAILED] == len(failed)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head node on loopback (as a user's cluster), one for the tests that ask for it (a Ray started
    costs some 18 CPU-seconds and 15-30 s here; the local start and shutdown are the first sweep's test),
    stopped with ``ray stop --force`` when the module ends."""
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    with pytest.MonkeyPatch.context() as patch:
        try:
            subprocess.run(
                [
                    ray_cli,
                    "start",
                    "--head",
                    f"--port={port}",
                    "--node-ip-address=127.0.0.1",
                    "--include-dashboard=false",
                    "--num-cpus=2",
                    "--disable-usage-stats",
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )
            patch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
            yield port
        finally:
            subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)


@needs_ray
def test_ray_sweep_through_a_head_node_resumes_after_ctrl_c_and_stops_early(ray_head, monkeypatch):
    space = SPACE | {"epochs": [2]}

    # Ctrl-C in the driver while the third trial's result is being logged: its run ends KILLED
    calls = []
    log_metrics = tracking.log_metrics

    def interrupt_third(run_id, metrics, step=0):
        calls.append(run_id)
        if len(calls) == 3:
            raise KeyboardInterrupt
        log_metrics(run_id, metrics, step)

    monkeypatch.setattr(tracking, "log_metrics", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(space, "head", "asha", 8, base=BASE, data=DATA, progress=False, engine="ray", early_stopping=True)
    monkeypatch.setattr(tracking, "log_metrics", log_metrics)
    runs = tracking.search("head")
    assert tracking.RUNNING not in {run.info.status for run in runs if "trial_key" in run.data.tags}
    killed = [run for run in runs if run.info.status == tracking.KILLED and "stopped_early" not in run.data.tags]
    assert killed and all(run.data.tags["failure_reason"] == "interrupted" for run in killed)

    result = run_sweep(
        space, "head", "asha", 8, base=BASE, data=DATA, progress=False, engine="ray", early_stopping=True
    )
    assert len(result.trials) == 8
    assert os.environ["RAY_ADDRESS"] and subprocess.run(["pgrep", "-f", "gcs_server"]).returncode == 0  # still up
    children = _children("head", result.parent_run_id)
    statuses = Counter(run.info.status for run in children)
    assert tracking.RUNNING not in statuses
    finished = [run for run in children if run.info.status == tracking.FINISHED]
    assert len({run.data.tags["trial_key"] for run in finished}) == len(finished)  # each point trained once
    stopped = [run for run in children if run.data.tags.get("stopped_early") == "true"]
    for run in stopped:  # ASHA's stops: KILLED, no final metrics, never read by the analysis or the cache
        assert run.info.status == tracking.KILLED and "val_accuracy" not in run.data.metrics
        assert run.data.metrics["epoch_val_accuracy"] >= 0
    assert {t.status for t in result.trials} <= {"finished", "failed"}
    assert sum(t.failure_kind == "stopped_early" for t in result.trials) + sum(t.ok for t in result.trials) == 8
    assert set(analysis.trial_runs("head")["status"]) == {tracking.ROW_FINISHED}
    assert result.best.ok

    _no_ray_allowed(monkeypatch)  # a complete sweep: nothing to train, no Ray
    again = run_sweep(space, "head", "asha", 8, base=BASE, data=DATA, progress=False, engine="ray", early_stopping=True)
    assert [t.run_id for t in again.trials] == [t.run_id for t in result.trials]
