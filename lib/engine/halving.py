"""Successive halving of nuisance *ranges* per arm, with automatic range extension (the playbook's way).

:func:`run_halving` is the range form of :func:`lib.engine.tuning.run_tuned_grid`: the nuisance
hyperparameters (``lr``, ``weight_decay``, ...) are given as ranges (:class:`Range`, parsed by
:func:`parse_range` from ``lr=3e-4:3e-2:log``), and each scientific value (arm) is tuned over them:

1. **points**: ``n_points`` scrambled Halton points (``scipy.stats.qmc``, seeded) over all ranges, a log
   range on the log scale, each value rounded to 3 significant digits (stable cache keys); every arm gets
   the same points (paired);
2. **rungs** (restarting successive halving): rung 0 trains every point on every tuning seed for
   ``rungs[0]`` epochs; the best ``ceil(n / eta)`` points by the mean over the tuning seeds (a point counts
   only when all its tuning seeds finished) are trained *again from scratch* for ``rungs[1]`` epochs, and so
   on. The last rung is the claim's budget (the base's ``epochs``), so the winner is scored as it will be
   used. Each rung is one :func:`lib.engine.grid.run_trials` call: cached, resumable after ``kill -9``, and,
   selection being a deterministic function of the results, a resume asks for exactly the same trials;
3. **extension**: if an arm's winner lies in the outer :data:`EDGE` of a range on a side that can still
   move (not at the hard bound of :func:`lib.config.hard_bounds`), that side is widened by the range's own
   width (on its scale, clipped at the hard bound), ``n_points`` new points are drawn in the new part (the
   other nuisance values over their full ranges) and halved through the rungs; at the last rung they compete
   with every earlier last-rung point of the arm (cached, nothing retrained). At most ``max_extensions`` per
   arm; each is printed and recorded (:attr:`HalvingArm.extensions`, tag ``extension`` on its runs). A winner
   still on a movable edge after the last extension leaves the arm **not decided: tuning range**;
4. **re-measure**: each arm's winner and the fixed-nuisance configuration on the fresh ``seeds``, as in
   ``run_tuned_grid``; the result (:class:`HalvingGrid`) is a :class:`lib.engine.tuning.TunedGrid`, so
   ``summary()`` and ``effects()`` work, with a ``decided`` column.

Cost (:func:`halving_cost`, in trials at the claim's budget): with the defaults (27 points, ``eta`` 3) and
rungs 1, 3, 9 epochs, 2 tuning seeds and 3 re-measure seeds an arm costs 18 + 6 = 24 trials against
54 + 6 = 60 without halving: 40.0% (the tuning phase alone 33.3%); each extension of an arm adds 18.

What this is not: a pruner (a rung restarts a trial, it never stops one in flight), an asynchronous
scheduler (Ray Tune's ASHA in ``lib.engine.ray_tune``), or a search over categorical hyperparameters
(a list ``--tune optimizer=adam,sgd`` stays with ``run_tuned_grid``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lib import store, tracking
from lib.config import ConfigError, ModelConfig, TrainConfig, TrialConfig, check_known_fields, hard_bounds
from lib.data import DataSpec
from lib.engine import grid, records
from lib.engine.backend import StudyError
from lib.engine.trial import TrialResult
from lib.engine.tuning import (
    Arm,
    Roles,
    TunedGrid,
    _matches,
    _tag_cached,
    _unique,
    check_rule,
    check_seeds,
    pick_winner,
    trial_score,
)
from lib.store.schema import TAG_CHECKPOINT_RULE, TAG_FIXED_NUISANCE, TAG_PHASE, TAG_TUNING_ID

EDGE = 0.10  # the outer share of a range that counts as its edge (the same as lib.report.EDGE)
DEFAULT_POINTS, DEFAULT_ETA, DEFAULT_MAX_EXTENSIONS = 27, 3, 2
NOT_DECIDED = "not decided: tuning range"
DIGITS = 3  # significant digits of a drawn value
RANGE_EXAMPLE = "lr=3e-4:3e-2:log"


@dataclass(frozen=True)
class Range:
    """A nuisance range ``[low, high]`` of one real-valued hyperparameter, searched on a log scale if ``log``."""

    name: str
    low: float
    high: float
    log: bool = False

    def _scale(self, value: float) -> float:
        return math.log(value) if self.log else value

    def position(self, value: float) -> float:
        """Where ``value`` lies in the range, 0 (low) to 1 (high), on the range's own scale."""
        low, high = self._scale(self.low), self._scale(self.high)
        return (self._scale(value) - low) / (high - low)

    def value_at(self, share: float) -> float:
        """The value at ``share`` (0 to 1) of the range, on its scale (not rounded)."""
        low, high = self._scale(self.low), self._scale(self.high)
        value = low + share * (high - low)
        return math.exp(value) if self.log else value

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def movable_sides(self) -> set[str]:
        """The sides a wider range could move: not one already at the hard bound (a log range can always move
        toward a bound of 0 it never reaches). The same rule as the report's boundary warnings."""
        floor, ceiling = hard_bounds(self.name)
        sides = set()
        if floor is None or self.low > floor + 1e-12 * max(1.0, abs(floor)):
            sides.add("lower")
        if ceiling is None or self.high < ceiling - 1e-12 * max(1.0, abs(ceiling)):
            sides.add("upper")
        return sides

    def edge_sides(self, value: float) -> list[str]:
        """The movable sides whose outer :data:`EDGE` holds ``value``."""
        place, movable = self.position(value), self.movable_sides()
        near = {"lower": place <= EDGE, "upper": place >= 1 - EDGE}
        return [side for side in ("lower", "upper") if near[side] and side in movable]

    def extended(self, side: str) -> Range:
        """The range widened on ``side`` by its own width (on its scale), clipped at the hard bound."""
        floor, ceiling = hard_bounds(self.name)
        if side == "lower":
            low = self.low * self.low / self.high if self.log else self.low - (self.high - self.low)
            low = max(low, floor) if floor is not None else low
            return Range(self.name, _significant(low, direction=1), self.high, self.log)
        high = self.high * self.high / self.low if self.log else self.high + (self.high - self.low)
        high = min(high, ceiling) if ceiling is not None else high
        return Range(self.name, self.low, _significant(high, direction=-1), self.log)

    def text(self) -> str:
        return f"{self.name}={self.low:.3g}:{self.high:.3g}" + (":log" if self.log else "")


