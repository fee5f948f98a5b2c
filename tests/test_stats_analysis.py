"""Statistics and hypothesis verdicts on synthetic results with known answers."""

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from lib.data import DataSpec
from lib.paths import PROJECT_ROOT
from lib.stats import (
    Effect,
    combined_test_interval,
    eta_squared,
    holm,
    mean_ci,
    paired_effect,
    summarize,
    two_source_effect,
    usable_lr_decades,
    verdict,
)
from lib.study import analysis, comparisons, plateau, registry
from lib.study.verdicts import seed_key


def test_mean_ci_matches_the_t_interval():
    values = [0.90, 0.91, 0.93]
    mean, low, high = mean_ci(values)
    half = scipy_stats.t.ppf(0.975, 2) * pd.Series(values).std(ddof=1) / math.sqrt(3)
    assert mean == pytest.approx(0.91333333)
    assert (low, high) == pytest.approx((mean - half, mean + half))
    assert math.isnan(mean_ci([0.5])[1])


def test_paired_effect_uses_per_seed_differences():
    treatment = pd.Series([0.900, 0.801, 0.699], index=[0, 1, 2])
    control = pd.Series([0.89, 0.79, 0.69], index=[0, 1, 2])  # huge spread across seeds, about +1 pp per seed
    effect = paired_effect(treatment, control)
    assert effect.mean == pytest.approx(0.01)
    assert 0.007 < effect.ci_low < 0.01 < effect.ci_high < 0.013  # the spread across seeds cancels out
    assert verdict(effect) == "supported"


@pytest.mark.parametrize(
    ("low", "high", "direction", "margin", "expected"),
    [
        (0.01, 0.03, "greater", 0.0, "supported"),
        (-0.03, -0.01, "greater", 0.0, "contradicted"),
        (-0.01, 0.02, "greater", 0.0, "not shown"),
        (-0.02, 0.004, "less", 0.005, "supported"),
        (0.006, 0.02, "less", 0.005, "contradicted"),
        (-0.01, 0.01, "less", 0.005, "not shown"),
    ],
)
def test_verdict_rule(low, high, direction, margin, expected):
    effect = Effect("x", (low + high) / 2, low, high, low, high, 3)
    assert verdict(effect, margin, direction) == expected


def test_verdict_needs_two_seeds():
    assert verdict(Effect("x", 0.1, float("nan"), float("nan"), 0, 0, 1)) == "not shown"


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
            rows.append(
                {"seed": seed, "num_conv_blocks": blocks, "val_accuracy": acc + 0.002 * seed * (1 + blocks / 10)}
            )
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
    # each norm's own best mean, interpolated: batch from 2/3 of the first step up to the edge, none across
    # 2/3 of the step below its best and 1/18 of the step above it
    steps = np.log10([1e-3 / 3e-4, 3e-3 / 1e-3, 1e-2 / 3e-3])
    assert by_norm["batch"] == pytest.approx(steps[0] * 2 / 3 + steps[1] + steps[2])
    assert by_norm["none"] == pytest.approx(steps[1] * 2 / 3 + steps[2] * 0.02 / 0.36)
    assert row.loc[0, "p_value"] == pytest.approx(2 / 8) and row.loc[0, "verdict"] == "not shown"  # 3 seeds


