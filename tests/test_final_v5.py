"""Study v5's final model: the candidates declared as data, the protocol before the reading, the seventh reading
flagged, the goal sentence from the numbers, the precision each profile pins, and the cost arithmetic."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from lib.engine.halving import rung_sizes
from lib.paths import PROJECT_ROOT
from lib.study import final, finalists, ledger, profiles

SWEEP_BEST = {"optimizer": "adam", "lr": 0.00345, "weight_decay": 1.2e-05, "batch_size": 128, "norm_type": "none"}
COMMON = {"commit": "abc", "config": "lr=0.002, norm_type=batch", "epochs": 30, "train_images": 60_000}


def test_the_candidates_are_declared_from_the_knobs_before_any_run():
    knobs = profiles.resolve("deep")
    listed = finalists.declare(knobs, SWEEP_BEST)
    assert [(c.name, c.epochs, c.tuned) for c in listed] == [("v4 recipe", 20, True), ("recipe + erasing", 30, True)]
    recipe, erase = (c.config for c in listed)
    assert erase == recipe | {"augment_erase_p": 0.5} and recipe["augment_erase_p"] == 0.0
    assert recipe["convs_per_block"] == 2 and recipe["optimizer"] == "adam" and recipe["norm_type"] == "batch"
    assert recipe["precision"] == "fp32" and "epochs" not in recipe and "seed" not in recipe
    wide = finalists.declare(knobs | {"candidate_wide": True}, SWEEP_BEST)[-1]
    assert wide.name == "recipe + erasing, wide" and wide.config["conv_out_channels"] == 32 and wide.epochs == 30
    adjusted = finalists.declare(knobs, SWEEP_BEST, adjust=lambda c: c | {"recalibrate_bn": True})
    assert all(c.config["recalibrate_bn"] for c in adjusted)
    with pytest.raises(ValueError, match="candidate_long_epochs"):
        finalists.declare(knobs | {"candidate_long_epochs": 0}, SWEEP_BEST)


def test_each_candidate_is_tuned_by_halving_at_its_own_schedule():
    knobs = profiles.resolve("deep")
    listed = finalists.declare(knobs, SWEEP_BEST)
    calls = []

    def fake_run(base, scientific, ranges, tune_seeds, seeds, experiment, data, tags, **design):
        calls.append((base, scientific, [r.name for r in ranges], tune_seeds, seeds, data, tags, design))
        table = pd.DataFrame({"round": [0] * len(design["rungs"]), "points": rung_sizes(9, len(design["rungs"]), 3)})
        arm = SimpleNamespace(winner={"lr": 0.002, "weight_decay": 3e-4}, verdict=lambda: "yes")
        return SimpleNamespace(arms=[arm], rung_table=lambda: table, rung_epochs=design["rungs"], eta=design["eta"])

    studies = finalists.tune(listed, knobs, "06_final_model", {"hypothesis": "final-tuning"}, run=fake_run)
    assert [call[7]["rungs"] for call in calls] == [[4, 20], [6, 30]]  # the last rung is the candidate's schedule
    for base, scientific, names, tune_seeds, seeds, data, tags, design in calls:
        assert names == ["lr", "weight_decay"] and "lr" not in base and "weight_decay" not in base
        assert base["epochs"] == design["rungs"][-1] and scientific == {"conv_out_channels": [16]}
        assert not set(tune_seeds) & set(seeds) and len(seeds) >= 3 and design["fixed_seeds"] == []
        assert rung_sizes(design["n_points"], len(design["rungs"]), design["eta"])[-1] >= 3  # >= 3 at the budget
        assert data.train_subset == knobs["candidate_tune_subset"] and "candidate" in tags
    done = finalists.tuned(listed, studies)
    assert [c.config["lr"] for c in done] == [0.002, 0.002] and done[0].config["weight_decay"] == 3e-4
    assert "halving at 4/20 epochs (9/3 points, eta 3)" in done[0].tuning and "decided: yes" in done[0].tuning
    trials = finalists.trial_configs(done, knobs["candidate_seeds"])  # the comparison: the longest first
    assert [(name, c.train.epochs, c.seed) for name, c in trials][:4] == [
        ("recipe + erasing", 30, 0), ("recipe + erasing", 30, 1), ("recipe + erasing", 30, 2), ("v4 recipe", 20, 0)
    ]  # fmt: skip
    assert all(c.train.lr == 0.002 and c.train.precision == "fp32" for _, c in trials)


@pytest.mark.slow
def test_the_smoke_tuning_runs_through_the_public_halving(tmp_path):
    knobs = profiles.resolve("smoke")
    listed = finalists.declare(knobs, SWEEP_BEST)
    studies = finalists.tune(listed, knobs, "final_v5_test", {"hypothesis": "final-tuning", "profile": "smoke"})
    done = finalists.tuned(listed, studies)
    assert set(studies) == {"v4 recipe", "recipe + erasing"}
    table = finalists.tuning_table(studies)
    assert table["curse_pp"].tolist() == pytest.approx((table["tuning_pct"] - table["remeasured_pct"]).tolist())
    assert all(c.config["lr"] > 0 and "halving at 1 epochs" in c.tuning for c in done)


def test_the_validation_interval_covers_seeds_and_images():
    frame = pd.DataFrame(
        {
            "candidate": ["a"] * 3 + ["b"] * 3,
            "seed": [0, 1, 2] * 2,
            "val_accuracy": [0.944, 0.9442, 0.9438, 0.930, 0.935, 0.940],
            "status": "finished",
        }
    )
    summary = finalists.validation_summary(frame, n_val=5_000).set_index("candidate")
    a, b = summary.loc["a"], summary.loc["b"]
    assert a["seeds_high"] - a["seeds_low"] < 0.002  # the seeds agree closely: the images dominate (+/-0.64 points)
    assert a["ci_high"] - a["ci_low"] == pytest.approx(2 * 1.96 * (0.944 * 0.056 / 5_000) ** 0.5, rel=0.02)
    assert b["ci_low"] <= b["seeds_low"] and b["ci_high"] >= b["seeds_high"]


def _committed(tmp_path):
    path = tmp_path / "test_readings.csv"
    path.write_text((PROJECT_ROOT / "figures" / "test_readings.csv").read_text())
    return path


def test_the_protocol_is_declared_before_the_reading_and_the_seventh_is_flagged(tmp_path):
    path = _committed(tmp_path)
    reading = COMMON | {"candidate": "recipe + erasing", "seeds": [400, 401], "accuracies": [0.94, 0.941]}
    reading |= {"n_test": 10_000, "path": path, "notebook": "06_final_model"}
    with pytest.raises(ValueError, match="no protocol declared reading 7 with seeds 400/401"):
        ledger.append_reading(**reading, require_protocol=True)
    words = {"rule": "highest mean validation accuracy", "goal": "mean >= 94.0%"}
    with pytest.raises(ValueError, match=r"final seeds \[300\] already read the test set"):
        ledger.declare_protocol(words, ["v4 recipe"], [300, 500], path)
    row, appended = ledger.declare_protocol(words, ["v4 recipe", "recipe + erasing"], [400, 401], path)
    assert appended and row["reading"] == 7 and ledger.protocols(path)["reading"].tolist() == [7]
    with pytest.raises(ValueError, match="not among the declared candidates"):
        ledger.append_reading(**(reading | {"candidate": "default"}), require_protocol=True)
    row = ledger.append_reading(**reading, require_protocol=True, count=True)
    assert row["note"].startswith("the 7th reading of this test set (6 before it, 2026-11-28 to 2026-12-06")
    assert ledger.counted(path)["reading"].tolist() == list(range(1, 8))
    again, appended = ledger.declare_protocol(words, ["v4 recipe", "recipe + erasing"], [400, 401], path)
    assert not appended and int(again["reading"]) == 7  # a rerun of the same protocol after its reading
    with pytest.raises(ValueError, match="already read the test set"):  # another protocol for used seeds
        ledger.declare_protocol(words | {"rule": "changed"}, ["v4 recipe"], [400, 401], path)
    assert ledger.reading_number(path) == 8 and [ledger.ordinal(n) for n in (1, 2, 3, 11, 22)] == [
        "1st", "2nd", "3rd", "11th", "22nd"
    ]  # fmt: skip


def test_the_v5_protocol_names_the_seventh_reading_and_fresh_seeds():
    knobs = profiles.resolve("deep")
    used = ledger.used_seeds(PROJECT_ROOT / "figures" / "test_readings.csv")
    assert not used & set(knobs["final_seeds"])  # the seeds of the v5 reading never read the test set
    number = ledger.reading_number(PROJECT_ROOT / "figures" / "test_readings.csv")
    words = finalists.protocol(finalists.declare(knobs, SWEEP_BEST), knobs, 55_000, used, number)
    assert words["reading"] == "the 7th reading of this test set" and words["precision"] == "fp32"
    assert words["candidates"] == "v4 recipe (20 ep) | recipe + erasing (30 ep)"
    assert "94.0%" in words["success criterion"] and words["final seeds"] == "400/401/402/403"


@pytest.mark.parametrize(
    ("mean", "low", "high", "expected"),
    [
        (0.9388, 0.9340, 0.9436, ["**missed**: 93.88%", "0.12 points short", "whether it reaches it is not shown"]),
        (0.9452, 0.9421, 0.9483, ["**met**: 94.52%", "stretch goal, 94.5%, was met too", "whole interval lies above"]),
        (0.9420, 0.9390, 0.9450, ["**met**", "stretch goal, 94.5%, was not", "covers the goal"]),
        (0.93996, 0.9390, 0.9409, ["**missed**: 93.996%", "0.00 points short"]),
        (0.9300, 0.9250, 0.9350, ["**missed**: 93.00%", "1.00 points short", "whole interval lies below"]),
    ],
)  # fmt: skip
def test_the_goal_sentence_says_met_or_missed_from_the_numbers(mean, low, high, expected):
    sentence = final.goal_sentence(mean, low, high)
    for words in expected:
        assert words in sentence, sentence
    assert ("met" in sentence.split("**")[1]) == (mean >= 0.94)


def test_each_profile_pins_its_precision(monkeypatch):
    assert {name: knobs["precision"] for name, knobs in profiles.PROFILES.items()} == {
        "smoke": "native", "quick": "native", "full": "fp32", "deep": "fp32"
    }  # fmt: skip
    for cpu in ("bf16", "fp32"):  # either CPU kind: full and deep train in fp32, smoke and quick in the CPU's own
        monkeypatch.setattr(profiles, "DEFAULT_PRECISION", cpu)
        assert profiles.precision(profiles.resolve("deep")) == profiles.precision(profiles.resolve("full")) == "fp32"
        assert profiles.pinned(profiles.resolve("smoke")) == {"precision": cpu}
    assert profiles.precision(profiles.resolve("full", precision="bf16")) == "bf16"  # the described cross-check
    with pytest.raises(ValueError, match="precision='fp16': unknown. Allowed: fp32, bf16, native"):
        profiles.precision({"precision": "fp16"})


def test_the_deep_cost_arithmetic_is_the_profile_comments():
    knobs = profiles.resolve("deep")
    estimate = finalists.cost(knobs, rate=2_800, overhead_s=300)
    assert estimate.parts["final"] == 4 * 30 * 60_000  # the dearest candidate wins
    assert estimate.parts["comparison"] == pytest.approx(3 * (20 + 30) * (55_000 + 5_000 / 3))
    tuning = 2 * ((9 * 4 + 3 * 20) + (9 * 6 + 3 * 30)) * (5_000 + 5_000 / 3)
    assert estimate.parts["tuning"] == pytest.approx(tuning)
    assert round(estimate.images / 1e6, 2) == 19.90 and round(estimate.seconds) == 7_407
    comment = (PROJECT_ROOT / "lib" / "study" / "profiles.py").read_text()
    assert "19.90M" in comment and "7,407 s" in comment
