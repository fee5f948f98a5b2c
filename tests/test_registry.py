"""The hypotheses as data (lib.study.registry): every record is wired to a rule, a split, a family and inputs
that exist; the families, their sizes, the grid inputs and 04's headings derived from the records are the
declared ones; a new claim that compares two arms is one record; a claim is made only where both its arms
have trials."""

from __future__ import annotations

import inspect
from dataclasses import replace

import nbformat
import pandas as pd
import pytest
from test_stats_analysis import _synthetic_grids  # the grids 02, 02b and 03 as the store returns them

from lib.paths import PROJECT_ROOT
from lib.study import analysis, contrast, hypotheses, inputs, registry, verdicts
from lib.study.registry import Arm, Hypothesis


def test_every_record_names_a_rule_a_split_a_family_and_inputs_that_exist():
    names = [record.name for record in registry.HYPOTHESES]
    assert len(names) == len(set(names)), f"two records share a name: {names}"
    families = {family.name for family in registry.FAMILY_LIST}
    grids = {grid.name for grid in registry.INPUTS}
    for record in registry.HYPOTHESES:
        assert record.rule in hypotheses.RULES, f"{record.name}: no rule {record.rule!r}"
        assert record.split in contrast.SPLITS, f"{record.name}: no split {record.split!r}"
        assert record.family in families, f"{record.name}: family {record.family!r} is not declared"
        assert {record.input, record.fixed_input} - {""} <= grids, f"{record.name}: an input is not declared"
        assert record.direction in ("greater", "less") and record.claims >= 1
    for rule in hypotheses.RULES.values():  # one call shape for every rule
        assert list(inspect.signature(rule).parameters)[:2] == ["records", "frame"]


def test_the_families_sizes_inputs_and_headings_derived_from_the_records_are_the_declared_ones():
    # declared before the runs: H1 = H1a and H1b for each of two norm types; H2 = H2a, H2b; H3 = H3a, H3b
    assert registry.FAMILY_SIZES == {"H1": 4, "H2": 2, "H3": 2}
    assert verdicts.FAMILY_SIZES is registry.FAMILY_SIZES and {"sensitivity"} == verdicts.DESCRIBED
    assert set(registry.FAMILIES) == {"H1", "H2", "H3", "search", "final choice", "sensitivity"}
    assert registry.FAMILIES["H1"].startswith("H1a/H1b: ")
    assert inputs.GRID_INPUTS == (
        ("H1", "02_norm_dropout", "H1"),
        ("H1-fixed", "02_norm_dropout", "H1-fixed"),
        ("H2", "02_norm_dropout", "H2"),
        ("shift", "02b_dropout_bn", "variance_shift"),
        ("H3", "03_conv_blocks", "H3"),
        ("H3-fixed", "03_conv_blocks", "H3-fixed"),
    )
    assert {"H1-fixed", "H3-fixed"} == registry.OPTIONAL_INPUTS
    # the thresholds the notebooks print are the records' own
    assert (analysis.MODERATE_DROPOUT, analysis.HIGH_DROPOUT_ABOVE) == ((0.2, 0.4), 0.5)
    assert (analysis.LR_TOLERANCE, analysis.LITTLE_GAIN) == (0.02, 0.005)


def test_04_heads_its_families_as_its_committed_output_does():
    """04's "What this run found" loops over GRID_FAMILY_HEADINGS; its committed output has every heading."""
    notebook = nbformat.read(PROJECT_ROOT / "notebooks" / "04_analysis.ipynb", as_version=4)
    cell = next(c for c in notebook.cells if c.cell_type == "code" and "GRID_FAMILY_HEADINGS" in c.source)
    shown = "".join(o.get("data", {}).get("text/markdown", "") for o in cell.outputs)
    headings = [f"*{title}*:" for _, title in registry.GRID_FAMILY_HEADINGS]
    assert [family for family, _ in registry.GRID_FAMILY_HEADINGS] == ["H1", "H2", "H3", "sensitivity"]
    assert [shown.index(h) for h in headings] == sorted(shown.index(h) for h in headings)  # present, in order


