"""Command line for people who prefer scripts to notebooks: ``python -m lib --help``.

Sub-commands: ``data`` (fetch and verify Fashion-MNIST), ``grid`` (a controlled grid), ``sweep``
(a hyperopt TPE sweep), ``study`` (execute the numbered notebooks with papermill, in place),
``report`` (figures, a table of the best configurations and report.md for any experiments),
``links`` (MLflow UI links that open each experiment's runs table).
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

    return DataSpec(train_subset=args.train_subset, val_subset=args.val_subset, dataset=args.dataset)


def _dataset_name(text: str) -> str:
    """argparse type for ``--dataset``: an unknown name is a one-line usage error listing the allowed ones."""
    from lib.datasets import check_name

    try:
        return check_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_dataset(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        type=_dataset_name,
        default="fashion_mnist",
        help="data set: fashion_mnist (default), mnist, kmnist, cifar10, digits (offline, 8x8), or folder:PATH "
        "(an ImageFolder tree; folder:PATH@32 resizes to 32x32)",
    )


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
    _add_dataset(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lib", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="fetch, verify and place a data set under data/ (default Fashion-MNIST)")
    data.add_argument("--no-download", action="store_true", help="never try torchvision's downloader")
    _add_dataset(data)

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
        choices=["smoke", "quick", "full"],
        help="budget: smoke (tests), quick (~10 min), full (the report, <= 60 min)",
    )
    study.add_argument("--notebooks", default=",".join(NOTEBOOKS), help="comma-separated notebook names, in order")
    study.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="write executed notebooks here instead of overwriting them in place",
    )
    report = commands.add_parser(
        "report", help="figures, top_runs.csv and report.md for any experiments in the store (grids or sweeps)"
    )
    report.add_argument(
        "--experiment", action="append", required=True, help="an MLflow experiment name (repeat for more)"
    )
    report.add_argument("--out", type=Path, default=Path("report"), help="output folder (default: ./report)")
    report.add_argument("--top", type=int, default=10, help="configurations per budget in top_runs.csv (default 10)")
    links = commands.add_parser("links", help="print MLflow UI links that open each experiment's runs table")
    links.add_argument("--experiment", action="append", default=None, help="only this experiment (repeatable)")
    links.add_argument(
        "--base", default=None, help="UI address (default: HYPERTUNE_UI_URL, a tracking server, or 127.0.0.1:5000)"
    )
    return parser


def _links(args: argparse.Namespace) -> int:
    from lib.report import ReportError, ui_links

    try:
        found = ui_links(args.experiment, args.base)
    except ReportError as exc:
        print(f"links: {exc}", file=sys.stderr)
        return 2
    if not found:
        print("no experiments in the store yet: run a notebook, a grid or a sweep first")
    for name, url in found.items():
        print(f"{name}: {url}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from lib.report import ReportError, write_report

    try:
        path = write_report(args.experiment, args.out, top=args.top)
    except ReportError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {path} (figures and top_runs.csv next to it)")
    return 0


def _print_ui_link(experiment: str) -> None:
    from lib.report import runs_url

    print(f"MLflow UI (`make ui` first): {runs_url(experiment)}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "data":
        from lib.data import describe_dataset

        print(describe_dataset(args.dataset, download=not args.no_download))
        return 0
    if args.command == "study":
        return _study(args)
    if args.command == "report":
        return _report(args)
    if args.command == "links":
        return _links(args)
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
        _print_ui_link(args.experiment)
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
    print(f"{len(result.trials)} trials; best validation accuracy {best.val_accuracy * 100:.2f}% (run {best.run_id})")
    print(yaml.safe_dump({k: v for k, v in best.config.items()}, sort_keys=True))
    _print_ui_link(args.experiment)
    return 0


def _study(args: argparse.Namespace) -> int:
    """Execute the notebooks in order with papermill.

    The profile travels as ``HYPERTUNE_PROFILE`` (which every parameters cell reads), not as an
    injected parameters cell: executed notebooks saved in place then contain no hard-coded
    ``profile = "full"`` cell, so nbval can still run them in the smoke profile.
    """
    import nbformat
    import papermill

    _register_progress_engine()
    os.environ["HYPERTUNE_PROFILE"] = args.profile
    started = time.perf_counter()
    for name in [n.strip() for n in args.notebooks.split(",") if n.strip()]:
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
            engine_name="hypertune-progress",
            progress_bar=False,
            log_output=True,
            **_kernel_transport(),
        )
        print(f"== {name} done in {time.perf_counter() - began:.0f} s", flush=True)
    print(f"study ({args.profile}) wall time: {time.perf_counter() - started:.0f} s", flush=True)
    return 0


def _kernel_transport() -> dict[str, Any]:
    """Kernel sockets as local IPC files where the OS has them (not TCP on 127.0.0.1).

    ipykernel warns "Kernel is running over TCP without encryption" for every TCP kernel; IPC
    sockets are files only this user can open, so the warning does not apply and is not printed.
    """
    if os.name != "posix":
        return {}
    from traitlets.config import Config

    return {"config": Config({"KernelManager": {"transport": "ipc"}})}


def _register_progress_engine() -> None:
    """papermill engine ``hypertune-progress``: nbclient's, printing a line as each code cell ends."""
    from papermill.engines import NBClientEngine, papermill_engines

    class ProgressEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            code = [i for i, cell in enumerate(nb_man.nb.cells) if cell.cell_type == "code"]
            name = Path(str(nb_man.output_path or "notebook")).stem
            began = time.perf_counter()
            original = nb_man.cell_complete

            def cell_complete(cell, cell_index=None, **kw):
                original(cell, cell_index=cell_index, **kw)
                if cell_index in code:
                    done = code.index(cell_index) + 1
                    first = next((line for line in cell.source.splitlines() if line.strip()), "")[:60]
                    elapsed = time.perf_counter() - began
                    print(f"   {name}: cell {done}/{len(code)} done, {elapsed:.0f} s  | {first}", flush=True)

            nb_man.cell_complete = cell_complete
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register("hypertune-progress", ProgressEngine)


if __name__ == "__main__":
    sys.exit(main())
