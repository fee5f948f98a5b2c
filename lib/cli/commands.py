"""What each sub-command of ``python -m lib`` does, once its arguments are parsed.

``run(args, debug)`` dispatches to ``data``, ``grid``, ``sweep``, ``study``, ``report`` and ``links``.
Everything is validated (configs, data, the store) before the first thing is written.

What this is not: the argument parser (``lib.cli.parser``), the error messages (``lib.cli.errors``) or the
notebook runner (``lib.study.runner``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import yaml

from lib.cli import parser
from lib.cli.errors import EXIT_ALL_FAILED, EXIT_OK, store_problem
from lib.cli.parser import UsageError


def _base_config(base: dict[str, Any]):
    """The ``--set`` values as a validated config (before anything is written)."""
    from lib.config import ConfigError, TrialConfig

    try:
        return TrialConfig.from_flat(base)
    except ConfigError as exc:
        raise UsageError(f"--set: {exc}") from None


def _data_spec(args: argparse.Namespace):
    from lib.data import DataSpec

    for option, value in (("--train-subset", args.train_subset), ("--val-subset", args.val_subset)):
        if value is not None and value < 1:
            raise UsageError(f"{option} {value}: give a number of images >= 1 (or leave it out for all)")
    return DataSpec(train_subset=args.train_subset, val_subset=args.val_subset, dataset=args.dataset)


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


def _open_store(debug: bool) -> None:
    """Open (create, migrate) the MLflow store now, so a store problem is reported before any training."""
    from lib import tracking

    try:
        tracking.open_store()
    except tracking.StoreError:
        raise
    except Exception as exc:
        raise tracking.StoreError(store_problem(exc)) from exc
    if not debug:
        # MLflow logs every database error with its traceback before raising it; the error boundary reports it
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def _links(args: argparse.Namespace) -> int:
    from lib.report import ReportError, ui_links

    try:
        found = ui_links(args.experiment, args.base)
    except ReportError as exc:
        print(f"links: {exc}", file=sys.stderr)
        return exc.exit_code
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
        return exc.exit_code
    print(f"report written to {path} (figures and top_runs.csv next to it)")
    return 0


def _print_ui_link(experiment: str) -> None:
    from lib.report import runs_url

    print(f"MLflow UI (`make ui` first): {runs_url(experiment)}")


def run(args: argparse.Namespace, debug: bool = False) -> int:
    if args.command == "data":
        from lib.data import describe_dataset

        print(describe_dataset(args.dataset, download=not args.no_download))
        return EXIT_OK
    if args.command == "study":
        from lib.study.runner import run_study

        return run_study(args.profile, args.notebooks, args.output_dir, debug, reference=args.reference)
    if args.command == "report":
        return _report(args)
    if args.command == "links":
        return _links(args)
    if args.command in ("declare", "handin", "check"):
        from lib.assignment import commands

        return commands.run(args)
    if args.command == "runs":
        from lib.cli.runs import run as runs

        return runs(args)
    base = parser.assignments(args.set, "--set")
    tags = {k: str(v) for k, v in parser.assignments(args.tag, "--tag").items()} | _study_tags(args)
    base_config = _base_config(base)
    data = _data_spec(args)
    if args.command == "grid":
        return _grid(args, base, tags, data, debug)
    return _sweep(args, base_config, tags, data, debug)


def _study_tags(args: argparse.Namespace) -> dict[str, str]:
    """The command that reproduces this call (and its question), tagged on every run it starts."""
    import shlex

    tags = {"study_command": shlex.join(["python", "-m", "lib", *getattr(args, "argv", [])])}
    if getattr(args, "question", None):
        tags["question"] = args.question
    return tags


def _grid(args: argparse.Namespace, base: dict[str, Any], tags: dict[str, str], data, debug: bool) -> int:
    from lib.engine import grid
    from lib.engine.request import StudyRequest

    factors = parser.factors(args.factor)
    seeds = parser.seeds(args.seeds)
    workers = parser.workers(args.workers)
    if args.tune or args.tune_seeds is not None or args.halving is not None:
        return _tuned_grid(args, base, tags, data, debug)
    _check_no_halving_options(args)
    request = StudyRequest(args.experiment, base, data, tags, engine=args.engine, workers=workers)
    grid.grid_configs(request.config, factors, seeds)  # validate every grid point before anything is written
    _load_data(data)
    _open_store(debug)
    frame = grid.run_study(request, factors, seeds)
    columns = [*dict.fromkeys([*factors, "seed"]), "status", "val_accuracy", "cached"]
    if "failure_kind" in frame and (frame["status"] != "finished").any():
        columns.append("failure_kind")
    print(frame[columns].to_string(index=False))
    if args.out:
        frame.to_csv(args.out, index=False)
    _print_ui_link(args.experiment)
    return _report_outcome(frame, [*dict.fromkeys([*factors, "seed"])], args.dataset)


def _tuned_grid(args: argparse.Namespace, base: dict[str, Any], tags: dict[str, str], data, debug: bool) -> int:
    """``grid --factor ... --tune ...``: nuisance tuned per arm on the tuning seeds, winners re-measured."""
    from lib.engine import tuning
    from lib.engine.ranges import is_range
    from lib.engine.request import StudyRequest

    if args.halving is not None or any(is_range(item) for item in args.tune):
        return _halving_grid(args, base, tags, data, debug)
    _check_no_halving_options(args)
    if not args.tune:
        raise UsageError("--tune-seeds needs --tune NAME=V1,V2 (the nuisance hyperparameters to tune per arm)")
    roles = tuning.Roles(parser.factors(args.factor), parser.factors(args.tune, "--tune"), dict(base))
    seeds = parser.seeds(args.seeds)
    tune_seeds = parser.seeds(args.tune_seeds) if args.tune_seeds is not None else [100, 101]
    request = StudyRequest(args.experiment, base, data, tags, engine=args.engine, workers=parser.workers(args.workers))
    tuning.plan(request.config, roles, tune_seeds, seeds)  # every point and the seeds checked before any write
    _load_data(data)
    _open_store(debug)
    result = tuning.run_study(request, roles, tune_seeds, seeds, args.score)
    return _finish_tuned(args, result, _print_tuned)


def _finish_tuned(args: argparse.Namespace, result, show) -> int:
    """What every tuned grid ends with: its own printout, the --out table, the UI link and the outcome."""
    show(result)
    if args.out:
        result.summary().to_csv(args.out, index=False)
    _print_ui_link(args.experiment)
    return _tuned_outcome(result, args.dataset)


def _print_tuned(result) -> None:
    roles = result.roles
    print(
        f"roles: scientific {', '.join(roles.scientific)} | nuisance {', '.join(roles.nuisance)} (tuned per arm on "
        f"seeds {','.join(map(str, result.tune_seeds))}) | fixed {', '.join(sorted(roles.fixed)) or 'config defaults'}"
    )
    with __import__("pandas").option_context("display.width", 200, "display.max_columns", 30):
        _print_tuning_tables(result, ["effect", "mean_diff", "ci_low", "ci_high", "n_seeds"])


def _check_no_halving_options(args: argparse.Namespace) -> None:
    """``--points``, ``--eta`` and ``--max-extensions`` belong to ``--halving``."""
    for option, value in (("--points", args.points), ("--eta", args.eta), ("--max-extensions", args.max_extensions)):
        if value is not None:
            raise UsageError(f"{option} needs --halving EPOCHS,... and --tune ranges (or drop {option})")


def _halving_design(args: argparse.Namespace, base: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``lib.engine.halving.HalvingDesign`` after the seeds, and the ranges, from the command line
    (one-line errors)."""
    from lib.config import TrainConfig
    from lib.engine.halving import DEFAULT_ETA, DEFAULT_MAX_EXTENSIONS, DEFAULT_POINTS
    from lib.engine.ranges import is_range

    if not args.tune:
        raise UsageError("--halving needs --tune ranges, e.g. --tune lr=3e-4:3e-2:log (tuned per arm)")
    lists = [item for item in args.tune if not is_range(item)]
    if lists:
        raise UsageError(f"--tune {lists[0]}: with --halving every --tune is a range NAME=LOW:HIGH[:log]")
    if args.halving is None:
        raise UsageError(
            f"--tune {args.tune[0]}: a range needs --halving EPOCHS,... (e.g. --halving 1,3,9 --set epochs=9); "
            "or give a list, e.g. --tune lr=1e-3,3.2e-3,1e-2"
        )
    rungs = parser.rungs(args.halving)
    epochs = base.get("epochs", TrainConfig().epochs)
    if rungs[-1] != epochs:
        raise UsageError(
            f"--halving {args.halving}: the last rung must equal the claim's budget, epochs={epochs}; "
            f"end --halving at {epochs} or --set epochs={rungs[-1]}"
        )
    return {
        "ranges": [parser.tune_range(item) for item in args.tune],
        "rungs": rungs,
        "n_points": parser.whole(args.points, "--points", DEFAULT_POINTS, 1),
        "eta": parser.whole(args.eta, "--eta", DEFAULT_ETA, 2),
        "max_extensions": parser.whole(args.max_extensions, "--max-extensions", DEFAULT_MAX_EXTENSIONS, 0),
    }


