"""Controlled accuracy comparison: bf16 autocast (``precision="bf16"``) against fp32 training.

bf16 changes the numerics of every forward pass (8 bits of mantissa instead of 24), so it may become
the default (``lib.config.DEFAULT_PRECISION``, a one-line change) only after this comparison, with its
rule fixed before any result is seen. The script prints the rule first, then trains the study's
arms that matter through the engine with both precisions on the same seeds, and pairs them:

- arms: no normalisation and BatchNorm (with BN recalibration on); ``dropout_p`` 0, 0.25 and 0.6,
  each non-zero rate in the course's block order and in the dense head: 10 arms;
- budget (default): a stratified 8,000-image training subset x 8 epochs (about 500 Adam steps at
  batch 128), the 5,000-image validation split. The cosine schedule anneals the rate to zero by the
  last epoch, so every arm ends on a settled model, and 8k x 8 sits next to the study's grid
  budget (8k x 10) while the whole run (160 trials) stays inside about 25 minutes on 2 cores;
- 4 paired seeds (``--seeds``), each seed trained once in fp32 and once in bf16;
- per arm: the paired difference ``bf16 - fp32`` of last-epoch validation accuracy with (a) its 95%
  t-interval over seeds and (b) a 95% paired bootstrap over seeds *and* validation images (from each
  run's per-image results), the training speed of both precisions measured in the same trials.

The rule (:data:`RULE`) is applied to both intervals: bf16 passes only if it passes on each.
Run with ``make bench-numerics`` on an idle machine; ``--quick`` checks that the script works in a
minute (its numbers mean nothing). Writes ``benchmarks/results/precision_numerics.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "precision_numerics.md"
MARGIN_PP = -0.2
RULE = (
    f"bf16 becomes the default only if no arm's whole 95% interval of bf16 - fp32 lies below {MARGIN_PP:+.1f} pp "
    "(checked on the t-interval over paired seeds and on the paired bootstrap over seeds and validation images; "
    "declared before the run)"
)
ARMS = [("none", 0.0, "block")] + [
    (norm, p, place) for norm in ("none",) for p in (0.25, 0.6) for place in ("block", "head")
]
ARMS += [("batch", 0.0, "block")] + [
    (norm, p, place) for norm in ("batch",) for p in (0.25, 0.6) for place in ("block", "head")
]


def bootstrap_seeds_and_images(
    bf16: np.ndarray, fp32: np.ndarray, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of mean(bf16 - fp32) accuracy, resampling paired seeds (rows) and
    validation images (columns) together; inputs are (seeds x images) 0/1 matrices."""
    rng = np.random.default_rng(seed)
    diff = bf16.astype(np.float64) - fp32.astype(np.float64)
    n_seeds, n_images = diff.shape
    means = np.empty(n_boot)
    for b in range(n_boot):
        rows = rng.integers(0, n_seeds, n_seeds)
        cols = rng.integers(0, n_images, n_images)
        means[b] = diff[np.ix_(rows, cols)].mean()
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=4, help="paired seeds per arm (>= 4 for the decision)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-subset", type=int, default=8000)
    parser.add_argument("--val-subset", type=int, default=None, help="default: the whole 5,000-image split")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="2 seeds, 500 images, 1 epoch: checks the script only")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:  # never overwrites the committed result
        args.seeds, args.epochs, args.train_subset, args.val_subset = 2, 1, 500, 500
        if args.out == RESULTS:
            args.out = Path(tempfile.mkdtemp(prefix="hypertune-precision-quick-")) / RESULTS.name
    elif args.seeds < 4:
        parser.error("--seeds must be >= 4 for the decision (use --quick to try the script)")
    return args


def _train(args):
    from lib.data import DataSpec
    from lib.engine.grid import grid_configs, run_trials
    from lib.engine.records import results_frame

    configs = []
    for norm, p, placement in ARMS:
        base = {"norm_type": norm, "dropout_p": p, "dropout_placement": placement, "epochs": args.epochs}
        base["recalibrate_bn"] = norm == "batch"
        configs += grid_configs(base, {"precision": ["fp32", "bf16"]}, list(range(args.seeds)))
    data = DataSpec(train_subset=args.train_subset, val_subset=args.val_subset)
    results = run_trials(configs, "precision-numerics", data, workers=args.workers, progress=False)
    return results_frame(results)


