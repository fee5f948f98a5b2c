"""The one trial table: every trial run of some experiments as a DataFrame, read one way, in one vocabulary.

:func:`trial_runs` reads finished and failed trial runs from the store (one row per trial, its key in
``tag.trial_key``, ``status`` in the frames' words ``finished``/``failed``, the ``collapsed`` flag, the
budget); the tag names are constants here, shared by the records, the tuning code and the report; the
tuning rule that picks an arm's winner (:func:`pick_winner`) lives here so the report reuses it instead of
re-deriving it. Also: budgets (training images x epochs) and their labels, controlled comparisons, the
selection helpers. What this is not: figures (``lib.report_figures``), checks (``lib.report_checks``),
markdown (``lib.report``) or the engine's own records of a run (``lib.engine.records``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from lib import datasets, stats, tracking
from lib.config import TrialConfig
from lib.data import DEFAULT_VAL_SIZE, DataSpec

DATA_COLUMNS = ("data_train_subset", "data_val_subset", "data_val_size", "data_split_seed")
LOG_SCALE = {"lr", "weight_decay"}  # hyperparameters read and drawn on a log scale

# The tags every trial run carries (lib.engine.records writes them, lib.engine.tuning adds the role tags, the
# report reads them back): one name each, here. A column of a trial frame is ``tag.<name>``.
TAG_TRIAL_KEY = "trial_key"  # the cache key: config + data + code version
TAG_SWEEP = "sweep"  # the sweep a trial belongs to (absent: a grid trial)
TAG_PHASE = "phase"  # tune / remeasure, in a tuned study
TAG_ROLE = {"scientific": "role_scientific", "nuisance": "role_nuisance", "fixed": "role_fixed"}
TAG_CHECKPOINT_RULE = "checkpoint_rule"
TAG_FIXED_NUISANCE = "fixed_nuisance"
TAG_TUNING_ID = "tuning_id"
# What a run is, on every run the package writes: a trial (one training), a sweep's parent run, a notebook's
# analysis run (lib.tracking writes its own "kind": "analysis"), a final run (trained on train + validation,
# scored on the test set). A script filters on it: ``tags.kind = 'trial'`` (docs/store.md).
TAG_KIND = "kind"
KIND_TRIAL, KIND_SWEEP, KIND_ANALYSIS, KIND_FINAL = "trial", "sweep", "analysis", "final"


def column(tag: str) -> str:
    """The trial frame's column of a tag: ``tag.<name>``."""
    return f"tag.{tag}"


KEY, PHASE, SWEEP = column(TAG_TRIAL_KEY), column(TAG_PHASE), column(TAG_SWEEP)  # the frame's columns


def pick_winner(table: pd.DataFrame, nuisance: Sequence[str], score: str = "score") -> dict[str, Any] | None:
    """The tuning rule, one place for the tuning code and the report: among the nuisance combinations whose
    every tuning seed finished (``score`` not NaN: the mean over those seeds), the one with the highest mean.
    ``None`` when none is complete."""
    if not len(table) or table[score].notna().sum() == 0:
        return None
    row = table.loc[table[score].idxmax()]
    return {name: (row[name].item() if hasattr(row[name], "item") else row[name]) for name in nuisance}

class ReportError(RuntimeError):
    """The experiments asked for cannot be reported on; the message says why and what exists."""

def hyperparameters() -> list[str]:
    """Every hyperparameter of a trial (the params a trial run logs), seed excluded."""
    return [name for name in TrialConfig().flat() if name != "seed"]

def experiment_names() -> list[str]:
    """Names of the experiments in the store (``Default`` left out when it is empty)."""
    return tracking.experiment_names()

def runs_train_images(frame: pd.DataFrame) -> pd.Series:
    """Training images per trial: the subset, capped at (or else) the training part of its data set."""
    return pd.Series([_part_sizes(row)[0] for _, row in frame.iterrows()], index=frame.index, dtype=int)

def _val_labels(frame: pd.DataFrame) -> list[str]:
    """The validation sets of these trials, largest first: ``all 5,000`` for a whole validation part."""
    labels = {}
    for _, row in frame.iterrows():
        images, whole = _part_sizes(row)[1], _part_sizes(row.drop("data_val_subset", errors="ignore"))[1]
        labels[images] = f"all {images:,}" if images == whole else f"{images:,}"
    return [labels[n] for n in sorted(labels, reverse=True)]

