"""A load test of a tracking server: N processes write whole runs at once; runs/s, latency, exactly-once.

What this is not: a benchmark of the training code, or specific to the class server: it writes to
whatever ``MLFLOW_TRACKING_URI`` (and login) names, through ``lib.tracking``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from lib.class_server.layout import ClassServerError
from lib.paths import PROJECT_ROOT


def load_worker(experiment: str, driver: int, seconds: float) -> dict:
    """One writer: whole runs (params, a metric, a short history, end) for ``seconds``; times each log call."""
    from lib import tracking

    exp_id = tracking.experiment_id(experiment)
    latencies, runs = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        run_id = tracking.start_run(exp_id, {"driver": driver, "seq": runs}, {"load_driver": driver, "load_seq": runs})
        began = time.perf_counter()
        tracking.log_metrics(run_id, {"val_accuracy": 0.5 + 0.001 * runs})
        latencies.append(time.perf_counter() - began)
        tracking.log_history(run_id, [{"epoch": e, "train_loss": 1.0 / e} for e in (1, 2, 3)])
        tracking.end_run(run_id)
        runs += 1
    return {"driver": driver, "runs": runs, "latencies": latencies}


def load_test(drivers: int, seconds: float, experiment: str | None = None) -> dict:
    """``drivers`` processes write whole runs at once for ``seconds`` against ``MLFLOW_TRACKING_URI``.

    Returns runs, runs/s (over the writing window), the median and p95 latency of a ``log_metrics``
    call, and the check that every run is in the store exactly once and FINISHED.
    """
    from lib import store, tracking

    experiment = experiment or f"load-{os.environ.get('MLFLOW_TRACKING_USERNAME', 'anon')}-{int(time.time())}"
    tracking.experiment_id(experiment)  # created once, before the writers race for it
    command = [sys.executable, "-m", "lib.class_server", "load-worker", experiment, "--seconds", str(seconds)]
    started = time.perf_counter()
    workers = [
        subprocess.Popen([*command, "--driver", str(d)], stdout=subprocess.PIPE, cwd=PROJECT_ROOT, text=True)
        for d in range(drivers)
    ]
    reports = []
    for worker in workers:
        out, _ = worker.communicate(timeout=seconds + 300)
        if worker.returncode != 0:
            raise ClassServerError(f"load worker exited with {worker.returncode}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.perf_counter() - started
    runs = store.stored_runs(tracking.experiment_id(experiment))
    seen: dict[tuple[str, str], int] = {}
    for run in runs:
        key = (run.tags.get("load_driver"), run.tags.get("load_seq"))
        seen[key] = seen.get(key, 0) + 1
    expected = {(str(r["driver"]), str(i)) for r in reports for i in range(r["runs"])}
    latencies = sorted(x for r in reports for x in r["latencies"])
    total = sum(r["runs"] for r in reports)

    def quantile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {
        "experiment": experiment,
        "drivers": drivers,
        "seconds": seconds,
        "wall_s": round(wall, 1),
        "runs": total,
        "runs_per_s": round(total / seconds, 2),
        "log_p50_ms": round(1000 * quantile(0.50), 1),
        "log_p95_ms": round(1000 * quantile(0.95), 1),
        "exactly_once": set(seen) == expected and all(n == 1 for n in seen.values()),
        "not_finished": sum(run.status != tracking.FINISHED for run in runs),
    }
