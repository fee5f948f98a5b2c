"""The local back-end never hangs: trials that finish together, a killed worker, a script without a main guard.

Every test here hung (or spun at 100% CPU) before issue 11 was fixed; each one runs under a deadline
so that a regression fails instead of blocking the test run.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from lib import tracking
from lib.config import TrialConfig
from lib.data import DataSpec
from lib.engine import local_backend
from lib.engine.grid import StudyError, run_grid, run_trials
from lib.paths import PROJECT_ROOT

pytestmark = pytest.mark.usefixtures("mlflow_store")

DATA = DataSpec(train_subset=200, val_subset=200)
IMPOSSIBLE = {"num_conv_blocks": [5, 6]}  # 28x28 vanishes after 5 poolings: every trial fails at once
BASE = {"epochs": 1, "conv_out_channels": 8}


@pytest.fixture
def deadline():
    """``deadline(seconds)``: a TimeoutError in the test's main thread if it still runs after ``seconds``;
    if even that cannot stop it (an exception swallowed in a loop), the test process exits a minute later
    with every thread's traceback, so a regression fails the run instead of blocking it."""

    def expire(signum, frame):
        raise TimeoutError("the engine did not return in time: it hangs")

    def arm(seconds: int) -> None:
        signal.alarm(seconds)
        faulthandler.dump_traceback_later(seconds + 60, exit=True)

    previous = signal.signal(signal.SIGALRM, expire)
    yield arm
    signal.alarm(0)
    faulthandler.cancel_dump_traceback_later()
    signal.signal(signal.SIGALRM, previous)


def _statuses(experiment: str) -> Counter:
    return Counter(run.info.status for run in tracking.search(experiment))


def _run_keys(experiment: str) -> Counter:
    return Counter(run.data.tags["trial_key"] for run in tracking.search(experiment))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _pool_workers() -> list[int]:
    """Worker processes of this test's pools: forked by a forkserver that this process started."""
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    servers = {pid for pid in pids if _parent(pid) == os.getpid() and "forkserver" in _cmdline(pid)}
    return [pid for pid in pids if _parent(pid) in servers]


def _subprocess_env(store: Path) -> dict[str, str]:
    return os.environ | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db",
        "HYPERTUNE_STATE_DIR": str(store / "state"),
        "PYTHONPATH": str(PROJECT_ROOT),
    }


def _run_bounded(command: list[str], cwd: Path, env: dict[str, str], limit: float) -> tuple[int | None, str, float]:
    """Run ``command`` in its own process group; kill the whole group after ``limit`` seconds."""
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=limit)
        return process.returncode, output, time.monotonic() - started
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return None, output, time.monotonic() - started


@pytest.mark.slow
def test_the_cli_grid_of_impossible_architectures_returns_with_four_failed_runs(mlflow_store):
    command = [sys.executable, "-m", "lib", "grid", "--experiment", "imp", "--factor", "num_conv_blocks=5,6"]
    command += ["--seeds", "0,1", "--set", "epochs=1", "--train-subset", "200", "--val-subset", "200", "--workers", "2"]
    code, output, seconds = _run_bounded(command, PROJECT_ROOT, _subprocess_env(mlflow_store), limit=60)
    assert code is not None, f"the grid hung (killed after {seconds:.0f} s):\n{output[-2000:]}"
    assert code == 3, output[-2000:]  # the documented exit code for "every trial failed"
    assert "4 trials: 0 finished, 4 failed (invalid config)" in output
    assert seconds < 30, f"the grid took {seconds:.0f} s"
    assert _statuses("imp") == {tracking.FAILED: 4}
    assert {run.data.tags["failure_kind"] for run in tracking.search("imp")} == {"invalid_config"}


