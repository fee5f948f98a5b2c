"""The Ray Tune back-end of the engine: the same grids and TPE sweeps, run on a Ray cluster.

``engine="ray"`` in :func:`lib.engine.run_trials`, :func:`lib.engine.run_grid` and
:func:`lib.search.run_sweep` lands here. The study definition, the cache key, the MLflow records and
the results are the local engine's; only where trials train changes.

- **Where**: a local Ray started for the call (``num_cpus`` = cores, no dashboard) and shut down
  afterwards, or the cluster named by ``RAY_ADDRESS`` (a driver connection only; the cluster stays up).
  Each trial asks for ``threads_per_trial`` CPUs (default 1) and one GPU when the cluster has GPUs
  (the trainer picks CUDA itself, ``device="auto"``); actors are reused between trials.
- **One writer**: trials only train and report; the driver (this process) creates each MLflow run
  when its trial starts and closes it when it ends, through the same helpers as the local engine, so
  a Ray run has the same params, ``epoch_*`` metrics, tags and cache key as a local one. Runs left
  open by an error or Ctrl-C are ended KILLED.
- **Sweeps** use ``HyperOptSearch`` on the very hyperopt space of :func:`lib.search.build_space`,
  behind a :class:`ConcurrencyLimiter`. A point whose cache key already has a finished run is scored
  from the store without training. The searcher state is saved after every trial, so a re-run of an
  interrupted sweep continues where it stopped (trials in flight at the interruption are redrawn).
- **Early stopping** (``early_stopping="asha"``): ``ASHAScheduler`` on per-epoch validation accuracy.
  A run it stops ends KILLED with ``stopped_early=true`` and no final metrics, so it is never cached,
  never read by :mod:`lib.analysis` (which reads FINISHED/FAILED runs) and never the sweep's best.

What this is not: the trial computation (``lib.trial``) or the local executor (``lib.engine``). Ray
is imported only here, inside functions: ``lib`` works without it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pickle
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lib import tracking
from lib.config import ConfigError, TrialConfig
from lib.engine import (
    StudyError,
    close_trial_run,
    existing_runs,
    open_trial_run,
    plan_trials,
    result_from_run,
    trial_tags,
)
from lib.trial import DataSpec, TrialResult, execute_trial, trial_key

INSTALL_HINT = "pip install -r requirements-ray.txt  (or: pip install -e .[ray])"
ASHA_REDUCTION_FACTOR = 2
STOPPED_EARLY = "stopped_early"


class RayNotInstalledError(StudyError, ImportError):
    """``engine="ray"`` was asked for, but Ray Tune cannot be imported."""


def import_ray() -> Any:
    """The ``ray`` module with Tune and its hyperopt searcher, or a :class:`RayNotInstalledError`."""
    try:
        import ray
        import ray.tune  # noqa: F401
        from ray.tune.search.hyperopt import HyperOptSearch  # noqa: F401
    except ImportError as exc:
        raise RayNotInstalledError(
            f"engine='ray' needs Ray Tune, which is not installed ({exc}). Install it with: {INSTALL_HINT}; "
            f"or use engine='local'."
        ) from None
    return ray


@dataclasses.dataclass
class Cluster:
    """What :func:`ray_cluster` connected to."""

    address: str
    started_here: bool
    startup_seconds: float
    cpus: float
    gpus: float


@contextlib.contextmanager
def ray_cluster(num_cpus: int | None = None) -> Iterator[Cluster]:
    """Ray for the duration of a ``with`` block.

    With ``RAY_ADDRESS`` set, connect to that cluster (Ray reads the variable itself; an explicit
    address needs ``RAY_AUTH_MODE=token`` when the cluster uses token auth). Otherwise start a local
    Ray with ``num_cpus`` (default: all cores) and no dashboard. Ray is shut down afterwards when
    this call initialised it; an already initialised Ray is used as it is and left running.
    """
    import logging

    ray = import_ray()
    started = time.perf_counter()
    initialised_here = not ray.is_initialized()
    if initialised_here:
        common = {"log_to_driver": False, "logging_level": logging.WARNING}
        if os.environ.get("RAY_ADDRESS"):
            context = ray.init(**common)
        else:
            context = ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, **common)
        address = context.address_info.get("gcs_address", "")
    else:
        address = ray.get_runtime_context().gcs_address
    resources = ray.cluster_resources()
    cluster = Cluster(
        address=address,
        started_here=initialised_here and not os.environ.get("RAY_ADDRESS"),
        startup_seconds=time.perf_counter() - started,
        cpus=float(resources.get("CPU", 0)),
        gpus=float(resources.get("GPU", 0)),
    )
    try:
        yield cluster
    finally:
        if initialised_here:
            ray.shutdown()


# ---------------------------------------------------------------------------------------------
# In the trial's Ray actor


def _trainable(tune_config: dict[str, Any], data: DataSpec, threads: int) -> None:
    """One trial on a Ray worker: train, report epochs (for ASHA) and the full result at the end."""
    import torch
    from ray import tune

    torch.set_num_threads(threads)
    config = TrialConfig.from_flat(tune_config["config"])
    epochs = config.train.epochs

    def on_epoch(stats) -> None:
        if stats.epoch < epochs:  # the last epoch arrives with the final result
            row = stats.as_dict()
            tune.report({"epoch": stats.epoch, "objective": _objective(row["val_accuracy"]), "row": json.dumps(row)})

    result = execute_trial(config, data, on_epoch=on_epoch)
    final = result.val_accuracy if result.ok else 0.0
    tune.report({"objective": _objective(final), "trial_result": json.dumps(dataclasses.asdict(result))})


def _objective(value: float) -> float:
    """What the scheduler and searcher maximise: validation accuracy, 0 where it is missing."""
    return float(value) if value is not None and math.isfinite(value) else 0.0


# ---------------------------------------------------------------------------------------------
# In the driver: the only MLflow writer


class _Recorder:
    """Opens a run when a trial starts and closes it when it ends (a Tune callback, built lazily)."""

    def __init__(
        self, exp_id: str, data: DataSpec, tags: dict[str, str], parent_run_id: str | None, progress_bar: Any
    ) -> None:
        self.exp_id, self.data, self.tags, self.parent_run_id = exp_id, data, tags, parent_run_id
        self.bar = progress_bar
        self.run_ids: dict[str, str] = {}  # Tune trial id -> open MLflow run
        self.started: dict[str, str] = {}  # Tune trial id -> its MLflow run, open or closed
        self.rows: dict[str, list[dict[str, float]]] = {}
        self.results: dict[str, TrialResult] = {}  # trial key -> result

    def start(self, trial_id: str, key: str, config: TrialConfig) -> None:
        self.run_ids[trial_id] = open_trial_run(self.exp_id, config, key, self.data, self.tags, self.parent_run_id)
        self.started[trial_id] = self.run_ids[trial_id]
        self.rows[trial_id] = []

    def result(self, trial_id: str, result: dict[str, Any]) -> None:
        if "row" in result and trial_id in self.rows:
            self.rows[trial_id].append(json.loads(result["row"]))
        if "trial_result" in result and trial_id in self.run_ids:
            record = TrialResult(**json.loads(result["trial_result"]))
            # the run stays open (and is ended KILLED on Ctrl-C) until it is closed here
            close_trial_run(self.run_ids[trial_id], record)
            del self.run_ids[trial_id]
            self._done(record)

    def complete(self, trial_id: str, key: str, config: TrialConfig) -> None:
        """A trial ended without its final result: the scheduler stopped it early."""
        run_id = self.run_ids.get(trial_id)
        if run_id is None:
            return
        rows = self.rows.get(trial_id, [])
        tracking.log_history(run_id, rows)
        reason = f"stopped early by ASHA after epoch {len(rows)} of {config.train.epochs}"
        tracking.set_tags(run_id, {STOPPED_EARLY: "true", "failure_kind": STOPPED_EARLY, "failure_reason": reason})
        tracking.end_run(run_id, tracking.KILLED)
        del self.run_ids[trial_id]
        self._done(
            TrialResult(
                key=key,
                config=config.flat(),
                status="failed",
                epochs_run=len(rows),
                failure_kind=STOPPED_EARLY,
                failure_reason=reason,
                history=rows,
                run_id=run_id,
            )
        )

    def error(self, trial_id: str, key: str, config: TrialConfig, message: str) -> None:
        """The trial's actor failed (died, out of memory): a failed run, retried next time."""
        run_id = self.run_ids.get(trial_id)
        if run_id is None:
            return
        record = TrialResult(
            key=key,
            config=config.flat(),
            status="failed",
            failure_kind="error",
            failure_reason=f"Ray trial error: {message}",
        )
        close_trial_run(self.run_ids[trial_id], record)
        del self.run_ids[trial_id]
        self._done(record)

    def _done(self, record: TrialResult) -> None:
        self.results[record.key] = record
        self.bar.update()
        finished = [r.val_accuracy for r in self.results.values() if r.ok and math.isfinite(r.val_accuracy)]
        if finished:
            self.bar.set_postfix(best_val_acc=f"{max(finished):.4f}", refresh=False)

    def close_open_runs(self, reason: str) -> None:
        for run_id in self.run_ids.values():
            tracking.set_tags(run_id, {"failure_reason": reason})
            tracking.end_run(run_id, tracking.KILLED)
        self.run_ids.clear()

    def callback(self) -> Any:
        from ray.tune import Callback

        recorder = self

        class MLflowRecorder(Callback):
            def on_trial_start(self, iteration, trials, trial, **info):
                recorder.start(trial.trial_id, trial.config["key"], TrialConfig.from_flat(trial.config["config"]))

            def on_trial_result(self, iteration, trials, trial, result, **info):
                recorder.result(trial.trial_id, result)

            def on_trial_complete(self, iteration, trials, trial, **info):
                recorder.complete(trial.trial_id, trial.config["key"], TrialConfig.from_flat(trial.config["config"]))

            def on_trial_error(self, iteration, trials, trial, **info):
                message = str(getattr(trial, "error_message", None) or "the trial's Ray actor failed")
                config = TrialConfig.from_flat(trial.config["config"])
                recorder.error(trial.trial_id, trial.config["key"], config, message)

        return MLflowRecorder()


