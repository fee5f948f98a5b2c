"""The records of a study: what is cached, which MLflow runs are open, what a call produced.

Both back-ends (``lib.engine.local_backend``, ``lib.engine.ray_tune``) and the sweep driver (``lib.engine.search``) go
through this module, so a trial's record never depends on where it trained:

- **plan** (:func:`plan_trials`): split the requested configs into cache hits (a finished run, or a
  deterministic failure, with the same key) and trials to train. Runs left RUNNING by a dead owner
  process (``kill -9``) are marked KILLED here, so they are trained again.
- **open / close / abort** (:class:`Recorder`): a RUNNING run when a trial starts (every
  hyperparameter, the data split, the tags), its epochs as they end, its final metrics and status
  (FINISHED, FAILED, or KILLED when a scheduler stopped it early) when it ends, and KILLED for every
  run still open when the call is interrupted. The parent process is the only writer.
- **progress** (:class:`Progress`): a bar while the trials run and a one-line summary
  (:func:`summary_line`) when it closes.
- **results** (:func:`results_frame`): one row per trial with its config, status and metrics.
- **per-image results** (:func:`val_correct`, :func:`per_image_correct`): which validation (or, for a
  final run, test) images a finished trial got right, stored bit-packed as the run's artifact
  ``per_image/<split>_correct.npz`` (625 bytes for 5,000 images), for paired tests over images.

What this is not: where trials train (the back-ends) or which configs to try (``lib.engine``'s
grids, ``lib.engine.search``'s TPE). MLflow itself is reached only through ``lib.tracking``.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lib import store, tracking
from lib.config import TrialConfig
from lib.data import DataSpec
from lib.engine.backend import STOPPED_EARLY, TrialRequest
from lib.engine.trial import TrialResult, code_version, trial_key
from lib.store.schema import (
    FAILED,
    FINISHED,
    KEY,
    KIND_FINAL,
    KIND_TRIAL,
    TAG_CODE_VERSION,
    TAG_EXPERIMENT,
    TAG_FAILURE_KIND,
    TAG_FAILURE_REASON,
    TAG_HYPOTHESES,
    TAG_HYPOTHESIS,
    TAG_KIND,
    TAG_SEED,
    TAG_SPLIT,
    TAG_SWEEP,
    TAG_TRIAL_KEY,
)

CACHED_FAILURES = frozenset({"diverged", "invalid_config"})
_BASE_METRICS = ("val_accuracy", "val_loss", "n_parameters", "train_seconds", "images_per_second", "epochs_run")


def cached_runs(exp_id: str, keys: set[str] | None = None) -> dict[str, tracking.StoredRun]:
    """Finished/cacheable runs by trial key (all keys when ``keys`` is None); stale RUNNING runs of
    these keys are marked KILLED."""
    found: dict[str, tracking.StoredRun] = {}
    for run in store.stored_runs(exp_id):
        key = run.tags.get(TAG_TRIAL_KEY)
        if key is None or (keys is not None and key not in keys):
            continue
        if run.status == tracking.RUNNING:
            if tracking.owner_gone(run):
                tracking.set_tags(run.run_id, {TAG_FAILURE_REASON: "interrupted (owner process gone)"})
                tracking.end_run(run.run_id, tracking.KILLED)
            continue
        cacheable = run.status == tracking.FINISHED or (
            run.status == tracking.FAILED and run.tags.get(TAG_FAILURE_KIND) in CACHED_FAILURES
        )
        if cacheable and key not in found:
            found[key] = run
    return found


def result_from_run(config: TrialConfig, key: str, run: tracking.StoredRun) -> TrialResult:
    """A logged run read back as the :class:`TrialResult` that produced it (``cached=True``)."""
    metrics = dict(run.metrics)
    values = {name: metrics.pop(name, float("nan")) for name in _BASE_METRICS}
    return TrialResult(
        key=key,
        config=config.flat(),
        status=FINISHED if run.status == tracking.FINISHED else FAILED,
        val_accuracy=values["val_accuracy"],
        val_loss=values["val_loss"],
        n_parameters=int(values["n_parameters"]) if math.isfinite(values["n_parameters"]) else 0,
        train_seconds=values["train_seconds"],
        images_per_second=values["images_per_second"],
        epochs_run=int(values["epochs_run"]) if math.isfinite(values["epochs_run"]) else 0,
        failure_kind=run.tags.get(TAG_FAILURE_KIND, ""),
        failure_reason=run.tags.get(TAG_FAILURE_REASON, ""),
        metrics=metrics,
        run_id=run.run_id,
        cached=True,
    )


@dataclasses.dataclass
class TrialPlan:
    """What a call has to do: each requested config's key, the cached results, the trials to train."""

    requested: list[TrialConfig]
    keys: list[str]
    results: dict[str, TrialResult]  # by key: cached now, trained ones are added as they finish
    todo: dict[str, TrialConfig]  # by key: canonical configs still to train, in request order
    hits: dict[str, tracking.StoredRun] = dataclasses.field(default_factory=dict)  # the cached runs by key

    def in_request_order(self) -> list[TrialResult]:
        """One result per requested config (duplicates share a run), with the config as asked for."""
        return [
            dataclasses.replace(self.results[key], config=config.flat())
            for config, key in zip(self.requested, self.keys, strict=True)
        ]


