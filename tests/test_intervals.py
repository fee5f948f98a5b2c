"""The two-source interval (``lib.stats.two_source_effect``): its estimator, and its coverage on synthetic runs.

Generative model of the coverage tests (the estimand is explicit). One replication draws n validation
images i.i.d. from a population of four kinds: *easy* (both arms right with probability 0.97), *helped*
(treatment right with 0.9, control with 0.1), *hurt* (the reverse) and *borderline* (control right with
0.5, treatment with 0.5 + s_i). It draws k seeds i.i.d.: seed i's offset s_i ~ N(0, width²) clipped to
±0.45 (symmetric, so E[s_i] = 0 exactly and no probability leaves [0, 1]; normal, not uniform: with
k = 5 a t-interval covers uniform values only ~93.5% of the time, a property of the seeds, not of the
estimator). Each run's correctness on each
image is an independent Bernoulli draw given its image and seed (the per-run noise); row i of both arms is
seed i, column j image j. The estimand is the expected accuracy difference over *both* populations, seeds
and images: mu = 0.8 x (share helped - share hurt), exactly; the borderline images add 0 on average. The
kinds' shares and the offset's width set which source dominates the variance of the estimate: many
borderline images with wide offsets make it the seeds, many helped/hurt images with narrow offsets the
images (the shared term: the same images for every seed).

The coverage tests assert the 95% interval covers mu in 93-97% of R replications in both regimes; with
R = 1000 the binomial standard error of a true 95% is 0.7 points. The old percentile bootstrap (kept below
as a private reference) is shown to miss in the seeds-dominated regime, so the coverage test can fail.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from lib.stats import Effect, difference_of_effects, paired_effect, two_source_effect, two_way_terms

K, N = 5, 2000
SEEDS = {"helped": 0.02, "hurt": 0.01, "border": 0.90, "width": 0.15}  # seed term ~99% of the estimated variance
IMAGES = {"helped": 0.06, "hurt": 0.04, "border": 0.02, "width": 0.10}  # image term ~80% of the estimated variance


def _draw(
    rng: np.random.Generator, helped: float, hurt: float, border: float, width: float, k: int = K, n: int = N,
    gain: float = 0.8, kinds: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """One replication: treatment and control correctness, (k, n) booleans, and the estimand mu.

    ``kinds`` (0 easy, 1 helped, 2 hurt, 3 borderline per image) is drawn unless given (to share images).
    """
    if kinds is None:
        kinds = rng.choice(4, size=n, p=[1 - helped - hurt - border, helped, hurt, border])
    low, high = 0.5 - gain / 2, 0.5 + gain / 2
    p_control = np.array([0.97, low, high, 0.5])[kinds]
    p_treatment = np.array([0.97, high, low, 0.5])[kinds]
    offsets = np.clip(rng.normal(0.0, width, size=(k, 1)), -0.45, 0.45)
    p_treatment = np.where(kinds == 3, p_treatment + offsets, p_treatment)
    treatment = rng.random((k, n)) < p_treatment
    control = rng.random((k, n)) < np.broadcast_to(p_control, (k, n))
    return treatment, control, gain * (helped - hurt)


def _old_percentile_bootstrap(
    treatment: np.ndarray, control: np.ndarray, n_resamples: int = 500, seed: int = 0
) -> tuple[float, float]:
    """The former ``two_source_effect`` interval: percentiles of draws resampling seeds and images together."""
    per_image = treatment.astype(float) - control
    k, n = per_image.shape
    rng = np.random.default_rng(seed)
    draws = []
    for start in range(0, n_resamples, 250):
        chunk = min(250, n_resamples - start)
        picks = rng.integers(0, n, size=(chunk, n)) + n * np.arange(chunk)[:, None]
        counts = np.bincount(picks.ravel(), minlength=chunk * n).reshape(chunk, n)
        by_seed = per_image @ counts.T / n
        chosen = rng.integers(0, k, size=(chunk, k))
        draws.append(by_seed[chosen, np.arange(chunk)[:, None]].mean(axis=1))
    low, high = np.quantile(np.concatenate(draws), [0.025, 0.975])
    return float(low), float(high)


def _coverage(regime: dict[str, float], replications: int, seed: int, method: str = "two-way") -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(replications):
        if method == "two-way":
            treatment, control, mu = _draw(rng, **regime)
            effect = two_source_effect(treatment, control)
            low, high = effect.ci_low, effect.ci_high
        else:  # the old bootstrap, on fewer images: it resamples them (slow); the seeds still dominate
            treatment, control, mu = _draw(rng, **regime, n=500)
            low, high = _old_percentile_bootstrap(treatment, control)
        hits += low <= mu <= high
    return hits / replications


@pytest.mark.parametrize("regime", [SEEDS, IMAGES], ids=["seeds-dominated", "images-dominated"])
def test_the_interval_covers_the_expected_effect_95_percent_of_the_time(regime: dict[str, float]) -> None:
    assert 0.93 <= _coverage(regime, 1000, seed=20) <= 0.97


def test_the_old_percentile_bootstrap_covered_too_rarely_where_seeds_dominate() -> None:
    """k = 5: the percentile bootstrap shrinks the seed variance by (k - 1)/k and uses normal-like quantiles."""
    assert _coverage(SEEDS, 400, seed=21, method="old") < 0.91


def test_the_regimes_are_what_their_names_say() -> None:
    """The seed term dominates the variance in one regime, the image term in the other (on average)."""
    shares = {}
    for name, regime in (("seeds", SEEDS), ("images", IMAGES)):
        rng = np.random.default_rng(22)
        terms = [dict((s, v) for s, v, _ in two_way_terms(np.subtract(*_draw(rng, **regime)[:2], dtype=float)))
                 for _ in range(50)]
        shares[name] = np.mean([t["seeds"] / (t["seeds"] + t["images"]) for t in terms])
    assert shares["seeds"] > 0.85 and shares["images"] < 0.35


def test_the_terms_are_the_anova_estimator_of_the_variance_of_the_grand_mean() -> None:
    """(MS_seed + MS_image - MS_resid) / (kn), mean squares from the sums of squares of a two-way layout."""
    rng = np.random.default_rng(23)
    treatment, control, _ = _draw(rng, **IMAGES, k=4, n=300)
    x = treatment.astype(float) - control
    k, n = x.shape
    grand = x.mean()
    ss_seed = n * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_image = k * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_resid = ((x - grand) ** 2).sum() - ss_seed - ss_image
    ms_seed, ms_image, ms_resid = ss_seed / (k - 1), ss_image / (n - 1), ss_resid / ((k - 1) * (n - 1))
    assert ms_image > ms_resid  # so the image term is not floored at 0 here
    terms = {source: (v, df) for source, v, df in two_way_terms(x)}
    assert terms["seeds"][0] + terms["images"][0] == pytest.approx((ms_seed + ms_image - ms_resid) / (k * n))
    assert terms["seeds"] == pytest.approx((x.mean(axis=1).var(ddof=1) / k, k - 1))
    assert n - 1 >= terms["images"][1] > 0.5 * (n - 1)


def test_the_interval_is_t_with_welch_satterthwaite_df_and_never_narrower_than_the_seeds_own() -> None:
    rng = np.random.default_rng(24)
    for regime in (SEEDS, IMAGES):
        treatment, control, _ = _draw(rng, **regime)
        effect = two_source_effect(treatment, control)
        (_, v_seed, df_seed), (_, v_image, df_image) = effect.terms
        df = (v_seed + v_image) ** 2 / (v_seed**2 / df_seed + v_image**2 / df_image)
        assert effect.df == pytest.approx(df) and effect.sd == pytest.approx(math.sqrt(v_seed + v_image))
        half = max(scipy_stats.t.ppf(0.975, df) * effect.sd, scipy_stats.t.ppf(0.975, K - 1) * math.sqrt(v_seed))
        assert (effect.ci_low, effect.ci_high) == pytest.approx((effect.mean - half, effect.mean + half))
        seeds_only = paired_effect(pd.Series(treatment.mean(axis=1)), pd.Series(control.mean(axis=1)))
        assert effect.ci_low <= seeds_only.ci_low + 1e-12 and effect.ci_high >= seeds_only.ci_high - 1e-12
        assert effect.method == "two-way t" and effect.uncertainty == "seeds+images" and effect.n == K


@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_the_p_value_agrees_with_the_interval_at_every_margin(confidence: float) -> None:
    rng = np.random.default_rng(25)
    for regime in (SEEDS, IMAGES):
        treatment, control, _ = _draw(rng, **regime)
        effect = two_source_effect(treatment, control, confidence=confidence)
        eps = 1e-9
        margins = [0.0, effect.mean, effect.ci_low - eps, effect.ci_low + eps, effect.ci_high - eps,
                   effect.ci_high + eps, *np.linspace(effect.ci_low - 0.05, effect.ci_high + 0.05, 41)]
        for margin in margins:
            excluded = not effect.ci_low <= margin <= effect.ci_high
            assert excluded == (effect.p_value(margin) < 1 - confidence), margin


def test_one_seed_gives_the_image_only_interval_given_that_seed() -> None:
    rng = np.random.default_rng(26)
    treatment, control, _ = _draw(rng, **IMAGES, k=1)
    effect = two_source_effect(treatment, control)
    d = (treatment.astype(float) - control)[0]
    half = scipy_stats.t.ppf(0.975, N - 1) * d.std(ddof=1) / math.sqrt(N)
    assert effect.uncertainty == "images" and effect.n == 1
    assert (effect.ci_low, effect.ci_high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert effect.p_value(d.mean() - half) == pytest.approx(0.05)


def test_identical_arms_are_degenerate_and_the_interval_is_deterministic() -> None:
    rng = np.random.default_rng(27)
    treatment, control, _ = _draw(rng, **SEEDS)
    same = two_source_effect(control, control)
    assert same.degenerate and math.isnan(same.ci_low) and math.isnan(same.p_value())
    first, second = two_source_effect(treatment, control), two_source_effect(treatment, control, seed=5)
    assert (first.ci_low, first.ci_high, first.p_value()) == (second.ci_low, second.ci_high, second.p_value())


def _interaction_pair(rng: np.random.Generator, regime: dict[str, float]) -> tuple[Effect, Effect, float]:
    """Two effects on the same images and seed labels, from different runs: the gain 0.8 in one, none in
    the other (helped and hurt images at 0.5 in both arms), so the interaction's estimand is mu itself."""
    kinds = rng.choice(4, size=N, p=[1 - regime["helped"] - regime["hurt"] - regime["border"], regime["helped"],
                                     regime["hurt"], regime["border"]])
    t1, c1, mu1 = _draw(rng, **regime, kinds=kinds)
    t2, c2, mu2 = _draw(rng, **regime, kinds=kinds, gain=0.0)
    return two_source_effect(t1, c1, "large"), two_source_effect(t2, c2, "small"), mu1 - mu2


