"""Benchmark: the same 8-trial TPE sweep on the local engine and on Ray Tune, side by side in one run.

Prints, for each engine, the wall time and the aggregate training images/s (images trained by all
trials / wall time, so start-up, evaluation and logging count against it), and for Ray its start-up
time (``ray.init`` until the cluster answers) and the peak memory of its processes (raylet, GCS,
workers; sampled every 0.2 s with psutil) next to the driver's. Each engine gets a fresh temporary
MLflow store, so nothing is cached. Run: ``.venv/bin/python benchmarks/ray_vs_local.py
[--trials 8] [--train-subset 3000] [--epochs 2]`` (needs ``pip install -r requirements-ray.txt``).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SPACE = {
    "norm_type": ["none", "batch"],
    "dropout_p": {"uniform": [0.0, 0.5]},
    "lr": {"loguniform": [5e-4, 5e-3]},
    "conv_out_channels": [16, 32],
    "batch_size": [128],
}
RAY_NAMES = ("raylet", "gcs_server", "ray::", "default_worker.py", "dashboard", "runtime_env", "log_monitor")


class RaySampler:
    """Peak summed RSS of Ray's own processes (not the driver), sampled in a background thread."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval, self.peak, self.processes = interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total, count = 0, 0
            for proc in psutil.process_iter(["cmdline", "memory_info"]):
                cmdline = " ".join(proc.info["cmdline"] or [])
                if proc.info["memory_info"] and any(name in cmdline for name in RAY_NAMES):
                    total += proc.info["memory_info"].rss
                    count += 1
            if total > self.peak:
                self.peak, self.processes = total, count
            self._stop.wait(self.interval)

    def __enter__(self) -> RaySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def fresh_store() -> None:
    store = tempfile.mkdtemp(prefix="hypertune-ray-bench-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    os.environ["HYPERTUNE_STATE_DIR"] = f"{store}/state"


def images(trials: list, train_subset: int) -> int:
    return sum(train_subset * trial.epochs_run for trial in trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--train-subset", type=int, default=3000)
    parser.add_argument("--val-subset", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    from lib.data import DataSpec
    from lib.engine import ray_backend
    from lib.engine.search import run_sweep

    data = DataSpec(train_subset=args.train_subset, val_subset=args.val_subset)
    base = {"epochs": args.epochs}
    data.load()  # the split is cached in this process for both engines' driver
    load = os.getloadavg()
    print(f"{args.trials}-trial TPE sweep, {args.train_subset} training images x {args.epochs} epochs per trial, ")
    print(f"{os.cpu_count()} cores, load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")

    fresh_store()
    started = time.perf_counter()
    local = run_sweep(SPACE, "bench", "local", args.trials, base=base, data=data, progress=False)
    local_wall = time.perf_counter() - started
    local_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    fresh_store()
    with RaySampler() as sampler:
        started = time.perf_counter()
        with ray_backend.ray_cluster() as cluster:
            ray_result = run_sweep(
                SPACE, "bench", "ray", args.trials, base=base, data=data, progress=False, engine="ray"
            )
        ray_wall = time.perf_counter() - started
    driver_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print()
    print("| engine | wall s | trials finished | aggregate img/s | best val acc |")
    print("|---|---:|---:|---:|---:|")
    for name, result, wall in (
        ("local (sequential, all threads)", local, local_wall),
        ("ray (1 CPU per trial, concurrent)", ray_result, ray_wall),
    ):
        finished = sum(t.ok for t in result.trials)
        rate = images(result.trials, args.train_subset) / wall
        print(
            f"| {name} | {wall:.1f} | {finished}/{len(result.trials)} | {rate:,.0f} | {result.best.val_accuracy:.4f} |"
        )
    print()
    print(
        f"Ray vs local wall time: {local_wall / ray_wall:.2f}x faster"
        if ray_wall < local_wall
        else f"Ray vs local wall time: {ray_wall / local_wall:.2f}x slower"
    )
    print(
        f"Ray start-up (ray.init until the cluster answers): {cluster.startup_seconds:.1f} s, "
        f"{cluster.cpus:.0f} CPUs, {cluster.gpus:.0f} GPUs"
    )
    print(
        f"Ray processes' peak RSS (summed, {sampler.processes} processes at the peak): {sampler.peak / 2**20:,.0f} MiB"
    )
    print(f"Driver peak RSS: {driver_rss:,.0f} MiB (after the local sweep: {local_rss:,.0f} MiB)")


if __name__ == "__main__":
    main()
