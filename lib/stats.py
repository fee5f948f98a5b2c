"""Statistics for honest verdicts: group means with 95% CIs, paired effects, verdict rules.

Every comparison in the study is between arms that share seeds (same seed = same initial weights
and data order), so effects are computed per seed and then averaged (a paired design). With only a
handful of seeds the t distribution gives the honest interval; a percentile bootstrap over seeds
is reported next to it (it is too narrow for n < 5, which the notebooks point out).

Verdict rule (fixed before looking at the data): an effect predicted to be positive is
``supported`` when its whole 95% CI lies above zero, ``contradicted`` when it lies below zero, and
``inconclusive`` otherwise. Predictions of "little or no gain" use a margin instead of zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and t-based confidence interval (``nan`` half-width for a single value)."""
    array = np.asarray([v for v in values if v == v], dtype=float)
    if array.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(array.mean())
    if array.size < 2:
        return mean, float("nan"), float("nan")
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, array.size - 1) * array.std(ddof=1) / np.sqrt(array.size))
    return mean, mean - half, mean + half


def bootstrap_ci(
    values: Sequence[float], confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (scipy); ``nan`` for fewer than two values."""
    array = np.asarray([v for v in values if v == v], dtype=float)
    if array.size < 2 or np.all(array == array[0]):
        return (float(array[0]), float(array[0])) if array.size >= 2 else (float("nan"), float("nan"))
    result = scipy_stats.bootstrap(
        (array,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def summarize(frame: pd.DataFrame, by: str | list[str], value: str = "val_accuracy") -> pd.DataFrame:
    """Per group: n, mean, standard deviation and the 95% t-interval of ``value``."""
    rows = []
    for key, group in frame.groupby(by, sort=True, dropna=False):
        mean, low, high = mean_ci(group[value].tolist())
        keys = key if isinstance(key, tuple) else (key,)
        names = by if isinstance(by, list) else [by]
        rows.append(
            dict(zip(names, keys, strict=True))
            | {
                "n": int(group[value].notna().sum()),
                "mean": mean,
                "std": float(group[value].std(ddof=1)),
                "ci_low": low,
                "ci_high": high,
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Effect:
    """A paired effect ``treatment - control`` across seeds, with its 95% CIs."""

    name: str
    mean: float
    ci_low: float
    ci_high: float
    boot_low: float
    boot_high: float
    n: int

    def as_dict(self) -> dict[str, float | str | int]:
        return {
            "effect": self.name,
            "mean_diff": self.mean,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "boot_low": self.boot_low,
            "boot_high": self.boot_high,
            "n_seeds": self.n,
        }


def paired_effect(treatment: pd.Series, control: pd.Series, name: str = "effect") -> Effect:
    """Effect of treatment over control; both indexed by seed (values averaged per seed first)."""
    treatment = treatment.groupby(level=0).mean()
    control = control.groupby(level=0).mean()
    diffs = (treatment - control).dropna()
    mean, low, high = mean_ci(diffs.tolist())
    boot_low, boot_high = bootstrap_ci(diffs.tolist())
    return Effect(name, mean, low, high, boot_low, boot_high, int(diffs.size))


def per_seed(frame: pd.DataFrame, value: str = "val_accuracy", **where: object) -> pd.Series:
    """``value`` indexed by seed for the rows matching ``where`` (a value may also be a list)."""
    mask = pd.Series(True, index=frame.index)
    for column, wanted in where.items():
        mask &= frame[column].isin(wanted) if isinstance(wanted, list | tuple) else frame[column] == wanted
    rows = frame[mask]
    return rows.set_index("seed")[value]


def verdict(effect: Effect, margin: float = 0.0, direction: str = "greater") -> str:
    """``supported`` / ``contradicted`` / ``inconclusive`` by the module's fixed rule.

    ``direction="greater"``: the prediction is effect > margin. ``direction="less"``: the
    prediction is effect < margin (e.g. "more blocks give little": gain below half a point).
    """
    if effect.n < 2 or effect.ci_low != effect.ci_low:
        return "inconclusive"
    if direction == "greater":
        if effect.ci_low > margin:
            return "supported"
        if effect.ci_high < margin:
            return "contradicted"
        return "inconclusive"
    if effect.ci_high < margin:
        return "supported"
    if effect.ci_low > margin:
        return "contradicted"
    return "inconclusive"


def usable_lr_decades(frame: pd.DataFrame, tolerance: float, reference: float) -> float:
    """Width (in decades) of the learning-rate range whose accuracy is within ``tolerance`` of ``reference``.

    ``frame`` has columns ``lr`` and ``val_accuracy`` (one seed or already averaged). Only a
    contiguous run of good learning rates counts; a single good value has width 0.
    """
    means = frame.groupby("lr")["val_accuracy"].mean().sort_index()
    good = means >= reference - tolerance
    best_width, start = -np.inf, None
    lrs = means.index.to_numpy()
    for i, ok in enumerate(good.to_numpy()):
        if ok and start is None:
            start = i
        if start is not None and (not ok or i == len(lrs) - 1):
            end = i if ok else i - 1
            best_width = max(best_width, float(np.log10(lrs[end] / lrs[start])))
            start = None
    return float(best_width) if np.isfinite(best_width) else float("nan")


def eta_squared(frame: pd.DataFrame, column: str, value: str = "val_accuracy", bins: int = 4) -> float:
    """Share of the variance of ``value`` explained by ``column`` (numbers binned into quantiles).

    A simple, assumption-light hyperparameter-importance measure for sweep results.
    """
    data = frame[[column, value]].dropna()
    if data[column].nunique() < 2 or len(data) < 3:
        return 0.0
    groups = data[column]
    if pd.api.types.is_numeric_dtype(groups) and groups.nunique() > bins:
        groups = pd.qcut(groups.rank(method="first"), bins, labels=False)
    total = float(((data[value] - data[value].mean()) ** 2).sum())
    if total == 0:
        return 0.0
    between = float(data.groupby(groups)[value].apply(lambda g: len(g) * (g.mean() - data[value].mean()) ** 2).sum())
    return between / total