def is_range(text: str) -> bool:
    """Whether a ``--tune`` item is a range (``NAME=LOW:HIGH[:log]``) rather than a list (``NAME=V1,V2``)."""
    return "=" in text and ":" in text.split("=", 1)[1]


def parse_range(text: str) -> Range:
    """``"lr=3e-4:3e-2:log"`` -> ``Range("lr", 3e-4, 3e-2, True)``, checked (:func:`check_range`)."""
    shape = f"range {text!r} must look like NAME=LOW:HIGH or NAME=LOW:HIGH:log, e.g. {RANGE_EXAMPLE}"
    if "=" not in text or not text.split("=", 1)[0].strip():
        raise StudyError(shape)
    name, rest = (part.strip() for part in text.split("=", 1))
    parts = [part.strip() for part in rest.split(":")]
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2].lower() != "log"):
        raise StudyError(shape)
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise StudyError(f"range {text!r}: LOW and HIGH must be numbers, e.g. {RANGE_EXAMPLE}") from None
    return check_range(Range(name, low, high, len(parts) == 3))


def check_range(rng: Range) -> Range:
    """A known real-valued hyperparameter, ``low < high``, ``low > 0`` on a log scale, within the hard bounds
    and both ends allowed by the config (a one-line :class:`StudyError` otherwise)."""
    try:
        check_known_fields({rng.name: None})
    except ConfigError as exc:
        raise StudyError(f"range {rng.text()}: {exc}") from None
    field_info = (ModelConfig.model_fields | TrainConfig.model_fields).get(rng.name)
    if field_info is None or field_info.annotation is not float:
        raise StudyError(
            f"range for '{rng.name}': not a real-valued hyperparameter; give it as a list, e.g. --tune {rng.name}=V1,V2"
        )
    if not (math.isfinite(rng.low) and math.isfinite(rng.high)) or rng.low >= rng.high:
        raise StudyError(f"range {rng.text()}: LOW must be below HIGH, e.g. {RANGE_EXAMPLE}")
    if rng.log and rng.low <= 0:
        raise StudyError(f"range {rng.text()}: a log range needs LOW > 0; drop ':log' or raise LOW")
    floor, ceiling = hard_bounds(rng.name)
    if floor is not None and rng.low < floor:
        raise StudyError(f"range {rng.text()}: LOW is below the hard bound {floor:g} of '{rng.name}'")
    if ceiling is not None and rng.high > ceiling:
        raise StudyError(f"range {rng.text()}: HIGH is above the hard bound {ceiling:g} of '{rng.name}'")
    for value in (rng.low, rng.high):
        if not _allowed(rng.name, value):
            raise StudyError(f"range {rng.text()}: '{rng.name}' = {value:g} is not allowed; move that end inside")
    return rng


