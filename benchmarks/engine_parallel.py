"""Benchmark: a 4-trial grid through the engine, in parallel worker processes vs sequentially.

Prints aggregate training images/s of both modes, measured in the same run, their ratio, and the
wall time of a fully cached re-run. Uses a temporary MLflow store. Run: ``.venv/bin/python
benchmarks/engine_parallel.py [--train-subset N] [--epochs E]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-subset", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    store = tempfile.mkdtemp(prefix="hypertune-bench-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    os.environ["HYPERTUNE_STATE_DIR"] = f"{store}/state"
    from lib.data import DataSpec
    from lib.engine.grid import run_grid

    data = DataSpec(train_subset=args.train_subset)
    base = {"epochs": args.epochs, "norm_type": "batch", "dropout_p": 0.25}
    factors = {"lr": [1e-3, 2e-3]}
    rows = {}
    for label, workers in (("sequential (1 process, all threads)", 1), ("parallel (2 workers x 1 thread)", 2)):
        started = time.perf_counter()
        frame = run_grid(base, factors, [0, 1], f"bench-{workers}", data, workers=workers, progress=False)
        wall = time.perf_counter() - started
        images = args.train_subset * args.epochs * len(frame)
        rows[label] = images / wall
        print(
            f"{label:40s} wall {wall:6.1f} s   aggregate {images / wall:7.0f} img/s "
            "(incl. evaluation, logging, start-up)"
        )
    sequential, parallel = rows.values()
    print(f"parallel / sequential: {parallel / sequential:.2f}x")
    started = time.perf_counter()
    frame = run_grid(base, factors, [0, 1], "bench-2", data, workers=2, progress=False)
    print(
        f"fully cached re-run: {time.perf_counter() - started:.2f} s ({int(frame['cached'].sum())}/{len(frame)} cached)"
    )


if __name__ == "__main__":
    main()
