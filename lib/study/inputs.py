"""The study's inputs: the trial runs each notebook reads, and the budget line of a set of runs.

:func:`trial_runs` is :func:`lib.report.trial_runs` (the store's trials, typed) narrowed to the current
training code, one hypothesis tag and one profile; a missing input raises :class:`MissingRunsError`
naming the notebook to run. :func:`budget_text` is :func:`lib.report.budget_label`'s wording (the one
budget wording) for a verdict row's ``budget`` column.

What this is not: a second reader of the store (everything comes through ``lib.report``, which reads
through ``lib.store``), or a place for decisions (``verdicts``, ``hypotheses``).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from lib import report
from lib.data import DataSpec
from lib.engine.trial import code_version
from lib.errors import HypertuneError
from lib.store.schema import FINISHED, KEY, TAG_CODE_VERSION, TAG_HYPOTHESES, TAG_HYPOTHESIS, TAG_PROFILE, column
from lib.study import registry


class MissingRunsError(HypertuneError, RuntimeError):
    """The runs an analysis needs are not in the store yet; the message says what to run."""


# The controlled grids the H1, H2, H3 and sensitivity rows are decided (or described) from:
# (input name, notebook experiment, hypothesis tag), declared in lib.study.registry.INPUTS.
GRID_INPUTS = registry.GRID_INPUTS


def trial_runs(experiment: str, hypothesis: str | None = None, profile: str | None = None) -> pd.DataFrame:
    """Finished and failed trial runs of ``experiment`` of the current code (optionally one hypothesis/profile).

    The runs are :func:`lib.report.trial_runs`' (its columns ``source``, ``train_images`` and ``budget``
    included); a run counts for ``hypothesis`` when it was trained for it or is a cached run reused by
    it (tag ``hypotheses``).
    """
    try:
        frame = report.trial_runs(experiment)
    except report.ReportError:
        raise MissingRunsError(
            f"no trial runs in MLflow experiment '{experiment}' yet: run the notebook "
            f"that produces it first (`make run` runs them all in order)."
        ) from None
    # trials of the current training code only: a store may also hold runs of older code versions
    frame = frame[frame[column(TAG_CODE_VERSION)] == code_version()]
    if hypothesis is not None:
        listed = frame.get(column(TAG_HYPOTHESES), pd.Series("", index=frame.index))
        reused = listed.fillna("").str.split(",").apply(lambda names: hypothesis in names)
        frame = frame[(frame[column(TAG_HYPOTHESIS)] == hypothesis) | reused]
    if profile is not None:
        frame = frame[frame[column(TAG_PROFILE)] == profile]
    if frame.empty:
        raise MissingRunsError(
            f"no trial runs for hypothesis={hypothesis!r}, profile={profile!r} in '{experiment}': "
            f"run that notebook with this profile first (`make run` runs them all in order)."
        )
    return frame.reset_index(drop=True)


def trial_runs_or_empty(experiment: str, hypothesis: str | None = None, profile: str | None = None) -> pd.DataFrame:
    """:func:`trial_runs`, or an empty frame when there are none (for inputs that may all be cache hits)."""
    try:
        return trial_runs(experiment, hypothesis, profile)
    except MissingRunsError:
        return pd.DataFrame(columns=[KEY, "status", "epochs", "dropout_p", "lr", "norm_type"])


def grid_inputs(named: Callable[[str], str], profile: str) -> dict[str, pd.DataFrame]:
    """The trial runs of 02, 02b and 03 in ``profile``, keyed as in :data:`GRID_INPUTS`.

    ``named`` maps a notebook's base name to its experiment (``profiles.experiment_name`` for one
    data set and user). Raises :class:`MissingRunsError` naming the notebook to run when one is
    missing. The fixed-nuisance inputs may be empty (a profile may skip them), and so may the plateau
    checks' longer runs (:data:`lib.study.registry.LONGER_INPUTS`, read after the grids: a check not run
    leaves its claims' rows *not decided: budget*).
    """
    optional = registry.OPTIONAL_INPUTS
    grids = {
        name: (trial_runs_or_empty if name in optional else trial_runs)(named(base), hypothesis, profile)
        for name, base, hypothesis in GRID_INPUTS
    }
    return grids | {
        grid.name: trial_runs_or_empty(named(grid.notebook), grid.tag, profile) for grid in registry.LONGER_INPUTS
    }


def finished(frame: pd.DataFrame) -> pd.DataFrame:
    """The finished trials of a grid's results frame or of MLflow runs (both say ``finished``)."""
    return frame[frame["status"] == FINISHED]


def train_images(data: DataSpec) -> int:
    """Training images per epoch of trials on ``data`` (a final run trains on training + validation)."""
    splits = data.load()
    return len(splits.train) + (len(splits.val) if data.final else 0)


def budget_text(frame: pd.DataFrame, data: DataSpec | None = None, epochs: object = None) -> str:
    """What one trial of ``frame`` cost, in :func:`lib.report.budget_label`'s words (without its prefix).

    From ``data`` and the epochs (``epochs``, else the frame's ``epochs`` column) when ``data`` is given,
    else from the runs' ``data_*`` params; ``""`` when neither says (a bare results frame).
    """
    if epochs is None and "epochs" in frame:
        epochs = sorted({int(e) for e in frame["epochs"].dropna()})
    if data is not None and epochs is not None and (not isinstance(epochs, list) or epochs):
        text = join_budgets(
            [report.budget_of(data, int(e)) for e in (epochs if isinstance(epochs, list) else [epochs])]
        )
    elif ("data_train_subset" in frame or "train_images" in frame) and "epochs" in frame and len(frame):
        text = report.budget_label(frame)
    else:
        return ""
    return text.removeprefix("budget per trial: ")


def join_budgets(labels: list[str]) -> str:
    """Several one-budget lines of ``report.budget_label`` as one: ``A × 10 epochs; A × 2 epochs | validated ...``
    (the same validation set; no trial counts, which a synthetic row per budget would invent)."""
    parts = [label.removeprefix("budget per trial: ").split(" | ", 1) for label in labels]
    head = "; ".join(dict.fromkeys(p[0] for p in parts))
    tails = list(dict.fromkeys(p[1] for p in parts if len(p) > 1))
    return head + (" | " + " / ".join(tails) if tails else "")