def _allowed(name: str, value: float) -> bool:
    try:
        TrialConfig.from_flat({name: value})
    except ConfigError:
        return False
    return True


def _significant(value: float, digits: int = DIGITS, direction: int = 0) -> float:
    """``value`` to ``digits`` significant digits: nearest (``direction`` 0), down (-1) or up (+1)."""
    if value == 0 or not math.isfinite(value):
        return value
    unit = 10.0 ** (math.floor(math.log10(abs(value))) - digits + 1)
    scaled = round(value / unit, 6)
    steps = round(scaled) if direction == 0 else (math.floor(scaled) if direction < 0 else math.ceil(scaled))
    return float(f"{steps * unit:.{digits}g}")


def snap(rng: Range, value: float) -> float:
    """``value`` rounded to :data:`DIGITS` significant digits, kept inside ``rng`` and allowed by the config."""
    for direction in (0, -1, 1):
        candidate = _significant(value, direction=direction)
        if rng.contains(candidate) and _allowed(rng.name, candidate):
            return candidate
    return value


def quasi_points(
    ranges: Sequence[Range],
    n: int,
    seed: int = 0,
    stream: int = 0,
    keep: Callable[[dict[str, float]], bool] | None = None,
) -> list[dict[str, float]]:
    """``n`` distinct points of a scrambled Halton sequence over ``ranges`` (fixed by ``seed`` and ``stream``),
    rounded (:func:`snap`); with ``keep``, only the points it accepts (the sequence is read on until ``n``)."""
    from scipy.stats import qmc

    sampler = qmc.Halton(d=len(ranges), scramble=True, seed=np.random.default_rng([seed, stream]))
    points: list[dict[str, float]] = []
    seen: set[tuple[float, ...]] = set()
    for _ in range(200):
        for row in sampler.random(max(n, 16)):
            point = {rng.name: snap(rng, rng.value_at(float(u))) for rng, u in zip(ranges, row, strict=True)}
            key = tuple(point.values())
            if key in seen or (keep is not None and not keep(point)):
                continue
            seen.add(key)
            points.append(point)
            if len(points) == n:
                return points
    raise StudyError(f"cannot draw {n} distinct points over {[r.text() for r in ranges]}: the ranges are too narrow")


