"""lib.expected_max (expected best of n trials, Tang et al.'s unbiased and Dodge et al.'s estimators, a
bootstrap band, curves per group) and lib.plots.expected_max_figure, checked against brute-force
enumeration of every subset / every ordered draw on small cases."""

from __future__ import annotations

import itertools
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from lib import plots
from lib.expected_max import curves, expected_max, expected_max_band

# N = 6 with ties (0.7 three times, 0.5 twice), unsorted
TIED = np.array([0.7, 0.5, 0.9, 0.7, 0.5, 0.7])


def _without_replacement(values: np.ndarray, n: int) -> float:
    """Mean of the max over all C(N, n) subsets of n trials (trials by position, so ties count apart)."""
    subsets = list(itertools.combinations(range(len(values)), n))
    assert len(subsets) == math.comb(len(values), n)
    return float(np.mean([max(values[list(s)]) for s in subsets]))


def _with_replacement(values: np.ndarray, n: int) -> float:
    """Mean of the max over all N^n ordered draws of n trials with replacement."""
    draws = list(itertools.product(range(len(values)), repeat=n))
    assert len(draws) == len(values) ** n
    return float(np.mean([max(values[list(d)]) for d in draws]))


def _skewed(rng: np.random.Generator, size: int) -> np.ndarray:
    """Accuracies like a search's: most near the top, a tail of bad ones."""
    return 0.9 - 0.6 * rng.beta(1.2, 6.0, size=size)


@pytest.mark.parametrize("values", [TIED, np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), np.array([0.3] * 6)])
def test_unbiased_matches_every_subset(values):
    got = expected_max(values)
    want = [_without_replacement(values, n) for n in range(1, len(values) + 1)]
    assert got.shape == (6,)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_unbiased_matches_the_closed_form():
    """Tang et al.'s sum_i v_(i) C(i-1, n-1) / C(N, n), written out term by term."""
    ordered = np.sort(TIED)
    size = len(ordered)
    for n in range(1, size + 1):
        formula = sum(ordered[i - 1] * math.comb(i - 1, n - 1) / math.comb(size, n) for i in range(1, size + 1))
        assert expected_max(TIED)[n - 1] == pytest.approx(formula, abs=1e-12)


