"""Statistics for honest verdicts: group means with 95% CIs, paired effects, verdict rules.

Every comparison in the study is between arms that share seeds (same seed = same initial weights
and data order), so effects are computed per seed and then averaged (a paired design). With only a
handful of seeds the t distribution gives the honest interval; a percentile bootstrap over seeds
is reported next to it (it is too narrow for n < 5, which the notebooks point out).

Verdict rule (fixed before looking at the data): an effect predicted to be positive is
``supported`` when its whole 95% CI lies above zero, ``contradicted`` when it lies below zero, and
``inconclusive`` otherwise. Predictions of "little or no gain" use a margin instead of zero.

**Multiplicity.** Reading many such intervals as verdicts inflates the chance that at least one is
wrong. Claims are therefore grouped into declared *families* (``lib.study.analysis`` lists them) and each
family is decided with Holm's step-down method at a family-wise error rate of 5%
(:func:`holm`): every claim's two-sided paired t-test p-value (against zero, or against the claim's
margin) is adjusted, a claim whose adjusted p-value is below 0.05 is decided in the direction of its
effect (``supported`` or ``contradicted``; directional decisions after Holm as in Shaffer, 1980),
the rest are ``inconclusive``. The raw interval rule and the raw p-value rule agree exactly (a 95%
t-interval excludes the margin iff p < 0.05), so the adjusted decision is never bolder than the raw
verdict. Holm is uniformly more powerful than Bonferroni and needs no independence between claims.

**Degenerate intervals.** Identical per-seed differences (two arms that are the same trial, or a
measurement that is coarser than the seed noise, such as a learning-rate range on a grid) give a
standard deviation of 0, a zero-width interval and p = 0: certainty that the data do not have. The
guard: the standard deviation is never taken below a declared resolution floor (``min_sd``: for a
quantity measured on a grid of step h, each value carries a rounding error of variance h²/12, so a
difference of two carries at least h²/6); with no floor, an interval of zero width is reported as
``nan`` and its claim is ``inconclusive`` (flagged ``degenerate``), never decided.

**The test result** (:func:`combined_test_interval`) combines two independent sources of error: the seed
noise of the mean over the final seeds (s²/k) and the sampling error of a finite test set
(p(1-p)/n_test; the final models are scored on the same images, so this term does not shrink with
k). The t quantile keeps the seeds' k - 1 degrees of freedom, so the combined interval is never
narrower than the seed-only one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats


def mean_ci(values: Sequence[float], confidence: float = 0.95, min_sd: float = 0.0) -> tuple[float, float, float]:
    """Mean and t-based confidence interval.

    ``nan`` bounds for a single value, and for values without spread unless ``min_sd`` > 0 (the
    zero-width guard, see the module docstring): the standard deviation used is ``max(sd, min_sd)``.
    """
    array = np.asarray([v for v in values if v == v], dtype=float)
    if array.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(array.mean())
    if array.size < 2:
        return mean, float("nan"), float("nan")
    sd = max(float(array.std(ddof=1)), min_sd)
    if sd == 0:
        return mean, float("nan"), float("nan")
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, array.size - 1) * sd / np.sqrt(array.size))
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
    sd: float = float("nan")  # standard deviation used for the interval (after the min_sd floor)
    degenerate: bool = False  # the per-seed values had no spread (and no floor was given)

    def p_value(self, margin: float = 0.0) -> float:
        """Two-sided one-sample t-test p-value of the per-seed differences against ``margin``.

        ``nan`` when the interval is undefined (fewer than two seeds, or a degenerate interval).
        """
        if self.n < 2 or self.degenerate or not self.sd > 0:
            return float("nan")
        t = (self.mean - margin) / (self.sd / np.sqrt(self.n))
        return float(2 * scipy_stats.t.sf(abs(t), self.n - 1))

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


def paired_effect(treatment: pd.Series, control: pd.Series, name: str = "effect", min_sd: float = 0.0) -> Effect:
    """Effect of treatment over control; both indexed by seed (values averaged per seed first).

    ``min_sd``: the resolution floor of the zero-width guard (module docstring).
    """
    treatment = treatment.groupby(level=0).mean()
    control = control.groupby(level=0).mean()
    diffs = (treatment - control).dropna()
    mean, low, high = mean_ci(diffs.tolist(), min_sd=min_sd)
    boot_low, boot_high = bootstrap_ci(diffs.tolist())
    raw_sd = float(diffs.std(ddof=1)) if diffs.size >= 2 else float("nan")
    sd = max(raw_sd, min_sd) if diffs.size >= 2 else float("nan")
    degenerate = bool(diffs.size >= 2 and sd == 0)
    return Effect(name, mean, low, high, boot_low, boot_high, int(diffs.size), sd, degenerate)


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


def holm(p_values: Sequence[float], alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down adjustment: (adjusted p-values, rejected?) in the input order.

    Sort the m p-values ascending; the i-th smallest (i = 1..m) is multiplied by m - i + 1, the
    running maximum keeps the adjusted values monotone, and they are capped at 1. A hypothesis is
    rejected when its adjusted p-value is below ``alpha``; this controls the probability of any
    false rejection in the family at ``alpha``. ``nan`` p-values (undefined tests) count in m and
    are never rejected.
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    filled = np.where(np.isnan(p), 1.0, p)
    order = np.argsort(filled, kind="stable")
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * filled[order]))
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    adjusted[np.isnan(p)] = np.nan
    return adjusted, np.nan_to_num(adjusted, nan=1.0) < alpha


def decide(
    effect: float, p_adjusted: float, margin: float = 0.0, direction: str = "greater", alpha: float = 0.05
) -> str:
    """The adjusted decision of one claim: rejected null -> the side of the effect decides."""
    if not p_adjusted < alpha:
        return "inconclusive"
    above = effect > margin
    return "supported" if above == (direction == "greater") else "contradicted"


def combined_test_interval(accuracies: Sequence[float], n_test: int, confidence: float = 0.95) -> dict[str, float]:
    """Mean test accuracy with an interval for seed noise *and* test-set sampling error.

    Variance of the reported number: s²/k (seed noise of the mean over k final seeds) plus
    p(1-p)/n_test (binomial sampling error of one finite test set, shared by all k models because
    they are scored on the same images, so it does not shrink with k). The t quantile keeps the
    seed term's k - 1 degrees of freedom (conservative: Welch-Satterthwaite would give more, and an
    interval narrower than the seed-only one); identical seeds leave the test term, never a zero width.
    """
    array = np.asarray([v for v in accuracies if v == v], dtype=float)
    k = array.size
    if k == 0 or n_test < 1:
        raise ValueError(f"need at least one accuracy and n_test >= 1; got {k} values, n_test={n_test}")
    mean = float(array.mean())
    v_seed = float(array.var(ddof=1)) / k if k >= 2 else float("nan")
    v_test = mean * (1 - mean) / n_test
    if k < 2:  # no seed noise estimate: the test-set term alone, with a normal quantile (a lower bound)
        v_seed, df = 0.0, float("inf")
    else:
        df = float(k - 1)
    quantile = float(
        scipy_stats.norm.ppf(0.5 + confidence / 2) if np.isinf(df) else scipy_stats.t.ppf(0.5 + confidence / 2, df)
    )
    half = quantile * float(np.sqrt(v_seed + v_test))
    seed_half = float(scipy_stats.t.ppf(0.5 + confidence / 2, k - 1) * np.sqrt(v_seed)) if k >= 2 else float("nan")
    return {
        "mean": mean,
        "low": mean - half,
        "high": mean + half,
        "half_width": half,
        "seed_only_half_width": seed_half,
        "test_sampling_sd": float(np.sqrt(v_test)),
        "seed_sd_of_mean": float(np.sqrt(v_seed)),
        "df": df,
        "n_seeds": k,
        "n_test": n_test,
    }


def usable_lr_run(frame: pd.DataFrame, tolerance: float, reference: float) -> tuple[float, float, float]:
    """(width in decades, lowest lr, highest lr) of the widest contiguous run of usable learning rates.

    A learning rate is usable when its accuracy is within ``tolerance`` of ``reference``. ``frame``
    has columns ``lr`` and ``val_accuracy`` (one seed or already averaged); a single good value has
    width 0; no good value gives ``(nan, nan, nan)``.
    """
    means = frame.groupby("lr")["val_accuracy"].mean().sort_index()
    good = means >= reference - tolerance
    best, start = (-np.inf, float("nan"), float("nan")), None
    lrs = means.index.to_numpy()
    for i, ok in enumerate(good.to_numpy()):
        if ok and start is None:
            start = i
        if start is not None and (not ok or i == len(lrs) - 1):
            end = i if ok else i - 1
            width = float(np.log10(lrs[end] / lrs[start]))
            if width > best[0]:
                best = (width, float(lrs[start]), float(lrs[end]))
            start = None
    return best if np.isfinite(best[0]) else (float("nan"), float("nan"), float("nan"))


def usable_lr_decades(frame: pd.DataFrame, tolerance: float, reference: float) -> float:
    """Width (in decades) of the learning-rate range whose accuracy is within ``tolerance`` of ``reference``.

    ``frame`` has columns ``lr`` and ``val_accuracy`` (one seed or already averaged). Only a
    contiguous run of good learning rates counts; a single good value has width 0.
    """
    return usable_lr_run(frame, tolerance, reference)[0]


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
