"""Random search (hyperopt's ``rand.suggest``): every point drawn at random from the space.

With the same sweep seed it draws exactly TPE's start-up points (``tpe.suggest`` calls ``rand.suggest`` for
them), so the two can be compared at equal trials and budget. The file is not called ``random.py`` so that it
never stands in for the standard library's ``random``.

What this is not: the sweep loop (``lib.engine.search``) or the other algorithms (their own files here).
"""

from __future__ import annotations

from typing import Any

from lib.engine.algorithms.base import SearchAlgorithm


class RandomSearch(SearchAlgorithm):
    name = "random"
    help = "every point at random; the same --seed draws TPE's start-up points"

    def suggest(self, new_ids, domain, trials, seed) -> list[dict[str, Any]]:
        from hyperopt import rand

        return rand.suggest(new_ids, domain, trials, seed)
