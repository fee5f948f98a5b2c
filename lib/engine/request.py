"""What every study driver is asked: :class:`StudyRequest`, the experiment, base config, data, tags and engine.

A grid (``lib.engine.grid``), a tuned grid (``lib.engine.tuning``), a halving study (``lib.engine.halving``) and a
sweep (``lib.engine.search``) all run trials *somewhere* (an MLflow experiment), over a base config, on some
data, with tags on every run, on a back-end with so many workers. That part is one frozen object, checked once
when it is made; each driver's ``run_study(request, ...)`` takes it, followed by what is its own (the factors
and seeds of a grid, the roles of a tuned grid, the design of a halving study, the space of a sweep)::

    request = StudyRequest("first", base={"epochs": 1}, data=DataSpec(dataset="digits"), workers=2)
    frame = grid.run_study(request, {"dropout_p": [0.0, 0.5]}, seeds=[0, 1, 2])

The keyword forms the notebooks call (``run_grid``, ``run_tuned_grid``, ``run_halving``, ``run_sweep``) build a
request with :meth:`StudyRequest.of` and call the same drivers.

What this is not: a driver, a back-end (``lib.engine.backend``) or the records; it runs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lib.config import TrialConfig
from lib.data import DataSpec
from lib.engine.backend import StudyError, check_count

ENGINES = ("local", "ray")
OPTIONS = ("workers", "threads_per_trial", "progress", "engine")  # the keywords of lib.engine.grid.run_trials


def check_engine(engine: str) -> None:
    """``engine`` names a back-end: ``local`` (``lib.engine.local_backend``) or ``ray`` (``lib.engine.ray_tune``)."""
    if engine not in ENGINES:
        raise StudyError(f"engine={engine!r}: must be one of {list(ENGINES)}")


@dataclass(frozen=True)
class StudyRequest:
    """Where and how a study runs its trials (module docstring); every field checked when it is made.

    ``base``: the config every trial starts from, as given (a :class:`TrialConfig`, a dict of the values set
    on the command line or in a notebook, or ``None`` for the defaults); :attr:`config` is it as a config and
    :attr:`fixed` the values given by name. ``tags`` go on every run. ``engine``, ``workers``,
    ``threads_per_trial`` and ``progress`` are those of :func:`lib.engine.grid.run_trials`.
    """

    experiment: str
    base: TrialConfig | Mapping[str, Any] | None = None
    data: DataSpec = DataSpec()
    tags: Mapping[str, str] = field(default_factory=dict)
    engine: str = "local"
    workers: int | str = "auto"
    threads_per_trial: int | None = None
    progress: bool = True
    config: TrialConfig = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.experiment, str) or not self.experiment.strip():
            raise StudyError(f"experiment={self.experiment!r}: give an MLflow experiment name")
        check_engine(self.engine)
        check_count("workers", self.workers)
        check_count("threads_per_trial", self.threads_per_trial, allow_auto=False)
        base = self.base
        config = base if isinstance(base, TrialConfig) else TrialConfig.from_flat(dict(base or {}))
        object.__setattr__(self, "config", config)
        object.__setattr__(self, "tags", dict(self.tags or {}))

    @classmethod
    def of(
        cls,
        experiment: str,
        base: TrialConfig | Mapping[str, Any] | None = None,
        data: DataSpec = DataSpec(),
        tags: Mapping[str, str] | None = None,
        **options: Any,
    ) -> StudyRequest:
        """The request of a keyword call (``run_grid(base, ..., experiment, data, tags, workers=2)``); an option
        that is not one of :data:`OPTIONS` is a one-line :class:`StudyError`."""
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise StudyError(f"unknown option {unknown[0]!r}: the options are {', '.join(OPTIONS)}")
        return cls(experiment, base, data, dict(tags or {}), **options)

    @property
    def fixed(self) -> dict[str, Any]:
        """The base's values given by name (a dict base's own), which a study reports as held fixed."""
        return dict(self.base) if isinstance(self.base, Mapping) else {}

    @property
    def options(self) -> dict[str, Any]:
        """The keywords of :func:`lib.engine.grid.run_trials` besides the configs, experiment, data and tags."""
        return {name: getattr(self, name) for name in OPTIONS}

    def tagged(self, tags: Mapping[str, str]) -> StudyRequest:
        """The same request with ``tags`` added to (or replacing) its own."""
        return replace(self, tags={**self.tags, **tags})
