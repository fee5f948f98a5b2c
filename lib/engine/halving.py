"""Successive halving of nuisance *ranges* per arm, with automatic range extension (the playbook's way).

:func:`run_study` (keyword form: :func:`run_halving`) is the range form of the tuned grid of
``lib.engine.tuning``: the nuisance hyperparameters (``lr``, ``weight_decay``, ...) are given as ranges
(:class:`lib.engine.ranges.Range`, parsed by :func:`parse_range` from ``lr=3e-4:3e-2:log``), and each scientific
value (arm) is tuned over them. It is a *rung policy* on top of the tuned grid's public phases: it decides which
points each rung trains and keeps; every rung, the re-measure, the tags and the hypotheses are tuning's own
(:func:`lib.engine.tuning.run_phase`, :func:`~lib.engine.tuning.remeasure`,
:func:`~lib.engine.tuning.record_hypotheses`).

1. **points**: ``n_points`` scrambled Halton points (``scipy.stats.qmc``, seeded) over all ranges, a log
   range on the log scale, each value rounded to 3 significant digits (stable cache keys); every arm gets
   the same points (paired);
2. **rungs** (restarting successive halving): rung 0 trains every point on every tuning seed for
   ``rungs[0]`` epochs; the best ``ceil(n / eta)`` points by the mean over the tuning seeds (a point counts
   only when all its tuning seeds finished) are trained *again from scratch* for ``rungs[1]`` epochs, and so
   on. The last rung is the claim's budget (the base's ``epochs``), so the winner is scored as it will be
   used. Each rung is one phase (one :func:`lib.engine.grid.run_trials` call): cached, resumable after ``kill -9``, and,
   selection being a deterministic function of the results, a resume asks for exactly the same trials;
3. **extension**: if an arm's winner lies in the outer ``EDGE`` of a range on a side that can still
   move (not at the hard bound of :func:`lib.config.hard_bounds`), that side is widened by the range's own
   width (on its scale, clipped at the hard bound), ``n_points`` new points are drawn in the new part (the
   other nuisance values over their full ranges) and halved through the rungs; at the last rung they compete
   with every earlier last-rung point of the arm (cached, nothing retrained). At most ``max_extensions`` per
   arm; each is printed and recorded (:attr:`HalvingArm.extensions`, tag ``extension`` on its runs). A winner
   still on a movable edge after the last extension leaves the arm **not decided: tuning range**;
4. **re-measure**: each arm's winner and the fixed-nuisance configuration on the fresh ``seeds``, as in
   the tuned grid; the result (:class:`HalvingGrid`) is a :class:`lib.engine.tuning.TunedGrid`, so
   ``summary()`` and ``effects()`` work, with a ``decided`` column.

**The last rung** is where the winner is chosen, at the budget it is used at: a design may ask it to compare at
least ``min_last_rung`` configurations (:func:`check_last_rung`, a one-line error naming the points knob and
the least number that works, :func:`points_for_last_rung`; the study's full profile asks 3: 19 points,
eta 3, three rungs hold 19/7/3). The summary names the design (:func:`design_text`), each arm's last rung
(configurations compared there, all rounds), its extensions of ``max_extensions`` and any ``edge`` its winner
is left on; the re-measured winner runs carry the same as tags. :meth:`TunedGrid.curse` is the winner's curse;
a replication on fresh tuning seeds is :mod:`lib.engine.replication`.

Cost (:func:`halving_cost`, in trials at the claim's budget): with the defaults (27 points, ``eta`` 3) and
rungs 1, 3, 9 epochs, 2 tuning seeds and 3 re-measure seeds an arm costs 18 + 6 = 24 trials against
54 + 6 = 60 without halving: 40.0% (the tuning phase alone 33.3%); each extension of an arm adds 18.

What this is not: a pruner (a rung restarts a trial, it never stops one in flight), an asynchronous
scheduler (Ray Tune's ASHA in ``lib.engine.ray_tune``), or a search over categorical hyperparameters
(a list ``--tune optimizer=adam,sgd`` stays with the tuned grid), or the ranges themselves (``lib.engine.ranges``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lib import tracking
from lib.config import TrialConfig
from lib.data import DataSpec
from lib.engine import grid
from lib.engine.backend import StudyError
from lib.engine.ranges import EDGE, Range, check_range, quasi_points
from lib.engine.ranges import parse_range as parse_range  # where the notebooks import it from
from lib.engine.request import StudyRequest
from lib.engine.trial import TrialResult
from lib.engine.tuning import (
    Arm,
    Roles,
    TunedGrid,
    check_rule,
    check_seeds,
    mean_score,
    pick_winner,
    record_hypotheses,
    remeasure,
    run_phase,
    study_tags,
)
from lib.store.schema import (
    TAG_LAST_RUNG,
    TAG_PHASE,
    TAG_RANGE_EXTENSIONS,
    TAG_TUNING_DECIDED,
    TAG_TUNING_DESIGN,
    TAG_TUNING_RANGES,
)

DEFAULT_POINTS, DEFAULT_ETA, DEFAULT_MAX_EXTENSIONS = 27, 3, 2
NOT_DECIDED = "not decided: tuning range"
LAST_RUNG_RULE = 3  # the study's rule: the last rung compares >= 3 configurations at the claim's budget


def rung_sizes(n_points: int, n_rungs: int, eta: int) -> list[int]:
    """Points per rung: ``n_points``, then ``ceil(previous / eta)`` at each next rung."""
    sizes = [n_points]
    for _ in range(n_rungs - 1):
        sizes.append(math.ceil(sizes[-1] / eta))
    return sizes


def points_for_last_rung(last: int, n_rungs: int, eta: int) -> int:
    """The fewest points whose last rung (of ``n_rungs``, keeping ``ceil(n / eta)`` each) holds ``last``:
    ``(last - 1) * eta ** (n_rungs - 1) + 1`` (27 points, eta 3, 3 rungs hold 3; 19 is the least that does)."""
    return (max(last, 1) - 1) * eta ** (n_rungs - 1) + 1


def design_text(n_points: int, rungs: Sequence[int], eta: int, n_tune_seeds: int, max_extensions: int) -> str:
    """One line naming a halving design, as a decision row quotes it: ``halving 27 points, eta 3, rungs
    1/3/12 epochs (27/9/3 configurations), 2 tuning seeds, <= 2 range extensions``."""
    sizes = rung_sizes(n_points, len(rungs), eta)
    return (
        f"halving {n_points} points, eta {eta}, rungs {'/'.join(map(str, rungs))} epochs "
        f"({'/'.join(map(str, sizes))} configurations), {n_tune_seeds} tuning seeds, <= {max_extensions} range "
        "extensions"
    )


@dataclass(frozen=True)
class HalvingCost:
    """What a design costs in trial-equivalents (one trial at the claim's budget = 1), before extensions."""

    sizes: list[int]
    rungs: list[int]
    tuning: float  # the halving's tuning phase, all arms
    remeasure: int  # winners and fixed-nuisance configurations on the fresh seeds
    without: float  # every point on every tuning seed at the final budget, plus the same re-measure
    extension: float  # what one extension of one arm adds

    @property
    def halving(self) -> float:
        return self.tuning + self.remeasure

    @property
    def ratio(self) -> float:
        return self.halving / self.without

    @property
    def last_rung(self) -> int:
        """Configurations the last rung compares at the claim's budget (per arm and round)."""
        return self.sizes[-1]

    def text(self) -> str:
        rungs = "/".join(map(str, self.sizes)) + " points at " + "/".join(map(str, self.rungs)) + " epochs per arm"
        return (
            f"cost before training (trial-equivalents: one trial at {self.rungs[-1]} epochs = 1): halving "
            f"{self.halving:.4g} (tuning {self.tuning:.4g} + re-measure {self.remeasure}) vs "
            f"{self.without:.4g} without halving: {100 * self.ratio:.1f}% ({rungs}; the last rung compares "
            f"{self.last_rung} at {self.rungs[-1]} epochs; each range extension of an arm adds {self.extension:.4g})"
        )


def halving_cost(
    n_points: int, rungs: Sequence[int], eta: int, n_tune_seeds: int, n_seeds: int, n_arms: int = 1
) -> HalvingCost:
    """Sum over rungs of points x tuning seeds x rung epochs / final epochs, plus the re-measure (2 configs
    per arm x ``n_seeds``), against every point x tuning seed at the final budget plus the same re-measure."""
    sizes = rung_sizes(n_points, len(rungs), eta)
    per_arm = sum(size * n_tune_seeds * epochs / rungs[-1] for size, epochs in zip(sizes, rungs, strict=True))
    remeasure = n_arms * 2 * n_seeds
    without = n_arms * n_points * n_tune_seeds + remeasure
    return HalvingCost(sizes, list(rungs), n_arms * per_arm, remeasure, without, per_arm)


@dataclass
class HalvingArm(Arm):
    """One arm of a halving study: its final ranges, every rung's table, its extensions, decided or not.

    ``tuning`` (of :class:`Arm`) holds the last rung's points of every round; ``rungs`` every rung's."""

    ranges: dict[str, Range] = field(default_factory=dict)
    rungs: pd.DataFrame = field(default_factory=pd.DataFrame)
    extensions: list[str] = field(default_factory=list)
    decided: bool = True

    def verdict(self) -> str:
        return "yes" if self.decided else NOT_DECIDED

    def last_rung(self) -> int:
        """Configurations scored at the last rung (the claim's budget, every tuning seed finished), all rounds:
        what the winner was chosen among."""
        return int(self.tuning["score"].notna().sum()) if len(self.tuning) and "score" in self.tuning else 0

    def edge(self) -> str:
        """Where the winner sits in the outer :data:`lib.engine.ranges.EDGE` of a range that can still move
        (``lr upper 10% of [0.0003, 0.03]``), ``""`` when nowhere: after the last extension, what is left open."""
        if self.winner is None:
            return ""
        return "; ".join(
            f"{name} {side} {EDGE:.0%} of [{rng.low:.3g}, {rng.high:.3g}]"
            for name, rng in self.ranges.items()
            for side in rng.edge_sides(self.winner[name])
        )


@dataclass
class HalvingGrid(TunedGrid):
    """The outcome of :func:`run_halving`: a :class:`TunedGrid` with the rungs, extensions and decisions."""

    rung_epochs: list[int] = field(default_factory=list)
    eta: int = DEFAULT_ETA
    n_points: int = DEFAULT_POINTS
    cost: HalvingCost | None = None
    max_extensions: int = DEFAULT_MAX_EXTENSIONS

    def design(self) -> str:
        """:func:`design_text` of this study (what a decision row names)."""
        return design_text(self.n_points, self.rung_epochs, self.eta, len(set(self.tune_seeds)), self.max_extensions)

    def summary(self) -> pd.DataFrame:
        """:meth:`TunedGrid.summary` plus ``extensions`` (made, of ``max_extensions``), ``edge`` (a winner still in
        the outer 10% of a movable range, ``""`` if none), ``decided`` (``yes`` or :data:`NOT_DECIDED`), the
        ``design`` (:meth:`design`), ``last_rung`` (configurations compared at the last rung, all rounds) and
        ``last_rung_epochs`` (the claim's budget they were trained at)."""
        frame = super().summary()
        if len(frame):
            frame["extensions"] = [len(arm.extensions) for arm in self.arms]
            frame["max_extensions"] = self.max_extensions
            frame["edge"] = [arm.edge() for arm in self.arms]
            frame["decided"] = [arm.verdict() for arm in self.arms]
            frame["design"] = self.design()
            frame["last_rung"] = [arm.last_rung() for arm in self.arms]
            frame["last_rung_epochs"] = self.rung_epochs[-1] if self.rung_epochs else math.nan
        return frame

    def effects(self) -> pd.DataFrame:
        """:meth:`TunedGrid.effects` plus ``decided`` (``yes`` only when both arms of an effect are decided), the
        ``design`` and ``last_rung``: the smaller of the two arms' last rungs (what the row can claim)."""
        frame = super().effects()
        if len(frame):
            reference, arms = self.arms[0], self.arms[1 : len(frame) + 1]
            frame["decided"] = ["yes" if arm.decided and reference.decided else NOT_DECIDED for arm in arms]
            frame["design"] = self.design()
            frame["last_rung"] = [min(arm.last_rung(), reference.last_rung()) for arm in arms]
        return frame

    def rung_table(self) -> pd.DataFrame:
        """Points per round and rung of each arm: trained, complete (every tuning seed finished), kept."""
        rows = []
        for arm in self.arms:
            if not len(arm.rungs):
                continue
            for (round_, rung), part in arm.rungs.groupby(["round", "rung"], sort=True):
                counts = {"points": len(part), "complete": int(part["score"].notna().sum())}
                counts["kept"] = int(part["kept"].sum())
                rows.append(
                    arm.value | {"round": int(round_), "rung": int(rung), "epochs": int(part["epochs"].iloc[0])}
                )
                rows[-1] |= counts
        return pd.DataFrame(rows)


@dataclass(frozen=True)
class HalvingDesign:
    """What a halving study tunes and how, checked by :func:`plan`: the scientific values (arms), the nuisance
    ranges, the tuning and re-measure seeds, the rungs (epochs, the last the claim's budget), ``eta``, the points
    per round, the extensions allowed per arm and the seed of the quasi-random points; then the checkpoint
    ``rule``, the seeds of the fixed-nuisance re-measure (``fixed_seeds``: default ``seeds``, ``[]``: none),
    the names added to the ``hypotheses`` tag of the re-measured winners and fixed-nuisance runs, the least
    number of configurations the last rung must compare (``min_last_rung``: 1 accepts any design; the study's
    full and deep profiles ask :data:`LAST_RUNG_RULE`) and ``replica`` (a replication with fresh tuning seeds,
    :mod:`lib.engine.replication`: it tags no verdict and adds no hypothesis to the runs it shares)."""

    scientific: dict[str, Sequence[Any]]
    ranges: Sequence[Range]
    tune_seeds: Sequence[int]
    seeds: Sequence[int]
    rungs: Sequence[int]
    eta: int = DEFAULT_ETA
    n_points: int = DEFAULT_POINTS
    max_extensions: int = DEFAULT_MAX_EXTENSIONS
    seed: int = 0
    rule: str = "last"
    fixed_seeds: Sequence[int] | None = None
    winner_hypothesis: str | None = None
    fixed_hypothesis: str | None = None
    min_last_rung: int = 1
    replica: bool = False

    def identity(self, experiment: str, roles: Roles, data: DataSpec) -> str:
        """:func:`halving_id` of this design."""
        design = {"tune_seeds": list(self.tune_seeds), "seeds": list(self.seeds), "rungs": list(self.rungs)}
        design |= {"eta": self.eta, "n_points": self.n_points, "max_extensions": self.max_extensions, "seed": self.seed}
        return halving_id(experiment, roles, self.ranges, data, **design)

    def cost(self, n_arms: int) -> HalvingCost:
        """:func:`halving_cost` of this design for ``n_arms`` arms."""
        n_tune = len(set(self.tune_seeds))
        return halving_cost(self.n_points, list(self.rungs), self.eta, n_tune, len(self.seeds), n_arms)


@dataclass
class _Study:
    """One halving study while it runs (so the helpers stay short): the request, its design and its arms."""

    request: StudyRequest
    design: HalvingDesign
    arms: list[dict[str, Any]]


def check_design(base: TrialConfig, roles: Roles, design: HalvingDesign) -> None:
    """The halving design can run: rungs, ``eta``, points, extensions and tuning seeds (one-line errors)."""
    rungs, eta = list(design.rungs), design.eta
    check_seeds(design.tune_seeds, design.seeds)
    if len(set(design.tune_seeds)) < 2:
        raise StudyError("halving needs at least 2 tuning seeds (a rung keeps points by their mean), e.g. 100,101")
    if len({r.name for r in design.ranges}) < len(design.ranges):
        raise StudyError("a range is given twice; give each --tune NAME=LOW:HIGH once")
    if "epochs" in roles.scientific:
        raise StudyError("'epochs' is the rungs' budget; it cannot be a --factor of a halving study")
    if not rungs or any(int(r) != r or r < 1 for r in rungs) or rungs != sorted(set(rungs)):
        raise StudyError(f"rungs {rungs}: give rising whole numbers of epochs, e.g. --halving 1,3,9")
    if rungs[-1] != base.train.epochs:
        raise StudyError(
            f"rungs {rungs}: the last rung must equal the claim's budget, epochs={base.train.epochs}; "
            f"give --halving ...,{base.train.epochs} or --set epochs={rungs[-1]}"
        )
    if int(eta) != eta or eta < 2:
        raise StudyError(f"eta={eta}: keep 1/eta of the points per rung; give a whole number >= 2 (--eta 3)")
    if design.n_points < 1 or design.max_extensions < 0:
        raise StudyError("points must be >= 1 and max extensions >= 0 (--points 27 --max-extensions 2)")
    check_last_rung(design.n_points, rungs, eta, design.min_last_rung)


def check_last_rung(n_points: int, rungs: Sequence[int], eta: int, least: int, names: Sequence[str] = ()) -> None:
    """The last rung compares at least ``least`` configurations at the claim's budget (a one-line
    :class:`StudyError` naming the points knob and the fix otherwise). ``names``: what the caller calls the
    points, ``eta`` and rungs knobs (default: :class:`HalvingDesign`'s fields)."""
    points_name, eta_name, rungs_name = names or ("n_points", "eta", "rungs")
    last = rung_sizes(n_points, len(rungs), eta)[-1]
    if last < least:
        need = points_for_last_rung(least, len(rungs), eta)
        raise StudyError(
            f"{points_name}={n_points} with {eta_name}={eta} and {rungs_name} {list(rungs)}: the last rung compares "
            f"{last} configuration(s) at {rungs[-1]} epochs, fewer than {least}; give {points_name}={need} or more, "
            "or fewer rungs"
        )


def plan(base: TrialConfig | dict[str, Any] | None, design: HalvingDesign) -> tuple[TrialConfig, Roles, list]:
    """Validate the whole design before anything is written: the base, roles, rungs, and every rung-0 trial
    of every arm. Returns the base config, the roles (a dict ``base``'s values are the fixed ones) and the
    first round's points."""
    base_config = base if isinstance(base, TrialConfig) else TrialConfig.from_flat(base or {})
    fixed = dict(base) if isinstance(base, dict) else {}
    nuisance = {r.name: [r.low, r.high] for r in map(check_range, design.ranges)}
    roles = Roles(dict(design.scientific), nuisance, fixed)
    check_design(base_config, roles, design)
    points = quasi_points(design.ranges, design.n_points, design.seed)
    for arm in roles.arms():
        for epochs in design.rungs:
            configs = [arm | p | {"epochs": epochs} for p in points]
            grid.point_configs(base_config, configs, list(design.tune_seeds)[:1])
    return base_config, roles, points


def plan_halving(base: TrialConfig | dict[str, Any] | None, *design: Any, **fields: Any):
    """:func:`plan` with the design given as :class:`HalvingDesign`'s fields (``scientific, ranges, tune_seeds,
    seeds, rungs=..., eta=...``)."""
    return plan(base, HalvingDesign(*design, **fields))


def _score_table(
    results: list[TrialResult], study: _Study, arm: int, points: dict[int, dict[str, float]], epochs: int
) -> pd.DataFrame:
    """Mean score over the tuning seeds of each point (index -> point) of one arm at ``epochs``; NaN unless
    every tuning seed finished (:func:`lib.engine.tuning.mean_score`)."""
    rows = []
    for index, point in points.items():
        wanted = study.arms[arm] | point | {"epochs": epochs}
        score, finished = mean_score(results, wanted, study.design.rule, study.design.tune_seeds)
        rows.append(point | {"point": index, "score": score, "finished": finished})
    return pd.DataFrame(rows)


def _top(table: pd.DataFrame, keep: int) -> list[int]:
    """The ``keep`` best complete points (ties: the earlier point), deterministic."""
    done = table[table["score"].notna()].sort_values(["score", "point"], ascending=[False, True], kind="stable")
    return [int(index) for index in done["point"].head(keep)]


def _halve(study: _Study, points: dict[int, list[dict[str, float]]], round_: int) -> dict[int, pd.DataFrame]:
    """One pass of successive halving for the arms in ``points`` (arm -> its points): one phase
    (:func:`lib.engine.tuning.run_phase`) per rung for all of them. Returns each arm's table of every rung."""
    alive = {arm: dict(enumerate(items)) for arm, items in points.items()}
    tables: dict[int, list[pd.DataFrame]] = {arm: [] for arm in points}
    rungs, tune_seeds = list(study.design.rungs), list(study.design.tune_seeds)
    for rung, epochs in enumerate(rungs):
        wanted = [study.arms[arm] | p | {"epochs": epochs} for arm in alive for p in alive[arm].values()]
        if not wanted:
            break
        tags = {TAG_PHASE: "tune", "rung": str(rung), "rung_epochs": str(epochs), "extension": str(round_)}
        configs = grid.point_configs(study.request.config, wanted, tune_seeds)
        results = run_phase(study.request, configs, tags)
        last = rung == len(rungs) - 1
        for arm in [arm for arm in alive if alive[arm]]:
            table = _score_table(results, study, arm, alive[arm], epochs)
            kept = _top(table, len(table) if last else math.ceil(len(table) / study.design.eta))
            tables[arm].append(table.assign(round=round_, rung=rung, epochs=epochs, kept=table["point"].isin(kept)))
            alive[arm] = {index: alive[arm][index] for index in kept} if not last else {}
    return {arm: pd.concat(parts, ignore_index=True) if parts else pd.DataFrame() for arm, parts in tables.items()}


def _final(arm: HalvingArm, last_rung: int) -> pd.DataFrame:
    """The arm's last-rung points of every round (what its winner is chosen from)."""
    if not len(arm.rungs):
        return pd.DataFrame(columns=[*arm.ranges, "score", "finished", "round", "point"])
    final = arm.rungs[arm.rungs["rung"] == last_rung]
    return final.drop(columns=["rung", "epochs", "kept"]).reset_index(drop=True)


def _winner(table: pd.DataFrame, names: Sequence[str]) -> dict[str, Any] | None:
    """The tuning rule of every tuned study (:func:`lib.engine.tuning.pick_winner`: the best complete mean), over the
    last-rung points in (round, point) order, so a tie goes to the earlier point."""
    if not len(table):
        return None
    ordered = table.sort_values(["round", "point"], kind="stable").reset_index(drop=True)
    winner = pick_winner(ordered, list(names))
    return {name: float(value) for name, value in winner.items()} if winner else None


def _extend(arm: HalvingArm, index: int, round_: int, n_points: int, seed: int, log: Callable[[str], None] | None):
    """Widen every range whose movable edge holds the arm's winner; the new points lie in the new part."""
    before = dict(arm.ranges)
    moves = [(name, side) for name, rng in before.items() for side in rng.edge_sides(arm.winner[name])]
    for name, side in moves:
        arm.ranges[name] = arm.ranges[name].extended(side)
    line = f"extension {round_} of arm {arm.label()}: " + "; ".join(
        f"{name}'s winner {arm.winner[name]:.3g} in the {side} {EDGE:.0%} of [{before[name].low:.3g}, "
        f"{before[name].high:.3g}] -> [{arm.ranges[name].low:.3g}, {arm.ranges[name].high:.3g}]"
        for name, side in moves
    )
    arm.extensions.append(line)
    if log:
        log(line)

    def outside(point: dict[str, float]) -> bool:
        return not all(before[name].contains(value) for name, value in point.items())

    return quasi_points(list(arm.ranges.values()), n_points, seed, stream=1000 * (index + 1) + round_, keep=outside)


def _on_edge(arm: HalvingArm) -> bool:
    return arm.winner is not None and any(rng.edge_sides(arm.winner[name]) for name, rng in arm.ranges.items())


def _tune(study: _Study, arms: list[HalvingArm], points: list[dict[str, float]], log: Callable | None) -> None:
    """Round 0 for every arm, then up to ``max_extensions`` extension rounds for the arms on a movable edge."""
    design = study.design
    last = len(design.rungs) - 1
    names = list(arms[0].ranges)
    pending = {index: points for index in range(len(arms))}
    for round_ in range(design.max_extensions + 1):
        for index, table in _halve(study, pending, round_).items():
            arm = arms[index]
            arm.rungs = pd.concat([arm.rungs, table], ignore_index=True) if len(arm.rungs) else table
            arm.tuning = _final(arm, last)
            arm.winner = _winner(arm.tuning, names)
        moving = [index for index, arm in enumerate(arms) if _on_edge(arm)]
        if round_ == design.max_extensions or not moving:
            break
        pending = {i: _extend(arms[i], i, round_ + 1, design.n_points, design.seed, log) for i in moving}
    for arm in arms:
        arm.decided = not _on_edge(arm)


def _tag_verdicts(arms: list[HalvingArm], design: str) -> None:
    """The re-measured winner runs get their arm's ``tuning_decided``, ``tuning_ranges`` and ``range_extensions``,
    the study's ``tuning_design`` (:func:`design_text`) and the arm's ``tuning_last_rung`` (configurations its
    winner was chosen among at the claim's budget), so a decision row read from the store can name them."""
    for arm in arms:
        verdict = {TAG_TUNING_DECIDED: arm.verdict(), TAG_RANGE_EXTENSIONS: json.dumps(arm.extensions)}
        verdict[TAG_TUNING_RANGES] = " ".join(rng.text() for rng in arm.ranges.values())
        verdict |= {TAG_TUNING_DESIGN: design, TAG_LAST_RUNG: str(arm.last_rung())}
        for result in arm.remeasured:
            if result.run_id:
                tracking.set_tags(result.run_id, verdict)


def halving_id(experiment: str, roles: Roles, ranges: Sequence[Range], data: DataSpec, **design: Any) -> str:
    """The identity of one halving study (its whole design), the ``tuning_id`` tag of every run of it."""
    text = json.dumps([experiment, roles.scientific, [r.text() for r in ranges], roles.fixed, design], default=str)
    return hashlib.sha256((text + repr(sorted(data.params().items()))).encode()).hexdigest()[:10]


def run_halving(
    base: TrialConfig | dict[str, Any] | None,
    scientific: dict[str, Sequence[Any]],
    ranges: Sequence[Range],
    tune_seeds: Sequence[int],
    seeds: Sequence[int],
    experiment: str,
    data: DataSpec = DataSpec(),
    tags: dict[str, str] | None = None,
    *,
    log: Callable[[str], None] | None = print,
    **more: Any,
) -> HalvingGrid:
    """:func:`run_study` as keywords: ``more`` holds the rest of :class:`HalvingDesign`'s fields (``rungs``,
    ``eta``, ``n_points``, ``max_extensions``, ``seed``, ``rule``, ``fixed_seeds``, ``winner_hypothesis``,
    ``fixed_hypothesis``) and :func:`lib.engine.grid.run_trials`' options (``workers``, ``progress``, ``engine``)."""
    own = {field.name for field in dataclasses.fields(HalvingDesign)}
    design = HalvingDesign(scientific, ranges, tune_seeds, seeds, **{k: v for k, v in more.items() if k in own})
    request = StudyRequest.of(experiment, base, data, tags, **{k: v for k, v in more.items() if k not in own})
    return run_study(request, design, log)


def run_study(request: StudyRequest, design: HalvingDesign, log: Callable[[str], None] | None = print) -> HalvingGrid:
    """Tune ``design.ranges`` per scientific value by successive halving with range extension, then re-measure
    each arm's winner and the fixed-nuisance configuration on the fresh ``design.seeds`` (module docstring).

    The request's base ``epochs`` is the claim's budget and must equal the last rung. ``log`` gets one line per
    extension (``None``: silent).
    """
    check_rule(design.rule)
    base_config, roles, points = plan(request.base, design)
    identity = design.identity(request.experiment, roles, request.data)
    fixed_nuisance = {rng.name: base_config.flat()[rng.name] for rng in design.ranges}
    rungs, tune_seeds = list(design.rungs), list(design.tune_seeds)
    own = {"halving_rungs": ",".join(map(str, rungs)), "halving_eta": str(design.eta)}
    own["tune_seeds"] = ",".join(map(str, tune_seeds))
    request = request.tagged(study_tags(roles, identity, design.rule, fixed_nuisance) | own)
    study = _Study(request, design, roles.arms())
    arms = [HalvingArm(value, pd.DataFrame(), None, ranges={r.name: r for r in design.ranges}) for value in study.arms]
    _tune(study, arms, points, log)
    result = HalvingGrid(
        roles, list(arms), tune_seeds, list(design.seeds), design.rule, identity, fixed_nuisance,
        rung_epochs=rungs, eta=design.eta, n_points=design.n_points, cost=design.cost(len(arms)),
        max_extensions=design.max_extensions,
    )  # fmt: skip
    remeasure(request, arms, design.seeds, fixed_nuisance, [] if design.replica else design.fixed_seeds)
    if not design.replica:  # a replica's re-measured winner may be the original's own run: leave its tags alone
        _tag_verdicts(arms, result.design())
        record_hypotheses(arms, design.winner_hypothesis, design.fixed_hypothesis)
    return result
