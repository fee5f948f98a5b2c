"""The Ray Tune back-end: a feed's trials trained as Tune trials on a Ray cluster.

Imported only for ``engine="ray"`` (after :func:`lib.engine.ray_backend.import_ray` has checked that Ray is
installed); it imports Ray at the top. Like the local back-end it only runs configs and reports
results: Tune asks :class:`FeedSearcher` for the next trial (the feed decides: a grid's next
uncached trial, or the TPE sweep's next point), and :class:`FeedCallback` tells the feed, in the
driver process, when a trial starts, when each epoch ends and when it ends. The feed records them
(``lib.engine.records``), so a Ray run has the same params, ``epoch_*`` metrics, tags and cache key as a
local one, and the driver stays the only MLflow writer.

- **Resources**: each trial asks for ``threads_per_trial`` CPUs (default 1) and one GPU when the
  cluster has GPUs (the trainer picks CUDA itself); actors are reused between trials.
- **Early stopping** (``early_stopping`` = the most epochs of any trial): ``ASHAScheduler`` on
  per-epoch validation accuracy. A trial it stops is reported with ``failure_kind="stopped_early"``
  and the accuracy it reached; its run ends KILLED with no final metrics, so it is never cached,
  never read by :mod:`lib.study.analysis` and never a sweep's best.
- **A trial whose actor dies** is reported failed (``error``) with Ray's message; the others go on.

What this is not: the records, the cache or the TPE searcher (``lib.engine.search`` drives both back-ends).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import tempfile
from typing import Any

import numpy as np
from ray import tune
from ray.tune import Callback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher

from lib.config import TrialConfig
from lib.data import DataSpec
from lib.engine import ray_backend
from lib.engine.backend import STOPPED_EARLY, Feed, RunOptions, TrialRequest
from lib.engine.trial import TrialResult, execute_trial
from lib.environ import environment

ASHA_REDUCTION_FACTOR = 2


def _trainable(tune_config: dict[str, Any], data: DataSpec, threads: int) -> None:
    """One trial on a Ray worker: train, report epochs (for ASHA and the records) and the result at the end."""
    import torch

    torch.set_num_threads(threads)
    config = TrialConfig.from_flat(tune_config["config"])
    epochs = config.train.epochs

    def on_epoch(stats) -> None:
        if stats.epoch < epochs:  # the last epoch arrives with the final result
            row = stats.as_dict()
            tune.report({"epoch": stats.epoch, "objective": _objective(row["val_accuracy"]), "row": json.dumps(row)})

    result = execute_trial(config, data, on_epoch=on_epoch)
    final = result.val_accuracy if result.ok else 0.0
    tune.report({"objective": _objective(final), "trial_result": encode_result(result)})


def encode_result(result: TrialResult) -> str:
    """A trial's result as JSON for Tune's report; the per-image arrays bit-packed (base64)."""
    record = dataclasses.asdict(result)
    record["correct"] = {
        split: {"n": len(values), "bits": base64.b64encode(np.packbits(np.asarray(values, dtype=bool))).decode()}
        for split, values in result.correct.items()
    }
    return json.dumps(record)


def decode_result(text: str) -> TrialResult:
    """The inverse of :func:`encode_result`."""
    record = json.loads(text)
    record["correct"] = {
        split: np.unpackbits(np.frombuffer(base64.b64decode(v["bits"]), dtype=np.uint8), count=v["n"]).astype(bool)
        for split, v in record.get("correct", {}).items()
    }
    return TrialResult(**record)


def _objective(value: float | None) -> float:
    """What the scheduler maximises: validation accuracy, 0 where it is missing."""
    return float(value) if value is not None and math.isfinite(value) else 0.0


def _request(trial: Any) -> TrialRequest:
    return TrialRequest(trial.config["key"], TrialConfig.from_flat(trial.config["config"]))


class FeedSearcher(Searcher):
    """Hands Tune the feed's trials, then FINISHED. Tune's experiment checkpoints are not used: a
    sweep's state lives with the sweep (``lib.engine.search``)."""

    def __init__(self, feed: Feed) -> None:
        super().__init__(metric="objective", mode="max")
        self.feed = feed

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        request = self.feed.next()
        if request is None:
            return Searcher.FINISHED
        return {"key": request.key, "config": request.config.flat()}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass  # the feed hears of every trial through FeedCallback

    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass


class FeedCallback(Callback):
    """Tells the feed about each trial, in the driver: started, each epoch, ended (once)."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self.running: dict[str, TrialRequest] = {}  # Tune trial id -> its request, until it ends
        self.rows: dict[str, list[dict[str, float]]] = {}

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        request = self.running[trial.trial_id] = _request(trial)
        self.rows[trial.trial_id] = []
        self.feed.started(request)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        request = self.running.get(trial.trial_id)
        if request is None:
            return
        if "row" in result:
            row = json.loads(result["row"])
            self.rows[trial.trial_id].append(row)
            self.feed.epoch(request, row)
        if "trial_result" in result:
            del self.running[trial.trial_id]
            self.feed.finished(request, decode_result(result["trial_result"]))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        """A trial that ended without its final result: the scheduler stopped it early."""
        request = self.running.pop(trial.trial_id, None)
        if request is not None:
            rows = self.rows.get(trial.trial_id, [])
            reason = f"stopped early by ASHA after epoch {len(rows)} of {request.config.train.epochs}"
            reached = rows[-1]["val_accuracy"] if rows else float("nan")
            self.feed.finished(request, _failed(request, STOPPED_EARLY, reason, rows, val_accuracy=reached))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        """The trial's actor failed (died, out of memory): a failed run, retried next time."""
        request = self.running.pop(trial.trial_id, None)
        if request is not None:
            message = str(getattr(trial, "error_message", None) or "the trial's Ray actor failed")
            self.feed.finished(request, _failed(request, "error", f"Ray trial error: {message}", []))


def _failed(request: TrialRequest, kind: str, reason: str, rows: list, val_accuracy: float = math.nan) -> TrialResult:
    return TrialResult(
        key=request.key,
        config=request.config.flat(),
        status="failed",
        val_accuracy=val_accuracy,
        epochs_run=len(rows),
        failure_kind=kind,
        failure_reason=reason,
        history=rows,
    )


class RayBackend:
    """Runs a feed's trials as Tune trials, ``workers`` at once (default: as many as the CPUs allow)."""

    def run(self, feed: Feed, options: RunOptions) -> None:
        threads = options.threads_per_trial or 1
        scheduler = None
        if options.early_stopping:
            scheduler = ASHAScheduler(
                time_attr="epoch",
                metric="objective",
                mode="max",
                max_t=max(1, options.early_stopping),
                grace_period=1,
                reduction_factor=ASHA_REDUCTION_FACTOR,
            )
        with ray_backend.ray_cluster() as cluster:
            concurrency = min(_concurrency(cluster, threads, options.workers), max(1, feed.size))
            _tune(feed, cluster, options.data, threads, concurrency, scheduler)


def _concurrency(cluster: ray_backend.Cluster, threads: int, workers: int | str) -> int:
    by_cpu = max(1, int(cluster.cpus // threads))
    if cluster.gpus >= 1:
        by_cpu = min(by_cpu, int(cluster.gpus))
    return by_cpu if workers == "auto" else min(int(workers), by_cpu)


def _tune(feed: Feed, cluster: ray_backend.Cluster, data: DataSpec, threads: int, concurrency: int, scheduler) -> None:
    """Run Tune until the feed is empty; the callback reports every trial to the feed in the driver."""
    gpus = 1 if cluster.gpus >= 1 else 0
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, data=data, threads=threads), {"cpu": threads, "gpu": gpus}
    )
    settings = {
        "TUNE_DISABLE_SIGINT_HANDLER": "1",  # Ctrl-C raises here, so open runs are ended KILLED
        "RAY_AIR_NEW_OUTPUT": "0",  # no configuration table in the notebook; our progress bar is enough
    }
    with environment(settings), tempfile.TemporaryDirectory(prefix="hypertune-ray-") as storage:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(FeedSearcher(feed), max_concurrent=max(1, concurrency)),
                scheduler=scheduler,
                num_samples=-1,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name="hypertune", storage_path=storage, verbose=0, callbacks=[FeedCallback(feed)], log_to_file=False
            ),
        )
        tuner.fit()