def test_an_interaction_of_two_source_effects_covers_and_keeps_the_shared_image_term() -> None:
    """Same seeds and images: the interaction is the two-way interval of the difference array, and covers;
    the seeds alone (the per-seed differences, all a verdict row keeps) would miss the shared image term."""
    rng = np.random.default_rng(28)
    hits = seeds_only_hits = 0
    replications = 600
    for _ in range(replications):
        large, small, mu = _interaction_pair(rng, IMAGES)
        both = difference_of_effects(large, small)
        hits += both.ci_low <= mu <= both.ci_high
        seeds_only = paired_effect(pd.Series(dict(large.diffs)), pd.Series(dict(small.diffs)))
        seeds_only_hits += seeds_only.ci_low <= mu <= seeds_only.ci_high
    assert both.method == "two-way t" and both.uncertainty == "seeds+images" and both.n == K
    assert 0.93 <= hits / replications <= 0.97
    assert seeds_only_hits / replications < 0.90


def _ms_resid(x: np.ndarray) -> float:
    k, n = x.shape
    grand = x.mean()
    ss_seed, ss_image = n * ((x.mean(axis=1) - grand) ** 2).sum(), k * ((x.mean(axis=0) - grand) ** 2).sum()
    ss = ((x - grand) ** 2).sum() - ss_seed - ss_image
    return float(ss / ((k - 1) * (n - 1)))


