"""Nuisance ranges: :class:`Range` (``lr=3e-4:3e-2:log``), parsed, checked, widened at an edge, and the
quasi-random points drawn over them.

A range is ``[low, high]`` of one real-valued hyperparameter, on a log scale if asked. :func:`parse_range`
reads the command line's form and :func:`check_range` holds it to the config (a known real-valued field,
``low < high``, inside the hard bounds of :func:`lib.config.hard_bounds`). :func:`quasi_points` draws the
scrambled Halton points (``scipy.stats.qmc``, seeded) a halving study trains, each value rounded to
:data:`DIGITS` significant digits (stable cache keys). :meth:`Range.edge_sides` and :meth:`Range.extended`
are the rule by which a winner in the outer :data:`EDGE` of a movable side widens the range.

What this is not: successive halving itself (``lib.engine.halving``, which uses these) or a search space of
a sweep (``lib.engine.search``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lib.config import ConfigError, ModelConfig, TrainConfig, TrialConfig, check_known_fields, hard_bounds
from lib.engine.backend import StudyError

EDGE = 0.10  # the outer share of a range that counts as its edge (the same as lib.report.EDGE)
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