def _part_sizes(row: pd.Series) -> tuple[int, int]:
    """(training, validation) images of one trial run, from its ``data_*`` params: a subset larger than
    its part means all of it, as in :mod:`lib.data`; a final run trains on training + validation."""

    def value(name: str) -> Any:
        item = row.get(name)
        return None if item is None or (isinstance(item, float) and math.isnan(item)) or item == "None" else item

    final = str(value("data_final")) in ("True", "true", "1")
    dataset = str(value("data_dataset") or "fashion_mnist")
    val_size = value("data_val_size")
    train, val = _split_sizes(dataset, None if val_size is None else int(val_size), value("data_split_seed"))
    if final:
        train += val
    subsets = [value("data_train_subset"), value("data_val_subset")]
    return tuple(int(min(float(s), n)) if s is not None else n for s, n in zip(subsets, (train, val), strict=True))

@lru_cache(maxsize=32)
def _split_sizes(dataset: str, val_size: int | None, split_seed: Any) -> tuple[int, int]:
    """Sizes of a data set's training and validation parts (from :mod:`lib.datasets` without loading the
    images when it knows the size of the official training part)."""
    whole = datasets.train_part_images(dataset)
    if whole is not None and val_size in (None, DEFAULT_VAL_SIZE):
        return whole - DEFAULT_VAL_SIZE, DEFAULT_VAL_SIZE
    extra = {"split_seed": int(float(split_seed))} if split_seed is not None else {}
    splits = DataSpec(dataset=dataset, val_size=val_size, **extra).load()
    return len(splits.train), len(splits.val)

def trial_runs(experiments: str | Sequence[str]) -> pd.DataFrame:
    """Finished and failed trial runs of ``experiments`` with ``source``, ``train_images``, ``budget``.

    Raises :class:`ReportError` for an unknown experiment (listing the ones that exist) and for
    experiments without a finished trial. Sweep parents, analysis runs and final (test-set) runs
    are left out: a report compares validation accuracy. A trial stored twice (the same config,
    data and code in two experiments) counts once.
    """
    names = [experiments] if isinstance(experiments, str) else list(experiments)
    if not names:
        raise ReportError("no experiment given; the store has: " + (", ".join(experiment_names()) or "none"))
    known = experiment_names()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ReportError(
            f"unknown experiment {', '.join(map(repr, unknown))} in {tracking.tracking_uri()}; "
            f"the store has: {', '.join(known) or 'no experiments'}"
        )
    frame = tracking.runs_frame(names, status=None)
    empty = []
    for name in names:
        rows = frame[frame["experiment"] == name] if len(frame) else frame
        trials = rows[rows[KEY].notna()] if KEY in rows else rows.iloc[0:0]
        if not (trials["status"] == tracking.ROW_FINISHED).any() if len(trials) else True:
            statuses = ", ".join(f"{k}: {v}" for k, v in rows["status"].value_counts().items()) if len(rows) else ""
            empty.append(
                f"'{name}' ({len(trials)} trial runs{'; all runs by status: ' + statuses if statuses else ''})"
            )
    if empty:
        raise ReportError(
            "no finished trial runs in " + ", ".join(empty) + ": run a grid or sweep into it first "
            "(python -m lib grid/sweep --experiment NAME ...) or wait for the running trials to end"
        )
    frame = frame[frame[KEY].notna() & frame["status"].isin([tracking.ROW_FINISHED, tracking.ROW_FAILED])]
    if "data_final" in frame:
        frame = frame[~frame["data_final"].fillna(False).astype(bool)]
    frame = frame.sort_values("start_time").drop_duplicates(KEY, keep="last").copy()
    frame.loc[frame["status"] != tracking.ROW_FINISHED, "val_accuracy"] = np.nan
    sweep = frame[SWEEP] if SWEEP in frame else pd.Series(np.nan, frame.index)
    frame["source"] = np.where(sweep.notna(), "sweep", "grid")
    frame["train_images"] = runs_train_images(frame)
    frame["budget"] = frame["train_images"] * frame["epochs"].astype(int)
    frame["collapsed"] = _collapsed(frame)
    return frame.reset_index(drop=True)