def test_an_interaction_across_different_seeds_is_welch_plus_one_image_term_on_the_difference() -> None:
    rng = np.random.default_rng(29)
    large, small, _ = _interaction_pair(rng, IMAGES)
    relabelled = replace(small, diffs=tuple((f"other {s}", d) for s, d in small.diffs))
    both = difference_of_effects(large, relabelled)
    x1, x2 = large.per_image, small.per_image
    e = x1.mean(axis=0) - x2.mean(axis=0)
    image = (e.var(ddof=1) - _ms_resid(x1) / K - _ms_resid(x2) / K) / N
    expected = [x1.mean(axis=1).var(ddof=1) / K, x2.mean(axis=1).var(ddof=1) / K, image]
    assert [v for _, v, _ in both.terms] == pytest.approx(expected)
    assert both.mean == pytest.approx(x1.mean() - x2.mean()) and both.n == 2 * K
    assert both.ci_high - both.mean >= scipy_stats.norm.ppf(0.975) * both.sd  # a t quantile, never below z


def test_an_interaction_of_effects_sharing_a_control_arm_is_the_effect_between_the_treatments() -> None:
    """(A - C) - (B - C) on the same runs C: C's noise cancels, exactly as in the direct comparison A - B."""
    rng = np.random.default_rng(30)
    first, control, _ = _draw(rng, **IMAGES)
    second = _draw(rng, **IMAGES)[0]
    interaction = difference_of_effects(two_source_effect(first, control), two_source_effect(second, control))
    direct = two_source_effect(first, second)
    assert [source for source, _, _ in interaction.terms] == [source for source, _, _ in direct.terms]
    assert [v for _, v, df in interaction.terms] == pytest.approx([v for _, v, df in direct.terms])
    assert interaction.df == pytest.approx(direct.df)
    assert (interaction.ci_low, interaction.ci_high) == pytest.approx((direct.ci_low, direct.ci_high))
    assert interaction.p_value() == pytest.approx(direct.p_value())


