"""Run many trials: controlled grids that are cached, resumable, parallel and fail-safe.

- **Cached**: every trial has a key (:func:`lib.trial.trial_key`). A trial whose key already has a
  finished run in the experiment is not trained again; its logged result is reused.
- **Resumable**: a run is created (RUNNING) when its trial starts and closed when it ends. Ctrl-C
  marks the trials in flight KILLED; after a ``kill -9`` the next call finds their runs still
  RUNNING with a dead owner process and marks them KILLED. Either way they are trained again, and
  finished trials stay logged exactly once.
- **Fail-safe**: a trial that diverges, is impossible for the input size or raises is logged as
  FAILED with ``failure_kind``/``failure_reason`` tags, and the study goes on. Deterministic
  failures (diverged, invalid config) are cached like successes; errors are retried next time.
- **Parallel**: independent trials run in worker processes with one thread each when there are
  several (two 1-thread trainings beat one 2-thread training on this 2-core machine); one trial
  runs in-process with all threads. Workers fork from a preloaded server, so they start without
  importing torch again. The parent process is the only MLflow writer.

What this is not: the hyperopt search (``lib.search``) or the statistics (``lib.stats``).
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import os
import signal
import socket
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pandas as pd

from lib import tracking
from lib.config import ConfigError, TrialConfig, check_known_fields
from lib.trial import DataSpec, TrialResult, code_version, execute_trial, trial_key

CACHED_FAILURES = frozenset({"diverged", "invalid_config"})
ENGINES = ("local", "ray")


class StudyError(ValueError):
    """A study definition that cannot run (raised before any training)."""


def grid_configs(
    base: TrialConfig | dict[str, Any] | None, factors: dict[str, Sequence[Any]], seeds: Sequence[int]
) -> list[TrialConfig]:
    """The full cartesian product ``factors`` x ``seeds`` over ``base``, validated up front."""
    if not isinstance(factors, dict):
        raise StudyError(f"factors must be a dict of name -> list of values; got {type(factors).__name__}")
    try:
        check_known_fields(dict(factors))
    except ConfigError as exc:
        raise StudyError(f"grid factors: {exc}") from None
    empty = [name for name, values in factors.items() if len(list(values)) == 0]
    if empty:
        raise StudyError(f"grid factor(s) {empty} have no values; give at least one value each.")
    if len(list(seeds)) == 0:
        raise StudyError("seeds is empty; give at least one seed (three or more for confidence intervals).")
    if "seed" in factors:
        raise StudyError("put seeds in the `seeds` argument, not in the factors")
    base_config = base if isinstance(base, TrialConfig) else TrialConfig.from_flat(base or {})
    names = list(factors)
    configs = []
    for values in itertools.product(*(list(factors[name]) for name in names)):
        for seed in seeds:
            try:
                configs.append(
                    TrialConfig.from_flat(dict(zip(names, values, strict=True)) | {"seed": seed}, base_config)
                )
            except ConfigError as exc:
                raise StudyError(f"grid point {dict(zip(names, values, strict=True))}: {exc}") from None
    return configs


def run_grid(
    base: TrialConfig | dict[str, Any] | None,
    factors: dict[str, Sequence[Any]],
    seeds: Sequence[int],
    experiment: str,
    data: DataSpec = DataSpec(),
    tags: dict[str, str] | None = None,
    workers: int | str = "auto",
    threads_per_trial: int | None = None,
    progress: bool = True,
    engine: str = "local",
) -> pd.DataFrame:
    """Run a controlled grid and return one row per trial (config columns + metrics).

    ``engine="ray"`` runs the same trials on Ray Tune (see ``lib.ray_backend``), with the same records.
    """
    check_engine(engine)
    configs = grid_configs(base, factors, seeds)
    results = run_trials(configs, experiment, data, tags, workers, threads_per_trial, progress=progress, engine=engine)
    return results_frame(results)


def check_engine(engine: str) -> None:
    """``engine`` names a back-end: ``local`` (this module) or ``ray`` (``lib.ray_backend``)."""
    if engine not in ENGINES:
        raise StudyError(f"engine={engine!r}: must be one of {list(ENGINES)}")


def results_frame(results: Sequence[TrialResult]) -> pd.DataFrame:
    """Trial results as a DataFrame: every hyperparameter, status and final metric."""
    rows = []
    for result in results:
        row = dict(result.config)
        row["hidden_sizes"] = str(tuple(row["hidden_sizes"]))
        row |= {
            "status": result.status,
            "failure_kind": result.failure_kind,
            "failure_reason": result.failure_reason,
            "cached": result.cached,
            "run_id": result.run_id,
            "key": result.key,
        } | result.final_metrics()
        rows.append(row)
    return pd.DataFrame(rows)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def existing_runs(exp_id: str, keys: set[str]) -> dict[str, Any]:
    """Finished/cacheable runs by key; stale RUNNING runs of these keys are marked KILLED."""
    mlflow_client = tracking.client()
    found: dict[str, Any] = {}
    host = socket.gethostname()
    for run in tracking.search_ids([exp_id]):
        key = run.data.tags.get("trial_key")
        if key not in keys:
            continue
        status = run.info.status
        if status == tracking.RUNNING:
            owner = run.data.tags.get("pid", "")
            alive = run.data.tags.get("host") == host and owner.isdigit() and _pid_alive(int(owner))
            if not alive or int(owner) == os.getpid():
                mlflow_client.set_tag(run.info.run_id, "failure_reason", "interrupted (owner process gone)")
                mlflow_client.set_terminated(run.info.run_id, status=tracking.KILLED)
            continue
        cacheable = status == tracking.FINISHED or (
            status == tracking.FAILED and run.data.tags.get("failure_kind") in CACHED_FAILURES
        )
        if cacheable and key not in found:
            found[key] = run
    return found


def open_trial_run(
    exp_id: str,
    config: TrialConfig,
    key: str,
    data: DataSpec,
    tags: dict[str, str],
    parent_run_id: str | None = None,
) -> str:
    """Create the RUNNING MLflow run of one trial: every hyperparameter, the data split and the tags.

    Both back-ends (this module and ``lib.ray_backend``) open and close trial runs only through this
    function and :func:`close_trial_run`, so a trial's record does not depend on where it trained.
    """
    params = config.flat() | data.params()
    run_tags = tags | {"trial_key": key, "seed": str(config.seed)}
    return tracking.start_run(exp_id, params, run_tags, run_name=run_name(config), parent_run_id=parent_run_id)


def close_trial_run(run_id: str, result: TrialResult) -> None:
    """Log a trial's per-epoch history and final metrics, then end its run FINISHED or FAILED."""
    result.run_id = run_id
    tracking.log_history(run_id, result.history)
    tracking.log_metrics(run_id, result.final_metrics())
    if result.ok:
        tracking.end_run(run_id, tracking.FINISHED)
        return
    tracking.set_tags(run_id, {"failure_kind": result.failure_kind, "failure_reason": result.failure_reason[:4000]})
    tracking.end_run(run_id, tracking.FAILED)


