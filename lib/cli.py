"""Command line for people who prefer scripts to notebooks: ``python -m lib --help``.

Sub-commands: ``data`` (fetch and verify Fashion-MNIST), ``grid`` (a controlled grid), ``sweep``
(a hyperopt TPE sweep), ``study`` (execute the numbered notebooks with papermill, in place),
``report`` (figures, a table of the best configurations and report.md for any experiments),
``links`` (MLflow UI links that open each experiment's runs table).
Each option is explained in ``--help``; values are parsed as YAML scalars (``0.25``, ``none``,
``true``, ``[128, 64]``).

A mistake (a misspelt hyperparameter, a bad value, unreadable data, a store that cannot be written)
prints one or two lines on stderr that name the problem and the fix, and nothing is written; add
``--debug`` (or set ``HYPERTUNE_DEBUG=1``) to see the traceback. Exit codes: 0 done (failed trials
are listed with their reason), 1 an unexpected error (a bug: the traceback is shown), 2 a bad
command line or config, 3 every trial failed, 4 the data or the MLflow store cannot be used,
130 interrupted (Ctrl-C; run the same command again to resume). See docs/troubleshooting.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from lib.paths import PROJECT_ROOT

EXIT_OK, EXIT_BUG, EXIT_USAGE, EXIT_ALL_FAILED, EXIT_ENVIRONMENT, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
NOTEBOOKS = ("01_baseline", "02_norm_dropout", "02b_dropout_bn", "03_conv_blocks", "04_analysis")
DEEP_NOTEBOOKS = ("05_budget_and_search",)  # `--profile deep`: the budget and search study (after the full run)


def _value(text: str) -> Any:
    return yaml.safe_load(text)


class UsageError(ValueError):
    """A bad command-line value; the message names the option and what to give instead."""


def _assignments(items: list[str], what: str) -> dict[str, Any]:
    result = {}
    for item in items or []:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise UsageError(f"{what} {item!r} must look like name=value, e.g. {what} epochs=3")
        name, value = item.split("=", 1)
        result[name.strip()] = _value(value)
    return result


def _factors(items: list[str]) -> dict[str, list[Any]]:
    factors = {}
    for item in items or []:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise UsageError(f"--factor {item!r} must look like name=v1,v2,..., e.g. --factor dropout_p=0,0.25,0.5")
        name, values = item.split("=", 1)
        factors[name.strip()] = [_value(v) for v in values.split(",") if v.strip()]
        if not factors[name.strip()]:
            raise UsageError(f"--factor {name.strip()}= has no values; give at least one, e.g. --factor {item}0,0.5")
    return factors


def _seeds(text: str) -> list[int]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.isdigit() for part in parts):
        raise UsageError(f"--seeds {text!r}: give comma-separated whole numbers >= 0, e.g. --seeds 0,1,2")
    return [int(part) for part in parts]


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--workers {text!r}: give 'auto' or a whole number >= 1")
    return int(text)


def _base_config(base: dict[str, Any]):
    """The ``--set`` values as a validated config (before anything is written)."""
    from lib.config import ConfigError, TrialConfig

    try:
        return TrialConfig.from_flat(base)
    except ConfigError as exc:
        raise UsageError(f"--set: {exc}") from None


def _data_spec(args: argparse.Namespace):
    from lib.trial import DataSpec

    for option, value in (("--train-subset", args.train_subset), ("--val-subset", args.val_subset)):
        if value is not None and value < 1:
            raise UsageError(f"{option} {value}: give a number of images >= 1 (or leave it out for all)")
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


def _load_data(data) -> None:
    """Load (and verify) the data before anything is written to the store."""
    from lib.data import DataError
    from lib.paths import data_dir

    try:
        data.load()
    except DataError:
        raise
    except ValueError as exc:  # a subset larger than the split
        raise UsageError(f"--train-subset/--val-subset: {exc}") from None
    except OSError as exc:
        raise DataError(
            f"cannot read or place the data under {data_dir()} ({exc.strerror or exc}): point HYPERTUNE_DATA_DIR "
            "at a writable folder (or unset it), then run `python -m lib data`."
        ) from None


def _open_store() -> None:
    """Open (create, migrate) the MLflow store now, so a store problem is reported before any training."""
    from lib import tracking

    try:
        tracking.client()
    except tracking.StoreError:
        raise
    except Exception as exc:
        raise tracking.StoreError(_store_problem(exc)) from exc
    if not _debug_requested():
        # MLflow logs every database error with its traceback before raising it; the error boundary reports it
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


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


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage of a sub-command fills a screen)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}. See: {self.prog} --help\n")


def _add_debug(parser: argparse.ArgumentParser) -> None:
    """``--debug`` after the sub-command too (``SUPPRESS``: an absent flag keeps the top-level value)."""
    parser.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m lib", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="fetch, verify and place a data set under data/ (default Fashion-MNIST)")
    data.add_argument("--no-download", action="store_true", help="never try torchvision's downloader")
    _add_dataset(data)

    grid = _grid_parser(commands)
    sweep = _sweep_parser(commands)
    for sub in (data, grid, sweep):
        _add_debug(sub)
    _study_parser(commands)
    _report_parsers(commands)
    return parser


def _grid_parser(commands) -> argparse.ArgumentParser:
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
    return grid


def _sweep_parser(commands) -> argparse.ArgumentParser:
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
    sweep.add_argument(
        "--algo",
        choices=["tpe", "random"],
        default="tpe",
        help="search algorithm: tpe (default) or random (the same seed draws TPE's start-up points)",
    )
    return sweep


def _study_parser(commands) -> argparse.ArgumentParser:
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
    _add_debug(study)
    return study


def _report_parsers(commands) -> None:
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
    """Run a sub-command behind one error boundary: known errors become one or two lines on stderr."""
    global _debug_flag
    args = build_parser().parse_args(argv)
    _debug_flag = bool(getattr(args, "debug", False))
    try:
        return _run(args)
    except KeyboardInterrupt:
        if _debug_requested():
            raise
        print(
            "interrupted: trials in flight were marked KILLED; run the same command again to resume "
            "(finished trials are not trained again).",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except Exception as exc:
        explained = None if _debug_requested() else explain_error(exc)
        if explained is None:
            raise  # a bug (or --debug): the traceback is the useful message
        code, message = explained
        print(f"error: {message}", file=sys.stderr)
        return code


_debug_flag = False  # --debug of the current main() call


def _debug_requested() -> bool:
    """``--debug`` was given or ``HYPERTUNE_DEBUG`` is set (to anything but 0/false/no)."""
    return _debug_flag or os.environ.get("HYPERTUNE_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def explain_error(exc: BaseException) -> tuple[int, str] | None:
    """``(exit code, one-line message)`` for an error a user can fix; ``None`` for anything else (a bug)."""
    import sqlite3

    from lib.config import ConfigError
    from lib.data import DataError
    from lib.engine import StudyError
    from lib.tracking import StoreError

    if isinstance(exc, UsageError | ConfigError | StudyError):
        return EXIT_USAGE, _one_line(str(exc))
    if isinstance(exc, DataError | StoreError):
        return EXIT_ENVIRONMENT, _one_line(str(exc))
    if isinstance(exc, yaml.YAMLError):
        return EXIT_USAGE, _one_line(f"--space: not valid YAML ({exc})")
    if isinstance(exc, sqlite3.Error) or _is_store_error(exc):
        return EXIT_ENVIRONMENT, _one_line(_store_problem(exc))
    if isinstance(exc, OSError):
        return EXIT_ENVIRONMENT, _one_line(_os_problem(exc))
    return None


def _is_store_error(exc: BaseException) -> bool:
    names = {cls.__module__.split(".")[0] + "." + cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"sqlalchemy.SQLAlchemyError", "mlflow.MlflowException"})


def _store_problem(exc: BaseException) -> str:
    """A database error as ``store: reason. fix``."""
    from lib.tracking import tracking_uri

    if isinstance(exc, OSError):
        return f"MLflow store {tracking_uri()} cannot be used: {_os_problem(exc)}"
    text = str(getattr(exc, "message", None) or exc)
    reason = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    reason = reason.removeprefix("(sqlite3.OperationalError) ").removeprefix("(sqlite3.DatabaseError) ")
    lowered = reason.lower()
    if "full" in lowered or "disk i/o" in lowered:
        fix = "free disk space, then run the same command again (finished trials are kept, an interrupted one retrains)"
    elif "readonly" in lowered or "read-only" in lowered or "permission" in lowered:
        fix = "make the file and its folder writable, or point MLFLOW_TRACKING_URI at a writable sqlite:/// file"
    elif "unable to open" in lowered:
        fix = "check that its folder exists and is writable, or point MLFLOW_TRACKING_URI at another file"
    elif "locked" in lowered:
        fix = "another process holds the database; wait for it or stop it, then run the same command again"
    elif "not a database" in lowered or "malformed" in lowered:
        fix = "move the file away (a new store is created) or point MLFLOW_TRACKING_URI at another file"
    else:
        fix = "check MLFLOW_TRACKING_URI, then run the same command again (--debug shows the details)"
    return f"MLflow store {tracking_uri()} cannot be used: {reason}. Fix: {fix}."


def _os_problem(exc: OSError) -> str:
    import errno

    where = exc.filename or "a file"
    reason = exc.strerror or str(exc)
    fixes = {
        errno.ENOSPC: "free disk space, then run the same command again",
        errno.EDQUOT: "free disk space, then run the same command again",
        errno.EFBIG: "free disk space or raise the file size limit, then run the same command again",
        errno.EACCES: "make it writable (or readable) for you",
        errno.EPERM: "make it writable (or readable) for you",
        errno.EROFS: "the file system is read-only: point MLFLOW_TRACKING_URI / HYPERTUNE_* at a writable folder",
        errno.ENOENT: "check the path",
        errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
        errno.EEXIST: "a file is in the way of a folder: check the path",
    }
    return f"{where}: {reason}. Fix: {fixes.get(exc.errno, 'check the path and the disk')}."


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 1000 else line[:997] + "..."


def _run(args: argparse.Namespace) -> int:
    if args.command == "data":
        from lib.data import describe_dataset

        print(describe_dataset(args.dataset, download=not args.no_download))
        return EXIT_OK
    if args.command == "study":
        return _study(args)
    if args.command == "report":
        return _report(args)
    if args.command == "links":
        return _links(args)
    base = _assignments(args.set, "--set")
    tags = {k: str(v) for k, v in _assignments(args.tag, "--tag").items()}
    base_config = _base_config(base)
    data = _data_spec(args)
    if args.command == "grid":
        return _grid(args, base, tags, data)
    return _sweep(args, base_config, tags, data)


def _grid(args: argparse.Namespace, base: dict[str, Any], tags: dict[str, str], data) -> int:
    from lib.engine import grid_configs, run_grid

    factors = _factors(args.factor)
    seeds = _seeds(args.seeds)
    workers = _workers(args.workers)
    grid_configs(base, factors, seeds)  # validate every grid point before anything is written
    _load_data(data)
    _open_store()
    frame = run_grid(base, factors, seeds, args.experiment, data, tags, workers=workers, engine=args.engine)
    columns = [*dict.fromkeys([*factors, "seed"]), "status", "val_accuracy", "cached"]
    if "failure_kind" in frame and (frame["status"] != "finished").any():
        columns.append("failure_kind")
    print(frame[columns].to_string(index=False))
    if args.out:
        frame.to_csv(args.out, index=False)
    _print_ui_link(args.experiment)
    return _report_outcome(frame, [*dict.fromkeys([*factors, "seed"])])


def _sweep(args: argparse.Namespace, base_config, tags: dict[str, str], data) -> int:
    import pandas as pd

    from lib.engine import results_frame
    from lib.search import DEFAULT_SPACE, build_space, run_sweep

    if args.max_evals < 1:
        raise UsageError(f"--max-evals {args.max_evals}: give the total number of trials, a whole number >= 1")
    if args.seed < 0:
        raise UsageError(f"--seed {args.seed}: the sweep's seed is a whole number >= 0")
    space = None
    if args.space:
        try:
            space = yaml.safe_load(args.space.read_text())
        except OSError as exc:
            raise UsageError(f"--space {args.space}: {exc.strerror or exc}; give an existing YAML file") from None
        if not isinstance(space, dict):
            raise UsageError(
                f"--space {args.space}: must map names to values or ranges, e.g. 'lr: {{loguniform: [1e-4, 1e-2]}}'"
            )
        build_space(space)  # validate before anything is written
    _load_data(data)
    _open_store()
    result = run_sweep(
        space,
        args.experiment,
        args.name,
        args.max_evals,
        seed=args.seed,
        base=base_config,
        data=data,
        tags=tags,
        engine=args.engine,
        early_stopping=args.early_stopping,
        algo=args.algo,
    )
    frame = results_frame(result.trials) if result.trials else pd.DataFrame(columns=["status"])
    finished = [t for t in result.trials if t.ok]
    if finished:
        best = max(finished, key=lambda t: t.val_accuracy)
        accuracy = f"{best.val_accuracy * 100:.2f}%"
        print(f"{len(result.trials)} trials; best validation accuracy {accuracy} (run {best.run_id})")
        print(yaml.safe_dump({k: v for k, v in best.config.items()}, sort_keys=True))
    _print_ui_link(args.experiment)
    return _report_outcome(frame, [*(space or DEFAULT_SPACE), "run_id"])


def _report_outcome(frame, label_columns: list[str]) -> int:
    """Print each failed trial's reason and a summary line; exit 3 when every trial failed."""
    from collections import Counter

    failed = frame[frame["status"] != "finished"] if len(frame) else frame
    for _, row in failed.iterrows():
        label = " ".join(f"{c}={row[c]}" for c in label_columns if c in row.index)
        reason = str(row.get("failure_reason", "") or "").strip()
        reason = reason.splitlines()[0][:300] if reason else "(no reason recorded)"
        print(f"failed {label}: {row.get('failure_kind') or 'error'}: {reason}")
    kinds = Counter(str(k or "error").replace("_", " ") for k in failed.get("failure_kind", []))
    detail = f" ({', '.join(f'{n} {k}' if len(kinds) > 1 else k for k, n in kinds.most_common())})" if kinds else ""
    print(f"{len(frame)} trials: {len(frame) - len(failed)} finished, {len(failed)} failed{detail}")
    if len(frame) and len(failed) == len(frame):
        print("every trial failed: see the reasons above (exit code 3)", file=sys.stderr)
        return EXIT_ALL_FAILED
    return EXIT_OK