def test_an_interaction_of_effects_without_per_image_results_stays_on_the_seeds() -> None:
    """Effects rebuilt from a verdict row's per-seed differences (``comparisons.interaction``): seeds only."""
    first = Effect("a", 0.0, 0.0, 0.0, 0.0, 0.0, 3, diffs=((0, 0.03), (1, 0.05), (2, 0.02)))
    second = Effect("b", 0.0, 0.0, 0.0, 0.0, 0.0, 3, diffs=((0, 0.01), (1, 0.02), (2, 0.02)))
    both = difference_of_effects(first, second)
    assert both.uncertainty == "seeds" and both.method == "t"
    assert both.p_value() == pytest.approx(scipy_stats.ttest_1samp([0.02, 0.03, 0.0], 0.0).pvalue)


def test_the_budget_interaction_of_two_in_memory_rows_counts_the_shared_images(mlflow_store):
    """05's same-arm interaction: two verdict rows that carry their two-source Effects (the same validation
    images) get the image term; the same rows read back from a CSV (seed_diffs only) get seeds alone. The
    CSV a notebook logs never holds the in-memory Effect."""
    from lib import tracking
    from lib.study import analysis
    from lib.study.verdicts import verdict_row

    rng = np.random.default_rng(3)
    k, n = 5, 2000
    hard = rng.random(n) < 0.3  # images the treatment helps at full budget but not at the grid budget

    def arm(shift: float) -> np.ndarray:
        return (rng.random((k, n)) < 0.8 + shift * hard).astype(float)

    rows = {}
    for budget, shift in (("8,000 img × 10 ep", 0.0), ("55,000 img × 10 ep", 0.05)):
        effect = two_source_effect(arm(shift), arm(0.0), "0.25 - none", seeds=list(range(k)))
        row = verdict_row("H1a", "norm=batch, block: dropout 0.25 beats none", effect, "CI > 0", "not shown",
                          budget_text=budget)  # fmt: skip
        rows[budget] = pd.DataFrame([row | {"decision": "not shown"}])
    grid, full = rows["8,000 img × 10 ep"], rows["55,000 img × 10 ep"]
    both = analysis.budget_changes(grid, full).iloc[0]
    seeds_only = analysis.budget_changes(grid.drop(columns="_effect"), full.drop(columns="_effect")).iloc[0]
    assert both["interaction"] == pytest.approx(seeds_only["interaction"])
    width = both["interaction_ci_high"] - both["interaction_ci_low"]
    assert width > seeds_only["interaction_ci_high"] - seeds_only["interaction_ci_low"]
    run = tracking.analysis_run("exp", notebook="05", profile="smoke")
    path = run.log_table(full, "verdicts_test")
    assert "_effect" not in pd.read_csv(path).columns and "seed_diffs" in pd.read_csv(path).columns
