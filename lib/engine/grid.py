"""Run many trials: controlled grids that are cached, resumable, parallel and fail-safe.

This module is the front door and a thin dispatcher: it validates a study, asks the records layer
(``lib.engine.records``) which trials are cached, and hands the rest to a back-end behind the interface of
``lib.engine.backend``: ``engine="local"`` (``lib.engine.local_backend``, processes on this machine) or
``engine="ray"`` (``lib.engine.ray_tune``, imported only then).

- **Cached**: every trial has a key (:func:`lib.engine.trial.trial_key`). A trial whose key already has a
  finished run in the experiment is not trained again; its logged result is reused.
- **Resumable**: a run is created (RUNNING) when its trial starts and closed when it ends. Ctrl-C
  marks the trials in flight KILLED; after a ``kill -9`` the next call finds their runs still
  RUNNING with a dead owner process and marks them KILLED. Either way they are trained again, and
  finished trials stay logged exactly once.
- **Fail-safe**: a trial that diverges, is impossible for the input size, raises or loses its worker
  is logged as FAILED with ``failure_kind``/``failure_reason`` tags, and the study goes on.
  Deterministic failures (diverged, invalid config) are cached like successes; errors are retried.
- **Parallel**: see the back-ends. This process is the only MLflow writer.

A study is asked for with a :class:`lib.engine.request.StudyRequest` (experiment, base config, data, tags,
engine, workers): :func:`run_study` runs a grid for one; :func:`run_grid` is its keyword form.

What this is not: the hyperopt search (``lib.engine.search``), the records (``lib.engine.records``) or the statistics.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from lib import tracking
from lib.config import ConfigError, TrialConfig, check_known_fields
from lib.data import DataSpec
from lib.engine import records
from lib.engine.backend import Backend, Feed, RunOptions, StudyError
from lib.engine.records import results_frame
from lib.engine.request import ENGINES, StudyRequest, check_engine
from lib.engine.trial import TrialResult
from lib.store.schema import TAG_ROLE

__all__ = [
    "ENGINES",
    "StudyError",
    "StudyRequest",
    "backend_for",
    "check_engine",
    "grid_configs",
    "results_frame",
    "run_grid",
    "run_study",
    "run_trials",
]


def check_values(values: dict[str, Sequence[Any]], what: str, seed_hint: str) -> None:
    """Every name a known hyperparameter with at least one value, and no ``seed`` among them (a one-line
    :class:`StudyError` naming ``what`` otherwise). Shared by grids and by the roles of a tuned study."""
    try:
        check_known_fields(dict(values))
    except ConfigError as exc:
        raise StudyError(f"{what}: {exc}") from None
    empty = [name for name, items in values.items() if len(list(items)) == 0]
    if empty:
        raise StudyError(f"{what} {empty} has no values; give at least one value each.")
    if "seed" in values:
        raise StudyError(seed_hint)


def grid_configs(
    base: TrialConfig | dict[str, Any] | None, factors: dict[str, Sequence[Any]], seeds: Sequence[int]
) -> list[TrialConfig]:
    """The full cartesian product ``factors`` x ``seeds`` over ``base``, validated up front."""
    if not isinstance(factors, dict):
        raise StudyError(f"factors must be a dict of name -> list of values; got {type(factors).__name__}")
    check_values(factors, "grid factor", "put seeds in the `seeds` argument, not in the factors")
    if len(list(seeds)) == 0:
        raise StudyError("seeds is empty; give at least one seed (three or more for confidence intervals).")
    base_config = base if isinstance(base, TrialConfig) else TrialConfig.from_flat(base or {})
    names = list(factors)
    points = [dict(zip(names, values, strict=True)) for values in itertools.product(*(factors[n] for n in names))]
    return point_configs(base_config, points, seeds)


def point_configs(base: TrialConfig, points: list[dict[str, Any]], seeds: Sequence[int]) -> list[TrialConfig]:
    """Every point with every seed over ``base``, validated (a one-line :class:`StudyError` names the point)."""
    configs = []
    for point in points:
        for seed in seeds:
            try:
                configs.append(TrialConfig.from_flat(point | {"seed": seed}, base))
            except ConfigError as exc:
                raise StudyError(f"grid point {point}: {exc}") from None
    return configs


def run_grid(
    base: TrialConfig | dict[str, Any] | None,
    factors: dict[str, Sequence[Any]],
    seeds: Sequence[int],
    experiment: str,
    data: DataSpec = DataSpec(),
    tags: dict[str, str] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """:func:`run_study` as keywords: ``options`` are :func:`run_trials`' (``workers``, ``threads_per_trial``,
    ``progress``, ``engine``)."""
    return run_study(StudyRequest.of(experiment, base, data, tags, **options), factors, seeds)


def grid_roles(base: TrialConfig | Mapping[str, Any] | None, factors: dict[str, Sequence[Any]]) -> dict[str, str]:
    """The role tags of a plain grid: its factors are the scientific hyperparameters, nothing is tuned, the
    values given in ``base`` are fixed (the rest stay at the config's defaults). A caller's own tags win."""
    fixed = sorted(base) if isinstance(base, Mapping) else []
    return {
        TAG_ROLE["scientific"]: ",".join(factors),
        TAG_ROLE["nuisance"]: "(none)",
        TAG_ROLE["fixed"]: ",".join(name for name in fixed if name not in factors) or "(config defaults)",
    }


def run_study(request: StudyRequest, factors: dict[str, Sequence[Any]], seeds: Sequence[int]) -> pd.DataFrame:
    """Run a controlled grid, ``factors`` x ``seeds`` over the request's base, and return one row per trial
    (config columns + metrics). ``engine="ray"`` runs the same trials on Ray Tune (``lib.engine.ray_tune``),
    with the same records."""
    configs = grid_configs(request.config, factors, seeds)
    tags = grid_roles(request.base, factors) | request.tags
    return results_frame(run_trials(configs, request.experiment, request.data, tags, **request.options))


def backend_for(engine: str) -> Backend:
    """The back-end called ``engine``; Ray is imported only here, and only for ``engine="ray"``."""
    check_engine(engine)
    if engine == "ray":
        from lib.engine.ray_backend import import_ray

        import_ray()  # the install hint, before anything is logged
        from lib.engine.ray_tune import RayBackend

        return RayBackend()
    from lib.engine.local_backend import LocalBackend

    return LocalBackend()


def execute(backend: Backend, feed: Feed, options: RunOptions) -> None:
    """Run ``feed`` on ``backend``; runs still open afterwards (Ctrl-C, an error, a lost trial) end KILLED."""
    try:
        backend.run(feed, options)
    except BaseException as exc:
        feed.abort("interrupted" if isinstance(exc, KeyboardInterrupt) else f"study aborted: {exc!r}")
        raise
    feed.abort("the back-end ended without a result for this trial")


def run_trials(
    configs: Sequence[TrialConfig],
    experiment: str,
    data: DataSpec = DataSpec(),
    tags: dict[str, str] | None = None,
    workers: int | str = "auto",
    threads_per_trial: int | None = None,
    parent_run_id: str | None = None,
    progress: bool = True,
    engine: str = "local",
) -> list[TrialResult]:
    """Run ``configs`` (cached, resumable, parallel) and return their results in input order.

    ``engine="ray"`` runs them on Ray Tune (``workers``: trials at once, ``threads_per_trial``: CPUs each).
    """
    backend = backend_for(engine)
    options = RunOptions(data, workers, threads_per_trial)
    if not configs:
        raise StudyError("no trials to run: the study is empty")
    exp_id = tracking.experiment_id(experiment)
    plan = records.plan_trials(configs, exp_id, data)
    records.add_hypothesis(plan.hits.values(), (tags or {}).get("hypothesis"))
    unique = len(set(plan.keys))
    bar = records.Progress(experiment, unique, unique - len(plan.todo), progress)
    try:
        if plan.todo:
            recorder = records.Recorder(exp_id, data, records.trial_tags(experiment, data, tags), parent_run_id, bar)
            feed = records.RecordingFeed(recorder, plan.todo)
            execute(backend, feed, options)
            plan.results |= feed.results
            missing = [key for key in plan.todo if key not in plan.results]
            if missing:
                raise RuntimeError(f"no result for {len(missing)} trial(s); see the KILLED runs in MLflow")
    except BaseException:
        bar.close()
        raise
    bar.close(plan.results.values())
    return plan.in_request_order()
