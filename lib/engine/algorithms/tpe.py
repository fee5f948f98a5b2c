"""TPE, the Tree-structured Parzen Estimator (hyperopt's ``tpe.suggest``): the default search algorithm.

The first ``n_startup`` points are random (hyperopt's ``rand.suggest``, which is why random search with the
same seed draws them too); after that TPE models the results so far and proposes where a good score is
likelier. The start-up count defaults to a third of the trials, 3 to 10: hyperopt's own default of 20 would
make a short sweep pure random search.

What this is not: the sweep loop (``lib.engine.search``) or the other algorithms (their own files here).
"""

from __future__ import annotations

from typing import Any

from lib.engine.algorithms.base import SearchAlgorithm, SearchSetup
from lib.engine.backend import StudyError


def default_startup(max_evals: int) -> int:
    """TPE's random start-up points when none are given: a third of the trials, at least 3 and at most 10."""
    return max(3, min(10, max_evals // 3))


class TPE(SearchAlgorithm):
    name = "tpe"
    help = "the default: random start-up points, then TPE models the results (--startup sets how many)"
    uses_startup = True

    @classmethod
    def check(cls, setup: SearchSetup) -> None:
        startup = setup.n_startup
        if startup is not None and (not isinstance(startup, int) or isinstance(startup, bool) or startup < 1):
            raise StudyError(f"n_startup={startup!r}: TPE's random start-up points, an integer >= 1")

    @property
    def startup(self) -> int:
        """The random start-up points of this sweep."""
        return self.setup.n_startup if self.setup.n_startup is not None else default_startup(self.setup.max_evals)

    def settings(self) -> dict[str, Any]:
        return {"n_startup": self.startup}

    def suggest(self, new_ids, domain, trials, seed) -> list[dict[str, Any]]:
        from hyperopt import tpe

        return tpe.suggest(new_ids, domain, trials, seed, n_startup_jobs=self.startup)