def _halving_grid(args: argparse.Namespace, base: dict[str, Any], tags: dict[str, str], data, debug: bool) -> int:
    """``grid --factor ... --tune NAME=LOW:HIGH[:log] --halving 1,3,9``: ranges tuned per arm by successive
    halving with range extension (``lib.engine.halving``), the cost printed first, winners re-measured."""
    from lib.engine import halving
    from lib.engine.request import StudyRequest

    shape = _halving_design(args, base)
    factors = parser.factors(args.factor)
    seeds = parser.seeds(args.seeds)
    tune_seeds = parser.seeds(args.tune_seeds) if args.tune_seeds is not None else [100, 101]
    design = halving.HalvingDesign(factors, shape.pop("ranges"), tune_seeds, seeds, **shape, rule=args.score)
    request = StudyRequest(args.experiment, base, data, tags, engine=args.engine, workers=parser.workers(args.workers))
    _, roles, _ = halving.plan(request.base, design)  # nothing written yet
    print(design.cost(len(roles.arms())).text())
    _load_data(data)
    _open_store(debug)
    result = halving.run_study(request, design)
    return _finish_tuned(args, result, _print_halving)


def _print_halving(result) -> None:
    """The rungs (points kept per rung per arm), the extensions, the winners and the paired effects."""
    import pandas as pd

    roles = result.roles
    print(
        f"roles: scientific {', '.join(roles.scientific)} | nuisance ranges {', '.join(roles.nuisance)} (halving per "
        f"arm on seeds {','.join(map(str, result.tune_seeds))}) | fixed {', '.join(sorted(roles.fixed)) or 'none'}"
    )
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print("rungs (points trained, complete on every tuning seed, kept for the next rung):")
        print(result.rung_table().to_string(index=False))
        for arm in result.arms:
            for line in arm.extensions:
                print(line)
            ranges = " ".join(rng.text() for rng in arm.ranges.values())
            print(f"arm {arm.label()}: winner {arm.winner} over {ranges}: {arm.verdict()}")
        _print_tuning_tables(result, ["effect", "mean_diff", "ci_low", "ci_high", "n_seeds", "decided"])