def rung_sizes(n_points: int, n_rungs: int, eta: int) -> list[int]:
    """Points per rung: ``n_points``, then ``ceil(previous / eta)`` at each next rung."""
    sizes = [n_points]
    for _ in range(n_rungs - 1):
        sizes.append(math.ceil(sizes[-1] / eta))
    return sizes


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

    def text(self) -> str:
        rungs = "/".join(map(str, self.sizes)) + " points at " + "/".join(map(str, self.rungs)) + " epochs per arm"
        return (
            f"cost before training (trial-equivalents: one trial at {self.rungs[-1]} epochs = 1): halving "
            f"{self.halving:.4g} (tuning {self.tuning:.4g} + re-measure {self.remeasure}) vs "
            f"{self.without:.4g} without halving: {100 * self.ratio:.1f}% ({rungs}; each range extension of an "
            f"arm adds {self.extension:.4g})"
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


@dataclass
class HalvingGrid(TunedGrid):
    """The outcome of :func:`run_halving`: a :class:`TunedGrid` with the rungs, extensions and decisions."""

    rung_epochs: list[int] = field(default_factory=list)
    eta: int = DEFAULT_ETA
    n_points: int = DEFAULT_POINTS
    cost: HalvingCost | None = None

    def summary(self) -> pd.DataFrame:
        """:meth:`TunedGrid.summary` plus ``extensions`` and ``decided`` (``yes`` or :data:`NOT_DECIDED`)."""
        frame = super().summary()
        if len(frame):
            frame["extensions"] = [len(arm.extensions) for arm in self.arms]
            frame["decided"] = [arm.verdict() for arm in self.arms]
        return frame

    def effects(self) -> pd.DataFrame:
        """:meth:`TunedGrid.effects` plus ``decided``: ``yes`` only when both arms of an effect are decided."""
        frame = super().effects()
        if len(frame):
            reference = self.arms[0]
            frame["decided"] = [
                "yes" if arm.decided and reference.decided else NOT_DECIDED for arm in self.arms[1 : len(frame) + 1]
            ]
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


@dataclass
class _Study:
    """Everything one halving pass needs (so the helpers stay short)."""

    base: TrialConfig
    arms: list[dict[str, Any]]
    rungs: list[int]
    eta: int
    tune_seeds: list[int]
    rule: str
    experiment: str
    data: DataSpec
    tags: dict[str, str]
    options: dict[str, Any]


def check_design(
    base: TrialConfig, roles: Roles, ranges: Sequence[Range], rungs: Sequence[int], eta: int, n_points: int, **more: Any
) -> None:
    """The halving design can run: rungs, ``eta``, points, extensions and tuning seeds (one-line errors)."""
    check_seeds(more["tune_seeds"], more["seeds"])
    if len(set(more["tune_seeds"])) < 2:
        raise StudyError("halving needs at least 2 tuning seeds (a rung keeps points by their mean), e.g. 100,101")
    if len({r.name for r in ranges}) < len(ranges):
        raise StudyError("a range is given twice; give each --tune NAME=LOW:HIGH once")
    if "epochs" in roles.scientific:
        raise StudyError("'epochs' is the rungs' budget; it cannot be a --factor of a halving study")
    if not rungs or any(int(r) != r or r < 1 for r in rungs) or list(rungs) != sorted(set(rungs)):
        raise StudyError(f"rungs {list(rungs)}: give rising whole numbers of epochs, e.g. --halving 1,3,9")
    if rungs[-1] != base.train.epochs:
        raise StudyError(
            f"rungs {list(rungs)}: the last rung must equal the claim's budget, epochs={base.train.epochs}; "
            f"give --halving ...,{base.train.epochs} or --set epochs={rungs[-1]}"
        )
    if int(eta) != eta or eta < 2:
        raise StudyError(f"eta={eta}: keep 1/eta of the points per rung; give a whole number >= 2 (--eta 3)")
    if n_points < 1 or more["max_extensions"] < 0:
        raise StudyError("points must be >= 1 and max extensions >= 0 (--points 27 --max-extensions 2)")


def plan_halving(
    base: TrialConfig | dict[str, Any] | None,
    scientific: dict[str, Sequence[Any]],
    ranges: Sequence[Range],
    tune_seeds: Sequence[int],
    seeds: Sequence[int],
    rungs: Sequence[int],
    eta: int = DEFAULT_ETA,
    n_points: int = DEFAULT_POINTS,
    max_extensions: int = DEFAULT_MAX_EXTENSIONS,
    seed: int = 0,
) -> tuple[TrialConfig, Roles, list[dict[str, float]]]:
    """Validate the whole design before anything is written: the base, roles, rungs, and every rung-0 trial
    of every arm. Returns the base config, the roles and the first round's points."""
    base_config = base if isinstance(base, TrialConfig) else TrialConfig.from_flat(base or {})
    fixed = dict(base) if isinstance(base, dict) else {}
    roles = Roles(dict(scientific), {r.name: [r.low, r.high] for r in map(check_range, ranges)}, fixed)
    more = {"tune_seeds": list(tune_seeds), "seeds": list(seeds), "max_extensions": max_extensions}
    check_design(base_config, roles, ranges, list(rungs), eta, n_points, **more)
    points = quasi_points(ranges, n_points, seed)
    for arm in _arm_values(roles):
        for epochs in rungs:
            grid.point_configs(base_config, [arm | p | {"epochs": epochs} for p in points], tune_seeds[:1])
    return base_config, roles, points


def _arm_values(roles: Roles) -> list[dict[str, Any]]:
    import itertools

    names = list(roles.scientific)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*roles.scientific.values())]