def plan_trials(configs: Sequence[TrialConfig], exp_id: str, data: DataSpec) -> TrialPlan:
    """Split ``configs`` into cache hits and trials to train (both back-ends start here)."""
    canonical = [config.canonical() for config in configs]  # run and log exactly what the key means
    keys = [trial_key(config, data) for config in canonical]
    existing = cached_runs(exp_id, set(keys))
    results: dict[str, TrialResult] = {}
    todo: dict[str, TrialConfig] = {}
    for config, key in zip(canonical, keys, strict=True):
        if key in existing:
            results.setdefault(key, result_from_run(config, key, existing[key]))
        else:
            todo.setdefault(key, config)
    hits = {key: existing[key] for key in results}
    return TrialPlan(list(configs), keys, results, todo, hits)


def trial_tags(experiment: str, data: DataSpec, tags: dict[str, str] | None) -> dict[str, str]:
    """The tags every trial run of a call carries (its own key and seed are added per run)."""
    common = {TAG_EXPERIMENT: experiment, TAG_CODE_VERSION: code_version(), TAG_SPLIT: data.load().split_id}
    return common | data.tags() | (tags or {})


def run_name(config: TrialConfig, tags: dict[str, str] | None = None, data: DataSpec | None = None) -> str:
    """A short readable MLflow run name, led by the run's role: ``H1-…`` (a hypothesis' grid),
    ``sweep-<name>-…``, ``final-…`` (trained on train+val, scored on test); then blocks, norm,
    dropout, optimizer, lr and seed."""
    m, t = config.model, config.train
    name = (
        f"{m.num_conv_blocks}blk-{m.norm_type}-do{m.dropout_p:g}-{m.dropout_placement}"
        f"-{t.optimizer}-lr{t.lr:.0e}-s{config.seed}"
    )
    tags = tags or {}
    if data is not None and data.final:
        role = "final"
    elif tags.get(TAG_HYPOTHESIS):
        role = tags[TAG_HYPOTHESIS]
    elif tags.get(TAG_SWEEP):
        role = f"sweep-{tags[TAG_SWEEP]}"
    else:
        role = tags.get("role", "")
    return f"{role}-{name}" if role else name


def add_hypothesis(runs: Iterable[tracking.StoredRun], hypothesis: str | None) -> None:
    """Cached runs reused for another hypothesis list it too: tag ``hypotheses`` = ``H1,H2`` (the
    ``hypothesis`` tag keeps the one the run was trained for)."""
    if not hypothesis:
        return
    for run in runs:
        listed = [h for h in run.tags.get(TAG_HYPOTHESES, run.tags.get(TAG_HYPOTHESIS, "")).split(",") if h]
        if hypothesis not in listed:
            tracking.set_tags(run.run_id, {TAG_HYPOTHESES: ",".join([*listed, hypothesis])})