def _collapsed(frame: pd.DataFrame) -> pd.Series:
    """Finished trials at or near chance accuracy (:func:`lib.stats.collapsed`, per data set's classes)."""
    names = frame["data_dataset"].fillna(datasets.DEFAULT) if "data_dataset" in frame else None
    classes = names.map(n_classes) if names is not None else pd.Series(10, index=frame.index)
    finished = frame["status"] == tracking.ROW_FINISHED
    return finished & stats.collapsed(frame["val_accuracy"], classes.astype(int))

@lru_cache(maxsize=32)
def n_classes(dataset: str) -> int:
    """Classes of a data set (10 for the built-in ones; an image folder's are counted)."""
    if dataset in datasets.TRAIN_PART_IMAGES or dataset == "digits":
        return 10
    return int(DataSpec(dataset=dataset).load().n_classes)

def usable(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished trials that did not collapse: what means, figures and rankings are computed from."""
    done = runs["status"] == tracking.ROW_FINISHED
    flag = runs["collapsed"].fillna(False).astype(bool) if "collapsed" in runs else False
    return runs[done & ~flag]

def varied(frame: pd.DataFrame) -> list[str]:
    """Hyperparameters (and the training subset) that take more than one value among finished trials."""
    done = frame[frame["status"] == tracking.ROW_FINISHED]
    names = [*hyperparameters(), "data_train_subset"]
    return [n for n in names if n in done and done[n].astype(str).nunique() > 1]

def _plural(n: float, word: str) -> str:
    return f"{n:g} {word}" if n == 1 else f"{n:g} {word}s"

def budget_label(frame: pd.DataFrame) -> str:
    """One line saying what a point cost: training images x epochs, and the validation images.

    ``frame``: trial runs as from :func:`trial_runs` (or any frame with ``epochs`` and the
    ``data_*`` params). Several budgets are listed with their number of trials.
    """
    frame = frame.copy()
    if "train_images" not in frame:
        if "data_train_subset" not in frame:
            raise ValueError(
                "budget_label needs the data_* params of the runs (tracking.runs_frame or report.trial_runs); "
                "for a grid's results frame use report.budget_of(data, epochs)"
            )
        frame["train_images"] = runs_train_images(frame)
    frame["epochs"] = frame["epochs"].astype(int)
    combos = frame.groupby(["train_images", "epochs"]).size().sort_index(ascending=False)
    parts = [
        f"{images:,} training images × {_plural(epochs, 'epoch')}"
        + (f" ({_plural(n, 'trial')})" if len(combos) > 1 else "")
        for (images, epochs), n in combos.items()
    ]
    val_sizes = _val_labels(frame)
    final = frame["data_final"].fillna(False).astype(bool) if "data_final" in frame else pd.Series(False, frame.index)
    if final.all():
        fashion = "data_dataset" not in frame or set(frame["data_dataset"].fillna("fashion_mnist")) == {"fashion_mnist"}
        test_set = "the 10,000 test images" if fashion else "the held-out test set"
        return "budget per trial: " + "; ".join(parts) + f" | scored once on {test_set}"
    return "budget per trial: " + "; ".join(parts) + f" | validated on {' / '.join(val_sizes)} images"

def budget_of(data: DataSpec, epochs: int | Iterable[int]) -> str:
    """The budget line for trials on ``data`` (a :class:`lib.engine.trial.DataSpec`) for ``epochs``, e.g. in a
    notebook: ``plots.accuracy_vs(..., budget=report.budget_of(data, knobs["epochs"]))``."""
    splits = data.load()  # the images a trial really gets: any data set, a subset larger than its part means all
    params = data.params() | {"data_train_subset": len(splits.train) + (len(splits.val) if data.final else 0)}
    if not data.final and (data.val_subset is not None or data.dataset != "fashion_mnist"):
        params["data_val_subset"] = len(splits.val)
    rows = [{**params, "epochs": e} for e in ([epochs] if isinstance(epochs, int) else epochs)]
    return budget_label(pd.DataFrame(rows))

def _same_budget(frame: pd.DataFrame, factor: str) -> tuple[pd.DataFrame, int]:
    """The trials of one budget (unless the budget is what varies): the budget at which ``factor``
    takes the most values, then the one with the most trials; and how many trials were left out."""
    if not len(frame) or factor in ("epochs", "data_train_subset") or frame["budget"].nunique() <= 1:
        return frame, 0
    groups = frame.groupby("budget")
    score = pd.DataFrame({"levels": groups[factor].nunique(), "trials": groups.size()})
    chosen = score.sort_values(["levels", "trials"], ascending=False).index[0]
    kept = frame[frame["budget"] == chosen]
    return kept, len(frame) - len(kept)

def controlled(grid: pd.DataFrame, factor: str) -> pd.DataFrame:
    """The grid trials that compare ``factor`` with everything else held fixed.

    Trials are grouped by the other varied hyperparameters; a group counts when ``factor`` takes
    several values in it, and only groups with the most common set of values are kept. Two
    separate grids in one experiment (dropout at 12 epochs, learning rate at 3) thus never make a
    comparison that no grid ran.
    """
    if not len(grid):
        return grid
    others = [v for v in varied(grid) if v != factor]
    if not others:
        return grid if grid[factor].astype(str).nunique() > 1 else grid.iloc[0:0]
    cell = grid[others].map(str).agg("|".join, axis=1)  # map(str): astype(str) keeps NaN in pandas 3
    levels = grid.groupby(cell)[factor].agg(lambda s: frozenset(s.astype(str)))
    levels = levels[levels.map(len) >= 2]
    if levels.empty:
        return grid.iloc[0:0]
    common = levels.value_counts().index[0]
    return grid[cell.isin(levels[levels == common].index)]

def epoch_histories(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch validation accuracy of the finished trials: columns run_id, epoch, val_accuracy."""
    frames = []
    for run_id in runs.loc[runs["status"] == tracking.ROW_FINISHED, "run_id"]:
        history = tracking.metric_history(run_id, ("val_accuracy",)).reset_index()
        if len(history):
            frames.append(history.assign(run_id=run_id))
    if not frames:
        return pd.DataFrame(columns=["run_id", "epoch", "val_accuracy"])
    return pd.concat(frames, ignore_index=True).dropna(subset=["val_accuracy"])

def with_best_epoch(runs: pd.DataFrame, histories: pd.DataFrame | None = None) -> pd.DataFrame:
    """``runs`` with ``best_epoch`` and ``best_val_accuracy`` (the epoch of the highest validation
    accuracy and that accuracy): the logged metrics where a run has them, else read from its curve."""
    frame = runs.copy()
    for column in ("best_epoch", "best_val_accuracy"):
        if column not in frame:
            frame[column] = np.nan
    missing = frame["best_val_accuracy"].isna() & (frame["status"] == tracking.ROW_FINISHED)
    if missing.any():
        curves = epoch_histories(frame[missing]) if histories is None else histories
        if len(curves):
            best = curves.loc[curves.groupby("run_id")["val_accuracy"].idxmax()].set_index("run_id")
            ids = frame.loc[missing, "run_id"]
            frame.loc[missing, "best_epoch"] = ids.map(best["epoch"]).to_numpy(dtype=float)
            frame.loc[missing, "best_val_accuracy"] = ids.map(best["val_accuracy"]).to_numpy(dtype=float)
    return frame

def _latest_study(done: pd.DataFrame) -> pd.DataFrame:
    """The runs of the most recent tuned study (``tuning_id``) under its latest training code: an
    earlier design, or the same one under older code, is a different study."""
    if "tag.tuning_id" not in done or done["tag.tuning_id"].isna().all():
        return done
    tagged = done[done["tag.tuning_id"].notna()].sort_values("start_time")
    part = tagged[tagged["tag.tuning_id"] == tagged["tag.tuning_id"].iloc[-1]]
    if "tag.code_version" in part and part["tag.code_version"].notna().any():
        part = part[part["tag.code_version"] == part["tag.code_version"].dropna().iloc[-1]]
    return part

def _number(value: Any) -> Any:
    with contextlib.suppress(TypeError, ValueError):
        return float(value)
    return value

def _select(frame: pd.DataFrame, wanted: dict[str, Any]) -> pd.DataFrame:
    """The rows of ``frame`` with the ``wanted`` values (numbers compared with a tolerance)."""
    mask = pd.Series(True, index=frame.index)
    for name, value in wanted.items():
        number = _number(value)
        if isinstance(number, float) and pd.api.types.is_numeric_dtype(frame[name]):
            mask &= np.isclose(frame[name].astype(float), number)
        else:
            mask &= frame[name].astype(str) == str(value)
    return frame[mask]

def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