def test_final_choice_only_follows_supported_effects():
    effects = pd.DataFrame(
        [
            {
                "hypothesis": "shift",
                "claim": "recalibrating BN helps: batch/block/p=0.5",
                "effect": 5.0,
                "ci_low": 1.0,
                "ci_high": 9.0,
                "budget": "8,000 img × 4 ep",
                "verdict": "supported",
            },
            {
                "hypothesis": "placement",
                "claim": "batch, p=0.5: dropout placement 'head' beats 'block'",
                "effect": 2.0,
                "ci_low": -1.0,
                "ci_high": 5.0,
                "budget": "8,000 img × 4 ep",
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


# --- v2: family-wise decisions, the combined test interval, the zero-width guard -------------------


def test_holm_adjusts_known_p_values():
    # Holm on p = (0.01, 0.04, 0.03, 0.005), m = 4: sorted 0.005, 0.01, 0.03, 0.04 are multiplied by
    # 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> running maximum 0.02, 0.03, 0.06, 0.06.
    adjusted, rejected = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert rejected.tolist() == [True, False, False, True]
    # every raw p-value below 0.05, yet only two survive; Bonferroni (x4) would keep the same two here,
    # but not in the next case, where Holm's step-down keeps all three
    adjusted, rejected = holm([0.012, 0.02, 0.04])
    assert adjusted.tolist() == pytest.approx([0.036, 0.04, 0.04]) and rejected.all()
    adjusted, rejected = holm([float("nan"), 0.001])
    assert math.isnan(adjusted[0]) and rejected.tolist() == [False, True]


def test_adjusted_decisions_per_family_and_direction():
    table = pd.DataFrame(
        {
            "family": ["headline"] * 4 + ["other"],
            "effect": [2.0, -1.5, 0.4, -3.0, 1.0],
            "p_value": [0.001, 0.004, 0.03, 0.04, 0.03],
            "margin": [0.0, 0.0, 0.0, 0.5, 0.0],
            "direction": ["greater", "greater", "greater", "less", "greater"],
        }
    )
    result = analysis.adjust(table, family_sizes={"headline": 4})
    # headline (m = 4): 0.001 x 4, 0.004 x 3, 0.03 x 2, then max(0.04 x 1, 0.06); "other" is a family of one
    assert result["p_holm"].tolist() == pytest.approx([0.004, 0.012, 0.06, 0.06, 0.03])
    assert result["decision"].tolist() == ["supported", "contradicted", "not shown", "not shown", "supported"]
    # a notebook holding 2 of a declared family of 4 (H1): the 2 missing claims count as p = 1 (conservative)
    partial = analysis.adjust(table.iloc[:2].assign(family="H1"))
    assert partial["p_holm"].tolist() == pytest.approx([0.004, 0.012])
    assert set(partial["adjusted_over"]) == {"partial: 2 of 4 claims"}


def test_p_value_matches_the_interval_rule():
    effect = paired_effect(pd.Series([0.012, 0.015, 0.011, 0.02, 0.014]), pd.Series([0.0] * 5))
    p = effect.p_value()
    diffs = [0.012, 0.015, 0.011, 0.02, 0.014]
    assert p == pytest.approx(scipy_stats.ttest_1samp(diffs, 0.0).pvalue)
    assert (p < 0.05) == (effect.ci_low > 0)
    assert effect.p_value(0.5) == pytest.approx(scipy_stats.ttest_1samp(diffs, 0.5).pvalue)


def test_zero_width_intervals_decide_nothing():
    same = paired_effect(pd.Series([0.9, 0.8, 0.7]), pd.Series([0.9, 0.8, 0.7]))  # the same trial twice
    assert same.degenerate and math.isnan(same.ci_low) and math.isnan(same.p_value())
    assert verdict(same, 0.005, "less") == "not shown"  # would be "supported" on a [0, 0] interval
    # a quantised measurement: the floor gives the interval the width of its rounding error
    floored = paired_effect(pd.Series([1.5] * 5), pd.Series([1.0] * 5), min_sd=0.25 / math.sqrt(6))
    half = scipy_stats.t.ppf(0.975, 4) * (0.25 / math.sqrt(6)) / math.sqrt(5)
    assert not floored.degenerate and (floored.ci_low, floored.ci_high) == pytest.approx((0.5 - half, 0.5 + half))


def test_combined_test_interval_adds_test_sampling_error():
    accuracies = [0.93, 0.94, 0.95, 0.94]  # mean 0.94, sd 0.0081650
    result = combined_test_interval(accuracies, n_test=10_000)
    v_seed = 0.0081649658**2 / 4  # 1.6667e-5, 3 df
    v_test = 0.94 * 0.06 / 10_000  # 5.64e-6, 9,999 df
    df = (v_seed + v_test) ** 2 / (v_seed**2 / 3 + v_test**2 / 9_999)  # Welch-Satterthwaite: 5.4 here
    # the seed term dominates here: Welch-Satterthwaite's t(5.4) interval (+-1.19 pp) would be narrower than
    # the seeds' own t(3) interval (+-1.30 pp), so the seed-only interval is the floor
    half = max(
        scipy_stats.t.ppf(0.975, df) * math.sqrt(v_seed + v_test), scipy_stats.t.ppf(0.975, 3) * math.sqrt(v_seed)
    )
    assert result["mean"] == pytest.approx(0.94)
    assert result["df"] == pytest.approx(df) and 5 < result["df"] < 6
    assert (result["low"], result["high"]) == pytest.approx((0.94 - half, 0.94 + half))
    assert result["half_width"] >= result["seed_only_half_width"] > 0
    # identical seeds: the interval does not collapse, the test-set term (sd 0.242 pp) is left with
    # its own degrees of freedom; one seed: the same, +-0.47 pp as in the issue
    flat = combined_test_interval([0.9376] * 4, n_test=10_000)
    assert flat["half_width"] == pytest.approx(scipy_stats.t.ppf(0.975, 9_999) * math.sqrt(0.9376 * 0.0624 / 10_000))
    single = combined_test_interval([0.9376], n_test=10_000)
    assert single["half_width"] == pytest.approx(0.0047, abs=1e-4)


def test_combined_test_interval_is_z_in_effect_when_the_test_term_dominates():
    """Issue 22, defect 4: the four committed readings' seeds (93.68-93.83%) carry ~5% of the variance; the
    old code used t with k - 1 = 3 df (half-width 0.79 pp), Welch-Satterthwaite gives ~1,000+ df (0.48 pp)."""
    result = combined_test_interval([0.9368, 0.9368, 0.9358, 0.9383], n_test=10_000)
    assert result["df"] > 500
    z_half = scipy_stats.norm.ppf(0.975) * math.sqrt(result["seed_sd_of_mean"] ** 2 + result["test_sampling_sd"] ** 2)
    assert result["half_width"] == pytest.approx(z_half, rel=2e-3)
    old_half = scipy_stats.t.ppf(0.975, 3) * math.sqrt(result["seed_sd_of_mean"] ** 2 + result["test_sampling_sd"] ** 2)
    assert result["half_width"] < 0.65 * old_half


def test_verdict_rows_state_budget_family_and_adjusted_decision():
    rows = []
    for seed in range(5):
        for p, acc in [(0.0, 0.85), (0.25, 0.87), (0.6, 0.80)]:
            rows.append(
                {
                    "seed": seed,
                    "norm_type": "none",
                    "dropout_p": p,
                    "epochs": 10,
                    "val_accuracy": acc + 0.001 * seed * p,
                }
            )
    passed = pd.DataFrame({"check": ["H1 controls"], "norm_type": ["none"], "stopped improving": ["yes"]})
    table = analysis.adjust(analysis.h1(_grid(rows), DataSpec(train_subset=8000)), budget=passed)
    assert set(table["budget"]) == {"8,000 training images × 10 epochs | validated on all 5,000 images"}
    assert set(table["uncertainty"]) == {"seeds"}
    assert set(table["family"]) == {"H1"} and (table["n_seeds"] == 5).all()
    assert table["decision"].tolist() == ["supported", "supported"]
    shown = analysis.display(table)  # the short view: the full row stays in the CSV
    assert list(shown.columns) == ["claim", "effect", "95% interval", "decision"]
    assert shown["decision"].tolist() == ["supported", "supported"] and shown["claim"].str.startswith("H1").all()
    wide = analysis.display(table, full=True)
    assert {"claim", "budget", "n_seeds", "effect", "ci_low", "ci_high", "verdict", "decision"} <= set(wide)


def test_h2_lr_range_flags_open_ended_ranges():
    rows = []
    for seed in range(5):
        for norm, accs in [("batch", [0.86, 0.89, 0.89, 0.885]), ("none", [0.80, 0.83, 0.86, 0.50])]:
            for lr, acc in zip([3e-4, 1e-3, 3e-3, 1e-2], accs, strict=True):
                rows.append({"seed": seed, "norm_type": norm, "lr": lr, "val_accuracy": acc + 0.0001 * seed})
    widths, row = analysis.h2_lr_range(_grid(rows))
    assert "lower bound" in row.loc[0, "note"] and "batch" in row.loc[0, "note"]
    assert not row.loc[0, "degenerate"] and row.loc[0, "ci_high"] > row.loc[0, "ci_low"]  # floored, not zero-width
    assert analysis.best_lrs(_grid(rows)) == {"batch": 1e-3, "none": 3e-3}


def test_candidates_are_declared_and_deduplicated():
    arms = pd.DataFrame(
        [
            {"source": "02 H1", "config": analysis.DEFAULT_CONFIG | {"lr": 1e-3}, "mean": 0.90, "n": 5, "budget": "b"},
            {
                "source": "02b",
                "config": {"norm_type": "batch", "dropout_p": 0.25, "dropout_placement": "head"},
                "mean": 0.89,
                "n": 5,
                "budget": "b",
            },
        ]
    )
    arms["identity"] = arms["config"].map(analysis.identity)
    listed = analysis.candidates({"norm_type": "none", "lr": 3e-3, "seed": 7, "epochs": 4}, arms)
    assert [c["candidate"] for c in listed] == [
        "sweep best",
        "default",
        "best controlled arm",
        "sweep best + augmentation",
    ]
    assert listed[2]["config"]["dropout_placement"] == "head"  # the best arm equals the default, so the next one
    assert "seed" not in listed[0]["config"] and "epochs" not in listed[0]["config"]
    assert listed[3]["config"] == listed[0]["config"] | analysis.REGULARISATION  # the sweep best, regularised


def test_compare_candidates_picks_the_highest_mean():
    rows = [
        {"candidate": name, "seed": seed, "val_accuracy": acc + 0.001 * seed, "status": "finished", "epochs": 6}
        for seed in range(3)
        for name, acc in [("sweep best", 0.90), ("default", 0.91), ("best controlled arm", 0.905)]
    ]
    summary, effects, winner = analysis.compare_candidates(pd.DataFrame(rows), DataSpec())
    assert winner == "default" and len(effects) == 2
    assert set(effects["family"]) == {"final choice"} and set(effects["budget"]) == {
        "55,000 training images × 6 epochs | validated on all 5,000 images"
    }


def test_best_so_far_and_search_comparison():
    frame = pd.DataFrame(
        {
            "algo": ["tpe"] * 3 + ["random"] * 3,
            "sweep_seed": [0] * 6,
            "trial": [0, 1, 2] * 2,
            "val_accuracy": [0.8, float("nan"), 0.85, 0.82, 0.81, 0.83],
        }
    )
    curves = analysis.best_so_far(frame)
    assert curves[curves.algo == "tpe"]["best"].tolist() == [0.8, 0.8, 0.85]
    assert curves[curves.algo == "random"]["best"].tolist() == [0.82, 0.82, 0.83]


def test_full_profile_meets_the_study_design():
    from lib.study.profiles import PROFILES

    full = PROFILES["full"]
    assert len(full["seeds"]) >= 5 and len(full["budget_seeds"]) >= 3 and len(full["candidate_seeds"]) >= 3
    decades = np.log10(np.array(full["lr_values"]))
    assert decades.max() - decades.min() >= 3 and np.allclose(np.diff(decades), 0.5, atol=0.01)  # v3: half decades
    assert full["lr_epochs"] * full["train_subset"] >= 24_000 and len(full["lr_seeds"]) >= 7  # Holm step 1 (v5)
    assert not set(full["tune_seeds"]) & set(full["seeds"])  # each arm's winner is re-measured on fresh seeds
    assert len(full["tune_seeds"]) >= 2 and full["h1_rungs"][-1] == full["dropout_epochs"]
    assert full["h3_rungs"][-1] == full["epochs"]
    assert {round(p, 2) for p in full["dropout_values"]} >= {0.0, 0.3, 0.6}  # a dose-response (v5: 3 doses, 05's)
    assert all(profile["dataset"] == "fashion_mnist" for profile in PROFILES.values())
    assert PROFILES["deep"]["budget_profile"] == "deep" and PROFILES["deep"]["study_profile"] == "full"


def _synthetic_grids() -> dict[str, pd.DataFrame]:
    """02, 02b and 03 as the store returns them, with one small effect (H1a without normalization)
    that only the whole headline family can decide."""
    rng = np.random.default_rng(0)
    key = iter(range(10_000))

    def run(**values):
        return {"status": "finished", "tag.trial_key": f"k{next(key)}", "epochs": 10, "lr": 1e-3,
                "weight_decay": 5e-4, "dropout_p": 0.0, "dropout_placement": "block", "num_conv_blocks": 2,
                **values}  # fmt: skip

    h1, h2, h3, shift = [], [], [], []
    small = [-0.001, -0.005, -0.002, -0.004, -0.003]  # none: 0.25 - 0 per seed, -0.3 pp, raw p about 0.01
    for seed in range(5):
        noise = rng.normal(0, 0.0005)
        for norm, accs in [("none", (0.900, 0.900 + small[seed], 0.880)), ("batch", (0.910, 0.890, 0.650))]:
            for p, acc in zip((0.0, 0.25, 0.6), accs, strict=True):
                jitter = 0.0 if norm == "none" and p < 0.5 else rng.normal(0, 0.001)
                h1.append(run(seed=seed, norm_type=norm, dropout_p=p, val_accuracy=acc + noise + jitter))
            for lr, acc in [(1e-4, 0.80), (1e-3, 0.90), (1e-2, 0.89 if norm == "batch" else 0.70), (1e-1, 0.5)]:
                h2.append(run(seed=seed, norm_type=norm, lr=lr, epochs=2, val_accuracy=acc + rng.normal(0, 0.002)))
        for blocks, acc in [(0, 0.85), (1, 0.89), (2, 0.90), (3, 0.897)]:
            acc += rng.normal(0, 0.001)
            h3.append(run(seed=seed, norm_type="batch", num_conv_blocks=blocks, epochs=4, val_accuracy=acc))
        for placement, acc in [("block", 0.88), ("head", 0.90)]:
            acc += rng.normal(0, 0.002)
            before = acc - 0.01 + rng.normal(0, 0.002)
            arm = {"norm_type": "batch", "dropout_p": 0.25, "dropout_placement": placement, "recalibrate_bn": True}
            shift.append(run(seed=seed, epochs=4, val_accuracy=acc, val_accuracy_before_recalibration=before, **arm))
    frames = {name: pd.DataFrame(rows) for name, rows in [("H1", h1), ("H2", h2), ("H3", h3), ("shift", shift)]}
    return frames | {"H1-fixed": frames["H1"].iloc[:0], "H3-fixed": frames["H3"].iloc[:0]} | _plateaus(frames, rng)


def _plateaus(frames: dict[str, pd.DataFrame], rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """The plateau checks' longer runs: every control at twice its epochs, within +-0.05 pp (stopped improving)."""
    longer = {}
    for check in registry.BUDGET_CHECKS:
        controls = plateau.controls_of(check, frames[check.input])
        gain = rng.normal(0, 0.0002, len(controls))
        longer[check.longer] = controls.assign(epochs=2 * controls["epochs"], val_accuracy=controls.val_accuracy + gain)
    return longer


def test_grid_verdicts_decide_each_claim_over_its_own_hypothesis_family():
    verdicts = analysis.grid_verdicts(_synthetic_grids())
    for family, claims in [("H1", ["H1a", "H1a", "H1b", "H1b"]), ("H2", ["H2a", "H2b"]), ("H3", ["H3a", "H3b"])]:
        rows = verdicts[verdicts["family"] == family]
        assert sorted(rows["hypothesis"]) == claims
        assert rows["p_holm"].tolist() == pytest.approx(holm(rows["p_value"].to_numpy(), 0.05)[0].tolist())
        assert set(rows["adjusted_over"]) == {f"whole family ({len(claims)} claims)"}
    shift = verdicts[verdicts["family"] == "sensitivity"]  # 02b: described, never decided
    assert len(shift) and set(shift["decision"]) == {"described, not decided"} and shift["p_holm"].isna().all()
    small = verdicts.set_index("claim").loc["norm=none, block: dropout 0.25 beats none"]  # names the value run
    assert small["decision"] == "contradicted" and small["family"] == "H1"
    # H2b compares the two dropout-0 arms of H1, each at its own lr and weight decay
    h2b = verdicts[verdicts["hypothesis"] == "H2b"].iloc[0]
    assert "batch at lr=0.001, weight_decay" in h2b["claim"] and h2b["n_seeds"] == 5


def test_described_rows_and_tuning_edges_are_never_decided():
    table = pd.DataFrame(
        {
            "hypothesis": ["H1a", "H1b", "H1a"],
            "family": ["H1", "H1", "sensitivity"],
            "p_value": [0.001, 0.001, 0.001],
            "effect": [1.0, -1.0, 1.0],
            "margin": [0.0, 0.0, 0.0],
            "direction": ["greater", "less", "greater"],
            "tuning_decided": ["yes", "no", "yes"],
        }
    )
    result = analysis.adjust(table)
    assert result["decision"].tolist()[1:] == ["not decided: tuning range", "described, not decided"]
    assert np.isnan(result["p_holm"].iloc[2])


def test_design_columns_name_the_tuning_design_and_the_edges():
    tuned = pd.DataFrame(
        {
            "seed": [20, 21, 22],
            "tag.halving_rungs": ["2,4,12"] * 3,
            "tag.halving_eta": ["3"] * 3,
            "tag.tune_seeds": ["10,11"] * 3,
            "tag.tuning_ranges": ["lr=0.0003:0.03:log weight_decay=1e-05:0.01:log"] * 3,
            "tag.tuning_decided": ["yes", "yes", "not decided: tuning range"],
            "tag.range_extensions": ["[]"] * 3,
        }
    )
    columns = analysis.design_columns(tuned)
    assert "rungs 2/4/12 epochs, eta 3, tuning seeds 10,11" in columns["design"]
    assert "re-measured on seeds 20-22" in columns["design"] and columns["tuning_decided"] == "no"
    fixed = analysis.design_columns(pd.DataFrame({"seed": [0, 1], "lr": [1e-3, 1e-3], "weight_decay": [5e-4] * 2}))
    assert fixed == {"design": "fixed lr 0.001, weight_decay 0.0005; seeds 0,1", "tuning_decided": "yes"}
    # a halving study's fixed-value arms carry its rungs and tuning seeds, but no tuned ranges
    beside = {"tag.halving_rungs": ["1,3,8"] * 3, "tag.tune_seeds": ["10,11"] * 3, "tag.fixed_nuisance": ["{}"] * 3}
    fixed_arm = pd.DataFrame({"seed": [20, 21, 22], "lr": [1e-3] * 3, "weight_decay": [5e-4] * 3} | beside)
    assert analysis.design_columns(fixed_arm)["design"] == "fixed lr 0.001, weight_decay 0.0005; seeds 20-22"


def test_budget_changes_describe_the_interaction_and_decide_nothing():
    """v4: H1 is decided in 02; 05's rows across budgets and their interaction are described (no Holm)."""

    def rows(claims, budget, sign, family="sensitivity"):
        return pd.DataFrame(
            [
                {
                    "hypothesis": h,
                    "claim": c,
                    "budget": budget,
                    "effect": e,
                    "ci_low": e - 1,
                    "ci_high": e + 1,
                    "decision": d,
                    "family": family,
                    "seed_diffs": json.dumps({str(seed): e + sign * 0.05 * (seed - 2) for seed in range(5)}),
                }
                for h, c, e, d in claims
            ]
        )

    grid = rows(
        [
            ("H1a", "norm=batch: dropout 0.3 beats none", -2.2, "contradicted"),
            ("H1a", "norm=none: dropout 0.3 beats none", -0.3, "contradicted"),
        ],
        "4,000 training images × 12 epochs | validated on all 5,000 images",
        +1,
        family="H1",
    )
    full = rows(
        [
            ("H1a", "norm=batch, head: dropout 0.3 beats none", 0.0, "described, not decided"),
            ("H1a", "norm=none, block: dropout 0.3 beats none", 0.1, "described, not decided"),
        ],
        "55,000 training images × 12 epochs | validated on all 5,000 images",
        -1,
    )
    changes = analysis.budget_changes(grid, full).set_index("variant")
    assert changes["same_arm"].to_dict() == {"head": False, "block": True}  # a claim without placement: block
    assert "interaction_p_holm" not in changes and "interaction_decision" not in changes
    assert set(changes["interaction_family"]) == {"sensitivity"}
    # the interaction (full - grid, paired by seed): per seed 0.4 - 0.1 (seed - 2), a t-interval over 5 seeds
    half = scipy_stats.t.ppf(0.975, 4) * np.std([0.4 - 0.1 * (s - 2) for s in range(5)], ddof=1) / math.sqrt(5)
    assert changes.loc["block", "interaction"] == pytest.approx(0.4)
    assert changes.loc["block", "interaction_ci_low"] == pytest.approx(0.4 - half)
    p = scipy_stats.ttest_1samp([0.4 - 0.1 * (s - 2) for s in range(5)], 0.0).pvalue
    assert changes.loc["block", "interaction_p"] == pytest.approx(p)
    lines = analysis.budget_change_lines(changes.reset_index())
    assert "2 rows, 1 of them the same arm" in lines[0] and "described, not decided" in lines[0]
    assert lines[1].startswith(
        "- H1a norm=none, block (same arm): -0.30 pp (95% CI -1.30 to +0.70 pp), decided in its family: "
        "contradicted at 4,000 training images × 12 epochs → +0.10 pp (95% CI -0.90 to +1.10 pp) at "
        "55,000 training images × 12 epochs; change +0.40 pp"
    )
    assert lines[1].endswith(": described, not decided")
    text = "\n".join(lines).lower()
    assert "inconclusive" not in text and "no effect" not in text and " shown" not in text
    # 05's twins: the same arms at 02's budget, matched arm by arm; every interaction a described verdict row
    twins = rows(
        [
            ("H1a", "norm=batch, head: dropout 0.3 beats none", -1.0, "described, not decided"),
            ("H1a", "norm=none, block: dropout 0.3 beats none", -0.9, "described, not decided"),
        ],
        grid["budget"].iloc[0],
        +1,
    )
    same = analysis.budget_changes(twins, full, same_arms=True).set_index("variant")
    assert len(same) == 2 and same["same_arm"].all()
    assert same["effect_grid"].to_dict() == {"head": -1.0, "block": -0.9}
    interactions = comparisons.interaction_rows(same.reset_index())
    assert len(interactions) == 2 and set(interactions["family"]) == {"sensitivity"}
    assert set(interactions["hypothesis"]) == {"budget x dropout"}
    assert interactions["effect"].tolist() == pytest.approx([1.0, 1.0])  # from the seeds only: no _effect
    assert interactions["uncertainty"].tolist() == ["seeds", "seeds"]
    assert "larger at 55,000 training images × 12 epochs than at 4,000" in interactions.iloc[0]["claim"]
    adjusted = analysis.adjust(interactions)
    assert set(adjusted["decision"]) <= {"described, not decided", "budget too short to decide"}
    findings = comparisons.budget_findings(same.reset_index())
    assert findings[0].startswith('- **BatchNorm, dropout in the dense head**, "dropout 0.3 beats none": +0.00 points')
    assert "the change is +1.00 points" in findings[0]


def test_budget_interaction_without_shared_seeds_is_welch():
    """Different seeds at the two budgets: the per-seed differences are independent, Welch's interval."""
    large = json.dumps({"10": 1.0, "11": 1.2, "12": 0.8})
    small = json.dumps({"0": 0.1, "1": -0.1, "2": 0.0, "3": 0.05})
    effect = analysis.interaction(large, small)
    welch = scipy_stats.ttest_ind([1.0, 1.2, 0.8], [0.1, -0.1, 0.0, 0.05], equal_var=False)
    assert effect.mean == pytest.approx(1.0 - 0.0125)
    assert effect.p_value() == pytest.approx(welch.pvalue, rel=1e-6)


def test_budget_interaction_pairs_seeds_read_back_as_floats():
    """A store can give seeds back as floats: "20.0" and "20" are one seed, so the interaction is paired, not
    Welch, and a verdict row writes its keys as integers whatever type the seeds came in."""
    large = json.dumps({"20": 1.0, "21": 1.2, "22": 0.8})
    small = json.dumps({"20.0": 0.1, "21.0": 0.3, "22.0": -0.1})
    effect = analysis.interaction(large, small)
    assert effect.mean == pytest.approx(0.9)
    assert effect.ci_high - effect.ci_low == pytest.approx(0.0, abs=1e-6)  # paired: the same change per seed
    assert [seed_key(s) for s in (20, 20.0, "21.0", np.int64(22), "a")] == ["20", "20", "21", "22", "a"]


# --- study v3 (issue 22): the statistics defects, each with a known answer ---------------------------


def _histories(curves: dict[tuple[str, float], list[float]], seeds=range(5), noise=0.0) -> pd.DataFrame:
    """Per-epoch histories as epoch_histories returns them: one run per (arm, dropout_p) and seed."""
    rng = np.random.default_rng(1)
    rows = []
    for (arm, p), val_losses in curves.items():
        for seed in seeds:
            for epoch, val in enumerate(val_losses, start=1):
                rows.append(
                    {
                        "epoch": epoch,
                        "train_loss": 0.2,
                        "val_loss": val + rng.normal(0, noise),
                        "arm": arm,
                        "seed": seed,
                        "norm_type": arm.split("/")[0],
                        "dropout_p": p,
                        "dropout_placement": "block",
                        "lr": 1e-3,
                    }
                )
    return pd.DataFrame(rows)


def test_overfitting_keeps_the_two_dropout_values_of_an_arm_apart():
    """Defect 1: the arm 'none/block' holds p=0.25 and p=0.6; grouping by (arm, seed) interleaved two runs
    (the old code's best epoch of a 'run' was the 0.6 curve's last epoch mixed with the 0.25 curve's)."""
    falling = [1.0, 0.8, 0.6, 0.5, 0.45, 0.42]  # p=0.25: best at the last epoch
    rising = [0.9, 0.7, 0.65, 0.7, 0.8, 0.9]  # p=0.6: best at epoch 3, then worse
    summary, _ = analysis.overfitting(_histories({("none/block", 0.25): falling, ("none/block", 0.6): rising}))
    assert len(summary) == 2 and (summary["n"] == 5).all()
    by_p = summary.set_index("dropout_p")
    assert by_p.loc[0.25, "best_epoch_mean"] == 6 and by_p.loc[0.6, "best_epoch_mean"] == 3
    assert by_p.loc[0.25, "rise"] == pytest.approx(0.0) and by_p.loc[0.6, "rise"] == pytest.approx(0.25)
    assert by_p.loc[0.6, "late_change"] == pytest.approx(0.9 - 0.65)  # epoch 6 vs the declared epoch 3


def test_overfitting_reads_runs_whose_configurations_hold_missing_values():
    """A hyperparameter missing on some runs (NaN, as MLflow frames give it) still keys a run: pandas 3's
    ``astype(str)`` keeps NaN, which broke the run key in notebook 05."""
    histories = _histories(
        {("none/block", 0.25): [1.0, 0.8, 0.7], ("none/block", 0.6): [1.0, 0.9, 0.95]}, seeds=range(3)
    )
    histories["weight_decay"] = np.where(histories["dropout_p"] == 0.25, np.nan, 1e-4)
    summary, _ = analysis.overfitting(histories)
    assert len(summary) == 2 and (summary["n"] == 3).all()


def test_overfitting_is_not_decided_against_an_impossible_null():
    """Defect 2: 'last - minimum' is >= 0 by construction, so a model still improving read as overfitting.
    Validation loss still falling (plus noise around its plateau): the paired late change is negative."""
    improving = [1.0, 0.7, 0.55, 0.5, 0.48, 0.47, 0.465, 0.462, 0.46, 0.458]
    histories = _histories({("none/no dropout", 0.0): improving}, noise=0.004)
    summary, claims = analysis.overfitting(histories, epochs=10)
    assert summary.loc[0, "rise"] > 0  # the old statistic: positive although nothing overfits
    claim = claims.iloc[0]
    assert "epoch 10" in claim["claim"] and "epoch 5" in claim["claim"]
    assert claim["effect"] < 0 and claim["verdict"] == "contradicted"
    overfits = _histories(
        {("batch/no dropout", 0.0): [1.0, 0.6, 0.4, 0.35, 0.36, 0.4, 0.45, 0.5, 0.55, 0.6]}, noise=0.01
    )
    assert analysis.overfitting(overfits, epochs=10)[1].iloc[0]["verdict"] == "supported"


def test_overfitting_is_also_asked_on_accuracy_where_a_loss_rise_can_be_over_confidence():
    """The loss rises late while the accuracy holds (over-confidence): the loss claim is supported, the
    accuracy claim is not; best - last accuracy is shown but never tested (>= 0 by construction)."""
    loss = [1.0, 0.6, 0.4, 0.35, 0.36, 0.4, 0.45, 0.5, 0.55, 0.6]
    histories = _histories({("batch/no dropout", 0.0): loss}, noise=0.01)
    rng = np.random.default_rng(1)
    histories["val_accuracy"] = 0.90 + rng.normal(0, 0.002, len(histories))
    summary, claims = analysis.overfitting(histories, epochs=10)
    assert claims["unit"].tolist() == ["loss", "pp"] and "accuracy at epoch 10" in claims.iloc[1]["claim"]
    assert claims.iloc[0]["verdict"] == "supported" and claims.iloc[1]["verdict"] != "supported"
    assert summary.loc[0, "best_minus_last_acc"] > 0
    noise = rng.normal(0, 0.002, len(histories))
    falls = histories.assign(val_accuracy=0.95 - 0.01 * histories["epoch"].clip(lower=5) + noise)
    assert analysis.overfitting(falls, epochs=10)[1].iloc[1]["verdict"] == "supported"


def _lr_rows(batch: list[float], none: list[float], seeds=range(5), jitter=None):
    rows = []
    for seed in seeds:
        for norm, accs in (("batch", batch), ("none", none)):
            for lr, acc in zip([10 ** (-4 + 0.5 * i) for i in range(5)], accs, strict=True):  # step 0.5 decades
                extra = jitter(seed, norm, lr) if jitter else 0.0
                rows.append({"seed": seed, "norm_type": norm, "lr": lr, "val_accuracy": acc + extra})
    return _grid(rows)


def test_h2a_is_lattice_free_and_decided_by_the_exact_sign_flip_test():
    """The widths are read off each seed's curve (interpolated between grid points), so they are not
    multiples of the grid step, and the claim is decided by the exact sign-flip test over seeds: 5 seeds all
    on one side give p = 2/32 = 0.0625, which cannot decide at 5%; 6 seeds can (2/64)."""
    batch, none = [0.80, 0.89, 0.90, 0.89, 0.60], [0.70, 0.80, 0.90, 0.70, 0.50]
    widths, row = analysis.h2_lr_range(_lr_rows(batch, none))
    # batch: floor 0.88; up from 1e-4.5 (0.89) to 1e-4 (0.80) crosses at 1/9 of the step; down to 1e-2 (0.60)
    # at 1/29 of it: 0.5 * (1/9 + 2 + 1/29) decades. none: floor 0.88 crosses at 0.2 and 0.1 of the steps.
    expected_batch, expected_none = 0.5 * (1 / 9 + 2 + 1 / 29), 0.5 * (0.2 + 0.1)
    by_norm = widths.groupby("norm_type")["usable_decades"].mean()
    assert by_norm["batch"] == pytest.approx(expected_batch) and by_norm["none"] == pytest.approx(expected_none)
    assert row.loc[0, "test"] == "sign-flip" and row.loc[0, "p_value"] == pytest.approx(2 / 32)
    assert row.loc[0, "verdict"] == "not shown" and "smallest possible p 0.0625" in row.loc[0, "note"]
    assert "at 1 / 2 / 3 points of tolerance" in row.loc[0, "note"]
    assert {"width_1pp", "width_2pp", "width_3pp"} <= set(widths.columns)
    _, six = analysis.h2_lr_range(_lr_rows(batch, none, seeds=range(6)))
    assert six.loc[0, "p_value"] == pytest.approx(2 / 64) and six.loc[0, "verdict"] == "supported"


def test_sign_flip_test_is_exact():
    from lib.stats import sign_flip_test

    assert sign_flip_test([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)
    assert sign_flip_test([1.0, -1.0, 2.0, 0.5]) == pytest.approx(
        np.mean([abs(np.dot(s, [1.0, -1.0, 2.0, 0.5])) >= 2.5 - 1e-12 for s in itertools.product([1, -1], repeat=4)])
    )
    assert sign_flip_test([0.3, 0.4], margin=1.0) == pytest.approx(2 / 4)


def _scipy_sign_flip(values, margin=0.0):
    """scipy's exact sign-flip test: all 2^k sign assignments of the differences (``permutation_type="samples"``
    with one sample), two-sided."""
    shifted = np.asarray(values, dtype=float) - margin
    result = scipy_stats.permutation_test(
        (shifted,), np.mean, permutation_type="samples", n_resamples=np.inf, vectorized=True
    )
    return float(result.pvalue)


def test_sign_flip_test_gives_scipys_exact_p_and_the_exact_p_at_a_zero_mean_where_scipy_does_not():
    """lib.stats keeps its own enumeration (its module header says why, measured): on continuous differences
    and on the committed H2a rows it gives scipy.stats.permutation_test's exact p-values, bit for bit; at an
    observed mean of exactly zero it gives the exact p = 1, where scipy's tie tolerance (relative to the observed
    mean) counts the rounding noise of the other sign assignments as beyond it."""
    from lib.stats import sign_flip_test

    rng = np.random.default_rng(1)
    for _ in range(300):
        k, margin = int(rng.integers(2, 11)), float(rng.choice([0.0, 0.005, 0.1]))
        values = rng.normal(rng.normal(0, 0.5), 1, k)
        assert sign_flip_test(values, margin) == _scipy_sign_flip(values, margin)
    committed = pd.read_csv(PROJECT_ROOT / "figures" / "verdicts.csv")
    assert (committed["test"] == "sign-flip").sum() == 1  # H2a
    for _, row in committed[committed["test"] == "sign-flip"].iterrows():
        diffs = list(json.loads(row["seed_diffs"]).values())
        assert sign_flip_test(diffs) == _scipy_sign_flip(diffs) == row["p_value"]
    tie = [0.2, 0.1, 0.0, -0.2, -0.1]  # mean exactly 0: every assignment reaches it
    assert sign_flip_test(tie) == 1.0 and _scipy_sign_flip(tie) == 0.875


def test_h2a_without_a_usable_rate_is_censored_and_decided_by_a_sign_test():
    """Defect 7: no usable rate at all is not '-1 decade' in a t-test; the seed is censored and the claim
    is decided by the exact sign test (with 5 seeds all on one side: p = 2/32, never below 0.05)."""

    def jitter(seed, norm, lr):  # seeds 0-2 without norm: every rate more than 2 points below the best mean
        return -0.1 if norm == "none" and seed < 3 else 0.0

    frame = _lr_rows([0.80, 0.89, 0.90, 0.89, 0.60], [0.70, 0.80, 0.90, 0.80, 0.50], jitter=jitter)
    widths, row = analysis.h2_lr_range(frame)
    none = widths[widths["norm_type"] == "none"].set_index("seed")["usable_decades"]
    assert none.loc[[0, 1, 2]].isna().all() and not (widths["usable_decades"] < 0).any()
    assert row.loc[0, "test"] == "sign" and "sign test" in row.loc[0, "note"]
    assert row.loc[0, "p_value"] == pytest.approx(scipy_stats.binomtest(5, 5).pvalue)  # 0.0625
    assert row.loc[0, "verdict"] == "not shown"


def test_sign_test_and_median_interval():
    assert stats_sign([1, 2, 3, -1, 0]) == pytest.approx(scipy_stats.binomtest(3, 4).pvalue)
    assert stats_median_ci([float("-inf"), 1, 2, 3, 4, 5])[1:] == (float("-inf"), 5.0)  # n = 6: coverage 96.9%
    assert math.isnan(stats_median_ci([1, 2, 3, 4, 5])[1])  # n = 5 cannot reach 95%


def stats_sign(values):
    from lib.stats import sign_test

    return sign_test(values)


def stats_median_ci(values):
    from lib.stats import median_ci

    return median_ci(values)


def test_two_source_interval_covers_image_sampling():
    """Defect 5: seeds identical, so a seed-only interval has zero width; the image term is what is left,
    and its SE matches the analytic paired SE sd(d_i)/sqrt(n) of the per-image differences."""
    rng = np.random.default_rng(3)
    n = 4000
    control = rng.random(n) < 0.9
    treatment = control.copy()
    flip = rng.choice(n, 300, replace=False)  # 200 images fixed, 100 broken: +2.5 pp
    treatment[flip[:200]], treatment[flip[200:]] = True, False
    t, c = np.tile(treatment, (5, 1)), np.tile(control, (5, 1))
    effect = two_source_effect(t, c, "t - c", n_resamples=2000, seed=0)
    d = treatment.astype(float) - control.astype(float)
    se = d.std(ddof=1) / math.sqrt(n)
    assert effect.mean == pytest.approx(d.mean())
    assert effect.sd == pytest.approx(se, rel=0.1)
    assert (effect.ci_low, effect.ci_high) == pytest.approx((d.mean() - 1.96 * se, d.mean() + 1.96 * se), abs=0.002)
    assert effect.uncertainty == "seeds+images" and effect.method == "two-way t"
    assert two_source_effect(t, c, seed=0).ci_low == effect.ci_low  # seeded
    assert paired_effect(pd.Series(t.mean(axis=1)), pd.Series(c.mean(axis=1))).degenerate  # seeds alone: none


def test_two_source_interval_covers_seed_noise():
    """Every image counts the same, seeds differ: the interval is the seeds' (SE ~ sd/sqrt(k))."""
    rng = np.random.default_rng(4)
    k, n = 40, 500
    control = np.zeros((k, n))
    per_seed_gain = rng.normal(0.05, 0.02, k)
    treatment = (rng.random((k, n)) < per_seed_gain[:, None]).astype(float)  # diff ~ per-seed gain
    effect = two_source_effect(treatment, control, seed=1)
    seed_means = treatment.mean(axis=1)
    assert effect.sd == pytest.approx(seed_means.std(ddof=1) / math.sqrt(k), rel=0.2)
    with pytest.raises(ValueError, match="same shape|one shape"):
        two_source_effect(treatment, control[:, :10])


def test_verdict_rows_say_which_uncertainty_they_used():
    rng = np.random.default_rng(5)
    base = rng.random(1000) < 0.88
    rows = []
    for seed in range(4):
        for p in (0.0, 0.25):
            correct = base.copy()
            if p:
                correct[rng.choice(1000, 30, replace=False)] = True
            rows.append({"seed": seed, "norm_type": "none", "dropout_p": p, "val_correct": correct})
    frame = _grid(rows)
    frame["val_accuracy"] = frame["val_correct"].map(np.mean)
    with_images = analysis.h1(frame)
    assert with_images.loc[0, "uncertainty"] == "seeds+images" and with_images.loc[0, "test"] == "two-way t"
    assert analysis.h1(frame.drop(columns="val_correct")).loc[0, "uncertainty"] == "seeds"


def test_claims_name_the_values_that_were_run():
    rows = [
        {"seed": s, "norm_type": "none", "dropout_p": p, "val_accuracy": acc + 0.001 * s * p}
        for s in range(3)
        for p, acc in [(0.0, 0.85), (0.25, 0.87), (0.6, 0.80)]
    ]
    claims = analysis.h1(_grid(rows))["claim"].tolist()
    assert claims == ["norm=none: dropout 0.25 beats none", "norm=none: dropout 0.6 hurts vs 0.25"]


def test_generated_text_never_reads_an_inconclusive_row_as_no_effect():
    """Low: 'inconclusive' reads 'not shown' in every generated sentence; nothing says 'no effect'."""
    table = pd.DataFrame(
        [
            {"hypothesis": "H1a", "claim": "norm=batch, head: dropout 0.25 beats none", "budget": "b", "n_seeds": 5,
             "effect": -0.01, "ci_low": -0.3, "ci_high": 0.28, "unit": "pp", "verdict": "inconclusive",
             "family": "budget", "p_value": 0.9, "margin": 0.0, "direction": "greater"},
            {"hypothesis": "final", "claim": "'sweep best' beats 'default' on validation", "budget": "b",
             "n_seeds": 3, "effect": 0.44, "ci_low": -0.2, "ci_high": 1.1, "unit": "pp", "verdict": "inconclusive",
             "family": "final choice", "p_value": 0.12, "margin": 0.0, "direction": "greater"},
        ]
    )  # fmt: skip
    adjusted = analysis.adjust(table)
    texts = [analysis.summary_markdown(adjusted)]
    texts.append(analysis.recommendation("sweep best", adjusted[adjusted["hypothesis"] == "final"])[1])
    curves = analysis.best_so_far(
        pd.DataFrame({"algo": ["tpe", "random"] * 3, "sweep_seed": [0, 0, 1, 1, 2, 2], "trial": [0] * 6,
                      "val_accuracy": [0.80, 0.81, 0.82, 0.80, 0.79, 0.80]})
    )  # fmt: skip
    texts.append(analysis.summary_markdown(analysis.adjust(analysis.search_comparison(curves, "b"))))
    text = "\n".join(texts).lower()
    assert "not shown" in text
    for phrase in ("no effect", "inconclusive", "did not raise", "do not beat", "does not beat", "not in the"):
        assert phrase not in text, phrase


def test_trial_runs_map_the_report_error_to_a_missing_input(monkeypatch):
    from lib import report

    def missing(names):
        raise report.ReportError("unknown experiment 'x'")

    monkeypatch.setattr(report, "trial_runs", missing)
    with pytest.raises(analysis.MissingRunsError, match="run the notebook that produces it"):
        analysis.trial_runs("02_norm_dropout", "H1", "full")


def test_the_ledger_flags_a_configuration_read_before_as_a_re_reading(tmp_path):
    from lib.paths import PROJECT_ROOT
    from lib.study import ledger

    committed = ledger.rereadings(PROJECT_ROOT / "figures" / "test_readings.csv")
    assert committed["rereading_of"].tolist() == ["", "", "2", "", "4", ""]  # v3 re-read v2; v4 read a new config
    path = tmp_path / "ledger.csv"
    first = {"commit": "a", "candidate": "c", "epochs": 1, "train_images": 10, "n_test": 100, "path": path}
    ledger.append_reading(config="lr=0.001, norm_type=batch", seeds=[1], accuracies=[0.9], **first)
    again = ledger.append_reading(config="norm_type=batch, lr=0.001, dropout_impl=fast", seeds=[2],
                                  accuracies=[0.8], note="v4", **first)  # fmt: skip
    assert again["note"].startswith("re-reading: this configuration read the test set before")
    assert "90.00%" in again["note"]
    other = ledger.append_reading(config="lr=0.002, norm_type=batch", seeds=[3], accuracies=[0.8], **first)
    assert "re-reading" not in other["note"]
    assert ledger.rereadings(path)["rereading_of"].tolist() == ["", "1", ""]


def test_the_ledger_lists_the_committed_readings_and_takes_new_seeds_only(tmp_path):
    from lib.paths import PROJECT_ROOT
    from lib.study import ledger

    committed = ledger.readings(PROJECT_ROOT / "figures" / "test_readings.csv")
    assert committed["accuracy"].round(4).tolist()[:4] == [0.9369, 0.9376, 0.9375, 0.9359]  # v1 and v2
    assert set(committed["seeds"][:4]) == {"100/101/102/103"} and committed["commit"].str.len().eq(40).all()
    later = {int(s) for text in committed["seeds"][4:] for s in text.split("/")}
    assert not later & {100, 101, 102, 103}, "a later reading reused a seed that had read the test set"
    for _, reading in committed.iterrows():  # the mean is the mean of the per-seed readings
        assert np.mean([float(a) for a in reading["per_seed_accuracy"].split("/")]) == pytest.approx(
            reading["accuracy"], abs=6e-5
        )
    path = tmp_path / "test_readings.csv"
    path.write_text((PROJECT_ROOT / "figures" / "test_readings.csv").read_text())
    common = {"commit": "abc", "candidate": "c", "config": "x", "epochs": 10, "train_images": 60_000, "n_test": 10_000}
    with pytest.raises(ValueError, match=r"seeds \[101\] already read the test set"):
        ledger.append_reading(seeds=[101, 950], accuracies=[0.94, 0.94], path=path, **common)
    row = ledger.append_reading(seeds=[900, 901], accuracies=[0.941, 0.939], path=path, **common)
    assert len(ledger.readings(path)) == len(committed) + 1 and row["accuracy"] == pytest.approx(0.94)
    assert row["ci_low"] < 0.94 < row["ci_high"]
    # the same reading again (a rerun from the cache) is not a new look at the test set: not appended
    single = tmp_path / "one_reading.csv"  # a try-out's ledger holds one reading: the case a rerun met
    ledger.append_reading(seeds=[7], accuracies=[0.9], path=single, **(common | {"config": "a=1, b=2, c=3"}))
    assert not ledger.record_reading(
        seeds=[7], accuracies=[0.9], path=single, **(common | {"config": "c=3, a=1, b=2"})
    )[1]
    reordered = common | {"config": "c=3, b=2, a=1"}
    ledger.append_reading(seeds=[910], accuracies=[0.93], path=path, **(common | {"config": "a=1, b=2, c=3"}))
    assert not ledger.record_reading(seeds=[910], accuracies=[0.93], path=path, **reordered)[1]  # same, reordered
    again, appended = ledger.record_reading(seeds=[900, 901], accuracies=[0.941, 0.939], path=path, **common)
    assert not appended and len(ledger.readings(path)) == len(committed) + 2 and again["seeds"] == "900/901"
    with pytest.raises(ValueError, match="already read the test set"):  # other accuracies on those seeds: refused
        ledger.record_reading(seeds=[900, 901], accuracies=[0.95, 0.939], path=path, **common)


def test_one_budget_wording_for_several_epochs():
    """Issue 20: the study's budget text is report.budget_label's words, also for a grid of two budgets."""
    data = DataSpec(train_subset=8000)
    text = analysis.budget_text(pd.DataFrame({"epochs": [2, 10]}), data)
    assert text == "8,000 training images × 2 epochs; 8,000 training images × 10 epochs | validated on all 5,000 images"
    assert analysis.budget_text(pd.DataFrame({"seed": [0]})) == ""  # a bare frame says nothing it does not know
