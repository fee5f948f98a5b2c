"""What a search algorithm is: :class:`SearchAlgorithm`, the one interface a sweep asks for its next points.

A search algorithm only *proposes* points. It gets the sweep it works for (:class:`SearchSetup`: the plain-data
space, the dimensions it really searches, the number of trials, the sweep's seed) and answers hyperopt's
``suggest`` call: given the new trial ids, hyperopt's ``Domain``, the ``Trials`` so far and one integer seed
for this step, the documents of the new trials. The sweep driver (``lib.engine.search``) draws that seed from
the sweep seed and the step alone, so a resumed sweep asks the same questions and gets the same points.

To add one, write a subclass in a file of its own in ``lib/engine/algorithms/``; the package finds it
(``lib.engine.algorithms``), and ``--algo``, its help and ``run_sweep(algo=...)`` list it from there.

What this is not: the registry (``lib.engine.algorithms``), the space format or the sweep loop
(``lib.engine.search``), or where trials train (the back-ends).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from lib.engine.backend import StudyError

if TYPE_CHECKING:
    from hyperopt import Domain, Trials


@dataclass(frozen=True)
class SearchSetup:
    """What an algorithm knows of the sweep it proposes points for."""

    spec: Mapping[str, Any]  # the plain-data space, in ``lib.engine.search``'s format
    searched: tuple[str, ...]  # its dimensions that really vary (a choice of two or more, a range low < high)
    max_evals: int  # the sweep's trials in total
    seed: int  # the sweep's seed
    n_startup: int | None = None  # TPE's random start-up points as given (None: the algorithm's default)


class SearchAlgorithm(ABC):
    """One way to propose a sweep's points; one subclass per file of ``lib/engine/algorithms/``.

    ``name`` is what ``--algo`` and ``run_sweep(algo=...)`` call it; ``help`` is its one line in ``--help`` and
    the docs. A subclass checks what it cannot search in :meth:`check` (before anything is written) and
    proposes points in :meth:`suggest`.
    """

    name: ClassVar[str]
    help: ClassVar[str]
    uses_startup: ClassVar[bool] = False  # whether ``n_startup`` (``--startup``) means anything to it

    def __init__(self, setup: SearchSetup) -> None:
        self.check(setup)
        self.setup = setup

    @classmethod
    def check(cls, setup: SearchSetup) -> None:
        """A one-line :class:`StudyError` for a sweep this algorithm cannot run; by default only TPE's option."""
        if setup.n_startup is not None and not cls.uses_startup:
            raise StudyError(
                f"n_startup={setup.n_startup!r}: random start-up points are TPE's option; algo={cls.name!r} has "
                "no start-up phase (drop n_startup)"
            )

    def settings(self) -> dict[str, Any]:
        """What the sweep's parent run records about this algorithm beyond its name (none by default)."""
        return {}

    @abstractmethod
    def suggest(self, new_ids: list[int], domain: Domain, trials: Trials, seed: int) -> list[dict[str, Any]]:
        """hyperopt's ``suggest``: the documents of the trials ``new_ids`` (``trials.new_trial_docs``), drawn
        with ``seed`` (this step's seed: the same sweep seed and step give the same seed). The sweep's step of
        the first new id is ``len(trials.trials)``; an algorithm that picks its own points returns
        :meth:`documents`."""

    @staticmethod
    def documents(new_ids: list[int], domain: Domain, trials: Trials, points: list[dict[str, Any]]) -> list[dict]:
        """hyperopt's trial documents for ``points``, one per new id. A point maps each searched dimension to its
        hyperopt value: a choice's index (0, 1, ...), a range's number (a ``loguniform`` one as the value itself,
        not its log)."""
        docs = []
        for new_id, point in zip(new_ids, points, strict=True):
            misc = {
                "tid": new_id,
                "cmd": domain.cmd,
                "workdir": domain.workdir,
                "idxs": {name: [new_id] for name in point},
                "vals": {name: [value] for name, value in point.items()},
            }
            docs.extend(trials.new_trial_docs([new_id], [None], [domain.new_result()], [misc]))
        return docs
