"""Notebook 05 (study v4): 02's tuned H1 arms at full budget, described; the search comparison, decided."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib.study import analysis, comparisons
from lib.study.profiles import PROFILES

# 02's tuned winners: each arm its own lr and weight decay (v4: no normalization with block dropout,
# BatchNorm with head dropout)
TUNED = {
    ("none", "block", 0.0): (2e-3, 1e-4),
    ("none", "block", 0.3): (3e-3, 2e-5),
    ("none", "block", 0.6): (4e-3, 1e-5),
    ("batch", "head", 0.0): (5e-3, 1e-3),
    ("batch", "head", 0.3): (6e-3, 3e-4),
    ("batch", "head", 0.6): (7e-3, 2e-4),
}


def _runs(tuned=TUNED, seeds=(20, 21, 22), start=0) -> pd.DataFrame:
    """02's H1 input as the store returns it: one finished run per arm and seed, with the data params."""
    rows = []
    for (norm, placement, p), (lr, wd) in tuned.items():
        for seed in seeds:
            rows.append(
                {"status": "finished", "norm_type": norm, "dropout_placement": placement, "dropout_p": p,
                 "lr": lr, "weight_decay": wd, "conv_out_channels": 16, "num_conv_blocks": 2, "seed": seed,
                 "epochs": 12, "val_accuracy": 0.9, "data_train_subset": 4000, "data_val_subset": np.nan,
                 "data_dataset": "fashion_mnist", "train_images": 4000,
                 "start_time": pd.Timestamp("2026-12-06") + pd.Timedelta(minutes=start + len(rows))}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_budget_arms_carry_each_arms_own_tuned_lr_and_weight_decay():
    arms = comparisons.budget_arms(_runs(), [0.0, 0.3, 0.6])
    assert len(arms) == 6 and (arms["alternatives"] == 0).all()
    for arm in arms.itertuples():
        lr, wd = TUNED[(arm.norm_type, arm.dropout_placement, arm.dropout_p)]
        assert (arm.lr, arm.weight_decay) == (lr, wd)
        assert arm.config["lr"] == lr and arm.config["weight_decay"] == wd and arm.config["conv_out_channels"] == 16
        assert "seed" not in arm.config and "epochs" not in arm.config
        assert arm.seeds == [20, 21, 22]
    # one line per norm type, the dropout-0 control included
    assert sorted(set(arms["label"])) == ["batch/head", "none/block"]
    assert arms["budget"].iloc[0] == "4,000 training images × 12 epochs | validated on all 5,000 images"


def test_budget_arms_keep_the_latest_tuning_and_name_the_values_02_ran():
    older = {key: (1e-3, 5e-4) for key in TUNED}
    runs = pd.concat([_runs(older), _runs(start=1000)], ignore_index=True)
    arms = comparisons.budget_arms(runs, [0.0, 0.3])
    assert (arms["alternatives"] == 1).all()
    assert arms.set_index(["norm_type", "dropout_p"]).loc[("batch", 0.3), "lr"] == 6e-3
    with pytest.raises(ValueError, match=r"no dropout_p \[0\.25\]; allowed: \[0\.0, 0\.3, 0\.6\]"):
        comparisons.budget_arms(_runs(), [0.0, 0.25])


def test_budget_configs_run_every_arm_at_the_full_budget_with_its_tuned_values():
    arms = comparisons.budget_arms(_runs(), [0.0, 0.3, 0.6])
    configs = comparisons.budget_configs(arms, 12, [20, 21])
    assert len(configs) == 12
    assert {c.train.epochs for c in configs} == {12} and {c.seed for c in configs} == {20, 21}
    pairs = {(c.model.norm_type, c.model.dropout_placement, c.model.dropout_p, c.train.lr, c.train.weight_decay)
             for c in configs}  # fmt: skip
    assert pairs == {(*key, *values) for key, values in TUNED.items()}


def test_twin_runs_are_02s_own_runs_of_the_same_configurations_and_seeds():
    runs = _runs(seeds=(20, 21, 22, 23, 24))
    arms = comparisons.budget_arms(runs, [0.0, 0.3, 0.6])
    other = _runs({("none", "block", 0.3): (9e-3, 1e-2)}, seeds=(20,))  # the same arm, another configuration
    twins = comparisons.twin_runs(pd.concat([runs, other], ignore_index=True), arms, [20, 22])
    assert len(twins) == 12 and set(twins["seed"]) == {20, 22}
    assert 9e-3 not in set(twins["lr"])
    assert set(twins["arm"]) == {"none/block", "batch/head"}
    labelled = comparisons.with_arm_labels(pd.DataFrame({"norm_type": ["batch"], "dropout_placement": ["head"],
                                                          "dropout_p": [0], "arm": ["old"]}), arms)  # fmt: skip
    assert labelled["arm"].tolist() == ["batch/head"]


def _histories(seeds=range(3)) -> pd.DataFrame:
    rows = []
    for seed in seeds:
        for epoch, loss in enumerate([1.0, 0.6, 0.4, 0.45, 0.5, 0.55], start=1):
            late = 0.01 * seed * (epoch == 6)  # the late rise differs a little between seeds
            rows.append({"epoch": epoch, "train_loss": 0.2, "val_loss": loss + late, "arm": "batch/head",
                         "seed": seed, "norm_type": "batch", "dropout_p": 0.0, "dropout_placement": "head",
                         "val_accuracy": 0.9 - 0.001 * epoch - late})  # fmt: skip
    return pd.DataFrame(rows)


def test_overfitting_claims_are_described_sensitivity():
    _, claims = analysis.overfitting(_histories(), epochs=6)
    assert set(claims["family"]) == {"sensitivity"} and len(claims) == 2
    adjusted = analysis.adjust(claims)
    assert set(adjusted["decision"]) == {"described, not decided"}
    lines = comparisons.overfit_findings(adjusted)
    stem = "- norm=batch, no dropout: validation"
    assert lines[0].startswith(f"{stem} loss at epoch 6 is above that at epoch 3: +0.160 in validation loss (95% CI")
    assert lines[1].startswith(f"{stem} accuracy at epoch 6 is below that at epoch 3: -1.30 points (95% CI")


def test_the_search_comparison_stays_a_decision_and_reads_in_plain_words():
    frame = pd.DataFrame(
        {"algo": ["tpe", "random"] * 4, "sweep_seed": [0, 0, 1, 1, 2, 2, 3, 3], "trial": [0] * 8,
         "val_accuracy": [0.90, 0.88, 0.91, 0.885, 0.905, 0.89, 0.9, 0.887]}
    )  # fmt: skip
    row = analysis.adjust(analysis.search_comparison(analysis.best_so_far(frame), "b")).iloc[0]
    assert row["family"] == "search" and row["decision"] in ("supported", "not shown", "contradicted")
    best = pd.Series({"random": 0.8855, "tpe": 0.90375})
    lines = comparisons.search_findings(row, best, (0.9, 0.89, 0.91))
    assert lines[0].startswith("- TPE's best after 1 trials beats random search's (paired by sweep seed): +")
    assert "4 sweep seeds" in lines[0] and f"**{row['decision']}**" in lines[0]
    assert lines[1] == (
        "- Mean best validation accuracy after all trials: random 88.55%, tpe 90.38%; the default configuration "
        "at the same budget: 90.00% (95% CI 89.00% to 91.00%; a reference line, not tested)."
    )


def test_the_deep_profile_sizes_05_to_its_share_of_two_hours():
    """05's knobs in `full` (the deep profile runs them): part A pairs with 02's seeds, at least 3 seeds
    wherever a comparison is shown, a search budget the short-budget rule lets decide, and the sizes the
    time arithmetic in lib/study/profiles.py assumes (<= 65 min of deep's 120)."""
    from lib.study.verdicts import MIN_IMAGE_EPOCHS

    deep = PROFILES["deep"]
    assert set(deep["budget_seeds"]) <= set(deep["seeds"]) and len(deep["budget_seeds"]) >= 3
    assert len(deep["search_seeds"]) >= 3
    assert deep["train_subset"] * deep["search_epochs"] >= MIN_IMAGE_EPOCHS
    assert set(deep["budget_dropout_values"]) <= set(deep["dropout_values"])
    assert deep["budget_dropout_values"][0] == 0.0 and len(deep["budget_dropout_values"]) == 3
    # the arithmetic's inputs: 6 arms x 5 seeds x 55,000 x 12 and 5 x 27 sweep trials of 4,000 x 8
    assert (deep["budget_train_subset"], deep["budget_epochs"], len(deep["budget_seeds"])) == (None, 12, 5)
    assert (deep["search_evals"], len(deep["search_seeds"])) == (16, 5)
    for name in ("smoke", "quick"):
        knobs = PROFILES[name]
        assert set(knobs["budget_seeds"]) <= set(knobs["seeds"])
        assert set(knobs["budget_dropout_values"]) <= set(knobs["dropout_values"])
