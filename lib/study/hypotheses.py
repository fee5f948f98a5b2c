"""The study's hypotheses as verdict rows: the rules that test the records of ``lib.study.registry``.

Each claim is a record in :mod:`lib.study.registry` (what it says, its arms, direction, margin, family,
grid input); this module runs each record's rule (:data:`RULES`) on its trials. Most claims are a
``contrast`` of two arms (:func:`lib.study.contrast.contrast_rows`: H1a/H1b, H2b, H3a/H3b); the others have
a rule of their own here: H2a's usable learning-rate range (:func:`h2_lr_range`) and 02b's recalibration
and placement effects (:func:`variance_shift`). :func:`grid_verdicts` runs every registered grid claim and
decides each family (Holm); :func:`h1`, :func:`h2b_tuned`, :func:`h3` are the notebooks' calls for one
family. The rules are fixed in code before the runs are read; claims name the values that were run. H2a's
rule (each norm type's *own* best mean) and its history are told in ``docs/design.md``.

What this is not: the registry of claims (``registry``), the family-wise decision (``verdicts.adjust``), the
final model (``final``) or 05's budget and search comparisons (``comparisons``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from lib.data import DataSpec
from lib.stats import NOT_SHOWN, Effect, censored_effect, interpolated_width, mean_ci, paired_effect, verdict
from lib.study.contrast import contrast_rows, design_columns
from lib.study.inputs import budget_text, finished
from lib.study.plateau import budget_table
from lib.study.registry import (
    DESCRIBED,
    FIXED_LABEL,
    SENSITIVITY,
    Hypothesis,
    checks_for,
    family_sizes,
    first_step_seeds,
    hypothesis,
    members,
    rule_groups,
)
from lib.study.verdicts import adjust, budget_keys, effect_between, verdict_row

# The declared thresholds, as the registry's records hold them (the names the notebooks print)
MODERATE_DROPOUT = (hypothesis("H1a").treatment.at_least, hypothesis("H1a").treatment.at_most)  # (0.2, 0.4)
HIGH_DROPOUT_ABOVE = hypothesis("H1b").treatment.above  # 0.5
LR_TOLERANCE = hypothesis("H2a").threshold  # "usable": within 2 accuracy points of the norm type's best mean
LR_TOLERANCES = (0.01, 0.02, 0.03)  # shown side by side: a claim that flips between them sits on a knife edge
LITTLE_GAIN = hypothesis("H3b").margin  # "more blocks give little": less than half an accuracy point

Rule = Callable[..., pd.DataFrame]


def grid_verdicts(
    inputs: dict[str, pd.DataFrame], hypotheses: Sequence[Hypothesis] | None = None, budget: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Every registered claim on a grid input (``H1``, ``H2``, ``H3`` families), each decided over its whole
    family (Holm), then the described rows: the ``sensitivity`` records (02b's placement and recalibration)
    and every claim again on its fixed-nuisance input (lr and weight decay fixed), where that input has runs.

    The one place these decisions are made: 04 shows them, 05 sets its full-budget H1 next to them.
    ``inputs`` are :func:`lib.study.inputs.grid_inputs`' (keyed by :data:`lib.study.registry.INPUTS`);
    ``hypotheses``: the records to test (default: :data:`lib.study.registry.HYPOTHESES`), each family
    adjusted over the claims its records declare (:func:`lib.study.registry.family_sizes`). ``budget``: the
    plateau checks' table (default: :func:`lib.study.plateau.budget_table` of ``inputs``, whose longer runs
    ``grid_inputs`` reads too); a row whose check failed or was not run reads *not decided: budget*.
    """
    decided, described, fixed = [], [], []
    for records in rule_groups(hypotheses):
        first = records[0]
        if not first.input:
            continue
        rows = RULES[first.rule](records, inputs[first.input])
        (described if first.family in DESCRIBED else decided).append(rows)
        if first.fixed_input and len(inputs.get(first.fixed_input, ())):
            fixed.append(RULES[first.rule](records, inputs[first.fixed_input], family=SENSITIVITY, design=FIXED_LABEL))
    table = pd.concat([*decided, *described, *fixed], ignore_index=True)
    checks = budget_table(inputs) if budget is None else budget
    return adjust(table, family_sizes=family_sizes(hypotheses), budget=checks)


# --- H1: dropout, H3: conv blocks (contrasts) ----------------------------------------------------------


