"""The argument parser of ``python -m lib`` and the parsers of its values (one-line errors).

Values are parsed as YAML scalars (``0.25``, ``none``, ``true``, ``[128, 64]``); a malformed option is a
:class:`UsageError` naming the option and an example. What this is not: what the commands do.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from lib.data import DEFAULT_VAL_SIZE
from lib.engine import algorithms
from lib.errors import EXIT_USAGE, HypertuneError
from lib.study.profiles import MEASURED_SECONDS
from lib.study.runner import DEEP_NOTEBOOKS, NOTEBOOKS


def _value(text: str) -> Any:
    return yaml.safe_load(text)


class UsageError(HypertuneError, ValueError):
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
        help=f"train on a stratified sample of this many training images (default: all of them: {_part_sizes()}; "
        "`python -m lib data --dataset NAME` prints any data set's sizes, digits and image folders included)",
    )
    parser.add_argument(
        "--val-subset",
        type=int,
        default=None,
        help="validate on a stratified sample of this many validation images (default: all of them, "
        f"{DEFAULT_VAL_SIZE:,} for the built-in data sets, a sixth of the images left after the test set for digits "
        "and image folders)",
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


def _part_sizes() -> str:
    """``55,000 for fashion_mnist, mnist, kmnist; 45,000 for cifar10``: the training part of each built-in
    data set once its validation images are set aside (digits and folders are counted when loaded)."""
    from lib.datasets import TRAIN_PART_IMAGES

    by_size: dict[int, list[str]] = {}
    for name, images in TRAIN_PART_IMAGES.items():
        by_size.setdefault(images - DEFAULT_VAL_SIZE, []).append(name)
    return "; ".join(f"{size:,} for {', '.join(names)}" for size, names in by_size.items())


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


USER_HELP = """\
hypertune: train a small CNN many times, log every trial to MLflow (the fixed folder mlruns/), and turn the
runs into figures and a table you can trust. Run from the project folder with the project's Python
(.venv/bin/python -m lib ..., or activate .venv first).

Your first study (about a minute on 2 cores): a grid, a search, then the report:
  python -m lib grid --experiment first --dataset digits --set norm_type=batch --set epochs=10 \\
      --factor dropout_p=0,0.25,0.5 --factor num_conv_blocks=0,1,2 --seeds 0,1,2
  python -m lib sweep --experiment first --dataset digits --name search --max-evals 30 --set epochs=10
  python -m lib report --experiment first --out runs/first

Each command's own --help explains its options, with an example. A mistake prints one line naming the
problem and the fix (add --debug for the traceback). More: README.md and docs/troubleshooting.md."""

_FORMAT = argparse.RawDescriptionHelpFormatter


def _command(commands, name: str, summary: str, description: str, example: str) -> argparse.ArgumentParser:
    """A sub-command whose --help says what it does and shows one example."""
    return commands.add_parser(
        name, help=summary, description=description, epilog=f"example:\n  {example}", formatter_class=_FORMAT
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m lib", description=USER_HELP, formatter_class=_FORMAT)
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)

    data = _command(
        commands,
        "data",
        "fetch, verify and place a data set under data/ (default Fashion-MNIST)",
        "Find the data set (data/, Debian's dataset-fashion-mnist, or torchvision's download), check every file "
        "against its recorded checksum, and print its size, classes and the validation split.",
        "python -m lib data --dataset digits",
    )
    data.add_argument("--no-download", action="store_true", help="never try torchvision's downloader")
    _add_dataset(data)

    grid = _grid_parser(commands)
    sweep = _sweep_parser(commands)
    for sub in (data, grid, sweep):
        _add_debug(sub)
    _study_parser(commands)
    _report_parsers(commands)
    from lib.assignment.commands import add_parsers  # declare, handin, check

    add_parsers(commands)
    from lib.cli.runs import add_parser as add_runs  # here: lib.cli.runs imports this module

    add_runs(commands, _command)
    return parser


def _grid_parser(commands) -> argparse.ArgumentParser:
    grid = _command(
        commands,
        "grid",
        "run a controlled grid: factors x seeds, cached and resumable",
        "Train every combination of the --factor values on every seed, everything else fixed (--set), and log "
        "each trial to MLflow. A trial already in the store is not trained again; Ctrl-C and the same command "
        "resume. With --tune, nuisance hyperparameters are tuned for each factor value first.",
        "python -m lib grid --experiment first --dataset digits --factor dropout_p=0,0.25,0.5 --seeds 0,1,2",
    )
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
        "each arm's winner is then re-measured on the fresh --seeds (repeat for more); with --halving a range "
        "NAME=LOW:HIGH[:log], e.g. --tune lr=3e-4:3e-2:log",
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
    _add_halving(grid)
    grid.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, every arm gets all (default 0,1,2)")
    grid.add_argument(
        "--workers",
        default="auto",
        help="parallel worker processes, 1 thread each ('auto' = one per core; 1 = in-process)",
    )
    grid.add_argument("--out", type=Path, default=None, help="also write the results table to this CSV file")
    return grid


def _add_halving(grid: argparse.ArgumentParser) -> None:
    """``grid``'s successive-halving options (``lib.engine.halving``): rungs, points, eta, extensions."""
    grid.add_argument(
        "--halving",
        metavar="EPOCHS,...",
        default=None,
        help="tune the --tune ranges per arm by successive halving: rising epochs per rung, the last equal to "
        "--set epochs, e.g. --halving 1,3,9 --set epochs=9 (the cost is printed before training)",
    )
    grid.add_argument("--points", default=None, help="with --halving: quasi-random points per arm (default 27)")
    grid.add_argument("--eta", default=None, help="with --halving: keep 1/eta of the points per rung (default 3)")
    grid.add_argument(
        "--max-extensions",
        default=None,
        help="with --halving: how often a range whose winner lies at an edge is widened, per arm (default 2)",
    )


