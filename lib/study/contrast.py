"""The ``contrast`` rule: a registered claim's two arms of a grid, compared paired by seed, as verdict rows.

A :class:`lib.study.registry.Hypothesis` names its treatment and control (:class:`lib.study.registry.Arm`),
its predicted direction and margin, and how its grid input is split into groups (:data:`SPLITS`); this
module picks the trials of each arm in each group, measures the effect (``verdicts.effect_between``: over
seeds and validation images where both are stored), and writes one verdict row per group, with the design
the arms were measured on (:func:`design_columns`). H1a/H1b, H2b and H3a/H3b are contrasts; a new claim that
compares two arms is one record, no code.

What this is not: the registry of claims (``registry``), the rules that are not a contrast of two arms
(``hypotheses``: H2a's usable range, 02b's recalibration) or the family-wise decision (``verdicts.adjust``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from lib.data import DataSpec
from lib.stats import verdict
from lib.store.schema import (
    TAG_HALVING_ETA,
    TAG_HALVING_RUNGS,
    TAG_RANGE_EXTENSIONS,
    TAG_TUNE_SEEDS,
    TAG_TUNING_DECIDED,
    TAG_TUNING_RANGES,
    column,
)
from lib.study.inputs import budget_text, finished
from lib.study.registry import Arm, Hypothesis, checks_for
from lib.study.verdicts import budget_keys, effect_between, verdict_row

# --- the design a row was measured on ---------------------------------------------------------


def _tag(frame: pd.DataFrame, name: str) -> list[str]:
    tag = column(name)
    return sorted({str(v) for v in frame[tag].dropna()}) if tag in frame else []


def _seeds_text(seeds: list[int]) -> str:
    seeds = sorted(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


def design_columns(*frames: pd.DataFrame) -> dict[str, str]:
    """``design`` (how the arms behind a verdict row were tuned and re-measured, read from the runs' tags) and
    ``tuning_decided`` (``yes``, or ``no`` when an arm's tuned winner still sat on a movable edge of its
    range after the allowed extensions: the row is then *not decided: tuning range*)."""
    parts = [f for f in frames if len(f)]
    if not parts:
        return {"design": "", "tuning_decided": "yes"}
    frame = pd.concat(parts, ignore_index=True)
    seeds = _seeds_text(frame["seed"].dropna().unique().tolist()) if "seed" in frame else "?"
    rungs, ranges = _tag(frame, TAG_HALVING_RUNGS), _tag(frame, TAG_TUNING_RANGES)
    if not rungs or not ranges:  # fixed values: a halving study's fixed-value arms carry its rungs, not ranges
        fixed = []
        for name in ("lr", "weight_decay"):
            values = sorted(frame[name].dropna().unique()) if name in frame else []
            fixed += [f"{name} {'/'.join(f'{v:g}' for v in values)}"] if len(values) else []
        return {"design": f"fixed {', '.join(fixed)}; seeds {seeds}", "tuning_decided": "yes"}
    extended = sum(1 for text in _tag(frame, TAG_RANGE_EXTENSIONS) if text not in ("", "[]"))
    how = f"rungs {' or '.join(r.replace(',', '/') for r in rungs)} epochs"
    how += f", eta {'/'.join(_tag(frame, TAG_HALVING_ETA))}"
    how += f", tuning seeds {'/'.join(_tag(frame, TAG_TUNE_SEEDS))}"
    how += f", ranges extended for {extended} arm(s)" if extended else ""
    text = f"lr x weight decay tuned per arm by successive halving over {' | '.join(ranges)} ({how})"
    text += f"; winners re-measured on seeds {seeds}"
    decided = _tag(frame, TAG_TUNING_DECIDED)
    return {"design": text, "tuning_decided": "yes" if set(decided) <= {"yes"} else "no"}


# --- the arms -----------------------------------------------------------------------------------


def select(frame: pd.DataFrame, arm: Arm | None) -> pd.DataFrame:
    """The trials of ``frame`` in ``arm`` (all of them for ``None``), in the frame's order."""
    if arm is None:
        return frame
    column = frame[arm.column]
    mask = pd.Series(True, index=frame.index)
    mask &= column.isin(arm.values) if arm.values else True
    mask &= column >= arm.at_least if arm.at_least is not None else True
    mask &= column > arm.above if arm.above is not None else True
    mask &= column <= arm.at_most if arm.at_most is not None else True
    chosen = frame[mask]
    if not arm.best_by or chosen.empty:
        return chosen
    best = chosen.groupby(list(arm.best_by))["val_accuracy"].mean().idxmax()
    best = best if isinstance(best, tuple) else (best,)
    return chosen[np.logical_and.reduce([chosen[k] == v for k, v in zip(arm.best_by, best, strict=True)])]


def _value(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else f"{value}"


def arm_words(trials: pd.DataFrame, arm: Arm) -> tuple[str, str]:
    """How a claim names an arm's trials: the values they ran (``0.2/0.3``) or the best setting picked (``2``),
    and the same as ``column=value`` (``lr=0.001, weight_decay=0.0005``)."""
    if arm.best_by:  # one setting: its value per column
        named = {column: _value(trials[column].iloc[0]) for column in arm.best_by}
    else:  # the values the arm's trials ran
        named = {arm.column: "/".join(_value(v) for v in sorted(trials[arm.column].unique()))}
    return "/".join(named.values()), ", ".join(f"{column}={text}" for column, text in named.items())


# --- groups: one claim per group ------------------------------------------------------------------


def whole_grid(done: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One group: the whole input."""
    return [("", done)]


def _norm_groups(done: pd.DataFrame, by_placement: bool) -> list[tuple[str, pd.DataFrame]]:
    """Per norm type (and dropout placement): its dropout trials with its ``dropout_p = 0`` trials, the shared
    control (placement cannot matter without dropout). A BatchNorm group recalibrated throughout says so."""
    groups = []
    for norm in sorted(done["norm_type"].unique()):
        arm = done[done["norm_type"] == norm]
        none, dropped = arm["dropout_p"] == 0, arm["dropout_p"] > 0
        placements = (
            sorted(arm.loc[dropped, "dropout_placement"].unique()) if by_placement and dropped.any() else [None]
        )
        for placement in placements:
            chosen = dropped if placement is None else dropped & (arm["dropout_placement"] == placement)
            trials = arm[chosen]
            recal = "recalibrate_bn" in trials and norm == "batch" and trials["recalibrate_bn"].astype(bool).all()
            if by_placement and recal:
                label = f"norm={norm}, {placement} + recalibration"
            else:
                label = f"norm={norm}" + (f", {placement}" if placement else "")
            groups.append((label, arm[none | chosen]))
    return groups


SPLITS: dict[str, Callable[[pd.DataFrame], list[tuple[str, pd.DataFrame]]]] = {
    "whole grid": whole_grid,
    "norm type": lambda done: _norm_groups(done, by_placement=False),
    "norm type and placement": lambda done: _norm_groups(done, by_placement=True),
}


# --- the rule ----------------------------------------------------------------------------------------


def claim_row(record: Hypothesis, group: pd.DataFrame, label: str, design: str, text: str, family: str) -> dict | None:
    """One verdict row of ``record`` on one group's trials; ``None`` when an arm has no finished trial."""
    treatment, control = select(group, record.treatment), select(group, record.control)
    if treatment.empty or control.empty:
        return None
    words = {"group": label + design, "design": design, "margin_pp": f"{record.margin * 100:.1f} pp"}
    words["treatment"], words["treatment_at"] = arm_words(treatment, record.treatment)
    words["control"], words["control_at"] = arm_words(control, record.control)
    effect = effect_between(treatment, control, record.effect.format(**words))
    outcome = verdict(effect, record.margin, record.direction)
    row = verdict_row(
        record.name,
        record.claim.format(**words),
        effect,
        record.rule_text(),
        outcome,
        budget_text=text,
        family=family,
        margin=record.margin,
        direction=record.direction,
        unit=record.unit,
    )
    by = [name for check in checks_for(record.name) for name in check.by]
    keys = {"budget_keys": budget_keys(pd.concat([treatment, control]), by)} if by else {}
    return row | design_columns(treatment, control) | keys


def contrast_rows(
    records: Sequence[Hypothesis],
    frame: pd.DataFrame,
    data: DataSpec | None = None,
    family: str | None = None,
    design: str = "",
    split: str | None = None,
) -> pd.DataFrame:
    """The ``contrast`` rule: each record's claim in each group of ``frame`` (its finished trials in the records'
    ``subset``, cut by their ``split``), group by group in the records' order.

    A claim is made where both its arms have finished trials (a group without a 3+ block arm has no H3b).
    ``family`` (default: the records') and ``design`` (a label added to each claim, e.g.
    :data:`lib.study.registry.FIXED_LABEL`) let a notebook re-ask the claims as described rows.
    """
    done = select(finished(frame), records[0].subset)
    text = budget_text(done, data)
    rows = []
    for label, group in SPLITS[split or records[0].split](done):
        for record in records:
            row = claim_row(record, group, label, design, text, family or record.family)
            rows += [row] if row is not None else []
    return pd.DataFrame(rows)
