"""The one reader of runs: every read of the store in ``lib`` goes through here, and comes back typed.

- :func:`runs`: every run of some experiments as a DataFrame, one row per run: ``run_id``, ``experiment``,
  ``status`` (:data:`lib.store.schema.STATUSES`), ``start_time``, the params, the metrics, ``tag.<name>``
  columns and ``kind`` (:data:`lib.store.schema.KINDS`: a trial, a final run, a sweep's parent, an analysis run).
  Columns are typed: ``seed`` and every integer config field as ``int``, the boolean ones as ``bool`` (a
  column some runs lack, e.g. ``seed`` beside a sweep's parent, keeps its missing values as floats).
- :func:`trials`: the trial runs among them (finished and failed, each trial key once, no final runs and no
  sweep parents), the table every report and analysis starts from.
- :func:`epoch_histories`: the per-epoch metrics of finished runs; :func:`history`: one run's.
- :func:`run_config` (a row back to its config) and :func:`config_identity` (a config without seed and epochs).
- :func:`stored_runs` and :func:`stored_run`: runs as plain records, for the engine's cache and the sweep's
  parent.

What this is not: a writer (the engine's records write runs; ``lib.tracking`` holds the MLflow calls) or a
report (``lib.report`` adds budgets, sources and the collapse flag to :func:`trials`).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lib import tracking
from lib.config import TRIAL_FIELDS, TrialConfig
from lib.store.schema import (
    BOOLEAN_COLUMNS,
    DATA_FINAL,
    FAILED,
    FINISHED,
    INTEGER_COLUMNS,
    KEY,
    KIND,
    KIND_FINAL,
    KIND_OTHER,
    KIND_SWEEP,
    KIND_TRIAL,
    KINDS,
    TAG_KIND,
    TAG_SWEEP_PARENT,
    column,
)

StoredRun = tracking.StoredRun
HISTORY_METRICS = ("train_loss", "val_loss", "val_accuracy")  # what a trial logs per epoch


def experiment_names() -> list[str]:
    """Names of the experiments in the store (``Default`` left out when it is empty)."""
    return tracking.experiment_names()


def stored_runs(exp_id: str) -> list[StoredRun]:
    """Every run of one experiment (every status) as a plain record: params and tags as text."""
    return tracking.find_runs(exp_id)


def deleted_runs(exp_id: str) -> list[StoredRun]:
    """The runs of one experiment in MLflow's trash (soft-deleted, restorable: ``python -m lib runs restore``)."""
    return tracking.deleted_runs(exp_id)


def stored_run(run_id: str) -> StoredRun:
    """One run as a plain record."""
    return tracking.get_run(run_id)


def runs(experiments: str | Iterable[str], status: str | None = None) -> pd.DataFrame:
    """Every run of ``experiments`` (those that exist), typed, with its ``kind``; ``status`` (``finished``)
    keeps one status only. Empty (no columns) when there is none."""
    frame = tracking.runs_frame(experiments, status=status)
    if frame.empty:
        return frame
    return typed(frame).assign(**{KIND: kinds(frame)})


def kinds(frame: pd.DataFrame) -> pd.Series:
    """What each run is (:data:`KINDS`): a run with a trial key is a trial, or a final run when it trained on
    training + validation; a run with a sweep name and no key is a sweep's parent; any other run is what its
    ``kind`` tag says (an analysis run), else ``other``."""
    result = pd.Series(KIND_OTHER, index=frame.index, dtype=object)
    if column(TAG_KIND) in frame:
        tagged = frame[column(TAG_KIND)]
        result[tagged.isin(KINDS)] = tagged[tagged.isin(KINDS)]
    if column(TAG_SWEEP_PARENT) in frame:
        result[frame[column(TAG_SWEEP_PARENT)].notna()] = KIND_SWEEP
    if KEY in frame:
        keyed = frame[KEY].notna()
        result[keyed] = np.where(_flag(frame, DATA_FINAL)[keyed], KIND_FINAL, KIND_TRIAL)
    return result