def h1(
    frame: pd.DataFrame,
    data: DataSpec | None = None,
    family: str = "H1",
    by_placement: bool = False,
    design: str = "",
) -> pd.DataFrame:
    """H1 per norm type: moderate dropout (0.2-0.4) beats none (H1a); dropout above 0.5 hurts vs moderate (H1b).

    ``by_placement=True`` (05) gives each (norm type, dropout placement) its own pair of claims; the
    ``dropout_p = 0`` arm of a norm type is the shared control (placement cannot matter without dropout).
    The claims name the dropout values that were run; ``design`` (e.g. ``", lr tuned per arm"``) is
    added to each claim's label.
    """
    split = "norm type and placement" if by_placement else "norm type"
    return contrast_rows(members("H1"), frame, data, family, design, split)


def h3(frame: pd.DataFrame, data: DataSpec | None = None, family: str = "H3", design: str = "") -> pd.DataFrame:
    """H3: 1-2 blocks beat 0; 3+ blocks add less than half a point over the best of 1-2.

    ``family`` and ``design`` (a label added to each claim) as in :func:`h1`.
    """
    return contrast_rows(members("H3"), frame, data, family, design)


def h2_best(
    frame: pd.DataFrame, arm_columns: list[str] | None = None, data: DataSpec | None = None, family: str = "H2"
) -> pd.DataFrame:
    """H2b: BatchNorm vs no normalization, each at its own best arm (by mean) over ``arm_columns``, paired by seed.

    In v2 ``frame`` was the confirmation grid: each norm type at its own best learning rate from H2a's grid
    (:func:`best_lrs`), trained at H1's budget, so each norm had one arm and choosing it did not use these
    trials. The study's own H2b is :func:`h2b_tuned`.
    """
    record = hypothesis("H2b")
    by = tuple(arm_columns or ["lr"])
    record = replace(
        record,
        subset=None,
        treatment=replace(record.treatment, best_by=by),
        control=replace(record.control, best_by=by),
    )
    return contrast_rows([record], frame, data, family)


def h2b_tuned(h1_runs: pd.DataFrame, data: DataSpec | None = None) -> pd.DataFrame:
    """H2b on the tuned design: BatchNorm vs no normalization without dropout, each at its own tuned lr and
    weight decay (H1's two ``dropout_p = 0`` arms, re-measured on the same fresh seeds): one arm per norm
    type, so no arm is picked on these trials."""
    return contrast_rows([hypothesis("H2b")], h1_runs, data)


# --- H2a: the usable learning-rate range -------------------------------------------------------------


def lr_grid_step(frame: pd.DataFrame) -> float:
    """The learning-rate grid's step in decades (the median gap between neighbouring grid points)."""
    lrs = np.sort(frame["lr"].dropna().unique())
    return float(np.median(np.diff(np.log10(lrs)))) if len(lrs) > 1 else 0.0


def usable_widths(frame: pd.DataFrame, tolerances: tuple[float, ...] = LR_TOLERANCES) -> pd.DataFrame:
    """Per seed and norm type: the usable learning-rate range in decades, read off the curve (no lattice).

    A learning rate is usable for a norm type when a seed's accuracy there is within the tolerance of that
    norm type's *own* best mean accuracy over the grid (failed trials count as 0): the range measures how
    forgiving the choice of learning rate is, apart from how high the best accuracy is (H2b). Its ends are
    interpolated between grid points (:func:`lib.stats.interpolated_width`), so the width is a number, not
    a multiple of the grid step. ``usable_decades`` is the decided tolerance (:data:`LR_TOLERANCE`, 2
    points); ``width_1pp``, ``width_2pp``, ``width_3pp`` show the others side by side. ``nan``: not one
    rate of that seed within the tolerance (censored). ``touches_edge``: the range reaches the grid's
    edge, so its width is a lower bound.
    """
    filled = frame.fillna({"val_accuracy": 0.0})
    best_mean = filled.groupby(["norm_type", "lr"])["val_accuracy"].mean().groupby(level=0).max()
    rows = []
    for (seed, norm), group in filled.groupby(["seed", "norm_type"]):
        curve = group.groupby("lr")["val_accuracy"].mean()
        row = {"seed": seed, "norm_type": norm, "reference": best_mean[norm]}
        for tolerance in tolerances:
            floor = best_mean[norm] - tolerance
            width, edge = interpolated_width(curve.index, curve.to_numpy(), floor)
            censored = not (curve >= floor).any()
            column = f"width_{round(100 * tolerance)}pp"
            row[column] = float("nan") if censored else width
            if tolerance == LR_TOLERANCE:
                row |= {"usable_decades": row[column], "touches_edge": edge and not censored}
        rows.append(row)
    return pd.DataFrame(rows)


