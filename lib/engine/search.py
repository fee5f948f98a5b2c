"""Sweeps: the search space and the one sweep driver both back-ends run; the algorithms propose its points.

A search space is written as plain data, one entry per hyperparameter::

    {"norm_type": ["none", "batch"],            # a choice
     "dropout_p": {"uniform": [0.0, 0.6]},      # a continuous range
     "lr": {"loguniform": [1e-4, 1e-2]},        # a log-scaled range
     "conv_out_channels": {"quniform": [16, 64, 16]},  # integers in steps
     "pool_kernel_size": [2]}                   # a single value: a constant, never hp.choice

:func:`build_space` turns it into a hyperopt space. A dimension with one allowed value (or a range
with ``low == high``) becomes a constant, so hyperopt's ``low == high`` errors never happen; an
empty list or an inverted range is a :class:`StudyError` before any training.

:func:`run_study` (a :class:`~lib.engine.request.StudyRequest` and a :class:`SweepDesign`; keyword form:
:func:`run_sweep`) drives ask-and-tell (:class:`SweepFeed`, the feed of ``lib.engine.backend``): each point is
proposed by the sweep's search algorithm (``lib.engine.algorithms``: ``tpe``, ``random``, ``quasirandom``, or
any file added there) through hyperopt's ``suggest`` interface, with a step seed drawn from the sweep seed
and the step alone, so an interrupted sweep resumes from its saved trials with the random stream an
uninterrupted one would have used, and neither repeats earlier points nor exceeds ``max_evals``.
A point whose cache key has a finished run is scored from the store without training; the others
go to the back-end (the local one trains one at a time; Ray several at once, optionally stopped
early by ASHA). Every trial is a child MLflow run of one parent run per sweep. The state (hyperopt's
``Trials``) is written atomically after every trial; an unreadable state file is rebuilt from the
store (the same seed redraws the same points, which hit the cache). When the sweep ends, its parent
run carries the best ``val_accuracy`` and the best config.

:func:`budget_warning` states the rule a sweep's size is checked against (:data:`TRIALS_PER_DIMENSION`).

What this is not: the search algorithms (``lib.engine.algorithms``), the records (``lib.engine.records``) or
where trials train (the back-ends).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hyperopt import STATUS_FAIL, STATUS_OK, Domain, Trials, hp, space_eval
from hyperopt.base import JOB_STATE_DONE

from lib import store, tracking
from lib.config import ConfigError, ModelConfig, TrainConfig, TrialConfig, check_known_fields
from lib.data import DataSpec
from lib.engine import algorithms, records
from lib.engine.algorithms import SearchAlgorithm, SearchSetup
from lib.engine.algorithms.quasirandom import quasi_value as quasi_value  # where it lived before
from lib.engine.backend import STOPPED_EARLY, RunOptions, StudyError, TrialRequest
from lib.engine.grid import backend_for, execute
from lib.engine.request import StudyRequest
from lib.engine.trial import TrialResult, code_version, trial_key
from lib.paths import state_dir
from lib.store.schema import (
    KIND_SWEEP,
    TAG_CODE_VERSION,
    TAG_FAILURE_REASON,
    TAG_KIND,
    TAG_SWEEP,
    TAG_SWEEP_ID,
    TAG_SWEEP_PARENT,
)

RANGE_KINDS = ("uniform", "loguniform", "quniform")
# The default space searches four knobs, which :data:`DEFAULT_MAX_EVALS` trials fit by the budget rule
# (:func:`budget_warning`). ``batch_size`` is left out: at a fixed number of epochs a larger batch takes
# fewer steps, so searching it mixes the step budget into the score (the playbook calls batch size a
# throughput knob, not a knob for validation accuracy). Everything else stays at the config's defaults.
DEFAULT_SPACE: dict[str, Any] = {
    "lr": {"loguniform": [2e-4, 1e-2]},
    "weight_decay": {"loguniform": [1e-5, 1e-2]},
    "dropout_p": {"uniform": [0.0, 0.5]},
    "norm_type": ["none", "batch"],
}
DEFAULT_MAX_EVALS = 30
# the budget rule: about ten trials for every searched dimension after the first (see budget_warning)
TRIALS_PER_DIMENSION = 10
INTEGER_FIELDS = frozenset(
    name
    for model in (ModelConfig, TrainConfig)
    for name, info in model.model_fields.items()
    if info.annotation is int or info.annotation == (int | None)
)


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
        if kind not in RANGE_KINDS:
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


def searched_dimensions(spec: dict[str, Any]) -> list[str]:
    """The names a space really searches: a choice of two or more values, a range with ``low < high``."""
    names = []
    for name, value in spec.items():
        if isinstance(value, list | tuple) and len(value) > 1:
            names.append(name)
        elif isinstance(value, dict) and len(value) == 1:
            ((_, bounds),) = value.items()
            if isinstance(bounds, list | tuple) and len(bounds) >= 2 and float(bounds[0]) < float(bounds[1]):
                names.append(name)
    return names


def recommended_trials(dimensions: int) -> int:
    """Trials the budget rule asks for ``dimensions`` searched knobs: ten per knob after the first.

    Inspired by the playbook's rule for Adam (fewer than 10 trials: tune the learning rate only;
    10-25: add one more knob; 25 and more: add a third): one knob needs no minimum beyond a handful.
    """
    return max(1, TRIALS_PER_DIMENSION * (dimensions - 1))


def budget_warning(spec: dict[str, Any], max_evals: int) -> str | None:
    """A one-line warning when ``max_evals`` trials are too few for the dimensions ``spec`` searches."""
    names = searched_dimensions(spec)
    need = recommended_trials(len(names))
    if max_evals >= need:
        return None
    return (
        f"warning: {max_evals} trials for {len(names)} searched dimensions ({', '.join(names)}); the budget rule "
        f"asks for >= {need} ({TRIALS_PER_DIMENSION} per dimension after the first). Search fewer knobs "
        "(fix the others with --set) or run more trials; see docs/best-practices.md."
    )


def algorithm_for(
    algo: str, spec: dict[str, Any], max_evals: int, seed: int, n_startup: int | None = None
) -> SearchAlgorithm:
    """The search algorithm called ``algo`` for this sweep, checked against its space and options (a one-line
    :class:`StudyError` for an unknown name or a space or option it cannot use)."""
    setup = SearchSetup(spec, tuple(searched_dimensions(spec)), max_evals, seed, n_startup)
    return algorithms.get(algo)(setup)


def check_quasirandom(spec: dict[str, Any]) -> None:
    """Every searched dimension is one quasi-random search can map (``algorithm_for("quasirandom", ...)``)."""
    algorithm_for("quasirandom", spec, 1, 0)


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


# Version of the per-step random stream of a sweep (:meth:`SweepFeed._ask`); part of a sweep's identity.
STREAM = 2


def _sweep_id(experiment: str, sweep_name: str, spec: dict[str, Any], data: DataSpec) -> str:
    """Identity of a resumable sweep: its name, space, data split and the training code's version.

    Changing any of them (or the random stream, :data:`STREAM`) starts a fresh sweep instead of
    resuming one whose points were scored by other code or on other data, or drawn another way.
    """
    text = f"{experiment}|{sweep_name}|{spec!r}|{sorted(asdict(data).items())}|{data.content_id()}|{code_version()}"
    text += f"|stream{STREAM}"  # a state drawn with another random stream is not resumed
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _state_path(experiment: str, sweep_name: str, sweep_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{experiment}__{sweep_name}")
    return state_dir() / f"{safe}__{sweep_id}.hyperopt.pkl"


def _decode(params: dict[str, Any]) -> dict[str, Any]:
    """hyperopt values to config values (quniform floats to ints for the config's integer fields)."""
    return {k: int(round(v)) if k in INTEGER_FIELDS and isinstance(v, float) else v for k, v in params.items()}


def _parent_run(experiment: str, sweep_name: str, sweep_id: str, settings: dict[str, Any], tags: dict[str, str]) -> str:
    """The sweep's parent run: found again by ``sweep_id`` (and set RUNNING) or created."""
    exp_id = tracking.experiment_id(experiment)
    for run in store.stored_runs(exp_id):
        if run.tags.get(TAG_SWEEP_ID) == sweep_id:
            tracking.set_status(run.run_id, tracking.RUNNING)
            tracking.delete_tag(run.run_id, TAG_FAILURE_REASON)  # of an earlier, interrupted call
            tracking.set_tags(run.run_id, {TAG_KIND: KIND_SWEEP})  # a parent made before runs had a kind
            return run.run_id
    parent_tags = tags | {TAG_SWEEP_PARENT: sweep_name, TAG_SWEEP_ID: sweep_id, TAG_CODE_VERSION: code_version()}
    parent_tags[TAG_KIND] = KIND_SWEEP
    return tracking.start_run(exp_id, settings, parent_tags, run_name=f"sweep-{sweep_name}")


def load_state(path: Path) -> Trials:
    """The saved trials of a sweep without the points in flight when it stopped; a fresh ``Trials``
    when there is none, or (with a one-line warning) when the file cannot be read."""
    if not path.exists():
        return Trials()
    try:
        trials = pickle.loads(path.read_bytes())
        trials._dynamic_trials = [t for t in trials._dynamic_trials if t["state"] == JOB_STATE_DONE]
        trials.refresh()
        return trials
    except Exception as exc:  # a 0-byte or truncated file, another format
        print(
            f"sweep state {path.name} is unreadable ({type(exc).__name__}: {exc}); rebuilding it from the store "
            "(the same seed redraws the same points, which hit the cache)",
            file=sys.stderr,
        )
        return Trials()


def save_state(trials: Trials, path: Path) -> None:
    """Write the sweep state atomically: a kill leaves the old file or the new one, never half of one."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            pickle.dump(trials, file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _point(space: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """The values of one hyperopt trial document, decoded for the config."""
    return _decode(space_eval(space, {k: v[0] for k, v in doc["misc"]["vals"].items() if v}))


def _hyperopt_result(result: TrialResult) -> dict[str, Any]:
    """What TPE learns from a trial (a point stopped early counts with the accuracy it reached)."""
    outcome = {"key": result.key, "run_id": result.run_id, "cached": result.cached, "kind": result.failure_kind}
    if (result.ok or result.failure_kind == STOPPED_EARLY) and math.isfinite(result.val_accuracy):
        return outcome | {"status": STATUS_OK, "loss": -result.val_accuracy, "val_accuracy": result.val_accuracy}
    return outcome | {"status": STATUS_FAIL, "failure": result.failure_reason[:500]}


class SweepFeed(records.RecordingFeed):
    """The sweep driver: asks the search algorithm for points, scores cached ones from the store, hands the
    others to the back-end, tells the algorithm every outcome and saves the state after each."""

    def __init__(
        self,
        recorder: records.Recorder,
        space: dict[str, Any],
        decode: Callable[[dict[str, Any]], TrialConfig],
        data: DataSpec,
        algorithm: SearchAlgorithm,
        state: tuple[Trials, Path],
        known: dict[str, tracking.StoredRun],
    ) -> None:
        super().__init__(recorder, {})
        self.space, self.decode, self.data, self.known = space, decode, data, known
        self.algorithm, self.max_evals, self.seed = algorithm, algorithm.setup.max_evals, algorithm.setup.seed
        self.trials, self.state_path = state
        self.size = self.max_evals - len(self.trials.trials)
        self.domain = Domain(lambda point: point, space)
        self.in_flight: dict[str, dict[str, Any]] = {}  # trial key -> its hyperopt document
        self.waiting: dict[str, list[dict[str, Any]]] = {}  # trial key -> documents of the same point

    def _ask(self) -> dict[str, Any]:
        """One search step of the algorithm with its own random stream, seeded by (sweep seed, step).

        The stream depends only on the two numbers, so a resumed sweep draws what an uninterrupted one
        would. Seeding with ``seed + step`` (as before :data:`STREAM`) made sweep seed 1 replay sweep
        seed 0 shifted by one step: "independent" sweeps shared all but one of their random points.
        """
        rstate = np.random.default_rng([self.seed, len(self.trials.trials)])
        new_ids = self.trials.new_trial_ids(1)
        self.trials.refresh()
        docs = self.algorithm.suggest(new_ids, self.domain, self.trials, rstate.integers(2**31 - 1))
        self.trials.insert_trial_docs(docs)
        self.trials.refresh()
        return self.trials._dynamic_trials[-1]

    def _tell(self, doc: dict[str, Any], result: TrialResult) -> None:
        doc["result"] = _hyperopt_result(result)
        doc["state"] = JOB_STATE_DONE
        self.trials.refresh()
        save_state(self.trials, self.state_path)

    def next(self) -> TrialRequest | None:
        while len(self.trials.trials) < self.max_evals:
            doc = self._ask()
            point = _point(self.space, doc)
            try:
                config = self.decode(point).canonical()
            except ConfigError as exc:
                self._resolve(doc, _invalid(point, str(exc)))
                continue
            key = trial_key(config, self.data)
            if key in self.known:
                self._resolve(doc, records.result_from_run(config, key, self.known[key]))
            elif key in self.in_flight:
                self.waiting.setdefault(key, []).append(doc)
            else:
                self.in_flight[key] = doc
                return TrialRequest(key, config)
        return None

    def _resolve(self, doc: dict[str, Any], result: TrialResult) -> None:
        """A point that needs no training: told to the algorithm and counted at once."""
        self._tell(doc, result)
        self.recorder.progress.update(result)

    def finished(self, request: TrialRequest, result: TrialResult) -> None:
        super().finished(request, result)  # the run is closed and has its id
        self._tell(self.in_flight.pop(request.key), result)
        for doc in self.waiting.pop(request.key, []):
            self._resolve(doc, dataclasses.replace(result, cached=True))
        if result.ok or result.failure_kind in records.CACHED_FAILURES:
            self.known[request.key] = store.stored_run(result.run_id)


def _invalid(point: dict[str, Any], reason: str) -> TrialResult:
    return TrialResult(key="", config=point, status="failed", failure_kind="invalid_config", failure_reason=reason)


def collect(trials: Trials, space: dict[str, Any], decode: Callable, data: DataSpec) -> list[TrialResult]:
    """Every trial of a sweep in order, read back from the store (no retraining)."""
    results = []
    for doc in trials.trials:
        point = _point(space, doc)
        try:
            config = decode(point)
        except ConfigError as exc:
            results.append(_invalid(point, str(exc)))
            continue
        outcome = doc["result"]
        key = outcome.get("key") or trial_key(config.canonical(), data)
        if outcome.get("run_id"):
            results.append(records.result_from_run(config, key, store.stored_run(outcome["run_id"])))
        else:
            kind = outcome.get("kind") or "error"
            results.append(TrialResult(key=key, config=config.flat(), status="failed", failure_kind=kind))
    return results


def max_epochs(spec: dict[str, Any], base: TrialConfig) -> int:
    """The most epochs any point of a plain-data space trains (ASHA's ``max_t``)."""
    value = spec.get("epochs", base.train.epochs)
    if isinstance(value, dict):
        ((_, bounds),) = value.items()
        return int(float(bounds[1]))
    if isinstance(value, list | tuple):
        return int(max(value))
    return int(value)


def _check_early_stopping(early_stopping: bool | str | None, engine: str) -> bool:
    if early_stopping in (None, False):
        return False
    if early_stopping is not True and early_stopping != "asha":
        raise StudyError(f"early_stopping={early_stopping!r}: use False (run every trial to the end) or True/'asha'")
    if engine != "ray":
        raise StudyError("early_stopping needs engine='ray' (ASHA); the local engine runs every trial to its end")
    return True


def _check_budget(max_evals: int, seed: int) -> None:
    if not isinstance(max_evals, int) or isinstance(max_evals, bool) or max_evals < 1:
        raise StudyError(f"max_evals={max_evals!r}: must be an integer >= 1")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise StudyError(f"seed={seed!r}: the sweep's seed must be an integer >= 0")


def _end_parent(parent: str, results: list[TrialResult]) -> None:
    """Close the parent run FINISHED with the best trial's ``val_accuracy``, run id and config."""
    finished = [r for r in results if r.ok and math.isfinite(r.val_accuracy)]
    if finished:
        best = max(finished, key=lambda r: r.val_accuracy)
        tracking.log_metrics(parent, {"val_accuracy": best.val_accuracy})
        tracking.set_tags(parent, {"best_run_id": best.run_id, "best_config": json.dumps(best.config, default=str)})
    tracking.end_run(parent, tracking.FINISHED)


@dataclass(frozen=True)
class SweepDesign:
    """What a sweep searches and how: its ``name`` (the same name resumes it), ``max_evals`` trials in total, the
    plain-data ``space`` (``None``: :data:`DEFAULT_SPACE`), the sweep's ``seed``, the search algorithm ``algo``
    (``lib.engine.algorithms``), TPE's ``n_startup`` and (Ray only) ASHA ``early_stopping``."""

    name: str
    max_evals: int
    space: dict[str, Any] | None = None
    seed: int = 0
    algo: str = algorithms.DEFAULT
    n_startup: int | None = None
    early_stopping: bool | str = False
    budget_note: str | None = None  # why the sweep is below the budget rule on purpose: a note, not a warning


def _checked_space(sweep: SweepDesign) -> tuple[dict[str, Any], dict[str, Any], SearchAlgorithm]:
    """The plain-data space, its hyperopt form and the search algorithm, everything checked; the budget rule's
    warning printed."""
    algorithms.get(sweep.algo)  # an unknown name before anything else
    _check_budget(sweep.max_evals, sweep.seed)
    spec = DEFAULT_SPACE if sweep.space is None else sweep.space
    hyperopt_space = build_space(spec)
    algorithm = algorithm_for(sweep.algo, spec, sweep.max_evals, sweep.seed, sweep.n_startup)
    warning = budget_warning(spec, sweep.max_evals)
    if warning and sweep.budget_note:
        dims = len(searched_dimensions(spec))
        warning = (
            f"note: {sweep.max_evals} trials for {dims} searched dimensions, below the budget rule's "
            f"{recommended_trials(dims)}: {sweep.budget_note}"
        )
    if warning:
        print(warning, file=sys.stderr)
    return spec, hyperopt_space, algorithm


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
    algo: str = algorithms.DEFAULT,
    budget_note: str | None = None,
) -> SweepResult:
    """:func:`run_study` as keywords (the sweep's name is ``sweep_name``)."""
    request = StudyRequest(experiment, base, data, tags or {}, engine=engine, progress=progress)
    design = SweepDesign(sweep_name, max_evals, space, seed, algo, n_startup, early_stopping, budget_note)
    return run_study(request, design)


def run_study(request: StudyRequest, sweep: SweepDesign) -> SweepResult:
    """Run (or resume) a sweep of ``sweep.max_evals`` trials in total and return all its trials.

    ``algo``: any name of ``lib.engine.algorithms`` (``tpe``, the default; ``random``: with the same seed it
    draws TPE's start-up points, so the two can be compared at equal trials and budget; ``quasirandom``: a
    scrambled Halton sequence). ``n_startup``: TPE's random start-up points (default a third of the trials,
    3 to 10). A sweep with fewer trials than the budget rule asks for its dimensions prints a warning
    (:func:`budget_warning`).

    ``engine="ray"`` runs the same driver on Ray Tune, several trials at once (``lib.engine.ray_tune``, with
    the request's ``workers``); ``early_stopping=True`` (Ray only) lets ASHA stop poor trials early. The local
    engine trains one point at a time, so each step sees every earlier result.
    """
    backend = backend_for(request.engine)  # the Ray install hint before anything is logged
    asha = _check_early_stopping(sweep.early_stopping, request.engine)
    spec, hyperopt_space, algorithm = _checked_space(sweep)
    experiment, base_config, data, engine = request.experiment, request.config, request.data, request.engine
    if "seed" not in spec:
        hyperopt_space["seed"] = base_config.seed
    tags = request.tags | {TAG_SWEEP: sweep.name}
    # a Ray sweep draws several points at once, so it is a different sweep from a local one of the same name;
    # a TPE sweep keeps the identity sweeps had before there were other algorithms
    identity = sweep.name if engine == "local" else f"{sweep.name}@{engine}"
    sweep_id = _sweep_id(experiment, identity + ("" if sweep.algo == "tpe" else f"#{sweep.algo}"), spec, data)
    settings = {"max_evals": sweep.max_evals, "sweep_seed": sweep.seed} | algorithm.settings()
    settings |= {"space": repr(spec)[:5000], "algo": sweep.algo}
    parent_tags = tags | ({"engine": engine} if engine != "local" else {})
    parent = _parent_run(experiment, sweep.name, sweep_id, settings | data.params(), parent_tags | data.tags())

    def decode(point: dict[str, Any]) -> TrialConfig:
        return TrialConfig.from_flat(point, base_config)

    workers = 1 if engine == "local" else request.workers
    options = RunOptions(data, workers, request.threads_per_trial, max_epochs(spec, base_config) if asha else None)
    try:
        runner = _Sweep(experiment, sweep.name, hyperopt_space, decode, data, tags, parent, request.progress)
        results = runner.run(backend, algorithm, _state_path(experiment, sweep.name, sweep_id), options)
    except BaseException as exc:  # never left RUNNING; a re-run resumes it
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"sweep aborted: {exc!r}"
        tracking.set_tags(parent, {"failure_reason": reason[:4000]})
        tracking.end_run(parent, tracking.KILLED)
        raise
    _end_parent(parent, results)
    return SweepResult(results, parent)


@dataclass
class _Sweep:
    """One call of :func:`run_study`: the feed on its back-end, with a progress bar and a summary."""

    experiment: str
    name: str
    space: dict[str, Any]
    decode: Callable[[dict[str, Any]], TrialConfig]
    data: DataSpec
    tags: dict[str, str]
    parent: str
    progress: bool

    def run(self, backend: Any, algorithm: SearchAlgorithm, path: Path, options: RunOptions) -> list[TrialResult]:
        trials = load_state(path)
        done, max_evals = len(trials.trials), algorithm.setup.max_evals
        bar = records.Progress(f"sweep {self.name}", max_evals, min(done, max_evals), self.progress)
        trained: set[str] = set()
        try:
            if done < max_evals:
                exp_id = tracking.experiment_id(self.experiment)
                known = records.cached_runs(exp_id)
                trial_tags = records.trial_tags(self.experiment, self.data, self.tags)
                recorder = records.Recorder(exp_id, self.data, trial_tags, self.parent, bar)
                feed = SweepFeed(recorder, self.space, self.decode, self.data, algorithm, (trials, path), known)
                execute(backend, feed, options)
                trained = set(feed.results)
                save_state(trials, path)
        except BaseException:
            bar.close()
            raise
        # read back from the store, so ``cached`` says whether this call trained the point
        results = [
            dataclasses.replace(r, cached=r.key not in trained)
            for r in collect(trials, self.space, self.decode, self.data)
        ]
        bar.close(results)
        return results
