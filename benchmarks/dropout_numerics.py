"""Controlled accuracy comparison: FastDropout (``dropout_impl="fast"``) against ``nn.Dropout``.

FastDropout draws the same Bernoulli masks from a different random stream (see ``lib/dropout.py``),
so results differ run by run. It may be the default only if, over several seeds, it loses no
validation accuracy beyond noise. This script trains the same grid with both implementations
through the engine (same seeds, full 55k/5k split, the course's block order with BatchNorm) and
prints the paired difference ``fast - torch`` per dropout rate with its 95% t-interval, the
training speed of both arms measured in the same trials, and the verdict by a fixed rule:

    keep "fast" as the default only if no arm shows a loss whose whole 95% CI lies below zero.

Run with ``make bench-numerics`` (about 15 minutes on 2 cores). The table is also written to
``benchmarks/results/dropout_numerics.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "dropout_numerics.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per arm (>= 3)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--dropout", type=float, nargs="+", default=[0.25, 0.5])
    parser.add_argument("--train-subset", type=int, default=None, help="default: the full 55k training split")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.seeds < 3:
        parser.error("--seeds must be >= 3 for a confidence interval worth the name")
    store = tempfile.mkdtemp(prefix="hypertune-numerics-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    os.environ["HYPERTUNE_STATE_DIR"] = f"{store}/state"
    import torch

    from lib.data import DataSpec
    from lib.engine.grid import run_grid
    from lib.stats import paired_effect, per_seed

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    frame = run_grid(
        {"norm_type": "batch", "dropout_placement": "block", "epochs": args.epochs},
        {"dropout_p": args.dropout, "dropout_impl": ["torch", "fast"]},
        list(range(args.seeds)),
        "dropout-numerics",
        DataSpec(train_subset=args.train_subset),
        progress=False,
    )
    wall = time.perf_counter() - started
    failed = frame[frame["status"] != "finished"]
    if len(failed):
        raise SystemExit(
            f"{len(failed)} trial(s) failed: {failed[['dropout_p', 'dropout_impl', 'seed']].to_dict('records')}"
        )
    lines = [
        f"# FastDropout vs nn.Dropout, {time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}",
        f"# grid: BatchNorm, block order, {args.epochs} epochs, {args.seeds} seeds, "
        f"train {args.train_subset or 'all 55,000'} images, validation 5,000; wall {wall:.0f} s; "
        f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after",
        "",
        "| dropout_p | torch val acc | fast val acc | fast - torch (pp) | 95% CI (pp) "
        "| torch img/s | fast img/s | speed-up |",
        "|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    losses = []
    for p in args.dropout:
        torch_acc = per_seed(frame, dropout_p=p, dropout_impl="torch")
        fast_acc = per_seed(frame, dropout_p=p, dropout_impl="fast")
        effect = paired_effect(fast_acc, torch_acc, f"p={p:g}")
        torch_speed = per_seed(frame, "images_per_second", dropout_p=p, dropout_impl="torch").median()
        fast_speed = per_seed(frame, "images_per_second", dropout_p=p, dropout_impl="fast").median()
        losses.append(effect.ci_high < 0)
        lines.append(
            f"| {p:g} | {torch_acc.mean():.2%} | {fast_acc.mean():.2%} | {effect.mean * 100:+.2f} | "
            f"{effect.ci_low * 100:+.2f} to {effect.ci_high * 100:+.2f} | {torch_speed:,.0f} | {fast_speed:,.0f} | "
            f"{fast_speed / torch_speed:.2f}x |"
        )
    verdict = (
        'no arm loses accuracy beyond noise: `dropout_impl="fast"` may stay the default'
        if not any(losses)
        else 'an arm loses accuracy beyond noise: make `dropout_impl="torch"` the default'
    )
    lines += ["", f"img/s: training images per second of one trial (1-thread engine workers). Verdict: {verdict}."]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