def test_dodge_matches_every_ordered_draw():
    values = np.array([0.4, 0.8, 0.4, 0.6])
    got = expected_max(values, n_max=5, unbiased=False)
    want = [_with_replacement(values, n) for n in range(1, 6)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    ordered, size = np.sort(values), len(values)
    for n in range(1, 6):  # and Dodge's formula sum_i v_(i) [(i/N)^n - ((i-1)/N)^n]
        formula = sum(ordered[i - 1] * ((i / size) ** n - ((i - 1) / size) ** n) for i in range(1, size + 1))
        assert got[n - 1] == pytest.approx(formula, abs=1e-12)


def test_dodge_is_biased_low_and_unbiased_is_not():
    """With replacement a draw can repeat a trial: below the without-replacement value for 1 < n, equal at 1."""
    biased, unbiased = expected_max(TIED, unbiased=False), expected_max(TIED)
    assert biased[0] == pytest.approx(unbiased[0])
    assert (biased[1:] < unbiased[1:]).all()


def test_endpoints_mean_and_max():
    rng = np.random.default_rng(3)
    for size in (1, 2, 7, 40, 300):
        values = _skewed(rng, size)
        curve = expected_max(values)
        assert len(curve) == size
        assert curve[0] == pytest.approx(values.mean(), abs=1e-12)
        assert curve[-1] == pytest.approx(values.max(), abs=1e-12)


def test_non_decreasing():
    rng = np.random.default_rng(4)
    for values in (_skewed(rng, 50), TIED, np.round(_skewed(rng, 200), 2)):  # the last full of ties
        for unbiased in (True, False):
            curve = expected_max(values, n_max=len(values), unbiased=unbiased)
            assert (np.diff(curve) >= -1e-12).all()
            assert curve[-1] > curve[0]


def test_one_trial_and_no_trial():
    assert expected_max([0.42]).tolist() == [0.42]
    assert expected_max([0.42], n_max=3, unbiased=False) == pytest.approx([0.42] * 3)
    low, high = expected_max_band([0.42], 1)
    assert low.tolist() == [0.42] and high.tolist() == [0.42]
    assert expected_max([]).shape == (0,)
    assert np.isnan(expected_max([np.nan, np.nan], n_max=2)).all()


def test_unbiased_refuses_more_than_n_trials():
    with pytest.raises(ValueError, match="n <= N"):
        expected_max(TIED, n_max=7)
    assert len(expected_max(TIED, n_max=7, unbiased=False)) == 7


def test_failed_trials_are_dropped():
    """NaN is a failed trial: dropped, so the curve is that of the finished ones and N counts them."""
    with_failures = np.array([np.nan, 0.7, 0.5, np.nan, 0.9, 0.7, 0.5, 0.7])
    np.testing.assert_array_equal(expected_max(with_failures), expected_max(TIED))
    assert len(expected_max(with_failures)) == 6
    low, high = expected_max_band(with_failures, 6, n_resamples=200, seed=1)
    low0, high0 = expected_max_band(TIED, 6, n_resamples=200, seed=1)
    np.testing.assert_array_equal(low, low0)
    np.testing.assert_array_equal(high, high0)
    with pytest.raises(ValueError, match="finite"):
        expected_max([0.5, -np.inf])


def test_band_contains_curve_and_is_deterministic():
    rng = np.random.default_rng(5)
    for size in (2, 5, 12, 60):
        values = _skewed(rng, size)
        curve = expected_max(values)
        low, high = expected_max_band(values, size, n_resamples=1000, seed=0)
        assert low.shape == high.shape == (size,)
        assert (low <= curve + 1e-12).all() and (curve <= high + 1e-12).all()
        assert (high - low)[0] > 0
        assert high[-1] == pytest.approx(values.max())  # a resample never sees above the observed best
        again = expected_max_band(values, size, n_resamples=1000, seed=0)
        np.testing.assert_array_equal(low, again[0])
        np.testing.assert_array_equal(high, again[1])
    other = expected_max_band(values, size, n_resamples=1000, seed=1)
    assert not np.array_equal(low, other[0])


def test_band_at_one_trial_is_the_bootstrap_interval_of_the_mean():
    """At n = 1 the curve is the mean: its band must be close to mean +- 1.96 standard errors."""
    rng = np.random.default_rng(6)
    values = _skewed(rng, 200)
    low, high = expected_max_band(values, 1, n_resamples=4000, seed=0)
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    assert low[0] == pytest.approx(values.mean() - half, abs=0.15 * half)
    assert high[0] == pytest.approx(values.mean() + half, abs=0.15 * half)
    narrow = expected_max_band(values, 1, n_resamples=4000, confidence=0.5, seed=0)
    assert low[0] < narrow[0][0] < narrow[1][0] < high[0]


def test_band_matches_a_plain_loop():
    """The vectorized bootstrap equals resampling and recomputing the curve one resample at a time."""
    values = _skewed(np.random.default_rng(7), 9)
    low, high = expected_max_band(values, 9, n_resamples=300, seed=11)
    rng = np.random.default_rng(11)
    picks = rng.integers(0, 9, size=(300, 9))
    boot = np.array([expected_max(values[p]) for p in picks])
    np.testing.assert_allclose(low, np.quantile(boot, 0.025, axis=0), atol=1e-12)
    np.testing.assert_allclose(high, np.quantile(boot, 0.975, axis=0), atol=1e-12)


def _frame() -> pd.DataFrame:
    """Two arms: batch (5 trials, one failed, one collapsed) and none (3 trials); a grid row without a sweep."""
    return pd.DataFrame(
        {
            "norm_type": ["batch"] * 5 + ["none"] * 3 + [None],
            "status": ["finished", "finished", "failed", "finished", "finished"]
            + ["finished", "finished", "killed"]
            + ["finished"],
            "val_accuracy": [0.85, 0.88, np.nan, 0.12, 0.90, 0.80, 0.82, 0.99, 0.5],
            "collapsed": [False, False, False, True, False, False, False, False, False],
        }
    )


def test_curves_two_groups():
    frame = _frame()
    table = curves(frame, "norm_type", n_resamples=200)
    assert list(table.columns) == ["group", "n", "expected_max", "low", "high", "trials", "failed"]
    assert table["group"].unique().tolist() == ["batch", "none"]
    batch, none = table[table["group"] == "batch"], table[table["group"] == "none"]
    assert batch["n"].tolist() == [1, 2, 3, 4] and none["n"].tolist() == [1, 2]
    assert batch["trials"].iloc[0] == 4 and batch["failed"].iloc[0] == 1
    assert none["trials"].iloc[0] == 2 and none["failed"].iloc[0] == 1
    # the collapsed trial is a draw (kept); the killed trial's 0.99 is not a result (dropped)
    np.testing.assert_allclose(batch["expected_max"], expected_max([0.85, 0.88, 0.12, 0.90]))
    assert none["expected_max"].iloc[-1] == pytest.approx(0.82)
    assert batch["expected_max"].iloc[0] == pytest.approx(np.mean([0.85, 0.88, 0.12, 0.90]))
    everything = curves(frame, None, n_resamples=200)
    assert everything["group"].unique().tolist() == ["all"] and everything["trials"].iloc[0] == 7
    dodge = curves(frame, "norm_type", n_max=6, unbiased=False, n_resamples=50)
    assert dodge.groupby("group")["n"].max().tolist() == [6, 6]
    with pytest.raises(KeyError):
        curves(frame, "optimizer")


def test_curves_without_finished_trials_is_empty():
    frame = _frame().assign(status="failed")
    table = curves(frame, "norm_type", n_resamples=10)
    assert table.empty and list(table.columns) == ["group", "n", "expected_max", "low", "high", "trials", "failed"]


def test_figure_one_line_per_group_and_percent_axis():
    rng = np.random.default_rng(8)
    frame = pd.DataFrame(
        {
            "tag.sweep": ["tpe"] * 40 + ["random"] * 30 + ["third"] * 5,
            "status": "finished",
            "val_accuracy": np.concatenate([_skewed(rng, 40), _skewed(rng, 30), [0.0, 0.0, 0.0, 0.01, 1.0]]),
        }
    )
    table = curves(frame, "tag.sweep", n_resamples=200)
    fig = plots.expected_max_figure(table, budget="budget per trial: 300 training images × 1 epoch")
    try:
        ax = fig.axes[0]
        lines = ax.get_lines()
        assert len(lines) == 3
        assert sorted(line.get_label().split(" ")[0] for line in lines) == ["random", "third", "tpe"]
        bottom, top = ax.get_ylim()
        assert 0 <= bottom < top <= 100
        assert top == 100.0  # the third group's best is 100%: the 2-point margin is clipped
        tpe = next(line for line in lines if line.get_label().startswith("tpe"))
        assert np.asarray(tpe.get_ydata()).max() == pytest.approx(frame["val_accuracy"][:40].max() * 100)
        assert ax.get_xscale() == "log"  # 40 trials
        assert "budget per trial" in " ".join(t.get_text() for t in ax.texts)
    finally:
        plt.close(fig)
    small = plots.expected_max_figure(table[table["group"] == "third"])
    try:
        assert small.axes[0].get_xscale() == "linear" and len(small.axes[0].get_lines()) == 1
        assert small.axes[0].get_ylim() == (0.0, 100.0)  # band from 0% to 100%: clipped, not stretched
    finally:
        plt.close(small)