def _study(args: argparse.Namespace) -> int:
    """Execute the notebooks in order with papermill.

    The profile travels as ``HYPERTUNE_PROFILE`` (which every parameters cell reads), not as an
    injected parameters cell: executed notebooks saved in place then contain no hard-coded
    ``profile = "full"`` cell, so nbval can still run them in the smoke profile.
    """
    _register_progress_engine()
    os.environ["HYPERTUNE_PROFILE"] = args.profile
    os.environ["HYPERTUNE_PROGRESS_BARS"] = "0"  # saved notebooks end with summary lines, not frozen bars
    started = time.perf_counter()
    names = args.notebooks or ",".join(DEEP_NOTEBOOKS if args.profile == "deep" else NOTEBOOKS)
    with tempfile.TemporaryDirectory(prefix="hypertune-kernel-") as sockets:
        for name in [n.strip() for n in names.split(",") if n.strip()]:
            _execute(name, args, Path(sockets))
    print(f"study ({args.profile}) wall time: {time.perf_counter() - started:.0f} s", flush=True)
    return 0


def _execute(name: str, args: argparse.Namespace, sockets: Path) -> None:
    """Run one notebook with papermill, saved in place or under ``--output-dir``."""
    import nbformat
    import papermill

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
        **_kernel_transport(sockets),
    )
    _tidy_metadata(target, source)
    print(f"== {name} done in {time.perf_counter() - began:.0f} s", flush=True)


def _tidy_metadata(target: Path, source: Path) -> None:
    """papermill records an in-memory input notebook as a whole copy of it in ``input_path``: name the
    file instead, so an executed notebook does not carry an old copy of itself."""
    import nbformat

    notebook = nbformat.read(target, as_version=4)
    meta = notebook.metadata.get("papermill", {})
    meta["input_path"] = f"notebooks/{source.name}"
    meta["output_path"] = f"notebooks/{target.name}" if target.parent == source.parent else str(target)
    nbformat.write(notebook, target)


def _kernel_transport(sockets: Path) -> dict[str, Any]:
    """Kernel sockets as local IPC files in ``sockets`` where the OS has them (not TCP on 127.0.0.1).

    ipykernel warns "Kernel is running over TCP without encryption" for every TCP kernel; IPC
    sockets are files only this user can open, so the warning does not apply and is not printed.
    The path is absolute: jupyter_client's default (``kernel-ipc`` relative to the kernel's working
    directory) left socket files in ``notebooks/`` that its clean-up, run from another directory,
    never found.
    """
    if os.name != "posix":
        return {}
    from traitlets.config import Config

    return {"config": Config({"KernelManager": {"transport": "ipc", "ip": str(sockets.resolve() / "kernel")}})}


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
