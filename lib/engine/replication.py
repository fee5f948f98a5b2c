"""A replication of a halving study's tuning with fresh tuning seeds, and how often it decides the same.

The tuning seeds choose each arm's winner; the re-measure on fresh seeds corrects the winner's *level*
(the winner's curse), not *which* configuration was picked. :func:`run_replication` asks that second
question: the same halving design (points, rungs, ranges, extensions) for chosen arms, tuned again on
``replicate_seeds`` (fresh: shared with neither the tuning nor the re-measure seeds), each new winner
re-measured on the *same* fresh seeds as the original (a winner equal to the original's reuses its runs, so
nothing trains twice). :func:`agreement` then compares the two per arm: the same winner, the same winner
*region* (every nuisance value within :data:`REGION` of its range, on the range's scale), and the same verdict
of the arm against the reference arm (its paired interval above zero, below zero, or covering zero: "not
shown", which never means "no effect"); :func:`agreement_summary` says how often.

A replica tags no verdict and adds no hypothesis: its runs are described, never a claim's
(:attr:`lib.engine.halving.HalvingDesign.replica`).

What this is not: the halving itself (``lib.engine.halving``), the family-wise decisions of a study
(``lib.study``), or a test that the two tunings agree (with 2 tuning seeds, they often will not; that is the
finding, reported).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import pandas as pd

from lib.engine.backend import StudyError
from lib.engine.halving import NOT_DECIDED, HalvingDesign, HalvingGrid, run_halving
from lib.engine.ranges import Range

REGION = 0.2  # two winners are in the same region when every nuisance value is within this share of its range
REFERENCE = "reference"
_DROPPED = ("winner_hypothesis", "fixed_hypothesis", "fixed_seeds", "replica")


def check_replication(
    scientific: dict[str, Sequence[Any]], tune_seeds: Sequence[int], seeds: Sequence[int],
    replicate_seeds: Sequence[int], replicate_arms: Sequence[Any] | None,
) -> dict[str, list[Any]]:  # fmt: skip
    """The replication can run (one-line :class:`StudyError` naming the knob otherwise); returns the replicated
    scientific values: ``replicate_arms`` of the one scientific factor, the reference arm (its first value) first."""
    fresh = sorted(set(replicate_seeds))
    if len(fresh) < 2:
        raise StudyError(f"replicate_seeds {list(replicate_seeds)}: give at least 2 fresh tuning seeds, e.g. 12,13")
    shared = sorted(set(fresh) & (set(tune_seeds) | set(seeds)))
    if shared:
        raise StudyError(
            f"replicate_seeds {list(replicate_seeds)}: {shared} already tune or re-measure this study; give fresh "
            f"seeds, e.g. {max([*tune_seeds, *seeds, *fresh]) + 1},{max([*tune_seeds, *seeds, *fresh]) + 2}"
        )
    if replicate_arms is None:
        return {name: list(values) for name, values in scientific.items()}
    if len(scientific) != 1:
        raise StudyError("replicate_arms names values of one scientific factor; with several, give replicate_arms=None")
    ((name, values),) = scientific.items()
    unknown = [value for value in replicate_arms if value not in list(values)]
    if unknown or not list(replicate_arms):
        raise StudyError(f"replicate_arms {list(replicate_arms)}: give some of the study's {name} values {values}")
    chosen = [values[0], *[value for value in values[1:] if value in list(replicate_arms)]]
    return {name: chosen}


def run_replication(
    *study: Any, replicate_seeds: Sequence[int], replicate_arms: Sequence[Any] | None = None, **named: Any
) -> HalvingGrid:
    """The original study's arguments, exactly as given to :func:`lib.engine.halving.run_halving` (by position
    or by name), tuned again on ``replicate_seeds`` for the reference arm and ``replicate_arms`` (``None``:
    every arm), re-measured on the same ``seeds``. The original's hypotheses and fixed-nuisance re-measure are
    dropped (a replica claims nothing); give ``tags`` of its own (e.g. ``{"hypothesis": "H1-replicate"}``)."""
    bound = inspect.signature(run_halving).bind(*study, **named)
    bound.apply_defaults()
    given = dict(bound.arguments)
    more = {key: value for key, value in given.pop("more").items() if key not in _DROPPED}
    given["scientific"] = check_replication(
        given["scientific"], given["tune_seeds"], given["seeds"], replicate_seeds, replicate_arms
    )
    given["tune_seeds"] = replicate_seeds
    return run_halving(**given, replica=True, **more)


def replication_cost(design: HalvingDesign, n_arms: int) -> float:
    """Trial-equivalents (one trial at the claim's budget = 1) of replicating ``n_arms`` arms: their tuning
    phase again, plus at most one new winner per arm on the re-measure seeds (less where a winner repeats)."""
    return design.cost(n_arms).tuning + n_arms * len(design.seeds)


def _verdicts(grid: HalvingGrid) -> dict[str, str]:
    """Each arm's verdict against the reference arm: higher / lower / not shown (95% paired interval), the
    reference itself, or :data:`NOT_DECIDED` when either arm's winner is still on a movable edge."""
    verdicts = {grid.arms[0].label(): REFERENCE} if grid.arms else {}
    effects = grid.effects()
    for arm, (_, row) in zip(grid.arms[1:], effects.iterrows(), strict=False):
        if row["decided"] != "yes":
            verdicts[arm.label()] = NOT_DECIDED
        elif row["ci_low"] > 0:
            verdicts[arm.label()] = "higher"
        elif row["ci_high"] < 0:
            verdicts[arm.label()] = "lower"
        else:
            verdicts[arm.label()] = "not shown"
    return verdicts


def _same_region(first: dict[str, float] | None, second: dict[str, float] | None, ranges: dict[str, Range]) -> bool:
    if first is None or second is None:
        return False
    return all(abs(rng.position(second[name]) - rng.position(first[name])) <= REGION for name, rng in ranges.items())


def agreement(original: HalvingGrid, replica: HalvingGrid) -> pd.DataFrame:
    """One row per replicated arm: both winners, ``same_winner``, ``same_region`` (:data:`REGION` of each of the
    original arm's final ranges, on its scale), both verdicts against the reference and ``same_verdict``
    (``None`` for the reference arm itself, which has no verdict)."""
    arms = {arm.label(): arm for arm in original.arms}
    first, again = _verdicts(original), _verdicts(replica)
    rows = []
    for arm in replica.arms:
        mine = arms.get(arm.label())
        if mine is None:
            raise StudyError(f"replica arm {arm.label()} is not an arm of the original study; replicate its arms")
        verdict, repeat = first.get(arm.label(), ""), again.get(arm.label(), "")
        rows.append(
            {"arm": arm.label(), "winner": _text(mine.winner), "replica_winner": _text(arm.winner)}
            | {"same_winner": mine.winner is not None and mine.winner == arm.winner}
            | {"same_region": _same_region(mine.winner, arm.winner, mine.ranges)}
            | {"verdict": verdict, "replica_verdict": repeat}
            | {"same_verdict": None if verdict == REFERENCE else verdict == repeat}
        )
    return pd.DataFrame(rows)


def agreement_summary(table: pd.DataFrame) -> pd.DataFrame:
    """How often the replication decided the same (:func:`agreement`'s table): one row with the arms compared,
    the shares with the same winner and the same region, the verdicts compared (the reference has none) and
    the share of those that are the same."""
    verdicts = table["same_verdict"].dropna() if len(table) else pd.Series(dtype=bool)
    n, nan = len(table), float("nan")
    row = {"arms": n, "same_winner": table["same_winner"].mean() if n else nan}
    row |= {"same_region": table["same_region"].mean() if n else nan, "verdicts": len(verdicts)}
    row["same_verdict"] = verdicts.astype(bool).mean() if len(verdicts) else nan
    return pd.DataFrame([row])


def _text(point: dict[str, float] | None) -> str:
    return ", ".join(f"{name}={value:.3g}" for name, value in point.items()) if point else "none"