class _SynchronousExecutor:
    """A fake pool: every submitted call has finished by the time ``submit`` returns, so all the
    trials in flight complete between two polls."""

    def __init__(self, *args, **kwargs) -> None:
        self.submitted = 0

    def submit(self, fn, *args, **kwargs) -> Future:
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        self.submitted += 1
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def _check_each_trial_recorded_once(frame, experiment: str, n: int) -> None:
    assert len(frame) == n and list(frame["status"]) == ["failed"] * n
    assert set(frame["failure_kind"]) == {"invalid_config"}
    assert _statuses(experiment) == {tracking.FAILED: n}
    assert set(_run_keys(experiment).values()) == {1} and set(_run_keys(experiment)) == set(frame["tag.trial_key"])


@pytest.mark.slow
def test_trials_that_all_finish_between_two_polls_are_each_recorded_once(monkeypatch, deadline):
    monkeypatch.setattr(local_backend, "ProcessPoolExecutor", _SynchronousExecutor)
    deadline(60)
    factors = IMPOSSIBLE | {"conv_out_channels": [8, 16]}
    frame = run_grid(BASE, factors, [0, 1], "together", DATA, workers=2, progress=False)
    _check_each_trial_recorded_once(frame, "together", 8)


@pytest.mark.slow
def test_a_slow_poll_with_real_workers_records_every_instant_failure_once(monkeypatch, deadline):
    real_wait = local_backend.wait

    def slow_wait(*args, **kwargs):
        time.sleep(1.0)  # the parent is busy (logging) while both workers finish
        return real_wait(*args, **kwargs)

    monkeypatch.setattr(local_backend, "wait", slow_wait)
    deadline(90)
    frame = run_grid(BASE, IMPOSSIBLE, [0, 1, 2], "slowpoll", DATA, workers=2, progress=False)
    _check_each_trial_recorded_once(frame, "slowpoll", 6)


def _pools_whose_first_breaks_after_one_trial() -> type:
    """Fake pools (as ``_SynchronousExecutor``) of which the first loses its worker after one trial and
    before the next is handed over: it refuses that one with BrokenProcessPool, as a real pool does
    once a worker is gone (CI hit it: a trial ended, then the kill came before the next ``submit``)."""
    started: list[object] = []

    class Pool(_SynchronousExecutor):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__()
            started.append(self)
            self.breaks = len(started) == 1

        def submit(self, fn, *args, **kwargs) -> Future:
            if self.breaks and self.submitted >= 2:  # the start-up call and one trial went through
                raise BrokenProcessPool("A child process terminated abruptly")
            return super().submit(fn, *args, **kwargs)

    Pool.started = started
    return Pool


@pytest.mark.slow
def test_a_worker_that_dies_between_two_trials_fails_none_and_the_next_pool_takes_the_refused_trial(
    monkeypatch, deadline
):
    pool = _pools_whose_first_breaks_after_one_trial()
    monkeypatch.setattr(local_backend, "ProcessPoolExecutor", pool)
    deadline(60)
    configs = [TrialConfig.from_flat(BASE | {"seed": seed}) for seed in (0, 1, 2)]
    results = run_trials(configs, "between", DATA, workers=2, progress=False)
    assert [r.status for r in results] == ["finished"] * 3
    assert len(pool.started) == 2  # the broken pool was replaced once
    assert _statuses("between") == {tracking.FINISHED: 3}
    assert set(_run_keys("between").values()) == {1}  # each trial recorded once: the refused one too