def _searcher_base() -> type:
    """Tune's ``Searcher`` without experiment checkpoints: our sweep state lives next to the store."""
    from ray.tune.search import Searcher

    class StudySearcher(Searcher):
        def save(self, checkpoint_path: str) -> None:
            pass

        def restore(self, checkpoint_path: str) -> None:
            pass

    return StudySearcher


def _grid_searcher(todo: dict[str, TrialConfig]) -> Any:
    """Hands out the grid's uncached trials in order, then FINISHED."""
    searcher_class = _searcher_base()

    class GridSearcher(searcher_class):
        def __init__(self) -> None:
            super().__init__(metric="objective", mode="max")
            self.pending = list(todo.items())

        def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
            if not self.pending:
                return searcher_class.FINISHED
            key, config = self.pending.pop(0)
            return {"key": key, "config": config.flat()}

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            pass

    return GridSearcher()


def _tune(
    searcher: Any,
    recorder: _Recorder,
    cluster: Cluster,
    data: DataSpec,
    threads: int,
    max_concurrent: int,
    scheduler: Any = None,
) -> None:
    """Run Tune until the searcher is done; the recorder logs every trial from the driver."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    gpus = 1 if cluster.gpus >= 1 else 0
    if gpus:
        max_concurrent = min(max_concurrent, int(cluster.gpus))
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, data=data, threads=threads), {"cpu": threads, "gpu": gpus}
    )
    environment = {
        "TUNE_DISABLE_SIGINT_HANDLER": "1",  # Ctrl-C raises here, so open runs are ended KILLED
        "RAY_AIR_NEW_OUTPUT": "0",  # no configuration table in the notebook; our progress bar is enough
    }
    with _environment(environment), tempfile.TemporaryDirectory(prefix="hypertune-ray-") as storage:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(searcher, max_concurrent=max(1, max_concurrent)),
                scheduler=scheduler,
                num_samples=-1,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name="hypertune", storage_path=storage, verbose=0, callbacks=[recorder.callback()], log_to_file=False
            ),
        )
        tuner.fit()


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _concurrency(cluster: Cluster, threads: int, workers: int | str) -> int:
    by_cpu = max(1, int(cluster.cpus // threads))
    if workers == "auto":
        return by_cpu
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise StudyError(f"workers={workers!r}: must be 'auto' or an integer >= 1")
    return min(workers, by_cpu)


def _threads(threads_per_trial: int | None) -> int:
    if threads_per_trial is None:
        return 1
    if isinstance(threads_per_trial, bool) or not isinstance(threads_per_trial, int) or threads_per_trial < 1:
        raise StudyError(f"threads_per_trial={threads_per_trial!r}: must be an integer >= 1 (CPUs per Ray trial)")
    return threads_per_trial


def _bar(total: int, initial: int, desc: str, progress: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="trial", disable=not progress, mininterval=1.0)


def run_trials(
    configs: Sequence[TrialConfig],
    experiment: str,
    data: DataSpec = DataSpec(),
    tags: dict[str, str] | None = None,
    workers: int | str = "auto",
    threads_per_trial: int | None = None,
    parent_run_id: str | None = None,
    progress: bool = True,
) -> list[TrialResult]:
    """:func:`lib.engine.run_trials` on Ray: cached, one MLflow writer, results in input order."""
    import_ray()
    threads = _threads(threads_per_trial)
    exp_id = tracking.experiment_id(experiment)
    plan = plan_trials(configs, exp_id, data)
    todo = plan.todo
    if todo:
        unique = len(set(plan.keys))
        bar = _bar(unique, unique - len(todo), experiment, progress)
        recorder = _Recorder(exp_id, data, trial_tags(experiment, data, tags), parent_run_id, bar)
        try:
            with ray_cluster() as cluster:
                _tune(_grid_searcher(todo), recorder, cluster, data, threads, _concurrency(cluster, threads, workers))
        except BaseException as exc:
            reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"study aborted: {exc!r}"
            recorder.close_open_runs(reason)
            raise
        finally:
            bar.close()
        recorder.close_open_runs("Ray ended without a result for this trial")
        missing = [key for key in todo if key not in recorder.results]
        if missing:
            raise RuntimeError(f"Ray returned no result for {len(missing)} trial(s); see the KILLED runs in MLflow")
        plan.results |= recorder.results
    return plan.in_request_order()


# ---------------------------------------------------------------------------------------------
# TPE sweeps


def _finished_in_store(exp_id: str) -> dict[str, Any]:
    """Cacheable runs of the experiment by trial key (stale RUNNING runs are marked KILLED)."""
    keys = {run.data.tags["trial_key"] for run in tracking.search_ids([exp_id]) if "trial_key" in run.data.tags}
    return existing_runs(exp_id, keys) if keys else {}


def _load_state(path: Path) -> dict[str, Any] | None:
    """Saved searcher state without the points that were in flight when the sweep stopped."""
    if not path.exists():
        return None
    from hyperopt.base import JOB_STATE_DONE, JOB_STATE_ERROR

    state = pickle.loads(path.read_bytes())
    trials = state["searcher"]["hyperopt_trials"]
    trials._dynamic_trials = [t for t in trials._dynamic_trials if t["state"] in (JOB_STATE_DONE, JOB_STATE_ERROR)]
    trials.refresh()
    if len(trials.trials) != len(state["records"]):
        raise StudyError(f"sweep state {path} is inconsistent; delete it to start this sweep afresh")
    return state


def _sweep_searcher(
    inner: Any,
    remaining: int,
    records: list[dict[str, Any]],
    known: dict[str, tuple[float | None, str]],
    decode: Any,
    data: DataSpec,
    recorder: _Recorder,
    save: Any,
) -> Any:
    """HyperOptSearch with the engine's cache in front: known points are scored without a Tune trial."""
    searcher_class = _searcher_base()

    class SweepSearcher(searcher_class):
        def __init__(self) -> None:
            super().__init__(metric="objective", mode="max")
            self.assigned = 0
            self.counter = 0
            self.inner_id: dict[str, str] = {}  # Tune trial id -> the inner searcher's id
            self.in_flight: dict[str, tuple[str, TrialConfig]] = {}  # Tune trial id -> (key, config)
            self.waiting: dict[str, list[tuple[str, TrialConfig]]] = {}  # key -> duplicates of an in-flight point

        def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
            while self.assigned < remaining:
                self.counter += 1
                inner_id = f"{trial_id}-{self.counter}"
                params = inner.suggest(inner_id)
                self.assigned += 1
                try:
                    config = decode(params).canonical()
                except ConfigError as exc:
                    inner.on_trial_complete(inner_id, error=True)
                    self._record(None, dict(params), "invalid_config", None, str(exc))
                    continue
                key = trial_key(config, data)
                if key in known:
                    self._resolve(inner_id, key, config, known[key], cached=True)
                    continue
                if any(key == k for k, _ in self.in_flight.values()):
                    self.waiting.setdefault(key, []).append((inner_id, config))
                    continue
                self.inner_id[trial_id] = inner_id
                self.in_flight[trial_id] = (key, config)
                return {"key": key, "config": config.flat()}
            return searcher_class.FINISHED

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            if trial_id in self.inner_id:
                inner.on_trial_result(self.inner_id[trial_id], result)

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            if trial_id not in self.in_flight:
                return
            key, config = self.in_flight.pop(trial_id)
            inner_id = self.inner_id.pop(trial_id)
            run_id = recorder.started.get(trial_id, "")
            if error or not result:
                outcome: tuple[float | None, str] = (None, run_id)
                status = "error"
            elif "trial_result" in result:
                record = json.loads(result["trial_result"])
                ok = record["status"] == "finished"
                outcome = (_objective(record["val_accuracy"]) if ok else None, run_id)
                status = "finished" if ok else record["failure_kind"]
            else:  # stopped by the scheduler: TPE learns the accuracy it had reached
                outcome = (_objective(result.get("objective", 0.0)), run_id)
                status = STOPPED_EARLY
            self._resolve(inner_id, key, config, outcome, cached=False, status=status)
            if status == "finished" or status in ("diverged", "invalid_config"):
                known[key] = outcome
            for waiting_id, waiting_config in self.waiting.pop(key, []):
                self._resolve(waiting_id, key, waiting_config, outcome, cached=True, status=status)

        def _resolve(self, inner_id, key, config, outcome, cached: bool, status: str | None = None) -> None:
            objective, run_id = outcome
            if objective is None:
                inner.on_trial_complete(inner_id, error=True)
            else:
                inner.on_trial_complete(inner_id, {"objective": objective})
            status = status or ("finished" if objective is not None else "failed")
            self._record(key, config.flat(), status, run_id, "", cached=cached)

        def _record(self, key, config, status, run_id, reason, cached: bool = False) -> None:
            records.append(
                {"key": key, "config": config, "status": status, "run_id": run_id, "reason": reason, "cached": cached}
            )
            save()

    return SweepSearcher()