def _score_table(
    results: list[TrialResult], study: _Study, arm: int, points: dict[int, dict[str, float]], epochs: int
) -> pd.DataFrame:
    """Mean score over the tuning seeds of each point (index -> point) of one arm at ``epochs``; NaN unless
    every tuning seed finished."""
    rows = []
    for index, point in points.items():
        wanted = study.arms[arm] | point | {"epochs": epochs}
        done = [s for s in (trial_score(r, study.rule) for r in results if _matches(r, wanted)) if not math.isnan(s)]
        complete = len(done) == len(set(study.tune_seeds))
        rows.append(point | {"point": index, "score": sum(done) / len(done) if complete else math.nan})
        rows[-1]["finished"] = len(done)
    return pd.DataFrame(rows)


def _top(table: pd.DataFrame, keep: int) -> list[int]:
    """The ``keep`` best complete points (ties: the earlier point), deterministic."""
    done = table[table["score"].notna()].sort_values(["score", "point"], ascending=[False, True], kind="stable")
    return [int(index) for index in done["point"].head(keep)]


def _halve(study: _Study, points: dict[int, list[dict[str, float]]], round_: int) -> dict[int, pd.DataFrame]:
    """One pass of successive halving for the arms in ``points`` (arm -> its points): one
    :func:`grid.run_trials` call per rung for all of them. Returns each arm's table of every rung."""
    alive = {arm: dict(enumerate(items)) for arm, items in points.items()}
    tables: dict[int, list[pd.DataFrame]] = {arm: [] for arm in points}
    for rung, epochs in enumerate(study.rungs):
        wanted = [study.arms[arm] | p | {"epochs": epochs} for arm in alive for p in alive[arm].values()]
        if not wanted:
            break
        tags = study.tags | {TAG_PHASE: "tune", "rung": str(rung), "rung_epochs": str(epochs), "extension": str(round_)}
        configs = grid.point_configs(study.base, wanted, study.tune_seeds)
        results = _unique(grid.run_trials(configs, study.experiment, study.data, tags, **study.options))
        _tag_cached(results, tags)
        last = rung == len(study.rungs) - 1
        for arm in [arm for arm in alive if alive[arm]]:
            table = _score_table(results, study, arm, alive[arm], epochs)
            kept = _top(table, len(table) if last else math.ceil(len(table) / study.eta))
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


def _tune(study: _Study, arms: list[HalvingArm], points: list[dict[str, float]], **how: Any) -> None:
    """Round 0 for every arm, then up to ``max_extensions`` extension rounds for the arms on a movable edge."""
    last = len(study.rungs) - 1
    names = list(arms[0].ranges)
    pending = {index: points for index in range(len(arms))}
    for round_ in range(how["max_extensions"] + 1):
        for index, table in _halve(study, pending, round_).items():
            arm = arms[index]
            arm.rungs = pd.concat([arm.rungs, table], ignore_index=True) if len(arm.rungs) else table
            arm.tuning = _final(arm, last)
            arm.winner = _winner(arm.tuning, names)
        moving = [index for index, arm in enumerate(arms) if _on_edge(arm)]
        if round_ == how["max_extensions"] or not moving:
            break
        pending = {i: _extend(arms[i], i, round_ + 1, how["n_points"], how["seed"], how["log"]) for i in moving}
    for arm in arms:
        arm.decided = not _on_edge(arm)