def _kill_a_worker_when_two_trials_run(experiment: str, killed: list[int]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = _pool_workers()
        running = [run for run in tracking.search(experiment) if run.info.status == tracking.RUNNING]
        if len(workers) >= 2 and len(running) == 2:
            time.sleep(1.0)  # both workers have taken a trial and are training
            os.kill(workers[0], signal.SIGKILL)
            killed.append(workers[0])
            return
        time.sleep(0.05)


@pytest.mark.slow
def test_a_worker_killed_with_two_trials_in_flight_fails_both_and_the_grid_goes_on(deadline):
    long = {"epochs": 40, "conv_out_channels": 16}  # killed after about 1 s: neither may end before it
    data = DataSpec(train_subset=2000, val_subset=200)
    configs = [TrialConfig.from_flat(long | {"seed": seed}) for seed in (0, 1)]
    configs.append(TrialConfig.from_flat(BASE | {"seed": 2}))
    killed: list[int] = []
    killer = threading.Thread(target=_kill_a_worker_when_two_trials_run, args=("killed", killed), daemon=True)
    killer.start()
    deadline(180)
    results = run_trials(configs, "killed", data, workers=2, threads_per_trial=1, progress=False)
    killer.join()
    assert killed, "no worker was killed: the two long trials did not run together"
    assert [r.status for r in results] == ["failed", "failed", "finished"]
    for result in results[:2]:
        assert result.failure_kind == "error" and "worker process died" in result.failure_reason
        run = tracking.client().get_run(result.run_id)
        assert run.info.status == tracking.FAILED and "worker process died" in run.data.tags["failure_reason"]
    assert _statuses("killed") == {tracking.FAILED: 2, tracking.FINISHED: 1}  # nothing left RUNNING
    time.sleep(0.5)
    assert _pool_workers() == [], "worker processes were left behind"


NO_GUARD_SCRIPT = """
from lib.config import TrialConfig
from lib.engine.grid import run_trials
from lib.data import DataSpec

configs = [TrialConfig.from_flat({"epochs": 1, "conv_out_channels": 8, "seed": seed}) for seed in (0, 1)]
run_trials(configs, "noguard", DataSpec(train_subset=200, val_subset=200), workers=2, progress=False)
print("the study returned")
"""


@pytest.mark.slow
def test_a_script_without_the_main_guard_stops_at_once_with_a_one_line_error(mlflow_store):
    script = mlflow_store / "study.py"
    script.write_text(NO_GUARD_SCRIPT)
    code, output, seconds = _run_bounded(
        [sys.executable, str(script)], mlflow_store, _subprocess_env(mlflow_store), limit=60
    )
    assert code is not None, f"the script spun until killed after {seconds:.0f} s:\n{output[-2000:]}"
    assert code != 0 and "the study returned" not in output
    last = output.strip().splitlines()[-1]
    assert "StudyError:" in last and "workers=2" in last, last
    assert 'if __name__ == "__main__":' in last
    assert seconds < 45
    assert tracking.RUNNING not in _statuses("noguard")


def test_the_main_guard_error_is_raised_when_workers_die_while_starting(monkeypatch, deadline):
    from concurrent.futures.process import BrokenProcessPool

    class DeadAtStart(_SynchronousExecutor):
        def submit(self, fn, *args, **kwargs) -> Future:
            future: Future = Future()
            future.set_exception(BrokenProcessPool("a child process terminated abruptly"))
            return future

    monkeypatch.setattr(local_backend, "ProcessPoolExecutor", DeadAtStart)
    deadline(30)
    with pytest.raises(StudyError, match='if __name__ == "__main__":'):
        run_grid(BASE, {"lr": [1e-3, 2e-3]}, [0], "dead", DATA, workers=2, progress=False)
    assert tracking.RUNNING not in _statuses("dead")


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_each_epoch_is_logged_when_it_ends(workers, deadline):
    deadline(180)
    configs = [TrialConfig.from_flat(BASE | {"epochs": 3, "seed": seed}) for seed in range(workers)]
    results = run_trials(configs, "epochs", DATA, workers=workers, threads_per_trial=1, progress=False)
    for result in results:
        assert result.ok
        history = tracking.client().get_metric_history(result.run_id, "epoch_val_accuracy")
        assert sorted(m.step for m in history) == [1, 2, 3]
        times = [m.timestamp for m in sorted(history, key=lambda m: m.step)]
        assert times[0] < times[1] < times[2], f"epochs logged in one batch at the end: {times}"