def run_sweep(
    hyperopt_space: dict[str, Any],
    experiment: str,
    decode: Any,
    max_evals: int,
    seed: int,
    n_startup: int,
    data: DataSpec,
    tags: dict[str, str],
    parent_run_id: str,
    state_path: Path,
    max_epochs: int,
    early_stopping: bool | str = False,
    workers: int | str = "auto",
    threads_per_trial: int | None = None,
    progress: bool = True,
) -> list[TrialResult]:
    """A resumable TPE sweep on Ray; ``lib.search.run_sweep`` prepares the space and the parent run.

    ``decode`` turns a point of the space into a :class:`TrialConfig` (raising ``ConfigError``).
    Returns every trial of the sweep in the order they ended, resumed ones included.
    """
    import_ray()
    from ray.tune.search.hyperopt import HyperOptSearch

    scheduler_kind = _early_stopping_kind(early_stopping)
    threads = _threads(threads_per_trial)
    exp_id = tracking.experiment_id(experiment)
    inner = HyperOptSearch(
        hyperopt_space, metric="objective", mode="max", n_initial_points=n_startup, random_state_seed=seed
    )
    state = _load_state(state_path)
    records: list[dict[str, Any]] = state["records"] if state else []
    if state:
        inner.set_state(state["searcher"])
    remaining = max_evals - len(records)
    if remaining > 0:
        known = {
            key: (
                _objective(run.data.metrics.get("val_accuracy")) if run.info.status == tracking.FINISHED else None,
                run.info.run_id,
            )
            for key, run in _finished_in_store(exp_id).items()
        }

        def save() -> None:
            state_path.write_bytes(pickle.dumps({"searcher": inner.get_state(), "records": records}))

        bar = _bar(max_evals, len(records), f"sweep {tags.get('sweep', '')}".strip(), progress)
        recorder = _Recorder(exp_id, data, trial_tags(experiment, data, tags), parent_run_id, bar)
        searcher = _sweep_searcher(inner, remaining, records, known, decode, data, recorder, save)
        scheduler = None
        if scheduler_kind == "asha":
            from ray.tune.schedulers import ASHAScheduler

            scheduler = ASHAScheduler(
                time_attr="epoch",
                metric="objective",
                mode="max",
                max_t=max(1, max_epochs),
                grace_period=1,
                reduction_factor=ASHA_REDUCTION_FACTOR,
            )
        try:
            with ray_cluster() as cluster:
                concurrency = min(_concurrency(cluster, threads, workers), remaining)
                _tune(searcher, recorder, cluster, data, threads, concurrency, scheduler)
        except BaseException as exc:
            reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"sweep aborted: {exc!r}"
            recorder.close_open_runs(reason)
            raise
        finally:
            bar.close()
        recorder.close_open_runs("Ray ended without a result for this trial")
        save()
    return _collect(records, exp_id, data)