def _tuned_outcome(result, dataset: str = "fashion_mnist") -> int:
    from lib.engine.grid import results_frame

    trials = [r for arm in result.arms for r in [*arm.remeasured, *arm.fixed]]
    frame = results_frame(trials) if trials else __import__("pandas").DataFrame(columns=["status"])
    return _report_outcome(frame, [*result.roles.scientific, *result.roles.nuisance, "seed"], dataset)


def _sweep(args: argparse.Namespace, base_config, tags: dict[str, str], data, debug: bool) -> int:
    import pandas as pd

    from lib.engine import algorithms, search
    from lib.engine.grid import results_frame
    from lib.engine.request import StudyRequest

    if args.max_evals < 1:
        raise UsageError(f"--max-evals {args.max_evals}: give the total number of trials, a whole number >= 1")
    if args.seed < 0:
        raise UsageError(f"--seed {args.seed}: the sweep's seed is a whole number >= 0")
    if args.startup is not None and args.startup < 1:
        raise UsageError(f"--startup {args.startup}: TPE's random start-up points, a whole number >= 1")
    if args.startup is not None and not algorithms.get(args.algo).uses_startup:
        raise UsageError(f"--startup is TPE's option; --algo {args.algo} has no start-up phase (drop --startup)")
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
        search.build_space(space)  # validate before anything is written
    spec = space or search.DEFAULT_SPACE
    search.algorithm_for(args.algo, spec, args.max_evals, args.seed, args.startup)  # what it cannot search
    tags = tags | _sweep_roles(args, spec, base_config)
    _load_data(data)
    _open_store(debug)
    request = StudyRequest(args.experiment, base_config, data, tags, engine=args.engine)
    how = {"seed": args.seed, "algo": args.algo, "n_startup": args.startup, "early_stopping": args.early_stopping}
    result = search.run_study(request, search.SweepDesign(args.name, args.max_evals, space, **how))
    frame = results_frame(result.trials) if result.trials else pd.DataFrame(columns=["status"])
    finished = [t for t in result.trials if t.ok]
    if finished:
        best = max(finished, key=lambda t: t.val_accuracy)
        accuracy = f"{best.val_accuracy * 100:.2f}%"
        print(f"{len(result.trials)} trials; best validation accuracy {accuracy} (run {best.run_id})")
        print(yaml.safe_dump({k: v for k, v in best.config.items()}, sort_keys=True))
    _print_ui_link(args.experiment)
    return _report_outcome(frame, [*spec, "run_id"], args.dataset)


