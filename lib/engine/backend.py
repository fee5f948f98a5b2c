"""What a back-end is: the small interface between the records of a study and where trials train.

A back-end (``lib.engine.local_backend``: processes on this machine; ``lib.engine.ray_tune``: a Ray cluster) only
runs configs and reports results. It pulls :class:`TrialRequest` s from a :class:`Feed` while it has
room, tells the feed when a trial starts, when one of its epochs ends and when it ends (with its
:class:`lib.engine.trial.TrialResult`), and returns when the feed is empty and nothing is in flight. The
feed decides what to train (a grid's uncached trials, or the TPE sweep's next point) and records
everything (``lib.engine.records``); a back-end never touches MLflow or the cache.

What this is not: a back-end itself, or the choice between them (``lib.engine``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from lib.errors import HypertuneError

if TYPE_CHECKING:
    from lib.config import TrialConfig
    from lib.data import DataSpec
    from lib.engine.trial import TrialResult


STOPPED_EARLY = "stopped_early"  # the failure_kind of a trial a scheduler stopped early (its run ends KILLED)


class StudyError(HypertuneError, ValueError):
    """A study definition that cannot run (raised before any training)."""


@dataclass(frozen=True)
class TrialRequest:
    """One trial to train: its cache key and its canonical config."""

    key: str
    config: TrialConfig


class Feed(Protocol):
    """Where a back-end gets its trials and reports them (called from the back-end's driver thread)."""

    size: int  # at most this many requests will be handed out (for sizing a pool)

    def next(self) -> TrialRequest | None:
        """The next trial to start, or ``None`` when there are no more."""

    def started(self, request: TrialRequest) -> None:
        """The trial is about to train (its run opens)."""

    def epoch(self, request: TrialRequest, row: dict[str, float]) -> None:
        """One epoch of the trial ended (``row`` as :meth:`lib.train.EpochStats.as_dict`)."""

    def finished(self, request: TrialRequest, result: TrialResult) -> None:
        """The trial ended: trained, failed, lost with its worker, or stopped early."""

    def abort(self, reason: str) -> None:
        """End the runs of trials that started and did not finish KILLED (called by ``lib.engine``)."""


@dataclass(frozen=True)
class RunOptions:
    """How a back-end runs a feed's trials: on which data, how many at once, with how many threads each,
    and (Ray only) ASHA early stopping after at most ``early_stopping`` epochs."""

    data: DataSpec
    workers: int | str = "auto"
    threads_per_trial: int | None = None
    early_stopping: int | None = None

    def __post_init__(self) -> None:
        check_count("workers", self.workers)
        check_count("threads_per_trial", self.threads_per_trial, allow_auto=False)


class Backend(Protocol):
    """Runs a feed's trials until the feed is empty and nothing is in flight."""

    def run(self, feed: Feed, options: RunOptions) -> None: ...


def check_count(name: str, value: int | str | None, allow_auto: bool = True) -> None:
    """``value`` is 'auto' (where allowed), None or an integer >= 1, else a :class:`StudyError`."""
    if value is None or (allow_auto and value == "auto"):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        allowed = "'auto' or an integer >= 1" if allow_auto else "an integer >= 1"
        raise StudyError(f"{name}={value!r}: must be {allowed}")