def h2_lr_range(
    frame: pd.DataFrame, data: DataSpec | None = None, family: str = "H2"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """H2a: usable learning-rate range (decades) per seed and norm (:func:`usable_widths`), batch - none.

    Lattice-free: the widths are interpolated on each seed's curve, and the claim is decided by the exact
    sign-flip test over seeds (:func:`lib.stats.sign_flip_test`, ``test = sign-flip``), which assumes no
    distribution and no grid; with k seeds its smallest p is 2 / 2^k, so fewer than 6 seeds cannot decide
    it at 5%. The interval shown is the t-interval of the per-seed differences (a description). A seed with
    no usable rate for a norm type is censored: then the exact sign test over all seeds decides and the
    effect is the median difference (``test = sign``). The note gives the effect at 1, 2 and 3 points of
    tolerance side by side, and says when a range reaches the grid's edge (a lower bound).
    """
    record = hypothesis("H2a")
    if record.alternative != "two-sided":  # lib.stats' exact tests are two-sided; a one-sided one is not built
        raise ValueError(f"H2a: alternative={record.alternative!r}: only 'two-sided' is implemented (lib.stats)")
    treated, control = record.treatment.values[0], record.control.values[0]  # batch, none
    widths = usable_widths(frame)
    by_seed = widths.pivot(index="seed", columns="norm_type", values="usable_decades")
    name = record.effect.format(treatment=treated, control=control)
    censored = {norm: int(by_seed[norm].isna().sum()) for norm in (treated, control)}
    if any(censored.values()):
        effect = censored_effect(by_seed[treated], by_seed[control], name)
        notes = ["no usable rate for " + ", ".join(f"{norm} in {n} seeds" for norm, n in censored.items() if n)]
        notes.append("decided by the exact sign test over seeds (censored ranks lowest); effect = median difference")
    else:
        effect = _sign_flip_effect(by_seed[treated], by_seed[control], name)
        smallest = 2 / 2**effect.n
        notes = [f"decided by the exact sign-flip test over {effect.n} seeds (smallest possible p {smallest:.3g})"]
        needed = first_step_seeds(record, family_sizes().get(record.family, 1))
        if effect.n < needed:
            notes.append(f"fewer than the {needed} seeds that can reject at Holm's first step of {record.family}")
    notes.append(_tolerance_note(widths))
    open_ended = sorted(widths.loc[widths["touches_edge"], "norm_type"].unique())
    edges = (frame["lr"].min(), frame["lr"].max())
    notes.append(
        f"range reaches the grid edge for {', '.join(open_ended)}: that width is a lower bound"
        if open_ended
        else f"both ranges bounded inside the grid ({edges[0]:.2g} to {edges[1]:.2g})"
    )
    rule = {"t": "CI > 0 (decades)", "sign-flip": "sign-flip test > 0 (decades)"}.get(effect.method)
    result = verdict_row(
        record.name,
        record.claim,
        effect,
        rule or "sign test > 0 (decades)",
        _h2a_verdict(effect),
        budget_text=budget_text(frame, data),
        unit=record.unit,
        note="; ".join(notes),
        family=family,
    )
    result |= design_columns(frame)
    by = [name for check in checks_for(record.name) for name in check.by]
    result["budget_keys"] = budget_keys(frame[frame["norm_type"].isin([treated, control])], by)
    return widths, pd.DataFrame([result])


def _sign_flip_effect(batch: pd.Series, none: pd.Series, name: str) -> Effect:
    """The paired mean difference with the t-interval as a description and the exact sign-flip p-value."""
    described = paired_effect(batch, none, name)
    return replace(described, method="sign-flip")


def _tolerance_note(widths: pd.DataFrame) -> str:
    """``batch - none at 1 / 2 / 3 points: +x / +y / +z decades`` (means over seeds; the decided one is 2)."""
    parts = []
    for tolerance in LR_TOLERANCES:
        column = f"width_{round(100 * tolerance)}pp"
        table = widths.pivot(index="seed", columns="norm_type", values=column)
        parts.append(f"{(table['batch'] - table['none']).mean():+.2f}")
    points = " / ".join(f"{round(100 * t)}" for t in LR_TOLERANCES)
    return f"batch - none at {points} points of tolerance: {' / '.join(parts)} decades (mean over seeds)"


def _h2a_verdict(effect: Effect) -> str:
    """The raw verdict: for a sign or sign-flip test its raw p-value and the effect's side, else the interval."""
    if effect.method not in ("sign", "sign-flip"):
        return verdict(effect)
    p = effect.p_value()
    if not p < 0.05:
        return NOT_SHOWN
    return "supported" if effect.mean > 0 else "contradicted"


def best_lrs(frame: pd.DataFrame) -> dict[str, float]:
    """Each norm type's own best learning rate on the H2a grid (highest mean; failed trials count as 0)."""
    means = frame.fillna({"val_accuracy": 0.0}).groupby(["norm_type", "lr"])["val_accuracy"].mean()
    return {norm: float(group.idxmax()[1]) for norm, group in means.groupby(level=0)}


# --- 02b: dropout x BatchNorm -----------------------------------------------------------------


def variance_shift(frame: pd.DataFrame, data: DataSpec | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Recalibration effect (after - before, same weights) and placement effects vs ``block``.

    Returns (arm summary rows for the figure, effect rows, described: family ``sensitivity``).
    """
    done = finished(frame)
    done = done[done["dropout_p"] > 0].copy()
    text = budget_text(done, data)
    arms, effects = _recalibration_effects(done, text)
    record = hypothesis("placement")
    control = record.control.values[0]  # "block": the course's order
    for (norm, p), group in done.groupby(["norm_type", "dropout_p"]):
        block = group[group["dropout_placement"] == control]
        for placement in sorted(set(group["dropout_placement"]) - {control}):
            placed = group[group["dropout_placement"] == placement]
            words = {"group": f"{norm}, p={p:g}", "treatment": placement, "control": control}
            effect = effect_between(placed, block, record.effect.format(**words))
            claim = record.claim.format(**words)
            effects.append(verdict_row(record.name, claim, effect, record.rule_text(), verdict(effect),
                                       budget_text=text, family=record.family))  # fmt: skip
    summary = pd.DataFrame(
        [
            {
                "arm": a["arm"],
                "n": len(a["values"]),
                **dict(zip(["mean", "ci_low", "ci_high"], mean_ci(a["values"].tolist()), strict=True)),
            }
            for a in arms
        ]
    )
    return summary, pd.DataFrame(effects)


def _recalibration_effects(done: pd.DataFrame, text: str) -> tuple[list[dict], list[dict]]:
    """Per dropout arm: its accuracy values (BatchNorm arms before and after recalibration), and the
    recalibration effect rows (after - before on the same weights: over seeds, the images are shared)."""
    before = "val_accuracy_before_recalibration"
    has_recal = done["recalibrate_bn"].astype(bool) & done[before].notna() if before in done else None
    arms, effects = [], []
    record = hypothesis("shift")
    for (norm, placement, p), group in done.groupby(["norm_type", "dropout_placement", "dropout_p"]):
        label = f"{norm}/{placement}/p={p:g}"
        if norm == "batch" and has_recal is not None and has_recal[group.index].all():
            after, plain = group.set_index("seed")["val_accuracy"], group.set_index("seed")[before]
            arms += [{"arm": f"{label}/plain", "values": plain}, {"arm": f"{label}/recal", "values": after}]
            effect = paired_effect(after, plain, record.effect.format(group=label))
            claim = record.claim.format(group=label)
            effects.append(verdict_row(record.name, claim, effect, record.rule_text(), verdict(effect),
                                       budget_text=text, family=record.family))  # fmt: skip
        else:
            arms.append({"arm": label, "values": group.set_index("seed")["val_accuracy"]})
    return arms, effects


# --- the rules by name (a record's ``rule``) ------------------------------------------------------------


def _usable_range_rule(
    records: Sequence[Hypothesis], frame: pd.DataFrame, data: DataSpec | None = None, family: str | None = None,
    design: str = "",
) -> pd.DataFrame:  # fmt: skip
    """H2a as a rule: its verdict row (the widths are :func:`h2_lr_range`'s first table)."""
    return h2_lr_range(frame, data, family or records[0].family)[1]


def _shift_rule(
    records: Sequence[Hypothesis], frame: pd.DataFrame, data: DataSpec | None = None, family: str | None = None,
    design: str = "",
) -> pd.DataFrame:  # fmt: skip
    """02b as a rule: the recalibration and placement rows (the arm summary is :func:`variance_shift`'s)."""
    return variance_shift(frame, data)[1]


# A record's rule: (its records, their grid input's runs, data=None, family=None, design="") -> verdict rows.
RULES: dict[str, Rule] = {
    "contrast": contrast_rows,
    "usable learning-rate range": _usable_range_rule,
    "variance shift": _shift_rule,
}
