"""The runs of a student's experiment as the rubric reads them: one reader, :func:`_runs`, and the run's roles.

A :class:`RunRecord` is one MLflow run as plain data (params and tags as text, latest metrics, start and end in
milliseconds). Every read of the store by :mod:`lib.assignment` goes through :func:`_runs` (one place to point
at another store reader later). The helpers say what a run is: a *declaration* (``kind=declaration``), a
*trial* (it has a ``trial_key``), a *final* run (it read the test set: a ``test_accuracy`` metric or
``data_final``), a *tuning* trial (``phase=tune``).

What this is not: the rubric (``lib.assignment.rubric``) or the writers (``declare``, ``handin``).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from lib import store, tracking
from lib.errors import HypertuneError
from lib.store.schema import KIND_DECLARATION, TAG_KIND, TAG_PHASE, TAG_TRIAL_KEY, hyperparameters


class AssignmentError(HypertuneError):
    """Bad input to declare, hand in or check (an unknown experiment, a file that is not a hand-in, a server that
    does not answer): one line naming what and the fix, exit code 2."""


@dataclass(frozen=True)
class RunRecord:
    """One run: id, name, MLflow status (``FINISHED`` ...), start and end (ms since 1970), params, metrics, tags."""

    run_id: str
    name: str
    status: str
    start: int
    end: int | None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def is_declaration(self) -> bool:
        return self.tags.get(TAG_KIND) == KIND_DECLARATION

    @property
    def is_trial(self) -> bool:
        return TAG_TRIAL_KEY in self.tags and not self.is_declaration

    @property
    def is_final(self) -> bool:
        return self.is_trial and ("test_accuracy" in self.metrics or self.params.get("data_final") == "True")

    @property
    def is_tuning(self) -> bool:
        return self.is_trial and self.tags.get(TAG_PHASE) == "tune"

    def config(self, without: tuple[str, ...] = ("seed",)) -> dict[str, str]:
        """The run's hyperparameters and data params as logged (text), ``without`` some (the seed)."""
        names = [*hyperparameters(), "seed", "data_train_subset", "data_val_subset", "data_dataset"]
        return {n: self.params[n] for n in names if n in self.params and n not in without}


def _runs(experiment: str) -> list[RunRecord]:
    """Every run of ``experiment`` in the current store, oldest first; :class:`AssignmentError` when the store
    has no such experiment (naming the ones it has)."""
    if tracking.find_experiment_id(experiment) is None:
        known = tracking.experiment_names()
        raise AssignmentError(
            f"experiment '{experiment}' is not in {tracking.tracking_uri()}; it has: {', '.join(known) or 'none'}. "
            "Give --experiment the name your notebook printed"
        )
    exp_id = tracking.find_experiment_id(experiment)
    records = [
        RunRecord(run.run_id, run.name, run.status, run.start_time, run.end_time, run.params, run.metrics, run.tags)
        for run in store.stored_runs(exp_id)
    ]
    return sorted(records, key=lambda r: (r.start, r.run_id))


def when(ms: int | None) -> str:
    """A run time as ``2026-12-07 12:00:01 UTC`` (``?`` when unknown)."""
    if not ms:
        return "?"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def span(ms: float) -> str:
    """A duration in words: ``45 s``, ``3 min 2 s``, ``2 h 5 min``."""
    if abs(ms) < 10_000:
        return f"{abs(ms) / 1000:.1f} s"
    seconds = round(abs(ms) / 1000)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
