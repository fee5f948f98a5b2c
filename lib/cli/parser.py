"""The argument parser of ``python -m lib`` and the parsers of its values (one-line errors).

Values are parsed as YAML scalars (``0.25``, ``none``, ``true``, ``[128, 64]``); a malformed option is a
:class:`UsageError` naming the option and an example. What this is not: what the commands do.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from lib.study.runner import DEEP_NOTEBOOKS, NOTEBOOKS

EXIT_USAGE = 2


def _value(text: str) -> Any:
    return yaml.safe_load(text)


class UsageError(ValueError):
    """A bad command-line value; the message names the option and what to give instead."""


def assignments(items: list[str], what: str) -> dict[str, Any]:
    result = {}
    for item in items or []:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise UsageError(f"{what} {item!r} must look like name=value, e.g. {what} epochs=3")
        name, value = item.split("=", 1)
        result[name.strip()] = _value(value)
    return result


def factors(items: list[str], option: str = "--factor") -> dict[str, list[Any]]:
    example = "dropout_p=0,0.25,0.5" if option == "--factor" else "lr=1e-3,3.2e-3,1e-2"
    factors = {}
    for item in items or []:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise UsageError(f"{option} {item!r} must look like name=v1,v2,..., e.g. {option} {example}")
        name, values = item.split("=", 1)
        if name.strip() in factors:
            raise UsageError(f"{option} {name.strip()} is given twice; give its values once, comma-separated")
        factors[name.strip()] = [_value(v) for v in values.split(",") if v.strip()]
        if not factors[name.strip()]:
            raise UsageError(
                f"{option} {name.strip()}= has no values (an empty range); give at least one, e.g. {option} {example}"
            )
    return factors


def roles(items: list[str]) -> dict[str, str]:
    """``--role NAME=ROLE`` items (scientific, nuisance or fixed)."""
    from lib.engine.tuning import ROLES

    result = {}
    for name, role in assignments(items, "--role").items():
        if role not in ROLES:
            raise UsageError(f"--role {name}={role}: unknown role; use one of {', '.join(ROLES)}")
        result[name] = role
    return result


def seeds(text: str) -> list[int]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.isdigit() for part in parts):
        raise UsageError(f"--seeds {text!r}: give comma-separated whole numbers >= 0, e.g. --seeds 0,1,2")
    return [int(part) for part in parts]


def workers(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--workers {text!r}: give 'auto' or a whole number >= 1")
    return int(text)


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
        "--question", help="the one question this study answers (a tag; the report's study log shows it)"
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

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """Parse, and keep the words given (``argv``): a grid or sweep records them as its reproduction command."""
        import sys

        words = list(sys.argv[1:] if args is None else args)
        parsed = super().parse_args(words, namespace)
        parsed.argv = words
        return parsed


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
        help="a factor to vary, e.g. --factor dropout_p=0,0.25,0.5 (repeat for more factors); with --tune it is "
        "the scientific hyperparameter",
    )
    grid.add_argument(
        "--tune",
        action="append",
        metavar="NAME=V1,V2",
        default=[],
        help="a nuisance hyperparameter, tuned for EACH factor value on --tune-seeds, e.g. --tune lr=1e-3,3.2e-3,1e-2; "
        "each arm's winner is then re-measured on the fresh --seeds (repeat for more)",
    )
    grid.add_argument(
        "--tune-seeds",
        default=None,
        help="with --tune: seeds of the tuning phase, disjoint from --seeds (default 100,101)",
    )
    grid.add_argument(
        "--score",
        choices=["last", "best_epoch"],
        default="last",
        help="with --tune: the checkpoint rule that scores a trial: last epoch (default) or best epoch on validation",
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
    sweep.add_argument(
        "--max-evals",
        type=int,
        required=True,
        help="total number of trials (a resume counts old ones); a sweep warns below 10 per searched dimension "
        "after the first (the default space's 4 need 30)",
    )
    sweep.add_argument("--seed", type=int, default=0, help="seed of the search's random stream (default 0)")
    sweep.add_argument(
        "--startup",
        type=int,
        default=None,
        help="with --algo tpe: random start-up points before TPE models the results (default: a third of the "
        "trials, 3 to 10)",
    )
    sweep.add_argument(
        "--role",
        action="append",
        metavar="NAME=ROLE",
        default=[],
        help="declare a searched hyperparameter's role: scientific or nuisance (default nuisance; --set values "
        "are fixed); tagged on every trial and shown by the report",
    )
    sweep.add_argument(
        "--space",
        type=Path,
        default=None,
        help="YAML file with the search space (default: lib.engine.search.DEFAULT_SPACE); format in "
        "lib/engine/search.py, e.g. 'lr: {loguniform: [1e-4, 1e-2]}' or 'norm_type: [none, batch]'",
    )
    sweep.add_argument(
        "--early-stopping",
        action="store_true",
        help="with --engine ray: let ASHA stop poor trials after an epoch (their runs end KILLED, "
        "tagged stopped_early=true)",
    )
    sweep.add_argument(
        "--algo",
        choices=["tpe", "random", "quasirandom"],
        default="tpe",
        help="search algorithm: tpe (default), random (the same seed draws TPE's start-up points) or quasirandom "
        "(scrambled Halton points, the playbook's choice for exploring)",
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
