"""Budget checks that bind (study v5): every decided family's claims name a plateau check in the registry; a row
whose check failed, or was not run, for an arm it depends on reads "not decided: budget" (Holm's family and
p-values unchanged); the budget a failed check would need is measured on a ladder of doublings; H2a's seeds
and sidedness let it be decided at Holm's first step."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
from test_stats_analysis import _synthetic_grids  # 02, 02b, 03 and the checks' longer runs, all stopped improving

from lib.stats import sign_flip_test
from lib.study import analysis, hypotheses, plateau, profiles, registry, results_doc, verdicts

# --- the registry: a check (or a stated exemption) for every decided family


def test_every_decided_family_names_its_plateau_check_or_says_why_it_has_none():
    checked = {record.family for check in registry.BUDGET_CHECKS for record in map(registry.hypothesis, check.claims)}
    for family in registry.FAMILY_LIST:
        if not family.decided:
            continue
        assert family.name in checked or family.budget_exempt, f"{family.name}: no plateau check and no reason"
        assert not (family.name in checked and family.budget_exempt), f"{family.name}: a check and an exemption"
    assert checked == {"H1", "H2", "H3"}
    for record in registry.HYPOTHESES:  # every decided claim depends on exactly one check
        if record.family not in registry.DESCRIBED:
            assert len(registry.checks_for(record.name)) == 1, record.name
    grids = {grid.name for grid in registry.INPUTS}
    for check in registry.BUDGET_CHECKS:
        assert check.input in grids and check.by and check.factor == plateau.FACTOR and check.why
        assert check.longer in {grid.name for grid in registry.LONGER_INPUTS}
    for knobs in profiles.PROFILES.values():  # the knobs name declared checks only
        assert {registry.budget_check(name).name for name in knobs["plateau_checks"]} == set(knobs["plateau_checks"])
    assert set(profiles.PROFILES["full"]["plateau_checks"]) == {check.name for check in registry.BUDGET_CHECKS}
    assert profiles.PROFILES["full"]["plateau_max_factor"] >= 4  # a failed check gets at least one more doubling


# --- the binding


def _with_gain(grids: dict[str, pd.DataFrame], name: str, column: str, value: object, gain: float) -> dict:
    """``grids`` with the longer runs of one arm of one check ``gain`` higher (per seed, a little jitter)."""
    longer = grids[name].copy()
    arm = longer[column] == value
    longer.loc[arm, "val_accuracy"] += gain + 0.001 * pd.Series(range(int(arm.sum())), index=longer.index[arm]) / 4
    return grids | {name: longer}


def test_a_failed_check_withholds_exactly_the_rows_that_depend_on_its_arm_and_leaves_holm_as_it_was():
    grids = _synthetic_grids()
    passed = analysis.grid_verdicts(grids)
    assert verdicts.NOT_DECIDED_BUDGET not in set(passed["decision"])  # every check stopped improving
    failed = analysis.grid_verdicts(_with_gain(grids, "H1-plateau", "norm_type", "none", 0.01))  # +1 pp at 2x
    bound = failed["decision"] == verdicts.NOT_DECIDED_BUDGET
    # the no-normalization H1 rows and H2b (which compares both no-dropout controls); not the BatchNorm H1 rows
    assert sorted(failed.loc[bound, "hypothesis"]) == ["H1a", "H1b", "H2b"]
    assert failed.loc[bound & (failed["family"] == "H1"), "claim"].str.startswith("norm=none").all()
    assert (passed.loc[bound, "decision"] != verdicts.NOT_DECIDED_BUDGET).all()
    assert "contradicted" in set(passed.loc[bound, "decision"])  # a row that was decided before
    pd.testing.assert_series_equal(failed["decision"][~bound], passed["decision"][~bound])
    for name in ("p_value", "p_holm", "adjusted_over"):  # Holm's family and its p-values as declared
        pd.testing.assert_series_equal(failed[name], passed[name])
    reason = failed.loc[bound, "budget_check"].iloc[0]
    assert "'H1 controls' failed: norm_type=none still improving: 10->20 epochs +1.0" in reason
    assert "budget needed: not reached by 2x" in reason
    assert set(failed.loc[~bound & failed["family"].isin(["H1", "H2", "H3"]), "budget_check"]) == {"passed"}


def test_a_check_that_was_not_run_withholds_its_claims_and_never_a_described_row():
    grids = _synthetic_grids()
    without = {name: frame for name, frame in grids.items() if name != "H3-plateau"}
    table = analysis.grid_verdicts(without)
    h3 = table[table["family"] == "H3"]
    assert set(h3["decision"]) == {verdicts.NOT_DECIDED_BUDGET}
    assert set(h3["budget_check"]) == {"'H3 block counts' not run for num_conv_blocks=0/1/2",
                                       "'H3 block counts' not run for num_conv_blocks=2/3"}  # fmt: skip
    assert verdicts.NOT_DECIDED_BUDGET not in set(table.loc[table["family"] != "H3", "decision"])
    described = table[table["family"] == registry.SENSITIVITY]
    assert len(described) and set(described["decision"]) == {verdicts.DESCRIBED_WORDS}
    # adjust without a check table: no check was run, so every decided claim that depends on one is withheld
    rows = table[table["family"].isin(["H1", "H2", "H3"])].drop(columns=["p_holm", "decision", "budget_check"])
    assert set(verdicts.adjust(rows)["decision"]) == {verdicts.NOT_DECIDED_BUDGET}


def test_the_short_budget_rule_comes_first_and_a_row_without_a_check_is_not_bound():
    row = {"claim": "c", "effect": 2.0, "ci_low": 1.0, "ci_high": 3.0, "unit": "pp", "verdict": "supported",
           "family": "H1", "p_value": 0.001, "margin": 0.0, "direction": "greater", "n_seeds": 5}  # fmt: skip
    short = row | {"hypothesis": "H1a", "budget": "600 training images × 1 epoch"}
    other = row | {"hypothesis": "H9", "family": "H9", "budget": "4,000 training images × 12 epochs"}
    table = verdicts.adjust(pd.DataFrame([short, other]))
    assert table["decision"].tolist() == [verdicts.TOO_SHORT, "supported"]


# --- the needed budget, measured


def _runs(epochs: int, accuracies: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"status": "finished", "norm_type": norm, "seed": seed, "epochs": epochs, "val_accuracy": accuracy,
          "dropout_p": 0.0, "lr": 2e-3, "weight_decay": 1e-4}
         for norm, values in accuracies.items() for seed, accuracy in zip(range(20, 25), values, strict=True)]
    )  # fmt: skip


def _step(base: list[float], gain: float, turn: int = 0) -> list[float]:
    """``base`` + ``gain`` per seed, with a jitter (``turn`` rotates it: two steps differ by more than a constant)."""
    jitter = [0.0, 0.001, -0.001, 0.0005, -0.0005]
    jitter = jitter[turn % 5 :] + jitter[: turn % 5]
    return [value + gain + noise for value, noise in zip(base, jitter, strict=True)]


def test_the_needed_budget_is_the_first_doubling_that_stopped_improving_or_not_reached():
    base = [0.870, 0.872, 0.869, 0.871, 0.870]
    controls = _runs(12, {"batch": base, "none": base, "layer": base})
    longer = pd.concat([
        _runs(24, {"batch": _step(base, 0.0), "none": _step(base, 0.01), "layer": _step(base, 0.01)}),
        _runs(48, {"none": _step(base, 0.0105, turn=1), "layer": _step(base, 0.02, turn=1)}),
    ])  # fmt: skip
    table = plateau.ladder(controls, longer).set_index("norm_type")
    assert table["stopped improving"].to_dict() == {"batch": "yes", "layer": "no", "none": "no"}
    assert table["budget needed"].to_dict() == {
        "batch": "12 epochs (1x, the decision budget)", "none": "24 epochs (2x)", "layer": "not reached by 4x"
    }  # fmt: skip
    steps = table.loc["none", "steps"]
    assert steps.startswith("12->24: +1.00 (<= +") and "; 24->48: +0.05" in steps
    assert table.loc["none", "gain (pp)"] == pytest.approx(1.0)  # the check at the decision budget itself
    # without longer runs the check is not run, and nothing is claimed about the budget
    assert set(plateau.ladder(controls, longer.iloc[0:0])["stopped improving"]) == {plateau.NOT_RUN}
    # the binding reads the needed budget into the row's reason
    row = {"hypothesis": "H1a", "claim": "c", "family": "H1", "effect": 1.0, "p_value": 0.001, "margin": 0.0,
           "direction": "greater", "budget_keys": verdicts.budget_keys(controls[controls.norm_type == "none"],
                                                                       ["norm_type"])}  # fmt: skip
    adjusted = verdicts.adjust(pd.DataFrame([row]), budget=table.reset_index().assign(check="H1 controls"))
    assert adjusted["decision"].item() == verdicts.NOT_DECIDED_BUDGET
    assert "budget needed: 24 epochs (2x)" in adjusted["budget_check"].item()


def test_the_ladder_trains_a_doubling_only_for_the_arms_still_improving(monkeypatch):
    base = [0.870, 0.872, 0.869, 0.871, 0.870]
    controls = _runs(12, {"batch": base, "none": base})
    calls = []

    def fake_longer(still, experiment, data, tags, factor, **options):
        calls.append((factor, sorted(still["norm_type"].unique()), tags.get("hypothesis")))
        gains = {"batch": 0.0, "none": 0.01 if factor == 2 else 0.0101}
        norms = sorted(still["norm_type"].unique())
        parts = [_runs(12 * factor, {norm: _step(base, gains[norm], turn=factor)}) for norm in norms]
        return pd.concat(parts, ignore_index=True)

    monkeypatch.setattr(plateau, "run_longer", fake_longer)
    longer = plateau.run_ladder(controls, "e", None, {"hypothesis": "H1-plateau"}, max_factor=8)
    assert calls == [(2, ["batch", "none"], "H1-plateau"), (4, ["none"], "H1-plateau")]  # none stopped at 2x
    assert plateau.ladder(controls, longer).set_index("norm_type")["budget needed"]["none"] == "24 epochs (2x)"
    calls.clear()
    assert plateau.run_ladder(controls, "e", None, {}, max_factor=2).shape[0] == 10 and len(calls) == 1
    calls.clear()
    assert plateau.run_ladder(controls, "e", None, {}, max_factor=0).empty and calls == []  # skipped: not run


def test_run_check_picks_the_declared_controls_and_tags_the_longer_runs(monkeypatch):
    grids = _synthetic_grids()
    seen = []

    def fake_longer(still, experiment, data, tags, factor, **options):
        seen.append((sorted(still["lr"].unique()), sorted(still["norm_type"].unique()), tags))
        jitter = 0.0002 * pd.Series(range(len(still)), index=still.index) % 0.0007
        return still.assign(epochs=still["epochs"] * factor, val_accuracy=still["val_accuracy"] + jitter)

    monkeypatch.setattr(plateau, "run_longer", fake_longer)
    longer, table = plateau.run_check("H2a best rates", grids["H2"], "e", None, "full", max_factor=4)
    assert seen == [([1e-3], ["batch", "none"], {"hypothesis": "H2-plateau", "profile": "full"})]  # each norm's best
    assert set(table["check"]) == {"H2a best rates"} and set(table["stopped improving"]) == {"yes"}
    assert len(longer) == 10


# --- H2a decidable on its own


def test_h2a_is_two_sided_and_the_full_profile_has_the_seeds_to_reject_at_holms_first_step():
    record, size = registry.hypothesis("H2a"), registry.FAMILY_SIZES["H2"]
    assert record.alternative == "two-sided" and size == 2
    assert registry.first_step_seeds(record, size) == 7  # 2/2^7 = 0.016 <= 0.05/2 < 2/2^6 = 0.031
    assert registry.first_step_seeds(replace(record, alternative="greater"), size) == 6
    assert sign_flip_test([0.4] * 6) > 0.05 / size  # v4's 6 seeds: only at Holm's second step
    for name in ("full", "deep"):
        seeds = len(profiles.PROFILES[name]["lr_seeds"])
        assert seeds >= registry.first_step_seeds(record, size)
        assert sign_flip_test([0.4] * seeds) <= 0.05 / size
        assert sign_flip_test([0.4] * (seeds - 1) + [-0.05]) <= 0.05 / size  # one small difference the other way


def test_the_h2a_row_says_when_its_seeds_cannot_reject_at_the_first_step_and_refuses_an_unbuilt_one_sided_test(
    monkeypatch,
):
    grid = _synthetic_grids()["H2"]  # 5 seeds
    row = analysis.h2_lr_range(grid)[1].iloc[0]
    assert "fewer than the 7 seeds that can reject at Holm's first step of H2" in row["note"]
    assert row["budget_keys"] == '{"norm_type": ["batch", "none"]}'
    one_sided = replace(registry.hypothesis("H2a"), alternative="greater")
    monkeypatch.setattr(hypotheses, "hypothesis", lambda name: one_sided)
    with pytest.raises(ValueError, match="only 'two-sided' is implemented"):
        analysis.h2_lr_range(grid)


# --- the words


def test_every_reader_of_verdicts_speaks_the_new_decision_word():
    grids = _with_gain(_synthetic_grids(), "H3-plateau", "num_conv_blocks", 3, 0.02)
    table = analysis.grid_verdicts(grids)
    bound = table[table["decision"] == verdicts.NOT_DECIDED_BUDGET]
    assert bound["hypothesis"].tolist() == ["H3b"]  # H3a ran 0-2 blocks, which stopped improving
    assert verdicts.decision_words(verdicts.NOT_DECIDED_BUDGET) == "not decided: budget"
    assert verdicts.NOT_DECIDED_BUDGET in verdicts.WITHHELD
    text = verdicts.summary_markdown(bound)
    assert "**not decided: budget**" in text and "raw:" not in text  # one verdict word per row
    assert "num_conv_blocks=3 still improving" in text and "budget needed" in text
    assert verdicts.display(bound)["decision"].tolist() == ["not decided: budget"]
    assert verdicts.display(bound, full=True)["verdict"].tolist() == [""]
    assert "**not decided: budget**" in results_doc.verdict_table(bound)


# --- end to end: real trials on digits, read back from the store


@pytest.mark.usefixtures("mlflow_store")
def test_run_check_trains_the_ladder_and_the_store_gives_the_same_table_to_grid_verdicts():
    from lib.data import DataSpec
    from lib.engine.grid import run_grid

    data = DataSpec(dataset="digits")
    base = {"epochs": 1, "conv_out_channels": 8, "hidden_sizes": (16,), "batch_size": 64, "lr": 3e-3,
            "precision": "fp32", "dropout_p": 0.0}  # fmt: skip
    run_grid(base, {"norm_type": ["none", "batch"]}, [0, 1], "ladder", data, tags={"hypothesis": "H1", "profile": "t"},
             workers=1, progress=False)  # fmt: skip
    controls = analysis.trial_runs("ladder", "H1", "t")
    longer, table = plateau.run_check("H1 controls", controls, "ladder", data, "t", max_factor=4, workers=1,
                                      progress=False)  # fmt: skip
    assert set(longer["epochs"]) <= {2, 4} and 2 in set(longer["epochs"])
    assert set(table["norm_type"]) == {"batch", "none"}
    stored = analysis.trial_runs("ladder", "H1-plateau", "t")  # tagged as the check's longer input
    assert sorted(stored["epochs"]) == sorted(longer["epochs"])
    still = table.loc[table["stopped improving"] != "yes", "norm_type"]  # only these got the 4x runs
    assert set(longer.loc[longer["epochs"] == 4, "norm_type"]) == set(still)
    needed = r"1 epoch \(1x, the decision budget\)|2 epochs \(2x\)|not reached by 4x"
    assert table["budget needed"].str.fullmatch(needed).all()
    again = plateau.budget_table({"H1": controls, "H1-plateau": stored})
    again = again[again["check"] == "H1 controls"].set_index("norm_type").sort_index()
    for column in ("stopped improving", "budget needed", "gain (pp)"):
        assert again[column].tolist() == table.set_index("norm_type").sort_index()[column].tolist()