def tune_range(item: str):
    """A ``--tune NAME=LOW:HIGH[:log]`` item as a :class:`lib.engine.halving.Range` (a one-line error)."""
    from lib.engine.backend import StudyError
    from lib.engine.halving import parse_range

    try:
        return parse_range(item)
    except StudyError as exc:
        raise UsageError(f"--tune: {exc}") from None


def rungs(text: str) -> list[int]:
    """``--halving 1,3,9``: rising whole numbers of epochs."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.isdigit() and int(part) >= 1 for part in parts):
        raise UsageError(f"--halving {text!r}: give rising whole numbers of epochs >= 1, e.g. --halving 1,3,9")
    values = [int(part) for part in parts]
    if values != sorted(set(values)):
        raise UsageError(f"--halving {text!r}: the epochs must rise from rung to rung, e.g. --halving 1,3,9")
    return values


def whole(text: str | None, option: str, default: int, minimum: int) -> int:
    """A whole-number option (``--points``, ``--eta``, ``--max-extensions``) or its default."""
    if text is None:
        return default
    if not text.strip().isdigit() or int(text) < minimum:
        raise UsageError(f"{option} {text!r}: give a whole number >= {minimum} (default {default})")
    return int(text)


def _sweep_parser(commands) -> argparse.ArgumentParser:
    sweep = _command(
        commands,
        "sweep",
        "run or resume a hyperopt search (TPE, random or quasi-random), one MLflow run per trial",
        "Search the space (default: every model and training hyperparameter; --space FILE for your own) for "
        "--max-evals trials with hyperopt, each trial a child run under one parent run. The same --name resumes.",
        "python -m lib sweep --experiment first --dataset digits --name search --max-evals 30",
    )
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
        choices=algorithms.names(),
        default=algorithms.DEFAULT,
        help="search algorithm (default %(default)s): "
        + "; ".join(line.replace("%", "%%") for line in algorithms.help_lines()),
    )
    return sweep


def _took(profile: str, notebooks: tuple[str, ...]) -> str:
    """``about 5 min``: the measured time of a profile's notebooks (:data:`lib.study.profiles.MEASURED_SECONDS`)."""
    seconds = sum(MEASURED_SECONDS[profile].get(name, 0) for name in notebooks)
    return f"about {round(seconds / 60)} min"


def _study_parser(commands) -> argparse.ArgumentParser:
    study = _command(
        commands,
        "study",
        "run the numbered notebooks 01-04 with papermill; outputs go to runs/<profile>/",
        "Run the numbered notebooks in order with papermill. Executed notebooks, figures and tables go to "
        "runs/<profile>/ (ignored by git); a progress line after each cell estimates the time left.",
        "python -m lib study --profile quick",
    )
    study.add_argument(
        "--profile",
        default="quick",
        choices=["smoke", "quick", "full", "deep"],
        help=f"budget: quick (a try-out, the default: {_took('quick', NOTEBOOKS)}), smoke (the tests' seconds-long "
        f"run), full (notebooks 01-04: {_took('full', NOTEBOOKS)}), deep (notebooks 05 and 06: "
        f"{_took('deep', DEEP_NOTEBOOKS)}; needs the full profile's runs first). Measured on a 2-core CPU in fp32",
    )
    study.add_argument(
        "--reference",
        action="store_true",
        help="maintainers only: refresh the committed notebooks/ and figures/ in place (profiles full, deep; quick "
        "for 00_by_hand)",
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
        help="write the executed notebooks here (default: runs/<profile>/notebooks/; figures and tables go to "
        "runs/<profile>/figures/, or HYPERTUNE_FIGURES_DIR)",
    )
    _add_debug(study)
    return study


def _report_parsers(commands) -> None:
    report = _command(
        commands,
        "report",
        "figures, top_runs.csv and report.md for any experiments in the store (grids or sweeps)",
        "Read the trials of the experiments from MLflow and write, into --out: acc_vs_dropout.png, "
        "acc_vs_num_conv_blocks.png (and acc_vs_<name>.png for every other hyperparameter that varied), "
        "lr_weight_decay_scatter.png, top_runs.csv and report.md with the checks (range edges, failed and "
        "collapsed trials).",
        "python -m lib report --experiment first --out runs/first",
    )
    report.add_argument(
        "--experiment", action="append", required=True, help="an MLflow experiment name (repeat for more)"
    )
    report.add_argument("--out", type=Path, default=Path("report"), help="output folder (default: ./report)")
    report.add_argument("--top", type=int, default=10, help="configurations per budget in top_runs.csv (default 10)")
    links = _command(
        commands,
        "links",
        "print MLflow UI links that open each experiment's runs table",
        "Print, per experiment, a link that opens MLflow's runs table (not its GenAI traces view) with the "
        "varied hyperparameters and val_accuracy as columns. Start the UI with make ui.",
        "python -m lib links --experiment first",
    )
    links.add_argument("--experiment", action="append", default=None, help="only this experiment (repeatable)")
    links.add_argument(
        "--base", default=None, help="UI address (default: HYPERTUNE_UI_URL, a tracking server, or 127.0.0.1:5000)"
    )