def test_a_new_claim_that_compares_two_arms_is_one_record():
    grids = _synthetic_grids()
    toy = Hypothesis(
        name="H9",
        family="H9",
        claim="2 conv blocks beat 1{design}",
        treatment=Arm("num_conv_blocks", values=(2,)),
        control=Arm("num_conv_blocks", values=(1,)),
        input="H3",
        claims=2,  # declared: a second claim that this run does not make counts as not rejected
    )
    before = analysis.grid_verdicts(grids)
    after = analysis.grid_verdicts(grids, registry.HYPOTHESES + (toy,))
    row = after[after["hypothesis"] == "H9"].iloc[0]
    assert row["claim"] == "2 conv blocks beat 1" and row["family"] == "H9" and row["rule"] == "CI > 0"
    assert row["adjusted_over"] == "partial: 1 of 2 claims"
    assert row["p_holm"] == pytest.approx(min(1, 2 * row["p_value"]))
    blocks = grids["H3"]["num_conv_blocks"]
    effect = verdicts.effect_between(grids["H3"][blocks == 2], grids["H3"][blocks == 1], "2 - 1")
    assert row["effect"] == pytest.approx(100 * effect.mean)
    pd.testing.assert_frame_equal(after[after["hypothesis"] != "H9"].reset_index(drop=True).drop(columns="_effect"),
                                  before.drop(columns="_effect"))  # fmt: skip


def test_a_claim_is_made_only_where_both_its_arms_have_trials():
    grids = _synthetic_grids()
    h3 = grids["H3"]
    rows = analysis.h3(h3[h3["num_conv_blocks"] > 0])  # no 0-block arm: no H3a (not an empty row), H3b stays
    assert rows["hypothesis"].tolist() == ["H3b"] and (rows["n_seeds"] > 0).all()
    h1 = grids["H1"]
    rows = analysis.h1(h1[h1["dropout_p"] > 0])  # no dropout-0 control: H1b (high vs moderate) only
    assert rows["hypothesis"].tolist() == ["H1b", "H1b"]
    assert analysis.h2b_tuned(h1[h1["norm_type"] == "batch"]).empty  # no arm without normalization: no H2b


def test_arms_pick_by_values_bounds_and_best_setting():
    frame = pd.DataFrame(
        {"p": [0.0, 0.2, 0.4, 0.5, 0.6, 0.2], "lr": [1, 1, 1, 1, 1, 2], "val_accuracy": [0.8, 0.9, 0.7, 0.6, 0.5, 0.95]}
    )
    assert contrast.select(frame, Arm("p", at_least=0.2, at_most=0.4))["p"].tolist() == [0.2, 0.4, 0.2]
    assert contrast.select(frame, Arm("p", above=0.5))["p"].tolist() == [0.6]
    assert contrast.select(frame, Arm("p", values=(0,)))["p"].tolist() == [0.0]
    best = contrast.select(frame, Arm("p", at_least=0.1, best_by=("lr",)))  # lr=2's mean 0.95 beats lr=1's 0.675
    assert best.index.tolist() == [5]
    assert contrast.arm_words(best, Arm("p", best_by=("lr",))) == ("2", "lr=2")
    assert contrast.arm_words(frame.iloc[1:3], Arm("p")) == ("0.2/0.4", "p=0.2/0.4")
    with pytest.raises(KeyError, match="registered: H1a"):
        registry.hypothesis("H7")


def test_the_rule_text_follows_the_direction_and_the_margin():
    record = registry.hypothesis("H3b")
    assert record.rule_text() == "CI < +0.5 pp"
    assert replace(record, margin=0.0).rule_text() == "CI < 0"
    assert replace(record, direction="greater", margin=0.0).rule_text() == "CI > 0"
    assert replace(record, unit="decades", margin=0.25).rule_text() == "CI < +0.2 decades"