def result_from_run(config: TrialConfig, key: str, run: Any) -> TrialResult:
    metrics = dict(run.data.metrics)
    base_names = ("val_accuracy", "val_loss", "n_parameters", "train_seconds", "images_per_second", "epochs_run")
    values = {name: metrics.pop(name, float("nan")) for name in base_names}
    return TrialResult(
        key=key,
        config=config.flat(),
        status="finished" if run.info.status == tracking.FINISHED else "failed",
        val_accuracy=values["val_accuracy"],
        val_loss=values["val_loss"],
        n_parameters=int(values["n_parameters"]) if values["n_parameters"] == values["n_parameters"] else 0,
        train_seconds=values["train_seconds"],
        images_per_second=values["images_per_second"],
        epochs_run=int(values["epochs_run"]) if values["epochs_run"] == values["epochs_run"] else 0,
        failure_kind=run.data.tags.get("failure_kind", ""),
        failure_reason=run.data.tags.get("failure_reason", ""),
        metrics=metrics,
        run_id=run.info.run_id,
        cached=True,
    )


# Workers are forked from a server process that has already imported torch and the trainer, so a
# grid's workers start in a fraction of a second instead of each importing torch (about 3 s here).
# The server starts once per Python session and computes nothing, so forking it is thread-safe.
_WORKER_PRELOAD = ["torch", "lib.trial", "lib.train", "lib.model", "lib.data"]


def _worker_context() -> multiprocessing.context.BaseContext:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")  # Windows
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_WORKER_PRELOAD)
    return context


def _init_worker(threads: int, environ: dict[str, str], cwd: str) -> None:
    """Worker set-up: the parent's environment and folder now (not the server's), fixed thread
    count, Ctrl-C handled by the parent only."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.clear()
    os.environ.update(environ)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.chdir(cwd)
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)


def _in_process(config: TrialConfig, data: DataSpec, threads: int, progress: bool) -> TrialResult:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return execute_trial(config, data, progress=progress)
    finally:
        torch.set_num_threads(previous)


def _resolve_workers(workers: int | str, n_todo: int) -> int:
    cores = os.cpu_count() or 1
    if workers == "auto":
        return max(1, min(cores, n_todo))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise StudyError(f"workers={workers!r}: must be 'auto' or an integer >= 1")
    return min(workers, max(n_todo, 1))


@dataclasses.dataclass
class TrialPlan:
    """What a call has to do: each requested config's key, the cached results, the trials to train."""

    requested: list[TrialConfig]
    keys: list[str]
    results: dict[str, TrialResult]  # by key: cached now, trained ones are added as they finish
    todo: dict[str, TrialConfig]  # by key: canonical configs still to train, in request order

    def in_request_order(self) -> list[TrialResult]:
        """One result per requested config (duplicates share a run), with the config as asked for."""
        return [
            dataclasses.replace(self.results[key], config=config.flat())
            for config, key in zip(self.requested, self.keys, strict=True)
        ]


