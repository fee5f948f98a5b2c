"""hyperopt TPE sweeps over the seed's hyperparameters, on top of the engine's trial machinery.

A search space is written as plain data, one entry per hyperparameter::

    {"norm_type": ["none", "batch"],            # a choice
     "dropout_p": {"uniform": [0.0, 0.6]},      # a continuous range
     "lr": {"loguniform": [1e-4, 1e-2]},        # a log-scaled range
     "conv_out_channels": {"quniform": [16, 64, 16]},  # integers in steps
     "pool_kernel_size": [2]}                   # a single value: a constant, never hp.choice

:func:`build_space` turns it into a hyperopt space. A dimension with one allowed value (or a range
with ``low == high``) becomes a constant, so hyperopt's ``low == high`` errors never happen; an
empty list or an inverted range is a :class:`StudyError` before any training.

:func:`run_sweep` runs TPE one suggestion at a time. Each step calls ``fmin`` with
``max_evals = done + 1`` and ``rstate = default_rng(seed + done)``: an interrupted sweep resumes
from its saved trials with exactly the random stream an uninterrupted one would have used, so it
neither repeats earlier points nor exceeds ``max_evals``. Every trial is a child MLflow run of one
parent run per sweep, and goes through the engine's cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import pickle
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from hyperopt import STATUS_FAIL, STATUS_OK, Trials, fmin, hp, space_eval, tpe
from hyperopt.exceptions import AllTrialsFailed

from lib import tracking
from lib.config import ConfigError, TrialConfig, check_known_fields
from lib.engine import StudyError, check_engine, result_from_run, run_trials
from lib.paths import state_dir
from lib.trial import DataSpec, TrialResult, code_version, trial_key

DEFAULT_SPACE: dict[str, Any] = {
    "norm_type": ["none", "batch"],
    "dropout_p": {"uniform": [0.0, 0.6]},
    "dropout_placement": ["block", "head"],
    "num_conv_blocks": [1, 2, 3],
    "conv_out_channels": [16, 32, 48],
    "conv_kernel_size": [3, 5],
    "pool_type": ["max", "avg"],
    "pool_kernel_size": [2],
    "lr": {"loguniform": [2e-4, 1e-2]},
    "weight_decay": {"loguniform": [1e-5, 1e-2]},
    "optimizer": ["adam", "adamw"],
    "batch_size": [64, 128, 256],
}


def build_space(spec: dict[str, Any]) -> dict[str, Any]:
    """Turn a plain-data search space into a hyperopt space (see the module docstring)."""
    if not spec:
        raise StudyError("the search space is empty; give at least one hyperparameter to search")
    try:
        check_known_fields(spec)
    except ConfigError as exc:
        raise StudyError(f"search space: {exc}") from None
    return {name: _dimension(name, value) for name, value in spec.items()}


def _check_value(name: str, value: Any) -> None:
    """A value the config would reject is a study error now, not a silently dropped trial later."""
    try:
        TrialConfig.from_flat(_decode({name: value}))
    except ConfigError as exc:
        raise StudyError(f"search space '{name}': value {value!r} is not allowed: {exc}") from None


def _dimension(name: str, value: Any) -> Any:
    if isinstance(value, list | tuple):
        values = list(value)
        if not values:
            raise StudyError(f"search space '{name}': empty list; give at least one value")
        for item in values:
            _check_value(name, item)
        return values[0] if len(values) == 1 else hp.choice(name, values)
    if isinstance(value, dict):
        if len(value) != 1:
            raise StudyError(
                f"search space '{name}': a range is one of {{uniform: [low, high]}}, {{loguniform: [low, high]}} "
                f"or {{quniform: [low, high, step]}}; got {value!r}"
            )
        ((kind, bounds),) = value.items()
        if kind not in ("uniform", "loguniform", "quniform"):
            raise StudyError(f"search space '{name}': unknown range type '{kind}'; use uniform, loguniform or quniform")
        if not isinstance(bounds, list | tuple) or len(bounds) not in (2, 3):
            raise StudyError(f"search space '{name}': {kind} needs [low, high] (quniform: [low, high, step])")
        low, high = float(bounds[0]), float(bounds[1])
        if low > high:
            raise StudyError(f"search space '{name}': low={low} > high={high}; swap them")
        if kind == "loguniform" and low <= 0:
            raise StudyError(f"search space '{name}': loguniform needs low > 0; got {low}")
        _check_value(name, low)
        _check_value(name, high)
        if low == high:
            return int(low) if kind == "quniform" else low
        if kind == "uniform":
            return hp.uniform(name, low, high)
        if kind == "loguniform":
            return hp.loguniform(name, math.log(low), math.log(high))
        step = float(bounds[2]) if len(bounds) > 2 else 1.0
        return hp.quniform(name, low, high, step)
    _check_value(name, value)
    return value  # a plain constant


@dataclass
class SweepResult:
    """All trials of a sweep (in order) and the best finished one."""

    trials: list[TrialResult]
    parent_run_id: str

    @property
    def best(self) -> TrialResult:
        finished = [t for t in self.trials if t.ok]
        if not finished:
            raise RuntimeError("no trial of this sweep finished; see the failure_reason tags in MLflow")
        return max(finished, key=lambda t: t.val_accuracy)


def _sweep_id(experiment: str, sweep_name: str, spec: dict[str, Any], data: DataSpec) -> str:
    """Identity of a resumable sweep: its name, space, data split and the training code's version.

    Changing any of them starts a fresh sweep instead of resuming one whose points were scored
    by other code or on other data.
    """
    text = f"{experiment}|{sweep_name}|{spec!r}|{sorted(asdict(data).items())}|{code_version()}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _state_path(experiment: str, sweep_name: str, sweep_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{experiment}__{sweep_name}")
    return state_dir() / f"{safe}__{sweep_id}.hyperopt.pkl"


def _decode(params: dict[str, Any]) -> dict[str, Any]:
    """hyperopt values to config values (quniform floats to ints)."""
    ints = {
        "num_conv_blocks",
        "conv_out_channels",
        "conv_kernel_size",
        "pool_kernel_size",
        "batch_size",
        "epochs",
        "recalibrate_batches",
        "group_norm_groups",
        "channel_multiplier",
    }
    return {k: int(round(v)) if k in ints and isinstance(v, float) else v for k, v in params.items()}


def _parent_run(experiment: str, sweep_name: str, sweep_id: str, settings: dict[str, Any], tags: dict[str, str]) -> str:
    exp_id = tracking.experiment_id(experiment)
    for run in tracking.search_ids([exp_id]):
        if run.data.tags.get("sweep_id") == sweep_id:
            tracking.client().update_run(run.info.run_id, status=tracking.RUNNING)
            return run.info.run_id
    parent_tags = tags | {"sweep_parent": sweep_name, "sweep_id": sweep_id, "code_version": code_version()}
    return tracking.start_run(exp_id, settings, parent_tags, run_name=f"sweep-{sweep_name}")


def run_sweep(
    space: dict[str, Any] | None,
    experiment: str,
    sweep_name: str,
    max_evals: int,
    seed: int = 0,
    base: TrialConfig | dict[str, Any] | None = None,
    data: DataSpec = DataSpec(),
    tags: dict[str, str] | None = None,
    n_startup: int | None = None,
    progress: bool = True,
    engine: str = "local",
    early_stopping: bool | str = False,
) -> SweepResult:
    """Run (or resume) a TPE sweep of ``max_evals`` trials in total and return all its trials.

    ``engine="ray"`` runs the same space with Ray Tune's ``HyperOptSearch``, several trials at once
    (see ``lib.ray_backend``); ``early_stopping=True`` (Ray only) lets ASHA stop poor trials early.
    """
    from tqdm.auto import tqdm

    check_engine(engine)
    if engine == "ray":
        from lib.ray_backend import import_ray

        import_ray()  # the install hint before anything is logged
    if early_stopping and engine != "ray":
        raise StudyError("early_stopping needs engine='ray' (ASHA); the local engine runs every trial to its end")
    if not isinstance(max_evals, int) or max_evals < 1:
        raise StudyError(f"max_evals={max_evals!r}: must be an integer >= 1")
    spec = DEFAULT_SPACE if space is None else space
    hyperopt_space = build_space(spec)
    base_config = base if isinstance(base, TrialConfig) else TrialConfig.from_flat(base or {})
    if "seed" not in spec:
        hyperopt_space["seed"] = base_config.seed
    # TPE's default of 20 random start-up points would make a short sweep pure random search.
    startup = n_startup if n_startup is not None else max(3, min(10, max_evals // 3))
    algo = partial(tpe.suggest, n_startup_jobs=startup)
    tags = (tags or {}) | {"sweep": sweep_name}
    # a Ray sweep keeps its own searcher state, so it is a different sweep from a local one of the same name
    sweep_id = _sweep_id(experiment, sweep_name if engine == "local" else f"{sweep_name}@{engine}", spec, data)
    parent = _parent_run(
        experiment,
        sweep_name,
        sweep_id,
        {"max_evals": max_evals, "sweep_seed": seed, "n_startup": startup, "space": repr(spec)[:5000]} | data.params(),
        tags | ({"engine": engine} if engine != "local" else {}),
    )
    state = _state_path(experiment, sweep_name, sweep_id)
    if engine == "ray":
        from lib import ray_backend

        trials = ray_backend.run_sweep(
            hyperopt_space,
            experiment,
            lambda params: TrialConfig.from_flat(_decode(params), base_config),
            max_evals,
            seed,
            startup,
            data,
            tags,
            parent,
            state.with_name(state.name.replace(".hyperopt.pkl", ".ray.pkl")),
            ray_backend.max_epochs(spec, base_config),
            early_stopping=early_stopping,
            progress=progress,
        )
        tracking.end_run(parent, tracking.FINISHED)
        return SweepResult(trials, parent)
    trials: Trials = pickle.loads(state.read_bytes()) if state.exists() else Trials()
    results: dict[int, TrialResult] = {}

    def objective(params: dict[str, Any]) -> dict[str, Any]:
        values = _decode(params)
        try:
            config = TrialConfig.from_flat(values, base_config)
        except ConfigError as exc:
            return {"status": STATUS_FAIL, "failure": str(exc)}
        result = run_trials([config], experiment, data, tags, workers=1, parent_run_id=parent, progress=False)[0]
        results[len(trials.trials) - 1] = result
        if not result.ok:
            return {"status": STATUS_FAIL, "failure": result.failure_reason[:500], "run_id": result.run_id}
        return {
            "status": STATUS_OK,
            "loss": -result.val_accuracy,
            "run_id": result.run_id,
            "val_accuracy": result.val_accuracy,
        }

    bar = tqdm(
        total=max_evals,
        initial=min(len(trials.trials), max_evals),
        desc=f"sweep {sweep_name}",
        unit="trial",
        disable=not progress,
    )
    try:
        while len(trials.trials) < max_evals:
            done = len(trials.trials)
            # fmin records the step, then raises AllTrialsFailed while no trial has succeeded yet
            with contextlib.suppress(AllTrialsFailed):
                fmin(
                    objective,
                    hyperopt_space,
                    algo=algo,
                    max_evals=done + 1,
                    trials=trials,
                    rstate=np.random.default_rng(seed + done),
                    show_progressbar=False,
                )
            state.write_bytes(pickle.dumps(trials))  # after each trial: a kill loses at most one
            bar.update()
            ok = [t["result"]["val_accuracy"] for t in trials.trials if t["result"]["status"] == STATUS_OK]
            if ok:
                bar.set_postfix(best_val_acc=f"{max(ok):.4f}", refresh=False)
    finally:
        bar.close()
    tracking.end_run(parent, tracking.FINISHED)
    return SweepResult(_collect(trials, hyperopt_space, base_config, data), parent)


def _collect(
    trials: Trials, hyperopt_space: dict[str, Any], base_config: TrialConfig, data: DataSpec
) -> list[TrialResult]:
    """Every trial's point decoded with ``space_eval``, with the result logged for it (no retraining)."""
    results = []
    for trial in trials.trials:
        vals = {k: v[0] for k, v in trial["misc"]["vals"].items() if v}
        point = _decode(space_eval(hyperopt_space, vals))
        outcome = trial["result"]
        try:
            config = TrialConfig.from_flat(point, base_config)
        except ConfigError as exc:
            results.append(
                TrialResult(
                    key="", config=point, status="failed", failure_kind="invalid_config", failure_reason=str(exc)
                )
            )
            continue
        run_id = outcome.get("run_id")
        if run_id:
            result = result_from_run(config, trial_key(config, data), tracking.client().get_run(run_id))
            result.config = config.flat()
            results.append(result)
    return results
