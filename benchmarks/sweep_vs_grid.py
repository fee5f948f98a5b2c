"""Benchmark: a sweep's trials against a grid's at equal budget and architecture, idle and beside busy processes.

The README's digits sweep once took 8.2 s of training per trial beside CPU-burning processes, where the grid
beside it took 0.9 s. A sweep trains one trial at a time in its own process; it used every core's thread, and
now uses one, as each of a grid's workers (one per core) does. This runs both, each in a fresh process, on the
same data (digits),
budget (epochs) and CNN (the defaults, BatchNorm), searching / crossing learning rate x weight decay, first with
nothing else running ("idle": the machine as it is; its load average is printed) and then beside ``--burners``
processes that spin on a CPU each. It prints each one's per-trial wall time (a run's start to its end in the
store: what one trial takes) and the sweep / grid ratio; the goal is at most 1.5 under load and idle.

``--before`` adds the sweep as it ran before: every core's thread, and OpenMP's default wait policy (its threads
spin while they wait; ``import lib`` now sets ``OMP_WAIT_POLICY=PASSIVE``).

Run: ``.venv/bin/python benchmarks/sweep_vs_grid.py [--trials 12] [--epochs 10] [--burners 2] [--before]``.
Uses a temporary MLflow store. On a shared machine the "idle" numbers are whatever else runs: say so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LRS = [3e-4, 1e-3, 3e-3, 1e-2]
WEIGHT_DECAYS = [1e-5, 1e-4, 1e-3]
SPACE = {"lr": {"loguniform": [3e-4, 1e-2]}, "weight_decay": {"loguniform": [1e-5, 1e-3]}}


def _child(kind: str, trials: int, epochs: int, store: str, before: bool) -> dict:
    """In a fresh process: run the grid or the sweep and return each trial's wall and training seconds."""
    import lib  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)

    if before:
        os.environ.pop("OMP_WAIT_POLICY", None)  # OpenMP's own default, as before the package set it
        from lib.engine import local_backend

        train = local_backend._run_in_process  # every core's thread, as before
        local_backend._run_in_process = lambda feed, data, threads: train(feed, data, os.cpu_count() or 1)
    from lib import tracking
    from lib.data import DataSpec
    from lib.engine.grid import run_grid
    from lib.engine.search import run_sweep

    base = {"epochs": epochs, "norm_type": "batch"}
    data = DataSpec(dataset="digits")
    experiment = f"{kind}-{'before' if before else 'now'}"
    started = time.perf_counter()
    if kind == "grid":
        points = [(lr, wd) for wd in WEIGHT_DECAYS for lr in LRS][:trials]
        factors = {"lr": sorted({p[0] for p in points}), "weight_decay": sorted({p[1] for p in points})}
        run_grid(base, factors, [0], experiment, data, progress=False)
    else:
        run_sweep(SPACE, experiment, "bench", trials, base=base, data=data, progress=False)
    elapsed = time.perf_counter() - started
    runs = [r for r in tracking.search(experiment) if r.data.tags.get("kind") == "trial"]
    walls = [(r.info.end_time - r.info.start_time) / 1000 for r in runs]
    training = [r.data.metrics.get("train_seconds", float("nan")) for r in runs]
    threads = 1 if kind == "grid" or not before else os.cpu_count() or 1
    return {"elapsed": elapsed, "walls": walls, "training": training, "threads": threads}


def _run_child(kind: str, args: argparse.Namespace, store: Path, before: bool) -> dict:
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{store}/mlflow.db", HYPERTUNE_STATE_DIR=f"{store}/state")
    env["PYTHONPATH"] = str(ROOT)
    env.pop("OMP_WAIT_POLICY", None)
    command = [sys.executable, __file__, "--child", kind, "--trials", str(args.trials), "--epochs", str(args.epochs)]
    command += ["--store", str(store)] + (["--child-before"] if before else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _line(label: str, result: dict) -> str:
    walls, training = result["walls"], result["training"]
    return (
        f"  {label:40s} {len(walls)} trials in {result['elapsed']:6.1f} s | per trial: wall median "
        f"{statistics.median(walls):5.2f} s, mean {statistics.mean(walls):5.2f} s | training mean "
        f"{statistics.mean(training):5.2f} s | {result['threads']} thread(s) per trial"
    )


def _condition(label: str, args: argparse.Namespace, burners: int) -> None:
    spinning = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(burners)]
    try:
        time.sleep(2 if burners else 0)
        load = os.getloadavg()[0]
        print(f"{label}: {burners} CPU-burning processes beside, load average {load:.2f} on {os.cpu_count()} cores")
        with tempfile.TemporaryDirectory(prefix="hypertune-sweep-vs-grid-") as folder:
            store = Path(folder)
            grid = _run_child("grid", args, store, False)
            sweep = _run_child("sweep", args, store, False)
            before = _run_child("sweep", args, store, True) if args.before else None
        print(_line("grid (workers, 1 thread each)", grid))
        print(_line("sweep (one at a time)", sweep))
        if before:
            print(_line("sweep as before (all threads, spinning)", before))
        for name, result in (("sweep", sweep), ("sweep before", before)):
            if result:
                median = statistics.median(result["walls"]) / statistics.median(grid["walls"])
                mean = statistics.mean(result["walls"]) / statistics.mean(grid["walls"])
                print(f"  {name} / grid, per-trial wall: {median:.2f}x (median), {mean:.2f}x (mean)")
        print(f"  load average at the end: {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        for process in spinning:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=12, help="trials of each, at most 12 (default 12)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per trial (default 10, as the README's)")
    parser.add_argument("--burners", type=int, default=2, help="CPU-burning processes under load (default 2)")
    parser.add_argument("--before", action="store_true", help="also the sweep as it ran before the fix")
    parser.add_argument("--child", choices=["grid", "sweep"], help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--child-before", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.trials, args.epochs, args.store, args.child_before)))
        return
    print(f"digits, {args.epochs} epochs, default CNN with BatchNorm, lr x weight decay, {args.trials} trials each")
    _condition("idle", args, 0)
    _condition("under load", args, args.burners)


if __name__ == "__main__":
    main()