def _flag(frame: pd.DataFrame, name: str) -> pd.Series:
    """A boolean column with missing values as ``False`` (``False`` everywhere when there is no such column)."""
    if name not in frame:
        return pd.Series(False, index=frame.index)
    return frame[name].map(lambda value: value is True or str(value) in ("True", "true", "1"))


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its integer columns (``seed``, ``epochs``, ...) as ``int`` and its boolean ones as ``bool``,
    wherever a column has no missing value (one with gaps keeps them, as floats or objects)."""
    frame = frame.copy()
    for name in INTEGER_COLUMNS & set(frame.columns):
        values = frame[name]
        numeric = len(values) and values.notna().all() and pd.api.types.is_numeric_dtype(values)
        if numeric and (values.astype(float) % 1 == 0).all():
            frame[name] = values.astype("int64")
    for name in BOOLEAN_COLUMNS & set(frame.columns):
        values = frame[name]
        if len(values) and values.notna().all() and set(values.unique()) <= {True, False}:
            frame[name] = values.astype(bool)
    return frame


def trials(experiments: str | Iterable[str]) -> pd.DataFrame:
    """The trial runs of ``experiments`` (:func:`trials_of` of :func:`runs`)."""
    return trials_of(runs(experiments))


def trials_of(frame: pd.DataFrame) -> pd.DataFrame:
    """The trial runs of a frame of :func:`runs`: finished and failed trials (no final runs, no sweep parents, no
    analysis runs), each trial key once (its latest run: the same config, data and code stored twice counts
    once), ``val_accuracy`` missing for a failed one. Typed as :func:`runs`."""
    if frame.empty or KEY not in frame:
        return frame.iloc[0:0]
    frame = frame[(frame[KIND] == KIND_TRIAL) & frame["status"].isin([FINISHED, FAILED])]
    frame = frame.sort_values("start_time").drop_duplicates(KEY, keep="last").copy()
    frame.loc[frame["status"] != FINISHED, "val_accuracy"] = np.nan
    return typed(frame)


def history(run_id: str, metrics: Sequence[str] = HISTORY_METRICS) -> pd.DataFrame:
    """One run's per-epoch ``metrics``, indexed by epoch."""
    return tracking.metric_history(run_id, tuple(metrics))


def epoch_histories(frame: pd.DataFrame, metrics: Sequence[str] = HISTORY_METRICS) -> pd.DataFrame:
    """Per-epoch ``metrics`` of the finished runs of ``frame``: columns ``epoch``, the metrics, the run's
    configuration (every trial field ``frame`` has, and its ``arm`` when it has one) and ``run_id``. An epoch
    with none of the metrics is left out. A report that draws validation curves asks for
    ``metrics=("val_accuracy",)`` (one read per run instead of three)."""
    parts = []
    extra = [c for c in (*sorted(TRIAL_FIELDS), "arm") if c in frame]
    for _, run in frame[frame["status"] == FINISHED].iterrows():
        part = history(run["run_id"], metrics).reset_index().dropna(subset=list(metrics), how="all")
        if len(part):
            parts.append(part.assign(**{c: run[c] for c in extra}, run_id=run["run_id"]))
    if not parts:
        return pd.DataFrame(columns=["epoch", *metrics, *extra, "run_id"])
    return pd.concat(parts, ignore_index=True)


def _clean(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str) and value.startswith("("):
        return ast.literal_eval(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def run_config(row: pd.Series, without: Sequence[str] = ("seed", "epochs")) -> dict[str, Any]:
    """The flat trial config of one run (a row of :func:`runs`: its logged params), without the fields in
    ``without`` (by default seed and epochs: the configuration a seed and a budget are run *of*)."""
    config = {name: _clean(row[name]) for name in TRIAL_FIELDS if name in row.index and name not in without}
    return {k: v for k, v in config.items() if v is not None or k == "early_stopping_patience"}


def config_identity(config: dict[str, Any]) -> str:
    """Fingerprint of a config regardless of seed and epochs (two candidates are the same model + recipe)."""
    flat = {k: v for k, v in config.items() if k not in ("seed", "epochs")}
    return TrialConfig.from_flat(flat | {"seed": 0, "epochs": 1}).fingerprint()
