"""Command line for people who prefer scripts to notebooks: ``python -m lib --help``.

Sub-commands: ``data`` (fetch and verify Fashion-MNIST), ``grid`` (a controlled grid), ``sweep``
(a hyperopt TPE sweep), ``study`` (execute the numbered notebooks with papermill, in place).
Each option is explained in ``--help``; values are parsed as YAML scalars (``0.25``, ``none``,
``true``, ``[128, 64]``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from lib.paths import PROJECT_ROOT

NOTEBOOKS = ("01_baseline", "02_norm_dropout", "02b_dropout_bn", "03_conv_blocks", "04_analysis")
DEEP_NOTEBOOKS = ("05_budget_and_search",)  # `--profile deep`: the budget and search study (after the full run)


def _value(text: str) -> Any:
    return yaml.safe_load(text)


def _assignments(items: list[str], what: str) -> dict[str, Any]:
    result = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"{what} '{item}' must look like name=value")
        name, value = item.split("=", 1)
        result[name.strip()] = _value(value)
    return result


def _factors(items: list[str]) -> dict[str, list[Any]]:
    factors = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"--factor '{item}' must look like name=v1,v2,...")
        name, values = item.split("=", 1)
        factors[name.strip()] = [_value(v) for v in values.split(",") if v.strip()]
    return factors


def _data_spec(args: argparse.Namespace):
    from lib.trial import DataSpec

    return DataSpec(train_subset=args.train_subset, val_subset=args.val_subset)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", required=True, help="MLflow experiment name (runs are cached per experiment)")
    parser.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        default=[],
        help="fix a hyperparameter of the base config, e.g. --set epochs=5 --set norm_type=batch",
    )
    parser.add_argument(
        "--train-subset",
        type=int,
        default=None,
        help="train on a stratified sample of this many training images (default: all 55k)",
    )
    parser.add_argument(
        "--val-subset",
        type=int,
        default=None,
        help="validate on a stratified sample of the 5k validation images (default: all)",
    )
    parser.add_argument(
        "--tag",
        action="append",
        metavar="NAME=VALUE",
        default=[],
        help="extra MLflow tag for every trial, e.g. --tag hypothesis=H1",
    )
    parser.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="where trials train: local worker processes (default) or Ray Tune (a local Ray, or the cluster "
        "at RAY_ADDRESS; needs pip install -r requirements-ray.txt); the MLflow records are the same",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lib", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="fetch, verify and place Fashion-MNIST under data/")
    data.add_argument("--no-download", action="store_true", help="never try torchvision's downloader")

    grid = commands.add_parser("grid", help="run a controlled grid: factors x seeds, cached and resumable")
    _add_common(grid)
    grid.add_argument(
        "--factor",
        action="append",
        metavar="NAME=V1,V2",
        default=[],
        required=True,
        help="a factor to vary, e.g. --factor dropout_p=0,0.25,0.5 (repeat for more factors)",
    )
    grid.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, every arm gets all (default 0,1,2)")
    grid.add_argument(
        "--workers",
        default="auto",
        help="parallel worker processes, 1 thread each ('auto' = one per core; 1 = in-process)",
    )
    grid.add_argument("--out", type=Path, default=None, help="also write the results table to this CSV file")

    sweep = commands.add_parser("sweep", help="run or resume a hyperopt TPE sweep (child runs under one parent)")
    _add_common(sweep)
    sweep.add_argument("--name", required=True, help="sweep name; the same name resumes the same sweep")
    sweep.add_argument("--max-evals", type=int, required=True, help="total number of trials (a resume counts old ones)")
    sweep.add_argument("--seed", type=int, default=0, help="seed of the TPE random stream (default 0)")
    sweep.add_argument(
        "--space",
        type=Path,
        default=None,
        help="YAML file with the search space (default: lib.search.DEFAULT_SPACE); format in "
        "lib/search.py, e.g. 'lr: {loguniform: [1e-4, 1e-2]}' or 'norm_type: [none, batch]'",
    )
    sweep.add_argument(
        "--early-stopping",
        action="store_true",
        help="with --engine ray: let ASHA stop poor trials after an epoch (their runs end KILLED, "
        "tagged stopped_early=true)",
    )

    study = commands.add_parser("study", help="execute the numbered notebooks in place with papermill")
    study.add_argument(
        "--profile",
        default="full",
        choices=["smoke", "quick", "full", "deep"],
        help="budget: smoke (tests), quick (~10 min), full (the report, <= 60 min), deep (05 only, <= 2 h; "
        "needs the full run's 02/02b runs first)",
    )
    study.add_argument(
        "--notebooks",
        default=None,
        help=f"comma-separated notebook names, in order (default: {','.join(NOTEBOOKS)}; "
        f"with --profile deep: {','.join(DEEP_NOTEBOOKS)})",
    )
    study.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="write executed notebooks here instead of overwriting them in place",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "data":
        from lib.data import ensure_fashion_mnist

        print("Fashion-MNIST verified in", ensure_fashion_mnist(download=not args.no_download))
        return 0
    if args.command == "study":
        return _study(args)
    base = _assignments(args.set, "--set")
    tags = _assignments(args.tag, "--tag")
    if args.command == "grid":
        from lib.engine import run_grid

        workers = args.workers if args.workers == "auto" else int(args.workers)
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        frame = run_grid(
            base,
            _factors(args.factor),
            seeds,
            args.experiment,
            _data_spec(args),
            {k: str(v) for k, v in tags.items()},
            workers=workers,
            engine=args.engine,
        )
        columns = [*dict.fromkeys([*_factors(args.factor), "seed"]), "status", "val_accuracy", "cached"]
        print(frame[columns].to_string(index=False))
        if args.out:
            frame.to_csv(args.out, index=False)
        return 0
    from lib.search import run_sweep

    space = yaml.safe_load(args.space.read_text()) if args.space else None
    result = run_sweep(
        space,
        args.experiment,
        args.name,
        args.max_evals,
        seed=args.seed,
        base=base,
        data=_data_spec(args),
        tags={k: str(v) for k, v in tags.items()},
        engine=args.engine,
        early_stopping=args.early_stopping,
    )
    best = result.best
    print(f"{len(result.trials)} trials; best validation accuracy {best.val_accuracy:.4f} (run {best.run_id})")
    print(yaml.safe_dump({k: v for k, v in best.config.items()}, sort_keys=True))
    return 0


def _study(args: argparse.Namespace) -> int:
    """Execute the notebooks in order with papermill.

    The profile travels as ``HYPERTUNE_PROFILE`` (which every parameters cell reads), not as an
    injected parameters cell: executed notebooks saved in place then contain no hard-coded
    ``profile = "full"`` cell, so nbval can still run them in the smoke profile.
    """
    import nbformat
    import papermill

    os.environ["HYPERTUNE_PROFILE"] = args.profile
    started = time.perf_counter()
    names = args.notebooks or ",".join(DEEP_NOTEBOOKS if args.profile == "deep" else NOTEBOOKS)
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        source = PROJECT_ROOT / "notebooks" / f"{name}.ipynb"
        target = (args.output_dir / source.name) if args.output_dir else source
        target.parent.mkdir(parents=True, exist_ok=True)
        notebook = nbformat.read(source, as_version=4)
        notebook.cells = [c for c in notebook.cells if "injected-parameters" not in c.metadata.get("tags", [])]
        began = time.perf_counter()
        print(f"== {name} ({args.profile})", flush=True)
        papermill.execute_notebook(
            notebook,
            str(target),
            cwd=str(source.parent),
            kernel_name="hypertune",
            progress_bar=False,
            log_output=True,
        )
        print(f"== {name} done in {time.perf_counter() - began:.0f} s", flush=True)
    print(f"study ({args.profile}) wall time: {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