def max_epochs(spec: dict[str, Any], base: TrialConfig) -> int:
    """The most epochs any point of a plain-data space trains (ASHA's ``max_t``)."""
    value = spec.get("epochs", base.train.epochs)
    if isinstance(value, dict):
        ((_, bounds),) = value.items()
        return int(float(bounds[1]))
    if isinstance(value, list | tuple):
        return int(max(value))
    return int(value)


def _early_stopping_kind(early_stopping: bool | str | None) -> str | None:
    if early_stopping in (None, False):
        return None
    if early_stopping is True or early_stopping == "asha":
        return "asha"
    raise StudyError(f"early_stopping={early_stopping!r}: use False (run every trial to the end) or True/'asha'")


def _collect(records: list[dict[str, Any]], exp_id: str, data: DataSpec) -> list[TrialResult]:
    """The sweep's trials from the store: a cached point gets the run that holds its result."""
    by_key = _finished_in_store(exp_id)
    results = []
    for record in records:
        key, run_id = record["key"], record["run_id"]
        if key is None:
            results.append(
                TrialResult(
                    key="",
                    config=record["config"],
                    status="failed",
                    failure_kind="invalid_config",
                    failure_reason=record["reason"],
                )
            )
            continue
        config = TrialConfig.from_flat(record["config"])
        run = by_key.get(key) if record["status"] != STOPPED_EARLY else None
        if run is None and run_id:
            run = tracking.client().get_run(run_id)
        if run is None:
            results.append(
                TrialResult(key=key, config=config.flat(), status="failed", failure_kind=record["status"] or "error")
            )
            continue
        result = result_from_run(config, key, run)
        result.cached = record["cached"] or result.cached
        results.append(result)
    return results