def summary_line(label: str, results: Iterable[TrialResult]) -> str:
    """``grid H1: 12 trials: 9 finished (3 cached), 3 failed (invalid config)``."""
    results = list(results)
    finished = [r for r in results if r.ok]
    failed = Counter((r.failure_kind or "error").replace("_", " ") for r in results if not r.ok)
    text = f"{label}: {len(results)} trial{'s' if len(results) != 1 else ''}: {len(finished)} finished"
    cached = sum(r.cached for r in finished)
    text += f" ({cached} cached)" if cached else ""
    if failed:
        kinds = [kind if len(failed) == 1 else f"{n} {kind}" for kind, n in failed.most_common()]
        text += f", {sum(failed.values())} failed ({', '.join(kinds)})"
    return text


BARS_ENV = "HYPERTUNE_PROGRESS_BARS"  # "0": no live bars (a saved notebook would keep their first frame)


class Progress:
    """A tqdm bar over a call's trials that closes with :func:`summary_line` instead of staying behind."""

    def __init__(self, label: str, total: int, done: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.label, self.enabled = label, enabled
        # notebooks executed for the record (`python -m lib study`) keep the summary line, not a frozen bar
        bar = enabled and os.environ.get(BARS_ENV, "1") != "0"
        self.bar = tqdm(total=total, initial=done, desc=label, unit="trial", disable=not bar, mininterval=1.0)
        self.best = -math.inf

    def update(self, result: TrialResult) -> None:
        self.bar.update()
        if result.ok and math.isfinite(result.val_accuracy) and result.val_accuracy > self.best:
            self.best = result.val_accuracy
            self.bar.set_postfix(best_val_acc=f"{self.best:.4f}", refresh=False)

    def close(self, results: Iterable[TrialResult] | None = None) -> None:
        """Remove the bar; with ``results`` (a call that completed) print its summary line."""
        self.bar.leave = False
        self.bar.close()
        if self.enabled and results is not None:
            print(summary_line(self.label, results), flush=True)


class Recorder:
    """Opens a trial's run when it starts and closes it when it ends; the only MLflow writer of a call."""

    def __init__(
        self, exp_id: str, data: DataSpec, tags: dict[str, str], parent_run_id: str | None, progress: Progress
    ) -> None:
        self.exp_id, self.data, self.tags, self.parent_run_id = exp_id, data, tags, parent_run_id
        self.progress = progress
        self.open_runs: dict[str, str] = {}  # trial key -> its RUNNING run
        self.epochs_logged: dict[str, int] = {}

    def open(self, request: TrialRequest) -> str:
        """Create the RUNNING run of one trial: every hyperparameter, the data split and the tags."""
        config = request.config
        params = config.flat() | self.data.params()
        kind = KIND_FINAL if self.data.final else KIND_TRIAL
        run_tags = self.tags | {TAG_TRIAL_KEY: request.key, TAG_SEED: str(config.seed), TAG_KIND: kind}
        if self.tags.get(TAG_HYPOTHESIS):
            run_tags[TAG_HYPOTHESES] = self.tags[TAG_HYPOTHESIS]
        name = run_name(config, self.tags, self.data)
        run_id = tracking.start_run(self.exp_id, params, run_tags, run_name=name, parent_run_id=self.parent_run_id)
        self.open_runs[request.key] = run_id
        self.epochs_logged[request.key] = 0
        return run_id

    def epoch(self, key: str, row: dict[str, float]) -> None:
        """Log one epoch's metrics as it ends (``epoch_<name>``, step = epoch)."""
        if key in self.open_runs and int(row["epoch"]) > self.epochs_logged[key]:
            tracking.log_history(self.open_runs[key], [row])
            self.epochs_logged[key] = int(row["epoch"])

    def close(self, key: str, result: TrialResult) -> TrialResult:
        """Log the epochs not logged yet and the final metrics, then end the run FINISHED, FAILED or
        (stopped early by a scheduler: no final metrics, never cached) KILLED."""
        run_id = self.open_runs[key]
        result.run_id = run_id
        tracking.log_history(run_id, [row for row in result.history if row["epoch"] > self.epochs_logged[key]])
        if result.failure_kind == STOPPED_EARLY:
            tags = {STOPPED_EARLY: "true", TAG_FAILURE_KIND: STOPPED_EARLY, TAG_FAILURE_REASON: result.failure_reason}
            tracking.set_tags(run_id, tags)
            status = tracking.KILLED
        else:
            tracking.log_metrics(run_id, result.final_metrics())
            if result.ok:
                log_per_image(run_id, result.correct)
            if not result.ok:
                reason = result.failure_reason[:4000]
                tracking.set_tags(run_id, {TAG_FAILURE_KIND: result.failure_kind, TAG_FAILURE_REASON: reason})
            status = tracking.FINISHED if result.ok else tracking.FAILED
        tracking.end_run(run_id, status)
        del self.open_runs[key]  # only now: a Ctrl-C during the logging above ends the run KILLED
        self.progress.update(result)
        return result

    def abort(self, reason: str) -> None:
        """End every run still open KILLED with ``failure_reason`` (Ctrl-C, an error, a lost trial)."""
        for key, run_id in list(self.open_runs.items()):
            tracking.set_tags(run_id, {TAG_FAILURE_REASON: reason})
            tracking.end_run(run_id, tracking.KILLED)
            del self.open_runs[key]


class RecordingFeed:
    """The :class:`lib.engine.backend.Feed` of a grid: hands out the trials to train and records each one."""

    def __init__(self, recorder: Recorder, todo: dict[str, TrialConfig]) -> None:
        self.recorder = recorder
        self.size = len(todo)
        self._requests: Iterator[TrialRequest] = iter([TrialRequest(key, config) for key, config in todo.items()])
        self.results: dict[str, TrialResult] = {}

    def next(self) -> TrialRequest | None:
        return next(self._requests, None)

    def started(self, request: TrialRequest) -> None:
        self.recorder.open(request)

    def epoch(self, request: TrialRequest, row: dict[str, float]) -> None:
        self.recorder.epoch(request.key, row)

    def finished(self, request: TrialRequest, result: TrialResult) -> None:
        self.results[request.key] = self.recorder.close(request.key, result)

    def abort(self, reason: str) -> None:
        self.recorder.abort(reason)


PER_IMAGE_FOLDER = "per_image"


def log_per_image(run_id: str, correct: dict[str, Any]) -> None:
    """Store each split's per-image correctness (bool arrays) bit-packed as one small artifact per split."""
    if not correct:
        return
    with tempfile.TemporaryDirectory(prefix="hypertune-per-image-") as folder:
        for split, values in correct.items():
            values = np.asarray(values, dtype=bool)
            path = Path(folder) / PER_IMAGE_FOLDER / f"{split}_correct.npz"
            path.parent.mkdir(exist_ok=True)
            np.savez(path, packed=np.packbits(values), n=np.int64(len(values)))
        tracking.log_artifact(run_id, Path(folder) / PER_IMAGE_FOLDER)


def per_image_correct(run_id: str, split: str = "val") -> np.ndarray:
    """Which images of ``split`` (``val``, or ``test`` for a final run) run ``run_id`` got right, in
    the split's order (the same order for every run on one ``split_id``): a bool array."""
    stored = np.load(io.BytesIO(tracking.read_artifact(run_id, f"{PER_IMAGE_FOLDER}/{split}_correct.npz")))
    return np.unpackbits(stored["packed"], count=int(stored["n"])).astype(bool)


def val_correct(run_id: str) -> np.ndarray:
    """Per validation image (split order), whether the finished run ``run_id`` classified it right."""
    return per_image_correct(run_id, "val")


def results_frame(results: Sequence[TrialResult]) -> pd.DataFrame:
    """Trial results as a DataFrame: every hyperparameter, status and final metric, in the trial frame's
    schema (:mod:`lib.store.schema`: ``status`` finished/failed, the key in ``tag.trial_key``)."""
    rows = []
    for result in results:
        row: dict[str, Any] = dict(result.config)
        row["hidden_sizes"] = str(tuple(row["hidden_sizes"]))
        row |= {
            "status": result.status,
            "failure_kind": result.failure_kind,
            "failure_reason": result.failure_reason,
            "cached": result.cached,
            "run_id": result.run_id,
            KEY: result.key,  # the same column as a trial frame read from the store (lib.store)
        } | result.final_metrics()
        rows.append(row)
    return pd.DataFrame(rows)