def _sweep_roles(args: argparse.Namespace, space: dict[str, Any], base_config) -> dict[str, str]:
    """Role tags of a sweep: ``--role`` names (searched ones only), the rest searched = nuisance, --set = fixed."""
    from lib.engine.search import searched_dimensions

    declared = parser.roles(args.role)
    searched = searched_dimensions(space)
    stray = sorted(set(declared) - set(searched))
    if stray:
        raise UsageError(f"--role {stray[0]}: not a searched dimension of this space ({', '.join(searched)})")
    fixed = sorted(parser.assignments(args.set, "--set"))
    fixed += [name for name, role in declared.items() if role == "fixed"]
    if [name for name, role in declared.items() if role == "fixed"]:
        raise UsageError(f"--role {fixed[-1]}=fixed: a searched dimension is not fixed; fix it with --set instead")
    scientific = [name for name in searched if declared.get(name) == "scientific"]
    nuisance = [name for name in searched if name not in scientific]
    return {
        "role_scientific": ",".join(scientific) or "(none declared)",
        "role_nuisance": ",".join(nuisance),
        "role_fixed": ",".join(fixed) or "(config defaults)",
    }


def _report_outcome(frame, label_columns: list[str], dataset: str = "fashion_mnist") -> int:
    """Print each failed trial's reason and a summary line (collapsed trials counted apart); exit 3 when
    every trial failed."""
    from collections import Counter

    from lib.report import n_classes
    from lib.stats import COLLAPSE_MARGIN, collapsed

    failed = frame[frame["status"] != "finished"] if len(frame) else frame
    for _, row in failed.iterrows():
        label = " ".join(f"{c}={row[c]}" for c in label_columns if c in row.index)
        reason = str(row.get("failure_reason", "") or "").strip()
        reason = reason.splitlines()[0][:300] if reason else "(no reason recorded)"
        print(f"failed {label}: {row.get('failure_kind') or 'error'}: {reason}")
    kinds = Counter(str(k or "error").replace("_", " ") for k in failed.get("failure_kind", []))
    detail = f" ({', '.join(f'{n} {k}' if len(kinds) > 1 else k for k, n in kinds.most_common())})" if kinds else ""
    done = frame[frame["status"] == "finished"] if len(frame) else frame
    fell = int(collapsed(done["val_accuracy"], n_classes(dataset)).sum()) if len(done) else 0
    chance = f" ({fell} collapsed to chance accuracy: at most {100 / n_classes(dataset) + 100 * COLLAPSE_MARGIN:.0f}%)"
    cached = int(done["cached"].fillna(False).astype(bool).sum()) if "cached" in done else 0
    kept = f" ({cached} cached)" if cached else ""  # as the progress line counts them
    print(f"{len(frame)} trials: {len(done)} finished{kept}{chance if fell else ''}, {len(failed)} failed{detail}")
    if len(frame) and len(failed) == len(frame):
        print("every trial failed: see the reasons above (exit code 3)", file=sys.stderr)
        return EXIT_ALL_FAILED
    return EXIT_OK


def _print_tuning_tables(result: Any, columns: list[str]) -> None:
    """The score rule, the arms' summary, the winner's curse and the paired effects (these ``columns``) of a
    tuned or halving study."""
    print(
        f"score: {'last epoch' if result.rule == 'last' else 'best epoch'} validation accuracy; re-measured on "
        f"fresh seeds {','.join(map(str, result.seeds))}; fixed-nuisance line at {result.fixed_nuisance}"
    )
    print(result.summary().to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print("winner's curse (tuning score - re-measured score, accuracy points):")
    print(result.curse().to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    effects = result.effects()
    if len(effects):
        print("paired effects on the re-measured seeds (accuracy points, 95% t-interval):")
        print(effects[columns].round(2).to_string(index=False))