def plan_trials(configs: Sequence[TrialConfig], exp_id: str, data: DataSpec) -> TrialPlan:
    """Split ``configs`` into cache hits and trials to train (both back-ends start here)."""
    if not configs:
        raise StudyError("no trials to run: the study is empty")
    canonical = [config.canonical() for config in configs]  # run and log exactly what the key means
    keys = [trial_key(config, data) for config in canonical]
    existing = existing_runs(exp_id, set(keys))
    results: dict[str, TrialResult] = {}
    todo: dict[str, TrialConfig] = {}
    for config, key in zip(canonical, keys, strict=True):
        if key in existing:
            if key not in results:
                results[key] = result_from_run(config, key, existing[key])
        else:
            todo.setdefault(key, config)
    return TrialPlan(list(configs), keys, results, todo)


def trial_tags(experiment: str, data: DataSpec, tags: dict[str, str] | None) -> dict[str, str]:
    """The tags every trial run of a call carries (its own key and seed are added per run)."""
    return {"experiment": experiment, "code_version": code_version(), "split": data.load().split_id} | (tags or {})


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

    ``engine="ray"`` hands them to ``lib.ray_backend`` (``workers``: trials at once, ``threads_per_trial``: CPUs each).
    """
    from tqdm.auto import tqdm

    check_engine(engine)
    if engine == "ray":
        from lib import ray_backend

        return ray_backend.run_trials(
            configs, experiment, data, tags, workers, threads_per_trial, parent_run_id, progress
        )
    exp_id = tracking.experiment_id(experiment)
    plan = plan_trials(configs, exp_id, data)
    keys, results, todo = plan.keys, plan.results, plan.todo
    n_workers = _resolve_workers(workers, len(todo))
    threads = threads_per_trial or max(1, (os.cpu_count() or 1) // n_workers)
    unique = len(set(keys))
    bar = tqdm(
        total=unique, initial=unique - len(todo), desc=experiment, unit="trial", disable=not progress, mininterval=1.0
    )
    common_tags = trial_tags(experiment, data, tags)

    def start(key: str) -> str:
        return open_trial_run(exp_id, todo[key], key, data, common_tags, parent_run_id)

    def finish(key: str, run_id: str, result: TrialResult) -> None:
        close_trial_run(run_id, result)
        results[key] = result
        bar.update()
        finished = [r.val_accuracy for r in results.values() if r.ok and r.val_accuracy == r.val_accuracy]
        if finished:
            bar.set_postfix(best_val_acc=f"{max(finished):.4f}", refresh=False)

    in_flight: dict[str, str] = {}
    try:
        if n_workers == 1:
            for key in todo:
                in_flight[key] = start(key)
                result = _in_process(todo[key], data, threads, progress=progress and len(todo) == 1)
                finish(key, in_flight[key], result)  # still in flight (ended KILLED) if Ctrl-C hits the logging
                del in_flight[key]
        else:
            _run_parallel(todo, data, n_workers, threads, start, finish, in_flight)
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"study aborted: {exc!r}"
        for run_id in in_flight.values():
            tracking.set_tags(run_id, {"failure_reason": reason})
            tracking.end_run(run_id, tracking.KILLED)
        raise
    finally:
        bar.close()
    return plan.in_request_order()


def _run_parallel(
    todo: dict[str, TrialConfig], data: DataSpec, n_workers: int, threads: int, start, finish, in_flight: dict[str, str]
) -> None:
    """Keep ``n_workers`` trials in flight; a run is opened only when its trial is submitted."""
    pending = list(todo)
    context = _worker_context()
    while pending or in_flight:
        executor = ProcessPoolExecutor(
            n_workers, mp_context=context, initializer=_init_worker, initargs=(threads, dict(os.environ), os.getcwd())
        )
        futures: dict[Future, str] = {}
        try:
            while pending or futures:
                while pending and len(futures) < n_workers:
                    key = pending.pop(0)
                    in_flight[key] = start(key)
                    futures[executor.submit(execute_trial, todo[key], data)] = key
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                broken = any(isinstance(future.exception(), BrokenProcessPool) for future in done)
                if broken:  # a dead worker fails every future of its pool: record them all, then a new pool
                    done, _ = wait(futures)
                for future in done:
                    key = futures.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        result = TrialResult(
                            key=key,
                            config=todo[key].flat(),
                            status="failed",
                            failure_kind="error",
                            failure_reason="worker process died (out of memory or killed)",
                        )
                    finish(key, in_flight[key], result)  # still in flight (ended KILLED) if Ctrl-C hits the logging
                del in_flight[key]
                if broken:
                    break
        except BaseException:
            executor.shutdown(wait=False, cancel_futures=True)
            _terminate(executor)
            raise
        executor.shutdown(wait=True)


def _terminate(executor: ProcessPoolExecutor) -> None:
    terminate = getattr(executor, "terminate_workers", None)
    if terminate:
        terminate()
        return
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        process.terminate()


def run_name(config: TrialConfig) -> str:
    """A short readable MLflow run name: blocks, norm, dropout, optimizer, lr and seed."""
    m, t = config.model, config.train
    return (
        f"{m.num_conv_blocks}blk-{m.norm_type}-do{m.dropout_p:g}-{m.dropout_placement}"
        f"-{t.optimizer}-lr{t.lr:.0e}-s{config.seed}"
    )
