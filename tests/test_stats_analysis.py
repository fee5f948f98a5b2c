"""Statistics and hypothesis verdicts on synthetic results with known answers."""

import math

import pandas as pd
import pytest
from scipy import stats as scipy_stats

from lib import analysis
from lib.stats import Effect, eta_squared, mean_ci, paired_effect, summarize, usable_lr_decades, verdict


def test_mean_ci_matches_the_t_interval():
    values = [0.90, 0.91, 0.93]
    mean, low, high = mean_ci(values)
    half = scipy_stats.t.ppf(0.975, 2) * pd.Series(values).std(ddof=1) / math.sqrt(3)
    assert mean == pytest.approx(0.91333333)
    assert (low, high) == pytest.approx((mean - half, mean + half))
    assert math.isnan(mean_ci([0.5])[1])


def test_paired_effect_uses_per_seed_differences():
    treatment = pd.Series([0.90, 0.80, 0.70], index=[0, 1, 2])
    control = pd.Series([0.89, 0.79, 0.69], index=[0, 1, 2])  # huge spread across seeds, constant +1 pp per seed
    effect = paired_effect(treatment, control)
    assert effect.mean == pytest.approx(0.01)
    assert effect.ci_low == pytest.approx(0.01) and effect.ci_high == pytest.approx(0.01)
    assert verdict(effect) == "supported"


@pytest.mark.parametrize(
    ("low", "high", "direction", "margin", "expected"),
    [
        (0.01, 0.03, "greater", 0.0, "supported"),
        (-0.03, -0.01, "greater", 0.0, "contradicted"),
        (-0.01, 0.02, "greater", 0.0, "inconclusive"),
        (-0.02, 0.004, "less", 0.005, "supported"),
        (0.006, 0.02, "less", 0.005, "contradicted"),
        (-0.01, 0.01, "less", 0.005, "inconclusive"),
    ],
)
def test_verdict_rule(low, high, direction, margin, expected):
    effect = Effect("x", (low + high) / 2, low, high, low, high, 3)
    assert verdict(effect, margin, direction) == expected


def test_verdict_needs_two_seeds():
    assert verdict(Effect("x", 0.1, float("nan"), float("nan"), 0, 0, 1)) == "inconclusive"


def test_usable_lr_range_is_the_widest_contiguous_run():
    frame = pd.DataFrame({"lr": [1e-4, 1e-3, 1e-2, 1e-1, 1.0], "val_accuracy": [0.80, 0.90, 0.89, 0.10, 0.90]})
    assert usable_lr_decades(frame, tolerance=0.02, reference=0.90) == pytest.approx(1.0)
    assert math.isnan(usable_lr_decades(frame, tolerance=0.0, reference=0.95))


def test_summarize_and_eta_squared():
    frame = pd.DataFrame({"arm": ["a"] * 3 + ["b"] * 3, "val_accuracy": [0.8, 0.81, 0.82, 0.9, 0.91, 0.92]})
    table = summarize(frame, "arm")
    assert list(table["n"]) == [3, 3] and table["mean"].tolist() == pytest.approx([0.81, 0.91])
    assert 0.9 < eta_squared(frame, "arm") <= 1.0


def _grid(rows):
    return pd.DataFrame(rows).assign(status="finished")


def test_h1_verdicts_follow_the_data():
    rows = []
    for seed in range(3):
        for p, acc in [(0.0, 0.85), (0.25, 0.87), (0.4, 0.86), (0.6, 0.80)]:
            rows.append({"seed": seed, "norm_type": "none", "dropout_p": p, "val_accuracy": acc + 0.001 * seed * p})
    table = analysis.h1(_grid(rows)).set_index("hypothesis")
    assert table.loc["H1a", "verdict"] == "supported"
    assert table.loc["H1b", "verdict"] == "supported"


def test_h3_verdicts_follow_the_data():
    rows = []
    for seed in range(3):
        for blocks, acc in [(0, 0.85), (1, 0.88), (2, 0.89), (3, 0.95), (4, 0.96)]:
            rows.append({"seed": seed, "num_conv_blocks": blocks, "val_accuracy": acc + 0.002 * seed})
    table = analysis.h3(_grid(rows)).set_index("hypothesis")
    assert table.loc["H3a", "verdict"] == "supported"
    assert table.loc["H3b", "verdict"] == "contradicted"  # deeper stacks gain 6.5 points here, not "little"


def test_h2_lr_range_compares_each_norm_with_its_own_best():
    rows = []
    for seed in range(3):
        for norm, accs in [("batch", [0.86, 0.89, 0.89, 0.885]), ("none", [0.80, 0.83, 0.86, 0.50])]:
            for lr, acc in zip([3e-4, 1e-3, 3e-3, 1e-2], accs, strict=True):
                rows.append({"seed": seed, "norm_type": norm, "lr": lr, "val_accuracy": acc})
    widths, row = analysis.h2_lr_range(_grid(rows))
    by_norm = widths.groupby("norm_type")["usable_decades"].mean()
    assert by_norm["batch"] == pytest.approx(1.0) and by_norm["none"] == pytest.approx(0.0)
    assert row.loc[0, "verdict"] == "supported"


def test_final_choice_only_follows_supported_effects():
    effects = pd.DataFrame(
        [
            {
                "hypothesis": "shift",
                "claim": "recalibrating BN helps: batch/block/p=0.5",
                "effect_pp": 5.0,
                "ci_low_pp": 1.0,
                "ci_high_pp": 9.0,
                "verdict": "supported",
            },
            {
                "hypothesis": "placement",
                "claim": "batch, p=0.5: dropout placement 'head' beats 'block'",
                "effect_pp": 2.0,
                "ci_low_pp": -1.0,
                "ci_high_pp": 5.0,
                "verdict": "inconclusive",
            },
        ]
    )
    config, reasons = analysis.final_choice(
        {"norm_type": "batch", "dropout_p": 0.5, "dropout_placement": "block"}, effects
    )
    assert config["recalibrate_bn"] is True and config["dropout_placement"] == "block"
    assert len(reasons) == 2
    untouched, _ = analysis.final_choice({"norm_type": "none", "dropout_p": 0.5}, effects)
    assert "recalibrate_bn" not in untouched