def _remeasure(
    study: _Study,
    arms: list[HalvingArm],
    seeds: Sequence[int],
    fixed_nuisance: dict[str, Any],
    fixed_seeds: Sequence[int] | None = None,
) -> None:
    """Each arm's winner on the fresh ``seeds`` and the fixed-nuisance configuration on ``fixed_seeds``
    (default: the same seeds; ``[]``: none), in one call; the winner runs get the arm's ``tuning_decided``,
    ``tuning_ranges`` and ``range_extensions`` tags."""
    fixed_on = list(seeds) if fixed_seeds is None else list(fixed_seeds)
    configs = []
    for arm in arms:
        if fixed_on:
            configs += grid.point_configs(study.base, [arm.value | fixed_nuisance], fixed_on)
        if arm.winner:
            configs += grid.point_configs(study.base, [arm.value | arm.winner], seeds)
    tags = study.tags | {TAG_PHASE: "remeasure"}
    results = _unique(grid.run_trials(configs, study.experiment, study.data, tags, **study.options))
    _tag_cached(results, tags)
    for arm in arms:
        arm.fixed = [r for r in results if _matches(r, arm.value | fixed_nuisance)]
        arm.remeasured = [r for r in results if arm.winner and _matches(r, arm.value | arm.winner)]
        verdict = {"tuning_decided": arm.verdict(), "range_extensions": json.dumps(arm.extensions)}
        verdict["tuning_ranges"] = " ".join(rng.text() for rng in arm.ranges.values())
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
    rungs: Sequence[int],
    eta: int = DEFAULT_ETA,
    n_points: int = DEFAULT_POINTS,
    max_extensions: int = DEFAULT_MAX_EXTENSIONS,
    rule: str = "last",
    seed: int = 0,
    log: Callable[[str], None] | None = print,
    winner_hypothesis: str | None = None,
    fixed_seeds: Sequence[int] | None = None,
    fixed_hypothesis: str | None = None,
    **options: Any,
) -> HalvingGrid:
    """Tune ``ranges`` per scientific value by successive halving with range extension, then re-measure each
    arm's winner and the fixed-nuisance configuration on the fresh ``seeds`` (module docstring).

    ``base``'s ``epochs`` is the claim's budget and must equal ``rungs[-1]``. ``log`` gets one line per
    extension (``None``: silent). ``fixed_seeds``: the seeds of the fixed-nuisance re-measure (default
    ``seeds``; ``[]``: skip it); ``winner_hypothesis``/``fixed_hypothesis`` are added to the ``hypotheses``
    tag of the re-measured winners / fixed-nuisance runs.
    ``options`` are :func:`lib.engine.grid.run_trials`' (``workers``,
    ``progress``, ``engine``).
    """
    check_rule(rule)
    grid.check_engine(options.get("engine", "local"))
    design = {"rungs": list(rungs), "eta": eta, "n_points": n_points, "max_extensions": max_extensions, "seed": seed}
    base_config, roles, points = plan_halving(base, scientific, ranges, tune_seeds, seeds, **design)
    identity = halving_id(experiment, roles, ranges, data, tune_seeds=list(tune_seeds), seeds=list(seeds), **design)
    fixed_nuisance = {rng.name: base_config.flat()[rng.name] for rng in ranges}
    common = (tags or {}) | roles.tags() | {TAG_TUNING_ID: identity, TAG_CHECKPOINT_RULE: rule}
    common |= {TAG_FIXED_NUISANCE: json.dumps(fixed_nuisance, default=str), "halving_rungs": ",".join(map(str, rungs))}
    common["halving_eta"] = str(eta)
    common["tune_seeds"] = ",".join(map(str, tune_seeds))
    values = _arm_values(roles)
    study = _Study(base_config, values, list(rungs), eta, list(tune_seeds), rule, experiment, data, common, options)
    arms = [HalvingArm(value, pd.DataFrame(), None, ranges={r.name: r for r in ranges}) for value in values]
    _tune(study, arms, points, max_extensions=max_extensions, n_points=n_points, seed=seed, log=log)
    _remeasure(study, arms, seeds, fixed_nuisance, fixed_seeds)
    winners = [store.stored_run(r.run_id) for arm in arms for r in arm.remeasured if r.run_id]
    records.add_hypothesis(winners, winner_hypothesis)
    fixed_runs = [store.stored_run(r.run_id) for arm in arms for r in arm.fixed if r.run_id]
    records.add_hypothesis(fixed_runs, fixed_hypothesis)
    cost = halving_cost(n_points, list(rungs), eta, len(set(tune_seeds)), len(seeds), len(arms))
    return HalvingGrid(
        roles, list(arms), list(tune_seeds), list(seeds), rule, identity, fixed_nuisance,
        rung_epochs=list(rungs), eta=eta, n_points=n_points, cost=cost,
    )  # fmt: skip