def _arm_row(frame, norm: str, p: float, placement: str) -> tuple[str, bool]:
    from lib.engine.records import val_correct
    from lib.stats import paired_effect, per_seed

    where = {"norm_type": norm, "dropout_p": p, "dropout_placement": placement}
    fp32 = per_seed(frame, precision="fp32", **where)
    bf16 = per_seed(frame, precision="bf16", **where)
    effect = paired_effect(bf16, fp32, f"{norm}/{placement}/p={p:g}")
    runs = {
        precision: per_seed(frame, "run_id", precision=precision, **where).sort_index()
        for precision in ("fp32", "bf16")
    }
    matrices = {precision: np.stack([val_correct(run_id) for run_id in ids]) for precision, ids in runs.items()}
    boot_low, boot_high = bootstrap_seeds_and_images(matrices["bf16"], matrices["fp32"])
    speed = {
        precision: per_seed(frame, "images_per_second", precision=precision, **where).median()
        for precision in ("fp32", "bf16")
    }
    margin = MARGIN_PP / 100
    # an interval that cannot be computed (NaN) cannot show that bf16 is safe: it counts as failing
    fails = not (effect.ci_high >= margin and boot_high >= margin)
    label = f"{norm} / {placement if p else '-'} / {p:g}" + (" + recal" if norm == "batch" else "")
    line = (
        f"| {label} | {fp32.mean():.2%} | {bf16.mean():.2%} | {effect.mean * 100:+.2f} | "
        f"{effect.ci_low * 100:+.2f} to {effect.ci_high * 100:+.2f} | "
        f"{boot_low * 100:+.2f} to {boot_high * 100:+.2f} | {speed['fp32']:,.0f} | {speed['bf16']:,.0f} | "
        f"{speed['bf16'] / speed['fp32']:.2f}x | {'FAILS' if fails else 'passes'} |"
    )
    return line, fails


def main() -> None:
    args = _arguments()
    print(f"Rule: {RULE}.", flush=True)
    store = tempfile.mkdtemp(prefix="hypertune-precision-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    os.environ["HYPERTUNE_STATE_DIR"] = f"{store}/state"
    import torch

    load_before, started = os.getloadavg()[0], time.perf_counter()
    frame = _train(args)
    wall = time.perf_counter() - started
    failed = frame[frame["status"] != "finished"]
    if len(failed):
        which = failed[["norm_type", "dropout_p", "precision", "seed"]].to_dict("records")
        raise SystemExit(f"{len(failed)} trial(s) failed: {which}")
    lines = [
        f"# bf16 autocast vs fp32, {time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}"
        + (" (QUICK: a check of the script, not a result)" if args.quick else ""),
        "",
        f"Rule, declared before the run: {RULE}.",
        "",
        f"Budget: {args.train_subset:,} training images x {args.epochs} epochs, validation {args.val_subset or 5000:,} "
        f"images, {args.seeds} paired seeds, lr 1e-3 (AdamW, cosine), {args.workers} engine workers; "
        f"wall {wall:.0f} s; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after.",
        "",
        "| norm / placement / dropout_p | fp32 val acc | bf16 val acc | bf16 - fp32 (pp) | 95% CI, seeds (pp) "
        "| 95% CI, seeds + images (pp) | fp32 img/s | bf16 img/s | speed-up | rule |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|---|",
    ]
    any_fail = False
    for arm in ARMS:
        line, fails = _arm_row(frame, *arm)
        lines.append(line)
        any_fail |= fails
    decision = (
        f"no arm's whole interval lies below {MARGIN_PP:+.1f} pp: bf16 MAY become the default "
        '(set DEFAULT_PRECISION = "bf16" in lib/config.py)'
        if not any_fail
        else f"an arm's whole interval lies below {MARGIN_PP:+.1f} pp: the default STAYS fp32"
    )
    lines += [
        "",
        "img/s: training images per second of one trial (1-thread engine workers).",
        "",
        f"Decision: {decision}.",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
