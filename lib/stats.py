"""Statistics for honest verdicts: group means with 95% CIs, paired effects, verdict rules.

Every comparison in the study is between arms that share seeds (same seed = same initial weights
and data order), so effects are computed per seed and then averaged (a paired design). With only a
handful of seeds the t distribution gives the honest interval; a percentile bootstrap over seeds
is reported next to it (it is too narrow for n < 5, which the notebooks point out).

Verdict rule (fixed before looking at the data): an effect predicted to be positive is
``supported`` when its whole 95% CI lies above zero, ``contradicted`` when it lies below zero, and
``not shown`` otherwise (:data:`NOT_SHOWN`: the data could not decide; never "no effect"). Predictions of
"little or no gain" use a margin instead of zero.

**Multiplicity.** Reading many such intervals as verdicts inflates the chance that at least one is
wrong. Claims are therefore grouped into declared *families* (``lib.study.registry`` declares them) and each
family is decided with Holm's step-down method at a family-wise error rate of 5%
(:func:`holm`): every claim's two-sided paired t-test p-value (against zero, or against the claim's
margin) is adjusted, a claim whose adjusted p-value is below 0.05 is decided in the direction of its
effect (``supported`` or ``contradicted``; directional decisions after Holm as in Shaffer, 1980),
the rest are ``not shown``. The raw interval rule and the raw p-value rule agree exactly (a 95%
t-interval excludes the margin iff p < 0.05), so the adjusted decision is never bolder than the raw
verdict. Holm is uniformly more powerful than Bonferroni and needs no independence between claims.

**Degenerate intervals.** Identical per-seed differences (two arms that are the same trial, or a
measurement that is coarser than the seed noise, such as a learning-rate range on a grid) give a
standard deviation of 0, a zero-width interval and p = 0: certainty that the data do not have. The
guard: the standard deviation is never taken below a declared resolution floor (``min_sd``: for a
quantity measured on a grid of step h, each grid point carries a rounding error of variance h²/12; a
width is the difference of two such points (h²/6), and a paired effect of two widths the difference of
two widths, so at least 4 x h²/12 = h²/3: the floor is h/√3); with no floor, an interval of zero width
is reported as ``nan`` and its claim is ``not shown`` (flagged ``degenerate``), never decided.

**Censored values.** A quantity that does not exist for some seed (no usable learning rate at all: a
range "below zero width") is not given an invented value. :func:`sign_test` decides such a paired
comparison from the signs alone (a censored value ranks below every observed one), exactly
(binomial), and :func:`median_ci` gives the distribution-free interval of the median difference.

**Two sources of uncertainty.** A paired t-interval over seeds is conditional on the one validation
set. :func:`two_source_effect` (per-run, per-image correctness) also covers which images were drawn: the
same for every seed, a term that does not average out over seeds. Its variance is the two-way (seeds x
images) random-effects estimate: the variance of the per-seed differences over k (each seed's run noise
on the fixed images included, k - 1 df) plus the shared image term, the variance of the per-image
differences averaged over seeds less the run noise the seed term already holds, over n (about n - 1
df). The quantile is t with the Welch-Satterthwaite df of the two, never narrower than the seeds' own
t-interval, and the p-value the matching t-test (``method="two-way t"``). It replaced a percentile
bootstrap over seeds and images, which shrank the seed variance by (k - 1)/k and used normal-like
quantiles (too narrow where seeds dominate: it covered about 88% at k = 5 in tests/test_intervals.py's
simulation, the new interval about 95%). Every :class:`Effect` says which sources it covers
(``uncertainty``: ``seeds``, ``images`` for one seed, or ``seeds+images``).

**Interactions.** "The effect changed with the budget" is a claim about a difference of two effects;
:func:`difference_of_effects` tests it (paired by seed when both share seeds, Welch otherwise) instead
of comparing which of the two is significant.

**Library code where it fits; our own where it measured better.** The percentile bootstrap over seeds
(:func:`bootstrap_ci`) is ``scipy.stats.bootstrap``, the exact sign test (:func:`sign_test`)
``scipy.stats.binomtest``. The exact sign-flip test (:func:`sign_flip_test`) keeps its own enumeration of the
2^k sign assignments: ``scipy.stats.permutation_test(..., permutation_type="samples", n_resamples=inf)``
enumerates the same assignments, but on 2,700 random inputs (k = 2 to 10; continuous differences, and
accuracy-lattice and decimal values with ties; margins 0, 0.005 and 0.1) it gave another p-value for 13, all
with an observed mean of zero up to rounding: its tie tolerance is relative to the observed mean (100 eps x
|mean|), so there it counts the rounding noise of the other assignments as beyond the mean and gives 0.875 to
0.984 where the exact p is 1 (an enumeration in rational numbers agreed with ours in 12 of the 13; the 13th has
a mean of 8e-18 left by subtracting the margin, which ours counts as 0). It also refuses k = 1 and took 20
times as long (2 ms against 0.1 ms a call, under load). On continuous differences and on the committed H2a row
both give the same p bit for bit; tests/test_stats_analysis.py checks both, and the zero-mean case.

**The test result** (:func:`combined_test_interval`) combines two independent sources of error: the seed
noise of the mean over the final seeds (s²/k) and the sampling error of a finite test set
(p(1-p)/n_test; the final models are scored on the same images, so this term does not shrink with
k). The two variances are estimated with different degrees of freedom (k - 1 for the seeds, n_test - 1
for the binomial term), so the quantile uses the Welch-Satterthwaite degrees of freedom of their sum:
when the test-set term dominates (it usually does, at ~95% of the variance for four seeds), they
run into the hundreds and the quantile is in effect the normal one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from lib.errors import HypertuneError

# The one verdict vocabulary of the package (tables, CSVs, summaries, docs): an interval that covers the
# margin decides nothing, and reads "not shown", never "no effect" (nor "inconclusive", an older word).
SUPPORTED, CONTRADICTED, NOT_SHOWN = "supported", "contradicted", "not shown"
VERDICTS = (SUPPORTED, CONTRADICTED, NOT_SHOWN)
COLLAPSE_MARGIN = 0.05  # a finished trial within 5 points of chance accuracy (1 / classes) has collapsed


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
    """A paired effect ``treatment - control`` across seeds, with its 95% CIs.

    ``method`` says how its p-value is computed: ``t`` (one-sample t-test of the per-seed differences),
    ``two-way t`` (a t-test of the effect over its standard error from the variance ``terms``, with their
    Welch-Satterthwaite degrees of freedom, see :func:`two_source_effect`), ``bootstrap`` (the share of
    bootstrap ``draws`` beyond the margin, two-sided; no function here makes one any more) or ``sign``
    (exact sign test of the per-seed ``diffs``, for censored values). ``uncertainty``: the sources its
    interval covers, ``seeds``, ``images`` or ``seeds+images``. ``diffs``: ``(seed, difference)`` pairs,
    and for ``two-way t`` also ``per_image`` (the ``(seeds, images)`` differences, rows in ``diffs``' order),
    kept so that a difference of two effects can be tested (:func:`difference_of_effects`). ``sd``: for
    ``two-way t`` the standard error of ``mean`` itself.
    """

    name: str
    mean: float
    ci_low: float
    ci_high: float
    boot_low: float
    boot_high: float
    n: int
    sd: float = float("nan")  # standard deviation used for the interval (after the min_sd floor)
    degenerate: bool = False  # the per-seed values had no spread (and no floor was given)
    method: str = "t"
    uncertainty: str = "seeds"
    diffs: tuple[tuple[object, float], ...] = ()
    draws: tuple[float, ...] = field(default=(), repr=False)
    df: float = float("nan")  # degrees of freedom of the t-test when not n - 1 (Welch)
    # two-way t: (source, variance of the mean, degrees of freedom) per term, source "seeds" or "images"
    terms: tuple[tuple[str, float, float], ...] = ()
    per_image: np.ndarray | None = field(default=None, repr=False, compare=False)

    def p_value(self, margin: float = 0.0) -> float:
        """Two-sided p-value of the effect against ``margin`` by the effect's ``method``.

        ``nan`` when the test is undefined (fewer than two seeds, or a degenerate interval).
        """
        if self.method == "bootstrap":
            draws = np.asarray(self.draws, dtype=float)
            if draws.size == 0:
                return float("nan")
            tail = min(np.mean(draws <= margin), np.mean(draws >= margin))
            return float(min(1.0, 2 * max(tail, 1 / (draws.size + 1))))
        if self.method == "sign":
            return sign_test([value - margin for _, value in self.diffs])
        if self.method == "sign-flip":
            return sign_flip_test([value for _, value in self.diffs], margin)
        if self.method == "two-way t":
            return float("nan") if self.degenerate or not self.terms else _two_way_p(self.mean - margin, self.terms)
        if self.n < 2 or self.degenerate or not self.sd > 0:
            return float("nan")
        t = (self.mean - margin) / (self.sd / np.sqrt(self.n))
        return float(2 * scipy_stats.t.sf(abs(t), self.df if self.df == self.df else self.n - 1))

    def as_dict(self) -> dict[str, float | str | int]:
        return {
            "effect": self.name,
            "mean_diff": self.mean,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "boot_low": self.boot_low,
            "boot_high": self.boot_high,
            "n_seeds": self.n,
            "uncertainty": self.uncertainty,
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
    pairs = tuple((seed, float(value)) for seed, value in diffs.items())
    return Effect(name, mean, low, high, boot_low, boot_high, int(diffs.size), sd, degenerate, diffs=pairs)


def two_source_effect(
    treatment: np.ndarray,
    control: np.ndarray,
    name: str = "effect",
    *,
    seeds: Sequence[object] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Effect:
    """Paired effect on accuracy with an interval over seeds *and* validation images (a two-way t-interval).

    ``treatment`` and ``control``: per-run, per-image correctness (0/1 or booleans), shape
    ``(seeds, images)``; row i of both is the same seed, column j the same validation image. The effect
    is the mean over seeds of each seed's accuracy difference d_i. Its variance, for seeds and images
    both drawn at random (a crossed design x_ij = mu + a_i + b_j + r_ij, the ANOVA decomposition of any
    exchangeable seeds x images array, normality not needed), is sigma²_seed/k + sigma²_image/n +
    sigma²_resid/(kn). The sample variance of the d_i over k estimates sigma²_seed + sigma²_resid/n: the
    part that is independent across seeds, the runs' own noise on the fixed images included (k - 1 df).
    What it misses is the shared part, which n images were drawn, the same for every seed: sigma²_image,
    estimated by Var_j(e_j) - MS_resid/k, e_j the per-image difference averaged over seeds (its variance
    holds sigma²_resid/k too, which the seed term already has: subtracting it avoids counting it twice;
    floored at 0). Sum: (MS_seed + MS_image - MS_resid)/(kn), the classical unbiased estimator
    (:func:`two_way_terms`). The quantile is Student's t with the Welch-Satterthwaite df of the two terms,
    never narrower than the seeds' own t-interval (as :func:`combined_test_interval`); the p-value
    (``method="two-way t"``) is the matching two-sided t-test, so the interval excludes a margin exactly
    when p < 1 - ``confidence``. One seed: the image-only interval (``uncertainty="images"``), given that
    seed. No spread at all: a ``nan`` interval, ``degenerate``. Deterministic; ``n_resamples`` and ``seed``
    are accepted for callers of the former bootstrap and not used. What it is not: an interval over
    training subsets or data distributions; the images are a sample of the population they were drawn
    from, the seeds of the seeds', nothing more.
    """
    t, c = np.asarray(treatment, dtype=float), np.asarray(control, dtype=float)
    if t.ndim != 2 or t.shape != c.shape or t.size == 0:
        raise ValueError(f"treatment and control must be (seeds, images) arrays of one shape; got {t.shape}, {c.shape}")
    k = t.shape[0]
    per_image = t - c  # per seed and image: +1, 0 or -1
    labels = list(seeds) if seeds is not None else list(range(k))
    diffs = tuple((label, float(d)) for label, d in zip(labels, per_image.mean(axis=1), strict=True))
    uncertainty = "seeds+images" if k >= 2 else "images"
    return _two_way_effect(name, float(per_image.mean()), two_way_terms(per_image), k, uncertainty, diffs,
                           per_image, confidence)


def two_way_terms(per_image: np.ndarray) -> tuple[tuple[str, float, float], ...]:
    """The variance terms of the grand mean of a seeds x images array: ``(source, variance, df)``.

    ``("seeds", s²(row means)/k, k - 1)`` and ``("images", max(0, MS_image - MS_resid)/(kn), df)``, df
    the Satterthwaite degrees of freedom of that difference of mean squares (n - 1 when the residual is
    small); see :func:`two_source_effect` for why their sum is the variance of the grand mean. One row:
    the image term alone, ``s²(row)/n`` with n - 1 df (conditional on that seed). Not a test by itself.
    """
    x = np.asarray(per_image, dtype=float)
    k, n = x.shape
    if n < 2:
        return (("seeds", float(x[:, 0].var(ddof=1)) / k, k - 1.0),) if k >= 2 else ()
    if k < 2:
        return (("images", float(x[0].var(ddof=1)) / n, n - 1.0),)
    seed_term = ("seeds", float(x.mean(axis=1).var(ddof=1)) / k, k - 1.0)
    return seed_term, _image_term(x.mean(axis=0), [x])


def _image_term(columns: np.ndarray, arrays: Sequence[np.ndarray]) -> tuple[str, float, float]:
    """``("images", sigma²_image / n, df)``: the shared image term of a mean of per-image differences.

    ``columns``: per image, the difference being averaged (a two-way array's column means, or the
    difference of two such); ``arrays``: the independent (seeds, images) arrays behind it. Var_j(columns)
    holds sigma²_image and each array's run noise MS_resid/k, which their seed terms already carry: it is
    subtracted (floored at 0), df by Satterthwaite for that difference of mean squares.
    """
    n = columns.size
    parts = [(float(columns.var(ddof=1)), n - 1.0)]
    for x in arrays:
        k = x.shape[0]
        resid = x - x.mean(axis=1)[:, None] - x.mean(axis=0)[None, :] + float(x.mean())
        parts.append((float((resid**2).sum()) / ((k - 1) * (n - 1)) / k, (k - 1.0) * (n - 1)))
    image = max(0.0, parts[0][0] - sum(v for v, _ in parts[1:]))
    spread = sum(v * v / d for v, d in parts)
    return "images", image / n, float(image**2 / spread) if spread > 0 else n - 1.0


def _two_way_half(terms: Sequence[tuple[str, float, float]], confidence: float = 0.95) -> float:
    """Half-width: t (Welch-Satterthwaite df) x the standard error, at least the seed terms' own t half-width."""
    total = sum(v for _, v, _ in terms)
    half = _t_quantile(confidence, welch_satterthwaite([(v, d) for _, v, d in terms])) * float(np.sqrt(total))
    seed_terms = [(v, d) for source, v, d in terms if source == "seeds"]
    if seed_terms and sum(v for v, _ in seed_terms) > 0:
        seed_se = float(np.sqrt(sum(v for v, _ in seed_terms)))
        half = max(half, _t_quantile(confidence, welch_satterthwaite(seed_terms)) * seed_se)
    return half


def _two_way_p(distance: float, terms: Sequence[tuple[str, float, float]]) -> float:
    """Two-sided p-value of ``distance`` (effect - margin) matching :func:`_two_way_half` at every level:
    the larger of the t-test on all terms and the t-test on the seed terms alone."""

    def p_of(chosen: list[tuple[float, float]]) -> float:
        se = float(np.sqrt(sum(v for v, _ in chosen)))
        if se == 0:
            return 0.0 if distance != 0 else 1.0
        df = welch_satterthwaite(chosen)
        dist = scipy_stats.norm if np.isinf(df) else scipy_stats.t(df)
        return float(2 * dist.sf(abs(distance) / se))

    p = p_of([(v, d) for _, v, d in terms])
    seed_terms = [(v, d) for source, v, d in terms if source == "seeds"]
    return max(p, p_of(seed_terms)) if seed_terms and sum(v for v, _ in seed_terms) > 0 else p


def _two_way_effect(
    name: str,
    mean: float,
    terms: tuple[tuple[str, float, float], ...],
    k: int,
    uncertainty: str,
    diffs: tuple[tuple[object, float], ...],
    per_image: np.ndarray | None = None,
    confidence: float = 0.95,
) -> Effect:
    """An :class:`Effect` with ``method="two-way t"`` from its variance ``terms`` (``nan`` interval without spread)."""
    se = float(np.sqrt(sum(v for _, v, _ in terms))) if terms else float("nan")
    degenerate = se == 0
    half = _two_way_half(terms, confidence) if se > 0 else float("nan")
    low, high = mean - half, mean + half
    df = welch_satterthwaite([(v, d) for _, v, d in terms]) if se > 0 else float("nan")
    return Effect(name, mean, low, high, low, high, k, se, degenerate, method="two-way t", uncertainty=uncertainty,
                  diffs=diffs, df=df, terms=terms, per_image=per_image)


class PoolingError(HypertuneError, ValueError):
    """A selection would average over a factor that varies among the rows it kept."""


def per_seed(frame: pd.DataFrame, value: str = "val_accuracy", pool: bool = False, **where: object) -> pd.Series:
    """``value`` indexed by seed for the rows matching ``where`` (a value may also be a list).

    One row per seed, or a :class:`PoolingError` naming the hyperparameters that still vary among the
    selected rows (``per_seed(runs, dropout_p=0.25)`` on runs with and without BatchNorm would mix the
    two): select a value for each, or pass ``pool=True`` to average over them per seed, on purpose.
    """
    mask = pd.Series(True, index=frame.index)
    for column, wanted in where.items():
        if column not in frame:
            raise KeyError(f"per_seed: no column {column!r}; the frame has {', '.join(map(str, frame.columns))}")
        mask &= frame[column].isin(wanted) if isinstance(wanted, list | tuple) else frame[column] == wanted
    rows = frame[mask]
    if rows["seed"].duplicated().any():
        if not pool:
            raise PoolingError(_pooling_message(rows, where))
        return rows.groupby("seed", sort=True)[value].mean()
    return rows.set_index("seed")[value]


def varying_factors(rows: pd.DataFrame, exclude: Sequence[str] = ("seed",)) -> dict[str, list[object]]:
    """The hyperparameters (and data settings) that take more than one value among ``rows``."""
    from lib.config import TRIAL_FIELDS

    names = [c for c in rows.columns if (c in TRIAL_FIELDS or c.startswith("data_")) and c not in exclude]
    found = {}
    for name in names:
        values = rows[name].dropna().astype(str).unique().tolist()
        if len(values) > 1:
            found[name] = sorted(values)
    return found


def _pooling_message(rows: pd.DataFrame, where: dict[str, object]) -> str:
    factors = varying_factors(rows, exclude=("seed", *where))
    if factors:
        named = "; ".join(f"{name} ({', '.join(values[:4])}{', ...' if len(values) > 4 else ''})"
                          for name, values in factors.items())
        first = next(iter(factors))
        return (f"per_seed: several rows per seed differ in {named}: select one value, e.g. "
                f"{first}={factors[first][0]!r}, or pass pool=True to average over them on purpose")
    return "per_seed: several rows per seed with the same settings: drop the duplicates or pass pool=True"


def collapsed(accuracy: pd.Series, n_classes: int | pd.Series, margin: float = COLLAPSE_MARGIN) -> pd.Series:
    """Which accuracies sit at or near chance (at most ``1 / n_classes + margin``): a trial that learned
    nothing (a learning rate far too high, dropout that starves the network) looks finished but is not a
    measurement of its configuration's skill; ``NaN`` (a failed trial) is not collapsed."""
    return (accuracy.astype(float) <= 1.0 / n_classes + margin).fillna(False).astype(bool)


def verdict(effect: Effect, margin: float = 0.0, direction: str = "greater") -> str:
    """``supported`` / ``contradicted`` / ``not shown`` by the module's fixed rule.

    ``direction="greater"``: the prediction is effect > margin. ``direction="less"``: the
    prediction is effect < margin (e.g. "more blocks give little": gain below half a point).
    """
    if effect.n < 2 or effect.ci_low != effect.ci_low:
        return NOT_SHOWN
    if direction == "greater":
        if effect.ci_low > margin:
            return "supported"
        if effect.ci_high < margin:
            return "contradicted"
        return NOT_SHOWN
    if effect.ci_high < margin:
        return "supported"
    if effect.ci_low > margin:
        return "contradicted"
    return NOT_SHOWN


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
        return NOT_SHOWN
    above = effect > margin
    return "supported" if above == (direction == "greater") else "contradicted"


def combined_test_interval(accuracies: Sequence[float], n_test: int, confidence: float = 0.95) -> dict[str, float]:
    """Mean test accuracy with an interval for seed noise *and* test-set sampling error.

    Variance of the reported number: s²/k (seed noise of the mean over k final seeds, k - 1 degrees
    of freedom) plus p(1-p)/n_test (binomial sampling error of one finite test set, shared by all k
    models because they are scored on the same images, so it does not shrink with k; n_test - 1
    degrees of freedom). The quantile is Student's t with the Welch-Satterthwaite degrees of freedom
    of that sum, so it is z in effect when the binomial term dominates, and near t with k - 1 df when
    the seeds do (never narrower than the seed-only t-interval). Identical seeds leave the test term,
    never a zero width; one seed: the test term alone.
    """
    array = np.asarray([v for v in accuracies if v == v], dtype=float)
    k = array.size
    if k == 0 or n_test < 2:
        raise ValueError(f"need at least one accuracy and n_test >= 2; got {k} values, n_test={n_test}")
    mean = float(array.mean())
    v_seed = float(array.var(ddof=1)) / k if k >= 2 else 0.0
    v_test = mean * (1 - mean) / n_test
    df = welch_satterthwaite([(v_seed, k - 1), (v_test, n_test - 1)])
    seed_half = _t_quantile(confidence, k - 1) * float(np.sqrt(v_seed)) if k >= 2 else float("nan")
    # Welch-Satterthwaite is an approximation: where the seed term dominates and k is tiny, it can come
    # out narrower than the seeds' own t-interval; the interval is never allowed to be
    half = max(_t_quantile(confidence, df) * float(np.sqrt(v_seed + v_test)), np.nan_to_num(seed_half))
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


def welch_satterthwaite(terms: Sequence[tuple[float, float]]) -> float:
    """Degrees of freedom of a sum of independent variance estimates ``[(variance, df), ...]``.

    ``(sum v)² / sum(v² / df)``; terms with ``df < 1`` or zero variance carry no weight (``inf`` when
    nothing is estimated, i.e. the normal quantile).
    """
    used = [(v, d) for v, d in terms if d >= 1 and v > 0]
    if not used:
        return float("inf")
    return float(sum(v for v, _ in used) ** 2 / sum(v * v / d for v, d in used))


def _t_quantile(confidence: float, df: float) -> float:
    level = 0.5 + confidence / 2
    return float(scipy_stats.norm.ppf(level) if np.isinf(df) else scipy_stats.t.ppf(level, df))


def sign_test(differences: Sequence[float]) -> float:
    """Exact two-sided sign test p-value of paired differences against 0 (ties dropped; ``±inf`` allowed).

    For comparisons where a value may be censored (does not exist): only the sign of each difference
    is used. ``nan`` without any untied difference.
    """
    values = np.asarray([d for d in differences if d == d], dtype=float)
    above, below = int((values > 0).sum()), int((values < 0).sum())
    if above + below == 0:
        return float("nan")
    return float(scipy_stats.binomtest(above, above + below, 0.5).pvalue)


def sign_flip_test(differences: Sequence[float], margin: float = 0.0) -> float:
    """Exact two-sided sign-flip (permutation) p-value of the mean paired difference against ``margin``.

    Under the null the differences (minus the margin) are symmetric about 0, so each sign is equally
    likely: p is the share of the 2^k sign assignments whose |mean| reaches the observed one. Exact and
    distribution-free; its smallest p is 2 / 2^k (k = 3 seeds: 0.25, k = 6: 0.031), so a 5% decision needs
    at least 6 seeds. ``nan`` with no difference; k above 20 is refused (use a t-test there).
    """
    values = np.asarray([d for d in differences if d == d], dtype=float) - margin
    if values.size == 0:
        return float("nan")
    if values.size > 20:
        raise ValueError(f"sign_flip_test: {values.size} differences; the exact test enumerates 2^k, use k <= 20")
    signs = 1 - 2 * ((np.arange(2**values.size)[:, None] >> np.arange(values.size)) & 1)
    means = np.abs(signs @ values) / values.size
    observed = abs(values.mean())
    return float(np.mean(means >= observed - 1e-12 * max(1.0, observed)))


def interpolated_width(lrs: Sequence[float], accuracy: Sequence[float], floor: float) -> tuple[float, bool]:
    """Width in decades of the learning rates where accuracy stays at or above ``floor``, read off the curve
    between the grid points (piecewise linear in log10 lr), around the curve's best point: no lattice.

    The usable range is the contiguous stretch through the best grid point; each end is where the curve
    crosses ``floor`` (interpolated), or the grid's edge, in which case ``touches_edge`` is True (the width
    is then a lower bound). ``(nan, False)`` when every accuracy is missing.
    """
    x = np.log10(np.asarray(lrs, dtype=float))
    y = np.asarray(accuracy, dtype=float)
    order = np.argsort(x)
    x, y = x[order], np.nan_to_num(y[order], nan=0.0)
    if not len(x) or not np.isfinite(y).any():
        return float("nan"), False
    best = int(np.argmax(y))
    ends = []
    for step in (-1, 1):
        i = best
        while 0 <= i + step < len(x) and y[i + step] >= floor:
            i += step
        j = i + step
        if not 0 <= j < len(x):
            ends.append((x[i], True))
        else:  # the curve leaves [floor, ...] between i and j: where it crosses
            fraction = (y[i] - floor) / (y[i] - y[j]) if y[i] != y[j] else 0.0
            ends.append((x[i] + fraction * (x[j] - x[i]), False))
    return float(ends[1][0] - ends[0][0]), bool(ends[0][1] or ends[1][1])


def median_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Median and its distribution-free (order-statistic, binomial) interval; ``±inf`` values allowed.

    The interval ``[x(j), x(n+1-j)]`` with the largest j whose coverage ``1 - 2 P(Bin(n, 1/2) < j)`` is at
    least ``confidence``; ``nan`` bounds when n is too small for any (n < 6 at 95%).
    """
    array = np.sort(np.asarray([v for v in values if v == v], dtype=float))
    n = array.size
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    median = float(np.median(array)) if np.isfinite(array).all() else float(array[(n - 1) // 2 : n // 2 + 1].mean())
    for j in range(n // 2, 0, -1):
        if 1 - 2 * scipy_stats.binom.cdf(j - 1, n, 0.5) >= confidence:
            return median, float(array[j - 1]), float(array[n - j])
    return median, float("nan"), float("nan")


def censored_effect(treatment: pd.Series, control: pd.Series, name: str = "effect") -> Effect:
    """Paired effect of values that may be censored below every observed value (``nan`` = censored).

    A censored value ranks below every observed one: a pair with one censored side has difference
    ``±inf``, two censored sides a tie (0). The effect is the median difference, its interval the
    order-statistic one (:func:`median_ci`), its p-value the exact sign test (``method="sign"``).
    """
    seeds = treatment.index.union(control.index)
    t, c = treatment.reindex(seeds), control.reindex(seeds)
    diffs = pd.Series(
        [_censored_difference(a, b) for a, b in zip(t, c, strict=True)], index=seeds, dtype=float
    ).dropna()
    median, low, high = median_ci(diffs.tolist())
    pairs = tuple((seed, float(value)) for seed, value in diffs.items())
    return Effect(name, median, low, high, low, high, int(diffs.size), method="sign", diffs=pairs)


def _censored_difference(a: float, b: float) -> float:
    if a != a and b != b:
        return 0.0
    if a != a:
        return float("-inf")
    if b != b:
        return float("inf")
    return float(a - b)


def difference_of_effects(first: Effect, second: Effect, name: str = "interaction") -> Effect:
    """``first - second`` for two paired effects (e.g. a dropout effect at two budgets): an interaction.

    Both effects carry their per-seed ``diffs``. Where they share every seed, the difference of
    differences is paired by seed (a one-sample t-interval of ``d1 - d2``); otherwise the two sets of
    per-seed differences are independent and Welch's interval is used. Either way the claim "the
    effect changed" is decided by this interval, never by comparing which effect is significant.
    Two two-source effects scored on the same validation images (both with ``per_image`` arrays of as
    many images) also get the shared image term: :func:`_two_way_difference`.
    """
    a, b = pd.Series(dict(first.diffs), dtype=float), pd.Series(dict(second.diffs), dtype=float)
    images = [x.shape[1] if x is not None and x.ndim == 2 else 0 for x in (first.per_image, second.per_image)]
    if images[0] > 1 and images[0] == images[1]:
        return _two_way_difference(first, second, name)
    if len(a) and set(a.index) == set(b.index):
        return paired_effect(a, b, name)
    if len(a) < 2 or len(b) < 2:
        nan = float("nan")
        return Effect(name, float(a.mean() - b.mean()), nan, nan, nan, nan, min(len(a), len(b)))
    va, vb = float(a.var(ddof=1)) / len(a), float(b.var(ddof=1)) / len(b)
    df = welch_satterthwaite([(va, len(a) - 1), (vb, len(b) - 1)])
    mean, se = float(a.mean() - b.mean()), float(np.sqrt(va + vb))
    if se == 0:
        return Effect(name, mean, float("nan"), float("nan"), float("nan"), float("nan"), 0, 0.0, True)
    half = _t_quantile(0.95, df) * se
    n = len(a) + len(b)  # Effect.p_value's t-test: sd / sqrt(n) = se, with the Welch-Satterthwaite df
    return Effect(name, mean, mean - half, mean + half, mean - half, mean + half, n, se * np.sqrt(n), df=df)


def _two_way_difference(first: Effect, second: Effect, name: str) -> Effect:
    """The interaction of two two-source effects on the same validation images (``method="two-way t"``).

    Same seeds: the difference is itself a seeds x images array, ``x1 - x2`` paired by seed and image,
    and gets :func:`two_way_terms` (runs the two effects share, e.g. a common control arm, cancel in it
    as they should). Different seeds (different runs, independent): the Welch seed terms ``s²(d1)/k1``,
    ``s²(d2)/k2`` and one image term on the difference of the per-image means, less both arrays' run
    noise (:func:`_image_term`); the images are shared, so their terms are not simply added.
    """
    x1, x2 = (np.asarray(e.per_image, dtype=float) for e in (first, second))
    seeds1, seeds2 = [s for s, _ in first.diffs], [s for s, _ in second.diffs]
    if seeds1 and set(seeds1) == set(seeds2) and len(seeds1) == len(x1) == len(x2):
        x = x1 - x2[[seeds2.index(s) for s in seeds1]]
        diffs = tuple((s, float(v)) for s, v in zip(seeds1, x.mean(axis=1), strict=True))
        uncertainty = "seeds+images" if len(x) >= 2 else "images"
        return _two_way_effect(name, float(x.mean()), two_way_terms(x), len(x), uncertainty, diffs, x)
    mean = float(x1.mean() - x2.mean())
    if len(x1) < 2 or len(x2) < 2:
        nan = float("nan")
        return Effect(name, mean, nan, nan, nan, nan, min(len(x1), len(x2)))
    seed_terms = tuple(("seeds", float(x.mean(axis=1).var(ddof=1)) / len(x), len(x) - 1.0) for x in (x1, x2))
    terms = (*seed_terms, _image_term(x1.mean(axis=0) - x2.mean(axis=0), [x1, x2]))
    return _two_way_effect(name, mean, terms, len(x1) + len(x2), "seeds+images", ())


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
