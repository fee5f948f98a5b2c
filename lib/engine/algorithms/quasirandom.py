"""Quasi-random search: the points of a scrambled Halton sequence (``scipy.stats.qmc``), the playbook's choice
for exploring.

Point ``i`` of a sweep is the sequence's ``i``-th point, scrambled by the sweep seed alone, and mapped through
the space: a log range on a log scale, a choice by index (each value an equal share), a ``quniform`` range
rounded to its step. So a resumed sweep redraws the same points, and two seeds draw different ones. Google's
Deep Learning Tuning Playbook (https://github.com/google-research/tuning_playbook) recommends it for
exploration, before a Bayesian search such as TPE. It maps only the range kinds of :data:`RANGE_KINDS`.

What this is not: the sweep loop (``lib.engine.search``) or the other algorithms (their own files here).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lib.engine.algorithms.base import SearchAlgorithm, SearchSetup
from lib.engine.backend import StudyError

RANGE_KINDS = ("uniform", "loguniform", "quniform")  # the range kinds this algorithm can map


def _unmapped(name: str, kind: str) -> StudyError:
    return StudyError(f"search space '{name}': --algo quasirandom cannot map a '{kind}' range; use {list(RANGE_KINDS)}")


def quasi_value(name: str, value: Any, u: float) -> Any:
    """The hyperopt value (a choice's index, a range's number) at ``u`` in [0, 1) of one dimension."""
    if isinstance(value, list | tuple):
        return min(int(u * len(value)), len(value) - 1)  # a choice by index, each an equal share
    ((kind, bounds),) = value.items()
    low, high = float(bounds[0]), float(bounds[1])
    if kind == "uniform":
        return low + u * (high - low)
    if kind == "loguniform":
        return float(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))
    if kind == "quniform":
        step = float(bounds[2]) if len(bounds) > 2 else 1.0
        return float(min(max(round((low + u * (high - low)) / step) * step, low), high))
    raise _unmapped(name, kind)


class QuasiRandom(SearchAlgorithm):
    name = "quasirandom"
    help = "scrambled Halton points that cover the space evenly, the playbook's choice for exploring"

    @classmethod
    def check(cls, setup: SearchSetup) -> None:
        """The base's check, and every searched dimension a choice or a range kind of :data:`RANGE_KINDS`."""
        super().check(setup)
        for name in setup.searched:
            value = setup.spec[name]
            if isinstance(value, dict):
                ((kind, _),) = value.items()
                if kind not in RANGE_KINDS:
                    raise _unmapped(name, kind)

    def suggest(self, new_ids, domain, trials, seed) -> list[dict[str, Any]]:
        """Point ``len(trials)`` of the sequence for each new id (``seed``, the step's own seed, is not used:
        the scrambling is fixed by the sweep seed, the position by the step)."""
        from scipy.stats import qmc

        names, spec = self.setup.searched, self.setup.spec
        points = []
        for offset in range(len(new_ids)):
            step = len(trials.trials) + offset  # the sweep's step: done and in-flight points before this one
            scramble = np.random.default_rng([self.setup.seed, 1])
            sampler = qmc.Halton(d=max(len(names), 1), scramble=True, seed=scramble)
            sampler.fast_forward(step)
            row = sampler.random(1)[0]
            points.append({name: quasi_value(name, spec[name], float(u)) for name, u in zip(names, row, strict=False)})
        return self.documents(new_ids, domain, trials, points)
